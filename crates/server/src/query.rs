//! The engine as the queries see it ([`LedgerView`], [`Records`]), and the
//! one place their domain answers become `fundtrail.v1.Query` messages.

use std::borrow::Borrow;

use fundtrail_api::{
    account_kind_to_pb, effects_to_core, household_status_to_pb, monitoring_category_to_pb, pb,
    request_to_core,
};
use fundtrail_core::dates::{day_of_ms, Day};
use fundtrail_core::model::{Request, SubsidyBasis};
use fundtrail_core::state::{Kv, StateRead};
use fundtrail_core::{Error, Fault};
use fundtrail_query::types as q;
use fundtrail_query::{Entry, LedgerView, Records};
use prost::Message;

use crate::engine::Engine;

impl LedgerView for Engine {
    fn state(&self) -> &dyn Kv {
        Engine::state(self)
    }

    fn record_count(&self) -> u64 {
        Engine::record_count(self)
    }

    fn today(&self) -> Day {
        day_of_ms(self.clock().now_ms())
    }

    fn request(&self, seq: u64) -> Result<(Request, String), Error> {
        let entry = self.read(seq)?.entry;
        Ok((entry.request, entry.key_id))
    }
}

/// A record as the server reads it for an answer: its wire form (bytes,
/// signed request, decoded body, effects) and its domain form, from one
/// decoding.
pub struct ReadEntry {
    pub wire: pb::Entry,
    pub entry: Entry,
}

impl Borrow<Entry> for ReadEntry {
    fn borrow(&self) -> &Entry {
        &self.entry
    }
}

impl Records for Engine {
    type Read = ReadEntry;

    fn read(&self, seq: u64) -> Result<ReadEntry, Error> {
        let bytes = self.record_bytes(seq)?;
        let record = pb::Record::decode(bytes.as_slice()).map_err(|e| {
            Fault::corrupt(format!("record {seq} in the journal does not decode: {e}"))
        })?;
        let signed = record
            .request
            .ok_or_else(|| Fault::corrupt(format!("record {seq} holds no request")))?;
        // Every stored payload passed this decoding when it was accepted.
        let body = pb::Request::decode(signed.payload.as_slice())
            .map_err(|e| Fault::corrupt(format!("record {seq}'s payload does not decode: {e}")))?;
        let request = request_to_core(body.clone())
            .map_err(|e| Fault::corrupt(format!("record {seq}'s request does not decode: {e}")))?;
        let effects = record.effects.unwrap_or_default();
        let entry = Entry {
            seq,
            commit_time_ms: record.commit_time_ms,
            key_id: signed.key_id.clone(),
            request,
            effects: effects_to_core(&effects),
            reversed_by_seq: self.state().movement(seq)?.and_then(|m| m.reversed_by),
            record_len: bytes.len(),
        };
        let wire = pb::Entry {
            seq,
            commit_time_ms: record.commit_time_ms,
            request: Some(signed),
            body: Some(body),
            effects: Some(effects),
            record: bytes,
            reversed_by_seq: entry.reversed_by_seq,
        };
        Ok(ReadEntry { wire, entry })
    }

    fn commit_time_ms(&self, seq: u64) -> Result<i64, Error> {
        Ok(self.record(seq)?.commit_time_ms)
    }
}

pub fn trace_forward_request(r: pb::TraceForwardRequest) -> q::TraceForwardRequest {
    q::TraceForwardRequest {
        seq: r.seq,
        page_size: r.page_size,
        page_token: r.page_token,
    }
}

pub fn trace_backward_request(r: pb::TraceBackwardRequest) -> q::TraceBackwardRequest {
    use pb::trace_backward_request::Target;
    q::TraceBackwardRequest {
        target: r.target.map(|target| match target {
            Target::AccountId(account_id) => q::BackwardTarget::Account(account_id),
            Target::Seq(seq) => q::BackwardTarget::Record(seq),
        }),
    }
}

pub fn idle_funds_request(r: pb::IdleFundsRequest) -> q::IdleFundsRequest {
    q::IdleFundsRequest {
        older_than_days: r.older_than_days,
        level: r.level,
        division_prefix: r.division_prefix,
        programme_code: r.programme_code,
        page_token: r.page_token,
    }
}

