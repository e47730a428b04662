//! Following the money over real gRPC (docs/design.md §9): a county chain from a
//! central appropriation through the province, the county's programme
//! account, its consolidated pool and a library project down to households,
//! with imported records carrying past value dates so that money has ages.
//! Every query the auditors use, and every refusal of the new record kinds
//! (each checked to change nothing).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fundtrail_core::clock::ManualClock;

use common::*;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_api::pb::trace_backward_request::Target;
use fundtrail_client::{Client, Signer};
use fundtrail_core::dates::{day_of_ms, format_date, Day};
use tonic::Code;
use tonic_types::StatusExt;

const CENTRAL: u64 = 1_000_000_00;
const TO_PROVINCE: u64 = 600_000_00;
const TO_DONGXIANG: u64 = 300_000_00;
const TO_LINXIA: u64 = 100_000_00;
/// Dongxiang's own budget money, appropriated into its programme account.
const COUNTY_OWN: u64 = 50_000_00;
const CONSOLIDATED: u64 = 200_000_00;
const LINXIA_CONSOLIDATED: u64 = 50_000_00;
const BUDGET: u64 = 150_000_00;
const ALLOCATED: u64 = 120_000_00;
const PAID: [u64; 3] = [10_000_00, 20_000_00, 30_000_00];
const PAID_TOTAL: u64 = 60_000_00;

const CENTRAL_PROGRAMME: &str = "2130599";
const COUNTY_PROGRAMME: &str = "2130504";
const PERIOD: &str = "2025-12";

const S_DOC: &str = "财农〔2024〕12号";
const T1_DOC: &str = "财农〔2025〕20号";
const S2_DOC: &str = "东财预〔2025〕5号";
const T2_DOC: &str = "甘财农〔2025〕7号";
const T3_DOC: &str = "甘财农〔2025〕8号";
const C_DOC: &str = "东政办〔2025〕9号";
const LC_DOC: &str = "临政办〔2026〕2号";
const ANNOUNCE_DOC: &str = "东乡公示〔2025〕1号";
const A_DOC: &str = "东财农〔2025〕30号";
const D_DOCS: [&str; 3] = [
    "东财农〔2025〕31号",
    "东财农〔2025〕32号",
    "东财农〔2025〕33号",
];

const HOUSEHOLDS: [&str; 3] = ["dx-hh-1", "dx-hh-2", "dx-hh-3"];

fn today() -> Day {
    day_of_ms(fundtrail_client::now_ms())
}

/// "YYYY-MM-DD" of `days_ago` days before today (China Standard Time).
fn date(days_ago: i32) -> String {
    format_date(today() - days_ago)
}

// ---------------------------------------------------------------------------
// Request bodies.

fn appropriation_of(account: &str, amount_fen: u64, programme: &str, document: &str) -> B {
    B::Appropriation(pb::Appropriation {
        account_id: account.into(),
        amount_fen,
        programme_code: programme.into(),
        fiscal_year: 2025,
        document_no: document.into(),
        purpose: "衔接推进乡村振兴".into(),
        memo: String::new(),
    })
}

fn consolidation(from: &str, pool: &str, amount_fen: u64, plan: &str) -> B {
    B::Consolidation(pb::Consolidation {
        from_account_id: from.into(),
        pool_account_id: pool.into(),
        amount_fen,
        sources: Vec::new(),
        plan_document_no: plan.into(),
        memo: String::new(),
    })
}

fn register_project(id: &str, location: &str, budget_fen: u64, targets: &[&str]) -> B {
    B::RegisterProject(pb::RegisterProject {
        account_id: id.into(),
        name: format!("{id} 产业发展项目"),
        category: "产业发展".into(),
        location_code: location.into(),
        budget_fen,
        performance_targets: targets.iter().map(|t| t.to_string()).collect(),
        responsible_unit: "县农业农村局".into(),
        fiscal_year: 2025,
    })
}

fn announce(id: &str, document: &str) -> B {
    B::AnnounceProject(pb::AnnounceProject {
        account_id: id.into(),
        document_no: document.into(),
        memo: String::new(),
    })
}

fn allocation(pool: &str, project: &str, amount_fen: u64, document: &str) -> B {
    B::Allocation(pb::Allocation {
        pool_account_id: pool.into(),
        project_account_id: project.into(),
        amount_fen,
        sources: Vec::new(),
        document_no: document.into(),
        memo: String::new(),
    })
}

fn household_in(id: &str, registry_ref: &str, village: &str) -> B {
    B::RegisterHousehold(pb::RegisterHousehold {
        account_id: id.into(),
        household_ref: registry_ref.into(),
        village_code: village.into(),
        basis: pb::SubsidyBasis::PerHousehold as i32,
        members: 4,
    })
}

fn pay(from: &str, household: &str, amount_fen: u64, period: &str, document: &str) -> B {
    B::Disbursement(pb::Disbursement {
        from_account_id: from.into(),
        household_account_id: household.into(),
        amount_fen,
        sources: Vec::new(),
        programme_code: CENTRAL_PROGRAMME.into(),
        period: period.into(),
        document_no: document.into(),
        memo: String::new(),
    })
}

fn set_status(id: &str, status: pb::HouseholdStatus, document: &str) -> B {
    B::SetHouseholdStatus(pb::SetHouseholdStatus {
        account_id: id.into(),
        status: status as i32,
        document_no: document.into(),
        reason: "入户核查".into(),
    })
}

fn give_back(from: &str, to: &str, amount_fen: u64, kind: pb::ReturnKind, reason: &str) -> B {
    B::Return(pb::Return {
        from_account_id: from.into(),
        to_account_id: to.into(),
        amount_fen,
        sources: Vec::new(),
        kind: kind as i32,
        document_no: "东财农〔2026〕40号".into(),
        reason: reason.into(),
        ..Default::default()
    })
}

fn reverse(target_seq: u64, document: &str) -> B {
    B::Reversal(pb::Reversal {
        target_seq,
        document_no: document.into(),
        reason: "录入错误".into(),
    })
}

// ---------------------------------------------------------------------------
// Posting.

/// A request carrying a business date, signed now.
fn dated(
    client: &Client,
    signer: &Signer,
    value_date: &str,
    imported: bool,
    body: B,
) -> pb::SignedRequest {
    let mut request = client.request(body);
    request.value_date = value_date.to_string();
    request.imported = imported;
    signer.sign(&request)
}

async fn post_dated(
    client: &mut Client,
    signer: &Signer,
    value_date: &str,
    imported: bool,
    body: B,
) -> pb::PostResponse {
    let what = format!("{body:?}");
    let signed = dated(client, signer, value_date, imported, body);
    match client.post_signed(signed).await {
        Ok(response) => response,
        Err(status) => panic!("post refused: {status:?}\nrequest: {what}"),
    }
}

/// Posts a record imported from an earlier system, dated `days_ago`.
async fn imported(client: &mut Client, signer: &Signer, days_ago: i32, body: B) -> u64 {
    post_dated(client, signer, &date(days_ago), true, body)
        .await
        .seq
}

// ---------------------------------------------------------------------------
// The county chain.

/// 财政部 → 甘肃省财政厅 → 东乡县 (and 临夏县) → 东乡县 pool → project →
/// households. Ages: appropriation 800 days ago, to the province 400, to
/// the counties 200, consolidated 60, allocated 20, paid 5.
struct County {
    root: Signer,
    province: Signer,
    dongxiang: Signer,
    linxia: Signer,
    /// The central appropriation (source S).
    s: u64,
    /// Dongxiang's own appropriation into its programme account (source S2).
    s2: u64,
    t1: u64,
    t2: u64,
    t3: u64,
    /// Linxia's consolidation (today).
    lc: u64,
    c: u64,
    a: u64,
    d: [u64; 3],
    d_commit_ms: [i64; 3],
    /// The record that opened dx-xczx.
    dx_xczx_opened: u64,
}

async fn build_county(client: &mut Client, root: Signer, clock: &ManualClock) -> County {
    use pb::AccountKind as K;
    use pb::OrgRole as R;
    let province = new_signer();
    let dongxiang = new_signer();
    let linxia = new_signer();
    ok(
        client,
        &root,
        open_account("mof-xczx", K::Programme, "中央财政衔接推进乡村振兴补助资金"),
    )
    .await;
    // History comes from an earlier system: each importing org needs an
    // open import window (rules 6), declared by the root org.
    let until = format_date(today() + 300);
    ok(client, &root, import_window("mof", &until)).await;
    let s = imported(
        client,
        &root,
        800,
        appropriation_of("mof-xczx", CENTRAL, CENTRAL_PROGRAMME, S_DOC),
    )
    .await;
    ok(
        client,
        &root,
        register_org("gs-czt", "甘肃省财政厅", R::Finance, "620000", &province),
    )
    .await;
    ok(
        client,
        &province,
        register_org(
            "dx-czj",
            "东乡族自治县财政局",
            R::Finance,
            "622926",
            &dongxiang,
        ),
    )
    .await;
    ok(
        client,
        &province,
        register_org("lx-czj", "临夏县财政局", R::Finance, "622921", &linxia),
    )
    .await;
    for org in ["gs-czt", "dx-czj", "lx-czj"] {
        ok(client, &root, import_window(org, &until)).await;
    }
    ok(
        client,
        &province,
        open_account("gs-xczx", K::Programme, "甘肃省衔接资金"),
    )
    .await;
    let dx_xczx_opened = ok(
        client,
        &dongxiang,
        open_account("dx-xczx", K::Programme, "东乡县衔接资金"),
    )
    .await
    .seq;
    ok(
        client,
        &dongxiang,
        open_account("dx-pool", K::Pool, "东乡县统筹整合资金"),
    )
    .await;
    ok(
        client,
        &linxia,
        open_account("lx-xczx", K::Programme, "临夏县衔接资金"),
    )
    .await;
    ok(
        client,
        &linxia,
        open_account("lx-pool", K::Pool, "临夏县统筹整合资金"),
    )
    .await;
    let t1 = imported(
        client,
        &root,
        400,
        transfer("mof-xczx", "gs-xczx", TO_PROVINCE, T1_DOC),
    )
    .await;
    let s2 = imported(
        client,
        &dongxiang,
        300,
        appropriation_of("dx-xczx", COUNTY_OWN, COUNTY_PROGRAMME, S2_DOC),
    )
    .await;
    let t2 = imported(
        client,
        &province,
        200,
        transfer("gs-xczx", "dx-xczx", TO_DONGXIANG, T2_DOC),
    )
    .await;
    let t3 = imported(
        client,
        &province,
        200,
        transfer("gs-xczx", "lx-xczx", TO_LINXIA, T3_DOC),
    )
    .await;
    let lc = ok(
        client,
        &linxia,
        consolidation("lx-xczx", "lx-pool", LINXIA_CONSOLIDATED, LC_DOC),
    )
    .await
    .seq;
    // Oldest first: all of S2 (300 days old), then 150,000 of S (200 days).
    let c = imported(
        client,
        &dongxiang,
        60,
        consolidation("dx-xczx", "dx-pool", CONSOLIDATED, C_DOC),
    )
    .await;
    ok(
        client,
        &dongxiang,
        register_project(
            "dx-proj-1",
            "622926100",
            BUDGET,
            &["带动脱贫户 3 户增收", "项目竣工验收合格率 100%"],
        ),
    )
    .await;
    imported(client, &dongxiang, 30, announce("dx-proj-1", ANNOUNCE_DOC)).await;
    let a = imported(
        client,
        &dongxiang,
        20,
        allocation("dx-pool", "dx-proj-1", ALLOCATED, A_DOC),
    )
    .await;
    for (i, id) in HOUSEHOLDS.iter().enumerate() {
        ok(
            client,
            &dongxiang,
            household_in(
                id,
                &format!("HH-622926-000{}", i + 1),
                &format!("62292610020{}", i + 1),
            ),
        )
        .await;
    }
    ok(
        client,
        &linxia,
        register_project("lx-proj-1", "622921100", BUDGET, &["修建产业路 2 公里"]),
    )
    .await;
    ok(
        client,
        &linxia,
        household_in("lx-hh-1", "HH-622921-0001", "622921100201"),
    )
    .await;
    let mut d = [0; 3];
    let mut d_commit_ms = [0; 3];
    for (i, household) in HOUSEHOLDS.iter().enumerate() {
        // Apart in time, so that a commit-time range can pick one out.
        clock.advance(15);
        let posted = post_dated(
            client,
            &dongxiang,
            &date(5),
            true,
            pay("dx-proj-1", household, PAID[i], PERIOD, D_DOCS[i]),
        )
        .await;
        d[i] = posted.seq;
        d_commit_ms[i] = posted.commit_time_ms;
    }
    clock.advance(15);
    County {
        root,
        province,
        dongxiang,
        linxia,
        s,
        s2,
        t1,
        t2,
        t3,
        lc,
        c,
        a,
        d,
        d_commit_ms,
        dx_xczx_opened,
    }
}

