//! The PostgreSQL journal against a real PostgreSQL cluster.

use fundtrail_pg::{Lease, PgCheckpoints, PgJournal};
use fundtrail_pgtest::Cluster;
use fundtrail_store::journal::FRAME_HEADER_BYTES;
use fundtrail_store::JournalStore;

const LEDGER: &str = "fundtrail-0123456789ab";
const APP_ROLE: &str = "fundtrail_app";

/// A cluster with the journal's tables, created by the superuser, and the
/// server's role granted what docs/postgres.md says and nothing more.
fn cluster() -> Cluster {
    let cluster = Cluster::start();
    PgJournal::create(&cluster.url("postgres"), LEDGER).expect("create the journal tables");
    cluster.admin(&format!("CREATE ROLE {APP_ROLE} LOGIN;"));
    cluster.admin(&fundtrail_pg::grants_sql(APP_ROLE));
    cluster
}

/// Opens the journal to write, without a lease.
fn writer(url: &str) -> PgJournal {
    PgJournal::open_writer(url, Some(LEDGER), None, None)
        .unwrap()
        .0
}

fn refusal(url: &str, checkpoint: Option<(u64, fundtrail_tlog::Hash)>) -> String {
    match PgJournal::open_writer(url, Some(LEDGER), None, checkpoint) {
        Ok(_) => panic!("the writer should have been refused"),
        Err(e) => e.to_string(),
    }
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i} {}", "x".repeat(i as usize % 7)).into_bytes()
}

fn scanned(journal: &PgJournal, from: u64) -> Vec<(u64, Vec<u8>)> {
    journal
        .scan(from)
        .unwrap()
        .map(|frame| {
            let frame = frame.unwrap();
            (frame.offset, frame.record)
        })
        .collect()
}

#[test]
fn records_keep_their_bytes_and_locations_across_reopening() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let mut journal = writer(&url);
    assert_eq!((journal.size(), journal.end()), (0, 0));
    let mut expected = Vec::new();
    let mut location = 0;
    for batch in [0..3u64, 3..4, 4..2_504] {
        let records: Vec<Vec<u8>> = batch.map(record).collect();
        let locations = journal.append(&records).unwrap();
        for (record, at) in records.into_iter().zip(locations) {
            assert_eq!(
                at, location,
                "locations as in a file journal without a header"
            );
            location += FRAME_HEADER_BYTES + record.len() as u64;
            expected.push((at, record));
        }
    }
    assert_eq!(journal.end(), location);
    assert_eq!(
        scanned(&journal, 0),
        expected,
        "scan pages through every record"
    );
    assert_eq!(scanned(&journal, expected[2_000].0), expected[2_000..]);
    let reader = journal.reader().unwrap();
    for (at, bytes) in expected.iter().step_by(97) {
        assert_eq!(&reader.read(*at).unwrap(), bytes);
    }
    assert!(reader.read(1).is_err(), "no record starts at byte 1");
    drop(journal);

    let reopened = PgJournal::open(&url, Some(LEDGER)).unwrap();
    assert_eq!((reopened.size(), reopened.end()), (2_504, location));
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = client
        .query_one(
            "SELECT record, leaf_hash FROM fundtrail_records WHERE seq = 1000",
            &[],
        )
        .unwrap();
    let (bytes, leaf): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
    assert_eq!(bytes, record(1000));
    assert_eq!(leaf, fundtrail_tlog::record_hash(&bytes).to_vec());
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    for i in 0..2_504 {
        tree.append(&record(i)).unwrap();
    }
    let root: Vec<u8> = client
        .query_one("SELECT root_hash FROM fundtrail_head", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        root,
        fundtrail_tlog::tree_hash(2_504, &tree).unwrap().to_vec(),
        "the head carries the tree's root"
    );
    let (_, checked_root) = PgJournal::open_writer(&url, Some(LEDGER), None, None).unwrap();
    assert_eq!(checked_root.to_vec(), root);
}

#[test]
fn a_second_writer_commits_nothing_until_it_catches_up_and_no_seq_is_given_twice() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let mut first = writer(&url);
    first.append(&[record(0), record(1)]).unwrap();
    let mut second = writer(&url);
    first.append(&[record(2)]).unwrap();
    let refused = second
        .append(&[b"the second writer's record".to_vec()])
        .unwrap_err();
    assert!(fundtrail_store::Superseded::is(&refused), "{refused}");
    first.append(&[record(3)]).unwrap();
    let reopened = PgJournal::open(&url, Some(LEDGER)).unwrap();
    let records: Vec<Vec<u8>> = scanned(&reopened, 0).into_iter().map(|(_, r)| r).collect();
    assert_eq!(records, (0..4).map(record).collect::<Vec<_>>());
    assert_eq!(reopened.size(), 4);

    // Caught up, the second writer appends after the first's records.
    second.catch_up().unwrap();
    assert_eq!((second.size(), second.end()), (4, first.end()));
    let at = second.append(&[record(4)]).unwrap();
    assert_eq!(at, vec![first.end()]);
    let e = first.append(&[record(5)]).unwrap_err();
    assert!(fundtrail_store::Superseded::is(&e), "{e}");
    let (_, root) = PgJournal::open_writer(&url, Some(LEDGER), None, None).unwrap();
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    for i in 0..5 {
        tree.append(&record(i)).unwrap();
    }
    assert_eq!(
        root,
        fundtrail_tlog::tree_hash(5, &tree).unwrap(),
        "the head's root follows both"
    );
}

