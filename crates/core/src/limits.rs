//! Every limit of the ledger, in one place, with its unit. Limits that
//! depend on each other are related by compile-time assertions below, so
//! changing one cannot silently break another.

// --- Requests ---------------------------------------------------------------

/// Largest accepted encoded `Request` payload.
pub const PAYLOAD_BYTES_MAX: usize = 16 * 1024;
/// Largest single amount: ¥10,000,000,000,000.00 (ten trillion yuan).
pub const AMOUNT_FEN_MAX: u64 = 1_000_000_000_000_000;
/// Earmarked sources one movement may name.
pub const EARMARKS_MAX: usize = 64;
/// Identifiers (ledger, org, account, idempotency key, household ref).
pub const ID_BYTES_MAX: usize = 64;
/// Names of orgs and accounts.
pub const NAME_CHARS_MAX: usize = 128;
/// 文号, programme codes.
pub const DOCUMENT_NO_CHARS_MAX: usize = 128;
/// Purpose, memo, reason.
pub const TEXT_CHARS_MAX: usize = 512;
/// Performance targets one project may list, and characters each.
pub const PERFORMANCE_TARGETS_MAX: usize = 32;
/// Rule records (SetProgrammeRules) one programme may have: each report
/// reads them all.
pub const PROGRAMME_RULES_MAX: usize = 256;
/// Evaluations (EvaluateProject) one project may have.
pub const EVALUATIONS_PER_PROJECT_MAX: usize = 64;
/// Members one household may be registered with.
pub const HOUSEHOLD_MEMBERS_MAX: u32 = 50;
/// Indexes one GetInclusionProofs call may ask for.
pub const INCLUSION_PROOFS_PER_CALL_MAX: usize = 4_096;
// Each index is a varint of at most 10 bytes, inside one Audit request.
const _: () = assert!(INCLUSION_PROOFS_PER_CALL_MAX * 10 + 16 <= QUERY_REQUEST_BYTES_MAX);
// Lines of the longest fields fit: two of 64 characters of up to four
// UTF-8 bytes, a date, three numbers, tags and lengths.
const _: () = assert!(RECONCILE_LINES_MAX * (2 * 4 * 64 + 88) <= RECONCILE_REQUEST_BYTES_MAX);
const _: () = assert!(RECONCILE_REQUEST_BYTES_MAX <= GRPC_MESSAGE_BYTES_MAX);
/// Requests a PostStream reads ahead of the answers it has sent.
pub const POST_STREAM_IN_FLIGHT_MAX: usize = 4_096;
/// PostStreams a server runs at once.
pub const POST_STREAMS_MAX: usize = 16;
/// Of them, those opened from one client address.
pub const POST_STREAMS_PER_ADDRESS_MAX: usize = 4;
const _: () = assert!(POST_STREAMS_PER_ADDRESS_MAX * 4 <= POST_STREAMS_MAX);
/// Of them, those of one org, counted from a stream's first new record
/// (the org that signed it): one org on many addresses cannot take them all.
pub const POST_STREAMS_PER_ORG_MAX: usize = 4;
const _: () = assert!(POST_STREAMS_PER_ORG_MAX * 4 <= POST_STREAMS_MAX);
/// A PostStream on which no request arrives for this long is ended
/// (DEADLINE_EXCEEDED, after the answers already due).
pub const POST_STREAM_IDLE_MS: u64 = 30_000;
/// Requests checked (decoded, signature verified) in one hop to a core.
pub const CHECK_CHUNK_REQUESTS: usize = 64;
/// Largest message of a PostStream: one SignedRequest.
pub const POST_STREAM_MESSAGE_BYTES_MAX: usize = 32 * 1024;
/// Requests in one PostBatch call.
pub const POST_BATCH_REQUESTS_MAX: usize = 1_000;
/// Default allowed distance between a request's signing time and commit time.
pub const SIGNING_SKEW_MS_DEFAULT: u64 = 5 * 60 * 1000;
/// Largest skew window a server may be configured with.
pub const SIGNING_SKEW_MS_MAX: u64 = 24 * 60 * 60 * 1000;

