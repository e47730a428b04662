//! Every limit of the ledger, in one place, with its unit.

/// Largest accepted encoded `Request` payload.
pub const PAYLOAD_BYTES_MAX: usize = 16 * 1024;
/// Largest single amount: ¥10,000,000,000,000.00 (ten trillion yuan).
pub const AMOUNT_FEN_MAX: u64 = 1_000_000_000_000_000;
/// Earmarked sources one movement may name.
pub const EARMARKS_MAX: usize = 64;
/// Identifiers (org, account, idempotency key, household ref).
pub const ID_BYTES_MAX: usize = 64;
/// Names of orgs and accounts.
pub const NAME_CHARS_MAX: usize = 128;
/// 文号, programme codes.
pub const DOCUMENT_NO_CHARS_MAX: usize = 128;
/// Purpose, memo, reason.
pub const TEXT_CHARS_MAX: usize = 512;
/// Requests in one PostBatch call.
pub const POST_BATCH_REQUESTS_MAX: usize = 1_000;
/// Records the sequencer commits with one fdatasync.
pub const COMMIT_BATCH_RECORDS_MAX: usize = 2_048;
/// Largest list page.
pub const PAGE_SIZE_MAX: u32 = 1_000;
/// Page size when the client asks for 0.
pub const PAGE_SIZE_DEFAULT: u32 = 100;
/// Default allowed distance between a request's signing time and commit time.
pub const SIGNING_SKEW_MS_DEFAULT: u64 = 5 * 60 * 1000;
/// Largest skew window a server may be configured with.
pub const SIGNING_SKEW_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Sources one account may hold money of at once.
pub const ACCOUNT_SOURCES_MAX: usize = 100_000;
/// Performance targets one project may list, and characters each.
pub const PERFORMANCE_TARGETS_MAX: usize = 32;
