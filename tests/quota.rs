//! Budget quota (预算指标, rules 8) over real gRPC against a real server:
//! quota issued at the top and split down the levels, its lineage from any
//! county back to the central document, what an org may not issue, and the
//! quota surviving a rebuild of derived state from the journal.

mod common;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::{Client, Signer};
use fundtrail_core::rules::Rules;
use tonic::Code;

const PROGRAMME: &str = "2130599";
const OTHER_PROGRAMME: &str = "2130504";
const CENTRAL_DOC: &str = "财农〔2026〕12号";
const PROVINCE_DOC: &str = "甘财农〔2026〕5号";

/// Posts and expects a refusal with `code`, naming `field`; returns its
/// message.
async fn refused(client: &mut Client, signer: &Signer, body: B, code: Code, field: &str) -> String {
    let status = client
        .post(signer, body)
        .await
        .expect_err("the request is refused");
    assert_eq!(status.code(), code, "{}", status.message());
    let details = tonic_types::StatusExt::get_error_details(&status);
    let named = details
        .bad_request()
        .map(|b| b.field_violations.iter().any(|v| v.field == field))
        .unwrap_or(false);
    assert!(
        named,
        "{field} named in {:?}: {}",
        details,
        status.message()
    );
    status.message().to_string()
}

async fn lineage(client: &mut Client, seq: u64) -> pb::QuotaLineage {
    client
        .query
        .get_quota(pb::GetQuotaRequest { seq })
        .await
        .expect("GetQuota")
        .into_inner()
}

async fn held_by(client: &mut Client, org_id: &str) -> Vec<pb::Quota> {
    client
        .query
        .list_quotas(pb::ListQuotasRequest {
            org_id: org_id.into(),
            ..Default::default()
        })
        .await
        .expect("ListQuotas")
        .into_inner()
        .quotas
}

/// The Gansu scenario's orgs, and quota issued down: ¥100m at the top,
/// ¥40m to the province, ¥25m and ¥10m on to its counties.
struct Issued {
    province: Signer,
    dongxiang: Signer,
    linxia: Signer,
    central: u64,
    to_province: u64,
    to_dongxiang: u64,
    to_linxia: u64,
}

