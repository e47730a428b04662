//! Checks of a request's fields that need no state: syntax, lengths, amounts,
//! and the rule that no personal data enters the immutable log.

use std::collections::BTreeSet;

use crate::limits::*;
use crate::model::*;
use crate::money::Fen;
use crate::rules::Rules;
use crate::Rejection;

/// Checks every field of `request` on its own, under `rules`.
pub fn request(request: &Request, rules: Rules) -> Result<(), Rejection> {
    let entity = |field: &str, value: &str| entity_id(field, value, rules);
    id("idempotency_key", &request.idempotency_key)?;
    if request.ledger_id.is_empty() {
        return Err(Rejection::invalid("ledger_id", "the ledger id is missing"));
    }
    match &request.body {
        Body::Genesis(g) => {
            entity("genesis.root_org_id", &g.root_org_id)?;
            name("genesis.root_org_name", &g.root_org_name)?;
            division_code("genesis.division_code", &g.division_code)
        }
        Body::UpgradeRules(u) => document_no("upgrade_rules.document_no", &u.document_no),
        Body::RegisterOrg(r) => {
            entity("register_org.org_id", &r.org_id)?;
            name("register_org.name", &r.name)?;
            division_code("register_org.division_code", &r.division_code)
        }
        Body::AddKey(a) => entity("add_key.org_id", &a.org_id),
        Body::RevokeKey(r) => {
            id("revoke_key.key_id", &r.key_id)?;
            text("revoke_key.reason", &r.reason, TEXT_CHARS_MAX)
        }
        Body::OpenAccount(o) => {
            entity("open_account.account_id", &o.account_id)?;
            name("open_account.name", &o.name)?;
            optional_code("open_account.programme_code", &o.programme_code)?;
            match o.kind {
                AccountKind::Project => Err(Rejection::invalid(
                    "open_account.kind",
                    "project accounts are opened by RegisterProject, with the project's library entry",
                )),
                AccountKind::Household => Err(Rejection::invalid(
                    "open_account.kind",
                    "household accounts are opened by RegisterHousehold",
                )),
                _ if !o.household_ref.is_empty() => Err(Rejection::invalid(
                    "open_account.household_ref",
                    "household_ref is only for RegisterHousehold",
                )),
                _ => Ok(()),
            }
        }
        Body::Consolidation(c) => {
            entity("consolidation.from_account_id", &c.from_account_id)?;
            entity("consolidation.pool_account_id", &c.pool_account_id)?;
            amount("consolidation.amount_fen", c.amount)?;
            earmarks("consolidation.sources", &c.sources, c.amount)?;
            document_no("consolidation.plan_document_no", &c.plan_document_no)?;
            text("consolidation.memo", &c.memo, TEXT_CHARS_MAX)
        }
        Body::RegisterProject(r) => {
            entity("register_project.account_id", &r.account_id)?;
            name("register_project.name", &r.name)?;
            name("register_project.category", &r.category)?;
            division_code("register_project.location_code", &r.location_code)?;
            amount("register_project.budget_fen", r.budget)?;
            if r.performance_targets.len() > PERFORMANCE_TARGETS_MAX {
                return Err(Rejection::new(
                    crate::Code::ResourceExhausted,
                    "register_project.performance_targets",
                    format!("at most {PERFORMANCE_TARGETS_MAX} performance targets"),
                ));
            }
            for target in &r.performance_targets {
                name("register_project.performance_targets", target)?;
            }
            name("register_project.responsible_unit", &r.responsible_unit)?;
            fiscal_year("register_project.fiscal_year", r.fiscal_year)
        }
        Body::AnnounceProject(a) => {
            entity("announce_project.account_id", &a.account_id)?;
            document_no("announce_project.document_no", &a.document_no)?;
            text("announce_project.memo", &a.memo, TEXT_CHARS_MAX)
        }
        Body::Allocation(a) => {
            entity("allocation.pool_account_id", &a.pool_account_id)?;
            entity("allocation.project_account_id", &a.project_account_id)?;
            amount("allocation.amount_fen", a.amount)?;
            earmarks("allocation.sources", &a.sources, a.amount)?;
            if a.quota_seq.is_some() {
                since(rules, Rules::V9, "allocation.quota_seq")?;
            }
            document_no("allocation.document_no", &a.document_no)?;
            text("allocation.memo", &a.memo, TEXT_CHARS_MAX)
        }
        Body::RegisterHousehold(r) => {
            entity("register_household.account_id", &r.account_id)?;
            entity("register_household.household_ref", &r.household_ref)?;
            let village = r.village_code.len();
            if !matches!(village, 9 | 12) {
                return Err(Rejection::invalid(
                    "register_household.village_code",
                    "a household's village code is the 9-digit township or 12-digit village statistical code",
                ));
            }
            division_code("register_household.village_code", &r.village_code)?;
            if !(1..=HOUSEHOLD_MEMBERS_MAX).contains(&r.members) {
                return Err(Rejection::invalid(
                    "register_household.members",
                    format!("a household has between 1 and {HOUSEHOLD_MEMBERS_MAX} members"),
                ));
            }
            Ok(())
        }
        Body::SetMonitoring(m) => {
            since(rules, Rules::V10, "set_monitoring")?;
            entity("set_monitoring.account_id", &m.account_id)?;
            document_no("set_monitoring.document_no", &m.document_no)?;
            text("set_monitoring.reason", &m.reason, TEXT_CHARS_MAX)
        }
        Body::SetHouseholdStatus(s) => {
            entity("set_household_status.account_id", &s.account_id)?;
            document_no("set_household_status.document_no", &s.document_no)?;
            text("set_household_status.reason", &s.reason, TEXT_CHARS_MAX)
        }
        Body::Return(r) => {
            entity("return.from_account_id", &r.from_account_id)?;
            entity("return.to_account_id", &r.to_account_id)?;
            if r.from_account_id == r.to_account_id {
                return Err(Rejection::invalid(
                    "return.to_account_id",
                    "money must be returned to a different account",
                ));
            }
            amount("return.amount_fen", r.amount)?;
            earmarks("return.sources", &r.sources, r.amount)?;
            document_no("return.document_no", &r.document_no)?;
            text("return.reason", &r.reason, TEXT_CHARS_MAX)?;
            if r.reason.trim().is_empty() {
                return Err(Rejection::invalid(
                    "return.reason",
                    "a return must give its reason",
                ));
            }
            bank_failure_fields(r, rules)
        }
        Body::SetProgrammeRules(r) => {
            since(rules, Rules::V5, "set_programme_rules")?;
            code("set_programme_rules.programme_code", &r.programme_code)?;
            document_no("set_programme_rules.document_no", &r.document_no)?;
            if r.county_share_min_percent > 100 {
                return Err(Rejection::invalid(
                    "set_programme_rules.county_share_min_percent",
                    "a share is a percentage, 0 to 100",
                ));
            }
            if r.quota_issue_days_max > 0 {
                since(rules, Rules::V8, "set_programme_rules.quota_issue_days_max")?;
            }
            if r.cash_follow_days_max > 0 {
                since(rules, Rules::V9, "set_programme_rules.cash_follow_days_max")?;
            }
            if r.monitored_only {
                since(rules, Rules::V10, "set_programme_rules.monitored_only")?;
            }
            Ok(())
        }
        Body::EvaluateProject(e) => {
            since(rules, Rules::V5, "evaluate_project")?;
            entity("evaluate_project.account_id", &e.account_id)?;
            document_no("evaluate_project.document_no", &e.document_no)?;
            if e.score > 100 {
                return Err(Rejection::invalid(
                    "evaluate_project.score",
                    "a score is 0 to 100",
                ));
            }
            if e.targets_met.len() > PERFORMANCE_TARGETS_MAX {
                return Err(Rejection::invalid(
                    "evaluate_project.targets_met",
                    format!("a project has at most {PERFORMANCE_TARGETS_MAX} performance targets"),
                ));
            }
            Ok(())
        }
        Body::DeclareImportWindow(w) => {
            since(rules, Rules::V6, "declare_import_window")?;
            id("declare_import_window.org_id", &w.org_id)?;
            document_no("declare_import_window.document_no", &w.document_no)
        }
        Body::DeclarePairing(p) => {
            since(rules, Rules::V6, "declare_pairing")?;
            id("declare_pairing.from_org_id", &p.from_org_id)?;
            id("declare_pairing.to_org_id", &p.to_org_id)?;
            if p.from_org_id == p.to_org_id {
                return Err(Rejection::invalid(
                    "declare_pairing.to_org_id",
                    "an org is not paired with itself",
                ));
            }
            document_no("declare_pairing.document_no", &p.document_no)
        }
        Body::IssueQuota(q) => {
            since(rules, Rules::V8, "issue_quota")?;
            id("issue_quota.to_org_id", &q.to_org_id)?;
            amount("issue_quota.amount_fen", q.amount)?;
            code("issue_quota.programme_code", &q.programme_code)?;
            fiscal_year("issue_quota.fiscal_year", q.fiscal_year)?;
            document_no("issue_quota.document_no", &q.document_no)?;
            if q.direct && q.project_code.is_empty() {
                return Err(Rejection::invalid(
                    "issue_quota.project_code",
                    "直达资金 quota carries its 项目代码 (project_code)",
                ));
            }
            if !q.project_code.is_empty() {
                id("issue_quota.project_code", &q.project_code)?;
            }
            Ok(())
        }
        Body::ConfirmCredit(c) => {
            since(rules, Rules::V5, "confirm_credit")?;
            if c.disbursement_seq == 0 {
                return Err(Rejection::invalid(
                    "confirm_credit.disbursement_seq",
                    "name the Disbursement record the bank credited",
                ));
            }
            entity(
                "confirm_credit.household_account_id",
                &c.household_account_id,
            )?;
            bank_reference("confirm_credit.bank_reference", &c.bank_reference)?;
            document_no("confirm_credit.document_no", &c.document_no)
        }
        Body::Appropriation(a) => {
            entity("appropriation.account_id", &a.account_id)?;
            amount("appropriation.amount_fen", a.amount)?;
            code("appropriation.programme_code", &a.programme_code)?;
            fiscal_year("appropriation.fiscal_year", a.fiscal_year)?;
            document_no("appropriation.document_no", &a.document_no)?;
            text("appropriation.purpose", &a.purpose, TEXT_CHARS_MAX)?;
            text("appropriation.memo", &a.memo, TEXT_CHARS_MAX)
        }
        Body::Transfer(t) => {
            entity("transfer.from_account_id", &t.from_account_id)?;
            entity("transfer.to_account_id", &t.to_account_id)?;
            if t.from_account_id == t.to_account_id {
                return Err(Rejection::invalid(
                    "transfer.to_account_id",
                    "a transfer must go to a different account",
                ));
            }
            amount("transfer.amount_fen", t.amount)?;
            earmarks("transfer.sources", &t.sources, t.amount)?;
            if t.quota_seq.is_some() {
                since(rules, Rules::V9, "transfer.quota_seq")?;
            }
            document_no("transfer.document_no", &t.document_no)?;
            text("transfer.purpose", &t.purpose, TEXT_CHARS_MAX)?;
            text("transfer.memo", &t.memo, TEXT_CHARS_MAX)
        }
        Body::Disbursement(d) => {
            entity("disbursement.from_account_id", &d.from_account_id)?;
            entity("disbursement.household_account_id", &d.household_account_id)?;
            amount("disbursement.amount_fen", d.amount)?;
            earmarks("disbursement.sources", &d.sources, d.amount)?;
            code("disbursement.programme_code", &d.programme_code)?;
            period("disbursement.period", &d.period)?;
            document_no("disbursement.document_no", &d.document_no)?;
            if d.quota_seq.is_some() {
                since(rules, Rules::V9, "disbursement.quota_seq")?;
            }
            text("disbursement.memo", &d.memo, TEXT_CHARS_MAX)
        }
        Body::Reversal(r) => {
            document_no("reversal.document_no", &r.document_no)?;
            text("reversal.reason", &r.reason, TEXT_CHARS_MAX)?;
            if r.reason.trim().is_empty() {
                return Err(Rejection::invalid(
                    "reversal.reason",
                    "a reversal must give its reason",
                ));
            }
            Ok(())
        }
    }
}

