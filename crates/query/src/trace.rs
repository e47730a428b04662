//! The questions auditors ask (docs/design.md §9), answered from indexes written
//! when each record was applied: a trace reads the records that carried the
//! money traced and nothing else, so its cost grows with the answer, not
//! with the ledger.

use std::collections::{BTreeMap, BTreeSet};

use fundtrail_core::apply::document_no;
use fundtrail_core::dates::{format_date, Day};
use fundtrail_core::limits::{
    HOUSEHOLD_PAYMENTS_READ_MAX, REPORT_SCAN_ROWS_MAX, TRACE_EDGE_DOCUMENTS_MAX,
    TRACE_LOTS_READ_MAX, TRACE_PAGE_RECORDS_DEFAULT, TRACE_PAGE_RECORDS_MAX, TRACE_RECORDS_MAX,
};
use fundtrail_core::model::{
    Account, AccountKind, Household, HouseholdPayment, HouseholdStatus, Lot, LotKey,
    MonitoringCategory, Movement, Project, RecordKind, Source,
};
use fundtrail_core::money::Fen;
use fundtrail_core::state::{decode, key, Kv, StateRead};
use fundtrail_core::{Code, Error, Fault, Rejection};

use crate::types::*;
use crate::{Audience, LedgerView, ROWS_PER_WANTED_CHECK};

fn too_big(what: &str) -> Rejection {
    Rejection::new(
        Code::ResourceExhausted,
        "",
        format!("{what} covers more than {TRACE_RECORDS_MAX} records; trace from the appropriation, page by page"),
    )
}

/// A total as the API carries it (u64 fen); one that does not fit is
/// refused, never cut.
pub(crate) fn fen(amount: u128) -> Result<u64, Rejection> {
    u64::try_from(amount).map_err(|_| {
        Rejection::new(
            Code::ResourceExhausted,
            "",
            format!(
                "a total of {} is more than one answer can carry; narrow the query",
                fundtrail_core::money::format_fen(amount)
            ),
        )
    })
}

/// The sum of `amounts`, exactly.
pub(crate) fn total_fen(amounts: impl IntoIterator<Item = Fen>) -> Result<u64, Rejection> {
    fen(amounts.into_iter().map(|a| u128::from(a.0)).sum())
}

/// The seq an index key ends with. Index keys are ours: one that does not
/// end with a seq is corruption.
pub(crate) fn indexed_seq(key_bytes: &[u8]) -> Result<u64, Fault> {
    key::seq_suffix(key_bytes)
        .ok_or_else(|| Fault::corrupt("an index key of derived state does not end with a seq"))
}

/// The movement of a record that an index or a leg names.
pub(crate) fn indexed_movement<K: Kv + ?Sized>(state: &K, seq: u64) -> Result<Movement, Error> {
    Ok(state.movement(seq)?.ok_or_else(|| {
        Fault::corrupt(format!(
            "derived state names record {seq} as a movement but holds none for it"
        ))
    })?)
}

/// An account that derived state names (in an index, a lot or a registry entry).
pub(crate) fn indexed_account<K: Kv + ?Sized>(
    state: &K,
    account_id: &str,
) -> Result<Account, Error> {
    Ok(state.account(account_id)?.ok_or_else(|| {
        Fault::corrupt(format!(
            "derived state names account {account_id} but holds no such account"
        ))
    })?)
}

/// A source that a leg or a lot names.
pub(crate) fn indexed_source<K: Kv + ?Sized>(state: &K, source_seq: u64) -> Result<Source, Error> {
    Ok(state
        .source(source_seq)?
        .ok_or_else(|| Fault::corrupt(format!("derived state lacks source {source_seq}")))?)
}

/// Every lot of an account, oldest first; refused, never cut, past the limit.
pub(crate) fn all_lots<K: Kv + ?Sized>(
    state: &K,
    account_id: &str,
) -> Result<Vec<(LotKey, Lot)>, Error> {
    let lots = state.lots(account_id, TRACE_LOTS_READ_MAX + 1)?;
    if lots.len() > TRACE_LOTS_READ_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            "",
            format!(
                "account {account_id} holds more than {TRACE_LOTS_READ_MAX} lots, more than one query reads"
            ),
        )
        .into());
    }
    Ok(lots)
}

/// Every payment household `account_id` received, in record order.
pub(crate) fn all_payments<K: Kv + ?Sized>(
    state: &K,
    account_id: &str,
) -> Result<Vec<HouseholdPayment>, Error> {
    let payments = state.household_payments(account_id, HOUSEHOLD_PAYMENTS_READ_MAX + 1)?;
    if payments.len() > HOUSEHOLD_PAYMENTS_READ_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            "",
            format!(
                "household {account_id} received more than {HOUSEHOLD_PAYMENTS_READ_MAX} payments, more than one query reads"
            ),
        )
        .into());
    }
    Ok(payments)
}

/// The 文号 record `seq` cites (empty if none) and the key that signed it.
fn document_and_key(ledger: &dyn LedgerView, seq: u64) -> Result<(String, String), Error> {
    let (request, key_id) = ledger.request(seq)?;
    let document = document_no(&request.body).unwrap_or_default().to_string();
    Ok((document, key_id))
}

#[derive(Default)]
struct Graph {
    /// Money of the trace each account received.
    nodes: BTreeMap<String, u128>,
    edges: BTreeMap<(String, String), FlowEdge>,
    withdrawn: u128,
}

