//! The ledger's journal in PostgreSQL: the same record bytes, in the same
//! order and at the same locations, behind the [`JournalStore`] trait the
//! file journal implements. The database's synchronous replication then
//! keeps the records on more than one machine (docs/postgres.md).
//!
//! A batch commits in one transaction that locks the head row, checks that
//! the head is where this writer last left it, inserts the records and
//! moves the head. A writer that finds the head elsewhere (another writer
//! got there first) commits nothing and fails, so two writers never give
//! one seq to two records. Records are only ever inserted: the role the
//! server uses may not update or delete them.
//!
//! A record's location is what it would be in a file journal with no
//! header: the first record is at 0, and each takes its length plus
//! [`FRAME_HEADER_BYTES`]. The sequencer computes locations the same way
//! for either journal.

use std::io;
use std::sync::Arc;

use fundtrail_core::limits::RECORD_BYTES_MAX;
use fundtrail_store::journal::{Frame, JournalError, FRAME_HEADER_BYTES};
use fundtrail_store::{FrameIter, JournalStore, RecordReader};
use postgres::{Client, NoTls};

/// The layout of the tables this build reads and writes.
pub const FORMAT_VERSION: i32 = 1;

/// The tables, created by [`PgJournal::create`]. docs/postgres.md says
/// which grants the server's role needs.
pub const SCHEMA_SQL: &str = "
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
    end_location bigint NOT NULL CHECK (end_location >= 0)
);
";

/// Records a scan fetches at a time.
const SCAN_PAGE_RECORDS: i64 = 1_000;

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// A connection on a thread of its own. The `postgres` driver runs a
/// runtime of its own and panics when called from inside another (the
/// server's async workers); this way any thread may use the journal, and
/// waits for the database as it would wait for a file.
struct Conn {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Conn {
    fn connect(url: &str) -> Result<Conn, PgError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (ready, connected) = std::sync::mpsc::channel();
        let url = url.to_string();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let mut client = match Client::connect(&url, NoTls) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut client);
                }
            })
            .map_err(|e| PgError::Refused(format!("cannot start a database thread: {e}")))?;
        connected
            .recv()
            .map_err(|_| PgError::Refused("the database thread stopped".into()))??;
        Ok(Conn { jobs })
    }

    /// Runs `job` with the connection and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> T + Send + 'static,
    ) -> io::Result<T> {
        let (done, answer) = std::sync::mpsc::channel();
        let job: Job = Box::new(move |client| {
            let _ = done.send(job(client));
        });
        let gone = || io::Error::other("the database connection's thread stopped");
        self.jobs.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())
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

/// The append side of the journal. Only the sequencer holds it.
pub struct PgJournal {
    url: String,
    conn: Conn,
    ledger_id: String,
    /// Records in the journal as this writer last committed or read them.
    size: u64,
    /// Location just past the last record.
    end: u64,
}

impl PgJournal {
    /// Creates the tables in the database at `url`, for ledger
    /// `ledger_id`, with an empty head. Fails if they exist.
    pub fn create(url: &str, ledger_id: &str) -> Result<PgJournal, PgError> {
        let conn = Conn::connect(url)?;
        let id = ledger_id.to_string();
        conn.run(move |client| -> Result<(), PgError> {
            let mut tx = client.transaction()?;
            tx.batch_execute(SCHEMA_SQL)?;
            tx.execute(
                "INSERT INTO fundtrail_ledger (ledger_id, format_version) VALUES ($1, $2)",
                &[&id, &FORMAT_VERSION],
            )?;
            tx.execute(
                "INSERT INTO fundtrail_head (size, end_location) VALUES (0, 0)",
                &[],
            )?;
            tx.commit()?;
            Ok(())
        })
        .map_err(|e| PgError::Refused(e.to_string()))??;
        PgJournal::open(url, Some(ledger_id))
    }

