//! Every read of household data leaves a trace: the access log records who
//! read (or tried to read) a household, auditors query it, and its signed
//! checkpoints and proofs still check out after a restart.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use fundtrail_tlog::Hash;
use prost::Message;
use tonic::Code;

fn hashes(proof: &[Vec<u8>]) -> Vec<Hash> {
    proof
        .iter()
        .map(|h| h.as_slice().try_into().unwrap())
        .collect()
}

async fn household_log(client: &mut Client, household: &str) -> pb::GetAccessLogResponse {
    use pb::get_access_log_request::About;
    client
        .audit
        .get_access_log(pb::GetAccessLogRequest {
            about: Some(About::HouseholdAccountId(household.into())),
            ..Default::default()
        })
        .await
        .expect("access log")
        .into_inner()
}

/// Checks every entry of `page` against its checkpoint; returns the
/// decoded records.
fn verified(page: &pb::GetAccessLogResponse, vkey: &str) -> Vec<pb::AccessRecord> {
    let checkpoint = fundtrail_client::proofs::open_pinned(vkey, &page.checkpoint_note).unwrap();
    assert_eq!(checkpoint.tree_size, page.tree_size);
    page.entries
        .iter()
        .map(|entry| {
            fundtrail_tlog::check_record(
                &hashes(&entry.inclusion_proof),
                checkpoint.tree_size,
                &checkpoint.root_hash,
                entry.index,
                &fundtrail_tlog::record_hash(&entry.record),
            )
            .expect("the entry is in the signed access log");
            pb::AccessRecord::decode(entry.record.as_slice()).unwrap()
        })
        .collect()
}

