//! Conversions between protobuf messages and `fundtrail_core` types.

use fundtrail_core::limits::PAYLOAD_BYTES_MAX;
use fundtrail_core::model::{self as m, AccountKind, Role};
use fundtrail_core::money::Fen;
use fundtrail_core::{Code, Rejection};
use prost::Message;

use crate::pb;

/// Decodes signed payload bytes into the request they carry.
pub fn decode_request(payload: &[u8]) -> Result<m::Request, Rejection> {
    if payload.is_empty() {
        return Err(Rejection::invalid("payload", "the signed payload is empty"));
    }
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(Rejection::new(
            Code::ResourceExhausted,
            "payload",
            format!(
                "the signed payload is {} bytes; at most {PAYLOAD_BYTES_MAX} are accepted",
                payload.len()
            ),
        ));
    }
    let request = pb::Request::decode(payload).map_err(|e| {
        Rejection::invalid(
            "payload",
            format!("the signed payload is not a fundtrail.v1.Request ({e})"),
        )
    })?;
    request_to_core(request)
}

fn key32(field: &str, bytes: &[u8]) -> Result<[u8; 32], Rejection> {
    bytes.try_into().map_err(|_| {
        Rejection::invalid(
            field,
            format!(
                "{field} must be a 32-byte Ed25519 public key, got {} bytes",
                bytes.len()
            ),
        )
    })
}

fn role(field: &str, value: i32) -> Result<Role, Rejection> {
    match pb::OrgRole::try_from(value) {
        Ok(pb::OrgRole::Administrator) => Ok(Role::Administrator),
        Ok(pb::OrgRole::Finance) => Ok(Role::Finance),
        Ok(pb::OrgRole::Auditor) => Ok(Role::Auditor),
        Ok(pb::OrgRole::Witness) => Ok(Role::Witness),
        Ok(pb::OrgRole::Mirror) => Ok(Role::Mirror),
        _ => Err(Rejection::invalid(
            field,
            "the org role must be ADMINISTRATOR, FINANCE, AUDITOR, WITNESS or MIRROR",
        )),
    }
}

pub fn role_to_pb(role: Role) -> pb::OrgRole {
    match role {
        Role::Administrator => pb::OrgRole::Administrator,
        Role::Finance => pb::OrgRole::Finance,
        Role::Auditor => pb::OrgRole::Auditor,
        Role::Witness => pb::OrgRole::Witness,
        Role::Mirror => pb::OrgRole::Mirror,
    }
}

fn account_kind(field: &str, value: i32) -> Result<AccountKind, Rejection> {
    match pb::AccountKind::try_from(value) {
        Ok(pb::AccountKind::Treasury) => Ok(AccountKind::Treasury),
        Ok(pb::AccountKind::Programme) => Ok(AccountKind::Programme),
        Ok(pb::AccountKind::Pool) => Ok(AccountKind::Pool),
        Ok(pb::AccountKind::Project) => Ok(AccountKind::Project),
        Ok(pb::AccountKind::Household) => Ok(AccountKind::Household),
        _ => Err(Rejection::invalid(
            field,
            "the account kind must be TREASURY, PROGRAMME, POOL, PROJECT or HOUSEHOLD",
        )),
    }
}

pub fn account_kind_to_pb(kind: AccountKind) -> pb::AccountKind {
    match kind {
        AccountKind::Treasury => pb::AccountKind::Treasury,
        AccountKind::Programme => pb::AccountKind::Programme,
        AccountKind::Pool => pb::AccountKind::Pool,
        AccountKind::Project => pb::AccountKind::Project,
        AccountKind::Household => pb::AccountKind::Household,
    }
}

fn earmarks(sources: Vec<pb::SourceAmount>) -> Vec<m::Earmark> {
    sources
        .into_iter()
        .map(|s| m::Earmark {
            source_seq: s.source_seq,
            amount: Fen(s.amount_fen),
        })
        .collect()
}

