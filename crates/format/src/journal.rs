//! The journal: an append-only file that opens with a [`FileHeader`] and
//! then holds records, each framed as
//! `u32 LE length ‖ u32 LE CRC-32C(record) ‖ record`.
//!
//! A batch of frames is written with one `write` and made durable with one
//! `fdatasync` before any of its records is acknowledged. A crash can
//! therefore leave at most one unacknowledged, partly written batch at the
//! end of the file (a torn tail); [`Journal::scan`] finds where the good
//! frames end and [`Journal::truncate`] cuts the rest off.
//!
//! The checkpoint log and log exports use the same format with their own
//! magic bytes, so a file of one kind is never read as another.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fundtrail_core::limits::{BATCH_BYTES_MAX, RECORD_BYTES_MAX};

use crate::header::{FileHeader, FileKind, HeaderError};
use fundtrail_core::limits::FRAME_HEADER_BYTES as FRAME_HEADER_LEN;

/// The journal's file name inside the data directory.
pub const JOURNAL_FILE_NAME: &str = "journal.log";
/// Bytes of frame header: length and checksum.
pub const FRAME_HEADER_BYTES: u64 = FRAME_HEADER_LEN as u64;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("journal frame at byte {offset} is damaged: {reason}")]
    BadFrame { offset: u64, reason: String },
}

/// Why a file of the journal's format cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Header { path: PathBuf, source: HeaderError },
}

/// The append side of a file of framed records. Only the sequencer holds
/// the journal's.
pub struct Journal {
    file: File,
    path: PathBuf,
    header: FileHeader,
    /// Byte offset of the first frame: the header's length.
    first_offset: u64,
    end_offset: u64,
}

/// Reads frames by offset; cheap to clone, safe to use while appending.
#[derive(Clone)]
pub struct JournalReader {
    file: Arc<File>,
    first_offset: u64,
}

/// One good frame found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub offset: u64,
    pub record: Vec<u8>,
}

impl Journal {
    /// Creates the file `path` of kind `kind` for ledger `ledger_id`, with
    /// its header written and made durable. Fails if the file exists.
    pub fn create(path: &Path, kind: FileKind, ledger_id: &str) -> Result<Journal, OpenError> {
        let io_error = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let header = FileHeader::new(kind, ledger_id).map_err(|source| OpenError::Header {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(io_error)?;
        let bytes = header.encode();
        file.write_all(&bytes).map_err(io_error)?;
        file.sync_all().map_err(io_error)?;
        // Make the new directory entry durable too.
        sync_dir_of(path).map_err(io_error)?;
        let first_offset = bytes.len() as u64;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            header,
            first_offset,
            end_offset: first_offset,
        })
    }

    /// Opens the existing file `path`, which must be of kind `kind` and, when
    /// `ledger_id` is given, of that ledger. The error names the file and
    /// what its header holds instead.
    pub fn open(
        path: &Path,
        kind: FileKind,
        ledger_id: Option<&str>,
    ) -> Result<Journal, OpenError> {
        let io_error = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_error)?;
        let (header, first_offset) =
            FileHeader::read(&mut file, kind, ledger_id).map_err(|source| match source {
                HeaderError::Io(source) => OpenError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                source => OpenError::Header {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let end_offset = file.metadata().map_err(io_error)?.len();
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            header,
            first_offset,
            end_offset,
        })
    }

