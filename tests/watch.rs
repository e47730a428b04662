//! Query.Watch, the change feed, over real gRPC to a real server: every
//! record exactly once and in order across a disconnect while writes go
//! on; filters; a consumer that stops reading is ended with the seq to
//! resume from while every write is accepted; and a county's stream shows
//! what its ListEntries shows, no more.

mod common;
mod process;

use std::time::Duration;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use fundtrail_core::limits::WATCH_LAG_RECORDS_MAX;
use tonic::Code;

/// A bound on how long a test waits for events it is owed, so that a bug
/// fails the test instead of hanging it (not a synchronisation).
const OWED_WITHIN: Duration = Duration::from_secs(120);

type Events = tonic::Streaming<pb::WatchEvent>;

async fn watch(client: &mut Client, request: pb::WatchRequest) -> Events {
    client
        .query
        .watch(request)
        .await
        .expect("the watch starts")
        .into_inner()
}

fn from(seq: u64) -> pb::WatchRequest {
    pb::WatchRequest {
        from_seq: seq,
        ..Default::default()
    }
}

/// Opens `count` treasury accounts named `prefix-N` in batches; returns the
/// last record's seq.
async fn open_accounts(client: &mut Client, root: &Signer, prefix: &str, count: usize) -> u64 {
    let mut last = 0;
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    for chunk in names.chunks(500) {
        let requests = chunk
            .iter()
            .map(|id| {
                root.sign(&client.request(open_account(id, pb::AccountKind::Treasury, "国库")))
            })
            .collect();
        let results = client
            .post_batch(requests)
            .await
            .expect("the batch is taken");
        for result in results {
            match result.result {
                Some(pb::post_result::Result::Ok(ok)) => last = ok.seq,
                other => panic!("a record was refused: {other:?}"),
            }
        }
    }
    last
}

/// What a stream sent until it sent entry `last_seq` (or `entries` entries):
/// the entries, and the sizes of the checkpoints among them.
async fn read_until(
    events: &mut Events,
    done: impl Fn(&[pb::Entry]) -> bool,
) -> (Vec<pb::Entry>, Vec<u64>) {
    let mut entries = Vec::new();
    let mut checkpoints = Vec::new();
    tokio::time::timeout(OWED_WITHIN, async {
        while !done(&entries) {
            let event = events
                .message()
                .await
                .expect("the stream goes on")
                .expect("the stream does not end");
            match event.event.expect("an event") {
                pb::watch_event::Event::Entry(entry) => entries.push(entry),
                pb::watch_event::Event::Checkpoint(c) => checkpoints.push(c.tree_size),
            }
        }
    })
    .await
    .expect("the stream sent what it owed");
    (entries, checkpoints)
}

