//! TLS and mutual TLS over real sockets, with certificates made at run time
//! (rcgen): a plaintext client, a client trusting another CA, and a client
//! without (or with a foreign) certificate are refused; the right ones read.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use fundtrail_client::{Client, ConnectOptions, TlsFiles};
use fundtrail_core::clock::SystemClock;
use fundtrail_server::ServeOptions;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA that signs certificates into PEM files under `dir`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    cert: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.join(format!("{name}.pem"));
        std::fs::write(&cert, issuer.pem()).unwrap();
        Ca { issuer, cert }
    }

    /// A certificate for `names` and its key, as (cert file, key file).
    fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{file}.pem")),
            dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

async fn tls_server(dir: &Path, ca: &Ca, client_ca: Option<&Ca>) -> TestServer {
    let (cert, key) = ca.issue(dir, "server", &["localhost"]);
    let options = ServeOptions {
        tls: Some(fundtrail_server::TlsFiles {
            cert,
            key,
            client_ca: client_ca.map(|c| c.cert.clone()),
        }),
        ..unmetered()
    };
    TestServer::start_serving(
        &dir.join("data"),
        fast_checkpoints(),
        Arc::new(SystemClock),
        options,
    )
    .await
}

async fn connect(url: &str, tls: TlsFiles, server: &TestServer) -> Result<Client, String> {
    let options = ConnectOptions {
        tls,
        reader: Some(server.root()),
        session: Some(server.session.clone()),
    };
    Client::connect_with(url, &options)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_only_clients_that_trust_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ledger-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let server = tls_server(dir.path(), &ca, None).await;
    let trusting = TlsFiles {
        ca_cert: Some(ca.cert.clone()),
        ..Default::default()
    };
    let mut client = connect(&server.url, trusting, &server).await.unwrap();
    let info = ledger_info(&mut client).await;
    assert!(info.writable);
    let root = server.root();
    ok(
        &mut client,
        &root,
        open_account("mof-a", fundtrail_api::pb::AccountKind::Treasury, "国库"),
    )
    .await;
    assert_eq!(balance(&mut client, "mof-a").await, 0);

    let plaintext = server.url.replace("https://", "http://");
    assert!(connect(&plaintext, TlsFiles::default(), &server)
        .await
        .is_err());
    let wrong_ca = TlsFiles {
        ca_cert: Some(other.cert.clone()),
        ..Default::default()
    };
    let refused = connect(&server.url, wrong_ca, &server).await.unwrap_err();
    assert!(refused.contains("certificate"), "{refused}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ledger-ca");
    let clients = Ca::new(dir.path(), "bureau-ca");
    let other = Ca::new(dir.path(), "other-ca");
    let server = tls_server(dir.path(), &ca, Some(&clients)).await;
    let (cert, key) = clients.issue(dir.path(), "bureau", &["gs-czt.example"]);
    let (foreign_cert, foreign_key) = other.issue(dir.path(), "foreign", &["x.example"]);
    let with = |cert: Option<PathBuf>, key: Option<PathBuf>| TlsFiles {
        ca_cert: Some(ca.cert.clone()),
        cert,
        key,
    };
    assert!(connect(&server.url, with(None, None), &server)
        .await
        .is_err());
    assert!(connect(
        &server.url,
        with(Some(foreign_cert), Some(foreign_key)),
        &server
    )
    .await
    .is_err());
    let mut client = connect(&server.url, with(Some(cert), Some(key)), &server)
        .await
        .unwrap();
    assert!(ledger_info(&mut client).await.writable);
    server.stop().await;
}

#[test]
fn serve_refuses_plaintext_where_other_hosts_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure-plaintext"), "{stderr}");
    // Nothing was created: the check comes before the ledger.
    assert!(!dir.path().join("data").exists());
}