impl Graph {
    fn add(
        &mut self,
        ledger: &dyn LedgerView,
        movement: &Movement,
        from: &Option<String>,
        to: &Option<String>,
        amount: u64,
    ) -> Result<(), Error> {
        match (from, to) {
            (Some(from), Some(to)) => {
                let edge = self
                    .edges
                    .entry((from.clone(), to.clone()))
                    .or_insert_with(|| FlowEdge {
                        from_account_id: from.clone(),
                        to_account_id: to.clone(),
                        first_seq: movement.seq,
                        ..Default::default()
                    });
                edge.amount_fen = fen(u128::from(edge.amount_fen) + u128::from(amount))?;
                edge.records += 1;
                edge.last_seq = movement.seq;
                let kind = movement.kind.name();
                if !edge.kinds.iter().any(|k| k == kind) {
                    edge.kinds.push(kind.to_string());
                }
                if edge.document_nos.len() < TRACE_EDGE_DOCUMENTS_MAX {
                    let document = document_and_key(ledger, movement.seq)?.0;
                    if !document.is_empty() && !edge.document_nos.contains(&document) {
                        edge.document_nos.push(document);
                    }
                }
                self.nodes.entry(from.clone()).or_default();
                *self.nodes.entry(to.clone()).or_default() += u128::from(amount);
            }
            (None, Some(to)) => *self.nodes.entry(to.clone()).or_default() += u128::from(amount),
            (Some(_), None) => self.withdrawn += u128::from(amount),
            (None, None) => {}
        }
        Ok(())
    }
}

/// Forward trace: from an appropriation, every record that carried its
/// source (paged); from another record, the lots it made, followed onward.
pub fn trace_forward(
    ledger: &dyn LedgerView,
    request: &TraceForwardRequest,
) -> Result<FlowGraph, Error> {
    let state = ledger.state();
    let movement = state
        .movement(request.seq)?
        .filter(|_| request.seq < ledger.record_count())
        .ok_or_else(|| {
            Rejection::not_found(
                "seq",
                format!("record {} does not exist or moved no money", request.seq),
            )
        })?;
    let page = match request.page_size {
        0 => TRACE_PAGE_RECORDS_DEFAULT,
        n if n > TRACE_PAGE_RECORDS_MAX => {
            return Err(Rejection::new(
                Code::ResourceExhausted,
                "page_size",
                format!("page_size may be at most {TRACE_PAGE_RECORDS_MAX}"),
            )
            .into())
        }
        n => n,
    } as usize;
    let mut graph = Graph::default();
    let mut next_page_token = String::new();
    // Which lots the answer is about: (account, lot) pairs holding traced money.
    let mut traced_lots: BTreeSet<(String, LotKey)> = BTreeSet::new();
    // From a record: what each account holds of its money, and what
    // reversals returned.
    let mut held_traced: BTreeMap<String, u128> = BTreeMap::new();
    let mut returned: BTreeMap<String, u128> = BTreeMap::new();
    let is_appropriation = movement.kind == RecordKind::Appropriation;
    let source_seq = movement.legs.first().map(|l| l.source_seq).ok_or_else(|| {
        Fault::corrupt(format!(
            "the movement of record {} has no legs",
            request.seq
        ))
    })?;
    let traced_fen: u128;
    if is_appropriation {
        let start: u64 = if request.page_token.is_empty() {
            0
        } else {
            request.page_token.parse().map_err(|_| {
                Rejection::invalid("page_token", "the page token is not one this server issued")
            })?
        };
        let prefix = key::seq(key::SOURCE_ENTRY, source_seq);
        let from = key::source_entry(source_seq, start);
        let rows = state.scan(&prefix, &from, page + 1)?;
        for (i, (row, _)) in rows.iter().enumerate() {
            let seq = indexed_seq(row)?;
            if seq >= ledger.record_count() {
                break;
            }
            if i == page {
                next_page_token = seq.to_string();
                break;
            }
            let carrier = indexed_movement(state, seq)?;
            for leg in carrier.legs.iter().filter(|l| l.source_seq == source_seq) {
                graph.add(
                    ledger,
                    &carrier,
                    &leg.from_account_id,
                    &leg.to_account_id,
                    leg.amount.0,
                )?;
            }
        }
        let source = indexed_source(state, source_seq)?;
        traced_fen = u128::from(source.amount.0);
    } else {
        // Follow the money this record moved: lots are visited in arrival
        // order, so a lot's traced inflow is complete before its spends are
        // read. Within a lot, money is fungible; the rule is that traced
        // money is spent first, which keeps every fen accounted for once.
        let mut pending: BTreeMap<(u64, String, u64), u128> = BTreeMap::new();
        let mut moved: u128 = 0;
        for leg in &movement.legs {
            graph.add(
                ledger,
                &movement,
                &leg.from_account_id,
                &leg.to_account_id,
                leg.amount.0,
            )?;
            moved += u128::from(leg.amount.0);
            if let Some(to) = &leg.to_account_id {
                *pending
                    .entry((movement.seq, to.clone(), leg.source_seq))
                    .or_default() += u128::from(leg.amount.0);
            }
        }
        traced_fen = moved;
        let mut visited = 0usize;
        while let Some(((arrival_seq, account_id, source), inflow)) = pending.pop_first() {
            let lot = LotKey {
                source_seq: source,
                arrival_seq,
            };
            let mut remaining = inflow;
            let prefix = key::lot_spends(&account_id, source, arrival_seq);
            for (row, _) in state.scan(&prefix, &prefix, TRACE_RECORDS_MAX + 1)? {
                if remaining == 0 {
                    break;
                }
                let seq = indexed_seq(&row)?;
                visited += 1;
                if visited > TRACE_RECORDS_MAX {
                    return Err(too_big("this trace").into());
                }
                let spender = indexed_movement(state, seq)?;
                for leg in spender.legs.iter().filter(|l| {
                    l.from_account_id.as_deref() == Some(account_id.as_str())
                        && l.source_seq == source
                        && l.from_arrival_seq == Some(arrival_seq)
                }) {
                    let part = remaining.min(u128::from(leg.amount.0));
                    if part == 0 {
                        break;
                    }
                    remaining -= part;
                    graph.add(
                        ledger,
                        &spender,
                        &leg.from_account_id,
                        &leg.to_account_id,
                        fen(part)?,
                    )?;
                    match (&leg.to_account_id, spender.is_reversal) {
                        // Money a reversal returns is shown held where it
                        // came back to; it rejoins an older lot there.
                        (Some(to), true) => *returned.entry(to.clone()).or_default() += part,
                        (Some(to), false) => {
                            *pending
                                .entry((spender.seq, to.clone(), source))
                                .or_default() += part
                        }
                        (None, _) => {}
                    }
                }
            }
            if remaining > 0 {
                traced_lots.insert((account_id.clone(), lot));
                *held_traced.entry(account_id).or_default() += remaining;
            }
        }
    }
    // What each account holds of the traced money, and since when.
    let source = indexed_source(state, source_seq)?;
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    let mut households: u128 = 0;
    for (account_id, received) in &graph.nodes {
        let account = indexed_account(state, account_id)?;
        let lots = all_lots(state, account_id)?;
        let held_lots: Vec<_> = lots
            .iter()
            .filter(|(lot, _)| {
                if is_appropriation {
                    lot.source_seq == source_seq
                } else {
                    traced_lots.contains(&(account_id.clone(), *lot))
                }
            })
            .collect();
        let held: u128 = if is_appropriation {
            held_lots
                .iter()
                .map(|(_, lot)| u128::from(lot.amount.0))
                .sum()
        } else {
            held_traced.get(account_id).copied().unwrap_or(0)
                + returned.get(account_id).copied().unwrap_or(0)
        };
        let since = held_lots
            .iter()
            .map(|(_, lot)| lot.arrival_day)
            .min()
            .unwrap_or(0);
        if account.kind == AccountKind::Household {
            households += held;
        }
        nodes.push(FlowNode {
            account_id: account.account_id.clone(),
            owner_org_id: account.owner_org_id.clone(),
            kind: account.kind,
            name: account.name.clone(),
            division_code: account.division_code.clone(),
            received_fen: fen(*received)?,
            held_fen: fen(held)?,
            held_since_day: since,
        });
    }
    Ok(FlowGraph {
        source_seq,
        traced_fen: fen(traced_fen)?,
        reached_households_fen: fen(households)?,
        withdrawn_fen: fen(graph.withdrawn)?,
        nodes,
        edges: graph.edges.into_values().collect(),
        next_page_token,
        source_document_no: source.document_no,
        programme_code: source.programme_code,
    })
}

