//! `/metrics` on the HTTP port (`serve --http`): a real server, real gRPC
//! calls, and the Prometheus text read over HTTP. Every number checked is
//! one the test can count itself.

mod common;

use std::collections::BTreeMap;

use common::*;
use fundtrail_api::pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GETs `path` from the HTTP port at `addr` and returns the status line
/// and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Each sample line's name (with labels) and value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_server_did() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(fundtrail_server::http_view::serve_http(
        server.engine.clone(),
        fundtrail_server::boundary_layer(&server.engine, &Default::default()),
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    let mut client = server.client().await;
    let root = server.root();
    let posts_ok = 5;
    for i in 0..posts_ok {
        ok(
            &mut client,
            &root,
            open_account(&format!("acct-{i}"), pb::AccountKind::Treasury, "国库"),
        )
        .await;
    }
    // The same account again: refused, and counted under its code.
    let refused = client
        .post(
            &root,
            open_account("acct-0", pb::AccountKind::Treasury, "国库"),
        )
        .await
        .unwrap_err();
    let refused_code = match refused.code() {
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        other => panic!("unexpected refusal {other:?}"),
    };
    let count = ledger_info(&mut client).await.record_count;
    let checkpoint = checkpoint_of_all(&server, &mut client).await;

    let (status, body) = get(addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    let metrics = samples(&body);
    let value = |name: &str| {
        *metrics
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in:\n{body}"))
    };
    assert_eq!(value("fundtrail_ledger_records"), count as f64);
    // Every record but the genesis (written by init) went through this
    // server's journal writer.
    assert_eq!(
        value("fundtrail_commit_batch_records_sum"),
        (count - 1) as f64
    );
    assert_eq!(
        value("fundtrail_commit_batch_records_count"),
        value("fundtrail_commit_batches_total")
    );
    assert_eq!(
        value("fundtrail_commit_seconds_count"),
        value("fundtrail_commit_batches_total")
    );
    assert_eq!(value("fundtrail_commit_failures_total"), 0.0);
    assert_eq!(value("fundtrail_read_only"), 0.0);
    assert_eq!(value("fundtrail_sequencer_queue_depth"), 0.0);
    assert_eq!(
        value("fundtrail_checkpoint_tree_size"),
        checkpoint.tree_size as f64
    );
    let post = "/fundtrail.v1.Ledger/Post";
    assert_eq!(
        value(&format!(
            "fundtrail_grpc_requests_total{{method=\"{post}\",code=\"OK\"}}"
        )),
        posts_ok as f64
    );
    assert_eq!(
        value(&format!(
            "fundtrail_grpc_requests_total{{method=\"{post}\",code=\"{refused_code}\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&format!(
            "fundtrail_grpc_request_seconds_count{{method=\"{post}\"}}"
        )),
        (posts_ok + 1) as f64
    );

    // A path the server does not serve is counted, but under one label.
    let (status, _) = get(addr, "/nothing-here").await;
    assert!(status.contains("404"), "{status}");
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Channel::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let unknown = raw
        .unary::<_, pb::LedgerInfo, _>(
            tonic::Request::new(pb::GetLedgerRequest {}),
            http::uri::PathAndQuery::from_static("/made.Up/Method"),
            tonic_prost::ProstCodec::<pb::GetLedgerRequest, pb::LedgerInfo>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::Unimplemented);
    let metrics = samples(&get(addr, "/metrics").await.1);
    assert_eq!(
        metrics.get("fundtrail_grpc_requests_total{method=\"other\",code=\"UNIMPLEMENTED\"}"),
        Some(&1.0)
    );
    assert!(
        !metrics.keys().any(|name| name.contains("made.Up")),
        "no label from the caller's path"
    );

    // Writes stopped show as read-only.
    server
        .engine
        .gate()
        .stop(fundtrail_server::gate::Stop::Asked(
            "a test stops writes".into(),
        ));
    let metrics = samples(&get(addr, "/metrics").await.1);
    assert_eq!(metrics.get("fundtrail_read_only"), Some(&1.0));

    let _ = stop.send(());
    http.await.unwrap().unwrap();
    server.stop().await;
}

#[test]
fn the_http_port_listens_on_loopback_only() {
    use fundtrail_server::http_view::check_http_address;
    assert!(check_http_address("127.0.0.1:8080".parse().unwrap()).is_ok());
    assert!(check_http_address("[::1]:8080".parse().unwrap()).is_ok());
    let refused = check_http_address("0.0.0.0:8080".parse().unwrap()).unwrap_err();
    assert!(refused.to_string().contains("loopback"), "{refused}");
}
