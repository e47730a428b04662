//! The journal over TLS to a database that accepts nothing else: the
//! database's certificate is checked against the CA given, so a database
//! whose certificate another CA signed is refused. In a process of its own:
//! the CA is set once per process.

use fundtrail_pg::PgJournal;
use fundtrail_pgtest::{tls_files, Cluster};
use fundtrail_store::JournalStore;

const LEDGER: &str = "fundtrail-0123456789ab";

#[test]
fn the_journal_speaks_tls_and_checks_the_databases_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "trusted");
    let (_, other_cert, other_key) = tls_files(dir.path(), "other");
    let cluster = Cluster::start_tls(&cert, &key);
    let impostor = Cluster::start_tls(&other_cert, &other_key);

    // Without TLS the database refuses the connection.
    let url = format!("{} sslmode=require", cluster.url("postgres"));
    let e = PgJournal::create(&cluster.url("postgres"), LEDGER)
        .err()
        .expect("plaintext is refused");
    assert!(e.to_string().contains("no encryption"), "{e}");

    fundtrail_pg::use_root_certificates(&ca).unwrap();
    let mut journal = PgJournal::create(&url, LEDGER).expect("over TLS");
    journal.append(&[b"a record".to_vec()]).unwrap();
    let reopened = PgJournal::open(&url, Some(LEDGER)).unwrap();
    assert_eq!(reopened.size(), 1);
    assert_eq!(
        cluster.query("SELECT count(*) FROM pg_stat_ssl WHERE ssl"),
        "2",
        "both of the journal's connections are encrypted"
    );

    // A database whose certificate the trusted CA did not sign.
    let e = PgJournal::create(
        &format!("{} sslmode=require", impostor.url("postgres")),
        LEDGER,
    )
    .err()
    .expect("a certificate of another CA is refused");
    assert!(e.to_string().contains("certificate"), "{e}");
}