/// Backward trace: the chains of records that brought money to `target`.
pub fn trace_backward(
    ledger: &dyn LedgerView,
    request: &TraceBackwardRequest,
) -> Result<TraceBackwardResponse, Error> {
    let state = ledger.state();
    // Starting points: (record, account it credited, source, lot it came from, amount).
    let mut starts: Vec<Start> = Vec::new();
    match &request.target {
        Some(BackwardTarget::Account(account_id)) => {
            fundtrail_core::validate::id("account_id", account_id)?;
            let account = state.account(account_id)?.ok_or_else(|| {
                Rejection::not_found(
                    "account_id",
                    format!("account {account_id:?} does not exist"),
                )
            })?;
            if account.kind == AccountKind::Household {
                // Every payment it received, spent since or not.
                for payment in all_payments(state, account_id)?
                    .iter()
                    .filter(|p| !p.reversed)
                {
                    push_legs_into(state, payment.seq, account_id, &mut starts)?;
                }
            } else {
                // What it holds now, lot by lot.
                for (lot, _) in all_lots(state, account_id)? {
                    {
                        let movement = indexed_movement(state, lot.arrival_seq)?;
                        for leg in movement.legs.iter().filter(|l| {
                            l.to_account_id.as_deref() == Some(account_id.as_str())
                                && l.source_seq == lot.source_seq
                        }) {
                            starts.push(Start::of(lot.arrival_seq, leg));
                        }
                    }
                }
            }
        }
        Some(BackwardTarget::Record(seq)) => {
            let movement = state
                .movement(*seq)?
                .filter(|_| *seq < ledger.record_count())
                .ok_or_else(|| {
                    Rejection::not_found(
                        "seq",
                        format!("record {seq} does not exist or moved no money"),
                    )
                })?;
            for leg in &movement.legs {
                starts.push(Start::of(*seq, leg));
            }
        }
        None => {
            return Err(Rejection::invalid(
                "target",
                "name a household or account (account_id) or a record (seq)",
            )
            .into())
        }
    }
    let mut lineages = Vec::new();
    let mut hops_total = 0usize;
    let mut truncated = false;
    for Start {
        seq,
        source_seq,
        from_arrival,
        amount,
    } in starts
    {
        let mut hops = Vec::new();
        let mut current = Some((seq, source_seq, from_arrival));
        // Walk up: each leg names the lot it came from, whose arrival record
        // brought it into the account one level up.
        while let Some((at_seq, source, from_arrival)) = current.take() {
            hops_total += 1;
            if hops_total > TRACE_RECORDS_MAX {
                truncated = true;
                break;
            }
            let movement = state.movement(at_seq)?.ok_or_else(|| {
                Fault::corrupt(format!(
                    "derived state lacks the movement of record {at_seq}"
                ))
            })?;
            let leg = movement
                .legs
                .iter()
                .find(|l| l.source_seq == source && l.from_arrival_seq == from_arrival)
                .ok_or_else(|| {
                    Fault::corrupt(format!(
                        "record {at_seq} has no leg of source {source} from lot {from_arrival:?}, which a later record names"
                    ))
                })?;
            let (document, key_id) = document_and_key(ledger, at_seq)?;
            hops.push(Hop {
                seq: at_seq,
                kind: movement.kind.name().to_string(),
                from_account_id: leg.from_account_id.clone().unwrap_or_default(),
                to_account_id: leg.to_account_id.clone().unwrap_or_default(),
                amount_fen: leg.amount.0,
                document_no: document,
                signer_org_id: movement.signer_org_id.clone(),
                key_id,
                value_day: movement.value_day,
            });
            if let (Some(arrival), Some(from_account)) = (from_arrival, &leg.from_account_id) {
                if arrival == at_seq {
                    break;
                }
                // The leg of the arrival record that brought this lot into `from_account`.
                let upstream = indexed_movement(state, arrival)?;
                let up_leg = upstream
                    .legs
                    .iter()
                    .find(|l| {
                        l.source_seq == source
                            && l.to_account_id.as_deref() == Some(from_account.as_str())
                    })
                    .ok_or_else(|| {
                        Fault::corrupt(format!(
                            "lot {arrival}/{source} of account {from_account} has no arriving leg"
                        ))
                    })?;
                current = Some((arrival, source, up_leg.from_arrival_seq));
            }
        }
        hops.reverse();
        let source = indexed_source(state, source_seq)?;
        lineages.push(Lineage {
            source_seq,
            amount_fen: amount,
            source_document_no: source.document_no,
            programme_code: source.programme_code,
            appropriating_org_id: hops
                .first()
                .map(|h| h.signer_org_id.clone())
                .unwrap_or_default(),
            hops,
        });
        if truncated {
            break;
        }
    }
    Ok(TraceBackwardResponse {
        lineages,
        truncated,
    })
}

