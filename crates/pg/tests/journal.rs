//! The PostgreSQL journal against a real PostgreSQL cluster.

use fundtrail_pg::PgJournal;
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
    cluster.admin(&format!(
        "CREATE ROLE {APP_ROLE} LOGIN;
         GRANT SELECT ON fundtrail_ledger TO {APP_ROLE};
         GRANT SELECT, INSERT ON fundtrail_records TO {APP_ROLE};
         GRANT SELECT, UPDATE ON fundtrail_head TO {APP_ROLE};"
    ));
    cluster
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
    let mut journal = PgJournal::open(&url, Some(LEDGER)).unwrap();
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
}

#[test]
fn a_second_writer_commits_nothing_and_no_seq_is_given_twice() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let mut first = PgJournal::open(&url, Some(LEDGER)).unwrap();
    first.append(&[record(0), record(1)]).unwrap();
    let mut second = PgJournal::open(&url, Some(LEDGER)).unwrap();
    first.append(&[record(2)]).unwrap();
    let refused = second
        .append(&[b"the second writer's record".to_vec()])
        .unwrap_err();
    assert!(refused.to_string().contains("another writer"), "{refused}");
    first.append(&[record(3)]).unwrap();
    let reopened = PgJournal::open(&url, Some(LEDGER)).unwrap();
    let records: Vec<Vec<u8>> = scanned(&reopened, 0).into_iter().map(|(_, r)| r).collect();
    assert_eq!(records, (0..4).map(record).collect::<Vec<_>>());
    assert_eq!(reopened.size(), 4);
}

#[test]
fn the_servers_role_can_neither_change_nor_delete_a_record() {
    let cluster = cluster();
    let url = cluster.url(APP_ROLE);
    let mut journal = PgJournal::open(&url, Some(LEDGER)).unwrap();
    journal.append(&[record(0)]).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for sql in [
        "UPDATE fundtrail_records SET record = 'forged' WHERE seq = 0",
        "DELETE FROM fundtrail_records WHERE seq = 0",
        "TRUNCATE fundtrail_records",
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
    PgJournal::open(&url, Some(LEDGER))
        .unwrap()
        .append(&[record(0)])
        .unwrap();
    // A head moved past the records (a damaged or half-restored database).
    cluster.admin("UPDATE fundtrail_head SET size = 2");
    let e = PgJournal::open(&url, None).err().expect("refused");
    assert!(e.to_string().contains("head says 2 records"), "{e}");
    assert!(
        PgJournal::create(&cluster.url("postgres"), LEDGER).is_err(),
        "created once"
    );
}