#[test]
fn the_servers_role_can_neither_change_nor_delete_a_record() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let mut journal = writer(&url);
    journal.append(&[record(0)]).unwrap();
    PgCheckpoints::open(&url)
        .unwrap()
        .insert_checkpoint(1, &[7; 32], "a note\n")
        .unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE fundtrail_records SET record = 'forged' WHERE seq = 0",
        "DELETE FROM fundtrail_records WHERE seq = 0",
        "TRUNCATE fundtrail_records",
        "UPDATE fundtrail_checkpoints SET note = 'forged'",
        "DELETE FROM fundtrail_checkpoints",
        "DELETE FROM fundtrail_cosignatures",
    ] {
        let e = client.batch_execute(sql).unwrap_err();
        assert_eq!(
            e.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {e:?}"
        );
    }
    assert_eq!(scanned(&journal, 0), vec![(0, record(0))]);
}

#[test]
fn another_ledger_or_a_head_out_of_step_is_refused() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let e = PgJournal::open(&url, Some("fundtrail-other"))
        .err()
        .expect("another ledger is refused");
    assert!(e.to_string().contains("not fundtrail-other"), "{e}");
    writer(&url).append(&[record(0)]).unwrap();
    // A head moved past the records (a damaged or half-restored database).
    cluster.admin("UPDATE fundtrail_head SET size = 2");
    let e = PgJournal::open(&url, None).err().expect("refused");
    assert!(e.to_string().contains("head says 2 records"), "{e}");
    assert!(
        PgJournal::create(&cluster.url("postgres"), LEDGER).is_err(),
        "created once"
    );
}

#[test]
fn a_reader_cannot_append() {
    let cluster = cluster();
    let mut journal = PgJournal::open(&cluster.url(APP_ROLE), Some(LEDGER)).unwrap();
    let e = journal.append(&[record(0)]).unwrap_err();
    assert!(e.to_string().contains("opened to read"), "{e}");
}

#[test]
fn a_writer_refuses_a_table_that_lost_or_changed_signed_records() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    let mut journal = writer(&url);
    for i in 0..10 {
        journal.append(&[record(i)]).unwrap();
        tree.append(&record(i)).unwrap();
    }
    drop(journal);
    let root_at = |size| Some((size, fundtrail_tlog::tree_hash(size, &tree).unwrap()));
    PgJournal::open_writer(&url, Some(LEDGER), None, root_at(6))
        .expect("the records have the signed root");

    let e = refusal(&url, Some((6, [9; 32])));
    assert!(e.contains("a record before seq 6 differs"), "{e}");

    // A restored or promoted database that lacks signed records.
    let e = refusal(&url, Some((12, [9; 32])));
    assert!(e.contains("records 10 to 11 are missing"), "{e}");

    // A record changed by someone with more rights than the server's role.
    // Same length as record 3, so it sits where record 3 sat.
    cluster.admin("UPDATE fundtrail_records SET record = 'FORGED 3 xxx' WHERE seq = 3");
    let e = refusal(&url, None);
    assert!(
        e.contains("record 3 does not hash to its stored leaf hash"),
        "{e}"
    );
    let forged = fundtrail_tlog::record_hash(b"FORGED 3 xxx");
    cluster.admin(&format!(
        "UPDATE fundtrail_records SET leaf_hash = '\\x{}'::bytea WHERE seq = 3",
        hex(&forged)
    ));
    let e = refusal(&url, root_at(6));
    assert!(e.contains("a record before seq 6 differs"), "{e}");
    let e = refusal(&url, None);
    assert!(e.contains("head row's tree root does not match"), "{e}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_lease_passes_on_only_when_released_or_expired_and_fences_the_old_writer() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let leased = |url: &str| {
        let lease = Lease::acquire(url, "a writer", 60_000)?;
        PgJournal::open_writer(url, Some(LEDGER), Some(lease), None)
    };
    let (mut first, _) = leased(&url).unwrap();
    first.append(&[record(0)]).unwrap();

    // A second writer waits while the lease runs; released, it passes on.
    let second = {
        let url = url.clone();
        std::thread::spawn(move || leased(&url))
    };
    first.append(&[record(1)]).unwrap();
    drop(first);
    let (mut second, _) = second.join().unwrap().unwrap();
    second.append(&[record(2)]).unwrap();

    // A writer whose lease expired while it was paused commits nothing once
    // another took the lease, even though the head is where it left it.
    let taken = std::thread::spawn({
        let url = url.clone();
        move || Lease::acquire(&url, "the next writer", 60_000)
    });
    cluster.admin("UPDATE fundtrail_lease SET expires_at = now()");
    let taken = taken.join().unwrap().unwrap();
    // Refused by the renewal that found the lease gone, or by the batch's
    // own check, whichever came first.
    let e = second.append(&[record(3)]).unwrap_err();
    assert!(e.to_string().contains("lost its lease (epoch 2)"), "{e}");
    assert_eq!(taken.epoch(), 3, "each hand-over moves the epoch on");
    let records: Vec<Vec<u8>> = scanned(&PgJournal::open(&url, None).unwrap(), 0)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(records, (0..3).map(record).collect::<Vec<_>>());
}

