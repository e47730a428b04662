//! Golden ledgers: small ledgers written once, by the code of the day they
//! were made, and kept under `tests/fixtures/`. Every later version must
//! replay them, audit them and serve them with the same roots and balances.
//! A change that breaks one of these tests breaks every deployed ledger.
//!
//! `golden-v1` was made under rules version 1 and upgraded to rules 2 at
//! record 13. Under rules 1, the same payload re-signed by a second key of
//! the county (after a key rotation) was committed twice (records 11 and
//! 12); under rules 2 it is a retry of record 11.
//!
//! The writer is `write_golden_v1` below (ignored; run it only to make a new
//! fixture directory, never to refresh an existing one).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::Signer;
use fundtrail_core::keyfile::KeyFile;
use fundtrail_store::header::FileKind;
use fundtrail_store::journal::JOURNAL_FILE_NAME;
use fundtrail_store::Journal;
use fundtrail_verify::Replay;

const GOLDEN_V1: &str = "golden-v1";
/// The payment committed twice under rules 1.
const ROTATION_IDEMPOTENCY_KEY: &str = "pay-hh-001-2026-06";

/// What `golden-v1` holds, known since it was written.
const V1_RECORDS: u64 = 14;
const V1_LEDGER_ID: &str = "fundtrail-606991f8cb79";
const V1_ROOT_HEX: &str = "4d04a8b22fe7788db79bc61bf9df6e1580497f5e5ae703de8cc0e5b20b6ed2f1";
const V1_DOUBLE_PAID: [u64; 2] = [11, 12];
const V1_UPGRADE_SEQ: u64 = 13;
const V1_BALANCES: [(&str, u64); 3] = [
    ("mof-xczx", 700_000_00),
    ("dx-xczx", 295_000_00),
    ("dx-hh-001", 5_000_00),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A copy of a fixture to serve: serving writes state and checkpoints.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    copy
}

fn signer(name: &str, file: &str) -> Signer {
    Signer::from_key_file(&fixture(name).join(file)).unwrap()
}

/// The signing key of a fixture's key file.
fn signing_key(name: &str, file: &str) -> ed25519_dalek::SigningKey {
    let json = std::fs::read_to_string(fixture(name).join(file)).unwrap();
    KeyFile::from_json(&json).unwrap().1
}

fn hex_root(root: &[u8]) -> String {
    hex::encode(root)
}

#[test]
fn golden_v1_replays_to_its_known_root_and_balances() {
    let journal = Journal::open(
        &fixture(GOLDEN_V1).join(JOURNAL_FILE_NAME),
        FileKind::Journal,
        Some(V1_LEDGER_ID),
    )
    .unwrap();
    let mut replay = Replay::new();
    for frame in journal.scan(0).unwrap() {
        replay.push(&frame.unwrap().record).unwrap();
    }
    assert_eq!(replay.record_count(), V1_RECORDS);
    assert_eq!(hex_root(&replay.root(V1_RECORDS).unwrap()), V1_ROOT_HEX);
    let summary = replay.summary().unwrap();
    assert_eq!(summary.appropriated_fen, 1_000_000_00);
    assert_eq!(summary.disbursed_fen, 5_000_00);
    assert_eq!(summary.idle_fen, 995_000_00);
}

