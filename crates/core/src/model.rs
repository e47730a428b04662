//! Domain types: what a request says, what the ledger remembers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dates::Day;
use crate::money::Fen;

/// An org's role (角色). Decides which acts its keys may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// 财政部 and other bodies that run the ledger.
    Administrator,
    /// A finance bureau (财政厅/局) or department that holds and moves money.
    Finance,
    /// An audit office (审计机关).
    Auditor,
    /// A checkpoint witness.
    Witness,
    /// A whole-log reader: a replica or mirror of the log (rules 4 on).
    Mirror,
}

impl Role {
    /// The role as the API spells it (`ORG_ROLE_` left off).
    pub fn name(self) -> &'static str {
        match self {
            Role::Administrator => "ADMINISTRATOR",
            Role::Finance => "FINANCE",
            Role::Auditor => "AUDITOR",
            Role::Witness => "WITNESS",
            Role::Mirror => "MIRROR",
        }
    }

    /// Whether keys of this role may hold accounts, move money and register child orgs.
    pub fn handles_money(self) -> bool {
        matches!(self, Role::Administrator | Role::Finance)
    }
}

/// What an account holds (账户类型).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountKind {
    Treasury,
    /// One fund programme's money at one level (专项资金).
    Programme,
    /// A county's consolidated pool (统筹整合资金).
    Pool,
    /// An entry of the county project library (项目库).
    Project,
    /// A registered household (建档立卡户): a sink.
    Household,
}

/// A request as signed by a client (decoded from `Request` payload bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub ledger_id: String,
    pub idempotency_key: String,
    pub signed_at_ms: i64,
    /// The business date asked for; `None` means the commit day.
    pub value_date: Option<Day>,
    /// Carried over from an earlier system: past value dates allowed.
    pub imported: bool,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Genesis(Genesis),
    RegisterOrg(RegisterOrg),
    AddKey(AddKey),
    RevokeKey(RevokeKey),
    OpenAccount(OpenAccount),
    Appropriation(Appropriation),
    Transfer(Transfer),
    Disbursement(Disbursement),
    Reversal(Reversal),
    Consolidation(Consolidation),
    RegisterProject(RegisterProject),
    AnnounceProject(AnnounceProject),
    Allocation(Allocation),
    RegisterHousehold(RegisterHousehold),
    SetHouseholdStatus(SetHouseholdStatus),
    Return(Return),
    UpgradeRules(UpgradeRules),
    ConfirmCredit(ConfirmCredit),
    SetProgrammeRules(SetProgrammeRules),
    EvaluateProject(EvaluateProject),
    DeclareImportWindow(DeclareImportWindow),
    DeclarePairing(DeclarePairing),
    IssueQuota(IssueQuota),
    SetMonitoring(SetMonitoring),
}

/// What a record is: one kind a body. Stored and shown by its name, as the
/// API spells it (`Disbursement`), so derived state keeps the bytes it had
/// when the kind was a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    Genesis,
    RegisterOrg,
    AddKey,
    RevokeKey,
    OpenAccount,
    Appropriation,
    Transfer,
    Disbursement,
    Reversal,
    Consolidation,
    RegisterProject,
    AnnounceProject,
    Allocation,
    RegisterHousehold,
    SetHouseholdStatus,
    Return,
    UpgradeRules,
    ConfirmCredit,
    SetProgrammeRules,
    EvaluateProject,
    DeclareImportWindow,
    DeclarePairing,
    IssueQuota,
    SetMonitoring,
}

impl RecordKind {
    /// Every kind, in body-tag order.
    pub const ALL: [RecordKind; 24] = [
        RecordKind::Genesis,
        RecordKind::RegisterOrg,
        RecordKind::AddKey,
        RecordKind::RevokeKey,
        RecordKind::OpenAccount,
        RecordKind::Appropriation,
        RecordKind::Transfer,
        RecordKind::Disbursement,
        RecordKind::Reversal,
        RecordKind::Consolidation,
        RecordKind::RegisterProject,
        RecordKind::AnnounceProject,
        RecordKind::Allocation,
        RecordKind::RegisterHousehold,
        RecordKind::SetHouseholdStatus,
        RecordKind::Return,
        RecordKind::UpgradeRules,
        RecordKind::ConfirmCredit,
        RecordKind::SetProgrammeRules,
        RecordKind::EvaluateProject,
        RecordKind::DeclareImportWindow,
        RecordKind::DeclarePairing,
        RecordKind::IssueQuota,
        RecordKind::SetMonitoring,
    ];