/// A decoded `Request` as a domain request.
pub fn request_to_core(request: pb::Request) -> Result<m::Request, Rejection> {
    use pb::request::Body as B;
    let body = match request.body {
        None => {
            return Err(Rejection::invalid(
                "body",
                "the request says nothing to do (no body)",
            ))
        }
        Some(B::Genesis(g)) => m::Body::Genesis(m::Genesis {
            root_public_key: key32("genesis.root_public_key", &g.root_public_key)?,
            log_public_key: key32("genesis.log_public_key", &g.log_public_key)?,
            root_org_id: g.root_org_id,
            root_org_name: g.root_org_name,
            division_code: g.division_code,
            // Genesis records from before rules versions carry none: rules 1.
            rules_version: g.rules_version.max(1),
        }),
        Some(B::UpgradeRules(u)) => m::Body::UpgradeRules(m::UpgradeRules {
            rules_version: u.rules_version,
            document_no: u.document_no,
        }),
        Some(B::RegisterOrg(r)) => m::Body::RegisterOrg(m::RegisterOrg {
            role: role("register_org.role", r.role)?,
            public_key: key32("register_org.public_key", &r.public_key)?,
            org_id: r.org_id,
            name: r.name,
            division_code: r.division_code,
        }),
        Some(B::AddKey(a)) => m::Body::AddKey(m::AddKey {
            public_key: key32("add_key.public_key", &a.public_key)?,
            org_id: a.org_id,
            read_only: a.read_only,
        }),
        Some(B::RevokeKey(r)) => m::Body::RevokeKey(m::RevokeKey {
            key_id: r.key_id,
            reason: r.reason,
        }),
        Some(B::OpenAccount(o)) => m::Body::OpenAccount(m::OpenAccount {
            kind: account_kind("open_account.kind", o.kind)?,
            account_id: o.account_id,
            name: o.name,
            programme_code: o.programme_code,
            household_ref: o.household_ref,
        }),
        Some(B::Appropriation(a)) => m::Body::Appropriation(m::Appropriation {
            account_id: a.account_id,
            amount: Fen(a.amount_fen),
            programme_code: a.programme_code,
            fiscal_year: a.fiscal_year,
            document_no: a.document_no,
            purpose: a.purpose,
            memo: a.memo,
        }),
        Some(B::Transfer(t)) => m::Body::Transfer(m::Transfer {
            from_account_id: t.from_account_id,
            to_account_id: t.to_account_id,
            amount: Fen(t.amount_fen),
            sources: earmarks(t.sources),
            document_no: t.document_no,
            purpose: t.purpose,
            memo: t.memo,
            quota_seq: t.quota_seq,
        }),
        Some(B::Disbursement(d)) => m::Body::Disbursement(m::Disbursement {
            from_account_id: d.from_account_id,
            household_account_id: d.household_account_id,
            amount: Fen(d.amount_fen),
            sources: earmarks(d.sources),
            programme_code: d.programme_code,
            period: d.period,
            document_no: d.document_no,
            memo: d.memo,
            quota_seq: d.quota_seq,
        }),
        Some(B::Reversal(r)) => m::Body::Reversal(m::Reversal {
            target_seq: r.target_seq,
            document_no: r.document_no,
            reason: r.reason,
        }),
        Some(B::Consolidation(c)) => m::Body::Consolidation(m::Consolidation {
            from_account_id: c.from_account_id,
            pool_account_id: c.pool_account_id,
            amount: Fen(c.amount_fen),
            sources: earmarks(c.sources),
            plan_document_no: c.plan_document_no,
            memo: c.memo,
        }),
        Some(B::RegisterProject(r)) => m::Body::RegisterProject(m::RegisterProject {
            account_id: r.account_id,
            name: r.name,
            category: r.category,
            location_code: r.location_code,
            budget: Fen(r.budget_fen),
            performance_targets: r.performance_targets,
            responsible_unit: r.responsible_unit,
            fiscal_year: r.fiscal_year,
        }),
        Some(B::AnnounceProject(a)) => m::Body::AnnounceProject(m::AnnounceProject {
            account_id: a.account_id,
            document_no: a.document_no,
            memo: a.memo,
        }),
        Some(B::Allocation(a)) => m::Body::Allocation(m::Allocation {
            pool_account_id: a.pool_account_id,
            project_account_id: a.project_account_id,
            amount: Fen(a.amount_fen),
            sources: earmarks(a.sources),
            document_no: a.document_no,
            memo: a.memo,
            quota_seq: a.quota_seq,
        }),
        Some(B::RegisterHousehold(r)) => m::Body::RegisterHousehold(m::RegisterHousehold {
            basis: match pb::SubsidyBasis::try_from(r.basis) {
                Ok(pb::SubsidyBasis::PerHousehold) => m::SubsidyBasis::PerHousehold,
                Ok(pb::SubsidyBasis::PerPerson) => m::SubsidyBasis::PerPerson,
                _ => {
                    return Err(Rejection::invalid(
                        "register_household.basis",
                        "the subsidy basis must be PER_HOUSEHOLD or PER_PERSON",
                    ))
                }
            },
            account_id: r.account_id,
            household_ref: r.household_ref,
            village_code: r.village_code,
            members: r.members,
        }),
        Some(B::SetHouseholdStatus(s)) => m::Body::SetHouseholdStatus(m::SetHouseholdStatus {
            status: household_status("set_household_status.status", s.status)?,
            account_id: s.account_id,
            document_no: s.document_no,
            reason: s.reason,
        }),
        Some(B::SetMonitoring(s)) => m::Body::SetMonitoring(m::SetMonitoring {
            category: monitoring_category("set_monitoring.category", s.category)?,
            account_id: s.account_id,
            document_no: s.document_no,
            reason: s.reason,
        }),
        Some(B::Return(r)) => {
            m::Body::Return(m::Return {
                kind: match pb::ReturnKind::try_from(r.kind) {
                    Ok(pb::ReturnKind::IdleRecovery) => m::ReturnKind::IdleRecovery,
                    Ok(pb::ReturnKind::Clawback) => m::ReturnKind::Clawback,
                    Ok(pb::ReturnKind::Surplus) => m::ReturnKind::Surplus,
                    Ok(pb::ReturnKind::BankFailure) => m::ReturnKind::BankFailure,
                    _ => return Err(Rejection::invalid(
                        "return.kind",
                        "the return kind must be IDLE_RECOVERY, CLAWBACK, SURPLUS or BANK_FAILURE",
                    )),
                },
                from_account_id: r.from_account_id,
                to_account_id: r.to_account_id,
                amount: Fen(r.amount_fen),
                sources: earmarks(r.sources),
                document_no: r.document_no,
                reason: r.reason,
                disbursement_seq: r.disbursement_seq,
                bank_reference: r.bank_reference,
            })
        }
        Some(B::SetProgrammeRules(r)) => m::Body::SetProgrammeRules(m::SetProgrammeRules {
            programme_code: r.programme_code,
            document_no: r.document_no,
            household_max: Fen(r.household_max_fen),
            person_max: Fen(r.person_max_fen),
            county_share_min_percent: r.county_share_min_percent,
            idle_days_max: r.idle_days_max,
            announcement_required: r.announcement_required,
            quota_issue_days_max: r.quota_issue_days_max,
            cash_follow_days_max: r.cash_follow_days_max,
            monitored_only: r.monitored_only,
        }),
        Some(B::EvaluateProject(e)) => m::Body::EvaluateProject(m::EvaluateProject {
            account_id: e.account_id,
            document_no: e.document_no,
            score: e.score,
            targets_met: e.targets_met,
        }),
        Some(B::DeclareImportWindow(w)) => m::Body::DeclareImportWindow(m::DeclareImportWindow {
            until_day: fundtrail_core::dates::parse_date(&w.until_date).ok_or_else(|| {
                Rejection::invalid(
                    "declare_import_window.until_date",
                    format!(
                        "the window's last day {:?} is not a date like 2026-03-15",
                        w.until_date
                    ),
                )
            })?,
            org_id: w.org_id,
            document_no: w.document_no,
        }),
        Some(B::DeclarePairing(p)) => m::Body::DeclarePairing(m::DeclarePairing {
            from_org_id: p.from_org_id,
            to_org_id: p.to_org_id,
            document_no: p.document_no,
        }),
        Some(B::IssueQuota(q)) => m::Body::IssueQuota(m::IssueQuota {
            to_org_id: q.to_org_id,
            from_quota_seq: q.from_quota_seq,
            amount: Fen(q.amount_fen),
            programme_code: q.programme_code,
            fiscal_year: q.fiscal_year,
            document_no: q.document_no,
            direct: q.direct,
            project_code: q.project_code,
        }),
        Some(B::ConfirmCredit(c)) => m::Body::ConfirmCredit(m::ConfirmCredit {
            disbursement_seq: c.disbursement_seq,
            household_account_id: c.household_account_id,
            bank_reference: c.bank_reference,
            document_no: c.document_no,
        }),
    };
    let value_date = if request.value_date.is_empty() {
        None
    } else {
        Some(
            fundtrail_core::dates::parse_date(&request.value_date).ok_or_else(|| {
                Rejection::invalid(
                    "value_date",
                    format!(
                        "the value date {:?} is not a date like 2026-03-15",
                        request.value_date
                    ),
                )
            })?,
        )
    };
    Ok(m::Request {
        ledger_id: request.ledger_id,
        idempotency_key: request.idempotency_key,
        signed_at_ms: request.signed_at_ms,
        value_date,
        imported: request.imported,
        body,
    })
}

