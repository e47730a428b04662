//! The records and the head: appending, scanning, reading by location, and
//! the check a writer makes before it writes.

use std::io;
use std::sync::Arc;

use fundtrail_core::limits::RECORD_BYTES_MAX;
use fundtrail_store::journal::{Frame, JournalError, FRAME_HEADER_BYTES};
use fundtrail_store::{FrameIter, JournalStore, RecordReader, Superseded};
use fundtrail_tlog::{record_hash, Frontier, Hash};
use postgres::{Client, GenericClient};

use crate::conn::Conn;
use crate::lease::Lease;
use crate::{
    db_error, describe, to_hash, to_i64, to_u64, PgError, FORMAT_VERSION, SCHEMA_SQL,
    UPGRADE_FROM_1_SQL,
};

/// Records a scan fetches at a time.
const SCAN_PAGE_RECORDS: i64 = 1_000;

/// Records the writer's check reads at a time.
const CHECK_PAGE_RECORDS: i64 = 10_000;

/// The journal. Opened with [`PgJournal::open`] it reads; opened with
/// [`PgJournal::open_writer`] (after checking every record) it appends.
pub struct PgJournal {
    url: String,
    conn: Conn,
    ledger_id: String,
    /// Records in the journal as this writer last committed or read them.
    size: u64,
    /// Location just past the last record.
    end: u64,
    /// The tree of the records, for a writer; `None` when opened to read.
    frontier: Option<Frontier>,
    lease: Option<Lease>,
}

impl PgJournal {
    /// Creates the tables in the database at `url`, for ledger
    /// `ledger_id`, with an empty head, and opens them to write (without a
    /// lease: the tables did not exist, so no one else writes). Fails if
    /// they exist.
    pub fn create(url: &str, ledger_id: &str) -> Result<PgJournal, PgError> {
        let conn = Conn::connect(url)?;
        let id = ledger_id.to_string();
        conn.run_write(move |client| {
            let mut tx = client.transaction().map_err(db_error)?;
            tx.batch_execute(SCHEMA_SQL).map_err(db_error)?;
            tx.execute(
                "INSERT INTO fundtrail_ledger (ledger_id, format_version) VALUES ($1, $2)",
                &[&id, &FORMAT_VERSION],
            )
            .map_err(db_error)?;
            tx.commit().map_err(db_error)
        })?;
        let (journal, _) = PgJournal::open_writer(url, Some(ledger_id), None, None)?;
        Ok(journal)
    }