    /// The kind's name as the API spells it.
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::Genesis => "Genesis",
            RecordKind::RegisterOrg => "RegisterOrg",
            RecordKind::AddKey => "AddKey",
            RecordKind::RevokeKey => "RevokeKey",
            RecordKind::OpenAccount => "OpenAccount",
            RecordKind::Appropriation => "Appropriation",
            RecordKind::Transfer => "Transfer",
            RecordKind::Disbursement => "Disbursement",
            RecordKind::Reversal => "Reversal",
            RecordKind::Consolidation => "Consolidation",
            RecordKind::RegisterProject => "RegisterProject",
            RecordKind::AnnounceProject => "AnnounceProject",
            RecordKind::Allocation => "Allocation",
            RecordKind::RegisterHousehold => "RegisterHousehold",
            RecordKind::SetHouseholdStatus => "SetHouseholdStatus",
            RecordKind::Return => "Return",
            RecordKind::UpgradeRules => "UpgradeRules",
            RecordKind::ConfirmCredit => "ConfirmCredit",
            RecordKind::SetProgrammeRules => "SetProgrammeRules",
            RecordKind::EvaluateProject => "EvaluateProject",
            RecordKind::DeclareImportWindow => "DeclareImportWindow",
            RecordKind::DeclarePairing => "DeclarePairing",
            RecordKind::IssueQuota => "IssueQuota",
            RecordKind::SetMonitoring => "SetMonitoring",
        }
    }

    /// The kind named `name`, if there is one.
    pub fn of_name(name: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl std::fmt::Display for RecordKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for RecordKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for RecordKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        RecordKind::of_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("no record kind is named {name:?}")))
    }
}

impl Body {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Body::Genesis(_) => RecordKind::Genesis,
            Body::RegisterOrg(_) => RecordKind::RegisterOrg,
            Body::AddKey(_) => RecordKind::AddKey,
            Body::RevokeKey(_) => RecordKind::RevokeKey,
            Body::OpenAccount(_) => RecordKind::OpenAccount,
            Body::Appropriation(_) => RecordKind::Appropriation,
            Body::Transfer(_) => RecordKind::Transfer,
            Body::Disbursement(_) => RecordKind::Disbursement,
            Body::Reversal(_) => RecordKind::Reversal,
            Body::Consolidation(_) => RecordKind::Consolidation,
            Body::RegisterProject(_) => RecordKind::RegisterProject,
            Body::AnnounceProject(_) => RecordKind::AnnounceProject,
            Body::Allocation(_) => RecordKind::Allocation,
            Body::RegisterHousehold(_) => RecordKind::RegisterHousehold,
            Body::SetHouseholdStatus(_) => RecordKind::SetHouseholdStatus,
            Body::Return(_) => RecordKind::Return,
            Body::UpgradeRules(_) => RecordKind::UpgradeRules,
            Body::ConfirmCredit(_) => RecordKind::ConfirmCredit,
            Body::SetProgrammeRules(_) => RecordKind::SetProgrammeRules,
            Body::EvaluateProject(_) => RecordKind::EvaluateProject,
            Body::DeclareImportWindow(_) => RecordKind::DeclareImportWindow,
            Body::DeclarePairing(_) => RecordKind::DeclarePairing,
            Body::IssueQuota(_) => RecordKind::IssueQuota,
            Body::SetMonitoring(_) => RecordKind::SetMonitoring,
        }
    }

    /// Whether the record belongs to the registry of orgs, keys and rules,
    /// which every registered reader may read.
    pub fn is_registry(&self) -> bool {
        matches!(
            self,
            Body::Genesis(_)
                | Body::RegisterOrg(_)
                | Body::AddKey(_)
                | Body::RevokeKey(_)
                | Body::UpgradeRules(_)
                | Body::DeclareImportWindow(_)
                | Body::DeclarePairing(_)
                | Body::IssueQuota(_)
        )
    }

    /// The accounts the body names. A money record also touches the
    /// accounts of its legs (a Reversal names none itself).
    pub fn accounts_named(&self) -> Vec<&str> {
        match self {
            Body::Genesis(_)
            | Body::RegisterOrg(_)
            | Body::AddKey(_)
            | Body::RevokeKey(_)
            | Body::Reversal(_)
            | Body::UpgradeRules(_)
            | Body::SetProgrammeRules(_)
            | Body::DeclareImportWindow(_)
            | Body::DeclarePairing(_)
            | Body::IssueQuota(_) => vec![],
            Body::OpenAccount(b) => vec![&b.account_id],
            Body::Appropriation(b) => vec![&b.account_id],
            Body::Transfer(b) => vec![&b.from_account_id, &b.to_account_id],
            Body::Disbursement(b) => vec![&b.from_account_id, &b.household_account_id],
            Body::Consolidation(b) => vec![&b.from_account_id, &b.pool_account_id],
            Body::RegisterProject(b) => vec![&b.account_id],
            Body::AnnounceProject(b) => vec![&b.account_id],
            Body::Allocation(b) => vec![&b.pool_account_id, &b.project_account_id],
            Body::RegisterHousehold(b) => vec![&b.account_id],
            Body::SetHouseholdStatus(b) => vec![&b.account_id],
            Body::SetMonitoring(b) => vec![&b.account_id],
            Body::Return(b) => vec![&b.from_account_id, &b.to_account_id],
            Body::ConfirmCredit(b) => vec![&b.household_account_id],
            Body::EvaluateProject(b) => vec![&b.account_id],
        }
    }

    /// Whether the record moves money (and so has a business date and legs).
    pub fn moves_money(&self) -> bool {
        matches!(
            self,
            Body::Appropriation(_)
                | Body::Transfer(_)
                | Body::Disbursement(_)
                | Body::Reversal(_)
                | Body::Consolidation(_)
                | Body::Allocation(_)
                | Body::Return(_)
        )
    }
}