fn push_legs_into<K: StateRead + ?Sized>(
    state: &K,
    seq: u64,
    account_id: &str,
    starts: &mut Vec<Start>,
) -> Result<(), Error> {
    let movement = indexed_movement(state, seq)?;
    for leg in movement
        .legs
        .iter()
        .filter(|l| l.to_account_id.as_deref() == Some(account_id))
    {
        starts.push(Start::of(seq, leg));
    }
    Ok(())
}

/// Where a backward walk starts: a leg of record `seq` that brought
/// `amount` of source `source_seq` out of lot `from_arrival`.
struct Start {
    seq: u64,
    source_seq: u64,
    from_arrival: Option<u64>,
    amount: u64,
}

impl Start {
    fn of(seq: u64, leg: &fundtrail_core::model::Leg) -> Start {
        Start {
            seq,
            source_seq: leg.source_seq,
            from_arrival: leg.from_arrival_seq,
            amount: leg.amount.0,
        }
    }
}

pub fn household_statement(
    ledger: &dyn LedgerView,
    account_id: &str,
) -> Result<HouseholdStatementResponse, Error> {
    fundtrail_core::validate::id("account_id", account_id)?;
    let state = ledger.state();
    let household = state.household(account_id)?.ok_or_else(|| {
        Rejection::not_found(
            "account_id",
            format!("{account_id:?} is not a registered household"),
        )
    })?;
    let balance = indexed_account(state, account_id)?.balance();
    let received_payments = all_payments(state, account_id)?;
    let mut payments = Vec::with_capacity(received_payments.len());
    let mut received: u128 = 0;
    for payment in &received_payments {
        let movement = indexed_movement(state, payment.seq)?;
        let legs: Vec<_> = movement
            .legs
            .iter()
            .filter(|l| l.to_account_id.as_deref() == Some(account_id))
            .collect();
        let (document, _) = document_and_key(ledger, payment.seq)?;
        let bank = state.settlement(payment.seq)?;
        let failed = bank.as_ref().is_some_and(|b| !b.credited);
        if !payment.reversed && !failed {
            received += u128::from(payment.amount.0);
        }
        payments.push(HouseholdPaymentLine {
            seq: payment.seq,
            value_day: payment.day,
            amount_fen: payment.amount.0,
            programme_code: payment.programme_code.clone(),
            period: payment.period.clone(),
            document_no: document,
            from_account_id: legs
                .first()
                .and_then(|l| l.from_account_id.clone())
                .unwrap_or_default(),
            reversed: payment.reversed,
            sources: legs
                .iter()
                .map(|l| SourceAmount {
                    source_seq: l.source_seq,
                    amount_fen: l.amount.0,
                })
                .collect(),
            bank,
        });
    }
    let today = ledger.today();
    Ok(HouseholdStatementResponse {
        account_id: household.account_id.clone(),
        owner_org_id: household.owner_org_id.clone(),
        household_ref: household.household_ref.clone(),
        village_code: household.village_code.clone(),
        basis: household.basis,
        members: household.members,
        status_today: household.status_on(today),
        monitoring_today: household.monitoring_on(today),
        monitoring: household.monitoring.clone(),
        statuses: household
            .statuses
            .iter()
            .map(|(day, status, seq)| HouseholdStatusChange {
                effective_day: *day,
                status: *status,
                seq: *seq,
            })
            .collect(),
        payments,
        received_fen: fen(received)?,
        balance_fen: fen(balance)?,
    })
}

/// The level of government a division code belongs to.
pub fn level_of(division_code: &str) -> &'static str {
    if division_code == "000000" {
        "central"
    } else if division_code.len() == 6 && division_code.ends_with("0000") {
        "province"
    } else if division_code.len() == 6 && division_code.ends_with("00") {
        "prefecture"
    } else {
        "county"
    }
}

/// Age buckets in days: [0,30), [30,90), [90,365), [365,730), 730+.
const AGE_BUCKET_DAYS: [i32; 4] = [30, 90, 365, 730];

fn idle_row(
    ledger: &dyn LedgerView,
    account: &Account,
    request: &IdleFundsRequest,
    today: Day,
    programmes: &mut BTreeMap<u64, String>,
) -> Result<Option<IdleFundsRow>, Error> {
    let mut buckets = [0u128; 5];
    let mut balance: u128 = 0;
    let mut idle: u128 = 0;
    let mut oldest = i32::MAX;
    for (lot_key, lot) in all_lots(ledger.state(), &account.account_id)? {
        if !request.programme_code.is_empty() {
            let programme = match programmes.get(&lot_key.source_seq) {
                Some(p) => p.clone(),
                None => {
                    let p = indexed_source(ledger.state(), lot_key.source_seq)?.programme_code;
                    programmes.insert(lot_key.source_seq, p.clone());
                    p
                }
            };
            if programme != request.programme_code {
                continue;
            }
        }
        let age = today - lot.arrival_day;
        let bucket = AGE_BUCKET_DAYS
            .iter()
            .position(|limit| age < *limit)
            .unwrap_or(4);
        buckets[bucket] += u128::from(lot.amount.0);
        balance += u128::from(lot.amount.0);
        if age >= i32::try_from(request.older_than_days).unwrap_or(i32::MAX) {
            idle += u128::from(lot.amount.0);
            oldest = oldest.min(lot.arrival_day);
        }
    }
    if idle == 0 {
        return Ok(None);
    }
    Ok(Some(IdleFundsRow {
        account_id: account.account_id.clone(),
        owner_org_id: account.owner_org_id.clone(),
        division_code: account.division_code.clone(),
        level: level_of(&account.division_code).to_string(),
        kind: account.kind,
        name: account.name.clone(),
        balance_fen: fen(balance)?,
        idle_fen: fen(idle)?,
        age_0_30_fen: fen(buckets[0])?,
        age_30_90_fen: fen(buckets[1])?,
        age_90_365_fen: fen(buckets[2])?,
        age_365_730_fen: fen(buckets[3])?,
        age_730_plus_fen: fen(buckets[4])?,
        oldest_day: oldest,
    }))
}