    /// Opens the journal in the database at `url` to read: refused if it
    /// belongs to another ledger than `ledger_id` (when given), has another
    /// format version, or its head does not match its last record.
    pub fn open(url: &str, ledger_id: Option<&str>) -> Result<PgJournal, PgError> {
        let conn = Conn::connect(url)?;
        let (found, head) = conn.run(read_identity)??;
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
            size: head.size,
            end: head.end,
            frontier: None,
            lease: None,
        })
    }

    /// Opens the journal to write, under `lease` if one is given (see
    /// [`Lease`]: taken before the newest checkpoint is read, so no
    /// writer signs a newer one meanwhile). Reads every record first: each
    /// must sit at its place and hash to its stored leaf hash, and the tree
    /// of them must have the head's root and, at the size of `checkpoint`
    /// (the newest signed checkpoint anyone saw, as size and root), that
    /// root. Returns the journal and the root the records have at the head.
    pub fn open_writer(
        url: &str,
        ledger_id: Option<&str>,
        lease: Option<Lease>,
        checkpoint: Option<(u64, Hash)>,
    ) -> Result<(PgJournal, Hash), PgError> {
        let mut journal = PgJournal::open(url, ledger_id)?;
        journal.frontier = Some(Frontier::new());
        journal.end = 0;
        journal.size = 0;
        journal.sync(checkpoint)?;
        journal.lease = lease;
        let root = journal.frontier.as_ref().map(Frontier::root);
        Ok((journal, root.expect("a writer holds the tree")))
    }

    /// Records in the journal.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// For a reader (a replica): reads, and scans, up to record
    /// `size - 1` from now on. False, and nothing changed, while the table
    /// does not hold that record yet (a standby that has not replayed it).
    pub fn read_up_to(&mut self, size: u64) -> Result<bool, PgError> {
        if self.frontier.is_some() {
            return Err(PgError::Refused(
                "a writer's journal follows its own head, not a size".into(),
            ));
        }
        let Some(last) = size.checked_sub(1) else {
            (self.size, self.end) = (0, 0);
            return Ok(true);
        };
        let last = to_i64(last)?;
        let row = self.conn.run(move |client| {
            client.query_opt(
                "SELECT location, octet_length(record) FROM fundtrail_records WHERE seq = $1",
                &[&last],
            )
        })??;
        let Some(row) = row else {
            return Ok(false);
        };
        let (location, len): (i64, i32) = (row.get(0), row.get(1));
        self.size = size;
        self.end = to_u64(location) + FRAME_HEADER_BYTES + u64::from(len.unsigned_abs());
        Ok(true)
    }

    /// Reads the head and the records after those this writer holds, and
    /// checks them: each sits at its seq and location and hashes to its
    /// stored leaf hash, the tree of all of them has the head's root, and,
    /// when `checkpoint` (the newest signed checkpoint anyone saw, as size
    /// and root) is given, the records reach its size and have its root
    /// there. Refuses on the first thing that is not so.
    fn sync(&mut self, checkpoint: Option<(u64, Hash)>) -> Result<(), PgError> {
        let mut frontier = self.frontier.clone().ok_or_else(|| {
            PgError::Refused("this PostgreSQL journal was opened to read, not to write".into())
        })?;
        let (_, head) = self.conn.run(read_identity)??;
        if head.size < self.size {
            return Err(PgError::Refused(format!(
                "the journal's head went back from {} to {} records; restore the database",
                self.size, head.size
            )));
        }
        if let Some((signed_size, _)) = checkpoint.filter(|(s, _)| *s > head.size) {
            return Err(PgError::Refused(format!(
                "the table holds {} records, but a checkpoint of {signed_size} records was signed: records {} to {} are missing. This database lost acknowledged records; do not write to it",
                head.size,
                head.size,
                signed_size - 1
            )));
        }
        let check_root = |frontier: &Frontier| {
            match checkpoint {
            Some((signed_size, signed_root))
                if signed_size == frontier.tree_size() && frontier.root() != signed_root =>
            {
                Err(PgError::Refused(format!(
                    "the first {signed_size} records in the table do not have the root of the signed checkpoint of that size: a record before seq {signed_size} differs from what was signed. Do not write to this database"
                )))
            }
            _ => Ok(()),
        }
        };
        check_root(&frontier)?;
        self.read_into(&mut frontier, self.end, (head.size, head.end), check_root)?;
        if head.root.is_some_and(|root| root != frontier.root()) {
            return Err(PgError::Refused(format!(
                "the head row's tree root does not match the {} records in the table: the head or the records were changed; restore the database",
                head.size
            )));
        }
        self.size = head.size;
        self.end = head.end;
        self.frontier = Some(frontier);
        Ok(())
    }

    /// Reads the records after the `frontier.tree_size()` it holds, which
    /// end at `location`, up to the head `(size, end)`, checking each
    /// sits at its seq and location and hashes to its leaf hash, pushing
    /// each onto `frontier` and calling `each` after it.
    fn read_into(
        &self,
        frontier: &mut Frontier,
        mut location: u64,
        (size, end): (u64, u64),
        each: impl Fn(&Frontier) -> Result<(), PgError>,
    ) -> Result<(), PgError> {
        let upto = to_i64(size)?;
        while frontier.tree_size() < size {
            let from = to_i64(frontier.tree_size())?;
            // Only up to the head read: another writer may be adding more.
            let rows = self.conn.run(move |client| {
                client.query(
                    "SELECT seq, location, record, leaf_hash FROM fundtrail_records
                     WHERE seq >= $1 AND seq < $2 ORDER BY seq LIMIT $3",
                    &[&from, &upto, &CHECK_PAGE_RECORDS],
                )
            })??;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let seq = to_u64(row.get(0));
                let record: &[u8] = row.get(2);
                if seq != frontier.tree_size() || to_u64(row.get(1)) != location {
                    return Err(PgError::Refused(format!(
                        "record {} is missing from the table, or sits at the wrong place; restore the database",
                        frontier.tree_size()
                    )));
                }
                let leaf = record_hash(record);
                if leaf != to_hash(row.get(3)) {
                    return Err(PgError::Refused(format!(
                        "record {seq} does not hash to its stored leaf hash: it was changed after it was written; restore the database"
                    )));
                }
                frontier
                    .push(leaf)
                    .map_err(|e| PgError::Refused(e.to_string()))?;
                location += FRAME_HEADER_BYTES + record.len() as u64;
                each(frontier)?;
            }
        }
        if (frontier.tree_size(), location) != (size, end) {
            return Err(PgError::Refused(format!(
                "the head says {size} records ending at {end}, but the records say {} ending at {location}; restore the database",
                frontier.tree_size()
            )));
        }
        Ok(())
    }
}