fn household_status(field: &str, value: i32) -> Result<m::HouseholdStatus, Rejection> {
    match pb::HouseholdStatus::try_from(value) {
        Ok(pb::HouseholdStatus::Registered) => Ok(m::HouseholdStatus::Registered),
        Ok(pb::HouseholdStatus::Exited) => Ok(m::HouseholdStatus::Exited),
        Ok(pb::HouseholdStatus::Ineligible) => Ok(m::HouseholdStatus::Ineligible),
        _ => Err(Rejection::invalid(
            field,
            "the status must be REGISTERED, EXITED or INELIGIBLE",
        )),
    }
}

fn monitoring_category(field: &str, value: i32) -> Result<m::MonitoringCategory, Rejection> {
    use pb::MonitoringCategory as P;
    match P::try_from(value) {
        Ok(P::NotMonitored) => Ok(m::MonitoringCategory::NotMonitored),
        Ok(P::Unstable) => Ok(m::MonitoringCategory::Unstable),
        Ok(P::Marginal) => Ok(m::MonitoringCategory::Marginal),
        Ok(P::SuddenHardship) => Ok(m::MonitoringCategory::SuddenHardship),
        _ => Err(Rejection::invalid(
            field,
            "the category must be NOT_MONITORED, UNSTABLE, MARGINAL or SUDDEN_HARDSHIP",
        )),
    }
}

