//! The compliance report: breaches of the programme rules in force
//! (SetProgrammeRules) and of performance evaluations (EvaluateProject),
//! each naming its records and the rule it breaks. Rules are judged here,
//! when a report is asked for, never when money moves: the ledger records
//! what happened and auditors judge it.
//!
//! The report is paged like the anomalies: passes over budget quota (idle
//! quota), the holders of money (idle time), households (subsidy
//! standards), projects (announcement, evaluations) and programmes (share
//! at county level and below), in key order, the page token being the last
//! key examined.

use std::collections::{BTreeMap, BTreeSet};

use fundtrail_core::dates::{format_date, Day};
use fundtrail_core::limits::{
    EVALUATIONS_PER_PROJECT_MAX, PROGRAMME_RULES_MAX, REPORT_SCAN_ROWS_MAX, TRACE_PAGE_RECORDS_MAX,
    TRACE_RECORDS_MAX,
};
use fundtrail_core::model::{
    Evaluation, Household, HouseholdPayment, MonitoringCategory, ProgrammeRules, Project, Quota,
    RecordKind, SubsidyBasis,
};
use fundtrail_core::money::Fen;
use fundtrail_core::state::{decode, key, Kv, StateRead};
use fundtrail_core::{Code, Error, Fault, Rejection};

use crate::trace::{
    all_lots, all_payments, fen, indexed_account, indexed_movement, indexed_seq, indexed_source,
    level_of, trace_forward,
};
use crate::types::TraceForwardRequest;
use crate::{Audience, LedgerView, ROWS_PER_WANTED_CHECK};

/// Records one breach lists; the detail says how many there were.
pub const BREACH_SEQS_MAX: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComplianceRequest {
    pub programme_code: String,
    pub division_prefix: String,
    pub level: String,
    /// "YYYY" or "YYYY-MM"; empty: any.
    pub period: String,
    pub page_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub kind: &'static str,
    pub programme_code: String,
    pub account_id: String,
    pub seqs: Vec<u64>,
    pub rule_seq: u64,
    pub amount_fen: u64,
    pub detail: String,
    /// The accounts a reader must see whole to be shown the breach: the
    /// account at fault, or every account a programme's appropriations
    /// were made into (not cut like `seqs`).
    pub scope_accounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceResponse {
    pub breaches: Vec<Breach>,
    pub next_page_token: String,
    pub as_of_day: Day,
}

/// Checks the filters before anything is read.
pub fn check_request(request: &ComplianceRequest) -> Result<(), Rejection> {
    if !request.programme_code.is_empty() {
        fundtrail_core::validate::id("programme_code", &request.programme_code)?;
    }
    if !request.division_prefix.bytes().all(|b| b.is_ascii_digit())
        || request.division_prefix.len() > 12
    {
        return Err(Rejection::invalid(
            "division_prefix",
            "a division prefix is up to 12 digits",
        ));
    }
    if !matches!(
        request.level.as_str(),
        "" | "central" | "province" | "prefecture" | "county"
    ) {
        return Err(Rejection::invalid(
            "level",
            "the level is central, province, prefecture or county",
        ));
    }
    let p = request.period.as_bytes();
    let year = |b: &[u8]| b.len() == 4 && b.iter().all(u8::is_ascii_digit);
    let ok = p.is_empty()
        || year(p)
        || (p.len() == 7
            && year(&p[..4])
            && p[4] == b'-'
            && matches!(
                std::str::from_utf8(&p[5..])
                    .ok()
                    .and_then(|m| m.parse::<u32>().ok()),
                Some(1..=12)
            ));
    if !ok {
        return Err(Rejection::invalid(
            "period",
            "the period is YYYY or YYYY-MM",
        ));
    }
    Ok(())
}

/// Every programme's rule records, in record order.
struct Rulebook(BTreeMap<String, Vec<ProgrammeRules>>);

impl Rulebook {
    fn load<K: Kv + ?Sized>(state: &K, only: &str) -> Result<Rulebook, Error> {
        let mut book: BTreeMap<String, Vec<ProgrammeRules>> = BTreeMap::new();
        if !only.is_empty() {
            let rules = state.programme_rules(only, PROGRAMME_RULES_MAX)?;
            if !rules.is_empty() {
                book.insert(only.to_string(), rules);
            }
            return Ok(Rulebook(book));
        }
        let prefix = [key::PROGRAMME_RULES];
        let rows = state.scan(&prefix, &prefix, REPORT_SCAN_ROWS_MAX + 1)?;
        if rows.len() > REPORT_SCAN_ROWS_MAX {
            return Err(Rejection::new(
                Code::ResourceExhausted,
                "programme_code",
                format!("the ledger holds more than {REPORT_SCAN_ROWS_MAX} programme rule records; ask for one programme"),
            )
            .into());
        }
        for (_, value) in rows {
            let rules: ProgrammeRules = decode(&value)?;
            book.entry(rules.programme_code.clone())
                .or_default()
                .push(rules);
        }
        Ok(Rulebook(book))
    }

    /// The rules of `programme` in force on `day`: the latest to take
    /// effect on or before it (the later record when two take effect on
    /// the same day).
    fn in_force(&self, programme: &str, day: Day) -> Option<&ProgrammeRules> {
        self.0
            .get(programme)?
            .iter()
            .filter(|r| r.effective_day <= day)
            .max_by_key(|r| (r.effective_day, r.seq))
    }
}

/// What a report page has found so far, with the filters that decide
/// which breaches it keeps.
struct Report<'a> {
    ledger: &'a dyn LedgerView,
    request: &'a ComplianceRequest,
    rules: Rulebook,
    today: Day,
    breaches: Vec<Breach>,
    /// Source seq → its programme.
    programmes: BTreeMap<u64, String>,
    /// Org → its division code.
    divisions: BTreeMap<String, String>,
}

