//! Following the money over real gRPC (docs/design.md §9): a county chain from a
//! central appropriation through the province, the county's programme
//! account, its consolidated pool and a library project down to households,
//! with imported records carrying past value dates so that money has ages.
//! Every query the auditors use, and every refusal of the new record kinds
//! (each checked to change nothing).
//!
//! This module is the scenario and the helpers its tests share; the tests
//! are in `tests/county_*.rs`, one file a feature.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use std::collections::{BTreeMap, BTreeSet};
pub use std::sync::Arc;

pub use crate::common::*;
pub use fundtrail_api::pb;
pub use fundtrail_api::pb::request::Body as B;
pub use fundtrail_api::pb::trace_backward_request::Target;
pub use fundtrail_client::{Client, Signer};
pub use fundtrail_core::clock::ManualClock;
pub use fundtrail_core::dates::{day_of_ms, format_date, Day};
pub use tonic::Code;
#[allow(unused_imports)]
pub use tonic_types::StatusExt;

pub const CENTRAL: u64 = 1_000_000_00;
pub const TO_PROVINCE: u64 = 600_000_00;
pub const TO_DONGXIANG: u64 = 300_000_00;
pub const TO_LINXIA: u64 = 100_000_00;
/// Budget quota issued to the province and the counties: the province's
/// and the counties more than the cash sent them, so tests may send more.
pub const QUOTA_PROVINCE: u64 = TO_PROVINCE + 100_000_00;
pub const QUOTA_DONGXIANG: u64 = TO_DONGXIANG + 50_000_00;
pub const QUOTA_LINXIA: u64 = TO_LINXIA + 50_000_00;
/// Dongxiang's own budget money, appropriated into its programme account.
pub const COUNTY_OWN: u64 = 50_000_00;
pub const CONSOLIDATED: u64 = 200_000_00;
pub const LINXIA_CONSOLIDATED: u64 = 50_000_00;
pub const BUDGET: u64 = 150_000_00;
pub const ALLOCATED: u64 = 120_000_00;
pub const PAID: [u64; 3] = [10_000_00, 20_000_00, 30_000_00];
pub const PAID_TOTAL: u64 = 60_000_00;

pub const CENTRAL_PROGRAMME: &str = "2130599";
pub const COUNTY_PROGRAMME: &str = "2130504";
pub const PERIOD: &str = "2025-12";

pub const S_DOC: &str = "财农〔2024〕12号";
pub const T1_DOC: &str = "财农〔2025〕20号";
pub const S2_DOC: &str = "东财预〔2025〕5号";
pub const T2_DOC: &str = "甘财农〔2025〕7号";
pub const T3_DOC: &str = "甘财农〔2025〕8号";
pub const C_DOC: &str = "东政办〔2025〕9号";
pub const LC_DOC: &str = "临政办〔2026〕2号";
pub const ANNOUNCE_DOC: &str = "东乡公示〔2025〕1号";
pub const A_DOC: &str = "东财农〔2025〕30号";
pub const D_DOCS: [&str; 3] = [
    "东财农〔2025〕31号",
    "东财农〔2025〕32号",
    "东财农〔2025〕33号",
];

pub const HOUSEHOLDS: [&str; 3] = ["dx-hh-1", "dx-hh-2", "dx-hh-3"];

pub fn today() -> Day {
    day_of_ms(fundtrail_client::now_ms())
}

/// "YYYY-MM-DD" of `days_ago` days before today (China Standard Time).
pub fn date(days_ago: i32) -> String {
    format_date(today() - days_ago)
}

// ---------------------------------------------------------------------------
// Request bodies.

