//! The journal: an append-only file of records, each framed as
//! `u32 LE length ‖ u32 LE CRC-32C(record) ‖ record`.
//!
//! A batch of frames is written with one `write` and made durable with one
//! `fdatasync` before any of its records is acknowledged. A crash can
//! therefore leave at most one unacknowledged, partly written batch at the
//! end of the file (a torn tail); [`Journal::scan`] finds where the good
//! frames end and [`Journal::truncate`] cuts the rest off.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal's file name inside the data directory.
pub const JOURNAL_FILE_NAME: &str = "journal.log";
/// Bytes of frame header: length and checksum.
pub const FRAME_HEADER_BYTES: u64 = 8;
/// Largest record the journal accepts.
pub const RECORD_BYTES_MAX: usize = 256 * 1024;
/// Largest batch written with one fdatasync. Bounds how much a torn tail can
/// hold: anything bad further from the end than this is corruption, not a
/// torn write.
pub const BATCH_BYTES_MAX: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("journal frame at byte {offset} is damaged: {reason}")]
    BadFrame { offset: u64, reason: String },
}

/// The append side of the journal. Only the sequencer holds one.
pub struct Journal {
    file: File,
    path: PathBuf,
    end_offset: u64,
}

/// Reads frames by offset; cheap to clone, safe to use while appending.
#[derive(Clone)]
pub struct JournalReader {
    file: Arc<File>,
}

/// One good frame found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub offset: u64,
    pub record: Vec<u8>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir`.
    pub fn open(dir: &Path) -> io::Result<Journal> {
        Journal::open_named(dir, JOURNAL_FILE_NAME)
    }

    /// Opens (creating if needed) a file of the journal's frame format in
    /// `dir`: the checkpoint log and log exports use it too.
    pub fn open_named(dir: &Path, file_name: &str) -> io::Result<Journal> {
        let path = dir.join(file_name);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if !existed {
            // Make the new directory entry durable too.
            File::open(dir)?.sync_all()?;
        }
        let end_offset = file.metadata()?.len();
        Ok(Journal {
            file,
            path,
            end_offset,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Byte length of the journal as this handle knows it.
    pub fn end_offset(&self) -> u64 {
        self.end_offset
    }

    pub fn reader(&self) -> io::Result<JournalReader> {
        Ok(JournalReader {
            file: Arc::new(File::open(&self.path)?),
        })
    }

    /// Appends `records` as one write and `fdatasync`s. Returns the offset of
    /// each record's frame. On error nothing may be acknowledged, and the
    /// caller must stop writing: the file may hold part of the batch.
    pub fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>> {
        let bytes_total: usize = records
            .iter()
            .map(|r| r.len() + FRAME_HEADER_BYTES as usize)
            .sum();
        if bytes_total as u64 > BATCH_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "journal batch above BATCH_BYTES_MAX",
            ));
        }
        let mut buffer = Vec::with_capacity(bytes_total);
        let mut offsets = Vec::with_capacity(records.len());
        for record in records {
            if record.len() > RECORD_BYTES_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "record above RECORD_BYTES_MAX",
                ));
            }
            offsets.push(self.end_offset + buffer.len() as u64);
            encode_frame(record, &mut buffer);
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.end_offset += buffer.len() as u64;
        Ok(offsets)
    }

    /// Cuts the journal at `offset` (the end of the last good frame) and
    /// makes the cut durable.
    pub fn truncate(&mut self, offset: u64) -> io::Result<()> {
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.end_offset = offset;
        Ok(())
    }

    /// Iterates over the frames from `offset` on, in order. The iterator ends
    /// at a clean end of file, or yields one `BadFrame` error where the good
    /// frames end and then stops.
    pub fn scan(&self, offset: u64) -> io::Result<Scan> {
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

/// See [`Journal::scan`].
pub struct Scan {
    reader: BufReader<File>,
    offset: u64,
    len: u64,
    done: bool,
}

impl Scan {
    /// The offset just past the last frame yielded.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of the file from the current offset to its end.
    pub fn bytes_left(&self) -> u64 {
        self.len.saturating_sub(self.offset)
    }

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

    #[test]
    fn appends_scans_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        let offsets = journal
            .append(&[b"one".to_vec(), b"two!".to_vec()])
            .unwrap();
        let more = journal.append(&[b"three".to_vec()]).unwrap();
        assert_eq!(offsets, vec![0, 11]);
        assert_eq!(more, vec![23]);
        let frames: Vec<Frame> = journal.scan(0).unwrap().map(|f| f.unwrap()).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[2],
            Frame {
                offset: 23,
                record: b"three".to_vec()
            }
        );
        let reader = journal.reader().unwrap();
        assert_eq!(reader.read(11).unwrap(), b"two!");
        // Reopening finds the same end.
        let reopened = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened.end_offset(), journal.end_offset());
    }

    #[test]
    fn torn_tail_is_found_and_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(&[b"kept".to_vec()]).unwrap();
        let good_end = journal.end_offset();
        // Half a frame, as a crash in the middle of a write leaves it.
        let mut frame = Vec::new();
        encode_frame(b"never acknowledged", &mut frame);
        journal.file.write_all(&frame[..13]).unwrap();
        let journal = Journal::open(dir.path()).unwrap();
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
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.append(&[b"payload".to_vec()]).unwrap();
        let mut bytes = std::fs::read(journal.path()).unwrap();
        bytes[10] ^= 1;
        std::fs::write(journal.path(), &bytes).unwrap();
        assert!(journal.reader().unwrap().read(0).is_err());
        assert!(journal.scan(0).unwrap().next().unwrap().is_err());
    }
}
