//! Households under monitoring (防止返贫动态监测, rules 10) over real gRPC
//! on the county chain of `county/mod.rs`: a county records when a household
//! came under monitoring and when its risk was cleared; a monitored household
//! not paid within 90 days is a MONITORED_UNPAID finding (应享未享); another
//! county learns nothing from its refusals it could not read.

mod common;
mod county;

use county::*;
use fundtrail_core::rules::Rules;

fn monitor(household: &str, category: pb::MonitoringCategory, document: &str) -> B {
    B::SetMonitoring(pb::SetMonitoring {
        account_id: household.into(),
        category: category as i32,
        document_no: document.into(),
        reason: "入户核查".into(),
    })
}

/// The MONITORED_UNPAID findings a reader gets: (household, records).
async fn unpaid(client: &mut Client) -> Vec<(String, Vec<u64>)> {
    let mut found: Vec<_> = anomalies(client, pb::AnomaliesRequest::default())
        .await
        .findings
        .into_iter()
        .filter(|f| f.kind == "MONITORED_UNPAID")
        .map(|f| (f.account_id, f.seqs))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_household_monitored_and_not_paid_within_90_days_is_found() {
    use pb::MonitoringCategory as M;
    let (_dir, server, mut client, county) = start().await;
    let dx = county.dongxiang.clone();
    for (i, id) in ["dx-hh-m1", "dx-hh-m2", "dx-hh-m3", "dx-hh-m4"]
        .iter()
        .enumerate()
    {
        let registry = format!("HH-622926-10{i}");
        ok(
            &mut client,
            &dx,
            household_in(id, &registry, "622926100201"),
        )
        .await;
    }
    let identified = |household: &str, days_ago: i32, category: M| {
        let document = format!("东乡监测〔2026〕{days_ago}号");
        (date(days_ago), monitor(household, category, &document))
    };
    let mut seqs = BTreeMap::new();
    for (household, days_ago, category) in [
        // Identified 120 days ago and never paid: a finding.
        ("dx-hh-m1", 120, M::Unstable),
        // Identified 120 days ago, paid 100 days ago: supported.
        ("dx-hh-m2", 120, M::Marginal),
        // Identified 120 days ago, its risk cleared 60 days ago, unpaid.
        ("dx-hh-m3", 120, M::SuddenHardship),
        // Identified 30 days ago: its 90 days have not passed.
        ("dx-hh-m4", 30, M::Unstable),
    ] {
        let (value_date, body) = identified(household, days_ago, category);
        // A county may record the day a household was identified after it.
        let posted = post_dated(&mut client, &dx, &value_date, false, body).await;
        seqs.insert(household, posted.seq);
    }
    // A cleared risk is recorded on the day, or imported from an earlier
    // system (see the refusal below).
    let (value_date, cleared) = identified("dx-hh-m3", 60, M::NotMonitored);
    let cleared = post_dated(&mut client, &dx, &value_date, true, cleared)
        .await
        .seq;
    let support = against(
        Some(county.quota_dongxiang),
        &[(county.s, 500_00)],
        pay(
            "dx-xczx",
            "dx-hh-m2",
            500_00,
            "2025-08",
            "东财农〔2026〕90号",
        ),
    );
    imported(&mut client, &dx, 100, support).await;

    assert_eq!(
        unpaid(&mut client).await,
        [("dx-hh-m1".to_string(), vec![seqs["dx-hh-m1"]])]
    );

    // The statement shows the history, and the category today.
    let m3 = statement(&mut client, "dx-hh-m3").await.unwrap();
    assert_eq!(m3.monitoring_today, M::NotMonitored as i32);
    assert_eq!(
        m3.monitoring
            .iter()
            .map(|c| (c.effective_day, c.category, c.seq))
            .collect::<Vec<_>>(),
        [
            (today() - 120, M::SuddenHardship as i32, seqs["dx-hh-m3"]),
            (today() - 60, M::NotMonitored as i32, cleared)
        ]
    );
    let m1 = statement(&mut client, "dx-hh-m1").await.unwrap();
    assert_eq!(m1.monitoring_today, M::Unstable as i32);

    // Paid at last, it is still found: support came after the 90 days.
    ok(
        &mut client,
        &dx,
        against(
            Some(county.quota_dongxiang),
            &[(county.s, 500_00)],
            pay(
                "dx-xczx",
                "dx-hh-m1",
                500_00,
                "2026-12",
                "东财农〔2026〕91号",
            ),
        ),
    )
    .await;
    assert_eq!(unpaid(&mut client).await.len(), 1);

    // Another county reads neither the households nor the finding.
    let mut linxia = server.client_as(&county.linxia).await;
    assert!(unpaid(&mut linxia).await.is_empty());
    let denied = statement(&mut linxia, "dx-hh-m1").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_is_refused_as_reads_would_be_and_changes_nothing() {
    use pb::MonitoringCategory as M;
    let (_dir, server, mut client, county) = start().await;
    let refuse = |signer: Signer, body: B| {
        let (server, mut client) = (&server, client.clone());
        async move {
            let count = ledger_info(&mut client).await.record_count;
            let state = server.dump();
            let refusal = client.post(&signer, body).await.unwrap_err();
            assert_eq!(ledger_info(&mut client).await.record_count, count);
            assert!(server.dump() == state, "a refusal changed derived state");
            refusal
        }
    };
    // Linxia probing Dongxiang's household gets the answer it gets for a
    // household that does not exist.
    let theirs = refuse(
        county.linxia.clone(),
        monitor("dx-hh-1", M::Unstable, "临监测〔2026〕1号"),
    )
    .await;
    let none = refuse(
        county.linxia.clone(),
        monitor("dx-hh-none", M::Unstable, "临监测〔2026〕1号"),
    )
    .await;
    assert_eq!(
        (theirs.code(), theirs.message()),
        (none.code(), none.message())
    );
    let unspecified = refuse(
        county.dongxiang.clone(),
        monitor("dx-hh-1", M::Unspecified, "东监测〔2026〕1号"),
    )
    .await;
    assert_eq!(unspecified.code(), Code::InvalidArgument);
    assert!(
        unspecified.message().contains("category"),
        "{}",
        unspecified.message()
    );
    // Identified 120 days ago and never paid; clearing its risk "as of"
    // 100 days ago, recorded today, would hide that: refused.
    let identified = dated(
        &client,
        &county.dongxiang,
        &date(120),
        false,
        monitor("dx-hh-1", M::Unstable, "东监测〔2026〕1号"),
    );
    client.post_signed(identified).await.expect("identified");
    let dx = county.dongxiang.clone();
    let signed = dated(
        &client,
        &dx,
        &date(100),
        false,
        monitor("dx-hh-1", M::NotMonitored, "东监测〔2026〕2号"),
    );
    let count = ledger_info(&mut client).await.record_count;
    let state = server.dump();
    let refusal = client.post_signed(signed).await.unwrap_err();
    assert_eq!(refusal.code(), Code::InvalidArgument, "{refusal:?}");
    assert!(
        refusal.message().contains("risk is cleared on the day"),
        "{}",
        refusal.message()
    );
    assert_eq!(ledger_info(&mut client).await.record_count, count);
    assert!(server.dump() == state, "a refusal changed derived state");
    // Cleared today, it is recorded.
    ok(
        &mut client,
        &dx,
        monitor("dx-hh-1", M::NotMonitored, "东监测〔2026〕2号"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_rules_10_there_is_no_monitoring() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_under(dir.path(), Rules::V9).await;
    let mut client = server.client().await;
    let body = monitor(
        "dx-hh-0001",
        pb::MonitoringCategory::Unstable,
        "东监测〔2026〕1号",
    );
    let refusal = client.post(&server.root(), body).await.unwrap_err();
    assert_eq!(refusal.code(), Code::FailedPrecondition);
    assert!(
        refusal.message().contains("needs rules version 10"),
        "{}",
        refusal.message()
    );
    let rule = B::SetProgrammeRules(pb::SetProgrammeRules {
        programme_code: "2130599".into(),
        document_no: "财农〔2026〕40号".into(),
        monitored_only: true,
        ..Default::default()
    });
    let refusal = client.post(&server.root(), rule).await.unwrap_err();
    assert_eq!(refusal.code(), Code::FailedPrecondition, "{refusal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_programme_kept_for_monitored_households_finds_payments_to_others() {
    use pb::MonitoringCategory as M;
    let (_dir, _server, mut client, county) = start().await;
    let dx = county.dongxiang.clone();
    ok(
        &mut client,
        &dx,
        household_in("dx-hh-m1", "HH-622926-100", "622926100201"),
    )
    .await;
    ok(
        &mut client,
        &dx,
        monitor("dx-hh-m1", M::SuddenHardship, "东监测〔2026〕3号"),
    )
    .await;
    let rule = ok(
        &mut client,
        &county.root,
        B::SetProgrammeRules(pb::SetProgrammeRules {
            programme_code: CENTRAL_PROGRAMME.into(),
            document_no: "财农〔2026〕40号".into(),
            monitored_only: true,
            ..Default::default()
        }),
    )
    .await
    .seq;
    let pay_today = |household: &str, document: &str| {
        against(
            Some(county.quota_dongxiang),
            &[(county.s, 300_00)],
            pay("dx-xczx", household, 300_00, "2026-12", document),
        )
    };
    ok(
        &mut client,
        &dx,
        pay_today("dx-hh-m1", "东财农〔2026〕95号"),
    )
    .await;
    let outside = ok(&mut client, &dx, pay_today("dx-hh-2", "东财农〔2026〕96号"))
        .await
        .seq;
    let breaches: Vec<_> = client
        .query
        .compliance(pb::ComplianceRequest::default())
        .await
        .unwrap()
        .into_inner()
        .breaches
        .into_iter()
        .filter(|b| b.kind == "OUTSIDE_MONITORING")
        .map(|b| (b.account_id, b.seqs, b.rule_seq, b.amount_fen))
        .collect();
    // The payments before the rule took effect are not judged by it.
    assert_eq!(
        breaches,
        [("dx-hh-2".to_string(), vec![outside], rule, 300_00)]
    );
}