#[test]
fn a_commit_whose_wait_for_a_standby_was_cancelled_is_not_taken_as_written() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    writer(&url).append(&[record(0)]).unwrap();
    // No standby will ever answer: commits wait, as with every standby gone.
    cluster.admin("ALTER SYSTEM SET synchronous_standby_names = 'nobody'");
    cluster.admin("SELECT pg_reload_conf()");
    // The reload reaches a running session only at its next command, so a
    // writer opened before it could commit without waiting (and the DO
    // below would wait forever). A session reads the settings when it
    // starts: once a new one sees the new value, the postmaster has it, and
    // the writer's session, opened after, starts with it.
    let reloaded = (0..100_000)
        .any(|_| cluster.query("SELECT current_setting('synchronous_standby_names')") == "nobody");
    assert!(reloaded, "the server did not take the new setting");
    let mut journal = writer(&url);
    let waiting = std::thread::spawn(move || {
        let result = journal.append(&[record(1)]);
        (journal, result)
    });
    // An operator cancels the commit's wait (as pg_cancel_backend or a
    // statement timeout would); PostgreSQL then answers success with a
    // WARNING, the commit being local only.
    cluster.admin(&format!(
        "DO $$ BEGIN
           WHILE NOT EXISTS (SELECT 1 FROM pg_stat_activity
                             WHERE usename = '{APP_ROLE}' AND wait_event = 'SyncRep') LOOP
             PERFORM pg_sleep(0.01);
           END LOOP;
           PERFORM pg_cancel_backend(pid) FROM pg_stat_activity
             WHERE usename = '{APP_ROLE}' AND wait_event = 'SyncRep';
         END $$;"
    ));
    let (journal, result) = waiting.join().unwrap();
    let e = result.expect_err("a commit that may be on no standby is not a success");
    assert!(
        e.to_string().contains("may not have reached a standby"),
        "{e}"
    );
    assert_eq!(
        journal.size(),
        1,
        "the writer does not count the record as written"
    );
}

#[test]
fn tables_of_format_1_are_upgraded_by_their_owner_and_keep_their_records() {
    let cluster = Cluster::start();
    // Format 1 as the first PostgreSQL build created it: no root, no
    // checkpoints, no lease.
    cluster.admin(&format!(
        "CREATE TABLE fundtrail_ledger (ledger_id text PRIMARY KEY, format_version integer NOT NULL);
         CREATE TABLE fundtrail_records (
             seq bigint PRIMARY KEY CHECK (seq >= 0),
             location bigint NOT NULL UNIQUE CHECK (location >= 0),
             record bytea NOT NULL,
             leaf_hash bytea NOT NULL CHECK (octet_length(leaf_hash) = 32));
         CREATE TABLE fundtrail_head (
             only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
             size bigint NOT NULL CHECK (size >= 0),
             end_location bigint NOT NULL CHECK (end_location >= 0));
         INSERT INTO fundtrail_ledger VALUES ('{LEDGER}', 1);
         INSERT INTO fundtrail_records
             SELECT seq, location, r, sha256('\\x00'::bytea || r)
             FROM (VALUES (0, 0, 'record 0 '::bytea), (1, 17, 'record 1 x'::bytea)) AS v(seq, location, r);
         INSERT INTO fundtrail_head (size, end_location) VALUES (2, 35);
         CREATE ROLE {APP_ROLE} LOGIN;
         GRANT SELECT ON fundtrail_ledger TO {APP_ROLE};
         GRANT SELECT, INSERT ON fundtrail_records TO {APP_ROLE};
         GRANT SELECT, UPDATE ON fundtrail_head TO {APP_ROLE};"
    ));
    let url = cluster.url(APP_ROLE);
    let e = PgJournal::open(&url, None)
        .err()
        .expect("the server's role cannot upgrade");
    assert!(
        e.to_string()
            .contains("upgraded to 2 once, by a role that owns them"),
        "{e}"
    );
    let upgraded = PgJournal::open(&cluster.url("postgres"), None).unwrap();
    assert_eq!(upgraded.size(), 2);
    cluster.admin(&fundtrail_pg::grants_sql(APP_ROLE));
    let mut journal = writer(&url);
    journal.append(&[record(2)]).unwrap();
    let records: Vec<Vec<u8>> = scanned(&journal, 0).into_iter().map(|(_, r)| r).collect();
    assert_eq!(records, (0..3).map(record).collect::<Vec<_>>());
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    for i in 0..3 {
        tree.append(&record(i)).unwrap();
    }
    let (_, root) = PgJournal::open_writer(&url, Some(LEDGER), None, None).unwrap();
    assert_eq!(root, fundtrail_tlog::tree_hash(3, &tree).unwrap());
}