/// The head row.
struct Head {
    size: u64,
    end: u64,
    /// NULL only in tables upgraded from format 1 and not written since.
    root: Option<Hash>,
}

/// The ledger id and head the journal's tables hold, checked: the format
/// version is this build's (format 1 is upgraded) and the head matches the
/// last record.
fn read_identity(client: &mut Client) -> Result<(String, Head), PgError> {
    let row = client
        .query_opt(
            "SELECT ledger_id, format_version FROM fundtrail_ledger",
            &[],
        )?
        .ok_or_else(|| PgError::Refused("the database holds no fundtrail ledger".into()))?;
    let (found, version): (String, i32) = (row.get(0), row.get(1));
    match version {
        FORMAT_VERSION => {}
        1 => upgrade_from_1(client)?,
        _ => {
            return Err(PgError::Refused(format!(
                "the journal tables have format version {version}; this build reads version {FORMAT_VERSION}"
            )))
        }
    }
    // One snapshot for the head and the last record: another writer may
    // be appending meanwhile.
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let row = tx
        .query_opt(
            "SELECT size, end_location, root_hash FROM fundtrail_head",
            &[],
        )?
        .ok_or_else(|| PgError::Refused("the journal has no head row".into()))?;
    let head = Head {
        size: to_u64(row.get(0)),
        end: to_u64(row.get(1)),
        root: row.get::<_, Option<&[u8]>>(2).map(to_hash),
    };
    check_last_record(&mut tx, &head)?;
    tx.commit()?;
    Ok((found, head))
}

fn upgrade_from_1(client: &mut Client) -> Result<(), PgError> {
    let mut tx = client.transaction()?;
    tx.batch_execute(UPGRADE_FROM_1_SQL).map_err(|e| {
        PgError::Refused(format!(
            "the journal tables have format version 1 and must be upgraded to {FORMAT_VERSION} once, by a role that owns them: {}",
            describe(&e)
        ))
    })?;
    tx.commit()?;
    Ok(())
}

/// Checks the last record is record `size - 1` and ends at `end`.
fn check_last_record(client: &mut impl GenericClient, head: &Head) -> Result<(), PgError> {
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
    if found.unwrap_or((0, 0)) != (head.size, head.end) {
        return Err(PgError::Refused(format!(
            "the journal's head says {} records ending at {}, but its last record says otherwise ({found:?}); restore the database",
            head.size, head.end
        )));
    }
    Ok(())
}

