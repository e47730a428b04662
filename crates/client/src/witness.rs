//! A witness: keeps the last checkpoint it cosigned, refuses to cosign one
//! that is not consistent with it, and otherwise adds a C2SP cosignature.

use std::path::Path;

use ed25519_dalek::SigningKey;
use fundtrail_api::pb;
use fundtrail_tlog::CosignerKey;
use serde::{Deserialize, Serialize};

use crate::proofs::{open_pinned, verify_consistency, ConsistencyProof};
use crate::Client;

/// What a witness remembers between rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WitnessState {
    /// The last checkpoint note cosigned, as the log signed it.
    pub note: Option<String>,
    pub tree_size: u64,
}

impl WitnessState {
    pub fn load(path: &Path) -> Result<WitnessState, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(WitnessState::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Saves atomically (write then rename), so a crash never loses the state.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What one witness round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    /// Cosigned the checkpoint of this size.
    Cosigned { tree_size: u64 },
    /// Nothing new since the last cosigned checkpoint.
    Unchanged { tree_size: u64 },
}

/// One round: fetch the newest checkpoint, check it against the pinned log
/// key and, with a consistency proof, against the last one cosigned; cosign
/// it and hand the cosignature to the log. `state` is updated only after the
/// log accepted the cosignature.
pub async fn witness_round(
    client: &mut Client,
    log_vkey: &str,
    name: &str,
    key: &SigningKey,
    state: &mut WitnessState,
    now_s: u64,
) -> Result<Round, String> {
    let served = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
        .await
        .map_err(|s| format!("cannot fetch the checkpoint: {}", s.message()))?
        .into_inner();
    // Keep only the log's own signature: the witness vouches for what the log signed.
    let checkpoint = open_pinned(log_vkey, &served.note)?;
    let log_name = log_vkey.trim().split('+').next().unwrap_or_default();
    let log_only = log_signed_note(&served.note, log_name);
    if let Some(old_note) = &state.note {
        let old = open_pinned(log_vkey, old_note)?;
        if checkpoint.tree_size < old.tree_size {
            return Err(format!(
                "refusing: the log now shows {} records, fewer than the {} already cosigned",
                checkpoint.tree_size, old.tree_size
            ));
        }
        if checkpoint.tree_size == old.tree_size {
            if checkpoint.root_hash != old.root_hash {
                return Err(format!(
                    "refusing: the log shows two different trees of {} records",
                    old.tree_size
                ));
            }
            return Ok(Round::Unchanged {
                tree_size: old.tree_size,
            });
        }
        let proof = client
            .audit
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                first_size: old.tree_size,
                second_size: checkpoint.tree_size,
            })
            .await
            .map_err(|s| format!("cannot fetch a consistency proof: {}", s.message()))?
            .into_inner();
        let proof = ConsistencyProof {
            first_size: old.tree_size,
            second_size: checkpoint.tree_size,
            hashes: proof
                .hashes
                .iter()
                .map(|h| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, h))
                .collect(),
        };
        verify_consistency(log_vkey, old_note, &log_only, &proof)
            .map_err(|e| format!("refusing: {e}"))?;
    }
    let cosigner =
        CosignerKey::new(name, key.clone()).map_err(|e| format!("bad witness name or key: {e}"))?;
    let line = cosigner
        .cosign(&checkpoint.to_body(), now_s)
        .map_err(|e| e.to_string())?;
    let mut cosigned = log_only.clone();
    cosigned.push_str(&line);
    client
        .audit
        .add_cosignature(pb::AddCosignatureRequest {
            cosigned_note: cosigned,
        })
        .await
        .map_err(|s| format!("the log refused the cosignature: {}", s.message()))?;
    *state = WitnessState {
        note: Some(log_only),
        tree_size: checkpoint.tree_size,
    };
    Ok(Round::Cosigned {
        tree_size: checkpoint.tree_size,
    })
}

/// The note with only the signature lines of `log_name`.
pub fn log_signed_note(note: &str, log_name: &str) -> String {
    let Ok((text, lines)) = fundtrail_tlog::split_note(note) else {
        return note.to_string();
    };
    let mut out = format!("{text}\n");
    for line in lines {
        if fundtrail_tlog::parse_signature_line(line).is_ok_and(|s| s.name == log_name) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