pub fn idle_funds(
    ledger: &dyn LedgerView,
    audience: &mut dyn Audience,
    request: &IdleFundsRequest,
    page_size: usize,
) -> Result<IdleFundsResponse, Error> {
    if !matches!(
        request.level.as_str(),
        "" | "central" | "province" | "prefecture" | "county"
    ) {
        return Err(Rejection::invalid(
            "level",
            "level must be central, province, prefecture or county",
        )
        .into());
    }
    let state = ledger.state();
    let today = ledger.today();
    let prefix = [key::HOLDER];
    let mut from = key::named(key::HOLDER, &request.page_token);
    if !request.page_token.is_empty() {
        from.push(0);
    }
    let rows = state.scan(&prefix, &from, REPORT_SCAN_ROWS_MAX)?;
    let mut out = Vec::new();
    let mut programmes = BTreeMap::new();
    let mut last = None;
    for (examined, (row, _)) in rows.iter().enumerate() {
        if out.len() == page_size {
            break;
        }
        if examined.is_multiple_of(ROWS_PER_WANTED_CHECK) {
            audience.still_wanted()?;
        }
        let account_id = String::from_utf8_lossy(&row[1..]).into_owned();
        last = Some(account_id.clone());
        if !audience.may_read(&account_id)? {
            continue;
        }
        let account = indexed_account(state, &account_id)?;
        if !request.level.is_empty() && level_of(&account.division_code) != request.level {
            continue;
        }
        if !account.division_code.starts_with(&request.division_prefix) {
            continue;
        }
        if let Some(row) = idle_row(ledger, &account, request, today, &mut programmes)? {
            out.push(row);
        }
    }
    let more = out.len() == page_size || rows.len() == REPORT_SCAN_ROWS_MAX;
    Ok(IdleFundsResponse {
        rows: out,
        next_page_token: if more {
            last.unwrap_or_default()
        } else {
            String::new()
        },
        as_of_day: today,
    })
}

/// Findings over households (duplicates, ineligible payments, households of
/// another county), projects (allocations before announcement) and idle money.
pub fn anomalies(
    ledger: &dyn LedgerView,
    audience: &mut dyn Audience,
    request: &AnomaliesRequest,
    page_size: usize,
) -> Result<AnomaliesResponse, Error> {
    let state = ledger.state();
    // The page token is the last key examined; households, then projects, then holders.
    let token = request.page_token.as_bytes();
    let mut findings = Vec::new();
    let mut last_key: Option<Vec<u8>> = None;
    let mut examined = 0usize;
    // In key order, so that the page token (the last key) orders the passes.
    for prefix in [key::HOLDER, key::HOUSEHOLD, key::PROJECT] {
        let prefix_bytes = [prefix];
        if !token.is_empty() && token[0] > prefix {
            continue;
        }
        let mut from = prefix_bytes.to_vec();
        if !token.is_empty() && token[0] == prefix {
            from = token.to_vec();
            from.push(0);
        }
        for (row, value) in state.scan(&prefix_bytes, &from, REPORT_SCAN_ROWS_MAX)? {
            if findings.len() >= page_size || examined >= REPORT_SCAN_ROWS_MAX {
                break;
            }
            if examined.is_multiple_of(ROWS_PER_WANTED_CHECK) {
                audience.still_wanted()?;
            }
            examined += 1;
            last_key = Some(row.clone());
            match prefix {
                key::HOUSEHOLD => {
                    let household = decode::<Household>(&value)?;
                    if audience.may_read(&household.account_id)? {
                        household_findings(
                            ledger,
                            &household,
                            request.unconfirmed_after_days,
                            &mut findings,
                        )?
                    }
                }
                key::PROJECT => {
                    let project = decode::<Project>(&value)?;
                    if audience.may_read(&project.account_id)? {
                        project_findings(ledger, &project, &mut findings)?
                    }
                }
                _ => {
                    let account_id = String::from_utf8_lossy(&row[1..]).into_owned();
                    if audience.may_read(&account_id)? {
                        let account = indexed_account(state, &account_id)?;
                        idle_findings(
                            ledger,
                            &account,
                            request.idle_older_than_days,
                            &mut findings,
                        )?;
                        diverted(ledger, &account, &mut findings)?;
                    }
                }
            }
        }
        if findings.len() >= page_size || examined >= REPORT_SCAN_ROWS_MAX {
            break;
        }
    }
    let done = findings.len() < page_size && examined < REPORT_SCAN_ROWS_MAX;
    Ok(AnomaliesResponse {
        findings,
        next_page_token: if done {
            String::new()
        } else {
            last_key
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .unwrap_or_default()
        },
    })
}

/// Days within which a household identified for monitoring must have been
/// supported (paid), or it is a MONITORED_UNPAID finding (应享未享).
pub const MONITORED_SUPPORT_DAYS: Day = 90;

/// Each time `household` came under monitoring (from no category to one)
/// and received no payment in the [`MONITORED_SUPPORT_DAYS`] days from that
/// day on, while its risk was not cleared in them: one finding, once the
/// days have passed.
fn monitored_unpaid(
    household: &Household,
    live: &[&fundtrail_core::model::HouseholdPayment],
    today: Day,
    findings: &mut Vec<Finding>,
) {
    let mut changes = household.monitoring.clone();
    changes.sort_by_key(|(day, _, seq)| (*day, *seq));
    let monitored = |c: MonitoringCategory| c != MonitoringCategory::NotMonitored;
    let mut before = MonitoringCategory::NotMonitored;
    for (i, &(identified, category, seq)) in changes.iter().enumerate() {
        let starts = monitored(category) && !monitored(before);
        before = category;
        let last_day = identified.saturating_add(MONITORED_SUPPORT_DAYS);
        if !starts || today <= last_day {
            continue;
        }
        let cleared = changes[i + 1..]
            .iter()
            .any(|(day, c, _)| *day <= last_day && !monitored(*c));
        let supported = live
            .iter()
            .any(|p| (identified..=last_day).contains(&p.day));
        if cleared || supported {
            continue;
        }
        findings.push(Finding {
            kind: "MONITORED_UNPAID".into(),
            account_id: household.account_id.clone(),
            seqs: vec![seq],
            amount_fen: 0,
            detail: format!(
                "household {} came under monitoring ({}) on {} and received no payment in the {MONITORED_SUPPORT_DAYS} days after (应享未享)",
                household.account_id,
                monitoring_name(category),
                format_date(identified)
            ),
        });
    }
}