// --- Registry and balances ---------------------------------------------------

/// Sources one account may hold money of at once.
pub const ACCOUNT_SOURCES_MAX: usize = 100_000;
/// Keys one org may have registered over its life.
pub const ORG_KEYS_MAX: usize = 64;
/// Status changes one household may have.
pub const HOUSEHOLD_STATUS_CHANGES_MAX: usize = 64;
/// Days an import window may reach past the day it is declared.
pub const IMPORT_WINDOW_DAYS_MAX: i32 = 366;
/// Lots read by the first scan while picking which lots pay a movement:
/// the oldest lot usually pays it all.
pub const LOT_SCAN_FIRST: usize = 8;
/// Lots read per later scan.
pub const LOT_SCAN_CHUNK: usize = 256;
const _: () = assert!(LOT_SCAN_FIRST <= LOT_SCAN_CHUNK);
/// Lots one record may read while picking what pays it (rules 6): lots of
/// other sources skipped for an earmark count too, so the work one record
/// costs the sequencer is bounded.
pub const LOT_SCAN_ROWS_MAX: usize = 100_000;
const _: () = assert!(LOT_SCAN_ROWS_MAX >= LOT_SCAN_CHUNK * 4);

// --- Journal and sequencer ---------------------------------------------------

/// Bytes of a journal frame's header: length and checksum.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Largest record the journal holds. A request whose record would be larger
/// (a movement spread over very many lots) is refused before the journal.
pub const RECORD_BYTES_MAX: usize = 256 * 1024;
/// Largest batch written with one fdatasync. Bounds how much a torn tail can
/// hold: anything bad further from the end than this is corruption, not a
/// torn write. The sequencer closes a batch before it would pass this.
pub const BATCH_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Records the sequencer commits with one fdatasync.
pub const COMMIT_BATCH_RECORDS_MAX: usize = 2_048;
/// Requests waiting for the sequencer. Senders wait when it is full.
pub const SEQUENCER_QUEUE_MAX: usize = 8_192;
/// Records replay applies per commit to derived state.
pub const REPLAY_COMMIT_RECORDS: u64 = 4_096;
/// Decompressed public keys the server keeps for checking signatures.
pub const VERIFYING_KEYS_CACHED_MAX: usize = 65_536;
/// Longest a call waits for derived state to reach its `fundtrail-min-seq`.
pub const MIN_SEQ_WAIT_MS: u64 = 10_000;
/// Records whose index writes the indexer merges into one derived-state commit.
pub const INDEX_COMMIT_RECORDS_MAX: usize = 4_096;
/// A record's bytes besides its payload, at most: seq, commit time, key id,
/// signature and field tags, without its effects' legs.
pub const RECORD_OVERHEAD_BYTES_MAX: usize = 512;

// --- gRPC messages and pages ---------------------------------------------------

/// Largest gRPC message accepted: a full PostBatch of maximal payloads.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 24 * 1024 * 1024;
/// Largest Query or Audit request message (they carry ids, not records).
pub const QUERY_REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Query.Reconcile's request: bank lines, at most this many in this many
/// bytes (the one Query request above [`QUERY_REQUEST_BYTES_MAX`]).
pub const RECONCILE_REQUEST_BYTES_MAX: usize = 12 * 1024 * 1024;
pub const RECONCILE_LINES_MAX: usize = 20_000;