fn seqs(entries: &[pb::Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn through(last_seq: u64) -> impl Fn(&[pb::Entry]) -> bool {
    move |entries| entries.last().is_some_and(|e| e.seq >= last_seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_and_in_order_across_a_disconnect_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), fast_checkpoints()).await;
    let mut client = server.client().await;
    let root = server.root();
    open_accounts(&mut client, &root, "before", 30).await;

    let mut first = watch(&mut client, from(0)).await;
    let (seen, checkpoints) = read_until(&mut first, through(20)).await;
    assert!(!checkpoints.is_empty(), "the newest checkpoint comes first");
    drop(first);

    let writer = {
        let (mut client, root) = (server.client().await, root.clone());
        tokio::spawn(async move {
            let mut last = 0;
            for round in 0..20 {
                last = open_accounts(&mut client, &root, &format!("during-{round}"), 10).await;
            }
            last
        })
    };
    let resume = seen.last().unwrap().seq + 1;
    let mut second = watch(&mut client, from(resume)).await;
    let last = writer.await.unwrap();
    let (rest, _) = read_until(&mut second, through(last)).await;

    let all: Vec<u64> = seqs(&seen).into_iter().chain(seqs(&rest)).collect();
    assert_eq!(all, (0..=last).collect::<Vec<_>>());
    // Entries are ListEntries' entries, byte for byte.
    let listed = client
        .query
        .list_entries(pb::ListEntriesRequest {
            page_size: 5,
            page_token: resume.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed[..], rest[..5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_send_only_matching_entries() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let listed = |request: pb::ListEntriesRequest| {
        let mut client = client.clone();
        async move {
            client
                .query
                .list_entries(pb::ListEntriesRequest {
                    page_size: 1000,
                    ..request
                })
                .await
                .unwrap()
                .into_inner()
                .entries
        }
    };
    let payments = listed(pb::ListEntriesRequest {
        kind: "Disbursement".into(),
        ..Default::default()
    })
    .await;
    let touching = listed(pb::ListEntriesRequest {
        account_id: "dx-xczx".into(),
        ..Default::default()
    })
    .await;
    let by_province = listed(pb::ListEntriesRequest {
        org_id: "gs-czt".into(),
        ..Default::default()
    })
    .await;
    assert!(!payments.is_empty() && !touching.is_empty() && !by_province.is_empty());

    for (request, expected) in [
        (
            pb::WatchRequest {
                kinds: vec!["Disbursement".into()],
                ..from(0)
            },
            &payments,
        ),
        (
            pb::WatchRequest {
                account_ids: vec!["dx-xczx".into()],
                ..from(0)
            },
            &touching,
        ),
        (
            pb::WatchRequest {
                org_id: "gs-czt".into(),
                ..from(0)
            },
            &by_province,
        ),
    ] {
        let mut events = watch(&mut client, request.clone()).await;
        let count = expected.len();
        let (entries, _) = read_until(&mut events, |e| e.len() >= count).await;
        assert_eq!(seqs(&entries), seqs(expected), "{request:?}");
    }

    // Too many filters, and a stream from past the end, are refused.
    let refused = client
        .query
        .watch(pb::WatchRequest {
            account_ids: (0..65).map(|i| format!("a-{i}")).collect(),
            ..from(0)
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::InvalidArgument);
    let count = ledger_info(&mut client).await.record_count;
    let refused = client.query.watch(from(count + 1)).await;
    assert_eq!(refused.unwrap_err().code(), Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_ended_and_resumes_while_every_write_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), fast_checkpoints()).await;
    let mut client = server.client().await;
    let root = server.root();
    // Opened, then not read while the ledger grows: by more than the lag
    // limit after the transport's buffers (HTTP/2 windows and send buffers
    // of a few MiB, a few thousand entries) have filled.
    let mut stalled = watch(&mut client, from(0)).await;
    let total = WATCH_LAG_RECORDS_MAX as usize + 10_000;
    let last = open_accounts(&mut client, &root, "load", total).await;
    assert!(last >= total as u64, "every write was taken");

    // It gets what was queued for it, in order, then the end and where to
    // resume.
    let mut entries = Vec::new();
    let ended = tokio::time::timeout(OWED_WITHIN, async {
        loop {
            match stalled.message().await {
                Ok(Some(event)) => {
                    if let Some(pb::watch_event::Event::Entry(entry)) = event.event {
                        entries.push(entry.seq);
                    }
                }
                Ok(None) => panic!("the stream ended without saying why"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stalled stream ends");
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    let resume = entries.last().map_or(0, |s| s + 1);
    assert_eq!(entries, (0..resume).collect::<Vec<_>>());
    assert!(
        ended
            .message()
            .contains(&format!("resume with from_seq {resume}")),
        "{ended:?}"
    );
    assert!(resume < last);

    let mut resumed = watch(&mut client, from(resume)).await;
    let (rest, _) = read_until(&mut resumed, through(last)).await;
    assert_eq!(seqs(&rest), (resume..=last).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_county_sees_on_its_stream_what_its_list_shows() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let mut county = server.client_as(&chain.linxia).await;
    let listed = county
        .query
        .list_entries(pb::ListEntriesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let mut events = watch(&mut county, from(0)).await;
    let count = listed.len();
    let (entries, _) = read_until(&mut events, |e| e.len() >= count).await;
    assert_eq!(entries, listed, "the same entries, pseudonyms and all");
    // A household of another county is not one it may follow.
    let refused = county
        .query
        .watch(pb::WatchRequest {
            account_ids: vec!["dx-hh-0001".into()],
            ..from(0)
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fundtrail_tail_prints_every_entry_as_json_lines() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), fast_checkpoints()).await;
    let mut client = server.client().await;
    let last = open_accounts(&mut client, &server.root(), "tail", 40).await;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args([
            "tail",
            "--from",
            "0",
            "--json",
            "--server",
            &server.url,
            "--key",
        ])
        .arg(dir.path().join("root.key"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed when the test ends, passed or failed, which ends the reader.
    let mut child = process::Killed(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread of its own, not the runtime's blocking pool, whose shutdown
    // would wait for it.
    std::thread::spawn(move || {
        let mut seqs = Vec::new();
        let mut checkpoints = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
            if let Some(seq) = value["entry"]["seq"].as_u64() {
                seqs.push(seq);
                if seq == last {
                    break;
                }
            } else if value["checkpoint"]["tree_size"].is_u64() {
                checkpoints += 1;
            }
        }
        let _ = tx.send((seqs, checkpoints));
    });
    let (seqs, checkpoints) = rx
        .recv_timeout(OWED_WITHIN)
        .expect("tail printed the ledger");
    drop(child);
    assert_eq!(seqs, (0..=last).collect::<Vec<_>>());
    assert!(checkpoints >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stops_although_a_consumer_stopped_reading() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), fast_checkpoints()).await;
    let mut client = server.client().await;
    let root = server.root();
    let stalled = watch(&mut client, from(0)).await;
    // More than the transport holds for it: its stream cannot finish.
    let mut writer = server.client().await;
    open_accounts(&mut writer, &root, "fill", 8_000).await;
    tokio::time::timeout(OWED_WITHIN, server.stop())
        .await
        .expect("the server stops after its grace period");
    drop(stalled);
}