/// A monitoring category in the words of the policy.
fn monitoring_name(category: MonitoringCategory) -> &'static str {
    match category {
        MonitoringCategory::NotMonitored => "未纳入监测",
        MonitoringCategory::Unstable => "脱贫不稳定户",
        MonitoringCategory::Marginal => "边缘易致贫户",
        MonitoringCategory::SuddenHardship => "突发严重困难户",
    }
}

fn household_findings(
    ledger: &dyn LedgerView,
    household: &Household,
    unconfirmed_after_days: u32,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let received = all_payments(ledger.state(), &household.account_id)?;
    // Reversed payments, and those the bank sent back, did not reach it.
    let mut live = Vec::with_capacity(received.len());
    for payment in received.iter().filter(|p| !p.reversed) {
        if !ledger.state().returned_by_bank(payment.seq)? {
            live.push(payment);
        }
    }
    let mut by_period: BTreeMap<(&str, &str), Vec<&fundtrail_core::model::HouseholdPayment>> =
        BTreeMap::new();
    for payment in &live {
        by_period
            .entry((payment.programme_code.as_str(), payment.period.as_str()))
            .or_default()
            .push(payment);
    }
    for ((programme, period), payments) in by_period.into_iter().filter(|(_, p)| p.len() > 1) {
        findings.push(Finding {
            kind: "DUPLICATE_PAYMENT".into(),
            account_id: household.account_id.clone(),
            seqs: payments.iter().map(|p| p.seq).collect(),
            amount_fen: total_fen(payments.iter().skip(1).map(|p| p.amount))?,
            detail: format!(
                "household {} was paid {} times for programme {programme}, period {period}",
                household.account_id,
                payments.len()
            ),
        });
    }
    let ineligible: Vec<_> = live
        .iter()
        .filter(|p| household.status_on(p.day) == HouseholdStatus::Ineligible)
        .collect();
    if !ineligible.is_empty() {
        findings.push(Finding {
            kind: "INELIGIBLE_PAYMENT".into(),
            account_id: household.account_id.clone(),
            seqs: ineligible.iter().map(|p| p.seq).collect(),
            amount_fen: total_fen(ineligible.iter().map(|p| p.amount))?,
            detail: format!("household {} was paid while not eligible (a later status change took effect before the payment date)", household.account_id),
        });
    }
    if unconfirmed_after_days > 0 {
        unconfirmed_findings(ledger, household, &live, unconfirmed_after_days, findings)?;
    }
    monitored_unpaid(household, &live, ledger.today(), findings);
    let county = ledger
        .state()
        .org(&household.owner_org_id)?
        .ok_or_else(|| {
            Fault::corrupt(format!(
                "derived state lacks org {}, which registered household {}",
                household.owner_org_id, household.account_id
            ))
        })?
        .division_code;
    if !live.is_empty() && county.len() == 6 && !household.village_code.starts_with(&county) {
        findings.push(Finding {
            kind: "OTHER_COUNTY_HOUSEHOLD".into(),
            account_id: household.account_id.clone(),
            seqs: live.iter().map(|p| p.seq).collect(),
            amount_fen: total_fen(live.iter().map(|p| p.amount))?,
            detail: format!(
                "household {} lives in village {} outside county {county} of {}, which paid it",
                household.account_id, household.village_code, household.owner_org_id
            ),
        });
    }
    Ok(())
}

/// Payments `live` to `household` with no bank result `after_days` days
/// after their value date (the day they were sent to the bank).
fn unconfirmed_findings(
    ledger: &dyn LedgerView,
    household: &Household,
    live: &[&fundtrail_core::model::HouseholdPayment],
    after_days: u32,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let due_before = ledger
        .today()
        .saturating_sub(i32::try_from(after_days).unwrap_or(i32::MAX));
    let mut unconfirmed = Vec::new();
    for payment in live.iter().filter(|p| p.day < due_before) {
        if ledger.state().settlement(payment.seq)?.is_none() {
            unconfirmed.push(*payment);
        }
    }
    if !unconfirmed.is_empty() {
        findings.push(Finding {
            kind: "UNCONFIRMED_PAYMENT".into(),
            account_id: household.account_id.clone(),
            seqs: unconfirmed.iter().map(|p| p.seq).collect(),
            amount_fen: total_fen(unconfirmed.iter().map(|p| p.amount))?,
            detail: format!(
                "household {} has {} payment(s) the bank has not confirmed {after_days} days after they were made",
                household.account_id,
                unconfirmed.len()
            ),
        });
    }
    Ok(())
}

