//! One engine per data directory. Two processes on one directory would
//! both append to its journal, and the second one's recovery could cut
//! records the first was writing: an exclusive `flock` on
//! [`LOCK_FILE_NAME`], taken before anything in the directory is read,
//! refuses the second.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::start::StartError;

/// The lock file in a data directory (empty; only its lock matters).
pub const LOCK_FILE_NAME: &str = "lock";

/// Held while an engine has its data directory open; released when
/// dropped (the kernel releases it too if the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (created if missing), or says that
    /// another process holds it.
    pub fn take(data_dir: &Path) -> Result<DataDirLock, StartError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StartError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(LOCK_FILE_NAME);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StartError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: flock on a descriptor this function owns; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EWOULDBLOCK) => StartError::Locked(format!(
                    "{} is in use by another fundtrail server: one server per data directory",
                    data_dir.display()
                )),
                _ => StartError::Unavailable(format!("cannot lock {}: {error}", path.display())),
            });
        }
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::take(dir.path()).unwrap();
        let refused = DataDirLock::take(dir.path()).unwrap_err();
        assert!(matches!(refused, StartError::Locked(_)), "{refused}");
        assert!(
            refused
                .to_string()
                .contains("in use by another fundtrail server"),
            "{refused}"
        );
        drop(first);
        DataDirLock::take(dir.path()).unwrap();
    }
}
