//! Signed checkpoints: the log signs the tree's size and root at least every
//! `every_records` records or `every_ms` milliseconds, keeps every checkpoint
//! it signed (and the witness cosignatures it accepted) in an append-only,
//! fsynced file, and never signs a checkpoint that is not consistent with the
//! one before it.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use fundtrail_core::{Error, Fault, Rejection};
use fundtrail_store::header::FileKind;
use fundtrail_store::Journal;
use fundtrail_tlog::{
    check_tree, open_note, parse_signature_line, prove_tree, sign_checkpoint, split_note,
    tree_hash, Checkpoint, Hash, HashReader, NoteSigner, NoteVerifier, Verifier,
};

/// The checkpoint log's file name inside the data directory.
pub const CHECKPOINTS_FILE_NAME: &str = "checkpoints.log";
use crate::start::StartError;
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

/// Where signed checkpoints are kept: appended to, never changed.
pub trait CheckpointStore: Send {
    /// Every note stored, oldest first. A note for a size already seen
    /// carries that checkpoint again with more cosignatures.
    fn notes(&self) -> Result<Vec<String>, String>;
    /// Stores a newly signed checkpoint, durably, before anyone sees it.
    fn add_checkpoint(&mut self, signed: &Signed) -> io::Result<()>;
    /// Stores `witness`'s cosignature, `signed` already carrying it.
    fn add_cosignature(&mut self, signed: &Signed, witness: &str) -> io::Result<()>;
}

/// `checkpoints.log` in the data directory: each note appended whole.
struct FileStore(Journal);

impl FileStore {
    fn path(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(CHECKPOINTS_FILE_NAME)
    }
}

impl CheckpointStore for FileStore {
    fn notes(&self) -> Result<Vec<String>, String> {
        let scan = self
            .0
            .scan(0)
            .map_err(|e| format!("cannot read {CHECKPOINTS_FILE_NAME}: {e}"))?;
        scan.map(|frame| {
            let frame = frame.map_err(|e| format!("{CHECKPOINTS_FILE_NAME} is damaged: {e}"))?;
            String::from_utf8(frame.record)
                .map_err(|_| format!("{CHECKPOINTS_FILE_NAME} holds a note that is not text"))
        })
        .collect()
    }

    fn add_checkpoint(&mut self, signed: &Signed) -> io::Result<()> {
        self.0.append(&[signed.note.clone().into_bytes()]).map(drop)
    }

    fn add_cosignature(&mut self, signed: &Signed, _witness: &str) -> io::Result<()> {
        self.0
            .append(&[signed.note_with_cosignatures().into_bytes()])
            .map(drop)
    }
}

/// The checkpoint tables of a ledger kept in PostgreSQL.
impl CheckpointStore for fundtrail_pg::PgCheckpoints {
    fn notes(&self) -> Result<Vec<String>, String> {
        fundtrail_pg::PgCheckpoints::notes(self)
            .map_err(|e| format!("cannot read the checkpoints in the database: {e}"))
    }

    fn add_checkpoint(&mut self, signed: &Signed) -> io::Result<()> {
        let checkpoint = &signed.checkpoint;
        self.insert_checkpoint(checkpoint.tree_size, &checkpoint.root_hash, &signed.note)
    }

    fn add_cosignature(&mut self, signed: &Signed, witness: &str) -> io::Result<()> {
        let line = signed.cosignatures.get(witness).ok_or_else(|| {
            io::Error::other(format!(
                "the checkpoint carries no cosignature by {witness}"
            ))
        })?;
        self.insert_cosignature(signed.checkpoint.tree_size, witness, line)
    }
}

/// The size and root of the newest checkpoint in `store`, read without
/// checking its signature: for demanding more of a journal before the
/// log's key is at hand. [`Checkpoints::open`] checks every signature.
pub fn newest_unchecked(store: &dyn CheckpointStore) -> Result<Option<(u64, Hash)>, StartError> {
    let Some(text) = store.notes().map_err(StartError::Unavailable)?.pop() else {
        return Ok(None);
    };
    let malformed = |e| StartError::Refused(format!("a malformed checkpoint note: {e}"));
    let (body, _) = split_note(&text).map_err(malformed)?;
    let checkpoint = Checkpoint::parse(body).map_err(malformed)?;
    Ok(Some((checkpoint.tree_size, checkpoint.root_hash)))
}