/// Refuses what `rules` do not know yet: a record kind (or field) that
/// came with version `first`.
fn since(rules: Rules, first: Rules, field: &str) -> Result<(), Rejection> {
    if rules < first {
        return Err(Rejection::precondition(
            field,
            format!(
                "{field} needs rules version {}; this ledger runs version {} (the root org moves it on with UpgradeRules)",
                first.version(),
                rules.version()
            ),
        ));
    }
    Ok(())
}

/// A bank-failure return names the payment and the bank's reference; any
/// other return names neither. Before rules 5 fields 8 and 9 did not exist
/// and were ignored, as unknown fields are: so they are still, there.
fn bank_failure_fields(r: &Return, rules: Rules) -> Result<(), Rejection> {
    if r.kind != ReturnKind::BankFailure {
        if rules < Rules::V5 {
            return Ok(());
        }
        if r.disbursement_seq != 0 || !r.bank_reference.is_empty() {
            return Err(Rejection::invalid(
                "return.disbursement_seq",
                "only a BANK_FAILURE return names a payment and a bank reference",
            ));
        }
        return Ok(());
    }
    since(rules, Rules::V5, "return.kind")?;
    if r.disbursement_seq == 0 {
        return Err(Rejection::invalid(
            "return.disbursement_seq",
            "a BANK_FAILURE return names the Disbursement record the bank could not credit",
        ));
    }
    if !r.sources.is_empty() {
        return Err(Rejection::invalid(
            "return.sources",
            "a BANK_FAILURE return takes back exactly the payment's money; leave sources empty",
        ));
    }
    bank_reference("return.bank_reference", &r.bank_reference)
}