impl Report<'_> {
    fn programme_of(&mut self, source_seq: u64) -> Result<String, Error> {
        if let Some(p) = self.programmes.get(&source_seq) {
            return Ok(p.clone());
        }
        let programme = indexed_source(self.ledger.state(), source_seq)?.programme_code;
        self.programmes.insert(source_seq, programme.clone());
        Ok(programme)
    }

    /// Whether breaches at accounts of `org_id` pass the division and
    /// level filters.
    fn org_passes(&mut self, org_id: &str) -> Result<bool, Error> {
        if self.request.division_prefix.is_empty() && self.request.level.is_empty() {
            return Ok(true);
        }
        let division = match self.divisions.get(org_id) {
            Some(d) => d.clone(),
            None => {
                let org = self.ledger.state().org(org_id)?.ok_or_else(|| {
                    Fault::corrupt(format!(
                        "derived state lacks org {org_id}, which owns an account"
                    ))
                })?;
                self.divisions
                    .insert(org_id.to_string(), org.division_code.clone());
                org.division_code
            }
        };
        Ok(division.starts_with(&self.request.division_prefix)
            && (self.request.level.is_empty() || level_of(&division) == self.request.level))
    }

    fn wants_programme(&self, programme: &str) -> bool {
        self.request.programme_code.is_empty() || self.request.programme_code == programme
    }

    fn day_in_period(&self, day: Day) -> bool {
        format_date(day).starts_with(&self.request.period)
    }

    fn push(&mut self, mut breach: Breach, count: usize) {
        if count > BREACH_SEQS_MAX {
            breach.seqs.truncate(BREACH_SEQS_MAX);
            breach.detail = format!(
                "{} (the first {BREACH_SEQS_MAX} of {count} records are listed)",
                breach.detail
            );
        }
        self.breaches.push(breach);
    }
}