/// Money of one programme held by a programme account of another, sent to
/// it by a Transfer (挤占挪用): its lots whose source's programme is not the
/// account's. Pools (统筹整合 merges programmes by plan), projects and
/// accounts without a programme are not judged.
/// Money an account has held a long time. Asked for a threshold, one
/// IDLE_FUNDS finding with all money at least that old; by default the two
/// buckets audit reports state apart: held one to two years
/// (IDLE_OVER_1_YEAR) and two years or more (IDLE_OVER_2_YEARS).
fn idle_findings(
    ledger: &dyn LedgerView,
    account: &Account,
    older_than_days: u32,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let threshold = match older_than_days {
        0 => AGE_BUCKET_DAYS[2],
        days => i32::try_from(days).unwrap_or(i32::MAX),
    };
    let idle_request = IdleFundsRequest {
        older_than_days: u32::try_from(threshold).expect("a positive i32 fits in u32"),
        ..Default::default()
    };
    let Some(row) = idle_row(
        ledger,
        account,
        &idle_request,
        ledger.today(),
        &mut BTreeMap::new(),
    )?
    else {
        return Ok(());
    };
    let today = ledger.today();
    let arrived = all_lots(ledger.state(), &account.account_id)?;
    let seqs_aged = |from_days: i32, until_days: i32| -> Vec<u64> {
        arrived
            .iter()
            .filter(|(_, lot)| (from_days..until_days).contains(&(today - lot.arrival_day)))
            .map(|(at, _)| at.arrival_seq)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(20)
            .collect()
    };
    let id = &account.account_id;
    let mut push = |kind: &str, amount_fen: u64, seqs: Vec<u64>, detail: String| {
        if amount_fen > 0 {
            findings.push(Finding {
                kind: kind.into(),
                account_id: id.clone(),
                seqs,
                amount_fen,
                detail,
            });
        }
    };
    if older_than_days != 0 {
        push(
            "IDLE_FUNDS",
            row.idle_fen,
            seqs_aged(threshold, i32::MAX),
            format!(
                "{id} has held {} for {threshold} days or more (since {})",
                Fen(row.idle_fen),
                format_date(row.oldest_day)
            ),
        );
        return Ok(());
    }
    let (one_year, two_years) = (AGE_BUCKET_DAYS[2], AGE_BUCKET_DAYS[3]);
    push(
        "IDLE_OVER_1_YEAR",
        row.age_365_730_fen,
        seqs_aged(one_year, two_years),
        format!(
            "{id} has held {} for one to two years ({one_year} to {} days)",
            Fen(row.age_365_730_fen),
            two_years - 1
        ),
    );
    push(
        "IDLE_OVER_2_YEARS",
        row.age_730_plus_fen,
        seqs_aged(two_years, i32::MAX),
        format!(
            "{id} has held {} for two years or more ({two_years} days or more, since {})",
            Fen(row.age_730_plus_fen),
            format_date(row.oldest_day)
        ),
    );
    Ok(())
}

fn diverted(
    ledger: &dyn LedgerView,
    account: &Account,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    if account.kind != AccountKind::Programme {
        return Ok(());
    }
    let state = ledger.state();
    let (mut amount, mut seqs, mut programmes) = (0u128, BTreeSet::new(), BTreeSet::new());
    for (lot, held) in all_lots(state, &account.account_id)? {
        let source = indexed_source(state, lot.source_seq)?;
        if source.programme_code == account.programme_code {
            continue;
        }
        let arrival = indexed_movement(state, lot.arrival_seq)?;
        if arrival.kind != RecordKind::Transfer {
            continue;
        }
        // Into an account of no programme: diverted when it left an
        // account kept for a programme (money of no programme's account,
        // such as a treasury's, may go anywhere).
        if account.programme_code.is_empty()
            && !left_a_programme_account(state, &arrival, account, lot.source_seq)?
        {
            continue;
        }
        amount += u128::from(held.amount.0);
        seqs.insert(lot.arrival_seq);
        programmes.insert(source.programme_code);
    }
    if seqs.is_empty() {
        return Ok(());
    }
    findings.push(Finding {
        kind: "DIVERTED".into(),
        account_id: account.account_id.clone(),
        seqs: seqs.into_iter().take(FINDING_SEQS_MAX).collect(),
        amount_fen: fen(amount)?,
        detail: format!(
            "{} (programme {}) holds {} of programme {} sent to it by transfer (挤占挪用)",
            account.account_id,
            match account.programme_code.as_str() {
                "" => "none",
                code => code,
            },
            fundtrail_core::money::Fen(fen(amount)?),
            programmes.into_iter().collect::<Vec<_>>().join(", ")
        ),
    });
    Ok(())
}