    /// Opens `path` if it exists, and creates it otherwise.
    pub fn open_or_create(
        path: &Path,
        kind: FileKind,
        ledger_id: &str,
    ) -> Result<Journal, OpenError> {
        if path.exists() {
            Journal::open(path, kind, Some(ledger_id))
        } else {
            Journal::create(path, kind, ledger_id)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ledger this file belongs to, as its header says.
    pub fn ledger_id(&self) -> &str {
        &self.header.ledger_id
    }

    /// Byte offset of the first frame (just past the header).
    pub fn first_offset(&self) -> u64 {
        self.first_offset
    }

    /// Byte length of the file as this handle knows it.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    pub fn reader(&self) -> io::Result<JournalReader> {
        Ok(JournalReader {
            file: Arc::new(File::open(&self.path)?),
            first_offset: self.first_offset,
        })
    }

    /// Appends `records` as one write and `fdatasync`s. Returns the offset of
    /// each record's frame. Sizes are checked before anything is written; an
    /// error after that means the file may hold part of the batch, so nothing
    /// may be acknowledged and the caller must stop writing.
    pub fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>> {
        let bytes_total = batch_bytes(records)?;
        let mut buffer = Vec::with_capacity(bytes_total);
        let mut offsets = Vec::with_capacity(records.len());
        for record in records {
            offsets.push(self.end_offset + buffer.len() as u64);
            encode_frame(record, &mut buffer);
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.end_offset += buffer.len() as u64;
        Ok(offsets)
    }

    /// Cuts the file at `offset` (the end of the last good frame) and makes
    /// the cut durable. The header is never cut.
    pub fn truncate(&mut self, offset: u64) -> io::Result<()> {
        assert!(offset >= self.first_offset, "the header is never cut");
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.end_offset = offset;
        Ok(())
    }

    /// Iterates over the frames from `offset` on (from the first frame when
    /// `offset` lies inside the header), in order. The iterator ends at a
    /// clean end of file, or yields one `BadFrame` error where the good
    /// frames end and then stops.
    pub fn scan(&self, offset: u64) -> io::Result<Scan> {
        let offset = offset.max(self.first_offset);
        let file = File::open(&self.path)?;
        let len = file.metadata()?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        io::Seek::seek(&mut reader, io::SeekFrom::Start(offset))?;
        Ok(Scan {
            reader,
            offset,
            len,
            done: false,
        })
    }
}

/// Bytes a batch of `records` takes framed, refused before anything is
/// written when a record or the batch is over its limit.
fn batch_bytes(records: &[Vec<u8>]) -> io::Result<usize> {
    let mut bytes_total: usize = 0;
    for record in records {
        if record.is_empty() || record.len() > RECORD_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a record of {} bytes is outside 1..=RECORD_BYTES_MAX",
                    record.len()
                ),
            ));
        }
        bytes_total += record.len() + FRAME_HEADER_BYTES as usize;
    }
    if bytes_total as u64 > BATCH_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a batch of {bytes_total} bytes is above BATCH_BYTES_MAX"),
        ));
    }
    Ok(bytes_total)
}

/// Appends one frame for `record` to `out`.
pub fn encode_frame(record: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(record.len()).expect("record length checked against RECORD_BYTES_MAX");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(record).to_le_bytes());
    out.extend_from_slice(record);
}

/// Checks a frame header against the bytes that follow it.
fn check_frame(offset: u64, header: [u8; 8], record: &[u8]) -> Result<(), JournalError> {
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if crc32c::crc32c(record) != crc {
        return Err(JournalError::BadFrame {
            offset,
            reason: "checksum mismatch".into(),
        });
    }
    Ok(())
}

fn frame_len(offset: u64, header: [u8; 8]) -> Result<usize, JournalError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > RECORD_BYTES_MAX {
        return Err(JournalError::BadFrame {
            offset,
            reason: format!("impossible record length {len}"),
        });
    }
    Ok(len)
}

