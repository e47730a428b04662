//! The journal on replicated PostgreSQL, with real clusters: a primary
//! whose commits wait for one of two synchronous standbys. The primary is
//! killed with SIGKILL under load and the most advanced standby promoted;
//! both standbys are lost while clients post. Nothing acknowledged may be
//! lost, nothing signed may be forked, and no client is told "recorded"
//! for a record no standby holds.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::Signer;
use fundtrail_core::clock::SystemClock;
use fundtrail_core::rules::Rules;
use fundtrail_pgtest::Cluster;
use fundtrail_server::engine::{Engine, EngineConfig};
use fundtrail_server::genesis::{self, JournalAt, RootOrg};
use prost::Message;

const APP_ROLE: &str = "fundtrail_app";
const STANDBYS: [&str; 2] = ["standby_a", "standby_b"];
/// Short, so that the writer that replaces a dead one waits little.
const LEASE_MS: u64 = 1_000;
const LOAD_CLIENTS: usize = 6;
/// Acknowledged posts before the primary is killed.
const ACKED_BEFORE_KILL: usize = 300;

/// A primary and its two synchronous standbys, the ledger's tables created
/// on the primary and the server's role granted what docs/postgres.md says.
struct Replicated {
    primary: Cluster,
    standbys: Vec<Cluster>,
}

fn replicated(data_dir: &Path) -> Replicated {
    let primary = Cluster::start_primary(&STANDBYS);
    let standbys: Vec<Cluster> = STANDBYS
        .iter()
        .map(|name| Cluster::start_standby(&primary, name))
        .collect();
    genesis::init_at(
        data_dir,
        JournalAt::Postgres(&primary.url("postgres")),
        &RootOrg::default(),
        Rules::CURRENT,
        &SystemClock,
    )
    .expect("init on the primary");
    primary.admin(&format!("CREATE ROLE {APP_ROLE} LOGIN;"));
    primary.admin(&fundtrail_pg::grants_sql(APP_ROLE));
    Replicated { primary, standbys }
}

fn open(data_dir: &Path, cluster: &Cluster) -> Arc<Engine> {
    fundtrail_server::open(
        EngineConfig {
            skew_ms_max: SKEW_MS_MAX,
            checkpoints: fast_checkpoints(),
            journal_url: Some(cluster.url(APP_ROLE)),
            journal_lease_ms: Some(LEASE_MS),
            ..EngineConfig::new(data_dir)
        },
        fundtrail_server::Role::Writer {
            scrub_on_start: true,
        },
    )
    .unwrap_or_else(|e| panic!("engine did not open: {e}"))
}

/// The bytes the server must have stored for an acknowledged post.
fn acknowledged_record(signed: &pb::SignedRequest, answer: &pb::PostResponse) -> Vec<u8> {
    pb::Record {
        seq: answer.seq,
        commit_time_ms: answer.commit_time_ms,
        request: Some(signed.clone()),
        effects: answer.effects.clone(),
    }
    .encode_to_vec()
}

type Acked = Arc<Mutex<Vec<(pb::SignedRequest, pb::PostResponse)>>>;

/// Posts one-fen payments until a post fails, keeping every acknowledged
/// request with its answer; says how many are acknowledged on `progress`.
async fn load(
    mut client: fundtrail_client::Client,
    county: Signer,
    payment: B,
    acked: Acked,
    progress: tokio::sync::watch::Sender<usize>,
) -> tonic::Status {
    loop {
        let signed = county.sign(&client.request(payment.clone()));
        match client.post_signed(signed.clone()).await {
            Ok(answer) => {
                let count = {
                    let mut acked = acked.lock().unwrap();
                    acked.push((signed, answer));
                    acked.len()
                };
                progress.send_replace(count);
            }
            Err(status) => return status,
        }
    }
}