pub fn anomalies_request(r: pb::AnomaliesRequest) -> q::AnomaliesRequest {
    q::AnomaliesRequest {
        idle_older_than_days: r.idle_older_than_days,
        page_token: r.page_token,
        unconfirmed_after_days: r.unconfirmed_after_days,
    }
}

pub fn flow_graph(g: q::FlowGraph) -> pb::FlowGraph {
    pb::FlowGraph {
        source_seq: g.source_seq,
        traced_fen: g.traced_fen,
        reached_households_fen: g.reached_households_fen,
        withdrawn_fen: g.withdrawn_fen,
        nodes: g
            .nodes
            .into_iter()
            .map(|n| pb::FlowNode {
                account_id: n.account_id,
                owner_org_id: n.owner_org_id,
                kind: account_kind_to_pb(n.kind) as i32,
                name: n.name,
                division_code: n.division_code,
                received_fen: n.received_fen,
                held_fen: n.held_fen,
                held_since_day: n.held_since_day,
            })
            .collect(),
        edges: g
            .edges
            .into_iter()
            .map(|e| pb::FlowEdge {
                from_account_id: e.from_account_id,
                to_account_id: e.to_account_id,
                amount_fen: e.amount_fen,
                records: e.records,
                first_seq: e.first_seq,
                last_seq: e.last_seq,
                kinds: e.kinds,
                document_nos: e.document_nos,
            })
            .collect(),
        next_page_token: g.next_page_token,
        source_document_no: g.source_document_no,
        programme_code: g.programme_code,
    }
}

pub fn trace_backward_response(r: q::TraceBackwardResponse) -> pb::TraceBackwardResponse {
    pb::TraceBackwardResponse {
        lineages: r
            .lineages
            .into_iter()
            .map(|l| pb::Lineage {
                source_seq: l.source_seq,
                amount_fen: l.amount_fen,
                source_document_no: l.source_document_no,
                programme_code: l.programme_code,
                appropriating_org_id: l.appropriating_org_id,
                hops: l
                    .hops
                    .into_iter()
                    .map(|h| pb::Hop {
                        seq: h.seq,
                        kind: h.kind,
                        from_account_id: h.from_account_id,
                        to_account_id: h.to_account_id,
                        amount_fen: h.amount_fen,
                        document_no: h.document_no,
                        signer_org_id: h.signer_org_id,
                        key_id: h.key_id,
                        value_day: h.value_day,
                    })
                    .collect(),
            })
            .collect(),
        truncated: r.truncated,
    }
}

pub fn household_statement(s: q::HouseholdStatementResponse) -> pb::HouseholdStatementResponse {
    pb::HouseholdStatementResponse {
        account_id: s.account_id,
        owner_org_id: s.owner_org_id,
        household_ref: s.household_ref,
        village_code: s.village_code,
        basis: match s.basis {
            SubsidyBasis::PerHousehold => pb::SubsidyBasis::PerHousehold,
            SubsidyBasis::PerPerson => pb::SubsidyBasis::PerPerson,
        } as i32,
        members: s.members,
        status_today: household_status_to_pb(s.status_today) as i32,
        monitoring_today: monitoring_category_to_pb(s.monitoring_today) as i32,
        monitoring: s
            .monitoring
            .into_iter()
            .map(|(effective_day, category, seq)| pb::MonitoringChange {
                effective_day,
                category: monitoring_category_to_pb(category) as i32,
                seq,
            })
            .collect(),
        statuses: s
            .statuses
            .into_iter()
            .map(|c| pb::HouseholdStatusChange {
                effective_day: c.effective_day,
                status: household_status_to_pb(c.status) as i32,
                seq: c.seq,
            })
            .collect(),
        payments: s
            .payments
            .into_iter()
            .map(|p| pb::HouseholdPaymentLine {
                seq: p.seq,
                value_day: p.value_day,
                amount_fen: p.amount_fen,
                programme_code: p.programme_code,
                period: p.period,
                document_no: p.document_no,
                from_account_id: p.from_account_id,
                reversed: p.reversed,
                sources: p
                    .sources
                    .into_iter()
                    .map(|a| pb::SourceAmount {
                        source_seq: a.source_seq,
                        amount_fen: a.amount_fen,
                    })
                    .collect(),
                bank_status: match &p.bank {
                    None => pb::BankStatus::Unconfirmed,
                    Some(b) if b.credited => pb::BankStatus::Credited,
                    Some(_) => pb::BankStatus::Failed,
                } as i32,
                bank_result_seq: p.bank.as_ref().map_or(0, |b| b.seq),
                bank_reference: p
                    .bank
                    .as_ref()
                    .map(|b| b.bank_reference.clone())
                    .unwrap_or_default(),
                bank_day: p.bank.as_ref().map_or(0, |b| b.day),
            })
            .collect(),
        received_fen: s.received_fen,
        balance_fen: s.balance_fen,
    }
}

