//! `fundtrail init` and `serve` with `--journal-ca`, against a database
//! that speaks TLS only: without the CA they cannot reach it; with it they
//! create the ledger and serve it.

#![cfg(unix)]

#[path = "process/mod.rs"]
mod process;

use std::process::{Command, Stdio};
use std::time::Duration;

use fundtrail_client::{Client, Signer};
use fundtrail_pgtest::{tls_files, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_and_serve_reach_a_tls_only_database_with_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tls_files(dir.path(), "db");
    let cluster = Cluster::start_tls(&cert, &key);
    let url = format!("{} sslmode=require", cluster.url("postgres"));
    let data_dir = dir.path().join("data");
    let init = |ca: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fundtrail"));
        command
            .args(["init", "--data-dir"])
            .arg(&data_dir)
            .args(["--journal", &url])
            .env_remove("PGSSLROOTCERT")
            .env_remove("FUNDTRAIL_DATA_DIR");
        if let Some(ca) = ca {
            command.arg("--journal-ca").arg(ca);
        }
        command.output().expect("run fundtrail init")
    };
    let refused = init(None);
    assert!(!refused.status.success(), "no TLS, no database");
    let created = init(Some(&ca));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["serve", "--data-dir"])
        .arg(&data_dir)
        .args(["--journal", &url, "--lease-ms", "1000"])
        .arg("--journal-ca")
        .arg(&ca)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("FUNDTRAIL_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fundtrail serve");
    let served = process::listening_url(
        &mut child,
        &dir.path().join("serve.stdout"),
        Duration::from_secs(60),
    )
    .expect("the server listens");
    let root = Signer::from_key_file(&data_dir.join("root.key")).unwrap();
    let mut client = Client::connect_as(&served, &root).await.unwrap();
    let info = client
        .query
        .get_ledger(fundtrail_api::pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.record_count, 1);
    assert!(info.writable);
    assert_eq!(
        cluster.query("SELECT count(*) > 0 FROM pg_stat_ssl WHERE ssl"),
        "t",
        "the server's connections are encrypted"
    );
    let _ = child.kill();
    let _ = child.wait();
}
