//! Append-only files of fixed-size slots: slot `i` of an `N`-byte file sits
//! at byte `header + i·N`, so reading one is one positioned read and a
//! Merkle proof is a handful of them.
//!
//! Two such files hold what derived state needs by position:
//! [`TREE_FILE_NAME`] (every stored tree hash, at its `stored_hash_index`)
//! and [`OFFSETS_FILE_NAME`] (the journal offset of each record, by seq).
//! Both are derived: never fsynced, rebuilt from the journal when they fall
//! short of the state's watermark (after an operating-system crash).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::header::{FileHeader, FileKind, HeaderError};

/// The tree-hash file inside the derived-state directory.
pub const TREE_FILE_NAME: &str = "tree.hashes";
/// The record-offset file inside the derived-state directory.
pub const OFFSETS_FILE_NAME: &str = "record.offsets";

/// Slots written at most in one positioned write.
const WRITE_SLOTS_MAX: usize = 4096;

/// A file of `N`-byte slots after a [`FileHeader`].
pub struct SlotFile<const N: usize> {
    file: File,
    path: PathBuf,
    /// Byte offset of slot 0: the header's length.
    first_offset: u64,
}

impl<const N: usize> SlotFile<N> {
    /// Opens `path` (of `kind`, for `ledger_id`), creating it if missing.
    pub fn open_or_create(
        path: &Path,
        kind: FileKind,
        ledger_id: &str,
    ) -> Result<SlotFile<N>, String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| fail(&e))?;
        let empty = file.metadata().map_err(|e| fail(&e))?.len() == 0;
        let first_offset = if empty {
            let header = FileHeader::new(kind, ledger_id)
                .map_err(|e| fail(&e))?
                .encode();
            file.write_all_at(&header, 0).map_err(|e| fail(&e))?;
            header.len() as u64
        } else {
            let (_, len) = FileHeader::read(&mut file, kind, Some(ledger_id))
                .map_err(|e: HeaderError| fail(&e))?;
            len
        };
        Ok(SlotFile {
            file,
            path: path.to_path_buf(),
            first_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Complete slots in the file.
    pub fn len(&self) -> io::Result<u64> {
        let bytes = self.file.metadata()?.len();
        Ok(bytes.saturating_sub(self.first_offset) / N as u64)
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes `slots` as slots `first`, `first + 1`, …, over whatever the
    /// file held there. Slots before `first` must exist: the file has no
    /// holes.
    pub fn write(&self, first: u64, slots: &[[u8; N]]) -> io::Result<()> {
        let mut at = self.slot_offset(first);
        let mut buf = Vec::with_capacity(N * slots.len().min(WRITE_SLOTS_MAX));
        for chunk in slots.chunks(WRITE_SLOTS_MAX) {
            buf.clear();
            for slot in chunk {
                buf.extend_from_slice(slot);
            }
            self.file.write_all_at(&buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }

    /// Slot `index`, or `None` past the end.
    pub fn read(&self, index: u64) -> io::Result<Option<[u8; N]>> {
        let mut slot = [0u8; N];
        match self.file.read_exact_at(&mut slot, self.slot_offset(index)) {
            Ok(()) => Ok(Some(slot)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether any of the first `count` slots is all zeros: what a page the
    /// operating system lost in a crash reads as. No slot we write is zero
    /// (a record offset is past the header; a hash is never zero).
    pub fn any_zero_slot(&self, count: u64) -> io::Result<bool> {
        let mut buf = vec![0u8; N * WRITE_SLOTS_MAX];
        let mut index = 0;
        while index < count {
            let slots = (count - index).min(WRITE_SLOTS_MAX as u64) as usize;
            let chunk = &mut buf[..slots * N];
            self.file.read_exact_at(chunk, self.slot_offset(index))?;
            if chunk
                .chunks_exact(N)
                .any(|slot| slot.iter().all(|&b| b == 0))
            {
                return Ok(true);
            }
            index += slots as u64;
        }
        Ok(false)
    }

    /// Keeps the first `count` slots and drops the rest.
    pub fn truncate(&self, count: u64) -> io::Result<()> {
        self.file.set_len(self.slot_offset(count))
    }

    /// Makes the file's bytes durable (at clean shutdown).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn slot_offset(&self, index: u64) -> u64 {
        let bytes = index
            .checked_mul(N as u64)
            .and_then(|b| b.checked_add(self.first_offset));
        bytes.expect("a slot index addresses less than 2^64 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_read_back_by_index_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let file = SlotFile::<8>::open_or_create(&path, FileKind::RecordOffsets, "l").unwrap();
        assert_eq!(file.len().unwrap(), 0);
        file.write(0, &[[1; 8], [2; 8], [3; 8]]).unwrap();
        file.write(3, &[[4; 8]]).unwrap();
        assert_eq!(file.read(2).unwrap(), Some([3; 8]));
        assert_eq!(file.read(4).unwrap(), None);
        drop(file);
        let file = SlotFile::<8>::open_or_create(&path, FileKind::RecordOffsets, "l").unwrap();
        assert_eq!(file.len().unwrap(), 4);
        file.truncate(2).unwrap();
        assert_eq!(file.len().unwrap(), 2);
        assert_eq!(file.read(2).unwrap(), None);
        assert!(!file.any_zero_slot(2).unwrap());
        file.write(2, &[[9; 8], [0; 8]]).unwrap();
        assert!(!file.any_zero_slot(3).unwrap());
        assert!(file.any_zero_slot(4).unwrap());
        assert!(SlotFile::<8>::open_or_create(&path, FileKind::TreeHashes, "l").is_err());
        assert!(SlotFile::<8>::open_or_create(&path, FileKind::RecordOffsets, "m").is_err());
    }

    #[test]
    fn a_partly_written_slot_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let file = SlotFile::<32>::open_or_create(&path, FileKind::TreeHashes, "l").unwrap();
        file.write(0, &[[7; 32]]).unwrap();
        let torn = file.slot_offset(1) + 5;
        file.file.set_len(torn).unwrap();
        assert_eq!(file.len().unwrap(), 1);
        assert_eq!(file.read(1).unwrap(), None);
    }
}