/// Record 0: the ledger's root org and log key (创世记录).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genesis {
    pub root_org_id: String,
    pub root_org_name: String,
    pub division_code: String,
    pub root_public_key: [u8; 32],
    pub log_public_key: [u8; 32],
    /// The rules version the ledger starts under (see [`crate::rules`]).
    pub rules_version: u32,
}

/// Moves the ledger to rules version `rules_version` from the next record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRules {
    pub rules_version: u32,
    /// The decision (文号) that adopted the new rules.
    pub document_no: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOrg {
    pub org_id: String,
    pub name: String,
    pub role: Role,
    pub division_code: String,
    pub public_key: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddKey {
    pub org_id: String,
    pub public_key: [u8; 32],
    /// A read key: it signs reads, never records (rules 6 on).
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeKey {
    pub key_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAccount {
    pub account_id: String,
    pub kind: AccountKind,
    pub name: String,
    pub programme_code: String,
    pub household_ref: String,
}

/// Money in (预算下达): creates a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appropriation {
    pub account_id: String,
    pub amount: Fen,
    pub programme_code: String,
    pub fiscal_year: u32,
    pub document_no: String,
    pub purpose: String,
    pub memo: String,
}

/// An amount of one source, named by the seq of its appropriation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earmark {
    pub source_seq: u64,
    pub amount: Fen,
}

/// Transfer between levels (拨付).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub from_account_id: String,
    pub to_account_id: String,
    pub amount: Fen,
    pub sources: Vec<Earmark>,
    pub document_no: String,
    pub purpose: String,
    pub memo: String,
    /// The quota this cash follows (rules 9).
    pub quota_seq: Option<u64>,
}

/// Payment to a registered household (直接拨付到户).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disbursement {
    pub from_account_id: String,
    pub household_account_id: String,
    pub amount: Fen,
    pub sources: Vec<Earmark>,
    pub programme_code: String,
    pub period: String,
    pub document_no: String,
    pub memo: String,
    /// The quota this payment draws on (rules 9).
    pub quota_seq: Option<u64>,
}

/// Compensating record for an earlier movement (冲销).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    pub target_seq: u64,
    pub document_no: String,
    pub reason: String,
}

/// County consolidation of programme money into its pool (统筹整合).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consolidation {
    pub from_account_id: String,
    pub pool_account_id: String,
    pub amount: Fen,
    pub sources: Vec<Earmark>,
    pub plan_document_no: String,
    pub memo: String,
}

/// A county project library entry (项目库).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterProject {
    pub account_id: String,
    pub name: String,
    pub category: String,
    pub location_code: String,
    pub budget: Fen,
    /// 绩效目标.
    pub performance_targets: Vec<String>,
    pub responsible_unit: String,
    pub fiscal_year: u32,
}

/// Public announcement of a project (公告公示).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceProject {
    pub account_id: String,
    pub document_no: String,
    pub memo: String,
}

/// Pool → project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub pool_account_id: String,
    pub project_account_id: String,
    pub amount: Fen,
    pub sources: Vec<Earmark>,
    pub document_no: String,
    pub memo: String,
    /// Rules 9: the quota the spending draws on, if any.
    pub quota_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubsidyBasis {
    PerHousehold,
    PerPerson,
}