/// The bank's reference for a result (银行流水号): an identifier, and
/// never in the shape of a card or ID number.
fn bank_reference(field: &str, value: &str) -> Result<(), Rejection> {
    id(field, value)?;
    personal_data_free(field, value)
}

/// An identifier that names an org, an account or a household. From rules
/// 3 on it may not look like an ID-card or bank-card number either: the log
/// is permanent, and identifiers reach every listing.
fn entity_id(field: &str, value: &str, rules: Rules) -> Result<(), Rejection> {
    id(field, value)?;
    if rules >= Rules::V3 {
        personal_data_free(field, value)?;
    }
    Ok(())
}

/// Identifiers: 1–64 bytes of ASCII letters, digits and `.`, `_`, `-`, `:`,
/// starting with a letter or digit.
pub fn id(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::invalid(field, format!("{field} is missing")));
    }
    if value.len() > ID_BYTES_MAX {
        return Err(Rejection::invalid(
            field,
            format!("{field} is longer than {ID_BYTES_MAX} characters"),
        ));
    }
    let first_ok = value.as_bytes()[0].is_ascii_alphanumeric();
    let rest_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if !first_ok || !rest_ok {
        return Err(Rejection::invalid(
            field,
            format!("{field} {value:?} may only hold letters, digits and . _ - : and must start with a letter or digit"),
        ));
    }
    Ok(())
}