pub fn monitoring_category_to_pb(category: m::MonitoringCategory) -> pb::MonitoringCategory {
    use pb::MonitoringCategory as P;
    match category {
        m::MonitoringCategory::NotMonitored => P::NotMonitored,
        m::MonitoringCategory::Unstable => P::Unstable,
        m::MonitoringCategory::Marginal => P::Marginal,
        m::MonitoringCategory::SuddenHardship => P::SuddenHardship,
    }
}

pub fn household_status_to_pb(status: m::HouseholdStatus) -> pb::HouseholdStatus {
    match status {
        m::HouseholdStatus::Registered => pb::HouseholdStatus::Registered,
        m::HouseholdStatus::Exited => pb::HouseholdStatus::Exited,
        m::HouseholdStatus::Ineligible => pb::HouseholdStatus::Ineligible,
    }
}

pub fn effects_to_pb(effects: &m::Effects) -> pb::Effects {
    pb::Effects {
        signer_org_id: effects.signer_org_id.clone(),
        legs: effects
            .legs
            .iter()
            .map(|leg| pb::Leg {
                from_account_id: leg.from_account_id.clone().unwrap_or_default(),
                to_account_id: leg.to_account_id.clone().unwrap_or_default(),
                source_seq: leg.source_seq,
                amount_fen: leg.amount.0,
                from_arrival_seq: leg.from_arrival_seq,
            })
            .collect(),
        registered_key_id: effects.registered_key_id.clone().unwrap_or_default(),
        value_day: effects.value_day,
    }
}

/// The effects a stored record carries, as the domain reads them: an empty
/// account id on the wire is no account.
pub fn effects_to_core(effects: &pb::Effects) -> m::Effects {
    let account = |id: &str| (!id.is_empty()).then(|| id.to_string());
    m::Effects {
        signer_org_id: effects.signer_org_id.clone(),
        legs: effects
            .legs
            .iter()
            .map(|leg| m::Leg {
                from_account_id: account(&leg.from_account_id),
                to_account_id: account(&leg.to_account_id),
                source_seq: leg.source_seq,
                amount: Fen(leg.amount_fen),
                from_arrival_seq: leg.from_arrival_seq,
            })
            .collect(),
        registered_key_id: (!effects.registered_key_id.is_empty())
            .then(|| effects.registered_key_id.clone()),
        value_day: effects.value_day,
    }
}