/// The local checkpoint log of `data_dir`, if it has one.
pub fn local_store(data_dir: &Path) -> Result<Option<Box<dyn CheckpointStore>>, StartError> {
    let path = FileStore::path(data_dir);
    if !path.exists() {
        return Ok(None);
    }
    let file = Journal::open(&path, FileKind::Checkpoints, None)?;
    Ok(Some(Box::new(FileStore(file))))
}

struct Inner {
    /// Written in order: a checkpoint is in all of them before it is served.
    stores: Vec<Box<dyn CheckpointStore>>,
    by_size: BTreeMap<u64, Signed>,
}

pub struct Checkpoints {
    /// The log's key; `None` on a replica, which only adopts checkpoints
    /// the log signed ([`Checkpoints::adopt`]).
    signer: Option<NoteSigner>,
    verifier: NoteVerifier,
    origin: String,
    inner: Mutex<Inner>,
}

impl Checkpoints {
    /// Loads every checkpoint signed so far from `shared` (the database a
    /// ledger in PostgreSQL keeps them in, if any) and from the checkpoint
    /// log of `data_dir`. Both get every checkpoint signed from now on,
    /// `shared` first.
    pub fn open(
        data_dir: &Path,
        ledger_id: &str,
        signer: NoteSigner,
        origin: String,
        shared: Option<Box<dyn CheckpointStore>>,
    ) -> Result<Checkpoints, StartError> {
        let verifier = signer.verifier();
        Checkpoints::open_with(data_dir, ledger_id, Some(signer), verifier, origin, shared)
    }

    /// The checkpoints of a replica: those of the log whose key `verifier`
    /// holds that it adopted, kept in the checkpoint log of `data_dir`.
    pub fn open_replica(
        data_dir: &Path,
        ledger_id: &str,
        verifier: NoteVerifier,
        origin: String,
    ) -> Result<Checkpoints, StartError> {
        Checkpoints::open_with(data_dir, ledger_id, None, verifier, origin, None)
    }