pub fn idle_funds_response(r: q::IdleFundsResponse) -> pb::IdleFundsResponse {
    pb::IdleFundsResponse {
        rows: r
            .rows
            .into_iter()
            .map(|row| pb::IdleFundsRow {
                account_id: row.account_id,
                owner_org_id: row.owner_org_id,
                division_code: row.division_code,
                level: row.level,
                kind: account_kind_to_pb(row.kind) as i32,
                name: row.name,
                balance_fen: row.balance_fen,
                idle_fen: row.idle_fen,
                age_0_30_fen: row.age_0_30_fen,
                age_30_90_fen: row.age_30_90_fen,
                age_90_365_fen: row.age_90_365_fen,
                age_365_730_fen: row.age_365_730_fen,
                age_730_plus_fen: row.age_730_plus_fen,
                oldest_day: row.oldest_day,
            })
            .collect(),
        next_page_token: r.next_page_token,
        as_of_day: r.as_of_day,
    }
}

pub fn breach(b: fundtrail_query::Breach) -> pb::Breach {
    pb::Breach {
        kind: b.kind.to_string(),
        programme_code: b.programme_code,
        account_id: b.account_id,
        seqs: b.seqs,
        rule_seq: b.rule_seq,
        amount_fen: b.amount_fen,
        detail: b.detail,
    }
}

pub fn anomalies_response(r: q::AnomaliesResponse) -> pb::AnomaliesResponse {
    pb::AnomaliesResponse {
        findings: r
            .findings
            .into_iter()
            .map(|f| pb::Finding {
                kind: f.kind,
                account_id: f.account_id,
                seqs: f.seqs,
                amount_fen: f.amount_fen,
                detail: f.detail,
            })
            .collect(),
        next_page_token: r.next_page_token,
    }
}

/// A quota as `fundtrail.v1.Query` shows it.
pub fn quota(standing: &fundtrail_query::Standing) -> pb::Quota {
    let (quota, used) = (&standing.quota, &standing.used);
    pb::Quota {
        seq: quota.seq,
        holder_org_id: quota.holder_org_id.clone(),
        parent_seq: quota.parent_seq,
        root_seq: quota.root_seq,
        programme_code: quota.programme_code.clone(),
        fiscal_year: quota.fiscal_year,
        document_no: quota.document_no.clone(),
        direct: quota.direct,
        project_code: quota.project_code.clone(),
        amount_fen: quota.amount.0,
        issued_down_fen: quota.issued_down.0,
        held_fen: quota.held(used).0,
        issued_day: quota.issued_day,
        cash_received_fen: used.cash_received.0,
        paid_fen: used.paid.0,
    }
}

pub fn progress_row(row: fundtrail_query::ProgressRow) -> pb::ProgressRow {
    pb::ProgressRow {
        programme_code: row.programme_code,
        month: fundtrail_core::dates::format_month(row.month),
        quota_received_fen: row.quota_received_fen,
        quota_issued_down_fen: row.quota_issued_down_fen,
        cash_received_fen: row.cash_received_fen,
        paid_fen: row.paid_fen,
        paid_basis_points: row.paid_basis_points,
    }
}