/// A household's standing (建档立卡 / 已脱贫 / 不符合条件).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HouseholdStatus {
    Registered,
    /// Exited poverty; still eligible (脱贫不脱政策).
    Exited,
    Ineligible,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterHousehold {
    pub account_id: String,
    pub household_ref: String,
    pub village_code: String,
    pub basis: SubsidyBasis,
    pub members: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetHouseholdStatus {
    pub account_id: String,
    pub status: HouseholdStatus,
    pub document_no: String,
    pub reason: String,
}

/// Rules 10: a household's monitoring category from a day on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMonitoring {
    pub account_id: String,
    pub category: MonitoringCategory,
    pub document_no: String,
    pub reason: String,
}

/// 防止返贫动态监测 categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MonitoringCategory {
    /// Not (or no longer) monitored: risk cleared.
    NotMonitored,
    /// 脱贫不稳定户.
    Unstable,
    /// 边缘易致贫户.
    Marginal,
    /// 突发严重困难户.
    SuddenHardship,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReturnKind {
    /// 闲置资金收回.
    IdleRecovery,
    /// 追回虚报冒领.
    Clawback,
    /// 结余资金.
    Surplus,
    /// 银行退回: the bank could not credit a household payment (rules 5).
    BankFailure,
}

/// Money sent back up (资金收回).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return {
    pub from_account_id: String,
    pub to_account_id: String,
    pub amount: Fen,
    pub sources: Vec<Earmark>,
    pub kind: ReturnKind,
    pub document_no: String,
    pub reason: String,
    /// [`ReturnKind::BankFailure`] only: the payment the bank could not
    /// credit (0: none), and the bank's reference for that result.
    pub disbursement_seq: u64,
    pub bank_reference: String,
}

/// The bank's confirmation that a household payment was credited (到账确认).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmCredit {
    pub disbursement_seq: u64,
    pub household_account_id: String,
    pub bank_reference: String,
    pub document_no: String,
}

/// A programme's standards from a value date on (rules 5); 0 or false is
/// no such rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetProgrammeRules {
    pub programme_code: String,
    pub document_no: String,
    pub household_max: Fen,
    pub person_max: Fen,
    pub county_share_min_percent: u32,
    pub idle_days_max: u32,
    pub announcement_required: bool,
    /// Rules 8: days quota may be held above county level before it is
    /// issued on; 0 is no such rule.
    pub quota_issue_days_max: u32,
    /// Rules 9: days from a quota's split until cash for all of it was
    /// sent to its holder; 0 is no such rule.
    pub cash_follow_days_max: u32,
    /// Rules 10: the programme pays only households under monitoring.
    pub monitored_only: bool,
}

/// The rules of a programme as stored: what was set, by which record, from
/// which day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammeRules {
    pub seq: u64,
    pub effective_day: Day,
    pub programme_code: String,
    pub household_max: Fen,
    pub person_max: Fen,
    pub county_share_min_percent: u32,
    pub idle_days_max: u32,
    pub announcement_required: bool,
    pub quota_issue_days_max: u32,
    pub cash_follow_days_max: u32,
    pub monitored_only: bool,
}

/// A project's performance evaluation (绩效评价, rules 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluateProject {
    pub account_id: String,
    pub document_no: String,
    pub score: u32,
    pub targets_met: Vec<bool>,
}

/// An org's import window (历史数据导入): while it is open the org may post
/// records marked imported, with past value dates (rules 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclareImportWindow {
    pub org_id: String,
    /// The last commit day on which the window is open.
    pub until_day: Day,
    pub document_no: String,
}

/// Two orgs paired for money sent sideways (对口帮扶, 东西部协作; rules 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclarePairing {
    pub from_org_id: String,
    pub to_org_id: String,
    pub document_no: String,
}

/// An import window as stored under its org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportWindow {
    /// The record that declared it.
    pub seq: u64,
    pub until_day: Day,
}

/// An evaluation as stored under its project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub seq: u64,
    pub day: Day,
    pub score: u32,
    pub targets_met: Vec<bool>,
    /// Signed by the project's owner (自评): shown as such, and never what
    /// a report judges the project by.
    pub by_owner: bool,
}

impl Evaluation {
    /// Below this score (评价等级"差") the project failed its evaluation.
    pub const PASS_SCORE: u32 = 60;

