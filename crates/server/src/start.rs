//! Why a server did not start, sorted by who acts on it. Each variant's
//! message says, for people, what was found; the variant says whether to
//! fix the configuration, wait for another server, mend a disk or database,
//! or have a person look at the ledger before anything serves it.

use fundtrail_core::{Fault, FaultKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The configuration and the data directory do not fit: no ledger there
    /// yet, a file journal where PostgreSQL was asked for, a key file that
    /// is missing or not the key genesis named, a bad address or TLS file,
    /// a ledger written by a newer build.
    #[error("{0}")]
    Config(String),
    /// Another server holds the data directory.
    #[error("{0}")]
    Locked(String),
    /// A disk, the database or the upstream could not be opened or read.
    /// Starting again once it is mended may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// What was found is damaged, contradicts itself or a signed
    /// checkpoint, or belongs to another ledger. Serving it could mislead:
    /// a person must look first.
    #[error("{0}")]
    Refused(String),
}

impl StartError {
    /// The process's exit status for this error, from `sysexits.h`, so a
    /// supervisor can tell "retry later" (69, 75) from "call someone" (65)
    /// and "fix the configuration" (78).
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Config(_) => 78,
            StartError::Locked(_) => 75,
            StartError::Unavailable(_) => 69,
            StartError::Refused(_) => 65,
        }
    }

    /// The same error, its message prefixed by what was being done.
    pub fn during(self, what: impl std::fmt::Display) -> StartError {
        let prefix = |message: String| format!("{what}: {message}");
        match self {
            StartError::Config(m) => StartError::Config(prefix(m)),
            StartError::Locked(m) => StartError::Locked(prefix(m)),
            StartError::Unavailable(m) => StartError::Unavailable(prefix(m)),
            StartError::Refused(m) => StartError::Refused(prefix(m)),
        }
    }
}

impl From<Fault> for StartError {
    fn from(fault: Fault) -> StartError {
        let message = fault.message;
        match fault.kind {
            FaultKind::Io => StartError::Unavailable(message),
            FaultKind::Corrupt | FaultKind::Bug => StartError::Refused(message),
            FaultKind::TooNew => StartError::Config(message),
        }
    }
}

impl From<fundtrail_store::journal::OpenError> for StartError {
    fn from(error: fundtrail_store::journal::OpenError) -> StartError {
        use fundtrail_store::journal::OpenError;
        match error {
            OpenError::Io { .. } => StartError::Unavailable(error.to_string()),
            OpenError::Header { .. } => StartError::Refused(error.to_string()),
        }
    }
}

impl From<fundtrail_pg::PgError> for StartError {
    fn from(error: fundtrail_pg::PgError) -> StartError {
        let message = format!("the journal in PostgreSQL: {error}");
        match error {
            fundtrail_pg::PgError::Db(_) => StartError::Unavailable(message),
            fundtrail_pg::PgError::Refused(_) => StartError::Refused(message),
        }
    }
}
