//! Verifiable logs for fundtrail: the RFC 9162 Merkle tree over the ledger's
//! records, and the C2SP signed-note, checkpoint and cosignature formats that
//! carry its signed tree heads.
//!
//! With it a log server stores the hashes of a growing tree and proves two
//! things to anyone holding a signed checkpoint: that a record is in the tree
//! ([`prove_record`] / [`check_record`]), and that a newer tree extends an older
//! one without rewriting it ([`prove_tree`] / [`check_tree`]). Checkpoints are
//! signed by the log ([`sign_checkpoint`] / [`open_checkpoint`]) and may be
//! cosigned by witnesses ([`CosignerKey::cosign`] / [`verify_cosignature`]).
//!
//! The crate is pure computation: no I/O, no clock, no async. Storage plugs in
//! through [`HashReader`]. Input from outside is refused with an [`Error`];
//! a panic means a bug in this crate or a broken caller invariant.
//!
//! ```
//! use fundtrail_tlog::{
//!     check_record, check_tree, open_checkpoint, prove_record, prove_tree, record_hash,
//!     sign_checkpoint, tree_hash, Checkpoint, MemoryHashes, NoteSigner,
//! };
//! use fundtrail_tlog::ed25519_dalek::SigningKey;
//!
//! # fn main() -> Result<(), fundtrail_tlog::Error> {
//! // The log appends records and keeps their stored hashes.
//! let mut log = MemoryHashes::new();
//! for record in ["alpha", "beta", "gamma"] {
//!     log.append(record.as_bytes())?;
//! }
//! let old_root = tree_hash(2, &log)?;
//! let root = tree_hash(3, &log)?;
//!
//! // It signs a checkpoint for the tree of 3 records.
//! let signer = NoteSigner::new("example.org/fundtrail", SigningKey::from_bytes(&[7; 32]))?;
//! let checkpoint = Checkpoint { origin: "example.org/fundtrail".into(), tree_size: 3, root_hash: root };
//! let note = sign_checkpoint(&checkpoint, &signer)?;
//!
//! // A client that trusts the log's key opens the checkpoint...
//! let seen = open_checkpoint(&note, &signer.verifier(), "example.org/fundtrail")?;
//! // ...checks that record 1 is in it...
//! let proof = prove_record(seen.tree_size, 1, &log)?;
//! check_record(&proof, seen.tree_size, &seen.root_hash, 1, &record_hash(b"beta"))?;
//! // ...and that it extends the tree of 2 records it saw before.
//! let proof = prove_tree(seen.tree_size, 2, &log)?;
//! check_tree(&proof, seen.tree_size, &seen.root_hash, 2, &old_root)?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod checkpoint;
mod cosignature;
mod error;
mod note;
mod tree;

pub use checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint};
pub use cosignature::{
    cosign, cosignature_message, cosignature_time, verify_cosignature, CosignatureVerifier,
    CosignerKey, MAX_COSIGNATURE_TIME, SIGNATURE_TYPE_COSIGNATURE_V1,
};
pub use error::{Error, Result};
pub use note::{
    check_key_name, key_id, open_note, parse_signature_line, sign_note, signature_line, split_note,
    Note, NoteSignature, NoteSigner, NoteVerifier, Verifier, MAX_NOTE_SIGNATURES, MAX_NOTE_SIZE,
    SIGNATURE_TYPE_ED25519,
};
pub use tree::{
    check_record, check_tree, node_hash, prove_record, prove_tree, record_hash,
    split_stored_hash_index, stored_hash_count, stored_hash_index, stored_hashes,
    stored_hashes_for_record_hash, tree_hash, Frontier, Hash, HashReader, MemoryHashes,
    EMPTY_TREE_HASH, MAX_TREE_SIZE,
};

/// The Ed25519 crate whose key types this crate's API takes.
pub use ed25519_dalek;