    fn open_with(
        data_dir: &Path,
        ledger_id: &str,
        signer: Option<NoteSigner>,
        verifier: NoteVerifier,
        origin: String,
        shared: Option<Box<dyn CheckpointStore>>,
    ) -> Result<Checkpoints, StartError> {
        let file =
            Journal::open_or_create(&FileStore::path(data_dir), FileKind::Checkpoints, ledger_id)?;
        let mut stores = Vec::from_iter(shared);
        stores.push(Box::new(FileStore(file)));
        let mut by_size: BTreeMap<u64, Signed> = BTreeMap::new();
        for store in &stores {
            for text in store.notes().map_err(StartError::Unavailable)? {
                let signed =
                    parse_stored(&text, &verifier, &origin).map_err(StartError::Refused)?;
                let size = signed.checkpoint.tree_size;
                match by_size.get_mut(&size) {
                    Some(earlier) if earlier.checkpoint != signed.checkpoint => {
                        return Err(StartError::Refused(format!(
                            "two different checkpoints of {size} records were signed by this log"
                        )));
                    }
                    Some(earlier) => earlier.cosignatures.extend(signed.cosignatures),
                    None => {
                        by_size.insert(size, signed);
                    }
                }
            }
        }
        Ok(Checkpoints {
            signer,
            verifier,
            origin,
            inner: Mutex::new(Inner { stores, by_size }),
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
            .map_err(|e| Fault::io(format!("cannot compute the tree root: {e}")))?;
        if let Some(previous) = &previous {
            let old = &previous.checkpoint;
            let proof = prove_tree(tree_size, old.tree_size, tree)
                .map_err(|e| Fault::io(format!("cannot prove consistency: {e}")))?;
            check_tree(&proof, tree_size, &root_hash, old.tree_size, &old.root_hash).map_err(|e| {
                Fault::corrupt(format!(
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
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| Fault::bug("a replica signs no checkpoints"))?;
        let note = sign_checkpoint(&checkpoint, signer)
            .map_err(|e| Fault::bug(format!("cannot sign: {e}")))?;
        let signed = Signed {
            checkpoint,
            note,
            cosignatures: BTreeMap::new(),
        };
        for (i, store) in inner.stores.iter_mut().enumerate() {
            store
                .add_checkpoint(&signed)
                .map_err(|e| Fault::io(format!("cannot store the checkpoint: {e}")))?;
            if i == 0 {
                crate::crash::point(crate::crash::AFTER_CHECKPOINT_STORED);
            }
        }
        inner.by_size.insert(tree_size, signed.clone());
        Ok(Some(signed))
    }

    /// Adopts a checkpoint the log signed (`note`, with any cosignatures),
    /// as a replica does once its own tree reached it: the signature must
    /// be the log's, `tree` must have the checkpoint's root at its size,
    /// and it must extend the newest checkpoint adopted before. Returns it.
    pub fn adopt(&self, note: &str, tree: &(impl HashReader + ?Sized)) -> Result<Signed, String> {
        let signed = parse_stored(note, &self.verifier, &self.origin)?;
        let checkpoint = &signed.checkpoint;
        let root = tree_hash(checkpoint.tree_size, tree).map_err(|e| e.to_string())?;
        if root != checkpoint.root_hash {
            return Err(format!(
                "the log signed a checkpoint of {} records whose root is not the root of those records",
                checkpoint.tree_size
            ));
        }
        let mut inner = self.lock();
        if let Some(previous) = inner.by_size.values().next_back() {
            let old = &previous.checkpoint;
            if old.tree_size >= checkpoint.tree_size {
                return Err(format!(
                    "the log's newest checkpoint ({} records) is not newer than one adopted before ({} records)",
                    checkpoint.tree_size, old.tree_size
                ));
            }
            // Both roots are of this one tree; the proof shows it.
            let proof =
                prove_tree(checkpoint.tree_size, old.tree_size, tree).map_err(|e| e.to_string())?;
            check_tree(&proof, checkpoint.tree_size, &root, old.tree_size, &old.root_hash)
                .map_err(|e| {
                    format!(
                        "the checkpoint of {} records is not consistent with the one of {} records adopted before: {e}",
                        checkpoint.tree_size, old.tree_size
                    )
                })?;
        }
        for store in inner.stores.iter_mut() {
            store
                .add_checkpoint(&signed)
                .map_err(|e| format!("cannot store the checkpoint: {e}"))?;
            if let Some(witness) = signed.cosignatures.keys().next() {
                store
                    .add_cosignature(&signed, witness)
                    .map_err(|e| format!("cannot store the cosignatures: {e}"))?;
            }
        }
        inner.by_size.insert(checkpoint.tree_size, signed.clone());
        Ok(signed)
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
        for store in inner.stores.iter_mut() {
            store
                .add_cosignature(&signed, witness)
                .map_err(|e| Fault::io(format!("cannot store the cosignature: {e}")))?;
        }
        inner.by_size.insert(tree_size, signed);
        Ok(())
    }
}

/// A stored note: the log's checkpoint, its signature checked, with the
/// cosignature lines it carries.
fn parse_stored(text: &str, verifier: &NoteVerifier, origin: &str) -> Result<Signed, String> {
    let opened = open_note(text, &[verifier as &dyn Verifier])
        .map_err(|e| format!("a stored note the log did not sign: {e}"))?;
    let checkpoint = Checkpoint::parse(&opened.text)
        .map_err(|e| format!("a stored checkpoint is malformed: {e}"))?;
    let mut note = opened.text.clone();
    note.push('\n');
    let mut cosignatures = BTreeMap::new();
    let (_, lines) = split_note(text).map_err(|e| format!("a stored note is malformed: {e}"))?;
    for line in lines {
        let signature =
            parse_signature_line(line).map_err(|e| format!("a stored note is malformed: {e}"))?;
        let line = format!("{line}\n");
        if signature.name == origin {
            note.push_str(&line);
        } else {
            cosignatures.insert(signature.name, line);
        }
    }
    Ok(Signed {
        checkpoint,
        note,
        cosignatures,
    })
}
