//! Spending progress (支出进度) as the 直达资金 system shows it: for one org
//! and each programme of the quota it received, month by month, what it
//! received and issued down as quota, what cash it received against that
//! quota, and what it and the orgs below it paid out against quota, as a
//! share of the quota received.
//!
//! Every figure is cumulative to the end of its month. Quota counts in the
//! month of its record's business date, cash and payments in the month of
//! theirs (rules 9 records them against quota; before, nothing is paid
//! against quota and progress stays 0).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fundtrail_core::dates::month_of;
use fundtrail_core::limits::LIST_SCAN_ROWS_MAX;
use fundtrail_core::model::{Org, Quota};
use fundtrail_core::state::{decode, key, StateRead};
use fundtrail_core::{validate, Code, Error, Fault, Rejection};

use crate::{Audience, LedgerView};

/// Which progress to show.
#[derive(Debug, Clone, Default)]
pub struct ProgressRequest {
    pub org_id: String,
    /// Only this programme; empty: every programme.
    pub programme_code: String,
    /// Only quota of this fiscal year; 0: every year.
    pub fiscal_year: u32,
}

/// One programme's figures, cumulative to the end of `month`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressRow {
    pub programme_code: String,
    /// YYYYMM.
    pub month: u32,
    pub quota_received_fen: u64,
    pub quota_issued_down_fen: u64,
    pub cash_received_fen: u64,
    /// Paid against quota by the org and every org below it.
    pub paid_fen: u64,
    /// paid ÷ quota received, in basis points (1/10,000), rounded down; 0
    /// when no quota was received.
    pub paid_basis_points: u64,
}

/// What one month changed, per programme.
#[derive(Default, Clone, Copy)]
struct Flows {
    received: u128,
    issued_down: u128,
    cash: u128,
    paid: u128,
}

/// The org's progress, a row per programme and month in which anything
/// changed, programmes in code order and months oldest first.
pub fn spending_progress(
    ledger: &dyn LedgerView,
    audience: &mut dyn Audience,
    request: &ProgressRequest,
) -> Result<Vec<ProgressRow>, Error> {
    validate::id("org_id", &request.org_id)?;
    let state = ledger.state();
    if state.org(&request.org_id)?.is_none() {
        return Err(Rejection::not_found(
            "org_id",
            format!("org {:?} is not registered", request.org_id),
        )
        .into());
    }
    let wanted = |quota: &Quota| {
        (request.programme_code.is_empty() || quota.programme_code == request.programme_code)
            && (request.fiscal_year == 0 || quota.fiscal_year == request.fiscal_year)
    };
    // One pass over the org and those below it, parents first (so a quota
    // is known before the splits of it): what the org received and the
    // cash it got, what was split from its quotas, and what was paid
    // against its quotas and every quota split from them down the levels.
    // Quota an org below created for itself (its own budget) is not the
    // org's: neither it nor what was paid against it counts.
    let mut own_seqs = BTreeSet::new();
    let mut lineage = BTreeSet::new();
    let mut flows: BTreeMap<(String, u32), Flows> = BTreeMap::new();
    // The whole report reads at most this many quotas, and stops once its
    // client has gone.
    let mut quotas_left = LIST_SCAN_ROWS_MAX;
    for org_id in subtree(ledger, &request.org_id)? {
        audience.still_wanted()?;
        let quotas = quotas_of(ledger, &org_id)?;
        quotas_left = quotas_left.checked_sub(quotas.len()).ok_or_else(|| {
            too_much(format!(
                "{} and the orgs below it hold more than {LIST_SCAN_ROWS_MAX} quotas",
                request.org_id
            ))
        })?;
        for quota in quotas.into_iter().filter(wanted) {
            let split_from_lineage = quota.parent_seq.is_some_and(|p| lineage.contains(&p));
            if org_id != request.org_id && !split_from_lineage {
                continue;
            }
            lineage.insert(quota.seq);
            let months = state.quota_months(quota.seq)?;
            if org_id == request.org_id {
                own_seqs.insert(quota.seq);
                let month = month_of(quota.issued_day);
                at(&mut flows, &quota, month).received += u128::from(quota.amount.0);
                for (month, used) in &months {
                    at(&mut flows, &quota, *month).cash += u128::from(used.cash_received.0);
                }
            }
            if quota.parent_seq.is_some_and(|p| own_seqs.contains(&p)) {
                let month = month_of(quota.issued_day);
                at(&mut flows, &quota, month).issued_down += u128::from(quota.amount.0);
            }
            for (month, used) in months {
                at(&mut flows, &quota, month).paid += u128::from(used.paid.0);
            }
        }
    }
    cumulative(flows)
}

