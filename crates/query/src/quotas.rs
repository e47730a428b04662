//! Budget quota (rules 8) as auditors read it: one quota with its lineage
//! up to the document that created the authority, and the quotas an org
//! holds. Budgets are public (预算公开): every registered reader reads every
//! quota, so these take no audience.

use fundtrail_core::limits::LIST_SCAN_ROWS_MAX;
use fundtrail_core::model::{Quota, QuotaUse};
use fundtrail_core::state::{key, StateRead};
use fundtrail_core::{validate, Error, Fault, Rejection};

use crate::LedgerView;

/// A quota and what has been drawn on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub quota: Quota,
    pub used: QuotaUse,
}

fn standing(ledger: &dyn LedgerView, quota: Quota) -> Result<Standing, Error> {
    let used = ledger.state().quota_use(quota.seq)?;
    Ok(Standing { quota, used })
}

/// Quota `seq`, and its ancestors from its parent up to the quota at the
/// top.
pub fn quota_lineage(
    ledger: &dyn LedgerView,
    seq: u64,
) -> Result<(Standing, Vec<Standing>), Error> {
    let state = ledger.state();
    let quota = state
        .quota(seq)?
        .filter(|_| seq < ledger.record_count())
        .ok_or_else(|| Rejection::not_found("seq", format!("record {seq} issued no quota")))?;
    // Each split goes one org level down, so a lineage is no longer than
    // its holder's chain of orgs.
    let levels = state.org_chain(&quota.holder_org_id)?.len();
    let mut ancestors = Vec::new();
    let mut next = quota.parent_seq;
    while let Some(parent_seq) = next {
        if ancestors.len() >= levels {
            return Err(Fault::corrupt(format!(
                "quota {seq} has more ancestors than its holder {} has levels above it",
                quota.holder_org_id
            ))
            .into());
        }
        let parent = state.quota(parent_seq)?.ok_or_else(|| {
            Fault::corrupt(format!(
                "quota {parent_seq}, which quota {seq} descends from, is not in derived state"
            ))
        })?;
        next = parent.parent_seq;
        ancestors.push(standing(ledger, parent)?);
    }
    Ok((standing(ledger, quota)?, ancestors))
}

/// A page of the quotas an org holds, and the seq the next page starts
/// from.
#[derive(Debug, Clone, Default)]
pub struct QuotasPage {
    pub quotas: Vec<Standing>,
    pub next_seq: Option<u64>,
}

/// Up to `page_size` quotas issued to `org_id`, in seq order from
/// `start_seq`.
pub fn quotas_held(
    ledger: &dyn LedgerView,
    org_id: &str,
    start_seq: u64,
    page_size: usize,
) -> Result<QuotasPage, Error> {
    validate::id("org_id", org_id)?;
    let state = ledger.state();
    if state.org(org_id)?.is_none() {
        return Err(
            Rejection::not_found("org_id", format!("org {org_id:?} is not registered")).into(),
        );
    }
    let prefix = key::named_prefix(key::QUOTA_HOLDER, org_id);
    let from = key::named_seq(key::QUOTA_HOLDER, org_id, start_seq);
    let rows = state.scan(&prefix, &from, page_size.min(LIST_SCAN_ROWS_MAX) + 1)?;
    let mut page = QuotasPage::default();
    for (row_key, _) in rows {
        let seq = key::seq_suffix(&row_key)
            .ok_or_else(|| Fault::corrupt("a quota index key does not end with a seq"))?;
        if seq >= ledger.record_count() {
            break;
        }
        if page.quotas.len() == page_size {
            page.next_seq = Some(seq);
            break;
        }
        let quota = state
            .quota(seq)?
            .ok_or_else(|| Fault::corrupt(format!("the quota index names {seq}, no quota")))?;
        page.quotas.push(standing(ledger, quota)?);
    }
    Ok(page)
}
