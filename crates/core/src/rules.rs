//! Rules versions: which rules accepted a record.
//!
//! A ledger runs one rules version at a time. Genesis names the first; an
//! `UpgradeRules` record signed by the root org moves the ledger to a newer
//! one from the record after it. Replay and audit apply each record under
//! the version in force at its position, so a rule can change without
//! rewriting history: the old code path stays, selected by [`Rules`].
//!
//! | version | change |
//! |---|---|
//! | 1 | the rules of the first ledgers: idempotency keys are scoped to the signing key |
//! | 2 | idempotency keys are scoped to the signing org, so a request re-signed by another key of the same org is a retry |
//! | 3 | account, org and household identifiers may not look like ID-card or bank-card numbers; no account may hold more than u64::MAX fen in all |
//! | 4 | orgs may have the MIRROR role (whole-log readers, registered by the root org only); a new org's division code must lie within its parent's, so no org can hand a child more jurisdiction than it has; a record moves money in at most 1,000 legs (`LEGS_PER_RECORD_MAX`) |
//! | 5 | the bank's result for a household payment can be posted: `ConfirmCredit` (credited) and a `Return` of kind `BANK_FAILURE` (not credited: the payment's money goes back to the account that paid it); a payment with a bank result can no longer be reversed; programme rules (`SetProgrammeRules`) and performance evaluations (`EvaluateProject`) are recorded, for reports to judge |
//! | 6 | separation of duties: who may register whom follows the org's role (the root org registers any role; an audit office registers audit offices only; every other org registers finance orgs only), and an org manages the keys only of itself and of children whose role it may register |
//! | 7 | a payment that oldest-first would spread over more than 1,000 lots is picked again skipping every lot smaller than what is left to pay divided by the legs left, so many small lots sent to an account never stop it paying out of larger ones |
//! | 8 | budget quota (预算指标) is recorded apart from cash (`IssueQuota`): new at the top, split down to child orgs, each split keeping its parent's programme, fiscal year, 直达 mark and 项目代码; a document issuing 直达资金 issues one programme only |
//! | 9 | cash follows quota: a transfer down the levels names the quota issued to the receiver, a household payment the quota its payer holds; neither may pass the quota, and both move only money of the quota's programme (imported records may lack a quota) |
//! | 10 | households under monitoring (防止返贫动态监测): a county records a household's monitoring category (`SetMonitoring`) from a date, and when its risk is cleared |

use crate::model::LedgerMeta;
use crate::{Fault, FaultKind};

/// A rules version. Ordered: later versions compare greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rules {
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
}

impl Rules {
    /// The version new ledgers start with.
    pub const CURRENT: Rules = Rules::V10;

    /// The newest version this build knows: a ledger may be upgraded to it.
    pub const NEWEST: Rules = Rules::V10;

    /// The rules of version `version`, if this build knows them.
    pub fn of_version(version: u32) -> Option<Rules> {
        match version {
            1 => Some(Rules::V1),
            2 => Some(Rules::V2),
            3 => Some(Rules::V3),
            4 => Some(Rules::V4),
            5 => Some(Rules::V5),
            6 => Some(Rules::V6),
            7 => Some(Rules::V7),
            8 => Some(Rules::V8),
            9 => Some(Rules::V9),
            10 => Some(Rules::V10),
            _ => None,
        }
    }

    /// The rules a ledger runs now.
    pub fn of_ledger(ledger: &LedgerMeta) -> Result<Rules, Fault> {
        Rules::of_version(ledger.rules_version).ok_or_else(|| {
            Fault::new(FaultKind::TooNew, format!(
                "the ledger runs rules version {}, which this build does not know; run a newer fundtrail",
                ledger.rules_version
            ))
        })
    }

    pub const fn version(self) -> u32 {
        match self {
            Rules::V1 => 1,
            Rules::V2 => 2,
            Rules::V3 => 3,
            Rules::V4 => 4,
            Rules::V5 => 5,
            Rules::V6 => 6,
            Rules::V7 => 7,
            Rules::V8 => 8,
            Rules::V9 => 9,
            Rules::V10 => 10,
        }
    }

    /// Whose requests share one idempotency-key space, in words.
    pub fn idempotency_scope_name(self) -> &'static str {
        match self {
            Rules::V1 => "this key",
            _ => "a key of this org",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_round_trip_and_order() {
        assert!(Rules::CURRENT <= Rules::NEWEST);
        for version in 1..=Rules::NEWEST.version() {
            let rules = Rules::of_version(version).unwrap();
            assert_eq!(rules.version(), version);
        }
        assert!(Rules::V1 < Rules::V2 && Rules::V2 < Rules::V3);
        assert_eq!(Rules::of_version(0), None);
        assert_eq!(Rules::of_version(Rules::NEWEST.version() + 1), None);
    }
}
