//! The header every fundtrail file opens with (docs/record-format.md,
//! "File headers"):
//!
//! ```text
//! magic            8 bytes   which kind of file: FileKind::magic
//! format_version   u32 LE    FORMAT_VERSION
//! ledger_id_len    u16 LE    1..=ID_BYTES_MAX
//! ledger_id        UTF-8     the ledger the file belongs to
//! header_crc       u32 LE    CRC-32C of every header byte before it
//! ```
//!
//! A file of another kind, another ledger, an unknown version, or with no
//! header at all is refused when it is opened, never read as records.

use std::io::{self, Read};

use fundtrail_core::limits::ID_BYTES_MAX;

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Header bytes besides the ledger id.
const FIXED_BYTES: usize = 8 + 4 + 2 + 4;
/// Largest header.
pub const HEADER_BYTES_MAX: usize = FIXED_BYTES + ID_BYTES_MAX;

/// The kinds of fundtrail file: the framed-record files and the derived
/// slot files (`fundtrail_store::slots`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `journal.log`: the ledger's records.
    Journal,
    /// `checkpoints.log`: the checkpoints the log signed.
    Checkpoints,
    /// A file written by `fundtrail export`.
    Export,
    /// `access.log`: who read what (the access log's entries).
    AccessLog,
    /// Derived `tree.hashes`: the Merkle tree's stored hashes, 32-byte slots.
    TreeHashes,
    /// Derived `record.offsets`: each record's journal offset, 8-byte slots.
    RecordOffsets,
    /// An audit saved by `fundtrail audit --save`, to resume from.
    AuditState,
}

impl FileKind {
    const ALL: [FileKind; 7] = [
        FileKind::Journal,
        FileKind::Checkpoints,
        FileKind::Export,
        FileKind::AccessLog,
        FileKind::TreeHashes,
        FileKind::RecordOffsets,
        FileKind::AuditState,
    ];

    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Journal => b"FTJOURNL",
            FileKind::Checkpoints => b"FTCHKPTS",
            FileKind::Export => b"FTEXPORT",
            FileKind::AccessLog => b"FTACCESS",
            FileKind::TreeHashes => b"FTTREEHS",
            FileKind::RecordOffsets => b"FTOFFSET",
            FileKind::AuditState => b"FTAUDITS",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Journal => "a journal",
            FileKind::Checkpoints => "a checkpoint log",
            FileKind::Export => "a log export",
            FileKind::AccessLog => "an access log",
            FileKind::TreeHashes => "a tree-hash file",
            FileKind::RecordOffsets => "a record-offset file",
            FileKind::AuditState => "a saved audit",
        }
    }
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("has no fundtrail file header (it begins with {found}); it is not a fundtrail file, or was written before files carried headers")]
    Missing { found: String },
    #[error("is {found}, not {wanted}")]
    WrongKind {
        found: &'static str,
        wanted: &'static str,
    },
    #[error("has format version {found}; this build reads version {FORMAT_VERSION}")]
    UnknownVersion { found: u32 },
    #[error("belongs to ledger {found:?}, not to ledger {wanted:?}")]
    OtherLedger { found: String, wanted: String },
    #[error("has a damaged header: {0}")]
    Damaged(String),
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    pub format_version: u32,
    pub ledger_id: String,
}