#[test]
fn golden_v1_audits_with_the_cli() {
    let dir = fixture(GOLDEN_V1);
    let vkey = std::fs::read_to_string(dir.join("vkey.txt")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["audit", "--json", "--vkey", vkey.trim()])
        .arg("--export")
        .arg(dir.join("export.ftlog"))
        .arg("--checkpoint")
        .arg(dir.join("checkpoint.note"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "audit failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["records"], V1_RECORDS);
    assert_eq!(summary["checkpoint_tree_size"], V1_RECORDS);
    assert_eq!(summary["disbursed_fen"], 5_000_00);
}

#[test]
fn an_export_of_another_ledger_is_refused_by_the_audit() {
    let dir = fixture(GOLDEN_V1);
    let other = tempfile::tempdir().unwrap();
    let export = other.path().join("other.ftlog");
    let mut file = Journal::create(&export, FileKind::Export, "fundtrail-000000000000").unwrap();
    let journal = Journal::open(&dir.join(JOURNAL_FILE_NAME), FileKind::Journal, None).unwrap();
    let records: Vec<Vec<u8>> = journal
        .scan(0)
        .unwrap()
        .map(|f| f.unwrap().record)
        .collect();
    file.append(&records).unwrap();
    let vkey = std::fs::read_to_string(dir.join("vkey.txt")).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["audit", "--vkey", vkey.trim()])
        .arg("--export")
        .arg(&export)
        .arg("--checkpoint")
        .arg(dir.join("checkpoint.note"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("other.ftlog")
            && stderr.contains("belongs to ledger \"fundtrail-000000000000\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_v1_serves_under_its_rules_and_keeps_writing() {
    let dir = copy_fixture(GOLDEN_V1);
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let info = ledger_info(&mut client).await;
    assert_eq!(info.ledger_id, V1_LEDGER_ID);
    assert_eq!(info.record_count, V1_RECORDS);
    assert_eq!(info.rules_version, 2, "upgraded at record {V1_UPGRADE_SEQ}");
    assert!(info.writable, "{}", info.read_only_reason);
    for (account, fen) in V1_BALANCES {
        assert_eq!(balance(&mut client, account).await, fen, "{account}");
    }
    let checkpoint = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: V1_RECORDS,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hex_root(&checkpoint.root_hash), V1_ROOT_HEX);

    // The payment both keys posted under rules 1: now, from either key, a
    // retry of record 11, and another payload under its key is refused.
    let key_a = signer(GOLDEN_V1, "dx-czj-a.key");
    let key_b = signer(GOLDEN_V1, "dx-czj-b.key");
    let paid = client
        .query
        .get_entry(pb::GetEntryRequest {
            seq: V1_DOUBLE_PAID[0],
        })
        .await
        .unwrap()
        .into_inner();
    let payload = paid.request.unwrap().payload;
    for (file, key) in [("dx-czj-a.key", &key_a), ("dx-czj-b.key", &key_b)] {
        let resigned = pb::SignedRequest {
            signature: fundtrail_core::signing::sign(&signing_key(GOLDEN_V1, file), &payload)
                .to_vec(),
            key_id: key.key_id().into(),
            payload: payload.clone(),
        };
        let answer = client.post_signed(resigned).await.unwrap();
        assert_eq!(answer.seq, V1_DOUBLE_PAID[0]);
        assert!(answer.duplicate);
    }
    let other = client.request_with_key(
        disbursement("dx-xczx", "dx-hh-001", 1_00),
        ROTATION_IDEMPOTENCY_KEY.into(),
    );
    let refused = client.post_signed(key_b.sign(&other)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists);
    // And the ledger keeps writing.
    let next = ok(
        &mut client,
        &key_a,
        disbursement("dx-xczx", "dx-hh-001", 1_00),
    )
    .await;
    assert_eq!(next.seq, V1_RECORDS);
    assert_eq!(balance(&mut client, "dx-hh-001").await, 5_001_00);
    server.stop().await;
}

fn write_key(dir: &Path, file: &str, label: &str) -> Signer {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    fundtrail_store::secret::write_secret_file(
        &dir.join(file),
        KeyFile::new(label, &key).to_json().as_bytes(),
    )
    .unwrap();
    Signer::new(key)
}

/// Writes `tests/fixtures/golden-v1`. Run by hand, once, with
/// `FUNDTRAIL_WRITE_GOLDEN=1 cargo test --test golden -- --ignored`; it
/// refuses to overwrite a fixture that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a new golden fixture; run by hand only"]
async fn write_golden_v1() {
    if std::env::var("FUNDTRAIL_WRITE_GOLDEN").is_err() {
        return;
    }
    let dir = fixture(GOLDEN_V1);
    assert!(
        !dir.exists(),
        "{} exists; golden fixtures are never rewritten",
        dir.display()
    );
    std::fs::create_dir_all(&dir).unwrap();
    fundtrail_server::genesis::init_with(
        &dir,
        &fundtrail_server::genesis::RootOrg::default(),
        fundtrail_core::rules::Rules::V1,
        &fundtrail_core::clock::SystemClock,
    )
    .unwrap();
    let key_a = write_key(&dir, "dx-czj-a.key", "org dx-czj, first key");
    let key_b = write_key(&dir, "dx-czj-b.key", "org dx-czj, second key");
    let server = TestServer::start(&dir).await;
    let mut client = server.client().await;
    let root = server.root();
    use pb::AccountKind as K;
    ok(
        &mut client,
        &root,
        open_account("mof-xczx", K::Programme, "中央财政衔接资金"),
    )
    .await; // 1
    ok(
        &mut client,
        &root,
        appropriation("mof-xczx", 1_000_000_00, "财农〔2026〕1号"),
    )
    .await; // 2
    ok(
        &mut client,
        &root,
        register_org(
            "dx-czj",
            "东乡族自治县财政局",
            pb::OrgRole::Finance,
            "622926",
            &key_a,
        ),
    )
    .await; // 3
    ok(
        &mut client,
        &root,
        B::AddKey(pb::AddKey {
            org_id: "dx-czj".into(),
            public_key: key_b.public_key().to_vec(),
            read_only: false,
        }),
    )
    .await; // 4
    ok(
        &mut client,
        &key_a,
        open_account("dx-xczx", K::Programme, "东乡县衔接资金"),
    )
    .await; // 5
    ok(
        &mut client,
        &root,
        transfer("mof-xczx", "dx-xczx", 300_000_00, "财农〔2026〕2号"),
    )
    .await; // 6
    ok(
        &mut client,
        &key_a,
        household("dx-hh-001", "HH-622926-0001"),
    )
    .await; // 7
    ok(
        &mut client,
        &key_a,
        disbursement("dx-xczx", "dx-hh-001", 1_000_00),
    )
    .await; // 8
    ok(
        &mut client,
        &key_b,
        disbursement("dx-xczx", "dx-hh-001", 500_00),
    )
    .await; // 9
    ok(
        &mut client,
        &key_a,
        disbursement("dx-xczx", "dx-hh-001", 500_00),
    )
    .await; // 10
            // Rules 1: the same payload signed by each key is two records.
    let request = client.request_with_key(
        disbursement("dx-xczx", "dx-hh-001", 1_500_00),
        ROTATION_IDEMPOTENCY_KEY.into(),
    );
    let first = client.post_signed(key_a.sign(&request)).await.unwrap();
    let second = client.post_signed(key_b.sign(&request)).await.unwrap();
    assert_eq!([first.seq, second.seq], V1_DOUBLE_PAID);
    let upgrade = ok(
        &mut client,
        &root,
        B::UpgradeRules(pb::UpgradeRules {
            rules_version: 2,
            document_no: "财办〔2026〕9号".into(),
        }),
    )
    .await;
    assert_eq!(upgrade.seq, V1_UPGRADE_SEQ);
    let vkey = vkey(&mut client).await;
    std::fs::write(dir.join("vkey.txt"), format!("{vkey}\n")).unwrap();
    let count = checkpoint_of_all(&server, &mut client).await.tree_size;
    assert_eq!(count, V1_RECORDS);
    let note = server.engine.checkpoints().get(count).unwrap().note;
    std::fs::write(dir.join("checkpoint.note"), note).unwrap();
    let ledger_id = server.engine.meta().ledger_id.clone();
    let mut export =
        Journal::create(&dir.join("export.ftlog"), FileKind::Export, &ledger_id).unwrap();
    let records: Vec<Vec<u8>> = (0..count)
        .map(|seq| server.engine.record_bytes(seq).unwrap())
        .collect();
    export.append(&records).unwrap();
    server.stop().await;
    std::fs::remove_dir_all(fundtrail_server::engine::state_dir(&dir)).unwrap();
    println!("ledger {ledger_id}: {count} records");
}
