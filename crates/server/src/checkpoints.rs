//! Signed checkpoints: the log signs the tree's size and root at least every
//! `every_records` records or `every_ms` milliseconds, keeps every checkpoint
//! it signed (and the witness cosignatures it accepted) in an append-only,
//! fsynced file, and never signs a checkpoint that is not consistent with the
//! one before it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use fundtrail_core::{Error, Fault, Rejection};
use fundtrail_store::header::FileKind;
use fundtrail_store::Journal;
use fundtrail_tlog::{
    check_tree, open_note, parse_signature_line, prove_tree, sign_checkpoint, split_note,
    tree_hash, Checkpoint, HashReader, NoteSigner, NoteVerifier, Verifier,
};

/// The checkpoint log's file name inside the data directory.
pub const CHECKPOINTS_FILE_NAME: &str = "checkpoints.log";
use fundtrail_core::limits::COSIGNATURES_MAX;

/// How often checkpoints are signed.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub every_ms: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every_records: 1_000,
            every_ms: 1_000,
        }
    }
}

/// One checkpoint the log signed, with accepted cosignature lines.
#[derive(Debug, Clone)]
pub struct Signed {
    pub checkpoint: Checkpoint,
    /// The note as the log signed it (checkpoint body and the log's line).
    pub note: String,
    /// Accepted witness cosignature lines ("— name base64\n"), by witness.
    pub cosignatures: BTreeMap<String, String>,
}

impl Signed {
    /// The note with every accepted cosignature.
    pub fn note_with_cosignatures(&self) -> String {
        let mut note = self.note.clone();
        for line in self.cosignatures.values() {
            note.push_str(line);
        }
        note
    }
}

struct Inner {
    file: Journal,
    by_size: BTreeMap<u64, Signed>,
}

pub struct Checkpoints {
    signer: NoteSigner,
    verifier: NoteVerifier,
    origin: String,
    inner: Mutex<Inner>,
}