async fn start() -> (tempfile::TempDir, TestServer, Client, County) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(fundtrail_core::clock::now_ms()));
    let server = TestServer::start_clocked(dir.path(), fast_checkpoints(), clock.clone()).await;
    let mut client = server.client().await;
    let county = build_county(&mut client, server.root(), &clock).await;
    (dir, server, client, county)
}

// ---------------------------------------------------------------------------
// Query helpers.

async fn trace_forward(
    client: &mut Client,
    seq: u64,
    page_size: u32,
    page_token: &str,
) -> Result<pb::FlowGraph, tonic::Status> {
    client
        .query
        .trace_forward(pb::TraceForwardRequest {
            seq,
            page_size,
            page_token: page_token.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn trace_backward(
    client: &mut Client,
    target: Option<Target>,
) -> Result<pb::TraceBackwardResponse, tonic::Status> {
    client
        .query
        .trace_backward(pb::TraceBackwardRequest { target })
        .await
        .map(|r| r.into_inner())
}

async fn statement(
    client: &mut Client,
    account: &str,
) -> Result<pb::HouseholdStatementResponse, tonic::Status> {
    client
        .query
        .household_statement(pb::HouseholdStatementRequest {
            account_id: account.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn idle(
    client: &mut Client,
    request: pb::IdleFundsRequest,
) -> Result<pb::IdleFundsResponse, tonic::Status> {
    client
        .query
        .idle_funds(request)
        .await
        .map(|r| r.into_inner())
}

async fn anomalies(client: &mut Client, request: pb::AnomaliesRequest) -> pb::AnomaliesResponse {
    client
        .query
        .anomalies(request)
        .await
        .expect("anomalies")
        .into_inner()
}

async fn account_as_of(
    client: &mut Client,
    account: &str,
    as_of_seq: Option<u64>,
) -> Result<pb::Account, tonic::Status> {
    client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: account.into(),
            as_of_seq,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn account_on(
    client: &mut Client,
    account: &str,
    as_of_date: &str,
) -> Result<pb::Account, tonic::Status> {
    client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: account.into(),
            as_of_date: as_of_date.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn list(client: &mut Client, request: pb::ListEntriesRequest) -> pb::ListEntriesResponse {
    client
        .query
        .list_entries(request)
        .await
        .expect("list entries")
        .into_inner()
}

/// Every entry the filter selects, page by page.
async fn list_all(client: &mut Client, mut request: pb::ListEntriesRequest) -> Vec<pb::Entry> {
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let page = list(client, request.clone()).await;
        if request.page_size > 0 {
            assert!(
                page.entries.len() <= request.page_size as usize,
                "page size is honoured"
            );
        }
        out.extend(page.entries);
        if page.next_page_token.is_empty() {
            return out;
        }
        request.page_token = page.next_page_token;
    }
    panic!("list_entries never ended");
}

fn seqs(entries: &[pb::Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn edges(graph: &pb::FlowGraph) -> BTreeMap<(String, String), u64> {
    graph
        .edges
        .iter()
        .map(|e| {
            (
                (e.from_account_id.clone(), e.to_account_id.clone()),
                e.amount_fen,
            )
        })
        .collect()
}

fn held(graph: &pb::FlowGraph) -> BTreeMap<String, u64> {
    graph
        .nodes
        .iter()
        .map(|n| (n.account_id.clone(), n.held_fen))
        .collect()
}

fn received(graph: &pb::FlowGraph) -> BTreeMap<String, u64> {
    graph
        .nodes
        .iter()
        .map(|n| (n.account_id.clone(), n.received_fen))
        .collect()
}

fn edge<'g>(graph: &'g pb::FlowGraph, from: &str, to: &str) -> &'g pb::FlowEdge {
    graph
        .edges
        .iter()
        .find(|e| e.from_account_id == from && e.to_account_id == to)
        .unwrap_or_else(|| panic!("no edge {from} → {to} in {:?}", graph.edges))
}

fn node<'g>(graph: &'g pb::FlowGraph, account: &str) -> &'g pb::FlowNode {
    graph
        .nodes
        .iter()
        .find(|n| n.account_id == account)
        .unwrap_or_else(|| panic!("no node {account} in {:?}", graph.nodes))
}

fn map<V: Copy>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn edge_map(pairs: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    pairs
        .iter()
        .map(|(f, t, a)| ((f.to_string(), t.to_string()), *a))
        .collect()
}

/// Σ held over the nodes plus what left the ledger: every fen traced must be somewhere.
fn accounted(graph: &pb::FlowGraph) -> u64 {
    graph.nodes.iter().map(|n| n.held_fen).sum::<u64>() + graph.withdrawn_fen
}

fn households_hold(graph: &pb::FlowGraph) -> u64 {
    graph
        .nodes
        .iter()
        .filter(|n| n.kind == pb::AccountKind::Household as i32)
        .map(|n| n.held_fen)
        .sum()
}

fn code_of<T>(result: Result<T, tonic::Status>) -> Option<Code> {
    result.err().map(|s| s.code())
}

/// Where the central appropriation's money sits after the chain is built.
fn central_held() -> BTreeMap<String, u64> {
    map(&[
        ("mof-xczx", CENTRAL - TO_PROVINCE),
        ("gs-xczx", TO_PROVINCE - TO_DONGXIANG - TO_LINXIA),
        ("dx-xczx", TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN)),
        ("lx-xczx", TO_LINXIA - LINXIA_CONSOLIDATED),
        ("lx-pool", LINXIA_CONSOLIDATED),
        ("dx-pool", CONSOLIDATED - COUNTY_OWN - ALLOCATED),
        ("dx-proj-1", ALLOCATED - PAID_TOTAL),
        ("dx-hh-1", PAID[0]),
        ("dx-hh-2", PAID[1]),
        ("dx-hh-3", PAID[2]),
    ])
}

fn central_edges() -> BTreeMap<(String, String), u64> {
    edge_map(&[
        ("mof-xczx", "gs-xczx", TO_PROVINCE),
        ("gs-xczx", "dx-xczx", TO_DONGXIANG),
        ("gs-xczx", "lx-xczx", TO_LINXIA),
        ("lx-xczx", "lx-pool", LINXIA_CONSOLIDATED),
        ("dx-xczx", "dx-pool", CONSOLIDATED - COUNTY_OWN),
        ("dx-pool", "dx-proj-1", ALLOCATED),
        ("dx-proj-1", "dx-hh-1", PAID[0]),
        ("dx-proj-1", "dx-hh-2", PAID[1]),
        ("dx-proj-1", "dx-hh-3", PAID[2]),
    ])
}

// ---------------------------------------------------------------------------
// TraceForward.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_the_appropriation_accounts_for_every_fen() {
    let (_dir, server, mut client, county) = start().await;
    let graph = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(graph.source_seq, county.s);
    assert_eq!(graph.traced_fen, CENTRAL);
    assert_eq!(graph.source_document_no, S_DOC);
    assert_eq!(graph.programme_code, CENTRAL_PROGRAMME);
    assert_eq!(graph.withdrawn_fen, 0);
    assert!(graph.next_page_token.is_empty(), "one page holds it all");

    // Level by level: central → province → counties → pool → project → households.
    assert_eq!(edges(&graph), central_edges());
    let down = edge(&graph, "gs-xczx", "dx-xczx");
    assert_eq!(
        (down.records, down.first_seq, down.last_seq),
        (1, county.t2, county.t2)
    );
    assert_eq!(down.kinds, vec!["Transfer".to_string()]);
    assert_eq!(down.document_nos, vec![T2_DOC.to_string()]);
    let pooled = edge(&graph, "dx-xczx", "dx-pool");
    assert_eq!(pooled.kinds, vec!["Consolidation".to_string()]);
    assert_eq!(pooled.document_nos, vec![C_DOC.to_string()]);
    assert_eq!((pooled.first_seq, pooled.last_seq), (county.c, county.c));
    let allocated = edge(&graph, "dx-pool", "dx-proj-1");
    assert_eq!(allocated.kinds, vec!["Allocation".to_string()]);
    assert_eq!(allocated.document_nos, vec![A_DOC.to_string()]);
    let linxia = edge(&graph, "lx-xczx", "lx-pool");
    assert_eq!(
        (linxia.first_seq, linxia.kinds.clone()),
        (county.lc, vec!["Consolidation".to_string()])
    );
    let central = edge(&graph, "mof-xczx", "gs-xczx");
    assert_eq!(
        (central.first_seq, central.document_nos.clone()),
        (county.t1, vec![T1_DOC.to_string()])
    );
    for (i, household) in HOUSEHOLDS.iter().enumerate() {
        let paid = edge(&graph, "dx-proj-1", household);
        assert_eq!((paid.records, paid.first_seq), (1, county.d[i]));
        assert_eq!(paid.kinds, vec!["Disbursement".to_string()]);
        assert_eq!(paid.document_nos, vec![D_DOCS[i].to_string()]);
    }

    // What each account holds of it, and what reached it.
    assert_eq!(held(&graph), central_held());
    assert_eq!(
        received(&graph),
        map(&[
            ("mof-xczx", CENTRAL),
            ("gs-xczx", TO_PROVINCE),
            ("dx-xczx", TO_DONGXIANG),
            ("lx-xczx", TO_LINXIA),
            ("lx-pool", LINXIA_CONSOLIDATED),
            ("dx-pool", CONSOLIDATED - COUNTY_OWN),
            ("dx-proj-1", ALLOCATED),
            ("dx-hh-1", PAID[0]),
            ("dx-hh-2", PAID[1]),
            ("dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(graph.reached_households_fen, PAID_TOTAL);
    assert_eq!(households_hold(&graph), PAID_TOTAL);
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced"
    );

    // Who holds it, and since when (the imported value dates).
    let t = today();
    let pool = node(&graph, "dx-pool");
    assert_eq!(pool.kind, pb::AccountKind::Pool as i32);
    assert_eq!(
        (pool.owner_org_id.as_str(), pool.division_code.as_str()),
        ("dx-czj", "622926")
    );
    let since: BTreeMap<String, i32> = graph
        .nodes
        .iter()
        .map(|n| (n.account_id.clone(), n.held_since_day))
        .collect();
    assert_eq!(
        since,
        map(&[
            ("mof-xczx", t - 800),
            ("gs-xczx", t - 400),
            ("dx-xczx", t - 200),
            ("lx-xczx", t - 200),
            ("lx-pool", t),
            ("dx-pool", t - 60),
            ("dx-proj-1", t - 20),
            ("dx-hh-1", t - 5),
            ("dx-hh-2", t - 5),
            ("dx-hh-3", t - 5),
        ])
    );
    assert_eq!(
        node(&graph, "dx-proj-1").kind,
        pb::AccountKind::Project as i32
    );
    assert_eq!(
        node(&graph, "dx-hh-2").kind,
        pb::AccountKind::Household as i32
    );

    // Pages of 3 records: S, T1, T2, T3, LC, C, A, D1, D2, D3 carry the source.
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = trace_forward(&mut client, county.s, 3, &token)
            .await
            .unwrap();
        assert_eq!(
            page.traced_fen, CENTRAL,
            "every page names the traced amount"
        );
        let carried: u32 = page.edges.iter().map(|e| e.records).sum();
        assert!(
            carried <= 3,
            "a page examines at most 3 records, saw {carried}"
        );
        token = page.next_page_token.clone();
        pages.push(page);
        if token.is_empty() {
            break;
        }
        assert!(pages.len() < 20, "paging never ends");
    }
    assert_eq!(pages.len(), 4, "10 records in pages of 3");
    let mut merged_edges: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut merged_records: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut merged_held: BTreeMap<String, u64> = BTreeMap::new();
    let mut merged_received: BTreeMap<String, u64> = BTreeMap::new();
    let mut households: BTreeMap<String, u64> = BTreeMap::new();
    let mut withdrawn = 0;
    for page in &pages {
        for e in &page.edges {
            *merged_edges
                .entry((e.from_account_id.clone(), e.to_account_id.clone()))
                .or_default() += e.amount_fen;
            *merged_records
                .entry((e.from_account_id.clone(), e.to_account_id.clone()))
                .or_default() += e.records;
        }
        for n in &page.nodes {
            if let Some(before) = merged_held.insert(n.account_id.clone(), n.held_fen) {
                assert_eq!(
                    before, n.held_fen,
                    "{} held differs between pages",
                    n.account_id
                );
            }
            *merged_received.entry(n.account_id.clone()).or_default() += n.received_fen;
            if n.kind == pb::AccountKind::Household as i32 {
                households.insert(n.account_id.clone(), n.held_fen);
            }
        }
        withdrawn += page.withdrawn_fen;
    }
    assert_eq!(merged_edges, edges(&graph));
    assert_eq!(
        merged_records,
        graph
            .edges
            .iter()
            .map(|e| (
                (e.from_account_id.clone(), e.to_account_id.clone()),
                e.records
            ))
            .collect()
    );
    assert_eq!(merged_held, held(&graph));
    assert_eq!(merged_received, received(&graph));
    assert_eq!(
        households.values().sum::<u64>(),
        graph.reached_households_fen
    );
    assert_eq!(merged_held.values().sum::<u64>() + withdrawn, CENTRAL);

    // An appropriation taken back out of the ledger is traced as withdrawn.
    let root = county.root.clone();
    let s3 = ok(
        &mut client,
        &root,
        appropriation_of("mof-xczx", 5_000_00, CENTRAL_PROGRAMME, "财农〔2026〕99号"),
    )
    .await
    .seq;
    ok(&mut client, &root, reverse(s3, "财农〔2026〕100号")).await;
    let gone = trace_forward(&mut client, s3, 0, "").await.unwrap();
    assert_eq!((gone.traced_fen, gone.withdrawn_fen), (5_000_00, 5_000_00));
    assert_eq!(node(&gone, "mof-xczx").held_fen, 0);
    assert_eq!(
        node(&gone, "mof-xczx").held_since_day,
        0,
        "holds none of it"
    );
    assert_eq!(accounted(&gone), gone.traced_fen);
    let again = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(
        held(&again),
        central_held(),
        "another source does not show up"
    );

    // Bad requests.
    assert_eq!(
        code_of(trace_forward(&mut client, 1, 0, "").await),
        Some(Code::NotFound),
        "record 1 moved no money"
    );
    assert_eq!(
        code_of(trace_forward(&mut client, 1_000_000, 0, "").await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(trace_forward(&mut client, county.s, 10_001, "").await),
        Some(Code::ResourceExhausted)
    );
    assert_eq!(
        code_of(trace_forward(&mut client, county.s, 3, "not-a-token").await),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_a_record_follows_only_the_money_it_moved() {
    let (_dir, server, mut client, county) = start().await;
    // The province → Dongxiang transfer: not Linxia's share, not the
    // county's own money it was pooled with.
    let graph = trace_forward(&mut client, county.t2, 0, "").await.unwrap();
    assert_eq!(graph.traced_fen, TO_DONGXIANG);
    assert_eq!(graph.source_seq, county.s);
    assert_eq!(graph.source_document_no, S_DOC);
    assert!(graph.next_page_token.is_empty());
    assert_eq!(
        edges(&graph),
        edge_map(&[
            ("gs-xczx", "dx-xczx", TO_DONGXIANG),
            ("dx-xczx", "dx-pool", CONSOLIDATED - COUNTY_OWN),
            ("dx-pool", "dx-proj-1", ALLOCATED),
            ("dx-proj-1", "dx-hh-1", PAID[0]),
            ("dx-proj-1", "dx-hh-2", PAID[1]),
            ("dx-proj-1", "dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(
        held(&graph),
        map(&[
            ("gs-xczx", 0),
            ("dx-xczx", TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN)),
            ("dx-pool", CONSOLIDATED - COUNTY_OWN - ALLOCATED),
            ("dx-proj-1", ALLOCATED - PAID_TOTAL),
            ("dx-hh-1", PAID[0]),
            ("dx-hh-2", PAID[1]),
            ("dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(graph.reached_households_fen, PAID_TOTAL);
    assert_eq!(accounted(&graph), graph.traced_fen);

    // The consolidation carried two sources; both are followed, nothing else.
    let pooled = trace_forward(&mut client, county.c, 0, "").await.unwrap();
    assert_eq!(pooled.traced_fen, CONSOLIDATED);
    assert_eq!(
        edges(&pooled),
        edge_map(&[
            ("dx-xczx", "dx-pool", CONSOLIDATED),
            ("dx-pool", "dx-proj-1", ALLOCATED),
            ("dx-proj-1", "dx-hh-1", PAID[0]),
            ("dx-proj-1", "dx-hh-2", PAID[1]),
            ("dx-proj-1", "dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(
        held(&pooled),
        map(&[
            ("dx-xczx", 0),
            ("dx-pool", CONSOLIDATED - ALLOCATED),
            ("dx-proj-1", ALLOCATED - PAID_TOTAL),
            ("dx-hh-1", PAID[0]),
            ("dx-hh-2", PAID[1]),
            ("dx-hh-3", PAID[2]),
        ])
    );
    assert_eq!(accounted(&pooled), pooled.traced_fen);

    // From one payment: just that household.
    let paid = trace_forward(&mut client, county.d[1], 0, "")
        .await
        .unwrap();
    assert_eq!(paid.traced_fen, PAID[1]);
    assert_eq!(edges(&paid), edge_map(&[("dx-proj-1", "dx-hh-2", PAID[1])]));
    assert_eq!(paid.reached_households_fen, PAID[1]);
    assert_eq!(accounted(&paid), PAID[1]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_a_reversed_transfer_ends_where_the_money_came_back() {
    let (_dir, server, mut client, county) = start().await;
    let province = county.province.clone();
    let linxia = county.linxia.clone();
    let t4 = ok(
        &mut client,
        &province,
        transfer("gs-xczx", "lx-xczx", 1_000_00, "甘财农〔2026〕9号"),
    )
    .await
    .seq;
    let back = ok(&mut client, &linxia, reverse(t4, "临财〔2026〕1号"))
        .await
        .seq;
    let graph = trace_forward(&mut client, t4, 0, "").await.unwrap();
    assert_eq!(graph.traced_fen, 1_000_00);
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced; held: {:?}",
        held(&graph)
    );
    assert_eq!(
        edges(&graph),
        edge_map(&[
            ("gs-xczx", "lx-xczx", 1_000_00),
            ("lx-xczx", "gs-xczx", 1_000_00)
        ]),
        "only the transfer and its reversal carried this money"
    );
    assert_eq!(edge(&graph, "lx-xczx", "gs-xczx").first_seq, back);
    assert_eq!(
        held(&graph),
        map(&[("gs-xczx", 1_000_00), ("lx-xczx", 0)]),
        "the 1,000.00 is back at the province, and nothing else is counted"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_forward_from_a_record_counts_only_its_money_once_pooled_with_more_of_the_source() {
    let (_dir, server, mut client, county) = start().await;
    let province = county.province.clone();
    let dongxiang = county.dongxiang.clone();
    // A second, small transfer of the same source; the county then pools it
    // together with what is left of the first one.
    let t2b = ok(
        &mut client,
        &province,
        transfer("gs-xczx", "dx-xczx", 10_000_00, "甘财农〔2026〕10号"),
    )
    .await
    .seq;
    let left = TO_DONGXIANG - (CONSOLIDATED - COUNTY_OWN);
    ok(
        &mut client,
        &dongxiang,
        consolidation("dx-xczx", "dx-pool", left + 10_000_00, "东政办〔2026〕3号"),
    )
    .await;
    let graph = trace_forward(&mut client, t2b, 0, "").await.unwrap();
    assert_eq!(graph.traced_fen, 10_000_00);
    assert_eq!(
        edges(&graph),
        edge_map(&[
            ("gs-xczx", "dx-xczx", 10_000_00),
            ("dx-xczx", "dx-pool", 10_000_00)
        ])
    );
    assert!(
        node(&graph, "dx-pool").held_fen <= 10_000_00,
        "the pool holds at most the 10,000.00 traced, got {:?}",
        graph.nodes
    );
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// TraceBackward.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_backward_from_a_household_reaches_the_appropriation() {
    let (_dir, server, mut client, county) = start().await;
    let t = today();
    for (i, household) in HOUSEHOLDS.iter().enumerate() {
        let answer = trace_backward(&mut client, Some(Target::AccountId(household.to_string())))
            .await
            .unwrap();
        assert!(!answer.truncated);
        assert_eq!(
            answer.lineages.len(),
            1,
            "{household}: one payment of one source"
        );
        let lineage = &answer.lineages[0];
        assert_eq!(lineage.source_seq, county.s);
        assert_eq!(lineage.amount_fen, PAID[i]);
        assert_eq!(lineage.source_document_no, S_DOC);
        assert_eq!(lineage.programme_code, CENTRAL_PROGRAMME);
        assert_eq!(lineage.appropriating_org_id, "mof");
        let hops = &lineage.hops;
        assert_eq!(
            hops.iter().map(|h| h.seq).collect::<Vec<_>>(),
            vec![
                county.s,
                county.t1,
                county.t2,
                county.c,
                county.a,
                county.d[i]
            ]
        );
        assert_eq!(
            hops.iter().map(|h| h.kind.as_str()).collect::<Vec<_>>(),
            vec![
                "Appropriation",
                "Transfer",
                "Transfer",
                "Consolidation",
                "Allocation",
                "Disbursement"
            ]
        );
        assert_eq!(
            hops.iter()
                .map(|h| (h.from_account_id.as_str(), h.to_account_id.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("", "mof-xczx"),
                ("mof-xczx", "gs-xczx"),
                ("gs-xczx", "dx-xczx"),
                ("dx-xczx", "dx-pool"),
                ("dx-pool", "dx-proj-1"),
                ("dx-proj-1", *household),
            ]
        );
        assert_eq!(
            hops.iter()
                .map(|h| h.document_no.as_str())
                .collect::<Vec<_>>(),
            vec![S_DOC, T1_DOC, T2_DOC, C_DOC, A_DOC, D_DOCS[i]]
        );
        assert_eq!(
            hops.iter()
                .map(|h| h.signer_org_id.as_str())
                .collect::<Vec<_>>(),
            vec!["mof", "mof", "gs-czt", "dx-czj", "dx-czj", "dx-czj"]
        );
        assert_eq!(
            hops.iter().map(|h| h.key_id.as_str()).collect::<Vec<_>>(),
            vec![
                county.root.key_id(),
                county.root.key_id(),
                county.province.key_id(),
                county.dongxiang.key_id(),
                county.dongxiang.key_id(),
                county.dongxiang.key_id(),
            ]
        );
        assert_eq!(
            hops.iter().map(|h| h.value_day).collect::<Vec<_>>(),
            vec![t - 800, t - 400, t - 200, t - 60, t - 20, t - 5]
        );
        assert_eq!(
            hops.iter().map(|h| h.amount_fen).collect::<Vec<_>>(),
            vec![
                CENTRAL,
                TO_PROVINCE,
                TO_DONGXIANG,
                CONSOLIDATED - COUNTY_OWN,
                ALLOCATED,
                PAID[i]
            ]
        );
    }

    // From a record: the consolidation carried the central money and the
    // county's own; one lineage each.
    let answer = trace_backward(&mut client, Some(Target::Seq(county.c)))
        .await
        .unwrap();
    let by_source: BTreeMap<u64, &pb::Lineage> =
        answer.lineages.iter().map(|l| (l.source_seq, l)).collect();
    assert_eq!(
        by_source.keys().copied().collect::<Vec<_>>(),
        vec![county.s, county.s2]
    );
    let central = by_source[&county.s];
    assert_eq!(central.amount_fen, CONSOLIDATED - COUNTY_OWN);
    assert_eq!(
        central.hops.iter().map(|h| h.seq).collect::<Vec<_>>(),
        vec![county.s, county.t1, county.t2, county.c]
    );
    let own = by_source[&county.s2];
    assert_eq!(own.amount_fen, COUNTY_OWN);
    assert_eq!(
        (
            own.appropriating_org_id.as_str(),
            own.programme_code.as_str()
        ),
        ("dx-czj", COUNTY_PROGRAMME)
    );
    assert_eq!(own.source_document_no, S2_DOC);
    assert_eq!(
        own.hops
            .iter()
            .map(|h| (h.seq, h.kind.as_str(), h.document_no.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (county.s2, "Appropriation", S2_DOC),
            (county.c, "Consolidation", C_DOC)
        ]
    );

    // From Linxia's transfer: Linxia's chain, none of Dongxiang's.
    let answer = trace_backward(&mut client, Some(Target::Seq(county.t3)))
        .await
        .unwrap();
    assert_eq!(answer.lineages.len(), 1);
    assert_eq!(
        answer.lineages[0]
            .hops
            .iter()
            .map(|h| h.seq)
            .collect::<Vec<_>>(),
        vec![county.s, county.t1, county.t3]
    );

    // Bad targets.
    assert_eq!(
        code_of(trace_backward(&mut client, None).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::AccountId("bad id!".into()))).await),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::AccountId("nope".into()))).await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::Seq(1))).await),
        Some(Code::NotFound),
        "record 1 moved no money"
    );
    assert_eq!(
        code_of(trace_backward(&mut client, Some(Target::Seq(1_000_000))).await),
        Some(Code::NotFound)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_backward_from_an_account_names_every_source_it_holds() {
    let (_dir, server, mut client, county) = start().await;
    // The pool holds two lots that arrived with the same record (the
    // consolidation): 30,000.00 of the central source and 50,000.00 of the
    // county's own.
    let pool = account_as_of(&mut client, "dx-pool", None).await.unwrap();
    assert_eq!(
        pool.balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            (county.s, CONSOLIDATED - COUNTY_OWN - ALLOCATED),
            (county.s2, COUNTY_OWN)
        ])
    );
    let answer = trace_backward(&mut client, Some(Target::AccountId("dx-pool".into())))
        .await
        .unwrap();
    let sources: BTreeSet<u64> = answer.lineages.iter().map(|l| l.source_seq).collect();
    assert_eq!(
        sources,
        BTreeSet::from([county.s, county.s2]),
        "a lineage for each source the pool holds: {:?}",
        answer.lineages
    );
    for lineage in &answer.lineages {
        assert_eq!(
            lineage.hops.first().map(|h| h.seq),
            Some(lineage.source_seq)
        );
        assert_eq!(
            lineage.hops.last().map(|h| h.to_account_id.as_str()),
            Some("dx-pool")
        );
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// HouseholdStatement.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn household_statement_shows_payments_statuses_and_what_is_left() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let t = today();
    // 2,000.00 clawed back from household 1.
    let clawback = ok(
        &mut client,
        &dongxiang,
        give_back(
            "dx-hh-1",
            "dx-xczx",
            2_000_00,
            pb::ReturnKind::Clawback,
            "虚报冒领追回",
        ),
    )
    .await
    .seq;
    // A second payment to household 3, reversed.
    let extra = ok(
        &mut client,
        &dongxiang,
        pay(
            "dx-proj-1",
            "dx-hh-3",
            5_000_00,
            "2026-01",
            "东财农〔2026〕41号",
        ),
    )
    .await
    .seq;
    ok(
        &mut client,
        &dongxiang,
        reverse(extra, "东财农〔2026〕42号"),
    )
    .await;
    // Household 2 exited poverty three days ago (a status change may be dated back).
    let exited = post_dated(
        &mut client,
        &dongxiang,
        &date(3),
        false,
        set_status(
            "dx-hh-2",
            pb::HouseholdStatus::Exited,
            "东乡脱贫〔2026〕1号",
        ),
    )
    .await
    .seq;

    let one = statement(&mut client, "dx-hh-1").await.unwrap();
    assert_eq!(one.account_id, "dx-hh-1");
    assert_eq!(one.owner_org_id, "dx-czj");
    assert_eq!(one.household_ref, "HH-622926-0001");
    assert_eq!(one.village_code, "622926100201");
    assert_eq!(one.basis, pb::SubsidyBasis::PerHousehold as i32);
    assert_eq!(one.members, 4);
    assert_eq!(one.status_today, pb::HouseholdStatus::Registered as i32);
    assert!(one.statuses.is_empty());
    assert_eq!(one.payments.len(), 1);
    let line = &one.payments[0];
    assert_eq!(line.seq, county.d[0]);
    assert_eq!(line.value_day, t - 5);
    assert_eq!(line.amount_fen, PAID[0]);
    assert_eq!(line.programme_code, CENTRAL_PROGRAMME);
    assert_eq!(line.period, PERIOD);
    assert_eq!(line.document_no, D_DOCS[0]);
    assert_eq!(line.from_account_id, "dx-proj-1");
    assert!(!line.reversed);
    assert_eq!(
        line.sources
            .iter()
            .map(|s| (s.source_seq, s.amount_fen))
            .collect::<Vec<_>>(),
        vec![(county.s, PAID[0])]
    );
    assert_eq!(one.received_fen, PAID[0]);
    assert_eq!(
        one.balance_fen,
        PAID[0] - 2_000_00,
        "after the clawback (record {clawback})"
    );

    let two = statement(&mut client, "dx-hh-2").await.unwrap();
    assert_eq!(two.status_today, pb::HouseholdStatus::Exited as i32);
    assert_eq!(
        two.statuses
            .iter()
            .map(|s| (s.effective_day, s.status, s.seq))
            .collect::<Vec<_>>(),
        vec![(t - 3, pb::HouseholdStatus::Exited as i32, exited)]
    );
    assert_eq!((two.received_fen, two.balance_fen), (PAID[1], PAID[1]));

    let three = statement(&mut client, "dx-hh-3").await.unwrap();
    assert_eq!(
        three
            .payments
            .iter()
            .map(|p| (p.seq, p.amount_fen, p.reversed, p.period.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (county.d[2], PAID[2], false, PERIOD),
            (extra, 5_000_00, true, "2026-01")
        ]
    );
    assert_eq!(
        three.received_fen, PAID[2],
        "the reversed payment does not count"
    );
    assert_eq!(three.balance_fen, PAID[2]);

    // The forward trace sees the clawback and the reversal too.
    let graph = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(graph.reached_households_fen, PAID_TOTAL - 2_000_00);
    assert_eq!(edge(&graph, "dx-hh-1", "dx-xczx").amount_fen, 2_000_00);
    assert_eq!(edge(&graph, "dx-hh-3", "dx-proj-1").amount_fen, 5_000_00);
    assert_eq!(accounted(&graph), CENTRAL);

    // Not a household; no such account; not an id.
    assert_eq!(
        code_of(statement(&mut client, "dx-xczx").await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(statement(&mut client, "nope").await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(statement(&mut client, "bad id!").await),
        Some(Code::InvalidArgument)
    );
    server.stop().await;
}

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
// GetAccount as of a record, and ListEntries filters.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_by_business_date() {
    let (_dir, _server, mut client, county) = start().await;
    // mof-xczx: appropriated 800 days ago, ¥600,000 to the province 400
    // days ago. dx-xczx: its own ¥50,000 300 days ago, ¥300,000 from the
    // province 200 days ago.
    let central = |a: &pb::Account| {
        a.balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect::<Vec<_>>()
    };
    let before = account_on(&mut client, "mof-xczx", &date(801))
        .await
        .unwrap();
    assert_eq!((before.balance_fen, central(&before)), (0, vec![]));
    let appropriated = account_on(&mut client, "mof-xczx", &date(800))
        .await
        .unwrap();
    assert_eq!(central(&appropriated), vec![(county.s, CENTRAL)]);
    let transferred = account_on(&mut client, "mof-xczx", &date(400))
        .await
        .unwrap();
    assert_eq!(transferred.balance_fen, CENTRAL - TO_PROVINCE);
    let county_before = account_on(&mut client, "dx-xczx", &date(250))
        .await
        .unwrap();
    assert_eq!(central(&county_before), vec![(county.s2, COUNTY_OWN)]);
    let county_after = account_on(&mut client, "dx-xczx", &date(200))
        .await
        .unwrap();
    assert_eq!(
        central(&county_after),
        vec![(county.s, TO_DONGXIANG), (county.s2, COUNTY_OWN)]
    );
    // Today's balance by date is today's balance.
    let now = client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-xczx".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let today = account_on(&mut client, "dx-xczx", &date(0)).await.unwrap();
    assert_eq!(today.balances, now.balances);
    // Not a date, or both kinds of moment: refused.
    for bad in ["2025-13-01", "yesterday", "2025-1-1"] {
        let refused = account_on(&mut client, "dx-xczx", bad).await;
        assert_eq!(code_of(refused), Some(Code::InvalidArgument), "{bad}");
    }
    let both = client
        .query
        .get_account(pb::GetAccountRequest {
            account_id: "dx-xczx".into(),
            as_of_seq: Some(county.t2),
            as_of_date: date(10),
        })
        .await;
    assert_eq!(code_of(both), Some(Code::InvalidArgument));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_as_of_a_record_and_filtered_entries() {
    let (_dir, server, mut client, county) = start().await;
    let by_source = |account: &pb::Account| -> Vec<(u64, u64)> {
        account
            .balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen))
            .collect()
    };
    let opened = account_as_of(&mut client, "dx-xczx", Some(county.dx_xczx_opened))
        .await
        .unwrap();
    assert_eq!(opened.balance_fen, 0);
    let before = account_as_of(&mut client, "dx-xczx", Some(county.t2 - 1))
        .await
        .unwrap();
    assert_eq!(
        before.balance_fen, COUNTY_OWN,
        "before the province's transfer"
    );
    assert_eq!(by_source(&before), vec![(county.s2, COUNTY_OWN)]);
    let after = account_as_of(&mut client, "dx-xczx", Some(county.t2))
        .await
        .unwrap();
    assert_eq!(
        after.balance_fen,
        COUNTY_OWN + TO_DONGXIANG,
        "just after it"
    );
    assert_eq!(
        after
            .balances
            .iter()
            .map(|b| (b.source_seq, b.amount_fen, b.document_no.as_str()))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            (county.s, TO_DONGXIANG, S_DOC),
            (county.s2, COUNTY_OWN, S2_DOC)
        ])
    );
    let pooled = account_as_of(&mut client, "dx-xczx", Some(county.c))
        .await
        .unwrap();
    assert_eq!(pooled.balance_fen, COUNTY_OWN + TO_DONGXIANG - CONSOLIDATED);
    let now = account_as_of(&mut client, "dx-xczx", None).await.unwrap();
    assert_eq!(now.balance_fen, pooled.balance_fen);
    let pool_before = account_as_of(&mut client, "dx-pool", Some(county.a - 1))
        .await
        .unwrap();
    let pool_after = account_as_of(&mut client, "dx-pool", Some(county.a))
        .await
        .unwrap();
    assert_eq!(
        (pool_before.balance_fen, pool_after.balance_fen),
        (CONSOLIDATED, CONSOLIDATED - ALLOCATED)
    );
    let hh_before = account_as_of(&mut client, "dx-hh-2", Some(county.d[1] - 1))
        .await
        .unwrap();
    let hh_after = account_as_of(&mut client, "dx-hh-2", Some(county.d[1]))
        .await
        .unwrap();
    assert_eq!((hh_before.balance_fen, hh_after.balance_fen), (0, PAID[1]));
    let count = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .unwrap()
        .into_inner()
        .record_count;
    let last = account_as_of(&mut client, "dx-xczx", Some(count - 1))
        .await
        .unwrap();
    assert_eq!(last.balance_fen, now.balance_fen);
    assert_eq!(
        code_of(account_as_of(&mut client, "dx-xczx", Some(count)).await),
        Some(Code::NotFound)
    );
    assert_eq!(
        code_of(account_as_of(&mut client, "dx-xczx", Some(county.dx_xczx_opened - 1)).await),
        Some(Code::FailedPrecondition),
        "before the account was opened"
    );

    // ListEntries: every filter agrees with filtering the whole log by hand.
    let everything = list_all(
        &mut client,
        pb::ListEntriesRequest {
            page_size: 50,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(everything.len() as u64, count);
    let by_hand = |keep: &dyn Fn(&pb::Entry) -> bool| -> Vec<u64> {
        everything
            .iter()
            .filter(|e| keep(e))
            .map(|e| e.seq)
            .collect()
    };
    let kind_of = |e: &pb::Entry| fundtrail_api::body_kind(&e.body.as_ref().unwrap().body);
    let legs = |e: &pb::Entry| e.effects.clone().unwrap_or_default().legs;

    let dongxiang = list_all(
        &mut client,
        pb::ListEntriesRequest {
            org_id: "dx-czj".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        seqs(&dongxiang),
        by_hand(&|e| e.effects.as_ref().unwrap().signer_org_id == "dx-czj")
    );
    assert!(seqs(&dongxiang).contains(&county.c) && !seqs(&dongxiang).contains(&county.t2));

    let payments = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&payments), county.d.to_vec());
    let consolidations = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "Consolidation".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&consolidations), vec![county.lc, county.c]);
    assert_eq!(
        seqs(&consolidations),
        by_hand(&|e| kind_of(e) == "Consolidation")
    );

    let own_money = list_all(
        &mut client,
        pb::ListEntriesRequest {
            source_seq: Some(county.s2),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        seqs(&own_money),
        vec![county.s2, county.c],
        "appropriated, then pooled; never allocated"
    );
    let central_money = list_all(
        &mut client,
        pb::ListEntriesRequest {
            source_seq: Some(county.s),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        seqs(&central_money),
        by_hand(&|e| legs(e).iter().any(|l| l.source_seq == county.s))
    );
    assert_eq!(central_money.len(), 10);

    let cited = list_all(
        &mut client,
        pb::ListEntriesRequest {
            document_no: T2_DOC.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&cited), vec![county.t2]);
    let plan = list_all(
        &mut client,
        pb::ListEntriesRequest {
            document_no: C_DOC.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&plan), vec![county.c]);
    let announced = list_all(
        &mut client,
        pb::ListEntriesRequest {
            document_no: ANNOUNCE_DOC.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(announced.len(), 1);
    assert_eq!(kind_of(&announced[0]), "AnnounceProject");

    let pool = list_all(
        &mut client,
        pb::ListEntriesRequest {
            account_id: "dx-pool".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&pool), vec![county.c, county.a]);
    let project = list_all(
        &mut client,
        pb::ListEntriesRequest {
            account_id: "dx-proj-1".into(),
            ..Default::default()
        },
    )
    .await;
    let mut expected = vec![county.a];
    expected.extend(county.d);
    assert_eq!(seqs(&project), expected);

    // Combined filters: all must hold.
    let both = list_all(
        &mut client,
        pb::ListEntriesRequest {
            org_id: "dx-czj".into(),
            kind: "Allocation".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&both), vec![county.a]);
    let none = list_all(
        &mut client,
        pb::ListEntriesRequest {
            org_id: "gs-czt".into(),
            kind: "Allocation".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
    let account_and_kind = list_all(
        &mut client,
        pb::ListEntriesRequest {
            account_id: "dx-xczx".into(),
            kind: "Appropriation".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&account_and_kind), vec![county.s2]);

    // Commit-time range [from, to): the second payment alone.
    let middle = list_all(
        &mut client,
        pb::ListEntriesRequest {
            from_time_ms: county.d_commit_ms[1],
            to_time_ms: county.d_commit_ms[2],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&middle), vec![county.d[1]]);
    let from_second = list_all(
        &mut client,
        pb::ListEntriesRequest {
            from_time_ms: county.d_commit_ms[1],
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&from_second), vec![county.d[1], county.d[2]]);
    let until_second = list_all(
        &mut client,
        pb::ListEntriesRequest {
            to_time_ms: county.d_commit_ms[1],
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&until_second), vec![county.d[0]]);

    // Page size: 4 households in pages of 2.
    let first = list(
        &mut client,
        pb::ListEntriesRequest {
            kind: "RegisterHousehold".into(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.entries.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let rest = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "RegisterHousehold".into(),
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    let mut all_households = seqs(&first.entries);
    all_households.extend(seqs(&rest));
    assert_eq!(
        all_households,
        by_hand(&|e| kind_of(e) == "RegisterHousehold")
    );
    assert_eq!(all_households.len(), 4);
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
        pay(
            "dx-proj-1",
            "dx-hh-1",
            PAID[0],
            PERIOD,
            "东财农〔2026〕50号",
        ),
    )
    .await
    .seq;
    // Another period is not a duplicate.
    ok(
        client,
        &dongxiang,
        pay(
            "dx-proj-1",
            "dx-hh-1",
            1_000_00,
            "2026-01",
            "东财农〔2026〕51号",
        ),
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
        pay(
            "dx-proj-1",
            "dx-hh-9",
            1_000_00,
            PERIOD,
            "东财农〔2026〕52号",
        ),
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

    // Idle a year or more (the default): the central and provincial money.
    let idle_365 = findings_of(all, "IDLE_FUNDS");
    assert_eq!(
        idle_365
            .iter()
            .map(|i| (i.account_id.as_str(), i.amount_fen))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            ("gs-xczx", TO_PROVINCE - TO_DONGXIANG - TO_LINXIA),
            ("mof-xczx", CENTRAL - TO_PROVINCE)
        ])
    );
    let mof = idle_365
        .iter()
        .find(|i| i.account_id == "mof-xczx")
        .unwrap();
    assert_eq!(
        mof.seqs,
        vec![county.s],
        "named by the record that brought the money"
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
// Refusals.

fn refusal(
    name: &'static str,
    request: pb::SignedRequest,
    code: Code,
    field: &'static str,
    says: &'static str,
) -> Refusal {
    Refusal {
        name,
        request,
        code,
        field,
        says,
    }
}

struct Refusal {
    name: &'static str,
    request: pb::SignedRequest,
    code: Code,
    field: &'static str,
    /// A phrase of the message that shows the request was refused for this reason.
    says: &'static str,
}

/// Posts each case alone and in a batch: each is refused with its code,
/// field and reason, and neither adds a record nor changes derived state.
async fn check_refusals(server: &TestServer, client: &mut Client, cases: Vec<Refusal>) {
    for case in cases {
        let count_before = client
            .query
            .get_ledger(pb::GetLedgerRequest {})
            .await
            .unwrap()
            .into_inner()
            .record_count;
        let state_before = server.dump();
        let status = match client.post_signed(case.request.clone()).await {
            Ok(posted) => panic!(
                "{}: accepted as #{}, expected {:?}",
                case.name, posted.seq, case.code
            ),
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            case.code,
            "{}: {}",
            case.name,
            status.message()
        );
        assert!(
            status.message().contains(case.says),
            "{}: the message {:?} should say {:?}",
            case.name,
            status.message(),
            case.says
        );
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
            .unwrap_or_default();
        assert_eq!(
            fields,
            vec![case.field.to_string()],
            "{}: the field at fault",
            case.name
        );
        let count_after = client
            .query
            .get_ledger(pb::GetLedgerRequest {})
            .await
            .unwrap()
            .into_inner()
            .record_count;
        assert_eq!(count_before, count_after, "{}: no record added", case.name);
        assert!(
            state_before == server.dump(),
            "{}: derived state changed",
            case.name
        );
        // The same in a batch.
        let results = client.post_batch(vec![case.request]).await.expect("batch");
        match &results[0].result {
            Some(pb::post_result::Result::Error(e)) => {
                assert_eq!(e.code, case.code as i32, "{} in a batch", case.name);
                assert_eq!(e.field, case.field, "{} in a batch", case.name);
            }
            other => panic!(
                "{} in a batch: expected a refusal, got {other:?}",
                case.name
            ),
        }
        assert!(
            state_before == server.dump(),
            "{} in a batch: derived state changed",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_rules_refuse_and_change_nothing() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let linxia = county.linxia.clone();
    let province = county.province.clone();
    // A project without performance targets; an ineligible household.
    ok(
        &mut client,
        &dongxiang,
        register_project("dx-proj-nt", "622926100", 10_000_00, &[]),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        household_in("dx-hh-x", "HH-622926-0099", "622926100209"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        set_status(
            "dx-hh-x",
            pb::HouseholdStatus::Ineligible,
            "东乡核查〔2026〕1号",
        ),
    )
    .await;
    let requester = client.clone();
    let signed = |signer: &Signer, body: B| signer.sign(&requester.request(body));
    let on = |signer: &Signer, value_date: &str, imported: bool, body: B| {
        dated(&requester, signer, value_date, imported, body)
    };
    let budget_left = BUDGET - ALLOCATED;
    let fp = Code::FailedPrecondition;
    let ia = Code::InvalidArgument;
    let cases = vec![
        refusal(
            "allocation to a project without performance targets",
            signed(
                &dongxiang,
                allocation("dx-pool", "dx-proj-nt", 1_000_00, "东财农〔2026〕70号"),
            ),
            fp,
            "allocation.project_account_id",
            "performance target",
        ),
        refusal(
            "allocation over the project's budget",
            signed(
                &dongxiang,
                allocation(
                    "dx-pool",
                    "dx-proj-1",
                    budget_left + 1,
                    "东财农〔2026〕71号",
                ),
            ),
            fp,
            "allocation.project_account_id",
            "budget",
        ),
        refusal(
            "allocation to another county's project",
            signed(
                &linxia,
                allocation("lx-pool", "dx-proj-1", 1_000_00, "临财农〔2026〕72号"),
            ),
            Code::PermissionDenied,
            "allocation.project_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "allocation from Dongxiang's pool to Linxia's project",
            signed(
                &dongxiang,
                allocation("dx-pool", "lx-proj-1", 1_000_00, "东财农〔2026〕73号"),
            ),
            Code::PermissionDenied,
            "allocation.project_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "allocation to an account that is not a library project",
            signed(
                &dongxiang,
                allocation("dx-pool", "dx-xczx", 1_000_00, "东财农〔2026〕74号"),
            ),
            fp,
            "allocation.project_account_id",
            "not in a county project library",
        ),
        refusal(
            "disbursement to an account that is not a registered household",
            signed(
                &dongxiang,
                pay("dx-proj-1", "dx-pool", 100_00, PERIOD, "东财农〔2026〕75号"),
            ),
            fp,
            "disbursement.household_account_id",
            "not a registered household",
        ),
        refusal(
            "disbursement to an ineligible household",
            signed(
                &dongxiang,
                pay("dx-proj-1", "dx-hh-x", 100_00, PERIOD, "东财农〔2026〕76号"),
            ),
            fp,
            "disbursement.household_account_id",
            "not eligible",
        ),
        refusal(
            "disbursement to another county's household",
            signed(
                &dongxiang,
                pay("dx-proj-1", "lx-hh-1", 100_00, PERIOD, "东财农〔2026〕77号"),
            ),
            Code::PermissionDenied,
            "disbursement.household_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "consolidation from a project account",
            signed(
                &dongxiang,
                consolidation("dx-proj-1", "dx-pool", 100_00, "东政办〔2026〕78号"),
            ),
            fp,
            "consolidation.from_account_id",
            "programme money",
        ),
        refusal(
            "consolidation from the pool itself",
            signed(
                &dongxiang,
                consolidation("dx-pool", "dx-pool", 100_00, "东政办〔2026〕79号"),
            ),
            fp,
            "consolidation.from_account_id",
            "programme money",
        ),
        refusal(
            "consolidation into another county's pool",
            signed(
                &dongxiang,
                consolidation("dx-xczx", "lx-pool", 100_00, "东政办〔2026〕80号"),
            ),
            Code::PermissionDenied,
            "consolidation.pool_account_id",
            "names nothing this org may act on",
        ),
        refusal(
            "consolidation into a project instead of the pool",
            signed(
                &dongxiang,
                consolidation("dx-xczx", "dx-proj-1", 100_00, "东政办〔2026〕81号"),
            ),
            fp,
            "consolidation.pool_account_id",
            "not a consolidated pool",
        ),
        refusal(
            "value date tomorrow",
            on(
                &province,
                &date(-1),
                true,
                transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕82号"),
            ),
            ia,
            "value_date",
            "future",
        ),
        refusal(
            "past value date on a record that is not imported",
            on(
                &province,
                &date(10),
                false,
                transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕83号"),
            ),
            ia,
            "value_date",
            "imported",
        ),
        refusal(
            "value date that is no date",
            on(
                &province,
                "2025-02-30",
                true,
                transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕84号"),
            ),
            ia,
            "value_date",
            "2025-02-30",
        ),
        refusal(
            "value date in another format",
            on(
                &province,
                "2025/03/01",
                true,
                transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕85号"),
            ),
            ia,
            "value_date",
            "2025/03/01",
        ),
        refusal(
            "money spent with a value date before it arrived",
            on(
                &province,
                &date(500),
                true,
                transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕86号"),
            ),
            fp,
            "transfer.sources",
            "arrived after",
        ),
        refusal(
            "payment dated before the project received its money",
            on(
                &dongxiang,
                &date(25),
                true,
                pay("dx-proj-1", "dx-hh-3", 100_00, PERIOD, "东财农〔2026〕87号"),
            ),
            fp,
            "disbursement.sources",
            "arrived after",
        ),
        refusal(
            "OpenAccount of kind PROJECT",
            signed(
                &dongxiang,
                open_account("dx-proj-9", pb::AccountKind::Project, "项目"),
            ),
            ia,
            "open_account.kind",
            "RegisterProject",
        ),
        refusal(
            "OpenAccount of kind HOUSEHOLD",
            signed(
                &dongxiang,
                open_account("dx-hh-99", pb::AccountKind::Household, "户"),
            ),
            ia,
            "open_account.kind",
            "RegisterHousehold",
        ),
        refusal(
            "household with an 8-digit village code",
            signed(
                &dongxiang,
                household_in("dx-hh-98", "HH-622926-0098", "62292610"),
            ),
            ia,
            "register_household.village_code",
            "village",
        ),
        refusal(
            "household with a county code for a village code",
            signed(
                &dongxiang,
                household_in("dx-hh-97", "HH-622926-0097", "622926"),
            ),
            ia,
            "register_household.village_code",
            "village",
        ),
        refusal(
            "household with letters in its village code",
            signed(
                &dongxiang,
                household_in("dx-hh-96", "HH-622926-0096", "6229261002A1"),
            ),
            ia,
            "register_household.village_code",
            "6229261002A1",
        ),
        refusal(
            "return without a reason",
            signed(
                &dongxiang,
                give_back(
                    "dx-xczx",
                    "gs-xczx",
                    100_00,
                    pb::ReturnKind::IdleRecovery,
                    "",
                ),
            ),
            ia,
            "return.reason",
            "reason",
        ),
        refusal(
            "return with a blank reason",
            signed(
                &dongxiang,
                give_back("dx-xczx", "gs-xczx", 100_00, pb::ReturnKind::Surplus, "   "),
            ),
            ia,
            "return.reason",
            "reason",
        ),
    ];
    check_refusals(&server, &mut client, cases).await;

    // The refusals were about the rule, not the money: the same requests
    // made right are accepted.
    ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", budget_left, "东财农〔2026〕90号"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        pay("dx-proj-1", "dx-hh-3", 100_00, PERIOD, "东财农〔2026〕91号"),
    )
    .await;
    post_dated(
        &mut client,
        &province,
        &date(150),
        true,
        transfer("gs-xczx", "dx-xczx", 100_00, "甘财农〔2026〕92号"),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        give_back(
            "dx-xczx",
            "gs-xczx",
            100_00,
            pb::ReturnKind::IdleRecovery,
            "项目结余",
        ),
    )
    .await;
    ok(
        &mut client,
        &dongxiang,
        household_in("dx-hh-95", "HH-622926-0095", "622926100"),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversing_an_allocation_gives_the_budget_back() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let budget_left = BUDGET - ALLOCATED;
    let topped = ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", budget_left, "东财农〔2026〕100号"),
    )
    .await
    .seq;
    let over = client
        .post(
            &dongxiang,
            allocation("dx-pool", "dx-proj-1", 1, "东财农〔2026〕101号"),
        )
        .await
        .unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert!(over.message().contains("budget"), "{}", over.message());

    let pool_before = balance(&mut client, "dx-pool").await;
    let reversal = ok(
        &mut client,
        &dongxiang,
        reverse(topped, "东财农〔2026〕102号"),
    )
    .await
    .seq;
    assert_eq!(
        balance(&mut client, "dx-pool").await,
        pool_before + budget_left
    );
    assert_eq!(
        balance(&mut client, "dx-proj-1").await,
        ALLOCATED - PAID_TOTAL
    );
    let entry = client
        .query
        .get_entry(pb::GetEntryRequest { seq: topped })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.reversed_by_seq, Some(reversal));

    // The budget is free again, exactly.
    ok(
        &mut client,
        &dongxiang,
        allocation("dx-pool", "dx-proj-1", budget_left, "东财农〔2026〕103号"),
    )
    .await;
    let still_over = client
        .post(
            &dongxiang,
            allocation("dx-pool", "dx-proj-1", 1, "东财农〔2026〕104号"),
        )
        .await
        .unwrap_err();
    assert_eq!(still_over.code(), Code::FailedPrecondition);

    // The first allocation's money has moved on to households: it cannot be
    // reversed, and the refusal leaves the budget as it was.
    let state_before = server.dump();
    let moved_on = client
        .post(&dongxiang, reverse(county.a, "东财农〔2026〕105号"))
        .await
        .unwrap_err();
    assert_eq!(moved_on.code(), Code::FailedPrecondition);
    assert!(state_before == server.dump());
    server.stop().await;
}

/// Runs `fundtrail COMMAND… --server URL --key ROOT_KEY --out OUT EXTRA…`
/// against `server` as the root org, and returns the file it wrote.
fn report_as_root(
    server: &TestServer,
    command: &[&str],
    out: &std::path::Path,
    extra: &[&str],
) -> Vec<u8> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fundtrail"))
        .args(command)
        .args(["--server", &server.url, "--key"])
        .arg(server.data_dir.join("root.key"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(out).unwrap()
}

/// `fundtrail export-csv REPORT` into `dir`: the file's bytes.
fn export_csv(server: &TestServer, dir: &std::path::Path, report: &str, extra: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{report}.csv"));
    report_as_root(server, &["export-csv", report], &out, extra)
}

/// The header and rows of a CSV export, after its byte-order mark.
fn csv_rows(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let body = bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .expect("UTF-8 with a byte-order mark, for Excel");
    let mut reader = csv::Reader::from_reader(body);
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|row| row.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

fn fen_of(yuan: &str) -> u64 {
    let (whole, cents) = yuan.split_once('.').expect("two decimals");
    assert_eq!(cents.len(), 2, "{yuan}");
    whole.parse::<u64>().unwrap() * 100 + cents.parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_exports_hold_what_the_queries_answer() {
    let (dir, server, mut client, county) = start().await;
    let work = tempfile::tempdir().unwrap();
    let _ = dir;

    // Payments: one row per Disbursement, amounts to the fen.
    let (header, rows) = csv_rows(&export_csv(&server, work.path(), "payments", &[]));
    assert_eq!(header[0], "序号");
    assert_eq!(header[6], "金额（元）");
    let disbursements = list_all(
        &mut client,
        pb::ListEntriesRequest {
            kind: "Disbursement".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), disbursements.len());
    for (row, entry) in rows.iter().zip(&disbursements) {
        assert_eq!(row[0], entry.seq.to_string());
        let legs: u64 = entry
            .effects
            .iter()
            .flat_map(|e| &e.legs)
            .map(|l| l.amount_fen)
            .sum();
        assert_eq!(fen_of(&row[6]), legs);
    }
    for (i, seq) in county.d.iter().enumerate() {
        let row = rows.iter().find(|row| row[0] == seq.to_string()).unwrap();
        assert_eq!(fen_of(&row[6]), PAID[i]);
        assert_eq!(row[5], HOUSEHOLDS[i]);
        assert_eq!(row[8], PERIOD);
    }

    // Entries: one row per leg (a record without legs is one row), the
    // same money as the records.
    let (header, rows) = csv_rows(&export_csv(&server, work.path(), "entries", &[]));
    assert_eq!(header.len(), 10);
    let all = list_all(&mut client, pb::ListEntriesRequest::default()).await;
    let expected_rows: usize = all
        .iter()
        .map(|e| e.effects.as_ref().map_or(0, |e| e.legs.len()).max(1))
        .sum();
    assert_eq!(rows.len(), expected_rows);
    let legs_fen: u64 = all
        .iter()
        .flat_map(|e| e.effects.iter().flat_map(|e| &e.legs))
        .map(|l| l.amount_fen)
        .sum();
    let rows_fen: u64 = rows
        .iter()
        .filter(|row| !row[7].is_empty())
        .map(|row| fen_of(&row[7]))
        .sum();
    assert_eq!(rows_fen, legs_fen);
    let central = rows
        .iter()
        .find(|row| row[0] == county.s.to_string())
        .unwrap();
    assert_eq!(
        (central[3].as_str(), central[9].as_str()),
        ("Appropriation", S_DOC)
    );
    // Filters pass through: one account's records only.
    std::fs::create_dir(work.path().join("one")).unwrap();
    let (_, rows) = csv_rows(&export_csv(
        &server,
        work.path().join("one").as_path(),
        "entries",
        &["--account", "dx-proj-1"],
    ));
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|row| row[5] == "dx-proj-1" || row[6] == "dx-proj-1"));

    // Projects: budget, targets, unit, money received, announcement.
    let (_, rows) = csv_rows(&export_csv(&server, work.path(), "projects", &[]));
    let project = |id: &str| rows.iter().find(|row| row[0] == id).unwrap().clone();
    let dx = project("dx-proj-1");
    assert_eq!(fen_of(&dx[5]), BUDGET);
    assert_eq!(dx[6], "带动脱贫户 3 户增收；项目竣工验收合格率 100%");
    assert_eq!(fen_of(&dx[8]), ALLOCATED);
    assert_eq!(dx[9], ANNOUNCE_DOC);
    assert_eq!(project("lx-proj-1")[9], "", "not announced");

    // Idle funds and findings: the same rows as the queries.
    let (_, rows) = csv_rows(&export_csv(&server, work.path(), "idle", &["--days", "30"]));
    let answer = idle(
        &mut client,
        pb::IdleFundsRequest {
            older_than_days: 30,
            page_size: 1_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), answer.rows.len());
    for (row, expected) in rows.iter().zip(&answer.rows) {
        assert_eq!(row[0], expected.account_id);
        assert_eq!(fen_of(&row[6]), expected.idle_fen);
    }
    let (_, rows) = csv_rows(&export_csv(&server, work.path(), "anomalies", &[]));
    let findings = anomalies(
        &mut client,
        pb::AnomaliesRequest {
            page_size: 1_000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rows.len(), findings.findings.len());
    server.stop().await;
}

/// `fundtrail public-notice` for Dongxiang, as the root org: the file.
fn public_notice(server: &TestServer, out: &std::path::Path, extra: &[&str]) -> String {
    let command = ["public-notice", "--county", "dx-czj"];
    String::from_utf8(report_as_root(server, &command, out, extra)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_notice_shows_announced_projects_and_masked_payments() {
    let (_dir, server, _client, county) = start().await;
    let work = tempfile::tempdir().unwrap();

    let html = public_notice(&server, &work.path().join("dx.html"), &[]);
    assert!(html.contains("扶贫项目和到户资金公告公示"));
    // The announced project, with its money to the fen.
    assert!(html.contains("<td>¥150,000.00</td>"), "budget");
    assert!(html.contains("<td>¥120,000.00</td>"), "received");
    assert!(html.contains(ANNOUNCE_DOC));
    assert!(html.contains("带动脱贫户 3 户增收；项目竣工验收合格率 100%"));
    // Linxia's project is another county's; nothing unannounced shows.
    assert!(!html.contains("修建产业路"));
    // Every payment, each household's reference masked, never whole.
    for (i, seq) in county.d.iter().enumerate() {
        assert!(html.contains(&format!("<td>{seq}</td>")), "payment {seq}");
        let whole = format!("HH-622926-000{}", i + 1);
        assert!(!html.contains(&whole), "{whole} is masked");
        assert!(html.contains(&format!("HH-6********0{}", i + 1)));
    }
    let paid: u64 = PAID.iter().sum();
    assert!(html.contains(&format!(
        "共 3 笔，已拨付合计 {}",
        fundtrail_core::money::format_fen(u128::from(paid))
    )));

    // One village: only its household's payment.
    let village = public_notice(
        &server,
        &work.path().join("village.html"),
        &["--village", "622926100202"],
    );
    assert!(village.contains("HH-6********02"));
    assert!(!village.contains("HH-6********01") && !village.contains("HH-6********03"));
    assert!(village.contains(&format!("<td>{}</td>", county.d[1])));

    // The same as CSV for a spreadsheet.
    let csv = public_notice(&server, &work.path().join("dx.csv"), &["--csv"]);
    let csv = csv.strip_prefix('\u{feff}').expect("a byte-order mark");
    assert!(csv.contains("项目公示") && csv.contains("到户资金公示"));
    assert!(csv.contains(",150000.00,") && csv.contains(",120000.00,"));
    assert!(!csv.contains("HH-622926-0001"));
    assert_eq!(csv.matches("已拨付").count(), 3);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// The bank's results (rules 5).

/// The journal as it stands replays from genesis in an outside verifier:
/// every record's effects recomputed equal, every source conserved.
fn replays_from_genesis(server: &TestServer) {
    use fundtrail_store::Journal;
    let journal = Journal::open(
        &server
            .data_dir
            .join(fundtrail_store::journal::JOURNAL_FILE_NAME),
        fundtrail_store::header::FileKind::Journal,
        None,
    )
    .unwrap();
    let mut replay = fundtrail_verify::Replay::new();
    for frame in journal.scan(0).unwrap() {
        replay.push(&frame.unwrap().record).unwrap();
    }
    assert_eq!(replay.record_count(), server.engine.record_count());
    replay.summary().expect("every source conserved");
}

fn confirm(disbursement_seq: u64, household: &str, reference: &str) -> B {
    B::ConfirmCredit(pb::ConfirmCredit {
        disbursement_seq,
        household_account_id: household.into(),
        bank_reference: reference.into(),
        document_no: "农信回单〔2026〕1号".into(),
    })
}

fn bank_failure(
    disbursement_seq: u64,
    household: &str,
    to: &str,
    amount_fen: u64,
    reference: &str,
) -> B {
    B::Return(pb::Return {
        from_account_id: household.into(),
        to_account_id: to.into(),
        amount_fen,
        kind: pb::ReturnKind::BankFailure as i32,
        document_no: "农信回单〔2026〕1号".into(),
        reason: "账户已销户".into(),
        disbursement_seq,
        bank_reference: reference.into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banks_results_settle_payments_and_a_failure_brings_the_money_back() {
    let (_dir, server, mut client, county) = start().await;
    let dongxiang = county.dongxiang.clone();
    let d = county.d;
    // Credited four days ago (the result file came today); the second
    // household's card was closed, so the bank sent its money back.
    let credited = post_dated(
        &mut client,
        &dongxiang,
        &date(4),
        false,
        confirm(d[0], HOUSEHOLDS[0], "NX-20260001"),
    )
    .await;
    let failed = ok(
        &mut client,
        &dongxiang,
        bank_failure(d[1], HOUSEHOLDS[1], "dx-proj-1", PAID[1], "NX-20260002"),
    )
    .await;
    let legs = failed.effects.clone().unwrap().legs;
    assert_eq!(legs.len(), 1);
    assert_eq!(
        (
            legs[0].from_account_id.as_str(),
            legs[0].to_account_id.as_str()
        ),
        (HOUSEHOLDS[1], "dx-proj-1")
    );
    assert_eq!(
        (legs[0].amount_fen, legs[0].from_arrival_seq),
        (PAID[1], Some(d[1]))
    );

    // The statements say what the bank said.
    let first = statement(&mut client, HOUSEHOLDS[0]).await.unwrap();
    let line = &first.payments[0];
    assert_eq!(line.bank_status(), pb::BankStatus::Credited);
    assert_eq!(
        (
            line.bank_result_seq,
            line.bank_reference.as_str(),
            line.bank_day
        ),
        (credited.seq, "NX-20260001", today() - 4)
    );
    assert_eq!((first.received_fen, first.balance_fen), (PAID[0], PAID[0]));
    let second = statement(&mut client, HOUSEHOLDS[1]).await.unwrap();
    let line = &second.payments[0];
    assert_eq!(line.bank_status(), pb::BankStatus::Failed);
    assert_eq!((line.bank_result_seq, line.bank_day), (failed.seq, today()));
    assert_eq!((second.received_fen, second.balance_fen), (0, 0));
    let third = statement(&mut client, HOUSEHOLDS[2]).await.unwrap();
    assert_eq!(third.payments[0].bank_status(), pb::BankStatus::Unconfirmed);

    // The trace shows the money back at the project, not at the household.
    let graph = trace_forward(&mut client, county.s, 0, "").await.unwrap();
    assert_eq!(graph.reached_households_fen, PAID_TOTAL - PAID[1]);
    assert_eq!(node(&graph, HOUSEHOLDS[1]).held_fen, 0);
    let back = edge(&graph, HOUSEHOLDS[1], "dx-proj-1");
    assert_eq!(
        (back.kinds.clone(), back.first_seq),
        (vec!["Return".to_string()], failed.seq)
    );
    assert_eq!(
        accounted(&graph),
        graph.traced_fen,
        "Σ held + withdrawn = traced"
    );

    // Three days on, only the third payment (five days old) lacks a result.
    let findings = |days| pb::AnomaliesRequest {
        unconfirmed_after_days: days,
        page_size: 1_000,
        ..Default::default()
    };
    let unconfirmed = |r: pb::AnomaliesResponse| -> Vec<(String, Vec<u64>, u64)> {
        r.findings
            .into_iter()
            .filter(|f| f.kind == "UNCONFIRMED_PAYMENT")
            .map(|f| (f.account_id, f.seqs, f.amount_fen))
            .collect()
    };
    assert_eq!(
        unconfirmed(anomalies(&mut client, findings(3)).await),
        vec![(HOUSEHOLDS[2].to_string(), vec![d[2]], PAID[2])]
    );
    assert!(unconfirmed(anomalies(&mut client, findings(10)).await).is_empty());
    assert!(unconfirmed(anomalies(&mut client, findings(0)).await).is_empty());

    // What the rules refuse, each changing nothing.
    let requester = client.clone();
    let signed = |signer: &Signer, body: B| signer.sign(&requester.request(body));
    let on = |value_date: &str, body: B| dated(&requester, &dongxiang, value_date, false, body);
    let fp = Code::FailedPrecondition;
    let ia = Code::InvalidArgument;
    let cases = vec![
        refusal(
            "a second result for a payment",
            signed(&dongxiang, confirm(d[0], HOUSEHOLDS[0], "NX-20260009")),
            fp,
            "confirm_credit.disbursement_seq",
            "already posted",
        ),
        refusal(
            "a bank reference used before",
            signed(&dongxiang, confirm(d[2], HOUSEHOLDS[2], "NX-20260002")),
            Code::AlreadyExists,
            "confirm_credit.bank_reference",
            "already posted by record",
        ),
        refusal(
            "another county's payment",
            signed(&county.linxia, confirm(d[2], HOUSEHOLDS[2], "LX-1")),
            Code::PermissionDenied,
            "confirm_credit.disbursement_seq",
            "only the org that paid",
        ),
        refusal(
            "another household than the payment's",
            signed(&dongxiang, confirm(d[2], HOUSEHOLDS[0], "NX-20260003")),
            ia,
            "confirm_credit.household_account_id",
            "not dx-hh-1",
        ),
        refusal(
            "a record that is not a payment",
            signed(&dongxiang, confirm(county.a, HOUSEHOLDS[2], "NX-20260003")),
            Code::PermissionDenied,
            "confirm_credit.disbursement_seq",
            "names no household payment",
        ),
        refusal(
            "credited before it was paid",
            on(&date(6), confirm(d[2], HOUSEHOLDS[2], "NX-20260003")),
            fp,
            "value_date",
            "cannot have credited",
        ),
        refusal(
            "a card-number-shaped reference",
            signed(
                &dongxiang,
                confirm(d[2], HOUSEHOLDS[2], "6222021234567890123"),
            ),
            ia,
            "confirm_credit.bank_reference",
            "bank card number",
        ),
        refusal(
            "a failure for less than the payment",
            signed(
                &dongxiang,
                bank_failure(d[2], HOUSEHOLDS[2], "dx-proj-1", PAID[2] - 1, "NX-20260003"),
            ),
            ia,
            "return.amount_fen",
            "whole payment",
        ),
        refusal(
            "a failure sent elsewhere than the paying account",
            signed(
                &dongxiang,
                bank_failure(d[2], HOUSEHOLDS[2], "dx-pool", PAID[2], "NX-20260003"),
            ),
            ia,
            "return.to_account_id",
            "the account that paid",
        ),
        refusal(
            "reversing a credited payment",
            signed(&dongxiang, reverse(d[0], "东财农〔2026〕91号")),
            fp,
            "reversal.target_seq",
            "CLAWBACK",
        ),
        refusal(
            "reversing the bank's failure",
            signed(&dongxiang, reverse(failed.seq, "东财农〔2026〕92号")),
            fp,
            "reversal.target_seq",
            "not reversed",
        ),
    ];
    check_refusals(&server, &mut client, cases).await;

    // The third payment settles once the bank says so.
    ok(
        &mut client,
        &dongxiang,
        confirm(d[2], HOUSEHOLDS[2], "NX-20260003"),
    )
    .await;
    assert!(unconfirmed(anomalies(&mut client, findings(3)).await).is_empty());
    replays_from_genesis(&server);
}

// ---------------------------------------------------------------------------
// Programme rules and the compliance report (rules 5).

fn programme_rules(household_max_fen: u64, share: u32, idle_days: u32, announce: bool) -> B {
    B::SetProgrammeRules(pb::SetProgrammeRules {
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
        vec![("IDLE_BEYOND_RULE".to_string(), "lx-xczx".to_string())]
    );
    assert_eq!(
        kinds_at(
            only(pb::ComplianceRequest {
                level: "province".into(),
                ..Default::default()
            })
            .await
        ),
        vec![("IDLE_BEYOND_RULE".to_string(), "gs-xczx".to_string())]
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

    // A county reads the breaches at its own accounts only.
    let mut linxia = server.client_as(&county.linxia).await;
    assert_eq!(
        kinds_at(breach_rows(
            &compliance_of(&mut linxia, pb::ComplianceRequest::default()).await
        )),
        vec![("IDLE_BEYOND_RULE".to_string(), "lx-xczx".to_string())]
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
