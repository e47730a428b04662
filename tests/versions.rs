//! Versions, end to end: rules versions decide idempotency; UpgradeRules is
//! the root org's alone and only moves forward; derived state of another
//! schema is rebuilt; files of another ledger or without a header are
//! refused at open.

mod common;

use fundtrail_core::rules::Rules;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_server::engine::{state_dir, Engine, EngineConfig};
use fundtrail_server::start::StartError;
use fundtrail_store::header::FileKind;
use fundtrail_store::Journal;

fn upgrade(version: u32) -> B {
    B::UpgradeRules(pb::UpgradeRules {
        rules_version: version,
        document_no: "财办〔2026〕9号".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_rules_2_a_request_re_signed_by_another_key_of_the_org_is_a_retry() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    assert_eq!(
        ledger_info(&mut client).await.rules_version,
        Rules::CURRENT.version()
    );
    let root = server.root();
    let first_key = new_signer();
    let second_key = new_signer();
    ok(
        &mut client,
        &root,
        register_org(
            "gs-czt",
            "甘肃省财政厅",
            pb::OrgRole::Finance,
            "620000",
            &first_key,
        ),
    )
    .await;
    ok(
        &mut client,
        &root,
        B::AddKey(pb::AddKey {
            org_id: "gs-czt".into(),
            public_key: second_key.public_key().to_vec(),
            read_only: false,
        }),
    )
    .await;
    let request = client.request_with_key(
        open_account("gs-xczx", pb::AccountKind::Programme, "甘肃省衔接资金"),
        "open-gs-xczx".into(),
    );
    let first = client.post_signed(first_key.sign(&request)).await.unwrap();
    let count = ledger_info(&mut client).await.record_count;
    // After a key rotation the same request, signed by the new key.
    let again = client.post_signed(second_key.sign(&request)).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(again.effects, first.effects);
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    // The same idempotency key with another request, from either key.
    let other = client.request_with_key(
        open_account("gs-other", pb::AccountKind::Programme, "另一账户"),
        "open-gs-xczx".into(),
    );
    for key in [&first_key, &second_key] {
        let refused = client.post_signed(key.sign(&other)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
        assert!(refused.message().contains(&format!("record {}", first.seq)));
    }
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_root_org_upgrades_the_rules_and_only_forward() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let province = new_signer();
    ok(
        &mut client,
        &root,
        register_org(
            "gs-czt",
            "甘肃省财政厅",
            pb::OrgRole::Finance,
            "620000",
            &province,
        ),
    )
    .await;
    let count = ledger_info(&mut client).await.record_count;
    let state = server.dump();
    let cases = [
        (
            &province,
            4,
            tonic::Code::PermissionDenied,
            "only the root org",
        ),
        (
            &root,
            Rules::CURRENT.version(),
            tonic::Code::FailedPrecondition,
            "already runs rules version",
        ),
        (
            &root,
            2,
            tonic::Code::FailedPrecondition,
            "rules only move forward",
        ),
        (
            &root,
            99,
            tonic::Code::InvalidArgument,
            "not known to this server",
        ),
    ];
    for (key, version, code, says) in cases {
        let refused = client.post(key, upgrade(version)).await.unwrap_err();
        assert_eq!(refused.code(), code, "version {version}: {refused:?}");
        assert!(refused.message().contains(says), "{}", refused.message());
    }
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    assert!(server.dump() == state, "a refused upgrade changed state");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_state_of_another_schema_is_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let before = server.dump();
    let balance_before = balance(&mut client, "dx-hh-0001").await;
    server.stop().await;

    // A state written by another build: same keys, another schema version.
    {
        let keyspace = fjall::Config::new(fundtrail_store::state::kv_dir(&state_dir(dir.path())))
            .open()
            .unwrap();
        let db = keyspace
            .open_partition(fundtrail_store::state::KV_PARTITION, Default::default())
            .unwrap();
        db.insert(b"~s", 1u32.to_be_bytes()).unwrap();
        db.insert(b"zz-left-by-an-old-layout", b"stale").unwrap();
        keyspace.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    // And a sled directory of a build before schema 4, in its old place.
    let legacy = dir.path().join("state");
    std::fs::create_dir(&legacy).unwrap();
    std::fs::write(legacy.join("db"), b"an old sled file").unwrap();
    let server = TestServer::start(dir.path()).await;
    assert!(!legacy.exists(), "the old layout's state is removed");
    let mut client = server.client().await;
    assert!(ledger_info(&mut client).await.writable);
    assert!(server.dump() == before, "the rebuilt state differs");
    assert_eq!(balance(&mut client, "dx-hh-0001").await, balance_before);
    // And it keeps writing.
    ok(
        &mut client,
        &chain.dongxiang,
        chain.quota(disbursement("dx-xczx", "dx-hh-0001", 1_00)),
    )
    .await;
    server.stop().await;
}

#[test]
fn files_of_another_ledger_or_without_a_header_are_refused_at_open() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    for dir in [&ours, &theirs] {
        fundtrail_server::genesis::init(dir.path(), &Default::default()).unwrap();
        let engine = Engine::open(EngineConfig {
            ..EngineConfig::new(dir.path())
        })
        .unwrap();
        engine.shutdown();
    }
    let open = |dir: &std::path::Path| {
        Engine::open(EngineConfig {
            ..EngineConfig::new(dir)
        })
        .err()
        .expect("refused")
    };
    // Their checkpoint log in our data directory.
    std::fs::copy(
        theirs.path().join("checkpoints.log"),
        ours.path().join("checkpoints.log"),
    )
    .unwrap();
    let refused = open(ours.path());
    assert!(matches!(refused, StartError::Refused(_)), "{refused:?}");
    let refused = refused.to_string();
    assert!(
        refused.contains("checkpoints.log") && refused.contains("belongs to ledger"),
        "{refused}"
    );
    // A journal whose header was lost (or that predates headers).
    let journal_path = theirs.path().join("journal.log");
    let bytes = std::fs::read(&journal_path).unwrap();
    let (_, header_len) =
        fundtrail_store::header::FileHeader::read(&mut &bytes[..], FileKind::Journal, None)
            .unwrap();
    std::fs::write(&journal_path, &bytes[header_len as usize..]).unwrap();
    let refused = open(theirs.path());
    assert!(matches!(refused, StartError::Refused(_)), "{refused:?}");
    let refused = refused.to_string();
    assert!(
        refused.contains("journal.log") && refused.contains("has no fundtrail file header"),
        "{refused}"
    );
    // An export is not a journal.
    let export = ours.path().join("export.ftlog");
    Journal::create(&export, FileKind::Export, "fundtrail-0a0a0a0a0a0a").unwrap();
    let refused = Journal::open(&export, FileKind::Journal, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        refused.contains("is a log export, not a journal"),
        "{refused}"
    );
}

/// A resident ID number (18 digits, a birth date inside).
const ID_NUMBER: &str = "110101199003071234";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_3_keep_id_numbers_out_of_identifiers_from_the_upgrade_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), fundtrail_core::rules::Rules::V2).await;
    let mut client = server.client().await;
    let root = server.root();
    // Under rules 2 an ID number slipped into the log as a household ref.
    ok(&mut client, &root, household("mof-hh-1", ID_NUMBER)).await;
    ok(&mut client, &root, upgrade(3)).await;
    let count = ledger_info(&mut client).await.record_count;
    for (body, field) in [
        (
            household("mof-hh-2", ID_NUMBER),
            "register_household.household_ref",
        ),
        (
            household(ID_NUMBER, "HH-0002"),
            "register_household.account_id",
        ),
        (
            open_account(
                &format!("acct-{ID_NUMBER}"),
                pb::AccountKind::Programme,
                "专项",
            ),
            "open_account.account_id",
        ),
    ] {
        let refused = client.post(&root, body).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().contains(field), "{}", refused.message());
    }
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    // Ordinary identifiers still go in, and the old record still replays.
    ok(&mut client, &root, household("mof-hh-3", "HH-110101-0003")).await;
    server.stop().await;
    std::fs::remove_dir_all(state_dir(dir.path())).unwrap();
    let replayed = TestServer::start(dir.path()).await;
    let mut client = replayed.client().await;
    let info = ledger_info(&mut client).await;
    assert!(info.writable, "{}", info.read_only_reason);
    assert_eq!(info.record_count, count + 1);
    replayed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banks_results_come_with_rules_5() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), Rules::V4).await;
    let mut client = server.client().await;
    let root = server.root();
    let confirm = B::ConfirmCredit(pb::ConfirmCredit {
        disbursement_seq: 1,
        household_account_id: "mof-hh-1".into(),
        bank_reference: "R-1".into(),
        document_no: "回单〔2026〕1号".into(),
    });
    let failure = B::Return(pb::Return {
        from_account_id: "mof-hh-1".into(),
        to_account_id: "mof-xczx".into(),
        amount_fen: 100,
        kind: pb::ReturnKind::BankFailure as i32,
        document_no: "回单〔2026〕1号".into(),
        reason: "账户已销户".into(),
        disbursement_seq: 1,
        bank_reference: "R-2".into(),
        ..Default::default()
    });
    let count = ledger_info(&mut client).await.record_count;
    for (body, field) in [
        (confirm.clone(), "confirm_credit"),
        (failure, "return.kind"),
    ] {
        let refused = client.post(&root, body).await.unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
        assert!(
            refused.message().contains("needs rules version 5"),
            "{field}: {}",
            refused.message()
        );
    }
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    ok(&mut client, &root, upgrade(5)).await;
    // Now the rules themselves answer: record 1 is no payment.
    let refused = client.post(&root, confirm).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("names no household payment"),
        "{}",
        refused.message()
    );
    server.stop().await;
}