impl Checkpoints {
    /// Loads every checkpoint signed so far from `data_dir`.
    pub fn open(
        data_dir: &Path,
        ledger_id: &str,
        signer: NoteSigner,
        origin: String,
    ) -> Result<Checkpoints, String> {
        let path = data_dir.join(CHECKPOINTS_FILE_NAME);
        let file = Journal::open_or_create(&path, FileKind::Checkpoints, ledger_id)
            .map_err(|e| e.to_string())?;
        let verifier = signer.verifier();
        let mut by_size: BTreeMap<u64, Signed> = BTreeMap::new();
        let scan = file
            .scan(0)
            .map_err(|e| format!("cannot read {CHECKPOINTS_FILE_NAME}: {e}"))?;
        for frame in scan {
            let frame = frame.map_err(|e| format!("{CHECKPOINTS_FILE_NAME} is damaged: {e}"))?;
            let text = String::from_utf8(frame.record)
                .map_err(|_| format!("{CHECKPOINTS_FILE_NAME} holds a note that is not text"))?;
            let opened = open_note(&text, &[&verifier as &dyn Verifier]).map_err(|e| {
                format!("{CHECKPOINTS_FILE_NAME} holds a note the log did not sign: {e}")
            })?;
            let checkpoint = Checkpoint::parse(&opened.text)
                .map_err(|e| format!("{CHECKPOINTS_FILE_NAME} holds a bad checkpoint: {e}"))?;
            let mut note = opened.text.clone();
            note.push('\n');
            let mut cosignatures = BTreeMap::new();
            let (_, lines) = split_note(&text)
                .map_err(|e| format!("{CHECKPOINTS_FILE_NAME} holds a malformed note: {e}"))?;
            for line in lines {
                let signature = parse_signature_line(line)
                    .map_err(|e| format!("{CHECKPOINTS_FILE_NAME} holds a malformed note: {e}"))?;
                let line = format!("{line}\n");
                if signature.name == origin {
                    note.push_str(&line);
                } else {
                    cosignatures.insert(signature.name, line);
                }
            }
            if let Some(earlier) = by_size.get(&checkpoint.tree_size) {
                if earlier.checkpoint != checkpoint {
                    return Err(format!(
                        "{CHECKPOINTS_FILE_NAME} holds two different checkpoints of size {}",
                        checkpoint.tree_size
                    ));
                }
            }
            by_size.insert(
                checkpoint.tree_size,
                Signed {
                    checkpoint,
                    note,
                    cosignatures,
                },
            );
        }
        Ok(Checkpoints {
            signer,
            verifier,
            origin,
            inner: Mutex::new(Inner { file, by_size }),
        })
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-written:
        // every change is one insert after the file append succeeded.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest checkpoint, if any was signed.
    pub fn latest(&self) -> Option<Signed> {
        self.lock().by_size.values().next_back().cloned()
    }

    pub fn get(&self, tree_size: u64) -> Option<Signed> {
        self.lock().by_size.get(&tree_size).cloned()
    }

    /// Every signed checkpoint, oldest first.
    pub fn all(&self) -> Vec<Signed> {
        self.lock().by_size.values().cloned().collect()
    }

    /// Signs a checkpoint for the tree of `tree_size` records, if it is newer
    /// than the newest one, after proving it consistent with that one.
    pub fn sign(
        &self,
        tree_size: u64,
        tree: &(impl HashReader + ?Sized),
    ) -> Result<Option<Signed>, Fault> {
        let mut inner = self.lock();
        let previous = inner.by_size.values().next_back().cloned();
        if previous
            .as_ref()
            .is_some_and(|p| p.checkpoint.tree_size >= tree_size)
        {
            return Ok(None);
        }
        let root_hash = tree_hash(tree_size, tree)
            .map_err(|e| Fault::new(format!("cannot compute the tree root: {e}")))?;
        if let Some(previous) = &previous {
            let old = &previous.checkpoint;
            let proof = prove_tree(tree_size, old.tree_size, tree)
                .map_err(|e| Fault::new(format!("cannot prove consistency: {e}")))?;
            check_tree(&proof, tree_size, &root_hash, old.tree_size, &old.root_hash).map_err(|e| {
                Fault::new(format!(
                    "refusing to sign: the tree of {tree_size} records is not consistent with the signed checkpoint of {} records ({e})",
                    old.tree_size
                ))
            })?;
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size,
            root_hash,
        };
        let note = sign_checkpoint(&checkpoint, &self.signer)
            .map_err(|e| Fault::new(format!("cannot sign: {e}")))?;
        inner
            .file
            .append(&[note.clone().into_bytes()])
            .map_err(|e| Fault::new(format!("cannot store the checkpoint: {e}")))?;
        let signed = Signed {
            checkpoint,
            note,
            cosignatures: BTreeMap::new(),
        };
        inner.by_size.insert(tree_size, signed.clone());
        Ok(Some(signed))
    }

    /// Stores an accepted cosignature line for the checkpoint of `tree_size`.
    /// A witness that already cosigned this checkpoint is answered OK and
    /// nothing is written: its first cosignature stands, and resending
    /// cannot make the log sync its file again and again.
    pub fn add_cosignature(
        &self,
        tree_size: u64,
        witness: &str,
        line: String,
    ) -> Result<(), Error> {
        let mut inner = self.lock();
        let Some(mut signed) = inner.by_size.get(&tree_size).cloned() else {
            return Err(Rejection::not_found(
                "cosigned_note",
                "the log never signed this checkpoint",
            )
            .into());
        };
        if signed.cosignatures.contains_key(witness) {
            return Ok(());
        }
        if signed.cosignatures.len() >= COSIGNATURES_MAX {
            return Err(Rejection::new(
                fundtrail_core::Code::ResourceExhausted,
                "cosigned_note",
                format!("this checkpoint already carries {COSIGNATURES_MAX} cosignatures"),
            )
            .into());
        }
        signed.cosignatures.insert(witness.to_string(), line);
        inner
            .file
            .append(&[signed.note_with_cosignatures().into_bytes()])
            .map_err(|e| Fault::new(format!("cannot store the cosignature: {e}")))?;
        inner.by_size.insert(tree_size, signed);
        Ok(())
    }
}