    pub fn failed(&self) -> bool {
        self.score < Self::PASS_SCORE
    }
}

/// The bank's result for one household payment, kept under the payment's
/// seq: a [`ConfirmCredit`] (`credited`) or a bank-failure [`Return`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The record that posted the result.
    pub seq: u64,
    /// Its value day: when the bank credited, or when the money came back.
    pub day: Day,
    pub credited: bool,
    pub bank_reference: String,
}

/// One source's money moving between two accounts. `None` on the from side
/// is money entering the ledger; `None` on the to side is money leaving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub from_account_id: Option<String>,
    pub to_account_id: Option<String>,
    pub source_seq: u64,
    pub amount: Fen,
    /// The lot it came out of (the record that brought it into the from
    /// account); `None` for money entering the ledger.
    pub from_arrival_seq: Option<u64>,
}

/// What accepting a request did; stored in the record beside the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    pub signer_org_id: String,
    pub legs: Vec<Leg>,
    pub registered_key_id: Option<String>,
    /// The record's business date.
    pub value_day: Day,
}

/// The ledger's identity, from genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMeta {
    pub ledger_id: String,
    pub root_org_id: String,
    pub log_public_key: [u8; 32],
    /// The rules version in force for the next record.
    pub rules_version: u32,
}

/// A registered organisation (单位).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub org_id: String,
    pub name: String,
    pub role: Role,
    pub division_code: String,
    pub parent_org_id: Option<String>,
    pub registered_seq: u64,
    pub key_ids: Vec<String>,
}

/// A registered signing key of one org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub key_id: String,
    pub org_id: String,
    pub public_key: [u8; 32],
    pub added_seq: u64,
    pub revoked_seq: Option<u64>,
    /// A read key: it signs reads, never records (rules 6 on).
    pub read_only: bool,
}

/// Budget quota (预算指标) issued by a document (rules 8): new at the top
/// (`from_quota_seq` is `None`, to the signer itself), else split from a
/// quota the signer holds to a child org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueQuota {
    pub to_org_id: String,
    pub from_quota_seq: Option<u64>,
    pub amount: Fen,
    pub programme_code: String,
    pub fiscal_year: u32,
    pub document_no: String,
    /// The 直达资金 mark.
    pub direct: bool,
    /// 项目代码.
    pub project_code: String,
}

/// A quota as stored, named by the seq of its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub seq: u64,
    pub holder_org_id: String,
    pub parent_seq: Option<u64>,
    /// The quota at the top of its lineage (its own seq at the top).
    pub root_seq: u64,
    pub programme_code: String,
    pub fiscal_year: u32,
    pub document_no: String,
    pub direct: bool,
    pub project_code: String,
    pub amount: Fen,
    /// Split off to child orgs so far; never more than `amount`.
    pub issued_down: Fen,
    pub issued_day: Day,
    /// Issued under rules 9 or later, when cash sent against quota is
    /// counted: whether cash following it late can be judged at all.
    pub cash_followed: bool,
}

impl Quota {
    /// What the holder may still issue down or pay out: the amount less
    /// what was issued down and what it paid against it.
    pub fn held(&self, used: &QuotaUse) -> Fen {
        let spent = self
            .issued_down
            .checked_add(used.paid)
            .expect("issued down and paid never pass the amount (checked as drawn)");
        Fen(self
            .amount
            .0
            .checked_sub(spent.0)
            .expect("a quota never issues down and pays more than its amount (checked as drawn)"))
    }
}

/// What has been drawn on a quota (rules 9): cash sent down against it to
/// its holder, and payments its holder made against it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUse {
    pub cash_received: Fen,
    pub paid: Fen,
}

/// Which quota a movement drew on, and how (rules 9): kept so that a
/// reversal or a bank failure gives the quota back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaDraw {
    pub quota_seq: u64,
    /// Cash sent down to the quota's holder; else a payment by it.
    pub cash: bool,
    pub amount: Fen,
    /// The movement's business date: the month it counts in.
    pub day: Day,
}

/// What one document (文号) issued as quota: its first programme, and
/// whether it issued 直达资金 (then it may issue nothing else).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaDocument {
    pub programme_code: String,
    pub direct: bool,
}

/// An account and its balance per source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub account_id: String,
    pub owner_org_id: String,
    pub kind: AccountKind,
    pub name: String,
    pub programme_code: String,
    pub household_ref: String,
    pub division_code: String,
    pub opened_seq: u64,
    /// Balance per source; zero balances are removed. The money itself is
    /// held as lots, stored one key each (see `state::key::lot`).
    pub balances: BTreeMap<u64, Fen>,
}