/// Reads the newest checkpoint over and over, keeping each one served.
async fn watch_checkpoints(
    mut client: fundtrail_client::Client,
    seen: Arc<Mutex<Vec<pb::GetCheckpointResponse>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        tokio::select! {
            answer = client.audit.get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 }) => {
                match answer {
                    Ok(answer) => seen.lock().unwrap().push(answer.into_inner()),
                    Err(_) => return,
                }
            }
            _ = stop.changed() => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_the_most_advanced_standby_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let Replicated { primary, standbys } = replicated(dir.path());
    let server = TestServer::serve(open(dir.path(), &primary), dir.path(), unmetered()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;

    let acked: Acked = Default::default();
    let (progress, mut acked_count) = tokio::sync::watch::channel(0);
    let mut loaders = Vec::new();
    for _ in 0..LOAD_CLIENTS {
        loaders.push(tokio::spawn(load(
            server.client().await,
            chain.dongxiang.clone(),
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
            acked.clone(),
            progress.clone(),
        )));
    }
    drop(progress);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop_watching, watching) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(watch_checkpoints(
        server.client().await,
        seen.clone(),
        watching,
    ));
    acked_count
        .wait_for(|count| *count >= ACKED_BEFORE_KILL)
        .await
        .expect("the load runs");

    // The primary's machine dies mid-batch.
    primary.kill9();
    for loader in loaders {
        let status = loader.await.unwrap();
        assert_eq!(
            status.code(),
            tonic::Code::Unavailable,
            "a post in flight when the database died: {status:?}"
        );
    }
    let _ = stop_watching.send(true);
    watcher.await.unwrap();
    server.stop().await;

    // Promote the standby that received the most; the other follows it.
    let received = |standby: &Cluster| -> u128 {
        standby
            .query("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint")
            .parse()
            .unwrap()
    };
    let (new_primary, other) = if received(&standbys[0]) >= received(&standbys[1]) {
        (&standbys[0], &standbys[1])
    } else {
        (&standbys[1], &standbys[0])
    };
    new_primary.promote();
    other.stop();
    let other_name = if std::ptr::eq(other, &standbys[0]) {
        STANDBYS[0]
    } else {
        STANDBYS[1]
    };
    other.follow(new_primary, other_name);
    other.restart();

    // fundtrail restarts against the promoted standby.
    let server = TestServer::serve(open(dir.path(), new_primary), dir.path(), unmetered()).await;
    let mut client = server.client().await;
    let stored = pg_records(&new_primary.url("postgres"));
    for (i, (seq, _)) in stored.iter().enumerate() {
        assert_eq!(*seq, i as u64, "no gap in the seqs");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    for (signed, answer) in &acked {
        let at = usize::try_from(answer.seq).unwrap();
        assert!(at < stored.len(), "acknowledged record {at} was lost");
        assert_eq!(
            stored[at].1,
            acknowledged_record(signed, answer),
            "acknowledged record {at} has other bytes"
        );
    }

    // Every checkpoint the old writer served is a prefix of the new log.
    let mut tree = fundtrail_tlog::MemoryHashes::new();
    for (_, record) in &stored {
        tree.append(record).unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "checkpoints were served during the load");
    for checkpoint in &seen {
        let root = fundtrail_tlog::tree_hash(checkpoint.tree_size, &tree).unwrap();
        assert_eq!(
            root.as_slice(),
            checkpoint.root_hash.as_slice(),
            "the checkpoint of {} records is not a prefix of the new log",
            checkpoint.tree_size
        );
    }
    assert_eq!(
        ledger_info(&mut client).await.record_count,
        stored.len() as u64
    );

    // The new primary takes writes, confirmed by the standby that follows it.
    let answer = ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
    )
    .await;
    assert_eq!(answer.seq, stored.len() as u64);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_standbys_gone_nothing_is_acknowledged_until_one_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Replicated { primary, standbys } = replicated(dir.path());
    let server = TestServer::serve(open(dir.path(), &primary), dir.path(), unmetered()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;

    for standby in &standbys {
        standby.stop();
    }
    let signed = chain
        .dongxiang
        .sign(&client.request(chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1))));
    let mut call = tonic::Request::new(signed.clone());
    call.set_timeout(std::time::Duration::from_millis(2_000));
    let refused = client.ledger.post(call).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::Unavailable,
        "answered before the client's deadline, outcome unknown: {refused:?}"
    );
    assert!(
        refused.message().contains("same idempotency key"),
        "{refused:?}"
    );
    assert_eq!(
        ledger_info(&mut client).await.record_count,
        count,
        "nothing became durable"
    );
    assert_eq!(
        primary.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"),
        "1",
        "the commit waits for a standby; it did not fail"
    );

    // A standby returns: the waiting commit completes, and the retry with
    // the same idempotency key learns it was recorded, once.
    standbys[0].restart();
    let retried = client.post_signed(signed).await.expect("retry");
    assert_eq!(retried.seq, count);
    let next = ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
    )
    .await;
    assert_eq!(next.seq, count + 1, "the request was recorded once");
    server.stop().await;
}