// The trust boundary (crates/server/src/boundary.rs).
/// Calls being answered at once; more are shed with UNAVAILABLE (retryable).
pub const IN_FLIGHT_CALLS_MAX: usize = 512;
/// A call still unanswered after this is cancelled (CANCELLED, as tonic
/// answers); writes answer UNAVAILABLE at nine tenths of it.
pub const CALL_TIMEOUT_MS: u64 = 120_000;
/// After the stop signal, how long the server waits for open calls and
/// streams to finish before it closes their connections.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Concurrent HTTP/2 streams (calls) per connection.
pub const STREAMS_PER_CONNECTION_MAX: u32 = 128;
/// Bytes of HTTP/2 headers per call (the read signature needs ~300).
pub const HEADER_LIST_BYTES_MAX: u32 = 16 * 1024;
/// Streams a client may open and reset before the server has accepted them
/// (the HTTP/2 rapid-reset flood).
pub const PENDING_RESET_STREAMS_MAX: usize = 32;
pub const KEEPALIVE_INTERVAL_MS: u64 = 30_000;
pub const KEEPALIVE_TIMEOUT_MS: u64 = 10_000;
/// Read allowance per key: cost units per second, and the burst it may save.
pub const READ_COST_PER_SECOND_DEFAULT: u32 = 500;
pub const READ_COST_BURST_DEFAULT: u32 = 2_000;
/// The heaviest call's cost: a whole burst must afford it.
pub const READ_COST_MAX: u32 = 100;
/// (key, nonce) pairs remembered to refuse a replayed read signature.
pub const READ_NONCES_REMEMBERED_MAX: usize = 1 << 20;
/// Of them, from one key: a key at the default read allowance (500 calls a
/// second for the ~300 s a nonce is kept) stays under it.
pub const READ_NONCES_PER_KEY_MAX: usize = 1 << 18;
/// Of them, from the keys of one org together: an org's share, so that no
/// fewer than four orgs together can fill the store, and one org with many
/// keys is refused alone.
pub const READ_NONCES_PER_ORG_MAX: usize = 1 << 18;
const _: () = assert!(READ_NONCES_PER_KEY_MAX <= READ_NONCES_PER_ORG_MAX);
const _: () = assert!(READ_NONCES_PER_ORG_MAX * 4 <= READ_NONCES_REMEMBERED_MAX);
/// A request message must arrive whole within this.
pub const REQUEST_BODY_TIMEOUT_MS: u64 = 10_000;
/// Time a call that carries no key (no read signature, not a write) has to
/// send its message once its headers arrived.
pub const UNKEYED_BODY_TIMEOUT_MS: u64 = 2_000;
/// Calls from one client address whose messages are still arriving. Such a
/// call holds no answering slot, only this share of its own address.
pub const RECEIVING_CALLS_PER_ADDRESS_MAX: usize = 64;
/// Of the [`IN_FLIGHT_CALLS_MAX`] answering slots, those the calls of one
/// client address may hold: a quarter, so no one address takes them all.
pub const ANSWERING_CALLS_PER_ADDRESS_MAX: usize = IN_FLIGHT_CALLS_MAX / 4;
/// Of the [`BUFFERED_REQUEST_BYTES_MAX`], those of one client address: a
/// quarter, still room for the largest request.
pub const BUFFERED_REQUEST_BYTES_PER_ADDRESS_MAX: usize = BUFFERED_REQUEST_BYTES_MAX / 4;
const _: () = assert!(BUFFERED_REQUEST_BYTES_PER_ADDRESS_MAX >= GRPC_MESSAGE_BYTES_MAX + 5);
const _: () = assert!(BUFFERED_REQUEST_BYTES_PER_ADDRESS_MAX <= u32::MAX as usize);
/// Of the [`IN_FLIGHT_CALLS_MAX`] answering slots, those calls without a
/// key may hold: a quarter.
pub const UNKEYED_CALLS_MAX: usize = IN_FLIGHT_CALLS_MAX / 4;
const _: () = assert!(UNKEYED_BODY_TIMEOUT_MS <= REQUEST_BODY_TIMEOUT_MS);
const _: () = assert!(UNKEYED_CALLS_MAX >= 1 && UNKEYED_CALLS_MAX < IN_FLIGHT_CALLS_MAX);
/// Bytes of request messages being received at once, server-wide; more
/// are shed with UNAVAILABLE.
pub const BUFFERED_REQUEST_BYTES_MAX: usize = 256 * 1024 * 1024;

