//! Ledger.PostStream over real gRPC on a real data directory: answers come
//! in the order sent, one per request, each once durable; a refusal is
//! answered alone and the stream goes on; a message over the limit ends the
//! stream and the ledger keeps writing; `fundtrail post --from-file` loads a
//! file the CLI signed line by line.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::Signer;
use tokio_stream::StreamExt;

fn ok_seq(result: &pb::PostResult) -> Option<(u64, bool)> {
    match &result.result {
        Some(pb::post_result::Result::Ok(ok)) => Some((ok.seq, ok.duplicate)),
        _ => None,
    }
}

fn error_code(result: &pb::PostResult) -> Option<tonic::Code> {
    match &result.result {
        Some(pb::post_result::Result::Error(e)) => Some(tonic::Code::from_i32(e.code)),
        _ => None,
    }
}

async fn funded_treasury(client: &mut fundtrail_client::Client, root: &Signer) {
    for (id, kind) in [
        ("mof-t", pb::AccountKind::Treasury),
        ("mof-p", pb::AccountKind::Programme),
    ] {
        ok(client, root, open_account(id, kind, "专项资金")).await;
    }
    ok(
        client,
        root,
        appropriation("mof-t", 1_000_00, "财预〔2026〕1号"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_order_and_a_refusal_does_not_end_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    funded_treasury(&mut client, &root).await;
    let before = ledger_info(&mut client).await.record_count;

    // 300 transfers of ¥1.00, one with a broken signature, one overdraft,
    // and one retry of an earlier request.
    let mut requests: Vec<pb::SignedRequest> = (0..300)
        .map(|_| root.sign(&client.request(transfer("mof-t", "mof-p", 1_00, "财预〔2026〕2号"))))
        .collect();
    requests[100].signature[0] ^= 1;
    requests[200] =
        root.sign(&client.request(transfer("mof-t", "mof-p", 1_000_00, "财预〔2026〕2号")));
    let retry = requests[10].clone();
    requests.push(retry);
    let sent = requests.len();
    let results: Vec<pb::PostResult> = client
        .post_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(results.len(), sent, "one answer per request");
    assert_eq!(
        error_code(&results[100]),
        Some(tonic::Code::Unauthenticated)
    );
    assert_eq!(
        error_code(&results[200]),
        Some(tonic::Code::FailedPrecondition),
        "{:?}",
        results[200]
    );
    let recorded: Vec<u64> = results[..300]
        .iter()
        .filter_map(ok_seq)
        .map(|(seq, duplicate)| {
            assert!(!duplicate);
            seq
        })
        .collect();
    assert_eq!(recorded.len(), 298);
    let expected: Vec<u64> = (before..before + 298).collect();
    assert_eq!(recorded, expected, "seqs in the order sent, without gaps");
    assert_eq!(
        ok_seq(&results[300]),
        Some((before + 10, true)),
        "the retry answers the first record"
    );
    assert_eq!(ledger_info(&mut client).await.record_count, before + 298);
    assert_eq!(balance(&mut client, "mof-p").await, 298_00);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_ends_the_stream_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    funded_treasury(&mut client, &root).await;
    let before = ledger_info(&mut client).await.record_count;

    let good = root.sign(&client.request(transfer("mof-t", "mof-p", 1_00, "财预〔2026〕2号")));
    let huge = pb::SignedRequest {
        payload: vec![7; fundtrail_core::limits::POST_STREAM_MESSAGE_BYTES_MAX + 1],
        ..good.clone()
    };
    let mut results = client
        .post_stream(tokio_stream::iter(vec![good, huge]))
        .await
        .unwrap();
    let mut answered = Vec::new();
    let mut ended = None;
    while let Some(result) = results.next().await {
        match result {
            Ok(result) => answered.push(result),
            Err(status) => {
                ended = Some(status);
                break;
            }
        }
    }
    let ended = ended.expect("the stream ends with an error");
    assert_eq!(ended.code(), tonic::Code::ResourceExhausted, "{ended:?}");
    assert!(answered.len() <= 1);
    // Whatever the first request's fate, the ledger keeps writing.
    let next = ok(
        &mut client,
        &root,
        transfer("mof-t", "mof-p", 2_00, "财预〔2026〕3号"),
    )
    .await;
    assert!(next.seq >= before);
    assert!(ledger_info(&mut client).await.writable);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signs_a_bulk_file_and_loads_it_over_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    funded_treasury(&mut client, &root).await;
    let before = ledger_info(&mut client).await.record_count;

    let key = dir.path().join("root.key");
    // `fundtrail post --server … --key … ARGS…`
    let fundtrail = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
            .args(["post", "--server", &server.url])
            .arg("--key")
            .arg(&key)
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let mut file = String::new();
    for i in 0..5 {
        let (ok, stdout, stderr) = fundtrail(&[
            "--sign-only",
            "--idempotency-key",
            &format!("bulk-{i}"),
            "transfer",
            "--from",
            "mof-t",
            "--to",
            "mof-p",
            "--amount",
            "1.00",
            "--document",
            "财预〔2026〕4号",
        ]);
        assert!(ok, "{stderr}");
        file.push_str(&stdout);
    }
    assert_eq!(
        ledger_info(&mut client).await.record_count,
        before,
        "signing alone posts nothing"
    );
    let path = dir.path().join("requests.jsonl");
    std::fs::write(&path, &file).unwrap();
    let (ok, stdout, stderr) = fundtrail(&["--from-file", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for i in 0..5u64 {
        assert!(
            stdout.contains(&format!("line {}: recorded as #{}", i + 1, before + i)),
            "{stdout}"
        );
    }
    assert!(
        stderr.contains("5 recorded, 0 already recorded, 0 refused"),
        "{stderr}"
    );
    // Loading the same file again records nothing twice.
    let (ok, stdout, _) = fundtrail(&["--from-file", path.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(stdout.matches("(already recorded)").count(), 5, "{stdout}");
    let info = ledger_info(&mut client).await;
    assert_eq!(info.record_count, before + 5);
    server.stop().await;
}
