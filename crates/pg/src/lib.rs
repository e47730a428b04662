//! The ledger's journal in PostgreSQL: the same record bytes, in the same
//! order and at the same locations, behind the [`JournalStore`] trait the
//! file journal implements, next to the log's signed checkpoints and the
//! writer's lease. The database's synchronous replication then keeps the
//! records on more than one machine (docs/postgres.md, docs/deploy.md).
//!
//! A batch commits in one transaction that locks the head row, checks that
//! the head is where this writer last left it, inserts the records and
//! moves the head (size, end, tree root). A writer that finds the head
//! elsewhere (another writer got there first) commits nothing and fails,
//! so two writers never give one seq to two records. Records are only ever
//! inserted: the role the server uses may not update or delete them.
//!
//! A record's location is what it would be in a file journal with no
//! header: the first record is at 0, and each takes its length plus
//! [`FRAME_HEADER_BYTES`](fundtrail_store::journal::FRAME_HEADER_BYTES).
//! The sequencer computes locations the same way for either journal.
//!
//! [`JournalStore`]: fundtrail_store::JournalStore

mod checkpoints;
mod conn;
mod journal;
mod lease;

use std::io;

pub use checkpoints::PgCheckpoints;
pub use journal::PgJournal;
pub use lease::{holder_name, Lease, LEASE_MS_MIN};

/// The layout of the tables this build reads and writes. Format 1 (no
/// tree root, checkpoints or lease) is upgraded in place when opened by a
/// role that owns the tables.
pub const FORMAT_VERSION: i32 = 2;

/// The tables format 2 added to format 1: checkpoints, cosignatures and
/// the lease. A macro, so that both statements below are one literal.
macro_rules! tables_new_in_format_2 {
    () => {
        "
CREATE TABLE fundtrail_checkpoints (
    tree_size bigint PRIMARY KEY CHECK (tree_size >= 0),
    root_hash bytea NOT NULL CHECK (octet_length(root_hash) = 32),
    note      text NOT NULL
);
CREATE TABLE fundtrail_cosignatures (
    tree_size bigint NOT NULL REFERENCES fundtrail_checkpoints (tree_size),
    witness   text NOT NULL,
    line      text NOT NULL,
    PRIMARY KEY (tree_size, witness)
);
CREATE TABLE fundtrail_lease (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    holder     text,
    epoch      bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO fundtrail_lease DEFAULT VALUES;
"
    };
}

/// The tables, created by [`PgJournal::create`]. docs/postgres.md says
/// which grants the server's role needs.
pub const SCHEMA_SQL: &str = concat!(
    "
CREATE TABLE fundtrail_ledger (
    ledger_id      text PRIMARY KEY,
    format_version integer NOT NULL
);
CREATE TABLE fundtrail_records (
    seq       bigint PRIMARY KEY CHECK (seq >= 0),
    location  bigint NOT NULL UNIQUE CHECK (location >= 0),
    record    bytea NOT NULL,
    leaf_hash bytea NOT NULL CHECK (octet_length(leaf_hash) = 32)
);
CREATE TABLE fundtrail_head (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    size         bigint NOT NULL CHECK (size >= 0),
    end_location bigint NOT NULL CHECK (end_location >= 0),
    root_hash    bytea CHECK (octet_length(root_hash) = 32)
);
INSERT INTO fundtrail_head (size, end_location, root_hash)
    VALUES (0, 0, sha256(''::bytea));
",
    tables_new_in_format_2!()
);

/// The grants the server's role needs, and no more: records, checkpoints
/// and cosignatures are only inserted; the head and the lease are updated.
/// docs/postgres.md shows them for a role named `fundtrail_app`.
pub fn grants_sql(role: &str) -> String {
    format!(
        "GRANT SELECT ON fundtrail_ledger TO {role};
         GRANT SELECT, INSERT ON fundtrail_records, fundtrail_checkpoints, fundtrail_cosignatures TO {role};
         GRANT SELECT, UPDATE ON fundtrail_head, fundtrail_lease TO {role};"
    )
}

/// What format 2 added to format 1. The head's root stays NULL until the
/// first write after the upgrade, which the writer's check at opening
/// computes from the records.
const UPGRADE_FROM_1_SQL: &str = concat!(
    "
ALTER TABLE fundtrail_head ADD COLUMN root_hash bytea CHECK (octet_length(root_hash) = 32);
UPDATE fundtrail_ledger SET format_version = 2;
",
    tables_new_in_format_2!()
);

/// How this process reaches its databases over TLS, once set.
static TLS: std::sync::OnceLock<tokio_postgres_rustls::MakeRustlsConnect> =
    std::sync::OnceLock::new();

/// Has every connection this process makes from now on offer TLS and
/// verify the database's certificate (chain and host name) against the CA
/// certificates in the PEM file `ca_pem`: libpq's `sslrootcert`, checked as
/// `sslmode=verify-full`. Put `sslmode=require` in the connection string
/// to refuse a database that does not speak TLS. Set once per process.
pub fn use_root_certificates(ca_pem: &std::path::Path) -> Result<(), PgError> {
    use rustls::pki_types::pem::PemObject;
    let refuse = |why: String| PgError::Refused(format!("{}: {why}", ca_pem.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_pem)
        .map_err(|e| refuse(e.to_string()))?
    {
        roots
            .add(cert.map_err(|e| refuse(e.to_string()))?)
            .map_err(|e| refuse(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(refuse("holds no CA certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| refuse(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    TLS.set(tokio_postgres_rustls::MakeRustlsConnect::new(config))
        .map_err(|_| refuse("the database CA was already set for this process".into()))
}

/// The hosts and database a connection string names, never its password:
/// for logs and status lines.
pub fn target_of(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .map(|host| match host {
                    postgres::config::Host::Tcp(name) => name.clone(),
                    postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!(
                "database {} on {}",
                config.get_dbname().unwrap_or("postgres"),
                hosts.join(",")
            )
        }
        Err(_) => "a database whose connection string does not parse".into(),
    }
}

/// Why a PostgreSQL journal cannot be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {}", describe(.0))]
    Db(#[from] postgres::Error),
    #[error("{0}")]
    Refused(String),
}

impl From<io::Error> for PgError {
    fn from(e: io::Error) -> Self {
        PgError::Refused(e.to_string())
    }
}

/// Database values are never negative (the tables' checks).
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).expect("the tables' checks keep sizes and locations non-negative")
}

fn to_i64(value: u64) -> io::Result<i64> {
    i64::try_from(value)
        .map_err(|_| io::Error::other(format!("{value} is past PostgreSQL's bigint")))
}

/// A stored 32-byte hash (the tables' checks fix the length).
fn to_hash(bytes: &[u8]) -> fundtrail_tlog::Hash {
    bytes
        .try_into()
        .expect("the tables' checks keep hashes 32 bytes long")
}

fn db_error(e: postgres::Error) -> io::Error {
    io::Error::other(format!("PostgreSQL: {}", describe(&e)))
}

/// The server's message and SQLSTATE when the database answered, else
/// what went wrong on the way (the driver's own text is only "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => describe_db(db),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

fn describe_db(db: &postgres::error::DbError) -> String {
    format!("{} (SQLSTATE {})", db.message(), db.code().code())
}