// The access log (crates/server/src/access_log.rs).
/// Entries waiting for the access-log writer; a read waits when it is full.
pub const ACCESS_LOG_QUEUE_MAX: usize = 16 * 1024;
/// Entries written with one fsync.
pub const ACCESS_LOG_GROUP_MAX: usize = 64;
/// Account ids (and, apart, household account ids) one entry names; an
/// answer about more names the first ones and counts them all in `rows`.
pub const ACCESS_LOG_IDS_MAX: usize = 1_000;
/// Largest list page.
pub const PAGE_SIZE_MAX: u32 = 1_000;
/// Page size when the client asks for 0.
pub const PAGE_SIZE_DEFAULT: u32 = 100;
/// Largest page of ListEntries in bytes of records: the page ends early,
/// with a next-page token, rather than pass it.
pub const ENTRIES_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Rows a list scan reads at most before answering with what it has.
pub const LIST_SCAN_ROWS_MAX: usize = 10_000;
/// Records one trace page may return, and the default.
pub const TRACE_PAGE_RECORDS_MAX: u32 = 10_000;
pub const TRACE_PAGE_RECORDS_DEFAULT: u32 = 2_000;
/// Records one trace may walk (a refusal beyond, never a silent cut).
pub const TRACE_RECORDS_MAX: usize = 10_000;
/// Legs (lots moved) in one record, from rules 4: a movement over more lots
/// is refused and must name its sources or be split.
pub const LEGS_PER_RECORD_MAX: usize = 1_000;
/// Lots a backward trace may read.
pub const TRACE_LOTS_READ_MAX: usize = 1_000_000;
/// Payments to one household a statement, trace or finding reads (a
/// refusal beyond, never a silent cut): monthly payments of many
/// programmes for decades.
pub const HOUSEHOLD_PAYMENTS_READ_MAX: usize = TRACE_RECORDS_MAX;
/// Documents named on one trace edge.
pub const TRACE_EDGE_DOCUMENTS_MAX: usize = 5;
/// Rows an idle-funds or anomaly page reads at most.
pub const REPORT_SCAN_ROWS_MAX: usize = 5_000;
/// Watch streams (Query.Watch) served at once.
pub const WATCH_STREAMS_MAX: usize = 256;
/// Of them, those of one org: a share, so that one org cannot take them all.
pub const WATCH_STREAMS_PER_ORG_MAX: usize = 32;
const _: () = assert!(WATCH_STREAMS_PER_ORG_MAX * 8 <= WATCH_STREAMS_MAX);
/// Events a watch stream queues ahead of its consumer, one slot of them
/// kept for the stream's final status.
pub const WATCH_BUFFER_EVENTS: usize = 256;
/// Records a watch page reads at most (one access-log entry each page).
pub const WATCH_PAGE_RECORDS: u64 = 1_000;
/// How far the ledger may move on while a watch consumer takes no event
/// before its stream ends (RESOURCE_EXHAUSTED, naming the seq to resume
/// from).
pub const WATCH_LAG_RECORDS_MAX: u64 = 10_000;
/// How often a stream with nothing to send looks for a new checkpoint.
pub const WATCH_IDLE_MS: u64 = 1_000;
/// Filters of one watch stream.
pub const WATCH_ACCOUNTS_MAX: usize = 64;
pub const WATCH_KINDS_MAX: usize = 32;
/// Records an ExportLog stream buffers ahead of the client.
pub const EXPORT_BUFFER_RECORDS: usize = 256;
/// A server stream (an export, inclusion proofs) whose client reads
/// nothing for this long is ended with DEADLINE_EXCEEDED naming where to
/// resume; no thread waits on it meanwhile.
pub const STREAM_SEND_TIMEOUT_MS: u64 = 30_000;

// --- Checkpoints ---------------------------------------------------------------

/// Cosignature lines kept per checkpoint.
pub const COSIGNATURES_MAX: usize = 32;
/// Largest cosigned note a witness may send.
pub const COSIGNED_NOTE_BYTES_MAX: usize = 64 * 1024;

// --- How the limits relate -----------------------------------------------------

