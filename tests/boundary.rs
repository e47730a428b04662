//! No client can stop the ledger or starve others, and bad bytes get plain
//! answers: oversized messages, padded batches, messages that do not
//! decode, a key that spends its read allowance, and discovery by a
//! reflection client that is not tonic's — each over real sockets.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use common::*;
use fundtrail_api::pb;
use fundtrail_core::clock::SystemClock;
use fundtrail_server::boundary::BoundaryConfig;
use fundtrail_server::ServeOptions;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Sends and receives message bytes as they are, as a client written
/// apart from this repository might.
#[derive(Debug, Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let len = buf.remaining();
        Ok(Some(buf.copy_to_bytes(len).to_vec()))
    }
}

/// One unary call with raw message bytes.
async fn raw_call(
    url: &str,
    path: &'static str,
    request: tonic::Request<Vec<u8>>,
) -> Result<Vec<u8>, Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(request, http::uri::PathAndQuery::from_static(path), Raw)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_do_not_decode_are_invalid_arguments_on_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let ledger_id = client.ledger_id().to_string();
    let root = server.root();
    let overlong_varint = {
        let mut bytes = vec![0x08];
        bytes.extend([0xff; 10]);
        bytes.push(0x01);
        bytes
    };
    let cases: Vec<(&'static str, Vec<u8>, bool)> = vec![
        (
            "/fundtrail.v1.Query/GetLedger",
            overlong_varint.clone(),
            false,
        ),
        ("/fundtrail.v1.Audit/GetCheckpoint", vec![0x08], false),
        // A string field (service) holding invalid UTF-8.
        (
            "/grpc.health.v1.Health/Check",
            vec![0x0a, 0x02, 0xff, 0xfe],
            false,
        ),
        (
            "/fundtrail.v1.Query/GetAccount",
            vec![0x0a, 0x02, 0xff, 0xfe],
            true,
        ),
        // A length-delimited field that claims 5 bytes and carries 1.
        ("/fundtrail.v1.Ledger/Post", vec![0x0a, 0x05, 0x01], false),
        ("/fundtrail.v1.Ledger/PostBatch", overlong_varint, false),
    ];
    let count = ledger_info(&mut client).await.record_count;
    for (path, bytes, sign) in cases {
        let mut request = tonic::Request::new(bytes.clone());
        if sign {
            let now = fundtrail_client::now_ms();
            let nonce = fresh_nonce();
            sign_read(
                request.metadata_mut(),
                &bytes,
                path,
                &ledger_id,
                &root,
                now,
                &nonce,
            );
        }
        let refused = raw_call(&server.url, path, request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{path}: {refused:?}");
        assert!(
            refused.message().contains("does not decode"),
            "{path}: {}",
            refused.message()
        );
    }
    let info = ledger_info(&mut client).await;
    assert_eq!(info.record_count, count);
    assert!(info.writable);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_and_padded_batches_are_refused_alone_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    use pb::AccountKind as K;
    ok(
        &mut client,
        &root,
        open_account("mof-a", K::Treasury, "国库"),
    )
    .await;

    // A 10 MiB query.
    let refused = client
        .query
        .list_entries(pb::ListEntriesRequest {
            document_no: "文".repeat((10 << 20) / 3),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("at most 65536 bytes"),
        "{}",
        refused.message()
    );

    // A 30 MiB post.
    let huge = pb::SignedRequest {
        payload: vec![0x42; 30 << 20],
        key_id: root.key_id().into(),
        signature: vec![0; 64],
    };
    let refused = client.post_signed(huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("at most 25165824 bytes"),
        "{}",
        refused.message()
    );

    // A batch where every other request is padded past the payload limit.
    let count = ledger_info(&mut client).await.record_count;
    let requests: Vec<pb::SignedRequest> = (0..8)
        .map(|i| {
            let mut body = appropriation("mof-a", 1_00, &format!("财〔2026〕{i}号"));
            if i % 2 == 1 {
                if let pb::request::Body::Appropriation(a) = &mut body {
                    a.memo = "填".repeat(8_000);
                }
            }
            root.sign(&client.request(body))
        })
        .collect();
    let results = client.post_batch(requests).await.unwrap();
    for (i, result) in results.iter().enumerate() {
        match (&result.result, i % 2) {
            (Some(pb::post_result::Result::Ok(_)), 0) => {}
            (Some(pb::post_result::Result::Error(e)), 1) => {
                assert_eq!(e.code, Code::ResourceExhausted as i32, "{e:?}");
                assert!(e.message.contains("at most 16384"), "{}", e.message);
            }
            other => panic!("request {i}: {other:?}"),
        }
    }
    let info = ledger_info(&mut client).await;
    assert_eq!(info.record_count, count + 4);
    assert!(info.writable, "{}", info.read_only_reason);
    ok(
        &mut client,
        &root,
        appropriation("mof-a", 1_00, "财〔2026〕99号"),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_spends_its_allowance_waits_and_others_read_on() {
    let dir = tempfile::tempdir().unwrap();
    // One unit a second, fifty saved: the first key runs dry within a few
    // dozen calls however slowly the test runs.
    let options = ServeOptions {
        boundary: BoundaryConfig {
            read_cost_per_second: NonZeroU32::new(1).unwrap(),
            read_cost_burst: NonZeroU32::new(100).unwrap(),
            ..Default::default()
        },
        ..Default::default()
    };
    let server = TestServer::start_serving(
        dir.path(),
        fast_checkpoints(),
        Arc::new(SystemClock),
        options,
    )
    .await;
    let root = server.root();
    let mut root_client = server.client().await;
    let other = new_signer();
    ok(
        &mut root_client,
        &root,
        register_org(
            "gs-czt",
            "甘肃省财政厅",
            pb::OrgRole::Finance,
            "620000",
            &other,
        ),
    )
    .await;
    let mut exhausted = None;
    for _ in 0..1_000 {
        match root_client
            .query
            .get_entry(pb::GetEntryRequest { seq: 0 })
            .await
        {
            Ok(_) => {}
            Err(status) => {
                exhausted = Some(status);
                break;
            }
        }
    }
    let exhausted = exhausted.expect("the allowance never ran out");
    assert_eq!(exhausted.code(), Code::ResourceExhausted, "{exhausted:?}");
    assert!(
        exhausted.message().contains(root.key_id()),
        "{}",
        exhausted.message()
    );
    // The other key is not affected, and writes are not metered.
    let mut other_client = server.client_as(&other).await;
    other_client
        .query
        .get_entry(pb::GetEntryRequest { seq: 0 })
        .await
        .expect("another key reads on");
    ok(
        &mut root_client,
        &root,
        open_account("mof-a", pb::AccountKind::Treasury, "国库"),
    )
    .await;
    server.stop().await;
}

/// Reads one varint off `bytes`.
fn varint(bytes: &mut &[u8]) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// The length-delimited fields numbered `field` of one protobuf message.
fn fields(mut bytes: &[u8], field: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while bytes.has_remaining() {
        let tag = varint(&mut bytes);
        match tag & 7 {
            0 => {
                varint(&mut bytes);
            }
            2 => {
                let len = varint(&mut bytes) as usize;
                if tag >> 3 == field {
                    out.push(bytes[..len].to_vec());
                }
                bytes.advance(len);
            }
            wire => panic!("unexpected wire type {wire}"),
        }
    }
    out
}

/// Lists services over raw HTTP/2 (the h2 crate, no gRPC library), as
/// grpcurl, grpc_cli or Python's grpcio-reflection would.
async fn list_services(addr: &str, reflection: &str) -> Vec<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut h2 = h2.ready().await.unwrap();
    let request = grpc_request(addr, &format!("/{reflection}/ServerReflectionInfo"));
    let (response, mut send) = h2.send_request(request, false).unwrap();
    // ServerReflectionRequest { list_services = "" } (field 7), in one frame.
    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 0x3a, 0x00]), true)
        .unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        bytes.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    let status = trailers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(status.as_deref(), Some("0"), "{reflection}: {trailers:?}");
    assert_eq!(bytes[0], 0, "uncompressed");
    let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    let message = &bytes[5..5 + len];
    // ServerReflectionResponse.list_services_response (6) →
    // ListServiceResponse.service (1) → ServiceResponse.name (1).
    fields(message, 6)
        .iter()
        .flat_map(|list| fields(list, 1))
        .flat_map(|service| fields(&service, 1))
        .map(|name| String::from_utf8(name).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflection_client_that_is_not_tonic_discovers_the_api_in_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    for reflection in [
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        let services = list_services(&addr, reflection).await;
        for wanted in [
            "fundtrail.v1.Ledger",
            "fundtrail.v1.Query",
            "fundtrail.v1.Audit",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|s| s == wanted),
                "{reflection} lists {services:?}, not {wanted}"
            );
        }
    }
    server.stop().await;
}

/// `fundtrail-min-seq` must be a decimal seq the ledger holds: anything else
/// is refused with a plain status, and a held seq is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_min_seq_that_is_not_a_held_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.anonymous_client().await;
    let count = ledger_info(&mut client).await.record_count;
    let ask = |min_seq: &str| {
        let mut client = client.clone();
        let mut request = tonic::Request::new(fundtrail_api::pb::GetLedgerRequest {});
        request
            .metadata_mut()
            .insert("fundtrail-min-seq", min_seq.parse().unwrap());
        async move {
            client
                .query
                .get_ledger(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    for bad in ["", "x1", "-1", "1.5", "99999999999999999999"] {
        let refused = ask(bad).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{bad:?}: {refused:?}"
        );
    }
    let beyond = ask(&count.to_string()).await.unwrap_err();
    assert_eq!(beyond.code(), tonic::Code::OutOfRange, "{beyond:?}");
    assert!(beyond.message().contains("holds"), "{}", beyond.message());
    let held = ask(&(count - 1).to_string()).await.unwrap();
    assert_eq!(held.record_count, count);
    server.stop().await;
}