    /// Opens the journal in the database at `url`: refused if it belongs
    /// to another ledger than `ledger_id` (when given), has another format
    /// version, or its head does not match its last record.
    pub fn open(url: &str, ledger_id: Option<&str>) -> Result<PgJournal, PgError> {
        let conn = Conn::connect(url)?;
        let (found, size, end) = conn
            .run(read_identity)
            .map_err(|e| PgError::Refused(e.to_string()))??;
        if ledger_id.is_some_and(|wanted| wanted != found) {
            return Err(PgError::Refused(format!(
                "the database holds ledger {found}, not {}",
                ledger_id.unwrap_or_default()
            )));
        }
        Ok(PgJournal {
            url: url.to_string(),
            conn,
            ledger_id: found,
            size,
            end,
        })
    }

    /// Records in the journal.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The ledger id, size and end the journal's tables hold, checked: the
/// format version is this build's and the head matches the last record.
fn read_identity(client: &mut Client) -> Result<(String, u64, u64), PgError> {
    let row = client
        .query_opt(
            "SELECT ledger_id, format_version FROM fundtrail_ledger",
            &[],
        )?
        .ok_or_else(|| PgError::Refused("the database holds no fundtrail ledger".into()))?;
    let (found, version): (String, i32) = (row.get(0), row.get(1));
    if version != FORMAT_VERSION {
        return Err(PgError::Refused(format!(
            "the journal tables have format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let (size, end) = head(client)?;
    check_last_record(client, size, end)?;
    Ok((found, size, end))
}

/// The head row: (size, end location).
fn head(client: &mut Client) -> Result<(u64, u64), PgError> {
    let row = client
        .query_opt("SELECT size, end_location FROM fundtrail_head", &[])?
        .ok_or_else(|| PgError::Refused("the journal has no head row".into()))?;
    Ok((to_u64(row.get(0)), to_u64(row.get(1))))
}

/// Checks the last record is record `size - 1` and ends at `end`.
fn check_last_record(client: &mut Client, size: u64, end: u64) -> Result<(), PgError> {
    let last = client.query_opt(
        "SELECT seq, location, octet_length(record) FROM fundtrail_records ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let found = last.map(|row| {
        let (seq, location, len): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
        (
            to_u64(seq) + 1,
            to_u64(location) + FRAME_HEADER_BYTES + len.max(0) as u64,
        )
    });
    if found.unwrap_or((0, 0)) != (size, end) {
        return Err(PgError::Refused(format!(
            "the journal's head says {size} records ending at {end}, but its last record says otherwise ({found:?}); restore the database"
        )));
    }
    Ok(())
}

/// Database values are never negative (the tables' checks).
fn to_u64(value: i64) -> u64 {
    u64::try_from(value).expect("the tables' checks keep sizes and locations non-negative")
}

fn to_i64(value: u64) -> io::Result<i64> {
    i64::try_from(value)
        .map_err(|_| io::Error::other(format!("{value} is past PostgreSQL's bigint")))
}

fn db_error(e: postgres::Error) -> io::Error {
    io::Error::other(format!("PostgreSQL: {}", describe(&e)))
}

/// The server's message and SQLSTATE when the database answered, else
/// what went wrong on the way (the driver's own text is only "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl JournalStore for PgJournal {
    fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>> {
        let mut locations = Vec::with_capacity(records.len());
        let (mut seqs, mut locs, mut leaves) = (Vec::new(), Vec::new(), Vec::new());
        let mut end = self.end;
        for (seq, record) in (self.size..).zip(records) {
            if record.is_empty() || record.len() > RECORD_BYTES_MAX {
                return Err(io::Error::other(format!(
                    "a record must be 1 to {RECORD_BYTES_MAX} bytes, not {}",
                    record.len()
                )));
            }
            locations.push(end);
            seqs.push(to_i64(seq)?);
            locs.push(to_i64(end)?);
            leaves.push(fundtrail_tlog::record_hash(record).to_vec());
            end += FRAME_HEADER_BYTES + record.len() as u64;
        }
        let size = self.size + records.len() as u64;
        let expected = (self.size, self.end);
        let new_head = (to_i64(size)?, to_i64(end)?);
        let records = records.to_vec();
        self.conn.run(move |client| -> io::Result<()> {
            let mut tx = client.transaction().map_err(db_error)?;
            let row = tx
                .query_one(
                    "SELECT size, end_location FROM fundtrail_head FOR UPDATE",
                    &[],
                )
                .map_err(db_error)?;
            let found = (to_u64(row.get(0)), to_u64(row.get(1)));
            if found != expected {
                // Dropping the transaction rolls it back: nothing is written.
                return Err(io::Error::other(format!(
                    "the journal's head is at {} records, not the {} this writer applied against: another writer has written, so this one stops",
                    found.0, expected.0
                )));
            }
            tx.execute(
                "INSERT INTO fundtrail_records (seq, location, record, leaf_hash)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])",
                &[&seqs, &locs, &records, &leaves],
            )
            .map_err(db_error)?;
            tx.execute(
                "UPDATE fundtrail_head SET size = $1, end_location = $2",
                &[&new_head.0, &new_head.1],
            )
            .map_err(db_error)?;
            tx.commit().map_err(db_error)
        })??;
        self.size = size;
        self.end = end;
        Ok(locations)
    }

    fn end(&self) -> u64 {
        self.end
    }

    fn scan(&self, location: u64) -> io::Result<FrameIter<'_>> {
        let conn = Conn::connect(&self.url).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Box::new(Scan {
            conn,
            next: to_i64(location)?,
            page: Vec::new().into_iter(),
            done: false,
        }))
    }

    fn truncate(&mut self, location: u64) -> io::Result<()> {
        // Batches commit whole: there is never a torn record to cut off.
        if location == self.end {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "a PostgreSQL journal is never cut (asked to cut at {location}, its end is {})",
            self.end
        )))
    }

    fn reader(&self) -> io::Result<Arc<dyn RecordReader>> {
        let conn = Conn::connect(&self.url).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Arc::new(PgReader { conn }))
    }
}