async fn issue_down(client: &mut Client, root: &Signer) -> Issued {
    let (province, dongxiang, linxia) = (new_signer(), new_signer(), new_signer());
    register_gansu(client, root, &province).await;
    register_gansu_counties(client, &province, &dongxiang, &linxia).await;
    let central = ok(
        client,
        root,
        quota("mof", None, 100_000_000_00, CENTRAL_DOC),
    )
    .await
    .seq;
    let to_province = ok(
        client,
        root,
        quota("gs-czt", Some(central), 40_000_000_00, CENTRAL_DOC),
    )
    .await
    .seq;
    let to_dongxiang = ok(
        client,
        &province,
        quota("dx-czj", Some(to_province), 25_000_000_00, PROVINCE_DOC),
    )
    .await
    .seq;
    let to_linxia = ok(
        client,
        &province,
        quota("lx-czj", Some(to_province), 10_000_000_00, PROVINCE_DOC),
    )
    .await
    .seq;
    Issued {
        province,
        dongxiang,
        linxia,
        central,
        to_province,
        to_dongxiang,
        to_linxia,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_traces_from_any_county_back_to_the_central_document() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let issued = issue_down(&mut client, &server.root()).await;

    for (county, seq, amount_fen) in [
        ("dx-czj", issued.to_dongxiang, 25_000_000_00),
        ("lx-czj", issued.to_linxia, 10_000_000_00),
    ] {
        let answer = lineage(&mut client, seq).await;
        let quota = answer.quota.unwrap();
        assert_eq!(quota.holder_org_id, county);
        assert_eq!(quota.amount_fen, amount_fen);
        assert_eq!(quota.held_fen, amount_fen, "nothing issued down yet");
        let chain: Vec<(u64, &str, &str)> = answer
            .ancestors
            .iter()
            .map(|q| (q.seq, q.holder_org_id.as_str(), q.document_no.as_str()))
            .collect();
        assert_eq!(
            chain,
            [
                (issued.to_province, "gs-czt", CENTRAL_DOC),
                (issued.central, "mof", CENTRAL_DOC),
            ]
        );
        // What the 直达 system keeps unchanged, kept from the top down.
        for q in std::iter::once(&quota).chain(&answer.ancestors) {
            assert_eq!(q.root_seq, issued.central);
            assert_eq!(
                (q.programme_code.as_str(), q.fiscal_year, q.direct),
                (PROGRAMME, 2026, true)
            );
            assert_eq!(q.project_code, "100000213059926000001");
        }
    }

    // Each quota's issued_down equals the splits the log holds, summed here
    // from the records themselves.
    let records = client
        .query
        .list_entries(pb::ListEntriesRequest {
            kind: "IssueQuota".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(records.len(), 4);
    for seq in [
        issued.central,
        issued.to_province,
        issued.to_dongxiang,
        issued.to_linxia,
    ] {
        let split_off: u64 = records
            .iter()
            .filter_map(|e| match e.body.as_ref()?.body.as_ref()? {
                B::IssueQuota(q) if q.from_quota_seq == Some(seq) => Some(q.amount_fen),
                _ => None,
            })
            .sum();
        let quota = lineage(&mut client, seq).await.quota.unwrap();
        assert_eq!(quota.issued_down_fen, split_off, "quota {seq}");
        assert_eq!(quota.held_fen, quota.amount_fen - split_off);
    }

    // Each org lists what it was issued.
    let seqs = |quotas: Vec<pb::Quota>| quotas.iter().map(|q| q.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(held_by(&mut client, "gs-czt").await),
        [issued.to_province]
    );
    assert_eq!(
        seqs(held_by(&mut client, "dx-czj").await),
        [issued.to_dongxiang]
    );
    assert_eq!(seqs(held_by(&mut client, "mof").await), [issued.central]);

    // The CLI shows the same lineage.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(["quota", &issued.to_linxia.to_string(), "--json"])
        .args(["--server", &server.url, "--key"])
        .arg(dir.path().join("root.key"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["quota"]["holder_org_id"], "lx-czj");
    assert_eq!(shown["quota"]["amount_fen"], 10_000_000_00u64);
    let ancestors: Vec<u64> = shown["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(ancestors, [issued.to_province, issued.central]);

    // Derived state rebuilt from the journal holds the same quota.
    let before = lineage(&mut client, issued.to_dongxiang).await;
    server.stop().await;
    std::fs::remove_dir_all(dir.path().join("derived")).unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    assert_eq!(lineage(&mut client, issued.to_dongxiang).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_issues_only_quota_it_holds_to_its_own_children_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let issued = issue_down(&mut client, &root).await;
    let province = &issued.province;
    let count = ledger_info(&mut client).await.record_count;

    // More than it still holds: ¥40m less ¥35m issued leaves ¥5m.
    let message = refused(
        &mut client,
        province,
        quota(
            "dx-czj",
            Some(issued.to_province),
            5_000_000_01,
            PROVINCE_DOC,
        ),
        Code::FailedPrecondition,
        "issue_quota.amount_fen",
    )
    .await;
    assert!(message.contains("500000000 fen"), "{message}");
    // Quota it does not hold.
    refused(
        &mut client,
        province,
        quota("dx-czj", Some(issued.central), 1_00, PROVINCE_DOC),
        Code::PermissionDenied,
        "issue_quota.from_quota_seq",
    )
    .await;
    // To an org that is not its child, and to itself.
    for org in ["mof", "gs-czt"] {
        refused(
            &mut client,
            province,
            quota(org, Some(issued.to_province), 1_00, PROVINCE_DOC),
            Code::PermissionDenied,
            "issue_quota.to_org_id",
        )
        .await;
    }
    // A county splits to nobody: it has no children.
    refused(
        &mut client,
        &issued.dongxiang,
        quota(
            "lx-czj",
            Some(issued.to_dongxiang),
            1_00,
            "东财农〔2026〕1号",
        ),
        Code::PermissionDenied,
        "issue_quota.to_org_id",
    )
    .await;
    // What stays unchanged down the levels may not change.
    let changed = |change: fn(&mut pb::IssueQuota)| {
        let B::IssueQuota(mut q) = quota("dx-czj", Some(issued.to_province), 1_00, PROVINCE_DOC)
        else {
            unreachable!()
        };
        change(&mut q);
        B::IssueQuota(q)
    };
    for (change, field) in [
        (
            (|q: &mut pb::IssueQuota| q.programme_code = OTHER_PROGRAMME.into())
                as fn(&mut pb::IssueQuota),
            "issue_quota.programme_code",
        ),
        (|q| q.fiscal_year = 2027, "issue_quota.fiscal_year"),
        (
            |q| q.project_code = "other-project".into(),
            "issue_quota.project_code",
        ),
        (|q| q.direct = false, "issue_quota.direct"),
    ] {
        refused(
            &mut client,
            province,
            changed(change),
            Code::InvalidArgument,
            field,
        )
        .await;
    }
    // Only the centre creates 直达资金.
    refused(
        &mut client,
        province,
        quota("gs-czt", None, 1_00, "甘财农〔2026〕9号"),
        Code::PermissionDenied,
        "issue_quota.direct",
    )
    .await;
    // New quota goes to its creator only.
    refused(
        &mut client,
        &root,
        quota("gs-czt", None, 1_00, "财农〔2026〕20号"),
        Code::InvalidArgument,
        "issue_quota.to_org_id",
    )
    .await;
    // 单独下达: a document that issued 直达资金 of one programme issues no
    // other programme and no other money.
    let mut other_programme = quota("mof", None, 1_00, CENTRAL_DOC);
    if let B::IssueQuota(q) = &mut other_programme {
        q.programme_code = OTHER_PROGRAMME.into();
    }
    refused(
        &mut client,
        &root,
        other_programme,
        Code::FailedPrecondition,
        "issue_quota.document_no",
    )
    .await;
    let mut not_direct = quota("mof", None, 1_00, CENTRAL_DOC);
    if let B::IssueQuota(q) = &mut not_direct {
        (q.direct, q.project_code) = (false, String::new());
    }
    refused(
        &mut client,
        &root,
        not_direct,
        Code::FailedPrecondition,
        "issue_quota.document_no",
    )
    .await;
    // 直达资金 without its 项目代码.
    let mut no_code = quota("mof", None, 1_00, "财农〔2026〕21号");
    if let B::IssueQuota(q) = &mut no_code {
        q.project_code.clear();
    }
    refused(
        &mut client,
        &root,
        no_code,
        Code::InvalidArgument,
        "issue_quota.project_code",
    )
    .await;

    // Nothing was recorded, and the quota stands as it was.
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    let province_quota = lineage(&mut client, issued.to_province)
        .await
        .quota
        .unwrap();
    assert_eq!(province_quota.held_fen, 5_000_000_00);
    // What is left can still be issued, to the last fen; then nothing.
    ok(
        &mut client,
        province,
        quota(
            "lx-czj",
            Some(issued.to_province),
            5_000_000_00,
            PROVINCE_DOC,
        ),
    )
    .await;
    refused(
        &mut client,
        province,
        quota("lx-czj", Some(issued.to_province), 1, PROVINCE_DOC),
        Code::FailedPrecondition,
        "issue_quota.amount_fen",
    )
    .await;
    let _ = &issued.linxia;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_rules_8_there_is_no_quota() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), Rules::V7).await;
    let mut client = server.client().await;
    let root = server.root();
    let status = client
        .post(&root, quota("mof", None, 1_00, CENTRAL_DOC))
        .await
        .expect_err("refused under rules 7");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("needs rules version 8"),
        "{}",
        status.message()
    );
    let deadline = B::SetProgrammeRules(pb::SetProgrammeRules {
        programme_code: PROGRAMME.into(),
        document_no: "财农〔2026〕31号".into(),
        quota_issue_days_max: 30,
        ..Default::default()
    });
    refused(
        &mut client,
        &root,
        deadline,
        Code::FailedPrecondition,
        "set_programme_rules.quota_issue_days_max",
    )
    .await;
    // After the upgrade it is recorded.
    ok(
        &mut client,
        &root,
        B::UpgradeRules(pb::UpgradeRules {
            rules_version: 8,
            document_no: "财办〔2026〕8号".into(),
        }),
    )
    .await;
    ok(&mut client, &root, quota("mof", None, 1_00, CENTRAL_DOC)).await;
    // Cash is counted against quota from rules 9 on: before, no rule can
    // say how soon it must follow.
    let cash_deadline = B::SetProgrammeRules(pb::SetProgrammeRules {
        programme_code: PROGRAMME.into(),
        document_no: "财农〔2026〕32号".into(),
        cash_follow_days_max: 30,
        ..Default::default()
    });
    refused(
        &mut client,
        &root,
        cash_deadline,
        Code::FailedPrecondition,
        "set_programme_rules.cash_follow_days_max",
    )
    .await;
}

async fn standing(client: &mut Client, seq: u64) -> pb::Quota {
    lineage(client, seq).await.quota.unwrap()
}

/// A server on a ledger started under rules 9, with [`issue_down`] posted.
async fn start_under_rules_9() -> (tempfile::TempDir, TestServer, Client, Issued) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), Rules::V9).await;
    let mut client = server.client().await;
    let root = server.root();
    let issued = issue_down(&mut client, &root).await;
    (dir, server, client, issued)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_rules_9_cash_follows_quota_and_payments_stay_within_it() {
    let (dir, server, mut client, issued) = start_under_rules_9().await;
    let root = server.root();
    let (province, dongxiang) = (&issued.province, &issued.dongxiang);
    use pb::AccountKind as K;
    ok(
        &mut client,
        &root,
        open_account("mof-xczx", K::Programme, "中央衔接资金"),
    )
    .await;
    // Older money of another programme sits first in line in the same account.
    let mut other = appropriation("mof-xczx", 1_000_000_00, "财农〔2026〕2号");
    if let B::Appropriation(a) = &mut other {
        a.programme_code = OTHER_PROGRAMME.into();
    }
    ok(&mut client, &root, other).await;
    let source = ok(
        &mut client,
        &root,
        appropriation("mof-xczx", 100_000_000_00, CENTRAL_DOC),
    )
    .await
    .seq;
    ok(
        &mut client,
        province,
        open_account("gs-xczx", K::Programme, "甘肃省衔接资金"),
    )
    .await;
    ok(
        &mut client,
        dongxiang,
        open_account("dx-xczx", K::Programme, "东乡县衔接资金"),
    )
    .await;
    ok(
        &mut client,
        dongxiang,
        household("dx-hh-0001", "HH-622926-0001"),
    )
    .await;
    let down = |amount_fen| transfer("mof-xczx", "gs-xczx", amount_fen, CENTRAL_DOC);

    // Cash down without quota, against quota issued to another org, or of
    // another programme's money (oldest first) is refused.
    refused(
        &mut client,
        &root,
        down(10_000_000_00),
        Code::FailedPrecondition,
        "transfer.quota_seq",
    )
    .await;
    refused(
        &mut client,
        &root,
        against(Some(issued.central), &[], down(10_000_000_00)),
        Code::FailedPrecondition,
        "transfer.quota_seq",
    )
    .await;
    let message = refused(
        &mut client,
        &root,
        against(Some(issued.to_province), &[], down(10_000_000_00)),
        Code::FailedPrecondition,
        "transfer.quota_seq",
    )
    .await;
    assert!(message.contains(OTHER_PROGRAMME), "{message}");
    // Named sources of its programme, within the quota: accepted.
    ok(
        &mut client,
        &root,
        against(
            Some(issued.to_province),
            &[(source, 10_000_000_00)],
            down(10_000_000_00),
        ),
    )
    .await;
    // Cash never runs ahead of quota: ¥40m issued, ¥10m sent, ¥30m more is
    // the most.
    refused(
        &mut client,
        &root,
        against(
            Some(issued.to_province),
            &[(source, 30_000_000_01)],
            down(30_000_000_01),
        ),
        Code::FailedPrecondition,
        "transfer.quota_seq",
    )
    .await;
    // A transfer that does not go down follows no quota.
    ok(
        &mut client,
        &root,
        open_account("mof-other", K::Programme, "中央其他"),
    )
    .await;
    refused(
        &mut client,
        &root,
        against(
            Some(issued.central),
            &[(source, 1_00)],
            transfer("mof-xczx", "mof-other", 1_00, CENTRAL_DOC),
        ),
        Code::InvalidArgument,
        "transfer.quota_seq",
    )
    .await;
    ok(
        &mut client,
        province,
        against(
            Some(issued.to_dongxiang),
            &[],
            transfer("gs-xczx", "dx-xczx", 5_000_000_00, PROVINCE_DOC),
        ),
    )
    .await;
    assert_eq!(
        standing(&mut client, issued.to_province)
            .await
            .cash_received_fen,
        10_000_000_00
    );
    assert_eq!(
        standing(&mut client, issued.to_dongxiang)
            .await
            .cash_received_fen,
        5_000_000_00
    );

    // Payments: the county pays against a small quota of its own.
    let small = ok(
        &mut client,
        province,
        quota("dx-czj", Some(issued.to_province), 5_000_00, PROVINCE_DOC),
    )
    .await
    .seq;
    let pay = |amount_fen| disbursement("dx-xczx", "dx-hh-0001", amount_fen);
    refused(
        &mut client,
        dongxiang,
        pay(3_000_00),
        Code::FailedPrecondition,
        "disbursement.quota_seq",
    )
    .await;
    refused(
        &mut client,
        dongxiang,
        against(Some(issued.to_province), &[], pay(3_000_00)),
        Code::PermissionDenied,
        "disbursement.quota_seq",
    )
    .await;
    let mut wrong_programme = against(Some(small), &[], pay(3_000_00));
    if let B::Disbursement(d) = &mut wrong_programme {
        d.programme_code = OTHER_PROGRAMME.into();
    }
    refused(
        &mut client,
        dongxiang,
        wrong_programme,
        Code::InvalidArgument,
        "disbursement.programme_code",
    )
    .await;
    let paid = ok(
        &mut client,
        dongxiang,
        against(Some(small), &[], pay(3_000_00)),
    )
    .await
    .seq;
    refused(
        &mut client,
        dongxiang,
        against(Some(small), &[], pay(2_000_01)),
        Code::FailedPrecondition,
        "disbursement.quota_seq",
    )
    .await;
    let small_quota = standing(&mut client, small).await;
    assert_eq!(
        (small_quota.paid_fen, small_quota.held_fen),
        (3_000_00, 2_000_00)
    );
    // A county cannot mint quota of its own to pay out the centre's money,
    // nor pay its own money against the centre's quota: quota carries money
    // appropriated by the org that created it (or by one outside its line).
    let own = own_quota("dx-czj", 10_000_00, "东财农〔2026〕9号");
    let own = ok(&mut client, dongxiang, own).await.seq;
    let message = refused(
        &mut client,
        dongxiang,
        against(Some(own), &[], pay(1_000_00)),
        Code::FailedPrecondition,
        "disbursement.quota_seq",
    )
    .await;
    assert!(message.contains("appropriated by mof"), "{message}");
    let own_money = ok(
        &mut client,
        dongxiang,
        appropriation("dx-xczx", 1_000_00, "东财预〔2026〕2号"),
    )
    .await
    .seq;
    let message = refused(
        &mut client,
        dongxiang,
        against(Some(small), &[(own_money, 1_000_00)], pay(1_000_00)),
        Code::FailedPrecondition,
        "disbursement.quota_seq",
    )
    .await;
    assert!(message.contains("appropriated by dx-czj"), "{message}");
    ok(
        &mut client,
        dongxiang,
        against(Some(own), &[(own_money, 1_000_00)], pay(1_000_00)),
    )
    .await;

    // A reversed payment gives its quota back.
    ok(
        &mut client,
        dongxiang,
        B::Reversal(pb::Reversal {
            target_seq: paid,
            document_no: "东财农〔2026〕4号".into(),
            reason: "重复录入".into(),
        }),
    )
    .await;
    let small_quota = standing(&mut client, small).await;
    assert_eq!((small_quota.paid_fen, small_quota.held_fen), (0, 5_000_00));
    ok(
        &mut client,
        dongxiang,
        against(Some(small), &[], pay(5_000_00)),
    )
    .await;
    assert_eq!(standing(&mut client, small).await.held_fen, 0);
    let repaid = ledger_info(&mut client).await.record_count - 1;
    // A payment the bank could not credit gives its quota back too.
    ok(
        &mut client,
        dongxiang,
        B::Return(pb::Return {
            from_account_id: "dx-hh-0001".into(),
            to_account_id: "dx-xczx".into(),
            amount_fen: 5_000_00,
            kind: pb::ReturnKind::BankFailure as i32,
            document_no: "东财农〔2026〕5号".into(),
            reason: "账户已销户".into(),
            disbursement_seq: repaid,
            bank_reference: "BANK-2026-0001".into(),
            ..Default::default()
        }),
    )
    .await;
    let small_quota = standing(&mut client, small).await;
    assert_eq!((small_quota.paid_fen, small_quota.held_fen), (0, 5_000_00));
    ok(
        &mut client,
        dongxiang,
        against(Some(small), &[], pay(5_000_00)),
    )
    .await;
    // And a reversed transfer down gives back the cash it counted.
    let sent = ok(
        &mut client,
        &root,
        against(
            Some(issued.to_province),
            &[(source, 1_000_00)],
            down(1_000_00),
        ),
    )
    .await
    .seq;
    assert_eq!(
        standing(&mut client, issued.to_province)
            .await
            .cash_received_fen,
        10_001_000_00
    );
    ok(
        &mut client,
        province,
        B::Reversal(pb::Reversal {
            target_seq: sent,
            document_no: "甘财农〔2026〕6号".into(),
            reason: "误拨".into(),
        }),
    )
    .await;
    assert_eq!(
        standing(&mut client, issued.to_province)
            .await
            .cash_received_fen,
        10_000_000_00
    );
    let _ = &issued.linxia;

    // Spending progress equals what the records themselves add up to.
    for org in ["gs-czt", "dx-czj", "mof"] {
        let expected = progress_from_records(&mut client, org).await;
        let rows = client
            .query
            .spending_progress(pb::SpendingProgressRequest {
                org_id: org.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .rows;
        let last = rows.last().expect("a row for the programme");
        assert!(rows.iter().all(|r| r.programme_code == PROGRAMME));
        assert_eq!(
            (
                last.quota_received_fen,
                last.quota_issued_down_fen,
                last.cash_received_fen,
                last.paid_fen,
                last.paid_basis_points
            ),
            expected,
            "{org}"
        );
    }
    // The CSV export says the same, in yuan and percent.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args([
            "export-csv",
            "progress",
            "--org",
            "gs-czt",
            "--server",
            &server.url,
        ])
        .arg("--key")
        .arg(dir.path().join("root.key"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let last_line = text.trim_end().lines().last().unwrap().to_string();
    let cells: Vec<&str> = last_line.split(',').collect();
    assert_eq!(
        cells[2..],
        [
            "40000000.00",
            "35005000.00",
            "10000000.00",
            "5000.00",
            "0.01"
        ],
        "{text}"
    );
    let province = progress_from_records(&mut client, "gs-czt").await;
    assert_eq!(
        province,
        (
            40_000_000_00,
            35_000_000_00 + 5_000_00,
            10_000_000_00,
            5_000_00,
            1
        )
    );

    // The same quota after derived state is rebuilt from the journal.
    let before = lineage(&mut client, small).await;
    server.stop().await;
    std::fs::remove_dir_all(dir.path().join("derived")).unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    assert_eq!(lineage(&mut client, small).await, before);
}

/// The progress figures of `org` (latest cumulative row: quota received,
/// issued down, cash received, paid, basis points), summed by hand from the
/// records as ExportLog gives them: every record's request decoded here
/// from its signed bytes, nothing taken from the server's indexes.
async fn progress_from_records(client: &mut Client, org: &str) -> (u64, u64, u64, u64, u64) {
    use prost::Message;
    let mut stream = client
        .audit
        .export_log(pb::ExportLogRequest { start: 0, end: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut bodies = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        let record = pb::Record::decode(item.record.as_slice()).unwrap();
        let payload = record.request.unwrap().payload;
        let body = pb::Request::decode(payload.as_slice()).unwrap().body;
        bodies.push((record.seq, body));
    }
    let mut holder = std::collections::HashMap::new();
    // Reversed movements, and payments the bank sent back, moved nothing.
    let mut undone = std::collections::HashSet::new();
    for (seq, body) in &bodies {
        match body {
            Some(B::IssueQuota(q)) => {
                holder.insert(*seq, (q.to_org_id.clone(), q.amount_fen, q.from_quota_seq));
            }
            Some(B::Reversal(r)) => {
                undone.insert(r.target_seq);
            }
            Some(B::Return(r)) if r.kind == pb::ReturnKind::BankFailure as i32 => {
                undone.insert(r.disbursement_seq);
            }
            _ => {}
        }
    }
    // A payment counts when its quota is the org's or was split from one
    // of the org's, however far down.
    let descends = |seq: u64| {
        let mut q = Some(seq);
        while let Some((h, _, from)) = q.and_then(|s| holder.get(&s)) {
            if h == org {
                return true;
            }
            q = *from;
        }
        false
    };
    let held_by_org = |seq: &u64| holder.get(seq).is_some_and(|(h, _, _)| h == org);
    let received: u64 = holder
        .values()
        .filter(|(h, _, _)| h == org)
        .map(|(_, a, _)| a)
        .sum();
    let issued_down: u64 = holder
        .values()
        .filter(|(_, _, from)| from.as_ref().is_some_and(held_by_org))
        .map(|(_, a, _)| a)
        .sum();
    let (mut cash, mut paid) = (0, 0);
    for (_, body) in bodies.iter().filter(|(seq, _)| !undone.contains(seq)) {
        match body {
            Some(B::Transfer(t)) if t.quota_seq.as_ref().is_some_and(held_by_org) => {
                cash += t.amount_fen
            }
            Some(B::Disbursement(d)) if d.quota_seq.is_some_and(descends) => {
                paid += d.amount_fen;
            }
            Some(B::Allocation(a)) if a.quota_seq.is_some_and(descends) => {
                paid += a.amount_fen;
            }
            _ => {}
        }
    }
    let basis_points = match received {
        0 => 0,
        r => (u128::from(paid) * 10_000 / u128::from(r)) as u64,
    };
    (received, issued_down, cash, paid, basis_points)
}

/// `body` signed by `signer`, imported from an earlier system and dated
/// `days_ago`.
async fn imported(client: &mut Client, signer: &Signer, days_ago: i32, body: B) -> u64 {
    let today = fundtrail_core::dates::day_of_ms(fundtrail_client::now_ms());
    let mut request = client.request(body);
    request.value_date = fundtrail_core::dates::format_date(today - days_ago);
    request.imported = true;
    client
        .post_signed(signer.sign(&request))
        .await
        .expect("imported")
        .seq
}

async fn quota_breaches(client: &mut Client) -> Vec<pb::Breach> {
    all_breaches(client)
        .await
        .into_iter()
        .filter(|b| b.kind == "QUOTA_IDLE")
        .collect()
}

/// A ledger with 甘肃 and its counties registered, the centre and the
/// province allowed to import, and quota imported as of 60 days ago: ¥50m
/// new at the centre, ¥40m of it split to the province.
struct Sixty {
    dir: tempfile::TempDir,
    server: TestServer,
    client: Client,
    root: Signer,
    province: Signer,
    dongxiang: Signer,
    central: u64,
    to_province: u64,
}

async fn quota_sixty_days_ago() -> Sixty {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let root = server.root();
    let (province, dongxiang, linxia) = (new_signer(), new_signer(), new_signer());
    register_gansu(&mut client, &root, &province).await;
    register_gansu_counties(&mut client, &province, &dongxiang, &linxia).await;
    let until = fundtrail_core::dates::format_date(
        fundtrail_core::dates::day_of_ms(fundtrail_client::now_ms()) + 30,
    );
    for org in ["mof", "gs-czt"] {
        ok(&mut client, &root, import_window(org, &until)).await;
    }
    let central = imported(
        &mut client,
        &root,
        60,
        quota("mof", None, 50_000_000_00, CENTRAL_DOC),
    )
    .await;
    let to_province = imported(
        &mut client,
        &root,
        60,
        quota("gs-czt", Some(central), 40_000_000_00, CENTRAL_DOC),
    )
    .await;
    Sixty {
        dir,
        server,
        client,
        root,
        province,
        dongxiang,
        central,
        to_province,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_left_unissued_and_unpaid_past_the_idle_rule_is_a_breach() {
    let Sixty {
        dir: _dir,
        server,
        mut client,
        root,
        province,
        dongxiang,
        central,
        to_province,
    } = quota_sixty_days_ago().await;
    // ¥40m went to the province, all of which it passed on within days;
    // ¥10m of the top quota still sits at the centre.
    for (county, amount_fen) in [("dx-czj", 30_000_000_00), ("lx-czj", 10_000_000_00)] {
        imported(
            &mut client,
            &province,
            55,
            quota(county, Some(to_province), amount_fen, PROVINCE_DOC),
        )
        .await;
    }
    // No idle rule yet: no breach.
    assert_eq!(quota_breaches(&mut client).await, []);
    let rules = |idle_days_max| {
        B::SetProgrammeRules(pb::SetProgrammeRules {
            programme_code: PROGRAMME.into(),
            document_no: "财农〔2026〕30号".into(),
            idle_days_max,
            ..Default::default()
        })
    };
    // Money may sit 90 days: nothing is idle yet.
    ok(&mut client, &root, rules(90)).await;
    assert_eq!(quota_breaches(&mut client).await, []);
    // 45 days: the centre's ¥10m and each county's whole quota are idle;
    // the province passed all of its own on.
    let rule_seq = ok(&mut client, &root, rules(45)).await.seq;
    let breaches = quota_breaches(&mut client).await;
    let found: Vec<(u64, u64)> = breaches.iter().map(|b| (b.seqs[0], b.amount_fen)).collect();
    assert_eq!(found.len(), 3, "{breaches:?}");
    assert!(found.contains(&(central, 10_000_000_00)), "{found:?}");
    assert!(
        !found.iter().any(|(seq, _)| *seq == to_province),
        "{found:?}"
    );
    for b in &breaches {
        assert_eq!(
            (b.rule_seq, b.programme_code.as_str()),
            (rule_seq, PROGRAMME)
        );
    }
    // A page at a time, the same breaches (the page token crosses quota
    // keys, which are not text).
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .compliance(pb::ComplianceRequest {
                page_size: 1,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.breaches.into_iter().filter(|b| b.kind == "QUOTA_IDLE"));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(paged, breaches);
    // A county reads the same breaches: budgets are public.
    let mut county_client = server.client_as(&dongxiang).await;
    assert_eq!(quota_breaches(&mut county_client).await, breaches);

    // Issue deadlines: above county level, quota is issued on within the
    // days the rules allow. The centre split ¥40m the day it created ¥50m;
    // the province passed its ¥40m on five days after it received it.
    let late = |breaches: Vec<pb::Breach>| -> Vec<(u64, u64, usize)> {
        let mut found: Vec<_> = breaches
            .iter()
            .filter(|b| b.kind == "QUOTA_NOT_ISSUED_IN_TIME")
            .map(|b| (b.seqs[0], b.amount_fen, b.seqs.len()))
            .collect();
        found.sort();
        found
    };
    let deadline = |days| {
        B::SetProgrammeRules(pb::SetProgrammeRules {
            programme_code: PROGRAMME.into(),
            document_no: "财农〔2026〕31号".into(),
            idle_days_max: 45,
            quota_issue_days_max: days,
            ..Default::default()
        })
    };
    ok(&mut client, &root, deadline(10)).await;
    assert_eq!(
        late(all_breaches(&mut client).await),
        [(central, 10_000_000_00, 1)]
    );
    ok(&mut client, &root, deadline(3)).await;
    assert_eq!(
        late(all_breaches(&mut client).await),
        [(central, 10_000_000_00, 1), (to_province, 40_000_000_00, 3)],
        "the province's two late splits are named"
    );
}

async fn all_breaches(client: &mut Client) -> Vec<pb::Breach> {
    client
        .query
        .compliance(pb::ComplianceRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .breaches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_cash_without_quota_is_accepted_and_reported() {
    let (_dir, server, mut client, issued) = start_under_rules_9().await;
    let root = server.root();
    use pb::AccountKind as K;
    ok(
        &mut client,
        &root,
        open_account("mof-xczx", K::Programme, "中央衔接资金"),
    )
    .await;
    ok(
        &mut client,
        &issued.province,
        open_account("gs-xczx", K::Programme, "甘肃省衔接资金"),
    )
    .await;
    let until = fundtrail_core::dates::format_date(
        fundtrail_core::dates::day_of_ms(fundtrail_client::now_ms()) + 30,
    );
    ok(&mut client, &root, import_window("mof", &until)).await;
    imported(
        &mut client,
        &root,
        120,
        appropriation("mof-xczx", 100_000_000_00, CENTRAL_DOC),
    )
    .await;
    // History from an earlier system: cash sent down with no quota named.
    let history = imported(
        &mut client,
        &root,
        100,
        transfer("mof-xczx", "gs-xczx", 2_000_000_00, "财农〔2025〕40号"),
    )
    .await;
    // And imported cash that names its quota is no finding.
    imported(
        &mut client,
        &root,
        90,
        against(
            Some(issued.to_province),
            &[],
            transfer("mof-xczx", "gs-xczx", 1_000_000_00, CENTRAL_DOC),
        ),
    )
    .await;
    let found: Vec<pb::Breach> = all_breaches(&mut client)
        .await
        .into_iter()
        .filter(|b| b.kind == "CASH_WITHOUT_QUOTA")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].seqs.clone(),
            found[0].amount_fen,
            found[0].account_id.as_str(),
            found[0].rule_seq,
            found[0].programme_code.as_str()
        ),
        (vec![history], 2_000_000_00, "mof-xczx", 0, PROGRAMME)
    );
    // Without the import mark it is refused, and nothing is recorded.
    let count = ledger_info(&mut client).await.record_count;
    refused(
        &mut client,
        &root,
        transfer("mof-xczx", "gs-xczx", 1_00, "财农〔2026〕40号"),
        Code::FailedPrecondition,
        "transfer.quota_seq",
    )
    .await;
    assert_eq!(ledger_info(&mut client).await.record_count, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cash_not_sent_within_the_days_after_its_quota_is_a_breach() {
    let Sixty {
        dir: _dir,
        server,
        mut client,
        root,
        province,
        dongxiang,
        central: _,
        to_province,
    } = quota_sixty_days_ago().await;
    use pb::AccountKind as K;
    ok(
        &mut client,
        &root,
        open_account("mof-xczx", K::Programme, "中央衔接资金"),
    )
    .await;
    ok(
        &mut client,
        &province,
        open_account("gs-xczx", K::Programme, "甘肃省衔接资金"),
    )
    .await;
    imported(
        &mut client,
        &root,
        70,
        appropriation("mof-xczx", 50_000_000_00, CENTRAL_DOC),
    )
    .await;
    // The province split ¥25m to 东乡 55 days ago. Cash: ¥30m to the
    // province 5 days after its quota, ¥10m 40 days after; none to 东乡.
    let to_dongxiang = imported(
        &mut client,
        &province,
        55,
        quota("dx-czj", Some(to_province), 25_000_000_00, PROVINCE_DOC),
    )
    .await;
    let mut cash = Vec::new();
    for (days_ago, amount_fen) in [(55, 30_000_000_00), (20, 10_000_000_00)] {
        let seq = imported(
            &mut client,
            &root,
            days_ago,
            against(
                Some(to_province),
                &[],
                transfer("mof-xczx", "gs-xczx", amount_fen, CENTRAL_DOC),
            ),
        )
        .await;
        cash.push(seq);
    }
    let late = |breaches: Vec<pb::Breach>| -> Vec<(Vec<u64>, u64, u64)> {
        let mut found: Vec<_> = breaches
            .into_iter()
            .filter(|b| b.kind == "CASH_NOT_SENT_IN_TIME")
            .map(|b| (b.seqs, b.amount_fen, b.rule_seq))
            .collect();
        found.sort();
        found
    };
    assert_eq!(late(all_breaches(&mut client).await), [], "no rule yet");
    let deadline = |days| {
        B::SetProgrammeRules(pb::SetProgrammeRules {
            programme_code: PROGRAMME.into(),
            document_no: "财农〔2026〕33号".into(),
            cash_follow_days_max: days,
            ..Default::default()
        })
    };
    // 30 days: the province's last ¥10m came late, 东乡 got none. The top
    // quota follows no cash (it is the centre's own appropriation).
    let rule_30 = ok(&mut client, &root, deadline(30)).await.seq;
    assert_eq!(
        late(all_breaches(&mut client).await),
        [
            (vec![to_province], 10_000_000_00, rule_30),
            (vec![to_dongxiang], 25_000_000_00, rule_30)
        ]
    );
    // 45 days: the province's cash came in time; 东乡's deadline passed
    // ten days ago without any.
    let rule_45 = ok(&mut client, &root, deadline(45)).await.seq;
    assert_eq!(
        late(all_breaches(&mut client).await),
        [(vec![to_dongxiang], 25_000_000_00, rule_45)]
    );
    // 60 days: 东乡's deadline has not come yet.
    ok(&mut client, &root, deadline(60)).await;
    assert_eq!(late(all_breaches(&mut client).await), []);
    // Cash sent and then reversed was not sent: the first ¥30m goes back.
    let rule_45 = ok(&mut client, &root, deadline(45)).await.seq;
    ok(
        &mut client,
        &province,
        B::Reversal(pb::Reversal {
            target_seq: cash[0],
            document_no: "财农〔2026〕34号".into(),
            reason: "重复拨付".into(),
        }),
    )
    .await;
    assert_eq!(
        late(all_breaches(&mut client).await),
        [
            (vec![to_province], 30_000_000_00, rule_45),
            (vec![to_dongxiang], 25_000_000_00, rule_45)
        ]
    );
    // A county reads the same breaches: budgets are public.
    let mut county_client = server.client_as(&dongxiang).await;
    assert_eq!(
        late(all_breaches(&mut county_client).await).len(),
        2,
        "a county sees every org's quota"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_allocated_to_a_project_may_draw_on_quota_and_counts_as_paid() {
    let (_dir, server, mut client, issued) = start_under_rules_9().await;
    let root = server.root();
    let (province, dongxiang) = (&issued.province, &issued.dongxiang);
    use pb::AccountKind as K;
    for (signer, account, name) in [
        (&root, "mof-xczx", "中央衔接资金"),
        (province, "gs-xczx", "甘肃省衔接资金"),
        (dongxiang, "dx-xczx", "东乡县衔接资金"),
    ] {
        ok(
            &mut client,
            signer,
            open_account(account, K::Programme, name),
        )
        .await;
    }
    ok(
        &mut client,
        dongxiang,
        open_account("dx-pool", K::Pool, "东乡县统筹整合资金"),
    )
    .await;
    ok(
        &mut client,
        &root,
        appropriation("mof-xczx", 100_000_000_00, CENTRAL_DOC),
    )
    .await;
    for (signer, body) in [
        (
            &root,
            against(
                Some(issued.to_province),
                &[],
                transfer("mof-xczx", "gs-xczx", 30_000_000_00, CENTRAL_DOC),
            ),
        ),
        (
            province,
            against(
                Some(issued.to_dongxiang),
                &[],
                transfer("gs-xczx", "dx-xczx", 25_000_000_00, PROVINCE_DOC),
            ),
        ),
        (
            dongxiang,
            B::Consolidation(pb::Consolidation {
                from_account_id: "dx-xczx".into(),
                pool_account_id: "dx-pool".into(),
                amount_fen: 25_000_000_00,
                plan_document_no: "东政办〔2026〕9号".into(),
                ..Default::default()
            }),
        ),
        (
            dongxiang,
            B::RegisterProject(pb::RegisterProject {
                account_id: "dx-road".into(),
                name: "村组道路硬化".into(),
                category: "基础设施".into(),
                location_code: "622926100".into(),
                budget_fen: 30_000_000_00,
                performance_targets: vec!["新建硬化道路15公里".into()],
                responsible_unit: "东乡县交通运输局".into(),
                fiscal_year: 2026,
            }),
        ),
    ] {
        ok(&mut client, signer, body).await;
    }
    let allocate = |amount_fen, quota_seq| {
        B::Allocation(pb::Allocation {
            pool_account_id: "dx-pool".into(),
            project_account_id: "dx-road".into(),
            amount_fen,
            document_no: "东财整〔2026〕3号".into(),
            quota_seq,
            ..Default::default()
        })
    };
    // Spending on a project against the county's quota counts as paid.
    let funded = ok(
        &mut client,
        dongxiang,
        allocate(20_000_000_00, Some(issued.to_dongxiang)),
    )
    .await
    .seq;
    let county = standing(&mut client, issued.to_dongxiang).await;
    assert_eq!(
        (county.paid_fen, county.held_fen),
        (20_000_000_00, 5_000_000_00)
    );
    // Not beyond it, not against another county's quota; naming none, the
    // pool's money goes to the project drawing on no quota.
    let small = ok(
        &mut client,
        province,
        quota("dx-czj", Some(issued.to_province), 1_000_00, PROVINCE_DOC),
    )
    .await
    .seq;
    refused(
        &mut client,
        dongxiang,
        allocate(1_000_01, Some(small)),
        Code::FailedPrecondition,
        "allocation.quota_seq",
    )
    .await;
    refused(
        &mut client,
        dongxiang,
        allocate(1_00, Some(issued.to_linxia)),
        Code::PermissionDenied,
        "allocation.quota_seq",
    )
    .await;
    ok(&mut client, dongxiang, allocate(1_000_000_00, None)).await;
    assert_eq!(
        standing(&mut client, issued.to_dongxiang).await.paid_fen,
        20_000_000_00
    );
    let progress = |client: &mut Client, org: &str| {
        let (mut client, org) = (client.clone(), org.to_string());
        async move {
            let row = client
                .query
                .spending_progress(pb::SpendingProgressRequest {
                    org_id: org,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .rows
                .pop()
                .expect("a row");
            (
                row.quota_received_fen,
                row.quota_issued_down_fen,
                row.cash_received_fen,
                row.paid_fen,
                row.paid_basis_points,
            )
        }
    };
    for org in ["dx-czj", "gs-czt", "mof"] {
        assert_eq!(
            progress(&mut client, org).await,
            progress_from_records(&mut client, org).await,
            "{org}"
        );
    }
    assert_eq!(progress(&mut client, "dx-czj").await.3, 20_000_000_00);
    // Reversed, the allocation gives its quota back.
    ok(
        &mut client,
        dongxiang,
        B::Reversal(pb::Reversal {
            target_seq: funded,
            document_no: "东财整〔2026〕4号".into(),
            reason: "项目调整".into(),
        }),
    )
    .await;
    assert_eq!(standing(&mut client, issued.to_dongxiang).await.paid_fen, 0);
    assert_eq!(
        progress(&mut client, "dx-czj").await,
        progress_from_records(&mut client, "dx-czj").await
    );
}
