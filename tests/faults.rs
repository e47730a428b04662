//! Storage faults are not refusals. The engine runs on the real file
//! journal and derived state wrapped in fault-injecting doubles; each test
//! breaks one store at one step of the write path and checks what clients
//! hear, that writes stop, and what a restart finds on disk.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::Signer;
use fundtrail_core::state::key;
use fundtrail_server::engine::{open_file_stores, Engine, EngineConfig, Stores};
use fundtrail_store::faulty::{Faults, FaultyJournal, FaultyState};

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        checkpoints: fast_checkpoints(),
        ..EngineConfig::new(dir)
    }
}

/// A new ledger in `dir`, opened on faulty stores.
fn faulty_engine(dir: &Path, faults: &Arc<Faults>) -> Arc<Engine> {
    if !fundtrail_server::genesis::exists(dir) {
        fundtrail_server::genesis::init(dir, &Default::default()).unwrap();
    }
    let Stores { journal, state, .. } = open_file_stores(dir).unwrap();
    let stores = Stores {
        shared_checkpoints: None,
        journal: Box::new(FaultyJournal {
            inner: journal,
            faults: faults.clone(),
        }),
        state: Arc::new(FaultyState {
            inner: state,
            faults: faults.clone(),
        }),
    };
    Engine::open_with(config(dir), stores).unwrap()
}

fn signed(
    engine: &Engine,
    signer: &Signer,
    idempotency_key: &str,
    account_id: &str,
) -> pb::SignedRequest {
    signed_body(
        engine,
        signer,
        idempotency_key,
        open_account(account_id, pb::AccountKind::Programme, "专项资金"),
    )
}

fn signed_body(
    engine: &Engine,
    signer: &Signer,
    idempotency_key: &str,
    body: pb::request::Body,
) -> pb::SignedRequest {
    signer.sign(&pb::Request {
        ledger_id: engine.meta().ledger_id.clone(),
        idempotency_key: idempotency_key.into(),
        signed_at_ms: fundtrail_core::clock::now_ms(),
        body: Some(body),
        ..Default::default()
    })
}

/// Waits (at most 10 s) until writes are stopped.
async fn stopped(engine: &Engine) -> String {
    let mut open = engine.gate().watch();
    tokio::time::timeout(std::time::Duration::from_secs(10), open.wait_for(|o| !o))
        .await
        .expect("writes stop")
        .expect("the gate lives");
    engine.gate().reason().expect("a stop has a reason")
}