pub fn appropriation_of(account: &str, amount_fen: u64, programme: &str, document: &str) -> B {
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

pub fn consolidation(from: &str, pool: &str, amount_fen: u64, plan: &str) -> B {
    B::Consolidation(pb::Consolidation {
        from_account_id: from.into(),
        pool_account_id: pool.into(),
        amount_fen,
        sources: Vec::new(),
        plan_document_no: plan.into(),
        memo: String::new(),
    })
}

pub fn register_project(id: &str, location: &str, budget_fen: u64, targets: &[&str]) -> B {
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

pub fn announce(id: &str, document: &str) -> B {
    B::AnnounceProject(pb::AnnounceProject {
        account_id: id.into(),
        document_no: document.into(),
        memo: String::new(),
    })
}

pub fn allocation(pool: &str, project: &str, amount_fen: u64, document: &str) -> B {
    B::Allocation(pb::Allocation {
        quota_seq: None,
        pool_account_id: pool.into(),
        project_account_id: project.into(),
        amount_fen,
        sources: Vec::new(),
        document_no: document.into(),
        memo: String::new(),
    })
}

pub fn household_in(id: &str, registry_ref: &str, village: &str) -> B {
    B::RegisterHousehold(pb::RegisterHousehold {
        account_id: id.into(),
        household_ref: registry_ref.into(),
        village_code: village.into(),
        basis: pb::SubsidyBasis::PerHousehold as i32,
        members: 4,
    })
}

pub fn pay(from: &str, household: &str, amount_fen: u64, period: &str, document: &str) -> B {
    B::Disbursement(pb::Disbursement {
        quota_seq: None,
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

pub fn set_status(id: &str, status: pb::HouseholdStatus, document: &str) -> B {
    B::SetHouseholdStatus(pb::SetHouseholdStatus {
        account_id: id.into(),
        status: status as i32,
        document_no: document.into(),
        reason: "入户核查".into(),
    })
}

pub fn give_back(from: &str, to: &str, amount_fen: u64, kind: pb::ReturnKind, reason: &str) -> B {
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

pub fn reverse(target_seq: u64, document: &str) -> B {
    B::Reversal(pb::Reversal {
        target_seq,
        document_no: document.into(),
        reason: "录入错误".into(),
    })
}

// ---------------------------------------------------------------------------
// Posting.

/// A request carrying a business date, signed now.
pub fn dated(
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

pub async fn post_dated(
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
pub async fn imported(client: &mut Client, signer: &Signer, days_ago: i32, body: B) -> u64 {
    post_dated(client, signer, &date(days_ago), true, body)
        .await
        .seq
}

// ---------------------------------------------------------------------------
// The county chain.

/// 财政部 → 甘肃省财政厅 → 东乡县 (and 临夏县) → 东乡县 pool → project →
/// households. Ages: appropriation 800 days ago, to the province 400, to
/// the counties 200, consolidated 60, allocated 20, paid 5.
pub struct County {
    pub root: Signer,
    pub province: Signer,
    pub dongxiang: Signer,
    pub linxia: Signer,
    /// The central appropriation (source S).
    pub s: u64,
    /// Dongxiang's own appropriation into its programme account (source S2).
    pub s2: u64,
    pub t1: u64,
    pub t2: u64,
    pub t3: u64,
    /// Linxia's consolidation (today).
    pub lc: u64,
    pub c: u64,
    pub a: u64,
    pub d: [u64; 3],
    pub d_commit_ms: [i64; 3],
    /// The record that opened dx-xczx.
    pub dx_xczx_opened: u64,
    /// Budget quota, issued on the days the cash then followed: the
    /// centre's own (800 days ago), the province's (400), each county's
    /// (200). Transfers down and payments name them (rules 9).
    pub quota_central: u64,
    pub quota_province: u64,
    pub quota_dongxiang: u64,
    pub quota_linxia: u64,
    /// 东乡's own budget authority for its own money (S2, programme
    /// 2130504): quota it created for itself, not 直达资金.
    pub quota_county_own: u64,
}

impl County {
    /// `body` naming the scenario's quota it draws on (rules 9).
    pub fn quota(&self, body: B) -> B {
        quota_of_gansu(
            body,
            self.quota_province,
            self.quota_dongxiang,
            self.quota_linxia,
        )
    }
}

pub async fn build_county(client: &mut Client, root: Signer, clock: &ManualClock) -> County {
    use pb::AccountKind as K;
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
    register_gansu(client, &root, &province).await;
    register_gansu_counties(client, &province, &dongxiang, &linxia).await;
    for org in ["gs-czt", "dx-czj", "lx-czj"] {
        ok(client, &root, import_window(org, &until)).await;
    }
    let quota_central = imported(client, &root, 800, quota("mof", None, CENTRAL, S_DOC)).await;
    let quota_province = imported(
        client,
        &root,
        400,
        quota("gs-czt", Some(quota_central), QUOTA_PROVINCE, T1_DOC),
    )
    .await;
    let quota_dongxiang = imported(
        client,
        &province,
        200,
        quota("dx-czj", Some(quota_province), QUOTA_DONGXIANG, T2_DOC),
    )
    .await;
    let quota_linxia = imported(
        client,
        &province,
        200,
        quota("lx-czj", Some(quota_province), QUOTA_LINXIA, T3_DOC),
    )
    .await;
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
        against(
            Some(quota_province),
            &[],
            transfer("mof-xczx", "gs-xczx", TO_PROVINCE, T1_DOC),
        ),
    )
    .await;
    let s2 = imported(
        client,
        &dongxiang,
        300,
        appropriation_of("dx-xczx", COUNTY_OWN, COUNTY_PROGRAMME, S2_DOC),
    )
    .await;
    let mut own = own_quota("dx-czj", COUNTY_OWN, S2_DOC);
    if let B::IssueQuota(q) = &mut own {
        q.programme_code = COUNTY_PROGRAMME.into();
    }
    let quota_county_own = imported(client, &dongxiang, 300, own).await;
    let t2 = imported(
        client,
        &province,
        200,
        against(
            Some(quota_dongxiang),
            &[],
            transfer("gs-xczx", "dx-xczx", TO_DONGXIANG, T2_DOC),
        ),
    )
    .await;
    let t3 = imported(
        client,
        &province,
        200,
        against(
            Some(quota_linxia),
            &[],
            transfer("gs-xczx", "lx-xczx", TO_LINXIA, T3_DOC),
        ),
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
            against(
                Some(quota_dongxiang),
                &[],
                pay("dx-proj-1", household, PAID[i], PERIOD, D_DOCS[i]),
            ),
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
        quota_central,
        quota_province,
        quota_dongxiang,
        quota_linxia,
        quota_county_own,
    }
}

pub async fn start() -> (tempfile::TempDir, TestServer, Client, County) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(fundtrail_core::clock::now_ms()));
    let server = TestServer::start_clocked(dir.path(), fast_checkpoints(), clock.clone()).await;
    let mut client = server.client().await;
    let county = build_county(&mut client, server.root(), &clock).await;
    (dir, server, client, county)
}

// ---------------------------------------------------------------------------
// Query helpers.

pub async fn trace_forward(
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

pub async fn trace_backward(
    client: &mut Client,
    target: Option<Target>,
) -> Result<pb::TraceBackwardResponse, tonic::Status> {
    client
        .query
        .trace_backward(pb::TraceBackwardRequest { target })
        .await
        .map(|r| r.into_inner())
}

pub async fn statement(
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

pub async fn idle(
    client: &mut Client,
    request: pb::IdleFundsRequest,
) -> Result<pb::IdleFundsResponse, tonic::Status> {
    client
        .query
        .idle_funds(request)
        .await
        .map(|r| r.into_inner())
}

pub async fn anomalies(
    client: &mut Client,
    request: pb::AnomaliesRequest,
) -> pb::AnomaliesResponse {
    client
        .query
        .anomalies(request)
        .await
        .expect("anomalies")
        .into_inner()
}

pub async fn account_as_of(
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

pub async fn account_on(
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

pub async fn list(client: &mut Client, request: pb::ListEntriesRequest) -> pb::ListEntriesResponse {
    client
        .query
        .list_entries(request)
        .await
        .expect("list entries")
        .into_inner()
}

/// Every entry the filter selects, page by page.
pub async fn list_all(client: &mut Client, mut request: pb::ListEntriesRequest) -> Vec<pb::Entry> {
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

pub fn seqs(entries: &[pb::Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

pub fn edges(graph: &pb::FlowGraph) -> BTreeMap<(String, String), u64> {
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

pub fn held(graph: &pb::FlowGraph) -> BTreeMap<String, u64> {
    graph
        .nodes
        .iter()
        .map(|n| (n.account_id.clone(), n.held_fen))
        .collect()
}

pub fn received(graph: &pb::FlowGraph) -> BTreeMap<String, u64> {
    graph
        .nodes
        .iter()
        .map(|n| (n.account_id.clone(), n.received_fen))
        .collect()
}

pub fn edge<'g>(graph: &'g pb::FlowGraph, from: &str, to: &str) -> &'g pb::FlowEdge {
    graph
        .edges
        .iter()
        .find(|e| e.from_account_id == from && e.to_account_id == to)
        .unwrap_or_else(|| panic!("no edge {from} → {to} in {:?}", graph.edges))
}

pub fn node<'g>(graph: &'g pb::FlowGraph, account: &str) -> &'g pb::FlowNode {
    graph
        .nodes
        .iter()
        .find(|n| n.account_id == account)
        .unwrap_or_else(|| panic!("no node {account} in {:?}", graph.nodes))
}

pub fn map<V: Copy>(pairs: &[(&str, V)]) -> BTreeMap<String, V> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

pub fn edge_map(pairs: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    pairs
        .iter()
        .map(|(f, t, a)| ((f.to_string(), t.to_string()), *a))
        .collect()
}

/// Σ held over the nodes plus what left the ledger: every fen traced must be somewhere.
pub fn accounted(graph: &pb::FlowGraph) -> u64 {
    graph.nodes.iter().map(|n| n.held_fen).sum::<u64>() + graph.withdrawn_fen
}

pub fn households_hold(graph: &pb::FlowGraph) -> u64 {
    graph
        .nodes
        .iter()
        .filter(|n| n.kind == pb::AccountKind::Household as i32)
        .map(|n| n.held_fen)
        .sum()
}

pub fn code_of<T>(result: Result<T, tonic::Status>) -> Option<Code> {
    result.err().map(|s| s.code())
}

/// Where the central appropriation's money sits after the chain is built.
pub fn central_held() -> BTreeMap<String, u64> {
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

pub fn central_edges() -> BTreeMap<(String, String), u64> {
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

/// The journal as it stands replays from genesis in an outside verifier:
/// every record's effects recomputed equal, every source conserved.
pub fn replays_from_genesis(server: &TestServer) {
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

pub fn refusal(
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

pub struct Refusal {
    pub name: &'static str,
    pub request: pb::SignedRequest,
    pub code: Code,
    pub field: &'static str,
    /// A phrase of the message that shows the request was refused for this reason.
    pub says: &'static str,
}

/// Posts each case alone and in a batch: each is refused with its code,
/// field and reason, and neither adds a record nor changes derived state.
pub async fn check_refusals(server: &TestServer, client: &mut Client, cases: Vec<Refusal>) {
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