/// Whether `transfer` brought money of source `source_seq` into `account`
/// out of an account kept for a programme.
fn left_a_programme_account<K: Kv + ?Sized>(
    state: &K,
    transfer: &Movement,
    account: &Account,
    source_seq: u64,
) -> Result<bool, Error> {
    for leg in &transfer.legs {
        let into = leg.to_account_id.as_deref() == Some(account.account_id.as_str());
        if let (true, true, Some(from)) = (into, leg.source_seq == source_seq, &leg.from_account_id)
        {
            if !indexed_account(state, from)?.programme_code.is_empty() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What a library project's record shows, in one pass over its account's
/// records: money allocated to it before its announcement (公告公示), and
/// households paid from it before it (PAID_BEFORE_NOTICE); for an industry
/// project, payments split evenly over a village (EQUAL_SPLIT).
fn project_findings(
    ledger: &dyn LedgerView,
    project: &Project,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let state = ledger.state();
    let announced = project.announced_seq.unwrap_or(u64::MAX);
    let prefix = key::account_entries(&project.account_id);
    let (mut early, mut early_fen) = (Vec::new(), 0u128);
    let (mut paid_early, mut paid_early_fen) = (Vec::new(), 0u128);
    let mut payments = Vec::new();
    for (row, _) in state.scan(&prefix, &prefix, TRACE_RECORDS_MAX)? {
        let seq = indexed_seq(&row)?;
        let movement = indexed_movement(state, seq)?;
        if movement.reversed_by.is_some() {
            continue;
        }
        let amount: u128 = movement.legs.iter().map(|l| u128::from(l.amount.0)).sum();
        let paid_out = movement.kind == RecordKind::Disbursement
            && movement
                .legs
                .first()
                .and_then(|l| l.from_account_id.as_deref())
                == Some(project.account_id.as_str());
        match movement.kind {
            RecordKind::Allocation if seq < announced => {
                early.push(seq);
                early_fen += amount;
            }
            // A payment the bank sent back did not reach the household.
            RecordKind::Disbursement if paid_out && !state.returned_by_bank(seq)? => {
                if seq < announced {
                    paid_early.push(seq);
                    paid_early_fen += amount;
                }
                let household = movement.legs[0].to_account_id.clone().unwrap_or_default();
                payments.push((seq, household, amount));
            }
            _ => {}
        }
    }
    let before = |what: &str| match project.announced_seq {
        Some(seq) => format!(
            "project {} {what} before its announcement (record {seq})",
            project.account_id
        ),
        None => format!(
            "project {} {what} but was never publicly announced (公告公示)",
            project.account_id
        ),
    };
    if !early.is_empty() {
        findings.push(Finding {
            kind: "UNANNOUNCED_ALLOCATION".into(),
            account_id: project.account_id.clone(),
            seqs: early,
            amount_fen: fen(early_fen)?,
            detail: before("received money"),
        });
    }
    if !paid_early.is_empty() {
        let count = paid_early.len();
        findings.push(Finding {
            kind: "PAID_BEFORE_NOTICE".into(),
            account_id: project.account_id.clone(),
            seqs: paid_early.into_iter().take(FINDING_SEQS_MAX).collect(),
            amount_fen: fen(paid_early_fen)?,
            detail: before(&format!("paid {count} household payments")),
        });
    }
    if project.category.contains("产业") {
        equal_splits(ledger, project, payments, findings)?;
    }
    Ok(())
}

/// Record seqs a finding names at most; its amount covers them all.
const FINDING_SEQS_MAX: usize = 20;

/// Households of one village paid the same by an industry project for one
/// period make an EQUAL_SPLIT (平均主义) finding when at least this many …
pub const EQUAL_SPLIT_HOUSEHOLDS_MIN: usize = 10;
/// … and they are at least this share, in percent, of the village's
/// payments from the project for the period.
pub const EQUAL_SPLIT_PERCENT_MIN: usize = 90;

/// Industry money shared out evenly instead of by each household's
/// production: for each village and period, the amount most households
/// were paid from the project.
fn equal_splits(
    ledger: &dyn LedgerView,
    project: &Project,
    payments: Vec<(u64, String, u128)>,
    findings: &mut Vec<Finding>,
) -> Result<(), Error> {
    let state = ledger.state();
    let mut villages: BTreeMap<String, String> = BTreeMap::new();
    // (village, period) → amount → the seqs that paid it.
    let mut groups: BTreeMap<(String, String), BTreeMap<u128, Vec<u64>>> = BTreeMap::new();
    for (seq, household, amount) in payments {
        if !villages.contains_key(&household) {
            let village = state
                .household(&household)?
                .map(|h| h.village_code)
                .unwrap_or_default();
            villages.insert(household.clone(), village);
        }
        let period = state
            .household_payment(&household, seq)?
            .map(|p| p.period)
            .unwrap_or_default();
        groups
            .entry((villages[&household].clone(), period))
            .or_default()
            .entry(amount)
            .or_default()
            .push(seq);
    }
    for ((village, period), by_amount) in groups {
        let total: usize = by_amount.values().map(Vec::len).sum();
        let Some((&amount, seqs)) = by_amount.iter().max_by_key(|(_, seqs)| seqs.len()) else {
            continue;
        };
        let same = seqs.len();
        if same >= EQUAL_SPLIT_HOUSEHOLDS_MIN && same * 100 >= EQUAL_SPLIT_PERCENT_MIN * total {
            findings.push(Finding {
                kind: "EQUAL_SPLIT".into(),
                account_id: project.account_id.clone(),
                seqs: seqs.iter().copied().take(FINDING_SEQS_MAX).collect(),
                amount_fen: fen(amount * same as u128)?,
                detail: format!(
                    "industry project {} paid {same} of the {total} payments to village {village} for {period} the same {} each (平均主义)",
                    project.account_id,
                    Fen(fen(amount)?)
                ),
            });
        }
    }
    Ok(())
}

/// The moment an account's balance is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Just after this record.
    Seq(u64),
    /// By business date: records whose value date is on or before this day.
    ValueDay(Day),
}

/// An account's balance by source at `as_of`: its current lots with every
/// movement after it undone, read from the account's index. By value day a
/// source can come out below zero (imported records dated before the money
/// they spent arrived): that is refused, naming the source.
pub fn balances_as_of(
    ledger: &dyn LedgerView,
    account: &Account,
    as_of: AsOf,
) -> Result<BTreeMap<u64, Fen>, Error> {
    let mut balances: BTreeMap<u64, i128> = account
        .balances
        .iter()
        .map(|(&s, a)| (s, i128::from(a.0)))
        .collect();
    let prefix = key::account_entries(&account.account_id);
    let from = match as_of {
        AsOf::Seq(seq) => key::account_entry(&account.account_id, seq.saturating_add(1)),
        AsOf::ValueDay(_) => prefix.clone(),
    };
    let rows = ledger.state().scan(&prefix, &from, TRACE_RECORDS_MAX + 1)?;
    if rows.len() > TRACE_RECORDS_MAX {
        return Err(too_big("this balance history").into());
    }
    let broken = |what: String| {
        Fault::corrupt(format!(
            "the entry index of account {} is inconsistent: {what}",
            account.account_id
        ))
    };
    for (row, _) in &rows {
        let seq = indexed_seq(row)?;
        let movement = ledger
            .state()
            .movement(seq)?
            .ok_or_else(|| broken(format!("record {seq} moved no money")))?;
        if let AsOf::ValueDay(day) = as_of {
            if movement.value_day <= day {
                continue;
            }
        }
        for leg in &movement.legs {
            let amount = i128::from(leg.amount.0);
            if leg.to_account_id.as_deref() == Some(account.account_id.as_str()) {
                *balances.entry(leg.source_seq).or_default() -= amount;
            }
            if leg.from_account_id.as_deref() == Some(account.account_id.as_str()) {
                *balances.entry(leg.source_seq).or_default() += amount;
            }
        }
    }
    let mut then = BTreeMap::new();
    for (source_seq, amount) in balances.into_iter().filter(|(_, a)| *a != 0) {
        let Ok(amount) = u64::try_from(amount) else {
            return Err(match as_of {
                AsOf::Seq(_) => broken(format!(
                    "undoing later records leaves {amount} fen of source {source_seq}"
                ))
                .into(),
                AsOf::ValueDay(day) => Rejection::precondition(
                    "as_of_date",
                    format!(
                        "by value date {}, account {} had spent {} fen more of source {source_seq} than had arrived (records dated before the money they spent)",
                        format_date(day),
                        account.account_id,
                        amount.unsigned_abs()
                    ),
                )
                .into(),
            });
        };
        then.insert(source_seq, Fen(amount));
    }
    Ok(then)
}