/// A page of the report: breaches until `page_size`, or until
/// [`REPORT_SCAN_ROWS_MAX`] rows were examined.
pub fn compliance(
    ledger: &dyn LedgerView,
    audience: &mut dyn Audience,
    request: &ComplianceRequest,
    page_size: usize,
) -> Result<ComplianceResponse, Error> {
    check_request(request)?;
    let state = ledger.state();
    let mut report = Report {
        ledger,
        request,
        rules: Rulebook::load(state, &request.programme_code)?,
        today: ledger.today(),
        breaches: Vec::new(),
        programmes: BTreeMap::new(),
        divisions: BTreeMap::new(),
    };
    let token = request.page_token.as_bytes();
    let mut last_key: Option<Vec<u8>> = None;
    let mut examined = 0usize;
    let full = |report: &Report, examined: usize| {
        report.breaches.len() >= page_size || examined >= REPORT_SCAN_ROWS_MAX
    };
    for prefix in [
        key::CASH_WITHOUT_QUOTA,
        key::QUOTA,
        key::HOLDER,
        key::HOUSEHOLD,
        key::PROJECT,
    ] {
        // Only these breaches need no programme rules.
        let ruleless = matches!(prefix, key::PROJECT | key::CASH_WITHOUT_QUOTA);
        if report.rules.0.is_empty() && !ruleless {
            continue;
        }
        if !token.is_empty() && token[0] > prefix {
            continue;
        }
        let mut from = vec![prefix];
        if !token.is_empty() && token[0] == prefix {
            from = resume_after(token)?;
        }
        for (row, value) in state.scan(&[prefix], &from, REPORT_SCAN_ROWS_MAX)? {
            if full(&report, examined) {
                break;
            }
            if examined.is_multiple_of(ROWS_PER_WANTED_CHECK) {
                audience.still_wanted()?;
            }
            examined += 1;
            last_key = Some(row.clone());
            match prefix {
                key::CASH_WITHOUT_QUOTA => {
                    let seq = indexed_seq(&row)?;
                    cash_without_quota(&mut report, audience, seq)?;
                }
                // Budgets are public: every reader is shown quota breaches.
                key::QUOTA => {
                    quota_breaches(&mut report, &decode::<Quota>(&value)?)?;
                }
                key::HOLDER => {
                    let account_id = String::from_utf8_lossy(&row[1..]);
                    if audience.may_read(&account_id)? {
                        idle_beyond_rule(&mut report, &account_id)?
                    }
                }
                key::HOUSEHOLD => {
                    let household = decode::<Household>(&value)?;
                    if audience.may_read(&household.account_id)? {
                        household_breaches(&mut report, &household)?
                    }
                }
                _ => {
                    let project = decode::<Project>(&value)?;
                    if audience.may_read(&project.account_id)? {
                        project_breaches(&mut report, &project)?
                    }
                }
            }
        }
        if full(&report, examined) {
            break;
        }
    }
    // Programmes last: one key each, "v" ‖ programme.
    let programmes: Vec<String> = report.rules.0.keys().cloned().collect();
    for programme in programmes {
        if full(&report, examined) {
            break;
        }
        let row = key::named(key::PROGRAMME_RULES, &programme);
        if !token.is_empty() && token >= row.as_slice() {
            continue;
        }
        audience.still_wanted()?;
        examined += 1;
        last_key = Some(row);
        below_county_share(&mut report, &programme)?;
    }
    let done = !full(&report, examined);
    Ok(ComplianceResponse {
        next_page_token: match (done, last_key) {
            (false, Some(k)) => token_of(&k),
            _ => String::new(),
        },
        breaches: report.breaches,
        as_of_day: report.today,
    })
}

/// The page token naming `row`, the last key examined: the key itself for
/// the passes keyed by name, and "Q" and the seq in hex for quota, whose
/// keys are not text.
fn token_of(row: &[u8]) -> String {
    match row.first() {
        Some(&prefix @ (key::QUOTA | key::CASH_WITHOUT_QUOTA)) => {
            format!("{}{}", char::from(prefix), hex_seq(row))
        }
        _ => String::from_utf8_lossy(row).into_owned(),
    }
}