impl FileHeader {
    /// The header of a new file of `kind` for `ledger_id`.
    pub fn new(kind: FileKind, ledger_id: &str) -> Result<FileHeader, HeaderError> {
        if ledger_id.is_empty() || ledger_id.len() > ID_BYTES_MAX {
            return Err(HeaderError::Damaged(format!(
                "a ledger id must be 1 to {ID_BYTES_MAX} bytes"
            )));
        }
        Ok(FileHeader {
            kind,
            format_version: FORMAT_VERSION,
            ledger_id: ledger_id.to_string(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let id = self.ledger_id.as_bytes();
        let id_len = u16::try_from(id.len()).expect("ledger id length checked by new");
        let mut out = Vec::with_capacity(FIXED_BYTES + id.len());
        out.extend_from_slice(self.kind.magic());
        out.extend_from_slice(&self.format_version.to_le_bytes());
        out.extend_from_slice(&id_len.to_le_bytes());
        out.extend_from_slice(id);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        assert!(out.len() <= HEADER_BYTES_MAX);
        out
    }

    /// Reads the header at the start of `file`, checks it is of `kind` (and
    /// of `ledger_id`, when given), and returns it with its length.
    pub fn read(
        file: &mut impl Read,
        kind: FileKind,
        ledger_id: Option<&str>,
    ) -> Result<(FileHeader, u64), HeaderError> {
        let mut magic = [0u8; 8];
        let got = read_up_to(file, &mut magic)?;
        if got < magic.len() {
            return Err(HeaderError::Missing {
                found: describe(&magic[..got]),
            });
        }
        if &magic != kind.magic() {
            return Err(match FileKind::ALL.iter().find(|k| k.magic() == &magic) {
                Some(other) => HeaderError::WrongKind {
                    found: other.name(),
                    wanted: kind.name(),
                },
                None => HeaderError::Missing {
                    found: describe(&magic),
                },
            });
        }
        let mut fixed = [0u8; 6];
        read_exact(file, &mut fixed)?;
        let format_version = u32::from_le_bytes(fixed[0..4].try_into().expect("4 bytes"));
        let id_len = usize::from(u16::from_le_bytes([fixed[4], fixed[5]]));
        if id_len == 0 || id_len > ID_BYTES_MAX {
            return Err(HeaderError::Damaged(format!(
                "it names a ledger id of {id_len} bytes"
            )));
        }
        let mut id = vec![0u8; id_len];
        read_exact(file, &mut id)?;
        let mut crc = [0u8; 4];
        read_exact(file, &mut crc)?;
        let mut covered = magic.to_vec();
        covered.extend_from_slice(&fixed);
        covered.extend_from_slice(&id);
        if crc32c::crc32c(&covered) != u32::from_le_bytes(crc) {
            return Err(HeaderError::Damaged("its checksum does not match".into()));
        }
        if format_version != FORMAT_VERSION {
            return Err(HeaderError::UnknownVersion {
                found: format_version,
            });
        }
        let found = String::from_utf8(id)
            .map_err(|_| HeaderError::Damaged("its ledger id is not UTF-8".into()))?;
        if let Some(wanted) = ledger_id {
            if found != wanted {
                return Err(HeaderError::OtherLedger {
                    found,
                    wanted: wanted.to_string(),
                });
            }
        }
        let header = FileHeader {
            kind,
            format_version,
            ledger_id: found,
        };
        Ok((header, (covered.len() + 4) as u64))
    }
}

fn read_exact(file: &mut impl Read, buf: &mut [u8]) -> Result<(), HeaderError> {
    if read_up_to(file, buf)? < buf.len() {
        return Err(HeaderError::Damaged(
            "the file ends inside its header".into(),
        ));
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// The first bytes of a file, for a message.
fn describe(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "nothing: the file is empty".into();
    }
    format!("bytes {}", hex_bytes(bytes))
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], kind: FileKind, ledger: Option<&str>) -> Result<FileHeader, String> {
        FileHeader::read(&mut &bytes[..], kind, ledger)
            .map(|(h, len)| {
                assert_eq!(len as usize, h.encode().len());
                h
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_ours() {
        let header = FileHeader::new(FileKind::Journal, "fundtrail-abc").unwrap();
        let bytes = header.encode();
        assert_eq!(
            read(&bytes, FileKind::Journal, Some("fundtrail-abc")).unwrap(),
            header
        );
        assert_eq!(read(&bytes, FileKind::Journal, None).unwrap(), header);
        let other = read(&bytes, FileKind::Journal, Some("fundtrail-xyz")).unwrap_err();
        assert!(
            other.contains("belongs to ledger \"fundtrail-abc\""),
            "{other}"
        );
        let kind = read(&bytes, FileKind::Checkpoints, None).unwrap_err();
        assert_eq!(kind, "is a journal, not a checkpoint log");
        assert!(read(b"", FileKind::Journal, None)
            .unwrap_err()
            .contains("empty"));
        // A journal from before headers starts with a frame's length.
        let missing = read(&[0x2a, 1, 0, 0, 9, 9, 9, 9, 1], FileKind::Journal, None).unwrap_err();
        assert!(
            missing.contains("has no fundtrail file header"),
            "{missing}"
        );
        let mut version = bytes.clone();
        version[8] = 2;
        let crc_at = version.len() - 4;
        let crc = crc32c::crc32c(&version[..crc_at]).to_le_bytes();
        version[crc_at..].copy_from_slice(&crc);
        let unknown = read(&version, FileKind::Journal, None).unwrap_err();
        assert!(unknown.contains("format version 2"), "{unknown}");
        let mut damaged = bytes.clone();
        damaged[15] ^= 1;
        assert!(read(&damaged, FileKind::Journal, None)
            .unwrap_err()
            .contains("checksum"));
        assert!(read(&bytes[..bytes.len() - 1], FileKind::Journal, None)
            .unwrap_err()
            .contains("ends inside its header"));
    }
}
