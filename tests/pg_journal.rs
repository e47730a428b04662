//! The server on a journal kept in PostgreSQL: a real cluster, a real
//! server over gRPC on a real data directory, and a restart that rebuilds
//! the derived state from the database alone.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_core::clock::SystemClock;
use fundtrail_core::rules::Rules;
use fundtrail_pgtest::Cluster;
use fundtrail_server::engine::{Engine, EngineConfig};
use fundtrail_server::genesis::{self, JournalAt, RootOrg};
use fundtrail_server::start::StartError;
use prost::Message;

const APP_ROLE: &str = "fundtrail_app";

fn open(data_dir: &Path, url: &str) -> Arc<Engine> {
    fundtrail_server::open(
        EngineConfig {
            skew_ms_max: SKEW_MS_MAX,
            checkpoints: fast_checkpoints(),
            journal_url: Some(url.to_string()),
            ..EngineConfig::new(data_dir)
        },
        fundtrail_server::Role::Writer {
            scrub_on_start: true,
        },
    )
    .unwrap_or_else(|e| panic!("engine did not open: {e}"))
}

/// (tree size, note with cosignatures) of every checkpoint in the database.
fn notes_in(url: &str) -> Vec<(u64, String)> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let checkpoints = fundtrail_pg::PgCheckpoints::open(&url).unwrap();
        checkpoints
            .notes()
            .unwrap()
            .into_iter()
            .map(|note| {
                let size = note.lines().nth(1).unwrap().parse().unwrap();
                (size, note)
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_kept_in_postgres_serves_and_is_rebuilt_from_the_database_alone() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let at = JournalAt::Postgres(&cluster.url("postgres"));
    let genesis = genesis::init_at(
        dir.path(),
        at,
        &RootOrg::default(),
        Rules::CURRENT,
        &SystemClock,
    )
    .unwrap();
    assert!(genesis::exists_at(dir.path(), at));
    assert!(!dir.path().join("journal.log").exists(), "no file journal");
    cluster.admin(&format!("CREATE ROLE {APP_ROLE} LOGIN;"));
    cluster.admin(&fundtrail_pg::grants_sql(APP_ROLE));
    let url = cluster.url(APP_ROLE);

    let server = TestServer::serve(open(dir.path(), &url), dir.path(), unmetered()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;
    assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_000_00);
    let served = checkpoint_of_all(&server, &mut client).await;
    let derived = server.dump();
    server.stop().await;

    // The checkpoint served was in the database first, note for note.
    let notes = notes_in(&url);
    assert_eq!(notes.last(), Some(&(count, served.note.clone())));
    assert!(notes.windows(2).all(|w| w[0].0 < w[1].0));

    // Every record is in the database, in order, under its own seq.
    let stored = pg_records(&url);
    assert_eq!(stored.len() as u64, count);
    for (i, (seq, bytes)) in stored.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(pb::Record::decode(bytes.as_slice()).unwrap().seq, *seq);
    }
    let first = pb::Record::decode(stored[0].1.as_slice()).unwrap();
    let ledger_id = fundtrail_api::decode_request(&first.request.unwrap().payload)
        .unwrap()
        .ledger_id;
    assert_eq!(ledger_id, genesis.ledger_id);

    // Derived state thrown away: rebuilt from the database, the same state.
    std::fs::remove_dir_all(dir.path().join("derived")).unwrap();
    let server = TestServer::serve(open(dir.path(), &url), dir.path(), unmetered()).await;
    assert_eq!(server.dump(), derived);
    let mut client = server.client().await;
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_000_00);
    ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 500_00)),
    )
    .await;
    assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_500_00);
    server.stop().await;
    assert_eq!(pg_records(&url).len() as u64, count + 1);

    // A database that lost signed records (restored from an old backup,
    // or a standby promoted without them) is refused, naming them.
    cluster.admin(&format!(
        "DELETE FROM fundtrail_records WHERE seq >= {lost};
         UPDATE fundtrail_head SET size = {lost}, root_hash = NULL,
             end_location = (SELECT location + 8 + octet_length(record)
                             FROM fundtrail_records WHERE seq = {lost} - 1);
         DELETE FROM fundtrail_cosignatures;
         DELETE FROM fundtrail_checkpoints WHERE tree_size > {lost};",
        lost = count - 3
    ));
    let refused = fundtrail_server::open(
        EngineConfig {
            journal_url: Some(url.clone()),
            ..EngineConfig::new(dir.path())
        },
        fundtrail_server::Role::Writer {
            scrub_on_start: true,
        },
    )
    .err()
    .expect("a database without signed records is refused");
    let text = refused.to_string();
    assert!(
        text.contains(&format!("records {} to ", count - 3)) && text.contains("are missing"),
        "{refused}"
    );
    assert!(matches!(refused, StartError::Refused(_)), "{refused:?}");

    // A data directory with a file journal is not opened on a database.
    let other = tempfile::tempdir().unwrap();
    genesis::init_at(
        other.path(),
        JournalAt::File,
        &RootOrg::default(),
        Rules::CURRENT,
        &SystemClock,
    )
    .unwrap();
    let refused = fundtrail_server::open(
        EngineConfig {
            journal_url: Some(url.clone()),
            ..EngineConfig::new(other.path())
        },
        fundtrail_server::Role::Writer {
            scrub_on_start: true,
        },
    )
    .err()
    .expect("refused");
    assert!(
        refused.to_string().contains("holds a file journal"),
        "{refused}"
    );
    assert!(matches!(refused, StartError::Config(_)), "{refused:?}");
}