/// GB/T 2260 division code: 6 digits, or 9/12-digit township/village codes.
pub fn division_code(field: &str, value: &str) -> Result<(), Rejection> {
    let ok = matches!(value.len(), 6 | 9 | 12) && value.bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(Rejection::invalid(
            field,
            format!("{value:?} is not a division code: use the 6-digit GB/T 2260 code (000000 for the central level), or a 9/12-digit township/village code"),
        ));
    }
    Ok(())
}

fn name(field: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::invalid(field, format!("{field} is missing")));
    }
    text(field, value, NAME_CHARS_MAX)
}

/// A programme code (资金项目/科目 code): required, short, no spaces.
fn code(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::invalid(
            field,
            format!("{field} (the fund programme code) is missing"),
        ));
    }
    optional_code(field, value)
}

fn optional_code(field: &str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        return Ok(());
    }
    id(field, value)
}

/// 文号: required on every money movement, since every movement must cite
/// the document that authorised it.
fn document_no(field: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::invalid(
            field,
            "the authorising document number (文号) is missing",
        ));
    }
    text(field, value, DOCUMENT_NO_CHARS_MAX)
}

/// Free text: bounded, no control characters, no personal data.
pub fn text(field: &str, value: &str, chars_max: usize) -> Result<(), Rejection> {
    if value.chars().count() > chars_max {
        return Err(Rejection::invalid(
            field,
            format!("{field} is longer than {chars_max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(Rejection::invalid(
            field,
            format!("{field} contains control characters"),
        ));
    }
    personal_data_free(field, value)
}

/// Refuses runs of 15 or more digits (possibly ending in X): the shape of
/// resident ID numbers (15 or 18 characters) and bank card numbers. The log
/// is immutable, so personal data must never enter it.
pub fn personal_data_free(field: &str, value: &str) -> Result<(), Rejection> {
    const DIGIT_RUN_MAX: usize = 14;
    let mut run = 0usize;
    for c in value.chars() {
        if c.is_ascii_digit() || (run >= 14 && matches!(c, 'X' | 'x')) {
            run += 1;
            if run > DIGIT_RUN_MAX {
                return Err(Rejection::invalid(
                    field,
                    format!("{field} contains what looks like an ID or bank card number; personal data may not be written to the permanent ledger"),
                ));
            }
        } else {
            run = 0;
        }
    }
    Ok(())
}

pub fn amount(field: &str, amount: Fen) -> Result<(), Rejection> {
    if amount.0 == 0 {
        return Err(Rejection::invalid(
            field,
            "the amount must be greater than zero",
        ));
    }
    if amount.0 > AMOUNT_FEN_MAX {
        return Err(Rejection::invalid(
            field,
            format!(
                "the amount {amount} is above the largest single amount {}",
                Fen(AMOUNT_FEN_MAX)
            ),
        ));
    }
    Ok(())
}

fn fiscal_year(field: &str, year: u32) -> Result<(), Rejection> {
    if !(2000..=2100).contains(&year) {
        return Err(Rejection::invalid(
            field,
            format!("fiscal year {year} is not a year between 2000 and 2100"),
        ));
    }
    Ok(())
}

/// "YYYY-MM".
fn period(field: &str, value: &str) -> Result<(), Rejection> {
    let b = value.as_bytes();
    let ok = b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit)
        && matches!(
            &value[5..],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        );
    if !ok {
        return Err(Rejection::invalid(
            field,
            format!("the payment period {value:?} must be a month like 2026-03"),
        ));
    }
    Ok(())
}

