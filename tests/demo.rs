//! `fundtrail serve --demo` end to end: the real binary seeds the national
//! scenario into an empty directory, the auditor's queries answer over gRPC,
//! and a second start serves the same ledger unchanged.

#[path = "process/mod.rs"]
mod process;

use fundtrail_api::pb;
use fundtrail_client::Client;
use process::Killed;

async fn start(dir: &std::path::Path) -> (Killed, Client, String) {
    let demo = process::start_demo(dir, false);
    let root = fundtrail_client::Signer::from_key_file(&demo.data.join("root.key")).unwrap();
    let client = Client::connect_as(&demo.grpc, &root).await.unwrap();
    let log = std::fs::read_to_string(&demo.log).unwrap_or_default();
    (demo.server, client, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_ledger_answers_the_auditors_questions() {
    let dir = tempfile::tempdir().unwrap();
    let (server, mut client, log) = start(dir.path()).await;
    assert!(log.contains("demo ledger seeded"), "{log}");
    let info = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(info.record_count > 40_000, "{} records", info.record_count);

    // At least 10,000 registered households.
    let mut households = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .list_entries(pb::ListEntriesRequest {
                kind: "RegisterHousehold".into(),
                page_size: 1_000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        households += page.entries.len();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert!(households >= 10_000, "{households} households");

    // The central 衔接资金 appropriation, traced page by page: every fen is
    // held somewhere or withdrawn, and households hold part of it.
    let appropriation = client
        .query
        .list_entries(pb::ListEntriesRequest {
            kind: "Appropriation".into(),
            org_id: "mof".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries[0]
        .seq;
    let mut held = std::collections::BTreeMap::new();
    let mut page_token = String::new();
    let (traced, withdrawn) = loop {
        let page = client
            .query
            .trace_forward(pb::TraceForwardRequest {
                seq: appropriation,
                page_size: 5_000,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        for node in page.nodes {
            held.insert(node.account_id.clone(), (node.held_fen, node.kind));
        }
        if page.next_page_token.is_empty() {
            break (page.traced_fen, page.withdrawn_fen);
        }
        page_token = page.next_page_token;
    };
    let held_total: u64 = held.values().map(|(fen, _)| fen).sum();
    assert_eq!(
        held_total + withdrawn,
        traced,
        "conservation over the trace"
    );
    let at_households: u64 = held
        .values()
        .filter(|(_, kind)| *kind == pb::AccountKind::Household as i32)
        .map(|(fen, _)| fen)
        .sum();
    assert!(at_households > 0 && at_households < traced);

    // A household's money goes back to a central appropriation.
    let back = client
        .query
        .trace_backward(pb::TraceBackwardRequest {
            target: Some(pb::trace_backward_request::Target::AccountId(
                "622926-hh-000003".into(),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!back.lineages.is_empty());
    for lineage in &back.lineages {
        assert_eq!(
            lineage.hops.first().map(|h| h.kind.as_str()),
            Some("Appropriation")
        );
        assert_eq!(
            lineage.hops.last().map(|h| h.kind.as_str()),
            Some("Disbursement")
        );
    }

    // Idle money at county level, and every planted anomaly.
    let idle = client
        .query
        .idle_funds(pb::IdleFundsRequest {
            older_than_days: 365,
            level: "county".into(),
            page_size: 1_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(idle
        .rows
        .iter()
        .any(|r| r.account_id == "bt-czj-ygdz" && r.idle_fen > 0));
    let mut kinds = std::collections::BTreeSet::new();
    let mut equal_splits = 0;
    let mut diverted = Vec::new();
    let mut monitored_unpaid = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .anomalies(pb::AnomaliesRequest {
                page_size: 1_000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        // One planted equal split, no more: the other villages are paid by
        // production.
        equal_splits += page
            .findings
            .iter()
            .filter(|f| f.kind == "EQUAL_SPLIT")
            .count();
        diverted.extend(
            page.findings
                .iter()
                .filter(|f| f.kind == "DIVERTED")
                .map(|f| (f.account_id.clone(), f.amount_fen)),
        );
        monitored_unpaid.extend(
            page.findings
                .iter()
                .filter(|f| f.kind == "MONITORED_UNPAID")
                .map(|f| f.account_id.clone()),
        );
        kinds.extend(page.findings.into_iter().map(|f| f.kind));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    for kind in [
        "DUPLICATE_PAYMENT",
        "INELIGIBLE_PAYMENT",
        "OTHER_COUNTY_HOUSEHOLD",
        "UNANNOUNCED_ALLOCATION",
        "IDLE_OVER_1_YEAR",
        "EQUAL_SPLIT",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(equal_splits, 1);
    // 布拖县's ¥1,000,000.00 of 以工代赈 money in its 衔接资金 account.
    assert_eq!(diverted, [("bt-czj-xczx".to_string(), 1_000_000_00)]);
    // 美姑县's third household, monitored from April and never paid.
    assert_eq!(monitored_unpaid, ["513436-hh-000003".to_string()]);
    // The programmes' rules are breached in each way the report knows.
    let mut breaches = Vec::new();
    let mut request = pb::ComplianceRequest {
        page_size: 1_000,
        ..Default::default()
    };
    loop {
        let page = client
            .query
            .compliance(request.clone())
            .await
            .unwrap()
            .into_inner();
        breaches.extend(page.breaches);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let kinds: std::collections::BTreeSet<&str> =
        breaches.iter().map(|b| b.kind.as_str()).collect();
    for kind in [
        "ABOVE_STANDARD",
        "BELOW_COUNTY_SHARE",
        "IDLE_BEYOND_RULE",
        "UNANNOUNCED_PAYMENT",
        "FAILED_EVALUATION_FUNDED",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    // The 2026 直达资金: 四川 passed its quota on late, 固原市 sent 西吉县's
    // cash late; nothing else is late, idle or without quota.
    let about = |kind: &str| -> Vec<String> {
        breaches
            .iter()
            .filter(|b| b.kind == kind)
            .map(|b| b.detail.clone())
            .collect()
    };
    let late = about("QUOTA_NOT_ISSUED_IN_TIME");
    assert!(
        late.len() == 1 && late[0].starts_with("sc-czt "),
        "{late:?}"
    );
    let cash_late = about("CASH_NOT_SENT_IN_TIME");
    assert!(
        cash_late.len() == 1 && cash_late[0].contains("issued to xj-czj"),
        "{cash_late:?}"
    );
    assert_eq!(about("CASH_WITHOUT_QUOTA"), Vec::<String>::new());
    assert_eq!(about("QUOTA_IDLE"), Vec::<String>::new());
    // 支出进度: 美姑县 paid less than half its quota, every other county
    // more; each county's quota goes back to the central document.
    let counties = [
        "zj-czj", "bt-czj", "mg-czj", "fg-czj", "lp-czj", "dx-czj", "jss-czj", "htx-czj", "xj-czj",
    ];
    for county in counties {
        let rows = client
            .query
            .spending_progress(pb::SpendingProgressRequest {
                org_id: county.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .rows;
        let last = rows.last().expect("the county has quota");
        assert_eq!(
            last.paid_basis_points < 5_000,
            county == "mg-czj",
            "{county}: {last:?}"
        );
        let quotas = client
            .query
            .list_quotas(pb::ListQuotasRequest {
                org_id: county.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .quotas;
        assert_eq!(quotas.len(), 1, "{county}");
        let lineage = client
            .query
            .get_quota(pb::GetQuotaRequest { seq: quotas[0].seq })
            .await
            .unwrap()
            .into_inner();
        let top = lineage.ancestors.last().expect("split from above");
        assert_eq!(
            (top.holder_org_id.as_str(), top.document_no.as_str()),
            ("mof", "财农〔2026〕3号"),
            "{county}"
        );
        assert_eq!(lineage.ancestors.len(), 3, "prefecture, province, centre");
    }
    // The duplicate payment is the one above the standard.
    let above: Vec<_> = breaches
        .iter()
        .filter(|b| b.kind == "ABOVE_STANDARD")
        .collect();
    assert_eq!(above.len(), 1, "{above:?}");
    assert_eq!(
        (above[0].account_id.as_str(), above[0].amount_fen),
        ("622926-hh-000003", 800_00)
    );
    drop(client);
    drop(server);

    // Started again with --demo, the ledger is served unchanged.
    let (_server, mut client, log) = start(dir.path()).await;
    assert!(log.contains("serving it unchanged"), "{log}");
    let again = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (again.ledger_id, again.record_count),
        (info.ledger_id, info.record_count)
    );
    // The demo ends under the current rules: 昭觉县 has an import window
    // open, and 西吉县 none.
    let keys = dir.path().join("data").join("demo-keys");
    for (org, accepted) in [("zj-czj", true), ("xj-czj", false)] {
        let key =
            fundtrail_client::Signer::from_key_file(&keys.join(format!("{org}.key"))).unwrap();
        let mut request = client.request(pb::request::Body::OpenAccount(pb::OpenAccount {
            account_id: format!("{org}-migrated"),
            kind: pb::AccountKind::Programme as i32,
            name: "迁移专户".into(),
            ..Default::default()
        }));
        request.imported = true;
        request.value_date = "2025-06-30".into();
        let answer = client.post_signed(key.sign(&request)).await;
        match (accepted, answer) {
            (true, Ok(_)) => {}
            (false, Err(status)) => {
                assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
                assert!(
                    status.message().contains("import window"),
                    "{}",
                    status.message()
                );
            }
            (_, other) => panic!("{org}: {other:?}"),
        }
    }
}
