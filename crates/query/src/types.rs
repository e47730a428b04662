//! What the queries are asked and what they answer, in domain terms.
//! Amounts are integer fen; days are `fundtrail_core::dates::Day` (days
//! since 1970-01-01, China Standard Time). The gRPC layer maps these one to
//! one onto the `fundtrail.v1.Query` messages of the same names.

use fundtrail_core::dates::Day;
use fundtrail_core::model::{AccountKind, HouseholdStatus, MonitoringCategory, SubsidyBasis};

/// Forward trace from record `seq` (an appropriation: paged by its records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceForwardRequest {
    pub seq: u64,
    pub page_size: u32,
    pub page_token: String,
}

/// One account the traced money reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowNode {
    pub account_id: String,
    pub owner_org_id: String,
    pub kind: AccountKind,
    pub name: String,
    pub division_code: String,
    pub received_fen: u64,
    pub held_fen: u64,
    /// Arrival day of the oldest traced money still held (0: none held).
    pub held_since_day: Day,
}

/// Money of the trace that went from one account to another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowEdge {
    pub from_account_id: String,
    pub to_account_id: String,
    pub amount_fen: u64,
    pub records: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub kinds: Vec<String>,
    pub document_nos: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowGraph {
    pub source_seq: u64,
    pub traced_fen: u64,
    pub reached_households_fen: u64,
    pub withdrawn_fen: u64,
    pub nodes: Vec<FlowNode>,
    pub edges: Vec<FlowEdge>,
    pub next_page_token: String,
    pub source_document_no: String,
    pub programme_code: String,
}

/// Where a backward trace starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackwardTarget {
    /// A household (every payment it received) or another account (what it holds).
    Account(String),
    /// A record that moved money.
    Record(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceBackwardRequest {
    pub target: Option<BackwardTarget>,
}

/// One record on the way from an appropriation to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub seq: u64,
    pub kind: String,
    pub from_account_id: String,
    pub to_account_id: String,
    pub amount_fen: u64,
    pub document_no: String,
    pub signer_org_id: String,
    pub key_id: String,
    pub value_day: Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    pub source_seq: u64,
    pub amount_fen: u64,
    pub source_document_no: String,
    pub programme_code: String,
    pub appropriating_org_id: String,
    pub hops: Vec<Hop>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceBackwardResponse {
    pub lineages: Vec<Lineage>,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdStatusChange {
    pub effective_day: Day,
    pub status: HouseholdStatus,
    pub seq: u64,
}

/// An amount of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAmount {
    pub source_seq: u64,
    pub amount_fen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdPaymentLine {
    pub seq: u64,
    pub value_day: Day,
    pub amount_fen: u64,
    pub programme_code: String,
    pub period: String,
    pub document_no: String,
    pub from_account_id: String,
    pub reversed: bool,
    pub sources: Vec<SourceAmount>,
    /// The bank's result, when one was posted.
    pub bank: Option<fundtrail_core::model::Settlement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdStatementResponse {
    pub account_id: String,
    pub owner_org_id: String,
    pub household_ref: String,
    pub village_code: String,
    pub basis: SubsidyBasis,
    pub members: u32,
    pub status_today: HouseholdStatus,
    pub statuses: Vec<HouseholdStatusChange>,
    pub payments: Vec<HouseholdPaymentLine>,
    pub received_fen: u64,
    pub balance_fen: u64,
    pub monitoring_today: MonitoringCategory,
    /// (effective day, category, record seq), in record order.
    pub monitoring: Vec<(Day, MonitoringCategory, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdleFundsRequest {
    pub older_than_days: u32,
    /// "", "central", "province", "prefecture" or "county".
    pub level: String,
    pub division_prefix: String,
    pub programme_code: String,
    pub page_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleFundsRow {
    pub account_id: String,
    pub owner_org_id: String,
    pub division_code: String,
    pub level: String,
    pub kind: AccountKind,
    pub name: String,
    pub balance_fen: u64,
    pub idle_fen: u64,
    pub age_0_30_fen: u64,
    pub age_30_90_fen: u64,
    pub age_90_365_fen: u64,
    pub age_365_730_fen: u64,
    pub age_730_plus_fen: u64,
    pub oldest_day: Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleFundsResponse {
    pub rows: Vec<IdleFundsRow>,
    pub next_page_token: String,
    pub as_of_day: Day,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnomaliesRequest {
    pub idle_older_than_days: u32,
    pub page_token: String,
    /// Payments with no bank result this many days after their value date
    /// are findings; 0: not checked.
    pub unconfirmed_after_days: u32,
}

/// Something an auditor should follow up, naming the records involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: String,
    pub account_id: String,
    pub seqs: Vec<u64>,
    pub amount_fen: u64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomaliesResponse {
    pub findings: Vec<Finding>,
    pub next_page_token: String,
}