/// Earmarks, when given: each source once, each amount above zero, adding up
/// exactly to the movement's amount.
fn earmarks(field: &str, earmarks: &[Earmark], total: Fen) -> Result<(), Rejection> {
    if earmarks.is_empty() {
        return Ok(());
    }
    if earmarks.len() > EARMARKS_MAX {
        return Err(Rejection::new(
            crate::Code::ResourceExhausted,
            field,
            format!("at most {EARMARKS_MAX} sources may be named in one movement"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut sum: u128 = 0;
    for earmark in earmarks {
        if !seen.insert(earmark.source_seq) {
            return Err(Rejection::invalid(
                field,
                format!("source {} is named twice", earmark.source_seq),
            ));
        }
        amount(field, earmark.amount)?;
        sum += u128::from(earmark.amount.0);
    }
    if sum != u128::from(total.0) {
        return Err(Rejection::invalid(
            field,
            format!(
                "the named sources add up to {} but the amount is {total}",
                crate::money::format_fen(sum)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(id("f", "gansu-fin").is_ok());
        // From rules 3, identifiers that look like ID numbers are refused.
        assert!(entity_id("f", "110101199003071234", Rules::V2).is_ok());
        assert!(entity_id("f", "110101199003071234", Rules::V3).is_err());
        assert!(entity_id("f", "hh-11010119900307123X", Rules::V3).is_err());
        assert!(entity_id("f", "HH-622926-0001", Rules::V3).is_ok());
        assert!(id("f", "").is_err());
        assert!(id("f", "-x").is_err());
        assert!(id("f", "a b").is_err());
        assert!(id("f", &"a".repeat(65)).is_err());
    }

    #[test]
    fn personal_data_is_refused() {
        assert!(personal_data_free("memo", "付给 51343119800101123X 的补贴").is_err());
        assert!(personal_data_free("memo", "card 6222021234567890123").is_err());
        assert!(personal_data_free("memo", "财农〔2026〕12号 2026年第1批").is_ok());
        assert!(personal_data_free("memo", "amount 12345678901234").is_ok());
    }

    #[test]
    fn division_codes() {
        assert!(division_code("d", "513431").is_ok());
        assert!(division_code("d", "000000").is_ok());
        assert!(division_code("d", "51343").is_err());
        assert!(division_code("d", "51343a").is_err());
    }

    #[test]
    fn periods() {
        assert!(period("p", "2026-03").is_ok());
        assert!(period("p", "2026-13").is_err());
        assert!(period("p", "2026-3").is_err());
    }
}