/// The records from a location on, a page at a time.
struct Scan {
    conn: Conn,
    next: i64,
    page: std::vec::IntoIter<Frame>,
    done: bool,
}

impl Scan {
    fn fetch(&mut self) -> Result<(), JournalError> {
        let next = self.next;
        let frames = self
            .conn
            .run(move |client| -> io::Result<Vec<Frame>> {
                let rows = client
                    .query(
                        "SELECT location, record FROM fundtrail_records WHERE location >= $1 ORDER BY location LIMIT $2",
                        &[&next, &SCAN_PAGE_RECORDS],
                    )
                    .map_err(db_error)?;
                Ok(rows
                    .iter()
                    .map(|row| Frame {
                        offset: to_u64(row.get(0)),
                        record: row.get(1),
                    })
                    .collect())
            })
            .and_then(|frames| frames)
            .map_err(JournalError::Io)?;
        self.done = (frames.len() as i64) < SCAN_PAGE_RECORDS;
        if let Some(last) = frames.last() {
            self.next = to_i64(last.offset + 1).map_err(JournalError::Io)?;
        }
        self.page = frames.into_iter();
        Ok(())
    }
}

impl Iterator for Scan {
    type Item = Result<Frame, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(frame) = self.page.next() {
            return Some(Ok(frame));
        }
        if self.done {
            return None;
        }
        if let Err(e) = self.fetch() {
            self.done = true;
            return Some(Err(e));
        }
        self.page.next().map(Ok)
    }
}

/// Reads records by location on a connection of its own.
struct PgReader {
    conn: Conn,
}

impl RecordReader for PgReader {
    fn read(&self, location: u64) -> Result<Vec<u8>, JournalError> {
        let at = to_i64(location).map_err(JournalError::Io)?;
        let row = self
            .conn
            .run(move |client| {
                client
                    .query_opt(
                        "SELECT record FROM fundtrail_records WHERE location = $1",
                        &[&at],
                    )
                    .map_err(db_error)
            })
            .and_then(|row| row)
            .map_err(JournalError::Io)?;
        row.map(|row| row.get(0))
            .ok_or_else(|| JournalError::BadFrame {
                offset: location,
                reason: "no record starts there".into(),
            })
    }
}