fn root(dir: &Path) -> Signer {
    Signer::from_key_file(&dir.join("root.key")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_answers_outcome_unknown_and_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let engine = faulty_engine(dir.path(), &faults);
    let request = signed(&engine, &root(dir.path()), "open-a", "mof-a");
    let count = engine.record_count();
    Faults::set(&faults.journal_sync);
    let refused = engine.submit(request.clone()).await.unwrap_err();
    assert_eq!(refused.code, fundtrail_core::Code::Unavailable);
    assert!(
        refused.message.contains("outcome unknown"),
        "{}",
        refused.message
    );
    assert!(
        refused.message.contains("same idempotency key"),
        "{}",
        refused.message
    );
    assert!(engine.gate().is_stopped());
    assert_eq!(
        engine.record_count(),
        count,
        "nothing is shown that is not known durable"
    );
    let later = signed(&engine, &root(dir.path()), "open-b", "mof-b");
    let refused = engine.submit(later).await.unwrap_err();
    assert!(
        refused.message.contains("not accepting writes"),
        "{}",
        refused.message
    );
    engine.shutdown();
    drop(engine);

    // The bytes did reach the file: after a restart the record is there, and
    // the retry the client was told to make returns it.
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.record_count(), count + 1);
    let retried = engine.submit(request).await.unwrap();
    assert!(retried.duplicate);
    assert_eq!(retried.seq, count);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_commit_keeps_the_durable_record_and_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let engine = faulty_engine(dir.path(), &faults);
    let count = engine.record_count();
    Faults::set(&faults.state_commit);
    // The journal write succeeded: the record is durable and acknowledged,
    // whatever the indexer behind it then finds.
    let committed = engine
        .submit(signed(&engine, &root(dir.path()), "open-a", "mof-a"))
        .await
        .unwrap();
    assert_eq!(committed.seq, count);
    let reason = stopped(&engine).await;
    assert!(reason.contains("state store failed"), "{reason}");
    // What mends it is the disk's business, not the ledger's: an I/O fault.
    match engine.gate().stopped() {
        Some(fundtrail_server::gate::Stop::StoreFailed(fault)) => {
            assert_eq!(fault.kind, fundtrail_core::FaultKind::Io, "{fault}")
        }
        other => panic!("writes stopped for another reason: {other:?}"),
    }
    let refused = engine
        .submit(signed(&engine, &root(dir.path()), "open-b", "mof-b"))
        .await
        .unwrap_err();
    assert_eq!(refused.code, fundtrail_core::Code::Unavailable);
    engine.shutdown();
    drop(engine);

    // Start-up replays the record the state missed.
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.record_count(), count + 1);
    use fundtrail_core::state::StateRead;
    assert!(engine.state().account("mof-a").unwrap().is_some());
    assert!(engine.gate().reason().is_none());
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_read_fault_while_applying_is_not_a_refusal_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let engine = faulty_engine(dir.path(), &faults);
    let root = root(dir.path());
    engine
        .submit(signed(&engine, &root, "open-a", "mof-a"))
        .await
        .unwrap();
    let paid = engine
        .submit(signed_body(
            &engine,
            &root,
            "pay-a",
            appropriation("mof-a", 1_000_00, "财预〔2026〕1号"),
        ))
        .await
        .unwrap();
    let count = engine.record_count();
    let request = signed_body(
        &engine,
        &root,
        "undo-a",
        pb::request::Body::Reversal(pb::Reversal {
            target_seq: paid.seq,
            document_no: "财预〔2026〕2号".into(),
            reason: "重复下达".into(),
        }),
    );
    // The sequencer holds registry and balances in memory, but reads the
    // movement a reversal undoes from the derived store once it is indexed:
    // that read fails inside the rules.
    assert!(
        engine
            .indexed()
            .wait(count, std::time::Duration::from_secs(10))
            .await
    );
    faults.fail_reads_under(&[key::MOVEMENT]);
    let refused = engine.submit(request.clone()).await.unwrap_err();
    assert_eq!(refused.code, fundtrail_core::Code::Unavailable);
    assert!(
        refused.message.contains("store failed"),
        "{}",
        refused.message
    );
    assert!(
        refused.field.is_empty(),
        "a fault names no field of the request"
    );
    let reason = engine.gate().reason().expect("writes stopped");
    assert!(reason.contains("while applying"), "{reason}");
    assert_eq!(engine.record_count(), count);
    engine.shutdown();
    drop(engine);

    // Nothing was recorded; once the store is healthy the request goes in.
    drop(faults);
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.record_count(), count);
    let committed = engine.submit(request).await.unwrap();
    assert!(!committed.duplicate);
    assert_eq!(committed.seq, count);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_the_ledger_is_not_serving_once_writes_stop() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults::new();
    let engine = faulty_engine(dir.path(), &faults);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(fundtrail_server::serve_on(
        engine.clone(),
        listener,
        Default::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut ledger = health
        .watch(HealthCheckRequest {
            service: "fundtrail.v1.Ledger".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let status =
        |m: tonic_health::pb::HealthCheckResponse| ServingStatus::try_from(m.status).unwrap();
    assert_eq!(
        status(ledger.message().await.unwrap().unwrap()),
        ServingStatus::Serving
    );

    Faults::set(&faults.journal_sync);
    let request = signed(&engine, &root(dir.path()), "open-a", "mof-a");
    assert!(engine.submit(request).await.is_err());
    assert_eq!(
        status(ledger.message().await.unwrap().unwrap()),
        ServingStatus::NotServing
    );
    // Reads go on.
    let query = health
        .check(HealthCheckRequest {
            service: "fundtrail.v1.Query".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(query), ServingStatus::Serving);
    // A graceful stop waits for open streams: close the watch first.
    drop(ledger);
    drop(health);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();

    // After recovery (a restart that replays the journal) it serves again.
    drop(engine);
    let server = TestServer::start(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "fundtrail.v1.Ledger".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status(answer), ServingStatus::Serving);
    server.stop().await;
}
