//! Start-up recovery on a real data directory: a torn journal tail is cut, a
//! lost derived-state directory is rebuilt from the journal byte for byte, and a
//! journal that lost acknowledged records makes the server refuse writes.

mod common;

use std::io::Write;

use common::*;
use fundtrail_api::pb;

fn journal_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(fundtrail_store::journal::JOURNAL_FILE_NAME)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;
    server.stop().await;

    let journal = journal_path(dir.path());
    let good_len = std::fs::metadata(&journal).unwrap().len();
    // A crash mid-write: one whole frame with a bad checksum, then half a frame.
    let mut tail = Vec::new();
    fundtrail_store::journal::encode_frame(b"a record that was never acknowledged", &mut tail);
    let last = tail.len() - 1;
    tail[last] ^= 0xff;
    let mut half = Vec::new();
    fundtrail_store::journal::encode_frame(b"another one, cut short by the crash", &mut half);
    tail.extend_from_slice(&half[..20]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .unwrap()
        .write_all(&tail)
        .unwrap();

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let info = ledger_info(&mut client).await;
    assert!(
        info.writable,
        "a torn tail is not damage: {}",
        info.read_only_reason
    );
    assert_eq!(info.record_count, count);
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        good_len,
        "the torn tail was cut off"
    );
    let next = ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 100_00)),
    )
    .await;
    assert_eq!(next.seq, count, "no gap after the cut");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_directory_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let live = server.dump();
    server.stop().await;

    std::fs::remove_dir_all(fundtrail_server::engine::state_dir(dir.path())).unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    assert!(ledger_info(&mut client).await.writable);
    let rebuilt = server.dump();
    assert_eq!(rebuilt.len(), live.len());
    assert!(
        rebuilt == live,
        "replaying the journal gives the identical derived state"
    );
    assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_000_00);
    server.stop().await;
}

/// The tree-hash and record-offset files are fsynced only at clean shutdown:
/// after an operating-system crash they may be shorter than the state's
/// watermark, or hold zeros. Either way the derived state is rebuilt, never
/// trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_files_that_fall_short_of_the_watermark_are_rebuilt() {
    use fundtrail_store::slots::{OFFSETS_FILE_NAME, TREE_FILE_NAME};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    build_chain(&mut client, server.root()).await;
    let live = server.dump();
    let root = checkpoint_of_all(&server, &mut client).await.root_hash;
    server.stop().await;

    let derived = fundtrail_server::engine::state_dir(dir.path());
    for (file, damage) in [(TREE_FILE_NAME, "cut"), (OFFSETS_FILE_NAME, "zeroed")] {
        let path = derived.join(file);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        if damage == "cut" {
            f.set_len(len - 40).unwrap();
        } else {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[0u8; 8], len - 8 * 3).unwrap();
        }
        drop(f);
        // As after a crash: the state was not closed cleanly.
        std::fs::remove_file(derived.join(fundtrail_store::state::CLEAN_CLOSE_FILE_NAME)).unwrap();
        let server = TestServer::start(dir.path()).await;
        let mut client = server.client().await;
        let info = ledger_info(&mut client).await;
        assert!(info.writable, "{file} {damage}: {}", info.read_only_reason);
        assert!(server.dump() == live, "{file} {damage}: the state differs");
        assert_eq!(
            checkpoint_of_all(&server, &mut client).await.root_hash,
            root,
            "{file} {damage}: the rebuilt tree has another root"
        );
        assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_000_00);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_missing_acknowledged_records_stops_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let count = ledger_info(&mut client).await.record_count;
    let last_offset = server
        .engine
        .state()
        .record_location(count - 1)
        .unwrap()
        .unwrap();
    server.stop().await;

    // Someone deletes the last acknowledged record from the journal.
    let journal = std::fs::OpenOptions::new()
        .write(true)
        .open(journal_path(dir.path()))
        .unwrap();
    journal.set_len(last_offset).unwrap();
    drop(journal);

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let info = ledger_info(&mut client).await;
    assert!(!info.writable);
    assert!(
        info.read_only_reason
            .contains(&format!("record {}", count - 1)),
        "names the record: {}",
        info.read_only_reason
    );
    let refused = client
        .post(
            &chain.dongxiang,
            chain.quota(disbursement("dx-xczx", "dx-hh-0001", 100)),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    // Reading still works.
    assert_eq!(balance(&mut client, "dx-hh-0001").await, 3_000_00);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_far_before_the_end_is_not_mistaken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    ok(
        &mut client,
        &root,
        open_account("mof-a", pb::AccountKind::Programme, "A"),
    )
    .await;
    let count = ledger_info(&mut client).await.record_count;
    server.stop().await;

    // Unapplied damage (state lost) followed by more than one batch of bytes.
    std::fs::remove_dir_all(fundtrail_server::engine::state_dir(dir.path())).unwrap();
    let journal = journal_path(dir.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let damaged_at = bytes.len();
    let mut frame = Vec::new();
    fundtrail_store::journal::encode_frame(b"x", &mut frame);
    frame[4] ^= 1;
    bytes.extend_from_slice(&frame);
    bytes.resize(
        bytes.len() + fundtrail_store::journal::BATCH_BYTES_MAX as usize + 1,
        0xab,
    );
    std::fs::write(&journal, &bytes).unwrap();

    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let info = ledger_info(&mut client).await;
    assert!(
        !info.writable,
        "damage followed by more than a batch is corruption"
    );
    assert!(
        info.read_only_reason
            .contains(&format!("byte {damaged_at}")),
        "{}",
        info.read_only_reason
    );
    assert_eq!(
        info.record_count, count,
        "the good records before the damage are served"
    );
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        bytes.len() as u64,
        "nothing was cut"
    );
    server.stop().await;
}
