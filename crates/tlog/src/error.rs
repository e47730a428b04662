//! The one error type of this crate.

/// Everything that can go wrong in this crate.
///
/// Input that comes from outside (proofs, tree sizes, notes, key strings,
/// checkpoint bodies) is refused with one of these; it never causes a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record index was not below the tree size it was used with.
    #[error("record index {index} is beyond tree size {tree_size}")]
    IndexOutOfRange {
        /// 0-based index of the record.
        index: u64,
        /// Number of records in the tree.
        tree_size: u64,
    },

    /// A consistency proof was asked for or checked from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than tree size {tree_size}")]
    OldSizeTooLarge {
        /// Number of records in the older tree.
        old_size: u64,
        /// Number of records in the newer tree.
        tree_size: u64,
    },

    /// A tree size went past [`crate::MAX_TREE_SIZE`].
    #[error("tree size {tree_size} exceeds the limit of {max} records")]
    TreeTooLarge {
        /// The refused number of records.
        tree_size: u64,
        /// The limit, [`crate::MAX_TREE_SIZE`].
        max: u64,
    },

    /// A proof had too many or too few hashes for the sizes it claims to cover.
    #[error("proof has {got} hashes, but a proof for these tree sizes has exactly {want}")]
    ProofLength {
        /// The number of hashes a proof for these sizes has.
        want: usize,
        /// The number of hashes that were given.
        got: usize,
    },

    /// An inclusion proof of the right length did not lead to the given root hash.
    #[error("inclusion proof does not lead to the given root hash")]
    BadInclusionProof,

    /// A consistency proof of the right length did not match both root hashes.
    #[error("consistency proof does not match the given root hashes")]
    BadConsistencyProof,

    /// A [`crate::HashReader`] was asked for a stored hash it does not hold.
    #[error("stored hash {index} is not available")]
    MissingHash {
        /// The stored-hash index (see [`crate::stored_hash_index`]).
        index: u64,
    },

    /// A [`crate::HashReader`] answered with the wrong number of hashes.
    #[error("hash reader returned {got} hashes for {want} indexes")]
    HashReaderCount {
        /// How many indexes were asked for.
        want: usize,
        /// How many hashes came back.
        got: usize,
    },

    /// The storage behind a [`crate::HashReader`] failed.
    #[error("hash storage failed: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A key name broke the signed-note rules.
    #[error(
        "invalid key name {0:?}: it must be non-empty and have no '+', whitespace or control characters"
    )]
    InvalidKeyName(String),

    /// A verifier key string (`name+hex8+base64`) was malformed.
    #[error("malformed verifier key: {0}")]
    MalformedVerifierKey(&'static str),

    /// A signer key string (`PRIVATE+KEY+name+hex8+base64`) was malformed.
    #[error("malformed signer key: {0}")]
    MalformedSignerKey(&'static str),

    /// A signed note (or the text given to sign) broke the signed-note format.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),

    /// A note was larger than [`crate::MAX_NOTE_SIZE`].
    #[error("note is {size} bytes, over the limit of {max}")]
    NoteTooLarge {
        /// Size of the note in bytes.
        size: usize,
        /// The limit, [`crate::MAX_NOTE_SIZE`].
        max: usize,
    },

    /// A note had more signature lines than [`crate::MAX_NOTE_SIGNATURES`].
    #[error("note has more than {max} signatures")]
    TooManySignatures {
        /// The limit, [`crate::MAX_NOTE_SIGNATURES`].
        max: usize,
    },

    /// A signature from a known key did not verify; the whole note is refused.
    #[error("signature by {name} (key id {key_id:08x}) does not verify")]
    BadSignature {
        /// Key name on the signature line.
        name: String,
        /// Key id on the signature line.
        key_id: u32,
    },

    /// Two verifiers given to [`crate::open_note`] share both name and key id.
    #[error("more than one verifier has name {name} and key id {key_id:08x}")]
    AmbiguousVerifier {
        /// The shared key name.
        name: String,
        /// The shared key id.
        key_id: u32,
    },

    /// No signature in the note came from a known key.
    #[error("note has no signature from a known key")]
    NoVerifiedSignature,

    /// A checkpoint body broke the tlog-checkpoint format.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),

    /// A checkpoint came from another log than the one expected.
    #[error("checkpoint origin is {got:?}, expected {want:?}")]
    WrongOrigin {
        /// The expected origin.
        want: String,
        /// The origin in the checkpoint.
        got: String,
    },

    /// A cosignature timestamp was above [`crate::MAX_COSIGNATURE_TIME`].
    #[error("cosignature time {0} is above 2^63-1")]
    CosignatureTimeTooLarge(u64),

    /// A cosignature signature was not 8 + 64 bytes.
    #[error("malformed cosignature: {0}")]
    MalformedCosignature(&'static str),

    /// The note has no signature line from the expected cosigner.
    #[error("note has no cosignature by {name} (key id {key_id:08x})")]
    MissingCosignature {
        /// The cosigner's key name.
        name: String,
        /// The cosigner's key id.
        key_id: u32,
    },
}

/// Short for `std::result::Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
