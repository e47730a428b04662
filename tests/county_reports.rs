//! The auditors' reports over real gRPC on the county chain of
//! `county/mod.rs`: idle funds by age, anomalies, and the compliance report
//! under programme rules (rules 5).

mod common;
mod county;

use county::*;

// ---------------------------------------------------------------------------
// IdleFunds.

fn buckets(row: &pb::IdleFundsRow) -> [u64; 5] {
    [
        row.age_0_30_fen,
        row.age_30_90_fen,
        row.age_90_365_fen,
        row.age_365_730_fen,
        row.age_730_plus_fen,
    ]
}

fn rows_by_account(response: &pb::IdleFundsResponse) -> BTreeMap<String, pb::IdleFundsRow> {
    let mut out = BTreeMap::new();
    for row in &response.rows {
        let total: u64 = buckets(row).iter().sum();
        assert_eq!(
            total, row.balance_fen,
            "{}: the age buckets add up to the balance",
            row.account_id
        );
        assert!(row.idle_fen <= row.balance_fen);
        assert!(
            out.insert(row.account_id.clone(), row.clone()).is_none(),
            "{} twice",
            row.account_id
        );
    }
    out
}

fn idle_request(
    older_than_days: u32,
    level: &str,
    division_prefix: &str,
    programme_code: &str,
) -> pb::IdleFundsRequest {
    pb::IdleFundsRequest {
        older_than_days,
        level: level.into(),
        division_prefix: division_prefix.into(),
        programme_code: programme_code.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_funds_by_age_level_division_and_programme() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    // Fresh county money today, so that one account holds old and new money.
    ok(
        &mut client,
        &dongxiang,
        appropriation_of("dx-xczx", 1_000_00, COUNTY_PROGRAMME, "东财预〔2026〕1号"),
    )
    .await;
    let t = today();
    let all = idle(&mut client, idle_request(0, "", "", ""))
        .await
        .unwrap();
    assert_eq!(all.as_of_day, t);
    assert!(all.next_page_token.is_empty());
    let rows = rows_by_account(&all);
    let expected: BTreeMap<String, ([u64; 5], &str, i32)> = [
        (
            "mof-xczx",
            ([0, 0, 0, 0, CENTRAL - TO_PROVINCE], "central", t - 800),
        ),
        (
            "gs-xczx",
            (
                [0, 0, 0, TO_PROVINCE - TO_DONGXIANG - TO_LINXIA, 0],
                "province",
                t - 400,
            ),
        ),
        (
            "dx-xczx",
            (
                [
                    1_000_00,
                    0,
                    TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN),
                    0,
                    0,
                ],
                "county",
                t - 200,
            ),
        ),
        (
            "lx-xczx",
            (
                [0, 0, TO_LINXIA - LINXIA_CONSOLIDATED, 0, 0],
                "county",
                t - 200,
            ),
        ),
        ("lx-pool", ([LINXIA_CONSOLIDATED, 0, 0, 0, 0], "county", t)),
        (
            "dx-pool",
            ([0, CONSOLIDATED - ALLOCATED, 0, 0, 0], "county", t - 60),
        ),
        (
            "dx-proj-1",
            ([ALLOCATED - PAID_TOTAL, 0, 0, 0, 0], "county", t - 20),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "households are paid out, not idle"
    );
    for (account, (bucket, level, oldest)) in &expected {
        let row = &rows[account];
        assert_eq!(&buckets(row), bucket, "{account}");
        assert_eq!(row.level, *level, "{account}");
        assert_eq!(row.oldest_day, *oldest, "{account}");
        assert_eq!(
            row.idle_fen, row.balance_fen,
            "{account}: everything is at least 0 days old"
        );
    }
    assert_eq!(rows["dx-pool"].kind, pb::AccountKind::Pool as i32);
    assert_eq!(rows["dx-pool"].owner_org_id, "dx-czj");
    assert_eq!(rows["dx-pool"].division_code, "622926");

    // At least 100 days old: the upper levels and the counties' programme
    // accounts; Dongxiang's fresh 1,000.00 is not idle.
    let old = rows_by_account(
        &idle(&mut client, idle_request(100, "", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        old.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["dx-xczx", "gs-xczx", "lx-xczx", "mof-xczx"]
    );
    assert_eq!(
        old["dx-xczx"].balance_fen,
        TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN) + 1_000_00
    );
    assert_eq!(
        old["dx-xczx"].idle_fen,
        TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN)
    );
    assert_eq!(old["dx-xczx"].oldest_day, t - 200);
    assert_eq!(old["mof-xczx"].idle_fen, CENTRAL - TO_PROVINCE);

    let county_old = rows_by_account(
        &idle(&mut client, idle_request(100, "county", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        county_old.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["dx-xczx", "lx-xczx"]
    );
    let province = rows_by_account(
        &idle(&mut client, idle_request(0, "province", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        province.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["gs-xczx"]
    );
    let central = rows_by_account(
        &idle(&mut client, idle_request(0, "central", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        central.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["mof-xczx"]
    );
    let prefecture = idle(&mut client, idle_request(0, "prefecture", "", ""))
        .await
        .unwrap();
    assert!(
        prefecture.rows.is_empty(),
        "no prefecture holds money: {:?}",
        prefecture.rows
    );

    let dongxiang_rows = rows_by_account(
        &idle(&mut client, idle_request(0, "", "622926", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        dongxiang_rows
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        vec!["dx-pool", "dx-proj-1", "dx-xczx"]
    );

    // Only the county's own programme: its pooled 50,000.00 and today's 1,000.00.
    let own = rows_by_account(
        &idle(&mut client, idle_request(0, "", "", COUNTY_PROGRAMME))
            .await
            .unwrap(),
    );
    assert_eq!(
        own.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["dx-pool", "dx-xczx"]
    );
    assert_eq!(buckets(&own["dx-pool"]), [0, COUNTY_OWN, 0, 0, 0]);
    assert_eq!(buckets(&own["dx-xczx"]), [1_000_00, 0, 0, 0, 0]);
    let own_old = idle(&mut client, idle_request(100, "", "", COUNTY_PROGRAMME))
        .await
        .unwrap();
    assert!(own_old.rows.is_empty(), "{:?}", own_old.rows);

    // Pages of two add up to the whole answer.
    let mut paged = BTreeMap::new();
    let mut request = idle_request(0, "", "", "");
    request.page_size = 2;
    for _ in 0..20 {
        let page = idle(&mut client, request.clone()).await.unwrap();
        assert!(page.rows.len() <= 2);
        for row in page.rows {
            assert!(
                paged.insert(row.account_id.clone(), row).is_none(),
                "a row on two pages"
            );
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(paged, rows);

    assert_eq!(
        code_of(idle(&mut client, idle_request(0, "township", "", "")).await),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Anomalies.

type FindingKey = (String, String, Vec<u64>, u64);

fn finding_keys(findings: &[pb::Finding]) -> BTreeSet<FindingKey> {
    findings
        .iter()
        .map(|f| {
            (
                f.kind.clone(),
                f.account_id.clone(),
                f.seqs.clone(),
                f.amount_fen,
            )
        })
        .collect()
}

fn findings_of<'f>(findings: &'f [pb::Finding], kind: &str) -> Vec<&'f pb::Finding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

/// The county chain plus one case of every finding about households and projects.
struct Findings {
    duplicate: u64,
    ineligible_since: u64,
    other_county_payment: u64,
    unannounced: u64,
    early: u64,
}

async fn make_findings(client: &mut Client, county: &County) -> Findings {
    let dongxiang = county.dongxiang.clone();
    // Paid twice for the same programme and period.
    let duplicate = ok(
        client,
        &dongxiang,
        county.quota(pay(
            "dx-proj-1",
            "dx-hh-1",
            PAID[0],
            PERIOD,
            "东财农〔2026〕50号",
        )),
    )
    .await
    .seq;
    // Another period is not a duplicate.
    ok(
        client,
        &dongxiang,
        county.quota(pay(
            "dx-proj-1",
            "dx-hh-1",
            1_000_00,
            "2026-01",
            "东财农〔2026〕51号",
        )),
    )
    .await;
    // Found ineligible from ten days ago: the payment five days ago was wrong.
    let ineligible_since = post_dated(
        client,
        &dongxiang,
        &date(10),
        false,
        set_status(
            "dx-hh-2",
            pb::HouseholdStatus::Ineligible,
            "东乡核查〔2026〕2号",
        ),
    )
    .await
    .seq;
    // A household of the neighbouring county (622927) registered and paid by 东乡县.
    ok(
        client,
        &dongxiang,
        household_in("dx-hh-9", "HH-622927-0009", "622927100201"),
    )
    .await;
    let other_county_payment = ok(
        client,
        &dongxiang,
        county.quota(pay(
            "dx-proj-1",
            "dx-hh-9",
            1_000_00,
            PERIOD,
            "东财农〔2026〕52号",
        )),
    )
    .await
    .seq;
    // A project never announced, and one announced only after it was funded.
    ok(
        client,
        &dongxiang,
        register_project("dx-proj-2", "622926100", 10_000_00, &["新建温棚 10 座"]),
    )
    .await;
    let unannounced = ok(
        client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-2", 5_000_00, "东财农〔2026〕53号"),
    )
    .await
    .seq;
    ok(
        client,
        &dongxiang,
        register_project("dx-proj-3", "622926100", 10_000_00, &["养殖合作社 1 个"]),
    )
    .await;
    let early = ok(
        client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-3", 2_000_00, "东财农〔2026〕54号"),
    )
    .await
    .seq;
    ok(
        client,
        &dongxiang,
        announce("dx-proj-3", "东乡公示〔2026〕3号"),
    )
    .await;
    Findings {
        duplicate,
        ineligible_since,
        other_county_payment,
        unannounced,
        early,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_name_the_records_behind_each_finding() {
    let (_dir, server, mut client, county) = start().await;
    let clean = anomalies(
        &mut client,
        pb::AnomaliesRequest {
            idle_older_than_days: 1_000,
            ..Default::default()
        },
    )
    .await;
    assert!(
        clean.findings.is_empty(),
        "the plain chain has no findings: {:?}",
        clean.findings
    );

    let f = make_findings(&mut client, &county).await;
    let answer = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    let all = &answer.findings;
    assert!(answer.next_page_token.is_empty());

    let duplicates = findings_of(all, "DUPLICATE_PAYMENT");
    assert_eq!(duplicates.len(), 1, "{duplicates:?}");
    assert_eq!(duplicates[0].account_id, "dx-hh-1");
    assert_eq!(duplicates[0].seqs, vec![county.d[0], f.duplicate]);
    assert_eq!(duplicates[0].amount_fen, PAID[0]);
    assert!(!duplicates[0].detail.is_empty());

    let ineligible = findings_of(all, "INELIGIBLE_PAYMENT");
    assert_eq!(ineligible.len(), 1, "{ineligible:?}");
    assert_eq!(ineligible[0].account_id, "dx-hh-2");
    assert_eq!(ineligible[0].seqs, vec![county.d[1]]);
    assert_eq!(ineligible[0].amount_fen, PAID[1]);
    let two = statement(&mut client, "dx-hh-2").await.unwrap();
    assert_eq!(two.status_today, pb::HouseholdStatus::Ineligible as i32);
    assert_eq!(two.statuses[0].seq, f.ineligible_since);
    assert_eq!(two.statuses[0].effective_day, today() - 10);

    let other = findings_of(all, "OTHER_COUNTY_HOUSEHOLD");
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0].account_id, "dx-hh-9");
    assert_eq!(other[0].seqs, vec![f.other_county_payment]);
    assert_eq!(other[0].amount_fen, 1_000_00);

    let unannounced = findings_of(all, "UNANNOUNCED_ALLOCATION");
    assert_eq!(
        unannounced
            .iter()
            .map(|u| (u.account_id.as_str(), u.seqs.clone(), u.amount_fen))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            ("dx-proj-2", vec![f.unannounced], 5_000_00),
            ("dx-proj-3", vec![f.early], 2_000_00)
        ]),
        "dx-proj-1 was announced before it was funded"
    );

    // By default the two buckets audit reports state apart: the province
    // has held money 400 days (one to two years), the centre 800 (two
    // years or more); each named by the record that brought the money.
    let idle_of = |kind| {
        findings_of(all, kind)
            .iter()
            .map(|i| (i.account_id.clone(), i.seqs.clone(), i.amount_fen))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        idle_of("IDLE_OVER_1_YEAR"),
        vec![(
            "gs-xczx".to_string(),
            vec![county.t1],
            TO_PROVINCE - TO_DONGXIANG - TO_LINXIA
        )]
    );
    assert_eq!(
        idle_of("IDLE_OVER_2_YEARS"),
        vec![(
            "mof-xczx".to_string(),
            vec![county.s],
            CENTRAL - TO_PROVINCE
        )]
    );
    assert!(
        findings_of(all, "IDLE_FUNDS").is_empty(),
        "asked for no threshold"
    );
    let idle_100 = anomalies(
        &mut client,
        pb::AnomaliesRequest {
            idle_older_than_days: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        findings_of(&idle_100.findings, "IDLE_FUNDS")
            .iter()
            .map(|i| i.account_id.as_str())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["dx-xczx", "gs-xczx", "lx-xczx", "mof-xczx"])
    );

    // Nothing about the households and projects that were done right.
    for finding in all {
        assert!(
            !["dx-hh-3", "dx-proj-1", "lx-hh-1", "lx-proj-1"]
                .contains(&finding.account_id.as_str()),
            "unexpected finding {finding:?}"
        );
    }
    assert_eq!(all.len(), 7, "{all:?}");

    // Reversing the duplicate payment clears that finding.
    let dongxiang = county.dongxiang.clone();
    ok(
        &mut client,
        &dongxiang,
        reverse(f.duplicate, "东财农〔2026〕60号"),
    )
    .await;
    let after = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    assert!(findings_of(&after.findings, "DUPLICATE_PAYMENT").is_empty());
    assert_eq!(after.findings.len(), 6);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomaly_pages_add_up_to_the_whole_answer() {
    let (_dir, server, mut client, county) = start().await;
    make_findings(&mut client, &county).await;
    let whole = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    assert_eq!(whole.findings.len(), 7);
    let mut paged = Vec::new();
    let mut request = pb::AnomaliesRequest {
        page_size: 1,
        ..Default::default()
    };
    let mut pages = 0;
    loop {
        let page = anomalies(&mut client, request.clone()).await;
        paged.extend(page.findings);
        pages += 1;
        if page.next_page_token.is_empty() || pages > 30 {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert!(
        pages <= 30,
        "paging did not end after 30 pages of 1 ({} findings so far)",
        paged.len()
    );
    assert_eq!(
        paged.len(),
        whole.findings.len(),
        "each finding exactly once: {:?}",
        paged
            .iter()
            .map(|f| (&f.kind, &f.account_id))
            .collect::<Vec<_>>()
    );
    assert_eq!(finding_keys(&paged), finding_keys(&whole.findings));
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Programme rules and the compliance report (rules 5).

fn programme_rules(household_max_fen: u64, share: u32, idle_days: u32, announce: bool) -> B {
    B::SetProgrammeRules(pb::SetProgrammeRules {
        quota_issue_days_max: 0,
        cash_follow_days_max: 0,
        monitored_only: false,
        programme_code: CENTRAL_PROGRAMME.into(),
        document_no: "财农〔2024〕3号".into(),
        household_max_fen,
        person_max_fen: 0,
        county_share_min_percent: share,
        idle_days_max: idle_days,
        announcement_required: announce,
    })
}

fn evaluation(project: &str, score: u32, targets_met: &[bool]) -> B {
    B::EvaluateProject(pb::EvaluateProject {
        account_id: project.into(),
        document_no: "东财绩〔2026〕1号".into(),
        score,
        targets_met: targets_met.to_vec(),
    })
}

async fn compliance_of(client: &mut Client, mut request: pb::ComplianceRequest) -> Vec<pb::Breach> {
    let mut breaches = Vec::new();
    loop {
        let page = client
            .query
            .compliance(request.clone())
            .await
            .expect("compliance")
            .into_inner();
        assert_eq!(page.as_of_day, today());
        breaches.extend(page.breaches);
        if page.next_page_token.is_empty() {
            return breaches;
        }
        request.page_token = page.next_page_token;
    }
}

/// (kind, account, records, rule record, amount) of each breach, sorted.
fn breach_rows(breaches: &[pb::Breach]) -> Vec<(String, String, Vec<u64>, u64, u64)> {
    let mut rows: Vec<_> = breaches
        .iter()
        .map(|b| {
            (
                b.kind.clone(),
                b.account_id.clone(),
                b.seqs.clone(),
                b.rule_seq,
                b.amount_fen,
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compliance_report_names_each_breach_of_the_rules_in_force() {
    let (_dir, server, mut client, county) = start().await;
    let root = county.root.clone();
    let dongxiang = county.dongxiang.clone();
    // The rules, in force since long before any of the money moved.
    let rules = post_dated(
        &mut client,
        &root,
        &date(900),
        false,
        programme_rules(15_000_00, 80, 100, true),
    )
    .await
    .seq;
    // A project never announced gets money; the announced one fails its
    // evaluation, then gets more.
    ok(
        &mut client,
        &dongxiang,
        register_project("dx-proj-2", "622926100", 50_000_00, &["修建水窖 10 口"]),
    )
    .await;
    let unannounced = ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-2", 5_000_00, "东财农〔2026〕60号"),
    )
    .await
    .seq;
    let failed = ok(
        &mut client,
        &dongxiang,
        evaluation("dx-proj-1", 45, &[true, false]),
    )
    .await
    .seq;
    let after = ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", 10_000_00, "东财农〔2026〕61号"),
    )
    .await
    .seq;

    let held = central_held();
    let all = compliance_of(&mut client, pb::ComplianceRequest::default()).await;
    let row = |kind: &str, account: &str, seqs: Vec<u64>, rule: u64, amount: u64| {
        (kind.to_string(), account.to_string(), seqs, rule, amount)
    };
    let idle = |account: &str, arrived: u64| {
        row(
            "IDLE_BEYOND_RULE",
            account,
            vec![arrived],
            rules,
            held[account],
        )
    };
    let mut want = vec![
        row(
            "ABOVE_STANDARD",
            HOUSEHOLDS[1],
            vec![county.d[1]],
            rules,
            PAID[1] - 15_000_00,
        ),
        row(
            "ABOVE_STANDARD",
            HOUSEHOLDS[2],
            vec![county.d[2]],
            rules,
            PAID[2] - 15_000_00,
        ),
        // 40% of the central money is at county level or below: 600,000
        // is still at the ministry and the province.
        row(
            "BELOW_COUNTY_SHARE",
            "",
            vec![county.s],
            rules,
            800_000_00 - 400_000_00,
        ),
        row(
            "FAILED_EVALUATION_FUNDED",
            "dx-proj-1",
            vec![after],
            failed,
            10_000_00,
        ),
        row(
            "UNANNOUNCED_PAYMENT",
            "dx-proj-2",
            vec![unannounced],
            rules,
            5_000_00,
        ),
        idle("mof-xczx", county.s),
        idle("gs-xczx", county.t1),
        idle("dx-xczx", county.t2),
        idle("lx-xczx", county.t3),
        // Quota neither issued down nor paid longer than the idle rule:
        // what the centre and the province kept, what the counties have
        // not paid (东乡 paid the three households).
        row(
            "QUOTA_IDLE",
            "",
            vec![county.quota_central],
            rules,
            CENTRAL - QUOTA_PROVINCE,
        ),
        row(
            "QUOTA_IDLE",
            "",
            vec![county.quota_province],
            rules,
            QUOTA_PROVINCE - QUOTA_DONGXIANG - QUOTA_LINXIA,
        ),
        row(
            "QUOTA_IDLE",
            "",
            vec![county.quota_dongxiang],
            rules,
            QUOTA_DONGXIANG - PAID_TOTAL,
        ),
        row(
            "QUOTA_IDLE",
            "",
            vec![county.quota_linxia],
            rules,
            QUOTA_LINXIA,
        ),
    ];
    want.sort();
    assert_eq!(breach_rows(&all), want);
    assert!(all.iter().all(|b| b.programme_code == CENTRAL_PROGRAMME));

    // Pages of one breach add up to the whole report.
    let paged = compliance_of(
        &mut client,
        pb::ComplianceRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(breach_rows(&paged), want);

    // Filters.
    let only = |request: pb::ComplianceRequest| {
        let mut client = client.clone();
        async move { breach_rows(&compliance_of(&mut client, request).await) }
    };
    let kinds_at = |rows: Vec<(String, String, Vec<u64>, u64, u64)>| -> Vec<(String, String)> {
        rows.into_iter().map(|r| (r.0, r.1)).collect()
    };
    assert_eq!(
        kinds_at(
            only(pb::ComplianceRequest {
                division_prefix: "622921".into(),
                ..Default::default()
            })
            .await
        ),
        vec![
            ("IDLE_BEYOND_RULE".to_string(), "lx-xczx".to_string()),
            ("QUOTA_IDLE".to_string(), String::new())
        ]
    );
    assert_eq!(
        kinds_at(
            only(pb::ComplianceRequest {
                level: "province".into(),
                ..Default::default()
            })
            .await
        ),
        vec![
            ("IDLE_BEYOND_RULE".to_string(), "gs-xczx".to_string()),
            ("QUOTA_IDLE".to_string(), String::new())
        ]
    );
    assert!(only(pb::ComplianceRequest {
        programme_code: COUNTY_PROGRAMME.into(),
        ..Default::default()
    })
    .await
    .is_empty());
    let december = only(pb::ComplianceRequest {
        period: PERIOD.into(),
        ..Default::default()
    })
    .await;
    assert!(
        december.iter().filter(|r| r.0 == "ABOVE_STANDARD").count() == 2,
        "{december:?}"
    );
    let november = only(pb::ComplianceRequest {
        period: "2025-11".into(),
        ..Default::default()
    })
    .await;
    assert!(
        november.iter().all(|r| r.0 != "ABOVE_STANDARD"),
        "{november:?}"
    );
    let bad = client
        .query
        .compliance(pb::ComplianceRequest {
            level: "village".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // A county reads the breaches at its own accounts only, and every
    // quota breach (budgets are public).
    let mut linxia = server.client_as(&county.linxia).await;
    let mut quota_idle = vec![("QUOTA_IDLE".to_string(), String::new()); 4];
    quota_idle.insert(0, ("IDLE_BEYOND_RULE".to_string(), "lx-xczx".to_string()));
    assert_eq!(
        kinds_at(breach_rows(
            &compliance_of(&mut linxia, pb::ComplianceRequest::default()).await
        )),
        quota_idle
    );

    // New rules from today: payments are judged by the rules in force on
    // their value dates (the households' five days ago, under the first
    // rules), money held now and today's allocation by today's.
    ok(&mut client, &root, programme_rules(40_000_00, 0, 0, false)).await;
    let now = compliance_of(&mut client, pb::ComplianceRequest::default()).await;
    let kinds: BTreeSet<String> = now.iter().map(|b| b.kind.clone()).collect();
    assert_eq!(
        kinds,
        ["ABOVE_STANDARD", "FAILED_EVALUATION_FUNDED"]
            .map(String::from)
            .into_iter()
            .collect()
    );

    // Who may set rules and evaluate, and what they must say.
    let requester = client.clone();
    let signed = |signer: &Signer, body: B| signer.sign(&requester.request(body));
    let cases = vec![
        refusal(
            "rules set by a finance bureau",
            signed(&county.province, programme_rules(1, 0, 0, false)),
            Code::PermissionDenied,
            "key_id",
            "ADMINISTRATOR",
        ),
        refusal(
            "a share above 100%",
            signed(&root, programme_rules(1, 101, 0, false)),
            Code::InvalidArgument,
            "set_programme_rules.county_share_min_percent",
            "0 to 100",
        ),
        refusal(
            "an evaluation from another county",
            signed(&county.linxia, evaluation("dx-proj-1", 90, &[true, true])),
            Code::PermissionDenied,
            "evaluate_project.account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "an evaluation missing a target",
            signed(&dongxiang, evaluation("dx-proj-1", 90, &[true])),
            Code::InvalidArgument,
            "evaluate_project.targets_met",
            "2 performance targets",
        ),
        refusal(
            "a score above 100",
            signed(&dongxiang, evaluation("dx-proj-1", 101, &[true, true])),
            Code::InvalidArgument,
            "evaluate_project.score",
            "0 to 100",
        ),
    ];
    check_refusals(&server, &mut client, cases).await;
    replays_from_genesis(&server);
    // The province evaluates a county's project: its division contains it.
    ok(
        &mut client,
        &county.province,
        evaluation("dx-proj-1", 85, &[true, true]),
    )
    .await;
}

/// A library project of `category`, as `register_project` makes one.
fn project_of(id: &str, category: &str) -> B {
    let mut body = register_project(id, "622926100", 50_000_00, &["受益户增收"]);
    if let B::RegisterProject(p) = &mut body {
        p.category = category.into();
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn industry_money_split_evenly_and_payments_before_the_notice_are_found() {
    let (_dir, _server, mut client, county) = start().await;
    let dx = county.dongxiang.clone();
    for (project, category) in [("dx-cy-1", "产业发展"), ("dx-jc-1", "基础设施")] {
        ok(&mut client, &dx, project_of(project, category)).await;
    }
    // dx-cy-1 pays a household before its notice; dx-jc-1 after its own.
    ok(&mut client, &dx, announce("dx-jc-1", "东乡公示〔2026〕8号")).await;
    for project in ["dx-cy-1", "dx-jc-1"] {
        ok(
            &mut client,
            &dx,
            allocation("dx-pool", project, 30_000_00, A_DOC),
        )
        .await;
    }
    // Three villages of 12 households each.
    let villages = ["622926100201", "622926100202", "622926100203"];
    for (v, village) in villages.iter().enumerate() {
        for h in 0..12 {
            let id = format!("dx-v{v}-{h:02}");
            ok(
                &mut client,
                &dx,
                household_in(&id, &format!("HH-V{v}-{h:02}"), village),
            )
            .await;
        }
    }
    let early = ok(
        &mut client,
        &dx,
        county.quota(pay(
            "dx-cy-1",
            "dx-v0-00",
            800_00,
            "2026-03",
            "东财农〔2026〕70号",
        )),
    )
    .await
    .seq;
    ok(&mut client, &dx, announce("dx-cy-1", "东乡公示〔2026〕9号")).await;
    let mut evenly = vec![early];
    for h in 1..12 {
        // Village 0: all twelve the same ¥800 (the first before the notice).
        let seq = ok(
            &mut client,
            &dx,
            county.quota(pay(
                "dx-cy-1",
                &format!("dx-v0-{h:02}"),
                800_00,
                "2026-03",
                "东财农〔2026〕71号",
            )),
        )
        .await
        .seq;
        evenly.push(seq);
    }
    for h in 0..12 {
        // Village 1: ten the same, two by their production (10 of 12 is
        // below 90%).
        let amount = if h < 10 { 800_00 } else { 1_250_00 };
        ok(
            &mut client,
            &dx,
            county.quota(pay(
                "dx-cy-1",
                &format!("dx-v1-{h:02}"),
                amount,
                "2026-03",
                "东财农〔2026〕71号",
            )),
        )
        .await;
        // Village 2: the same to all, but from infrastructure money (公益岗位
        // wages, say): not industry money split evenly. The pool gave the
        // project 东乡's own money, paid against 东乡's own quota.
        let mut wages = pay(
            "dx-jc-1",
            &format!("dx-v2-{h:02}"),
            800_00,
            "2026-03",
            "东财农〔2026〕72号",
        );
        if let B::Disbursement(d) = &mut wages {
            d.programme_code = COUNTY_PROGRAMME.into();
        }
        ok(
            &mut client,
            &dx,
            against(Some(county.quota_county_own), &[], wages),
        )
        .await;
    }

    let answer = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    let split = findings_of(&answer.findings, "EQUAL_SPLIT");
    assert_eq!(split.len(), 1, "{split:?}");
    assert_eq!(split[0].account_id, "dx-cy-1");
    assert_eq!(split[0].seqs, evenly);
    assert_eq!(split[0].amount_fen, 12 * 800_00);
    assert!(split[0].detail.contains(villages[0]), "{}", split[0].detail);
    assert!(split[0].detail.contains("2026-03"), "{}", split[0].detail);

    let before = findings_of(&answer.findings, "PAID_BEFORE_NOTICE");
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        (
            before[0].account_id.as_str(),
            before[0].seqs.clone(),
            before[0].amount_fen
        ),
        ("dx-cy-1", vec![early], 800_00)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programme_money_sent_into_another_programme_is_found_diverted() {
    let (_dir, _server, mut client, county) = start().await;
    let dx = county.dongxiang.clone();
    let mut other = open_account("dx-cyfz", pb::AccountKind::Programme, "东乡县产业发展资金");
    if let B::OpenAccount(o) = &mut other {
        o.programme_code = COUNTY_PROGRAMME.into();
    }
    ok(&mut client, &dx, other).await;
    let own = ok(
        &mut client,
        &dx,
        appropriation_of("dx-xczx", 2_000_00, COUNTY_PROGRAMME, "东财预〔2026〕6号"),
    )
    .await
    .seq;
    let earmarked = |source_seq, amount_fen| {
        let mut body = transfer("dx-xczx", "dx-cyfz", amount_fen, "东财农〔2026〕80号");
        if let B::Transfer(t) = &mut body {
            t.sources = vec![pb::SourceAmount {
                source_seq,
                amount_fen,
            }];
        }
        body
    };
    // The county's own money of that programme: no finding.
    ok(&mut client, &dx, earmarked(own, 2_000_00)).await;
    let clean = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    assert!(findings_of(&clean.findings, "DIVERTED").is_empty());
    // Central 衔接资金 (programme 2130599) moved into it: diverted.
    let moved = ok(&mut client, &dx, earmarked(county.s, 1_000_00))
        .await
        .seq;
    let answer = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    let diverted = findings_of(&answer.findings, "DIVERTED");
    assert_eq!(diverted.len(), 1, "{diverted:?}");
    assert_eq!(
        (
            diverted[0].account_id.as_str(),
            diverted[0].seqs.clone(),
            diverted[0].amount_fen
        ),
        ("dx-cyfz", vec![moved], 1_000_00)
    );
    assert!(
        diverted[0].detail.contains(CENTRAL_PROGRAMME),
        "{}",
        diverted[0].detail
    );
    // The county's own programme money moved out of its programme account
    // into an account kept for no programme: diverted too.
    ok(
        &mut client,
        &dx,
        open_account("dx-general", pb::AccountKind::Programme, "东乡县其他资金"),
    )
    .await;
    let mut out = transfer("dx-cyfz", "dx-general", 500_00, "东财〔2026〕81号");
    if let B::Transfer(t) = &mut out {
        t.sources = vec![pb::SourceAmount {
            source_seq: own,
            amount_fen: 500_00,
        }];
    }
    let out = ok(&mut client, &dx, out).await.seq;
    let answer = anomalies(&mut client, pb::AnomaliesRequest::default()).await;
    let mut diverted: Vec<_> = findings_of(&answer.findings, "DIVERTED")
        .iter()
        .map(|f| (f.account_id.clone(), f.seqs.clone(), f.amount_fen))
        .collect();
    diverted.sort();
    assert_eq!(
        diverted,
        [
            ("dx-cyfz".to_string(), vec![moved], 1_000_00),
            ("dx-general".to_string(), vec![out], 500_00)
        ]
    );
}