/// Makes durable the directory entry of `path` (after creating or renaming
/// it): syncs the directory holding it.
pub fn sync_dir_of(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// See [`Journal::scan`].
pub struct Scan {
    reader: BufReader<File>,
    offset: u64,
    len: u64,
    done: bool,
}

impl Scan {
    fn next_frame(&mut self) -> Result<Option<Frame>, JournalError> {
        if self.offset >= self.len {
            return Ok(None);
        }
        let offset = self.offset;
        if self.len - offset < FRAME_HEADER_BYTES {
            return Err(JournalError::BadFrame {
                offset,
                reason: "frame header cut short".into(),
            });
        }
        let mut header = [0u8; 8];
        self.reader.read_exact(&mut header)?;
        let len = frame_len(offset, header)?;
        if self.len - offset - FRAME_HEADER_BYTES < len as u64 {
            return Err(JournalError::BadFrame {
                offset,
                reason: "record cut short".into(),
            });
        }
        let mut record = vec![0u8; len];
        self.reader.read_exact(&mut record)?;
        check_frame(offset, header, &record)?;
        self.offset = offset + FRAME_HEADER_BYTES + len as u64;
        Ok(Some(Frame { offset, record }))
    }
}

impl Iterator for Scan {
    type Item = Result<Frame, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_frame() {
            Ok(Some(frame)) => Some(Ok(frame)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl JournalReader {
    /// Reads and checks the record whose frame starts at `offset`.
    pub fn read(&self, offset: u64) -> Result<Vec<u8>, JournalError> {
        if offset < self.first_offset {
            return Err(JournalError::BadFrame {
                offset,
                reason: "the offset lies inside the file header".into(),
            });
        }
        let mut header = [0u8; 8];
        self.file.read_exact_at(&mut header, offset)?;
        let len = frame_len(offset, header)?;
        let mut record = vec![0u8; len];
        self.file
            .read_exact_at(&mut record, offset + FRAME_HEADER_BYTES)?;
        check_frame(offset, header, &record)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_journal(dir: &Path) -> Journal {
        Journal::create(
            &dir.join(JOURNAL_FILE_NAME),
            FileKind::Journal,
            "fundtrail-test",
        )
        .unwrap()
    }

    fn reopen(dir: &Path) -> Journal {
        Journal::open(
            &dir.join(JOURNAL_FILE_NAME),
            FileKind::Journal,
            Some("fundtrail-test"),
        )
        .unwrap()
    }

    #[test]
    fn appends_scans_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = new_journal(dir.path());
        let h = journal.first_offset();
        assert_eq!(
            h,
            FileHeader::new(FileKind::Journal, "fundtrail-test")
                .unwrap()
                .encode()
                .len() as u64
        );
        let offsets = journal
            .append(&[b"one".to_vec(), b"two!".to_vec()])
            .unwrap();
        let more = journal.append(&[b"three".to_vec()]).unwrap();
        assert_eq!(offsets, vec![h, h + 11]);
        assert_eq!(more, vec![h + 23]);
        let frames: Vec<Frame> = journal.scan(0).unwrap().map(|f| f.unwrap()).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[2],
            Frame {
                offset: h + 23,
                record: b"three".to_vec()
            }
        );
        let reader = journal.reader().unwrap();
        assert_eq!(reader.read(h + 11).unwrap(), b"two!");
        assert!(reader.read(0).is_err(), "the header is not a frame");
        // Reopening finds the same end.
        let reopened = reopen(dir.path());
        assert_eq!(reopened.end_offset(), journal.end_offset());
        assert_eq!(reopened.ledger_id(), "fundtrail-test");
    }

    #[test]
    fn refuses_other_ledgers_kinds_and_headerless_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE_NAME);
        new_journal(dir.path());
        let other = Journal::open(&path, FileKind::Journal, Some("fundtrail-other"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            other.contains(JOURNAL_FILE_NAME) && other.contains("belongs to ledger"),
            "{other}"
        );
        let kind = Journal::open(&path, FileKind::Export, None)
            .err()
            .unwrap()
            .to_string();
        assert!(kind.contains("is a journal, not a log export"), "{kind}");
        let old = dir.path().join("old.log");
        let mut frame = Vec::new();
        encode_frame(b"record 0", &mut frame);
        std::fs::write(&old, &frame).unwrap();
        let missing = Journal::open(&old, FileKind::Journal, None)
            .err()
            .unwrap()
            .to_string();
        assert!(
            missing.contains("old.log") && missing.contains("no fundtrail file header"),
            "{missing}"
        );
        assert!(Journal::create(&path, FileKind::Journal, "fundtrail-test").is_err());
    }

    #[test]
    fn oversized_records_and_batches_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = new_journal(dir.path());
        let end = journal.end_offset();
        assert!(journal.append(&[vec![1; RECORD_BYTES_MAX + 1]]).is_err());
        assert!(journal.append(&[Vec::new()]).is_err());
        let batch =
            vec![vec![1; RECORD_BYTES_MAX]; (BATCH_BYTES_MAX as usize / RECORD_BYTES_MAX) + 1];
        assert!(journal.append(&batch).is_err());
        assert_eq!(journal.end_offset(), end);
        assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), end);
    }

    #[test]
    fn torn_tail_is_found_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = new_journal(dir.path());
        journal.append(&[b"kept".to_vec()]).unwrap();
        let good_end = journal.end_offset();
        // Half a frame, as a crash in the middle of a write leaves it.
        let mut frame = Vec::new();
        encode_frame(b"never acknowledged", &mut frame);
        journal.file.write_all(&frame[..13]).unwrap();
        let journal = reopen(dir.path());
        let mut scan = journal.scan(0).unwrap();
        assert!(scan.next().unwrap().is_ok());
        match scan.next() {
            Some(Err(JournalError::BadFrame { offset, .. })) => assert_eq!(offset, good_end),
            other => panic!("expected a bad frame, got {other:?}"),
        }
        assert!(scan.next().is_none());
        let mut journal = journal;
        journal.truncate(good_end).unwrap();
        assert_eq!(journal.scan(0).unwrap().count(), 1);
    }

    #[test]
    fn flipped_byte_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = new_journal(dir.path());
        let at = journal.append(&[b"payload".to_vec()]).unwrap()[0];
        let mut bytes = std::fs::read(journal.path()).unwrap();
        bytes[at as usize + 10] ^= 1;
        std::fs::write(journal.path(), &bytes).unwrap();
        assert!(journal.reader().unwrap().read(at).is_err());
        assert!(journal.scan(0).unwrap().next().unwrap().is_err());
    }
}
