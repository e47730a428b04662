//! The real `fundtrail serve` on a PostgreSQL journal, killed at exact
//! steps (`FUNDTRAIL_CRASH_AT`, crates/server/src/crash.rs): after a batch
//! committed but before its client heard, and after a checkpoint was
//! stored in the database but before it was served. A restart must find
//! the committed record (a retry learns it was recorded, once) and serve
//! the stored checkpoint.

#![cfg(unix)]

mod common;
#[path = "process/mod.rs"]
mod process;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use fundtrail_pgtest::Cluster;
use fundtrail_server::crash;
use prost::Message;

const APP_ROLE: &str = "fundtrail_app";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A ledger created with `fundtrail init --journal` on a fresh cluster,
/// and the server's role granted what docs/postgres.md says.
fn ledger(cluster: &Cluster, data_dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["init", "--data-dir"])
        .arg(data_dir)
        .args(["--journal", &cluster.url("postgres")])
        .env_remove("FUNDTRAIL_DATA_DIR")
        .output()
        .expect("run fundtrail init");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.admin(&format!("CREATE ROLE {APP_ROLE} LOGIN;"));
    cluster.admin(&fundtrail_pg::grants_sql(APP_ROLE));
}

/// Starts `fundtrail serve` on the cluster's journal, crashing at `crash_at`
/// if given.
fn serve(cluster: &Cluster, data_dir: &Path, crash_at: Option<&str>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fundtrail"));
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--journal", &cluster.url(APP_ROLE)])
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("FUNDTRAIL_DATA_DIR")
        .env_remove(crash::CRASH_AT_ENV)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(point) = crash_at {
        command.env(crash::CRASH_AT_ENV, point);
    }
    command.spawn().expect("start fundtrail serve")
}

async fn connect(child: &mut Child, data_dir: &Path) -> Client {
    let url = process::listening_url(child, &data_dir.join("serve.stdout"), START_TIMEOUT)
        .expect("the server listens");
    let root = Signer::from_key_file(&data_dir.join("root.key")).expect("root key");
    Client::connect_as(&url, &root).await.expect("connect")
}

/// Waits for a server that should have crashed at its crash point; one
/// still running after `START_TIMEOUT` never reached it.
fn crashed(mut child: Child) {
    let pid = child.id().to_string();
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait());
    });
    match exited.recv_timeout(START_TIMEOUT) {
        Ok(status) => {
            let status = status.expect("wait for the server");
            assert_eq!(
                status.signal(),
                Some(libc::SIGABRT),
                "the server stopped at its crash point: {status:?}"
            );
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("the server never reached its crash point");
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The record bytes in the cluster's journal, in order.
fn records_in(cluster: &Cluster) -> Vec<Vec<u8>> {
    common::pg_records(&cluster.url("postgres"))
        .into_iter()
        .map(|(_, record)| record)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_committed_before_its_client_heard_is_found_by_the_retry() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    ledger(&cluster, &data_dir);

    let mut child = serve(&cluster, &data_dir, Some(crash::AFTER_JOURNAL_COMMIT));
    let mut client = connect(&mut child, &data_dir).await;
    let root = Signer::from_key_file(&data_dir.join("root.key")).unwrap();
    let signed = root.sign(
        &client.request(pb::request::Body::OpenAccount(pb::OpenAccount {
            account_id: "mof-treasury".into(),
            kind: pb::AccountKind::Treasury as i32,
            name: "国库".into(),
            ..Default::default()
        })),
    );
    client
        .post_signed(signed.clone())
        .await
        .expect_err("the server died before answering");
    crashed(child);
    let stored = records_in(&cluster);
    assert_eq!(
        stored.len(),
        2,
        "the batch was committed: genesis and the account"
    );

    let mut child = serve(&cluster, &data_dir, None);
    let mut client = connect(&mut child, &data_dir).await;
    let retried = client.post_signed(signed.clone()).await.expect("retry");
    assert!(
        retried.duplicate,
        "the retry learns the request was recorded"
    );
    assert_eq!(retried.seq, 1);
    let record = pb::Record {
        seq: retried.seq,
        commit_time_ms: retried.commit_time_ms,
        request: Some(signed),
        effects: retried.effects,
    };
    assert_eq!(records_in(&cluster)[1], record.encode_to_vec());
    assert_eq!(records_in(&cluster).len(), 2, "recorded once");
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_stored_before_it_was_served_is_served_after_the_restart() {
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    ledger(&cluster, &data_dir);

    // Opening signs the first checkpoint (of the genesis record): the
    // server dies once the database holds it, before anything else does.
    let child = serve(&cluster, &data_dir, Some(crash::AFTER_CHECKPOINT_STORED));
    crashed(child);
    let url = cluster.url("postgres");
    let stored = std::thread::spawn(move || {
        fundtrail_pg::PgCheckpoints::open(&url)
            .unwrap()
            .notes()
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(stored.len(), 1, "the checkpoint is in the database");

    let mut child = serve(&cluster, &data_dir, None);
    let mut client = connect(&mut child, &data_dir).await;
    let served = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size: 1 })
        .await
        .expect("the stored checkpoint is served")
        .into_inner();
    assert_eq!(served.note, stored[0]);
    stop(child);
}
