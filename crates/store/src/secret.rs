//! Files holding secret keys: created readable and writable by the owner only.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `contents` to a new file at `path` with mode 0600 and syncs it.
/// Refuses to overwrite an existing file: a lost key cannot be recovered.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