const POSTS_PER_CLIENT: usize = 60;
const CLIENTS_PER_NODE: usize = 3;

/// Posts `POSTS_PER_CLIENT` one-fen payments of the chain's 东乡, each
/// expected to be recorded, and returns every request with its answer.
async fn post_payments(
    mut client: fundtrail_client::Client,
    county: fundtrail_client::Signer,
    payment: B,
) -> Vec<(pb::SignedRequest, pb::PostResponse)> {
    let mut acked = Vec::new();
    for _ in 0..POSTS_PER_CLIENT {
        let signed = county.sign(&client.request(payment.clone()));
        let answer = client
            .post_signed(signed.clone())
            .await
            .unwrap_or_else(|status| panic!("a post was refused: {status:?}"));
        acked.push((signed, answer));
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_without_the_lease_catch_up_never_give_a_seq_twice_and_lose_nothing() {
    let cluster = Cluster::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    genesis::init_at(
        a_dir.path(),
        JournalAt::Postgres(&cluster.url("postgres")),
        &RootOrg::default(),
        Rules::CURRENT,
        &SystemClock,
    )
    .unwrap();
    // Both nodes serve one ledger: the same log key and root key.
    for name in [genesis::LOG_KEY_FILE_NAME, genesis::ROOT_KEY_FILE_NAME] {
        std::fs::copy(a_dir.path().join(name), b_dir.path().join(name)).unwrap();
    }
    cluster.admin(&format!("CREATE ROLE {APP_ROLE} LOGIN;"));
    cluster.admin(&fundtrail_pg::grants_sql(APP_ROLE));
    let url = cluster.url(APP_ROLE);
    let unleased = |dir: &Path| {
        fundtrail_server::open(
            EngineConfig {
                skew_ms_max: SKEW_MS_MAX,
                checkpoints: fast_checkpoints(),
                journal_url: Some(url.clone()),
                journal_lease_ms: None,
                ..EngineConfig::new(dir)
            },
            fundtrail_server::Role::Writer {
                scrub_on_start: true,
            },
        )
        .unwrap_or_else(|e| panic!("engine did not open: {e}"))
    };
    let a = TestServer::serve(unleased(a_dir.path()), a_dir.path(), unmetered()).await;
    let mut client_a = a.client().await;
    let chain = build_chain(&mut client_a, a.root()).await;
    let before = ledger_info(&mut client_a).await.record_count;
    let b = TestServer::serve(unleased(b_dir.path()), b_dir.path(), unmetered()).await;

    // Both write at once; each loses the head's race now and then, catches
    // up and applies its requests again.
    let mut loads = Vec::new();
    for server in [&a, &b] {
        for _ in 0..CLIENTS_PER_NODE {
            let load = post_payments(
                server.client().await,
                chain.dongxiang.clone(),
                chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
            );
            loads.push(tokio::spawn(load));
        }
    }
    let mut acked = Vec::new();
    for load in loads {
        acked.extend(load.await.unwrap());
    }
    let posted = (2 * CLIENTS_PER_NODE * POSTS_PER_CLIENT) as u64;

    let stored = pg_records(&url);
    assert_eq!(
        stored.len() as u64,
        before + posted,
        "each post recorded once"
    );
    let mut seqs = std::collections::BTreeSet::new();
    for (signed, answer) in &acked {
        assert!(!answer.duplicate);
        assert!(
            seqs.insert(answer.seq),
            "seq {} acknowledged twice",
            answer.seq
        );
        let record = pb::Record {
            seq: answer.seq,
            commit_time_ms: answer.commit_time_ms,
            request: Some(signed.clone()),
            effects: answer.effects.clone(),
        };
        assert_eq!(
            stored[answer.seq as usize].1,
            record.encode_to_vec(),
            "record {} as acknowledged",
            answer.seq
        );
    }

    // A node catches up when it next writes: then it has every record,
    // the other node's too, and the money adds up.
    let mut client_b = b.client().await;
    for client in [&mut client_b, &mut client_a] {
        ok(
            client,
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
        )
        .await;
    }
    let count = pg_records(&url).len() as u64;
    let info = ledger_info(&mut client_a).await;
    assert_eq!(info.record_count, count);
    assert!(info.writable);
    assert_eq!(
        balance(&mut client_a, "dx-hh-0001").await,
        3_000_00 + posted + 2
    );

    // Every checkpoint either node signed is a prefix of the one log.
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    for (_, record) in pg_records(&url) {
        tree.append(&record).unwrap();
    }
    for (size, note) in notes_in(&url) {
        let root = fundtrail_tlog::tree_hash(size, &tree).unwrap();
        let (body, _) = fundtrail_tlog::split_note(&note).unwrap();
        let checkpoint = fundtrail_tlog::Checkpoint::parse(body).unwrap();
        assert_eq!(checkpoint.root_hash, root, "checkpoint of {size} records");
    }
    a.stop().await;
    b.stop().await;
}