fn hex_seq(row: &[u8]) -> String {
    row[1..].iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a page resumes from: just after the one its token names.
fn resume_after(token: &[u8]) -> Result<Vec<u8>, Error> {
    if !matches!(token[0], key::QUOTA | key::CASH_WITHOUT_QUOTA) {
        let mut from = token.to_vec();
        from.push(0);
        return Ok(from);
    }
    let bad = || Rejection::invalid("page_token", "the page token is not one this server issued");
    let text = std::str::from_utf8(&token[1..]).map_err(|_| bad())?;
    let seq = u64::from_str_radix(text, 16).map_err(|_| bad())?;
    Ok(key::seq(token[0], seq.checked_add(1).ok_or_else(bad)?))
}

/// Money of a programme older in `account_id` than its rule allows.
fn idle_beyond_rule(report: &mut Report, account_id: &str) -> Result<(), Error> {
    let state = report.ledger.state();
    let account = indexed_account(state, account_id)?;
    if !report.org_passes(&account.owner_org_id)? {
        return Ok(());
    }
    // Programme → (money held too long, the records that brought it, the
    // rule's record, its days).
    let mut by_programme: BTreeMap<String, (u128, BTreeSet<u64>, u64, u32)> = BTreeMap::new();
    for (lot, held) in all_lots(state, account_id)? {
        let programme = report.programme_of(lot.source_seq)?;
        if !report.wants_programme(&programme) || !report.day_in_period(held.arrival_day) {
            continue;
        }
        let Some(rule) = report.rules.in_force(&programme, report.today) else {
            continue;
        };
        if rule.idle_days_max == 0
            || report.today - held.arrival_day
                <= i32::try_from(rule.idle_days_max).unwrap_or(i32::MAX)
        {
            continue;
        }
        let entry = by_programme.entry(programme).or_default();
        entry.0 += u128::from(held.amount.0);
        entry.1.insert(lot.arrival_seq);
        entry.2 = rule.seq;
        entry.3 = rule.idle_days_max;
    }
    for (programme, (amount, seqs, rule_seq, rule_days)) in by_programme {
        let count = seqs.len();
        report.push(
            Breach {
                kind: "IDLE_BEYOND_RULE",
                programme_code: programme.clone(),
                account_id: account_id.to_string(),
                scope_accounts: vec![account_id.to_string()],
                seqs: seqs.into_iter().collect(),
                rule_seq,
                amount_fen: fen(amount)?,
                detail: format!(
                    "{account_id} holds {} of programme {programme} longer than the {rule_days} days its rules allow",
                    Fen(fen(amount)?)
                ),
            },
            count,
        );
    }
    Ok(())
}

/// The breaches of one budget quota (rules 8) that passes the filters,
/// judged by its programme's rules in force today.
fn quota_breaches(report: &mut Report, quota: &Quota) -> Result<(), Error> {
    if quota.seq >= report.ledger.record_count()
        || !report.wants_programme(&quota.programme_code)
        || !report.day_in_period(quota.issued_day)
        || !report.org_passes(&quota.holder_org_id)?
    {
        return Ok(());
    }
    let Some(rule) = report.rules.in_force(&quota.programme_code, report.today) else {
        return Ok(());
    };
    let rule = rule.clone();
    quota_idle(report, quota, &rule)?;
    quota_not_issued_in_time(report, quota, &rule)?;
    cash_not_sent_in_time(report, quota, &rule)
}

/// Quota split to an org (rules 9) for which, within the days its
/// programme's rules allow (`cash_follow_days_max`, rules in force today),
/// less cash was sent to that org against it than its amount: what was
/// missing on the deadline, whether it came later or not at all. Only the
/// quota is named: budgets are public, the cash records are not.
fn cash_not_sent_in_time(
    report: &mut Report,
    quota: &Quota,
    rule: &ProgrammeRules,
) -> Result<(), Error> {
    let days_max = rule.cash_follow_days_max;
    let deadline = i64::from(quota.issued_day) + i64::from(days_max);
    if days_max == 0
        || quota.parent_seq.is_none()
        || !quota.cash_followed
        || i64::from(report.today) <= deadline
    {
        return Ok(());
    }
    let state = report.ledger.state();
    let prefix = key::seq(key::QUOTA_CASH, quota.seq);
    let mut in_time = 0u128;
    for (row, _) in state.scan(&prefix, &prefix, TRACE_RECORDS_MAX)? {
        let movement_seq = indexed_seq(&row)?;
        if movement_seq >= report.ledger.record_count() {
            continue;
        }
        let draw = state.quota_draw(movement_seq)?.ok_or_else(|| {
            Fault::corrupt(format!(
                "the cash index of quota {} names record {movement_seq}, which drew nothing",
                quota.seq
            ))
        })?;
        if i64::from(draw.day) <= deadline {
            in_time += u128::from(draw.amount.0);
        }
    }
    let missing = u128::from(quota.amount.0)
        .checked_sub(in_time)
        .ok_or_else(|| {
            Fault::corrupt(format!(
                "quota {} received more cash than its amount",
                quota.seq
            ))
        })?;
    if missing == 0 {
        return Ok(());
    }
    report.push(
        Breach {
            kind: "CASH_NOT_SENT_IN_TIME",
            programme_code: quota.programme_code.clone(),
            account_id: String::new(),
            scope_accounts: Vec::new(),
            seqs: vec![quota.seq],
            rule_seq: rule.seq,
            amount_fen: fen(missing)?,
            detail: format!(
                "{} of quota {} (文号 {}) issued to {} had not been sent to it as cash within the {days_max} days its programme's rules allow, by {}",
                Fen(fen(missing)?),
                quota.seq,
                quota.document_no,
                quota.holder_org_id,
                format_date(Day::try_from(deadline).unwrap_or(Day::MAX))
            ),
        },
        1,
    );
    Ok(())
}

/// Quota (rules 8) its holder has neither issued down nor paid out longer
/// than its programme's rules allow money to sit idle (`idle_days_max`),
/// counted from the quota's business date to today.
fn quota_idle(report: &mut Report, quota: &Quota, rule: &ProgrammeRules) -> Result<(), Error> {
    let days = i64::from(report.today) - i64::from(quota.issued_day);
    if rule.idle_days_max == 0 || days <= i64::from(rule.idle_days_max) {
        return Ok(());
    }
    let held = quota.held(&report.ledger.state().quota_use(quota.seq)?);
    if held == Fen::ZERO {
        return Ok(());
    }
    let (rule_seq, rule_days) = (rule.seq, rule.idle_days_max);
    report.push(
        Breach {
            kind: "QUOTA_IDLE",
            programme_code: quota.programme_code.clone(),
            account_id: String::new(),
            scope_accounts: Vec::new(),
            seqs: vec![quota.seq],
            rule_seq,
            amount_fen: held.0,
            detail: format!(
                "{} has neither issued down nor paid {held} of quota {} (文号 {}) in the {days} days since it was issued; the programme's rules allow money {rule_days} days",
                quota.holder_org_id, quota.seq, quota.document_no
            ),
        },
        1,
    );
    Ok(())
}

/// An imported record (rules 9) that moved cash down, or paid a household,
/// naming no quota: history from before quota was kept, for an auditor to
/// match with its budget documents. Not a programme rule: `rule_seq` is 0.
fn cash_without_quota(
    report: &mut Report,
    audience: &mut dyn Audience,
    seq: u64,
) -> Result<(), Error> {
    if seq >= report.ledger.record_count() {
        return Ok(());
    }
    let movement = indexed_movement(report.ledger.state(), seq)?;
    let Some(first) = movement.legs.first() else {
        return Ok(());
    };
    let (Some(from), Some(to)) = (first.from_account_id.clone(), first.to_account_id.clone())
    else {
        return Ok(());
    };
    let programme = report.programme_of(first.source_seq)?;
    let owner = indexed_account(report.ledger.state(), &from)?.owner_org_id;
    if movement.reversed_by.is_some()
        || !report.wants_programme(&programme)
        || !report.day_in_period(movement.value_day)
        || !report.org_passes(&owner)?
        || !audience.may_read(&from)?
        || !audience.may_read(&to)?
    {
        return Ok(());
    }
    let amount: u128 = movement.legs.iter().map(|l| u128::from(l.amount.0)).sum();
    report.push(
        Breach {
            kind: "CASH_WITHOUT_QUOTA",
            programme_code: programme.clone(),
            account_id: from.clone(),
            scope_accounts: vec![from.clone(), to.clone()],
            seqs: vec![seq],
            rule_seq: 0,
            amount_fen: fen(amount)?,
            detail: format!(
                "record {seq} (imported) moved {} of programme {programme} from {from} to {to} naming no budget quota",
                Fen(fen(amount)?)
            ),
        },
        1,
    );
    Ok(())
}

/// Quota held above county level that was not issued on within the days
/// its programme's rules allow (rules in force today): what was neither
/// split to a child org by the deadline nor paid out, whether it was split
/// later or is still held.
fn quota_not_issued_in_time(
    report: &mut Report,
    quota: &Quota,
    rule: &ProgrammeRules,
) -> Result<(), Error> {
    let (rule_seq, days_max) = (rule.seq, rule.quota_issue_days_max);
    let deadline = i64::from(quota.issued_day) + i64::from(days_max);
    if days_max == 0 || i64::from(report.today) <= deadline {
        return Ok(());
    }
    let state = report.ledger.state();
    let holder = state.org(&quota.holder_org_id)?.ok_or_else(|| {
        Fault::corrupt(format!(
            "derived state lacks org {}, which holds quota",
            quota.holder_org_id
        ))
    })?;
    if !matches!(
        level_of(&holder.division_code),
        "central" | "province" | "prefecture"
    ) {
        return Ok(());
    }
    let prefix = key::seq(key::QUOTA_SPLIT, quota.seq);
    let (mut in_time, mut late) = (0u128, Vec::new());
    for (row, _) in state.scan(&prefix, &prefix, TRACE_RECORDS_MAX)? {
        let split_seq = indexed_seq(&row)?;
        if split_seq >= report.ledger.record_count() {
            continue;
        }
        let split = state.quota(split_seq)?.ok_or_else(|| {
            Fault::corrupt(format!(
                "the split index names quota {split_seq}, which is absent"
            ))
        })?;
        match i64::from(split.issued_day) <= deadline {
            true => in_time += u128::from(split.amount.0),
            false => late.push(split_seq),
        }
    }
    let paid = u128::from(state.quota_use(quota.seq)?.paid.0);
    let not_in_time = u128::from(quota.amount.0)
        .checked_sub(in_time + paid)
        .ok_or_else(|| {
            Fault::corrupt(format!(
                "quota {} issued and paid more than it holds",
                quota.seq
            ))
        })?;
    if not_in_time == 0 {
        return Ok(());
    }
    let count = 1 + late.len();
    let seqs = std::iter::once(quota.seq).chain(late).collect();
    report.push(
        Breach {
            kind: "QUOTA_NOT_ISSUED_IN_TIME",
            programme_code: quota.programme_code.clone(),
            account_id: String::new(),
            scope_accounts: Vec::new(),
            seqs,
            rule_seq,
            amount_fen: fen(not_in_time)?,
            detail: format!(
                "{} did not issue on {} of quota {} (文号 {}) within the {days_max} days its programme's rules allow, by {}",
                quota.holder_org_id,
                Fen(fen(not_in_time)?),
                quota.seq,
                quota.document_no,
                format_date(Day::try_from(deadline).unwrap_or(Day::MAX))
            ),
        },
        count,
    );
    Ok(())
}

/// What one household may be paid of a programme in one period under
/// `rule`, if the rule sets a standard for its basis.
fn standard(rule: &ProgrammeRules, household: &Household) -> Option<u128> {
    let limit = match household.basis {
        SubsidyBasis::PerHousehold => u128::from(rule.household_max.0),
        SubsidyBasis::PerPerson => u128::from(rule.person_max.0) * u128::from(household.members),
    };
    (limit > 0).then_some(limit)
}

/// A household's payments that pass the filters, by programme and period,
/// judged against the standards and against the monitoring rule.
fn household_breaches(report: &mut Report, household: &Household) -> Result<(), Error> {
    if !report.org_passes(&household.owner_org_id)? {
        return Ok(());
    }
    let state = report.ledger.state();
    let mut by_period: BTreeMap<(String, String), Vec<HouseholdPayment>> = BTreeMap::new();
    for payment in all_payments(state, &household.account_id)? {
        if payment.reversed
            || state.returned_by_bank(payment.seq)?
            || !report.wants_programme(&payment.programme_code)
            || !payment.period.starts_with(&report.request.period)
        {
            continue;
        }
        by_period
            .entry((payment.programme_code.clone(), payment.period.clone()))
            .or_default()
            .push(payment);
    }
    outside_monitoring(report, household, &by_period)?;
    above_standard(report, household, by_period)
}

/// Rules 10: payments of a programme whose rules in force on the payment's
/// day require it (`monitored_only`) to a household not under monitoring
/// that day; one breach per programme.
fn outside_monitoring(
    report: &mut Report,
    household: &Household,
    by_period: &BTreeMap<(String, String), Vec<HouseholdPayment>>,
) -> Result<(), Error> {
    let mut by_programme: BTreeMap<&str, (Vec<u64>, u128, u64)> = BTreeMap::new();
    for ((programme, _), payments) in by_period {
        for payment in payments {
            let Some(rule) = report.rules.in_force(programme, payment.day) else {
                continue;
            };
            if !rule.monitored_only
                || household.monitoring_on(payment.day) != MonitoringCategory::NotMonitored
            {
                continue;
            }
            let entry = by_programme.entry(programme).or_default();
            entry.0.push(payment.seq);
            entry.1 += u128::from(payment.amount.0);
            entry.2 = entry.2.max(rule.seq);
        }
    }
    for (programme, (seqs, amount, rule_seq)) in by_programme {
        let count = seqs.len();
        report.push(
            Breach {
                kind: "OUTSIDE_MONITORING",
                programme_code: programme.to_string(),
                account_id: household.account_id.clone(),
                scope_accounts: vec![household.account_id.clone()],
                seqs,
                rule_seq,
                amount_fen: fen(amount)?,
                detail: format!(
                    "household {} was paid {} of programme {programme}, which its rules keep for households under monitoring (防止返贫动态监测), while it was not under monitoring",
                    household.account_id,
                    Fen(fen(amount)?)
                ),
            },
            count,
        );
    }
    Ok(())
}

/// Payments to a household above its programme's standard for a period.
fn above_standard(
    report: &mut Report,
    household: &Household,
    by_period: BTreeMap<(String, String), Vec<HouseholdPayment>>,
) -> Result<(), Error> {
    for ((programme, period), payments) in by_period {
        let last_day = payments
            .iter()
            .map(|p| p.day)
            .max()
            .expect("a group has a payment");
        let Some(rule) = report.rules.in_force(&programme, last_day) else {
            continue;
        };
        let Some(limit) = standard(rule, household) else {
            continue;
        };
        let paid: u128 = payments.iter().map(|p| u128::from(p.amount.0)).sum();
        if paid <= limit {
            continue;
        }
        let rule_seq = rule.seq;
        let count = payments.len();
        report.push(
            Breach {
                kind: "ABOVE_STANDARD",
                programme_code: programme.clone(),
                account_id: household.account_id.clone(),
                scope_accounts: vec![household.account_id.clone()],
                seqs: payments.iter().map(|p| p.seq).collect(),
                rule_seq,
                amount_fen: fen(paid - limit)?,
                detail: format!(
                    "household {} was paid {} of programme {programme} for {period}, above the standard of {}",
                    household.account_id,
                    Fen(fen(paid)?),
                    Fen(fen(limit)?)
                ),
            },
            count,
        );
    }
    Ok(())
}

/// The failed evaluation a project stood under at record `seq`, if any. A
/// project is judged by the latest evaluation its owner did not sign; a
/// self-evaluation (自评) counts only to admit a failure newer than that,
/// never to clear one.
fn failed_evaluation(evaluations: &[Evaluation], seq: u64) -> Option<&Evaluation> {
    let before = || evaluations.iter().rev().filter(|e| e.seq < seq);
    let external = before().find(|e| !e.by_owner);
    let own = before().find(|e| e.by_owner);
    match (external, own) {
        (Some(external), _) if external.failed() => Some(external),
        (external, Some(own)) if own.failed() && external.is_none_or(|x| own.seq > x.seq) => {
            Some(own)
        }
        _ => None,
    }
}

/// Allocations to a project before its announcement where the rules want
/// one, and after a failed evaluation.
fn project_breaches(report: &mut Report, project: &Project) -> Result<(), Error> {
    if !report.org_passes(&project.owner_org_id)? {
        return Ok(());
    }
    let state = report.ledger.state();
    let evaluations: Vec<Evaluation> =
        state.evaluations(&project.account_id, EVALUATIONS_PER_PROJECT_MAX)?;
    if report.rules.0.is_empty() && evaluations.is_empty() {
        return Ok(());
    }
    let announced = project.announced_seq.unwrap_or(u64::MAX);
    // (kind, programme) → (rule or evaluation seq, amount, allocations).
    let mut found: BTreeMap<(&'static str, String), (u64, u128, Vec<u64>)> = BTreeMap::new();
    let prefix = key::account_entries(&project.account_id);
    for (row, _) in state.scan(&prefix, &prefix, TRACE_RECORDS_MAX)? {
        let seq = indexed_seq(&row)?;
        let movement = indexed_movement(state, seq)?;
        if movement.kind != RecordKind::Allocation || movement.reversed_by.is_some() {
            continue;
        }
        if !report.day_in_period(movement.value_day) {
            continue;
        }
        let evaluated = failed_evaluation(&evaluations, seq);
        for leg in &movement.legs {
            if leg.to_account_id.as_deref() != Some(project.account_id.as_str()) {
                continue;
            }
            let programme = report.programme_of(leg.source_seq)?;
            if !report.wants_programme(&programme) {
                continue;
            }
            let amount = u128::from(leg.amount.0);
            if seq < announced {
                if let Some(rule) = report.rules.in_force(&programme, movement.value_day) {
                    if rule.announcement_required {
                        let entry = found
                            .entry(("UNANNOUNCED_PAYMENT", programme.clone()))
                            .or_insert((rule.seq, 0, Vec::new()));
                        entry.1 += amount;
                        if entry.2.last() != Some(&seq) {
                            entry.2.push(seq);
                        }
                    }
                }
            }
            if let Some(e) = evaluated {
                let entry = found
                    .entry(("FAILED_EVALUATION_FUNDED", programme.clone()))
                    .or_insert((e.seq, 0, Vec::new()));
                entry.1 += amount;
                if entry.2.last() != Some(&seq) {
                    entry.2.push(seq);
                }
            }
        }
    }
    for ((kind, programme), (rule_seq, amount, seqs)) in found {
        let detail = if kind == "UNANNOUNCED_PAYMENT" {
            match project.announced_seq {
                Some(at) => format!(
                    "project {} received {} of programme {programme} before its announcement (record {at}), which the programme's rules require first",
                    project.account_id,
                    Fen(fen(amount)?)
                ),
                None => format!(
                    "project {} received {} of programme {programme} but was never announced (公告公示), which the programme's rules require first",
                    project.account_id,
                    Fen(fen(amount)?)
                ),
            }
        } else {
            let evaluation = evaluations.iter().find(|e| e.seq == rule_seq);
            let score = evaluation.map_or(0, |e| e.score);
            let by = if evaluation.is_some_and(|e| e.by_owner) {
                "its own self-evaluation (自评)"
            } else {
                "its evaluation"
            };
            format!(
                "project {} received {} of programme {programme} after {by} (record {rule_seq}) failed with score {score}",
                project.account_id,
                Fen(fen(amount)?)
            )
        };
        let count = seqs.len();
        report.push(
            Breach {
                kind,
                programme_code: programme,
                account_id: project.account_id.clone(),
                scope_accounts: vec![project.account_id.clone()],
                seqs,
                rule_seq,
                amount_fen: fen(amount)?,
                detail,
            },
            count,
        );
    }
    Ok(())
}

/// A programme whose money in the ledger is held at county level or below
/// in a smaller share than its rules require. Reported only without
/// division, level or period filters: it is about the programme whole, now.
fn below_county_share(report: &mut Report, programme: &str) -> Result<(), Error> {
    let request = report.request;
    if !request.division_prefix.is_empty()
        || !request.level.is_empty()
        || !request.period.is_empty()
    {
        return Ok(());
    }
    let Some(rule) = report.rules.in_force(programme, report.today).cloned() else {
        return Ok(());
    };
    if rule.county_share_min_percent == 0 {
        return Ok(());
    }
    let (mut total, mut county, mut seqs, mut accounts) =
        (0u128, 0u128, Vec::new(), BTreeSet::new());
    for source in sources_of(report.ledger.state(), programme)? {
        seqs.push(source.source_seq);
        accounts.insert(source.account_id.clone());
        let (in_ledger, at_county) = county_holding(report.ledger, source.source_seq)?;
        total += in_ledger;
        county += at_county;
    }
    let needed = total * u128::from(rule.county_share_min_percent);
    if total == 0 || county * 100 >= needed {
        return Ok(());
    }
    let shortfall = needed.div_ceil(100) - county;
    let count = seqs.len();
    report.push(
        Breach {
            kind: "BELOW_COUNTY_SHARE",
            programme_code: programme.to_string(),
            account_id: String::new(),
            scope_accounts: accounts.into_iter().collect(),
            seqs,
            rule_seq: rule.seq,
            amount_fen: fen(shortfall)?,
            detail: format!(
                "of programme {programme}'s {} in the ledger, {} ({}%) is held at county level or below; its rules want at least {}%",
                Fen(fen(total)?),
                Fen(fen(county)?),
                county * 100 / total,
                rule.county_share_min_percent
            ),
        },
        count,
    );
    Ok(())
}

/// Every appropriation of `programme`, read in chunks: the registry of
/// sources is small beside the records, and a share needs all of them.
fn sources_of<K: Kv + ?Sized>(
    state: &K,
    programme: &str,
) -> Result<Vec<fundtrail_core::model::Source>, Error> {
    let prefix = [key::SOURCE];
    let mut from = prefix.to_vec();
    let mut out = Vec::new();
    loop {
        let rows = state.scan(&prefix, &from, REPORT_SCAN_ROWS_MAX)?;
        for (_, value) in &rows {
            let source: fundtrail_core::model::Source = decode(value)?;
            if source.programme_code == programme {
                out.push(source);
            }
        }
        match rows.last() {
            Some((last, _)) if rows.len() == REPORT_SCAN_ROWS_MAX => {
                from = last.clone();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
}

/// Of appropriation `source_seq`: what the ledger holds, and what of it
/// accounts at county level or below hold, from its forward trace.
fn county_holding(ledger: &dyn LedgerView, source_seq: u64) -> Result<(u128, u128), Error> {
    let mut held: BTreeMap<String, (u64, bool)> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = trace_forward(
            ledger,
            &TraceForwardRequest {
                seq: source_seq,
                page_size: TRACE_PAGE_RECORDS_MAX,
                page_token,
            },
        )?;
        for node in page.nodes {
            let county = level_of(&node.division_code) == "county";
            held.insert(node.account_id, (node.held_fen, county));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let total = held.values().map(|(h, _)| u128::from(*h)).sum();
    let county = held
        .values()
        .filter(|(_, c)| *c)
        .map(|(h, _)| u128::from(*h))
        .sum();
    Ok((total, county))
}