/// Names a lot: money of one source that arrived with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LotKey {
    pub source_seq: u64,
    /// The record that brought the money into the account.
    pub arrival_seq: u64,
}

/// Money of one source that arrived in an account with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub amount: Fen,
    /// The business date it arrived: ages count from here.
    pub arrival_day: Day,
}

impl Account {
    /// The total balance over all sources.
    pub fn balance(&self) -> u128 {
        self.balances.values().map(|f| u128::from(f.0)).sum()
    }

    /// The balance of one source.
    pub fn balance_of(&self, source_seq: u64) -> u128 {
        self.balances
            .get(&source_seq)
            .map(|f| u128::from(f.0))
            .unwrap_or(0)
    }
}

/// A county project library entry and what it has received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub account_id: String,
    pub owner_org_id: String,
    pub name: String,
    pub category: String,
    pub location_code: String,
    pub budget: Fen,
    pub performance_targets: Vec<String>,
    pub responsible_unit: String,
    pub fiscal_year: u32,
    pub registered_seq: u64,
    /// Σ allocated, net of reversals; never above the budget.
    pub allocated: Fen,
    /// The announcement record (公告公示), if any.
    pub announced_seq: Option<u64>,
    pub announcement_document_no: String,
}

/// A registered household (建档立卡户): registry id only, no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Household {
    pub account_id: String,
    pub owner_org_id: String,
    pub household_ref: String,
    pub village_code: String,
    pub basis: SubsidyBasis,
    pub members: u32,
    pub registered_seq: u64,
    /// Status changes in record order: (effective day, status, record seq).
    /// Payments are kept apart, one key each (`key::HOUSEHOLD_PAYMENT`).
    pub statuses: Vec<(Day, HouseholdStatus, u64)>,
    /// Monitoring changes in record order (rules 10): (effective day,
    /// category, record seq).
    pub monitoring: Vec<(Day, MonitoringCategory, u64)>,
}

impl Household {
    /// The monitoring category in force on `day`.
    pub fn monitoring_on(&self, day: Day) -> MonitoringCategory {
        self.monitoring
            .iter()
            .filter(|(effective, _, _)| *effective <= day)
            .max_by_key(|(effective, _, seq)| (*effective, *seq))
            .map(|(_, category, _)| *category)
            .unwrap_or(MonitoringCategory::NotMonitored)
    }

    /// The status in force on `day`: the latest change effective by then.
    pub fn status_on(&self, day: Day) -> HouseholdStatus {
        self.statuses
            .iter()
            .filter(|(effective, _, _)| *effective <= day)
            .max_by_key(|(effective, _, seq)| (*effective, *seq))
            .map(|(_, status, _)| *status)
            .unwrap_or(HouseholdStatus::Registered)
    }
}

/// One payment to a household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdPayment {
    pub seq: u64,
    pub day: Day,
    pub amount: Fen,
    pub programme_code: String,
    pub period: String,
    pub reversed: bool,
}

/// A source of money (资金来源): one appropriation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub source_seq: u64,
    pub account_id: String,
    pub amount: Fen,
    /// Taken out of the ledger again by reversing the appropriation.
    pub withdrawn: Fen,
    pub appropriated_day: Day,
    pub programme_code: String,
    pub fiscal_year: u32,
    pub document_no: String,
}

/// The money a record moved, kept so that it can be reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub seq: u64,
    pub kind: RecordKind,
    pub value_day: Day,
    /// The org that signed the movement.
    pub signer_org_id: String,
    pub legs: Vec<Leg>,
    pub is_reversal: bool,
    pub reversed_by: Option<u64>,
}

/// What an idempotency key was first used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub seq: u64,
    pub payload_sha256: [u8; 32],
}

#[cfg(test)]
mod record_kind_tests {
    use super::*;

    #[test]
    fn a_kind_is_stored_as_its_name_always_was() {
        for kind in RecordKind::ALL {
            let as_string = crate::state::encode(&kind.name().to_string());
            assert_eq!(crate::state::encode(&kind), as_string, "{kind}");
            let back: RecordKind = crate::state::decode(&as_string).unwrap();
            assert_eq!(back, kind);
            assert_eq!(RecordKind::of_name(kind.name()), Some(kind));
        }
        let unknown = crate::state::encode(&"Gift".to_string());
        assert!(crate::state::decode::<RecordKind>(&unknown).is_err());
    }
}
