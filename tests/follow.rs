//! Verifying replicas of another fundtrail node (`serve --follow URL`):
//! real servers over gRPC on real data directories. A replica catches up
//! with a writer under load and agrees with it, restarts from its own
//! journal, and is followed in turn by another replica; a replica shown a
//! fork of the log or a forged record stops, keeps serving what it
//! verified and writes the evidence.

mod common;

use std::path::Path;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::Signer;
use fundtrail_server::engine::{Engine, EngineConfig};
use fundtrail_server::follow::{NodeUpstream, Upstream, EVIDENCE_FILE_NAME};
use fundtrail_server::start::StartError;

/// A writer with the national chain and a MIRROR org, whose key replicas
/// follow with.
async fn writer(dir: &Path) -> (TestServer, Chain, Signer) {
    let writer = TestServer::start(dir).await;
    let mut client = writer.client().await;
    let chain = build_chain(&mut client, writer.root()).await;
    let mirror = new_signer();
    ok(
        &mut client,
        &chain.root,
        register_org("mirror", "镜像", pb::OrgRole::Mirror, "000000", &mirror),
    )
    .await;
    (writer, chain, mirror)
}

/// A replica in `dir` of the node at `url`, served; the test reads it with
/// the ledger's root key, copied from `writer_dir`.
async fn replica(dir: &Path, writer_dir: &Path, url: &str, mirror: &Signer) -> TestServer {
    let engine = open_replica(dir, writer_dir, url, mirror, None)
        .unwrap_or_else(|e| panic!("replica did not open: {e}"));
    TestServer::serve(engine, dir, unmetered()).await
}

