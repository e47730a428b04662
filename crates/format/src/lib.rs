//! fundtrail's file formats, and nothing else: the header every file opens
//! with ([`header`]: magic, format version, ledger id) and files of framed,
//! checksummed records ([`journal`]: the journal, log exports and the
//! checkpoint log). Plain `std` file I/O, no storage engine, so an auditor's
//! tool reads a journal or an export without linking the server's store.
//!
//! ```
//! use fundtrail_format::{header::FileKind, Journal};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("export.log");
//! let mut file = Journal::create(&path, FileKind::Export, "fundtrail-demo").unwrap();
//! file.append(&[b"record 0".to_vec()]).unwrap();
//! let frames: Vec<_> = file.scan(0).unwrap().map(|f| f.unwrap().record).collect();
//! assert_eq!(frames, vec![b"record 0".to_vec()]);
//! ```

pub mod header;
pub mod journal;

pub use journal::{Frame, Journal, JournalError, JournalReader};