/// Rules 5 ledgers keep what they accepted: a finance org's audit office,
/// an `AddKey` whose (then unknown) `read_only` is set, imports without a
/// window. After `UpgradeRules 6` none of these is accepted any more, and
/// the ledger replays unchanged after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separation_of_duties_comes_with_rules_6() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), Rules::V5).await;
    let mut client = server.client().await;
    let root = server.root();
    let county = new_signer();
    let old_read_key = new_signer();
    ok(
        &mut client,
        &root,
        register_org(
            "dx-czj",
            "东乡县财政局",
            pb::OrgRole::Finance,
            "622926",
            &county,
        ),
    )
    .await;
    let mine = |id: &str| {
        register_org(
            id,
            "县审计局",
            pb::OrgRole::Auditor,
            "622926",
            &new_signer(),
        )
    };
    ok(&mut client, &county, mine("dx-sjj")).await;
    ok(
        &mut client,
        &county,
        B::AddKey(pb::AddKey {
            org_id: "dx-czj".into(),
            public_key: old_read_key.public_key().to_vec(),
            read_only: true,
        }),
    )
    .await;
    // Under rules 5 the flag meant nothing: the key signs records.
    ok(
        &mut client,
        &old_read_key,
        open_account("dx-a", pb::AccountKind::Treasury, "国库"),
    )
    .await;
    let window = client
        .post(&root, import_window("dx-czj", "2099-01-01"))
        .await
        .unwrap_err();
    assert_eq!(window.code(), tonic::Code::FailedPrecondition);
    assert!(
        window.message().contains("needs rules version 6"),
        "{}",
        window.message()
    );

    ok(&mut client, &root, upgrade(6)).await;
    let refused = client.post(&county, mine("dx-sjj-2")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // The audit office it registered under rules 5 is no longer its to key.
    let refused = client
        .post(
            &county,
            B::AddKey(pb::AddKey {
                org_id: "dx-sjj".into(),
                public_key: new_signer().public_key().to_vec(),
                read_only: false,
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let new_read_key = new_signer();
    ok(
        &mut client,
        &county,
        B::AddKey(pb::AddKey {
            org_id: "dx-czj".into(),
            public_key: new_read_key.public_key().to_vec(),
            read_only: true,
        }),
    )
    .await;
    let refused = client
        .post(
            &new_read_key,
            open_account("dx-b", pb::AccountKind::Treasury, "国库"),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("read key"),
        "{}",
        refused.message()
    );
    let count = ledger_info(&mut client).await.record_count;
    let state = server.dump();

    // Replayed from the journal, the ledger is the same; the key added
    // under rules 5 still signs, the one added under rules 6 still reads.
    let data_dir = server.data_dir.clone();
    server.stop().await;
    std::fs::remove_dir_all(fundtrail_server::engine::state_dir(&data_dir)).unwrap();
    let server = TestServer::start(&data_dir).await;
    let mut client = server.client().await;
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    assert!(server.dump() == state, "the replayed state differs");
    ok(
        &mut client,
        &old_read_key,
        open_account("dx-c", pb::AccountKind::Treasury, "国库"),
    )
    .await;
    let mut reader = server.client_as(&new_read_key).await;
    let account = reader
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-a".into(),
            ..Default::default()
        })
        .await
        .expect("a read key reads")
        .into_inner();
    assert_eq!(account.account_id, "dx-a");
    server.stop().await;
}