/// The flows of `quota`'s programme in `month`.
fn at<'f>(
    flows: &'f mut BTreeMap<(String, u32), Flows>,
    quota: &Quota,
    month: u32,
) -> &'f mut Flows {
    flows
        .entry((quota.programme_code.clone(), month))
        .or_default()
}

/// Running totals of `flows`, a row per (programme, month).
fn cumulative(flows: BTreeMap<(String, u32), Flows>) -> Result<Vec<ProgressRow>, Error> {
    let mut rows = Vec::with_capacity(flows.len());
    let mut totals: HashMap<String, Flows> = HashMap::new();
    for ((programme_code, month), change) in flows {
        let total = totals.entry(programme_code.clone()).or_default();
        total.received += change.received;
        total.issued_down += change.issued_down;
        total.cash += change.cash;
        total.paid += change.paid;
        let fen = |sum: u128| {
            u64::try_from(sum).map_err(|_| Fault::corrupt("a progress total passes u64 fen"))
        };
        let paid_basis_points = match total.received {
            0 => 0,
            received => total.paid * 10_000 / received,
        };
        rows.push(ProgressRow {
            programme_code,
            month,
            quota_received_fen: fen(total.received)?,
            quota_issued_down_fen: fen(total.issued_down)?,
            cash_received_fen: fen(total.cash)?,
            paid_fen: fen(total.paid)?,
            paid_basis_points: u64::try_from(paid_basis_points)
                .map_err(|_| Fault::corrupt("a progress share passes u64"))?,
        });
    }
    Ok(rows)
}

/// Every quota issued to `org_id`.
fn quotas_of(ledger: &dyn LedgerView, org_id: &str) -> Result<Vec<Quota>, Error> {
    let state = ledger.state();
    let prefix = key::named_prefix(key::QUOTA_HOLDER, org_id);
    let rows = state.scan(&prefix, &prefix, LIST_SCAN_ROWS_MAX + 1)?;
    if rows.len() > LIST_SCAN_ROWS_MAX {
        return Err(too_much(format!(
            "org {org_id} holds more than {LIST_SCAN_ROWS_MAX} quotas"
        )));
    }
    let mut quotas = Vec::with_capacity(rows.len());
    for (row_key, _) in rows {
        let seq = key::seq_suffix(&row_key)
            .ok_or_else(|| Fault::corrupt("a quota index key does not end with a seq"))?;
        if seq >= ledger.record_count() {
            continue;
        }
        quotas.push(
            state
                .quota(seq)?
                .ok_or_else(|| Fault::corrupt(format!("the quota index names {seq}, no quota")))?,
        );
    }
    Ok(quotas)
}

/// `org_id` and every org below it.
fn subtree(ledger: &dyn LedgerView, org_id: &str) -> Result<Vec<String>, Error> {
    let rows = ledger
        .state()
        .scan(&[key::ORG], &[key::ORG], LIST_SCAN_ROWS_MAX + 1)?;
    if rows.len() > LIST_SCAN_ROWS_MAX {
        return Err(too_much(format!(
            "the ledger registers more than {LIST_SCAN_ROWS_MAX} orgs"
        )));
    }
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for (_, value) in &rows {
        let org: Org = decode(value)?;
        if let Some(parent) = org.parent_org_id {
            children.entry(parent).or_default().push(org.org_id);
        }
    }
    let mut found = vec![org_id.to_string()];
    let mut next = 0;
    while let Some(org) = found.get(next).cloned() {
        found.extend(children.remove(&org).unwrap_or_default());
        next += 1;
    }
    Ok(found)
}

fn too_much(why: String) -> Error {
    Rejection::new(
        Code::ResourceExhausted,
        "org_id",
        format!("{why}, more than one progress report reads"),
    )
    .into()
}
