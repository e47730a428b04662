//! Checking what a fundtrail log serves, without trusting the server: signed
//! checkpoints against a pinned verifier key, inclusion and consistency
//! proofs against checkpoints. Proofs travel as JSON files so that they can
//! be checked offline.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use fundtrail_api::pb;
use fundtrail_tlog::{check_record, check_tree, record_hash, Hash};
use prost::Message;
use serde::{Deserialize, Serialize};

/// An inclusion proof as served by `Audit.GetInclusionProof`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    /// The record's exact bytes, base64.
    pub record: String,
    /// Proof hashes, base64.
    pub hashes: Vec<String>,
}

/// A consistency proof as served by `Audit.GetConsistencyProof`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub first_size: u64,
    pub second_size: u64,
    pub hashes: Vec<String>,
}

impl From<pb::GetInclusionProofResponse> for InclusionProof {
    fn from(p: pb::GetInclusionProofResponse) -> Self {
        InclusionProof {
            index: p.index,
            tree_size: p.tree_size,
            record: B64.encode(&p.record),
            hashes: p.hashes.iter().map(|h| B64.encode(h)).collect(),
        }
    }
}

fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, String> {
    hashes
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| format!("{h:?} is not a base64 SHA-256 hash"))
        })
        .collect()
}

pub use fundtrail_verify::open_pinned;

/// Checks that `proof.record` is record `proof.index` of the log whose signed
/// checkpoint is `note`; returns the decoded record.
pub fn verify_inclusion(
    vkey: &str,
    note: &str,
    proof: &InclusionProof,
) -> Result<pb::Record, String> {
    let checkpoint = open_pinned(vkey, note)?;
    if proof.tree_size != checkpoint.tree_size {
        return Err(format!(
            "the proof is for a tree of {} records but the checkpoint is of {}",
            proof.tree_size, checkpoint.tree_size
        ));
    }
    let record = B64
        .decode(&proof.record)
        .map_err(|_| "the proof's record is not base64".to_string())?;
    let hashes = decode_hashes(&proof.hashes)?;
    check_record(
        &hashes,
        checkpoint.tree_size,
        &checkpoint.root_hash,
        proof.index,
        &record_hash(&record),
    )
    .map_err(|e| format!("the inclusion proof fails: {e}"))?;
    let decoded = pb::Record::decode(record.as_slice())
        .map_err(|e| format!("the record does not decode: {e}"))?;
    if decoded.seq != proof.index {
        return Err(format!(
            "the record says it is #{} but sits at leaf {}",
            decoded.seq, proof.index
        ));
    }
    Ok(decoded)
}

/// Checks that the log of checkpoint `new_note` extends that of `old_note`.
pub fn verify_consistency(
    vkey: &str,
    old_note: &str,
    new_note: &str,
    proof: &ConsistencyProof,
) -> Result<(), String> {
    let old = open_pinned(vkey, old_note)?;
    let new = open_pinned(vkey, new_note)?;
    if (proof.first_size, proof.second_size) != (old.tree_size, new.tree_size) {
        return Err(format!(
            "the proof is from {} to {} records but the checkpoints are of {} and {}",
            proof.first_size, proof.second_size, old.tree_size, new.tree_size
        ));
    }
    check_tree(
        &decode_hashes(&proof.hashes)?,
        new.tree_size,
        &new.root_hash,
        old.tree_size,
        &old.root_hash,
    )
    .map_err(|e| format!("the consistency proof fails: the log was not only appended to ({e})"))
}