// A request with no legs always makes a record the journal takes.
const _: () = assert!(PAYLOAD_BYTES_MAX + RECORD_OVERHEAD_BYTES_MAX <= RECORD_BYTES_MAX);
// A stream message holds a whole signed request: payload, key id, signature.
const _: () = assert!(PAYLOAD_BYTES_MAX + ID_BYTES_MAX + 64 + 16 <= POST_STREAM_MESSAGE_BYTES_MAX);
// The largest record always fits a batch on its own.
const _: () = assert!((RECORD_BYTES_MAX + FRAME_HEADER_BYTES) as u64 <= BATCH_BYTES_MAX);
// A frame's length field (u32) can hold any record.
const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize);
// A full PostBatch of the largest payloads fits one gRPC message.
const _: () = assert!(
    POST_BATCH_REQUESTS_MAX * (PAYLOAD_BYTES_MAX + RECORD_OVERHEAD_BYTES_MAX)
        <= GRPC_MESSAGE_BYTES_MAX
);
// A page of entries (each carries its record twice: bytes and decoded) plus
// one more record past the byte budget fits one gRPC message.
const _: () = assert!(2 * (ENTRIES_PAGE_BYTES_MAX + RECORD_BYTES_MAX) <= GRPC_MESSAGE_BYTES_MAX);
// A page of the largest size can be read in one list scan.
const _: () = assert!(PAGE_SIZE_MAX as usize <= LIST_SCAN_ROWS_MAX);
// A consumer is never ended for lagging within one page it was sent.
const _: () = assert!(WATCH_PAGE_RECORDS < WATCH_LAG_RECORDS_MAX);
const _: () = assert!(WATCH_PAGE_RECORDS as usize <= LIST_SCAN_ROWS_MAX);
// The final status has its own slot, and events have the others.
const _: () = assert!(WATCH_BUFFER_EVENTS >= 2);
const _: () = assert!(PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX);
const _: () = assert!(TRACE_PAGE_RECORDS_DEFAULT <= TRACE_PAGE_RECORDS_MAX);
const _: () = assert!(TRACE_PAGE_RECORDS_MAX as usize <= TRACE_RECORDS_MAX);
const _: () = assert!(SIGNING_SKEW_MS_DEFAULT <= SIGNING_SKEW_MS_MAX);
const _: () = assert!(READ_COST_MAX <= READ_COST_BURST_DEFAULT);
const _: () = assert!(READ_NONCES_PER_KEY_MAX < READ_NONCES_REMEMBERED_MAX);
// The largest request fits the budget several times over.
const _: () = assert!(4 * GRPC_MESSAGE_BYTES_MAX <= BUFFERED_REQUEST_BYTES_MAX);
const _: () = assert!(BUFFERED_REQUEST_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(REQUEST_BODY_TIMEOUT_MS < CALL_TIMEOUT_MS);
const _: () = assert!(STREAMS_PER_CONNECTION_MAX as usize <= IN_FLIGHT_CALLS_MAX);
const _: () = assert!(KEEPALIVE_TIMEOUT_MS < KEEPALIVE_INTERVAL_MS);
// A full group of the largest entries fits one journal batch.
const _: () = assert!(
    (ACCESS_LOG_GROUP_MAX * (2 * ACCESS_LOG_IDS_MAX * (ID_BYTES_MAX + 3) + 1024)) as u64
        <= BATCH_BYTES_MAX
);
const _: () = assert!(2 * ACCESS_LOG_IDS_MAX * (ID_BYTES_MAX + 3) + 1024 <= RECORD_BYTES_MAX);
// A ledger id fits a file header's u16 length.
const _: () = assert!(ID_BYTES_MAX <= u16::MAX as usize);
/// A leg encodes two account ids and at most five varints with their tags.
const LEG_BYTES_MAX: usize = 2 * (ID_BYTES_MAX + 3) + 5 * 11 + 3;
// From rules 4 a record always fits: the leg cap keeps it under the limit.
const _: () = assert!(
    LEGS_PER_RECORD_MAX * LEG_BYTES_MAX + PAYLOAD_BYTES_MAX + RECORD_OVERHEAD_BYTES_MAX
        <= RECORD_BYTES_MAX
);
// Every batch a full sequencer queue can form is one commit's worth or more.
const _: () = assert!(COMMIT_BATCH_RECORDS_MAX <= SEQUENCER_QUEUE_MAX);
// One commit batch always fits one index commit.
const _: () = assert!(COMMIT_BATCH_RECORDS_MAX <= INDEX_COMMIT_RECORDS_MAX);