/// The record kind of a decoded request body, as named in the API.
pub fn body_kind(body: &Option<pb::request::Body>) -> &'static str {
    use pb::request::Body as B;
    match body {
        None => "Unknown",
        Some(B::Genesis(_)) => "Genesis",
        Some(B::RegisterOrg(_)) => "RegisterOrg",
        Some(B::AddKey(_)) => "AddKey",
        Some(B::RevokeKey(_)) => "RevokeKey",
        Some(B::OpenAccount(_)) => "OpenAccount",
        Some(B::Appropriation(_)) => "Appropriation",
        Some(B::Transfer(_)) => "Transfer",
        Some(B::Disbursement(_)) => "Disbursement",
        Some(B::Reversal(_)) => "Reversal",
        Some(B::Consolidation(_)) => "Consolidation",
        Some(B::RegisterProject(_)) => "RegisterProject",
        Some(B::AnnounceProject(_)) => "AnnounceProject",
        Some(B::Allocation(_)) => "Allocation",
        Some(B::RegisterHousehold(_)) => "RegisterHousehold",
        Some(B::SetHouseholdStatus(_)) => "SetHouseholdStatus",
        Some(B::Return(_)) => "Return",
        Some(B::UpgradeRules(_)) => "UpgradeRules",
        Some(B::ConfirmCredit(_)) => "ConfirmCredit",
        Some(B::SetProgrammeRules(_)) => "SetProgrammeRules",
        Some(B::EvaluateProject(_)) => "EvaluateProject",
        Some(B::DeclareImportWindow(_)) => "DeclareImportWindow",
        Some(B::DeclarePairing(_)) => "DeclarePairing",
        Some(B::IssueQuota(_)) => "IssueQuota",
        Some(B::SetMonitoring(_)) => "SetMonitoring",
    }
}

pub fn org_to_pb(org: &m::Org, keys: Vec<pb::OrgKey>) -> pb::Org {
    pb::Org {
        org_id: org.org_id.clone(),
        name: org.name.clone(),
        role: role_to_pb(org.role) as i32,
        division_code: org.division_code.clone(),
        parent_org_id: org.parent_org_id.clone().unwrap_or_default(),
        registered_seq: org.registered_seq,
        keys,
    }
}

pub fn key_to_pb(key: &m::Key) -> pb::OrgKey {
    pb::OrgKey {
        key_id: key.key_id.clone(),
        public_key: key.public_key.to_vec(),
        added_seq: key.added_seq,
        revoked_seq: key.revoked_seq,
        read_only: key.read_only,
    }
}

/// An account with its balance per source; `source` looks up a source's details.
/// An account as the API shows it; `source` gives each source's details.
/// A balance past u64 (which no account can reach: every source is at most
/// `AMOUNT_FEN_MAX`, and a u64 holds 18 of those) is refused, never cut.
pub fn account_to_pb(
    account: &m::Account,
    source: impl Fn(u64) -> Option<m::Source>,
) -> Result<pb::Account, Rejection> {
    let balance_fen = u64::try_from(account.balance()).map_err(|_| {
        Rejection::new(
            Code::ResourceExhausted,
            "account_id",
            format!(
                "account {} holds more than one answer can carry",
                account.account_id
            ),
        )
    })?;
    Ok(pb::Account {
        account_id: account.account_id.clone(),
        owner_org_id: account.owner_org_id.clone(),
        kind: account_kind_to_pb(account.kind) as i32,
        name: account.name.clone(),
        programme_code: account.programme_code.clone(),
        household_ref: account.household_ref.clone(),
        division_code: account.division_code.clone(),
        opened_seq: account.opened_seq,
        balance_fen,
        balances: account
            .balances
            .iter()
            .map(|(&source_seq, amount)| {
                let details = source(source_seq);
                pb::SourceBalance {
                    source_seq,
                    amount_fen: amount.0,
                    programme_code: details
                        .as_ref()
                        .map(|s| s.programme_code.clone())
                        .unwrap_or_default(),
                    document_no: details
                        .as_ref()
                        .map(|s| s.document_no.clone())
                        .unwrap_or_default(),
                    fiscal_year: details.as_ref().map(|s| s.fiscal_year).unwrap_or_default(),
                }
            })
            .collect(),
    })
}