/// What one append asks the database to do.
struct Batch {
    expected: (u64, u64),
    seqs: Vec<i64>,
    locations: Vec<i64>,
    records: Vec<Vec<u8>>,
    leaves: Vec<Vec<u8>>,
    size: i64,
    end: i64,
    root: Vec<u8>,
    lease: Option<(i64, u64)>,
}

/// Inserts the batch in one transaction under the head row's lock. The
/// lease, when held, is checked and extended in the same transaction: a
/// writer whose lease was taken commits nothing.
fn insert(client: &mut Client, batch: Batch) -> io::Result<()> {
    let mut tx = client.transaction().map_err(db_error)?;
    let row = tx
        .query_one(
            "SELECT size, end_location FROM fundtrail_head FOR UPDATE",
            &[],
        )
        .map_err(db_error)?;
    let found = (to_u64(row.get(0)), to_u64(row.get(1)));
    if found != batch.expected {
        // Dropping the transaction rolls it back: nothing is written.
        return Err(io::Error::other(Superseded {
            expected: batch.expected.0,
            found: found.0,
        }));
    }
    if let Some((epoch, ttl_ms)) = batch.lease {
        crate::lease::extend_in(&mut tx, epoch, ttl_ms)?;
    }
    tx.execute(
        "INSERT INTO fundtrail_records (seq, location, record, leaf_hash)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])",
        &[&batch.seqs, &batch.locations, &batch.records, &batch.leaves],
    )
    .map_err(db_error)?;
    tx.execute(
        "UPDATE fundtrail_head SET size = $1, end_location = $2, root_hash = $3",
        &[&batch.size, &batch.end, &batch.root],
    )
    .map_err(db_error)?;
    tx.commit().map_err(db_error)
}

impl JournalStore for PgJournal {
    fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    fn append(&mut self, records: &[Vec<u8>]) -> io::Result<Vec<u64>> {
        let Some(frontier) = &self.frontier else {
            return Err(io::Error::other(
                "this PostgreSQL journal was opened to read, not to write",
            ));
        };
        let mut frontier = frontier.clone();
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
            let leaf = record_hash(record);
            frontier.push(leaf).map_err(io::Error::other)?;
            locations.push(end);
            seqs.push(to_i64(seq)?);
            locs.push(to_i64(end)?);
            leaves.push(leaf.to_vec());
            end += FRAME_HEADER_BYTES + record.len() as u64;
        }
        let size = self.size + records.len() as u64;
        let batch = Batch {
            expected: (self.size, self.end),
            seqs,
            locations: locs,
            records: records.to_vec(),
            leaves,
            size: to_i64(size)?,
            end: to_i64(end)?,
            root: frontier.root().to_vec(),
            lease: self.lease.as_ref().map(|lease| lease.fence()).transpose()?,
        };
        self.conn.run_write(move |client| insert(client, batch))?;
        self.size = size;
        self.end = end;
        self.frontier = Some(frontier);
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
            end: to_i64(self.end)?,
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

    fn catch_up(&mut self) -> io::Result<()> {
        self.sync(None).map_err(|e| io::Error::other(e.to_string()))
    }
}

/// The records from a location on, a page at a time, up to the end the
/// journal had read when the scan began (another writer may add more).
struct Scan {
    conn: Conn,
    next: i64,
    end: i64,
    page: std::vec::IntoIter<Frame>,
    done: bool,
}

impl Scan {
    fn fetch(&mut self) -> Result<(), JournalError> {
        let (next, end) = (self.next, self.end);
        let frames = self
            .conn
            .run(move |client| -> io::Result<Vec<Frame>> {
                let rows = client
                    .query(
                        "SELECT location, record FROM fundtrail_records
                         WHERE location >= $1 AND location < $2 ORDER BY location LIMIT $3",
                        &[&next, &end, &SCAN_PAGE_RECORDS],
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