async fn access_vkey(client: &mut Client) -> String {
    client
        .audit
        .get_log_key(pb::GetLogKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .access_log_vkey
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_household_are_logged_and_provable_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let statement = |id: &str| pb::HouseholdStatementRequest {
        account_id: id.into(),
    };

    // The county reads its household; a sibling county tries and is refused.
    let mut dongxiang = server.client_as(&chain.dongxiang).await;
    dongxiang
        .query
        .household_statement(statement("dx-hh-0001"))
        .await
        .unwrap();
    let mut linxia = server.client_as(&chain.linxia).await;
    let refused = linxia
        .query
        .household_statement(statement("dx-hh-0001"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The national audit office asks who looked at the household.
    let mut cnao = server.client_as(&chain.auditor).await;
    let vkey = access_vkey(&mut cnao).await;
    let before = household_log(&mut cnao, "dx-hh-0001").await;
    let records = verified(&before, &vkey);
    let dongxiang_org = "dx-czj";
    let read = records
        .iter()
        .find(|r| r.org_id == dongxiang_org && r.method.ends_with("/HouseholdStatement"))
        .expect("the county's read is logged");
    assert_eq!(read.outcome, "OK");
    assert_eq!(read.household_account_ids, vec!["dx-hh-0001".to_string()]);
    assert_eq!(read.key_id, chain.dongxiang.key_id());
    let tried = records
        .iter()
        .find(|r| r.org_id == "lx-czj")
        .expect("the refused attempt is logged");
    assert_eq!(tried.outcome, "PERMISSION_DENIED");
    assert!(tried.household_account_ids.is_empty(), "{tried:?}");
    assert_eq!(tried.account_ids, vec!["dx-hh-0001".to_string()]);
    assert_eq!(tried.rows, 0);

    // Only auditors and administrators read the access log, within their
    // jurisdiction.
    use pb::get_access_log_request::About;
    let denied = dongxiang
        .audit
        .get_access_log(pb::GetAccessLogRequest {
            about: Some(About::HouseholdAccountId("dx-hh-0001".into())),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // After a restart: the same entries, still provable; the new tree
    // extends the old one.
    let data_dir = server.data_dir.clone();
    server.stop().await;
    let server = TestServer::start(&data_dir).await;
    let mut cnao = server.client_as(&chain.auditor).await;
    assert_eq!(access_vkey(&mut cnao).await, vkey);
    let after = household_log(&mut cnao, "dx-hh-0001").await;
    assert!(
        after.tree_size > before.tree_size,
        "the first query was logged too"
    );
    let again = verified(&after, &vkey);
    for record in &records {
        assert!(
            again.contains(record),
            "{record:?} is gone after the restart"
        );
    }
    let old = fundtrail_client::proofs::open_pinned(&vkey, &before.checkpoint_note).unwrap();
    let new = fundtrail_client::proofs::open_pinned(&vkey, &after.checkpoint_note).unwrap();
    let proof = cnao
        .audit
        .get_access_consistency_proof(pb::GetConsistencyProofRequest {
            first_size: old.tree_size,
            second_size: new.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    fundtrail_tlog::check_tree(
        &hashes(&proof.hashes),
        new.tree_size,
        &new.root_hash,
        old.tree_size,
        &old.root_hash,
    )
    .expect("the access log only grew");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_verified_entries_for_an_auditor() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let mut dongxiang = server.client_as(&chain.dongxiang).await;
    dongxiang
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-hh-0001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key_file = dir.path().join("cnao.key");
    write_key_file(&key_file, &chain.auditor);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args([
            "access-log",
            "--household",
            "dx-hh-0001",
            "--server",
            &server.url,
        ])
        .arg("--key")
        .arg(&key_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("dx-czj") && stdout.contains("/fundtrail.v1.Query/GetAccount"),
        "{stdout}"
    );
    assert!(
        stdout.contains("verified against the access log's signed checkpoint"),
        "{stdout}"
    );
    server.stop().await;
}

fn write_key_file(path: &std::path::Path, signer: &Signer) {
    let file = fundtrail_core::keyfile::KeyFile::new("test", signer.signing_key());
    std::fs::write(path, file.to_json()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_naming_households_outside_the_auditors_jurisdiction_is_proved_not_shown() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let county_auditor = new_signer();
    ok(
        &mut client,
        &chain.auditor,
        register_org(
            "dx-sjj",
            "东乡县审计局",
            pb::OrgRole::Auditor,
            "622926",
            &county_auditor,
        ),
    )
    .await;
    // The national office exports the whole log: one access entry names
    // the households of both counties.
    let mut cnao = server.client_as(&chain.auditor).await;
    let mut export = cnao
        .audit
        .export_log(pb::ExportLogRequest { start: 0, end: 0 })
        .await
        .unwrap()
        .into_inner();
    while export.message().await.unwrap().is_some() {}
    let vkey = access_vkey(&mut cnao).await;

    let mut auditor = server.client_as(&county_auditor).await;
    let page = household_log(&mut auditor, "dx-hh-0001").await;
    let checkpoint = fundtrail_client::proofs::open_pinned(&vkey, &page.checkpoint_note).unwrap();
    let withheld: Vec<_> = page
        .entries
        .iter()
        .filter(|e| e.record.is_empty())
        .collect();
    assert_eq!(withheld.len(), 1, "{:?}", page.entries);
    let entry = withheld[0];
    let leaf: Hash = entry.leaf_hash.as_slice().try_into().unwrap();
    fundtrail_tlog::check_record(
        &hashes(&entry.inclusion_proof),
        checkpoint.tree_size,
        &checkpoint.root_hash,
        entry.index,
        &leaf,
    )
    .expect("a withheld entry is still proved");
    // The national office itself sees it whole, Linxia's household included.
    let whole = household_log(&mut cnao, "dx-hh-0001").await;
    let records = verified(&whole, &vkey);
    let export_entry = records
        .iter()
        .find(|r| r.method.ends_with("/ExportLog"))
        .expect("the export is logged");
    assert!(export_entry
        .household_account_ids
        .contains(&"lx-hh-0001".to_string()));
    server.stop().await;
}

/// Finding 1 of the insiders' review: who audited a household is for the
/// root org and the audit offices above the one that read, never for the
/// audited or an office below. Here the national office (审计署) and a
/// county office (东乡县审计局) read one household; each office sees the
/// reads of offices it covers, and an office's own reads; the others' are
/// proved by leaf hash but not shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_audit_offices_are_shown_only_above_them() {
    use pb::OrgRole as R;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let province_office = new_signer();
    let county_office = new_signer();
    ok(
        &mut client,
        &chain.auditor,
        register_org(
            "gs-sjt",
            "甘肃省审计厅",
            R::Auditor,
            "620000",
            &province_office,
        ),
    )
    .await;
    ok(
        &mut client,
        &province_office,
        register_org(
            "dx-sjj",
            "东乡县审计局",
            R::Auditor,
            "622926",
            &county_office,
        ),
    )
    .await;
    let statement = pb::HouseholdStatementRequest {
        account_id: "dx-hh-0001".into(),
    };
    for reader in [&chain.auditor, &county_office] {
        let mut office = server.client_as(reader).await;
        office
            .query
            .household_statement(statement.clone())
            .await
            .expect("an audit office reads a household in its jurisdiction");
    }
    let vkey = access_vkey(&mut client).await;
    // (reader, the offices whose statement reads it is shown)
    let cases: [(&Signer, &[&str]); 4] = [
        (&chain.root, &["cnao", "dx-sjj"]),
        (&chain.auditor, &["cnao", "dx-sjj"]),
        (&province_office, &["dx-sjj"]),
        (&county_office, &["dx-sjj"]),
    ];
    for (reader, shown) in cases {
        let mut office = server.client_as(reader).await;
        let page = household_log(&mut office, "dx-hh-0001").await;
        let checkpoint =
            fundtrail_client::proofs::open_pinned(&vkey, &page.checkpoint_note).unwrap();
        let mut seen = Vec::new();
        let mut withheld = 0;
        for entry in &page.entries {
            // Shown or not, every entry is proved against the checkpoint.
            let leaf = if entry.record.is_empty() {
                withheld += 1;
                entry.leaf_hash.as_slice().try_into().unwrap()
            } else {
                fundtrail_tlog::record_hash(&entry.record)
            };
            fundtrail_tlog::check_record(
                &hashes(&entry.inclusion_proof),
                checkpoint.tree_size,
                &checkpoint.root_hash,
                entry.index,
                &leaf,
            )
            .expect("the entry is in the signed access log");
            if !entry.record.is_empty() {
                let record = pb::AccessRecord::decode(entry.record.as_slice()).unwrap();
                if record.method.ends_with("/HouseholdStatement") {
                    seen.push(record.org_id);
                }
            }
        }
        seen.sort();
        assert_eq!(seen, shown.to_vec(), "{}", reader.key_id());
        // Its own and the offices' earlier GetAccessLog reads are entries
        // too: those of offices it does not cover are withheld as well.
        if shown.len() == 2 {
            assert_eq!(withheld, 0, "{}", reader.key_id());
        } else {
            assert!(withheld >= 2 - shown.len(), "{}", reader.key_id());
        }
    }
    // (The audited county reads no access log at all: the test above.)
    server.stop().await;
}