/// A replica's engine, its genesis's log key pinned to `pin` if given.
fn open_replica(
    dir: &Path,
    writer_dir: &Path,
    url: &str,
    mirror: &Signer,
    pin: Option<&str>,
) -> Result<std::sync::Arc<Engine>, StartError> {
    std::fs::create_dir_all(dir).unwrap();
    let root_key = dir.join("root.key");
    if !root_key.exists() {
        std::fs::copy(writer_dir.join("root.key"), root_key).unwrap();
    }
    fundtrail_server::open(
        EngineConfig {
            skew_ms_max: SKEW_MS_MAX,
            pinned_log_vkey: pin.map(str::to_string),
            ..EngineConfig::new(dir)
        },
        fundtrail_server::Role::Replica(Upstream::Node(Box::new(NodeUpstream {
            url: url.to_string(),
            tls: Default::default(),
            reader: mirror.clone(),
        }))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_a_node_under_load_restarts_and_is_followed_in_turn() {
    let dirs = tempfile::tempdir().unwrap();
    let writer_dir = dirs.path().join("writer");
    let (writer, chain, mirror) = writer(&writer_dir).await;
    let mut client = writer.client().await;
    let first_dir = dirs.path().join("first");
    let first = replica(&first_dir, &writer_dir, &writer.url, &mirror).await;

    // The writer keeps posting while the replica follows.
    pay_one_fen_concurrently(&writer, &chain, 3, 80).await;
    let newest = checkpoint_of_all(&writer, &mut client).await;
    verified(&first, newest.tree_size).await;
    // Caught up: the lag GetLedger reports is zero.
    let mut status = first.engine.replica_status().unwrap().subscribe();
    let caught_up = format!(
        "verified up to the checkpoint of {} records",
        newest.tree_size
    );
    tokio::time::timeout(CATCH_UP, status.wait_for(|s| s.reason.contains(&caught_up)))
        .await
        .expect("the status says it caught up")
        .unwrap();
    let mut first_client = first.client().await;
    let info = ledger_info(&mut first_client).await;
    assert_eq!(info.record_count, newest.tree_size);
    let replica_info = info.replica.clone().expect("a replica says so");
    assert_eq!(replica_info.upstream, writer.url);
    assert_eq!(replica_info.upstream_checkpoint_size, newest.tree_size);
    assert!(!replica_info.stopped);
    let metrics = first.engine.metrics().render(&first.engine.gauges());
    for line in [
        format!(
            "fundtrail_replica_upstream_checkpoint_size {}",
            newest.tree_size
        ),
        "fundtrail_replica_lag_records 0".to_string(),
        "fundtrail_replica_stopped 0".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(
        ledger_info(&mut client).await.replica.is_none(),
        "the writer is none"
    );
    assert!(!info.writable);
    assert!(
        info.read_only_reason
            .contains(&format!("a replica of {}", writer.url)),
        "{}",
        info.read_only_reason
    );
    for account in ["dx-hh-0001", "dx-xczx", "gs-xczx"] {
        assert_eq!(
            balance(&mut first_client, account).await,
            balance(&mut client, account).await,
            "{account}"
        );
    }
    let served = first_client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.note, newest.note, "it serves the log's checkpoint");
    let refused = first_client
        .post(
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1)),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    // Its journal holds exactly the records it verified, byte for byte.
    writer.settle();
    let exported = |dir: &Path| {
        let journal = fundtrail_store::journal::Journal::open(
            &dir.join("journal.log"),
            fundtrail_store::header::FileKind::Journal,
            None,
        )
        .unwrap();
        journal
            .scan(journal.first_offset())
            .unwrap()
            .map(|frame| frame.unwrap().record)
            .take(newest.tree_size as usize)
            .collect::<Vec<_>>()
    };
    assert_eq!(exported(&first_dir), exported(&writer_dir));

    // Restarted, it serves what it verified at once, then follows on.
    first.stop().await;
    let first = replica(&first_dir, &writer_dir, &writer.url, &mirror).await;
    assert_eq!(first.engine.record_count(), newest.tree_size);
    ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 5)),
    )
    .await;
    let later = checkpoint_of_all(&writer, &mut client).await;
    verified(&first, later.tree_size).await;

    // A replica that pins the log key opens only on the ledger it names.
    let log_vkey = vkey(&mut client).await;
    let pinned = open_replica(
        &dirs.path().join("pinned"),
        &writer_dir,
        &writer.url,
        &mirror,
        Some(&log_vkey),
    )
    .unwrap_or_else(|e| panic!("the right pin is accepted: {e}"));
    pinned.shutdown();
    let stranger = fundtrail_tlog::NoteSigner::new(
        "fundtrail/someone-else",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap();
    let refused = open_replica(
        &dirs.path().join("mispinned"),
        &writer_dir,
        &writer.url,
        &mirror,
        Some(&stranger.verifier().vkey()),
    )
    .map(|_| ())
    .unwrap_err();
    // Another ledger, or a forged one: nothing a restart mends.
    assert!(matches!(refused, StartError::Refused(_)), "{refused}");
    assert!(refused.to_string().contains("not the pinned"), "{refused}");
    assert!(
        !dirs.path().join("mispinned/replica.key").exists(),
        "nothing of its own was written"
    );

    // A replica of the replica: any fundtrail node can be followed.
    let second = replica(
        &dirs.path().join("second"),
        &writer_dir,
        &first.url,
        &mirror,
    )
    .await;
    verified(&second, later.tree_size).await;
    let mut second_client = second.client().await;
    assert_eq!(
        balance(&mut second_client, "dx-hh-0001").await,
        balance(&mut client, "dx-hh-0001").await
    );
    second.stop().await;
    first.stop().await;
    writer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_a_node_stops_at_a_fork_or_a_forged_record_and_keeps_what_it_verified() {
    let dirs = tempfile::tempdir().unwrap();
    let a_dir = dirs.path().join("a");
    let (a, chain, mirror) = writer(&a_dir).await;
    let mut client = a.client().await;
    let first = checkpoint_of_all(&a, &mut client).await;
    // Two replicas verify the first checkpoint.
    let (honest_dir, early_dir) = (dirs.path().join("honest"), dirs.path().join("early"));
    for dir in [&honest_dir, &early_dir] {
        let replica = replica(dir, &a_dir, &a.url, &mirror).await;
        verified(&replica, first.tree_size).await;
        replica.stop().await;
    }
    a.stop().await;

    // The log forks: a copy of its data directory, keys and all, writes
    // other records than the original, and both sign checkpoints.
    let b_dir = dirs.path().join("b");
    copy_dir(&a_dir, &b_dir);
    let (a, b) = (
        TestServer::start(&a_dir).await,
        TestServer::start(&b_dir).await,
    );
    for (server, amount_fen) in [(&a, 1), (&b, 2)] {
        ok(
            &mut server.client().await,
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", amount_fen)),
        )
        .await;
    }
    let a_checkpoint = checkpoint_of_all(&a, &mut a.client().await).await;
    let b_checkpoint = checkpoint_of_all(&b, &mut b.client().await).await;
    assert_eq!(a_checkpoint.tree_size, b_checkpoint.tree_size);
    assert_ne!(a_checkpoint.root_hash, b_checkpoint.root_hash);

    // One verifies the original's newer checkpoint…
    let honest = replica(&honest_dir, &a_dir, &a.url, &mirror).await;
    verified(&honest, a_checkpoint.tree_size).await;
    honest.stop().await;
    // …then, pointed at the copy, finds the log signed two trees.
    let honest = replica(&honest_dir, &a_dir, &b.url, &mirror).await;
    let reason = stopped(&honest).await;
    assert!(reason.contains("two different checkpoints"), "{reason}");
    let evidence = std::fs::read_to_string(honest_dir.join(EVIDENCE_FILE_NAME)).unwrap();
    assert!(
        evidence.contains(&a_checkpoint.note) && evidence.contains(&b_checkpoint.note),
        "both signed checkpoints are the evidence: {evidence}"
    );
    let mut honest_client = honest.client().await;
    let info = ledger_info(&mut honest_client).await;
    assert_eq!(
        info.record_count, a_checkpoint.tree_size,
        "it serves what it verified"
    );
    assert!(info.replica.unwrap().stopped);
    let metrics = honest.engine.metrics().render(&honest.engine.gauges());
    assert!(
        metrics.lines().any(|l| l == "fundtrail_replica_stopped 1"),
        "{metrics}"
    );
    assert_eq!(
        balance(&mut honest_client, "dx-hh-0001").await,
        balance(&mut a.client().await, "dx-hh-0001").await
    );
    honest.stop().await;

    // The copy's record after the first checkpoint is rewritten on disk:
    // the other replica, which verified only the first checkpoint, is sent
    // records whose tree is not the one signed.
    let location = b
        .engine
        .state()
        .record_location(first.tree_size)
        .unwrap()
        .unwrap();
    b.stop().await;
    forge_record(&b_dir.join("journal.log"), location, |record| {
        let last = record.len() - 1;
        record[last] ^= 1;
    });
    let b = TestServer::start(&b_dir).await;
    let early = replica(&early_dir, &a_dir, &b.url, &mirror).await;
    let reason = stopped(&early).await;
    assert!(reason.contains("do not give the root"), "{reason}");
    let evidence = std::fs::read_to_string(early_dir.join(EVIDENCE_FILE_NAME)).unwrap();
    assert!(evidence.contains(&b_checkpoint.note), "{evidence}");
    let mut early_client = early.client().await;
    assert_eq!(
        ledger_info(&mut early_client).await.record_count,
        first.tree_size
    );
    early.stop().await;
    a.stop().await;
    b.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
