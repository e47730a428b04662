//! `fundtrail post …`: build a request, sign it with a key file, post it.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fundtrail_api::pb;
use fundtrail_client::{new_idempotency_key, Signer};
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::money::Fen;

use crate::output;
use crate::remote::{status, Server};

#[derive(Args)]
pub struct PostArgs {
    #[command(flatten)]
    server: Server,
    /// Idempotency key: posting again with the same key and the same request
    /// returns the first result instead of recording twice. Default: random.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Business date (记账日期), YYYY-MM-DD; default today. Past dates only
    /// with --imported (or for household status changes).
    #[arg(long, global = true)]
    value_date: Option<String>,
    /// The record is carried over from an earlier system.
    #[arg(long, global = true)]
    imported: bool,
    /// Print the signed request as one line of a bulk-load file
    /// (docs/bulk-load.md) instead of posting it.
    #[arg(long, global = true)]
    sign_only: bool,
    /// Post every signed request in this bulk-load file (one JSON line each,
    /// docs/bulk-load.md) over one PostStream, and print each one's result.
    #[arg(long, value_name = "FILE", conflicts_with = "sign_only")]
    from_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    request: Option<PostRequest>,
}

/// One line of a bulk-load file: a signed request as it goes on the wire.
#[derive(serde::Serialize, serde::Deserialize)]
struct SignedLine {
    key_id: String,
    /// The signed payload bytes, base64 (standard alphabet, padded).
    payload: String,
    /// The 64-byte Ed25519 signature, base64.
    signature: String,
}

impl SignedLine {
    fn of(signed: &pb::SignedRequest) -> SignedLine {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        SignedLine {
            key_id: signed.key_id.clone(),
            payload: b64.encode(&signed.payload),
            signature: b64.encode(&signed.signature),
        }
    }

    fn parse(line: &str) -> Result<pb::SignedRequest> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let parsed: SignedLine = serde_json::from_str(line)?;
        Ok(pb::SignedRequest {
            key_id: parsed.key_id,
            payload: b64
                .decode(parsed.payload)
                .context("payload is not base64")?,
            signature: b64
                .decode(parsed.signature)
                .context("signature is not base64")?,
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Administrator,
    Finance,
    Auditor,
    Witness,
    Mirror,
}

#[derive(Clone, Copy, ValueEnum)]
enum Basis {
    PerHousehold,
    PerPerson,
}

#[derive(Clone, Copy, ValueEnum)]
enum Status {
    Registered,
    Exited,
    Ineligible,
}

/// 防止返贫动态监测 categories; `cleared`: risk cleared (风险消除).
#[derive(Clone, Copy, ValueEnum)]
enum Monitoring {
    Cleared,
    Unstable,
    Marginal,
    SuddenHardship,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReturnKind {
    IdleRecovery,
    Clawback,
    Surplus,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Treasury,
    Programme,
    Pool,
}

/// An amount given in yuan ("1234.56") and turned into fen exactly.
fn yuan(text: &str) -> Result<u64, String> {
    Fen::parse_yuan(text).map(|f| f.0)
}

/// "SOURCE_SEQ:YUAN", e.g. "12:5000.00".
fn earmark(text: &str) -> Result<pb::SourceAmount, String> {
    let (seq, amount) = text
        .split_once(':')
        .ok_or("an earmark is SOURCE_SEQ:YUAN, e.g. 12:5000.00")?;
    Ok(pb::SourceAmount {
        source_seq: seq
            .parse()
            .map_err(|_| format!("{seq:?} is not a source sequence number"))?,
        amount_fen: yuan(amount)?,
    })
}

#[derive(Subcommand)]
enum PostRequest {
    /// Register a child org of the signing org, with its first key.
    RegisterOrg {
        #[arg(long)]
        org_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// GB/T 2260 division code, e.g. 620000 (甘肃省), 513431 (昭觉县).
        #[arg(long)]
        division: String,
        /// The new org's public key: 64 hex digits, or a key file.
        #[arg(long)]
        public_key: String,
    },
    /// Add a key to the signing org or one of its child orgs.
    AddKey {
        #[arg(long)]
        org_id: String,
        /// 64 hex digits, or a key file.
        #[arg(long)]
        public_key: String,
        /// A read key (rules 6): it signs reads, never records. Give people
        /// who only read (and the web view) a read key.
        #[arg(long)]
        read_only: bool,
    },
    /// Revoke a key of the signing org or one of its child orgs.
    RevokeKey {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Open an account owned by the signing org.
    OpenAccount {
        #[arg(long)]
        account_id: String,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        name: String,
        /// Fund programme code the account holds.
        #[arg(long, default_value = "")]
        programme: String,
    },
    /// Appropriate money into an account of the signing org (creates a source).
    Appropriate {
        #[arg(long)]
        account: String,
        /// Amount in yuan, e.g. 1000000.00.
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long)]
        programme: String,
        #[arg(long)]
        fiscal_year: u32,
        /// 文号 of the appropriation document.
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        purpose: String,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Transfer between accounts (not to households).
    Transfer {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        /// Spend these sources (SOURCE_SEQ:YUAN, repeatable); default oldest first.
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        purpose: String,
        #[arg(long, default_value = "")]
        memo: String,
        /// Rules 9: the quota this cash follows (the seq of its IssueQuota
        /// record), issued to the org receiving it.
        #[arg(long)]
        quota: Option<u64>,
    },
    /// Pay a registered household.
    Disburse {
        #[arg(long)]
        from: String,
        /// The household's account id.
        #[arg(long)]
        household: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        #[arg(long)]
        programme: String,
        /// Month the payment is for, YYYY-MM.
        #[arg(long)]
        period: String,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        memo: String,
        /// Rules 9: the quota this payment draws on, held by the paying org.
        #[arg(long)]
        quota: Option<u64>,
    },
    /// Move programme money into the county's consolidated pool (统筹整合).
    Consolidate {
        #[arg(long)]
        from: String,
        #[arg(long)]
        pool: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        /// 文号 of the integration plan (整合方案).
        #[arg(long)]
        plan: String,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Enter a project into the county project library and open its account.
    RegisterProject {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        category: String,
        /// Division code where it is built.
        #[arg(long)]
        location: String,
        #[arg(long, value_parser = yuan)]
        budget: u64,
        /// A performance target (绩效目标); repeatable. Without one the project may not receive money.
        #[arg(long = "target")]
        targets: Vec<String>,
        #[arg(long)]
        responsible_unit: String,
        #[arg(long)]
        fiscal_year: u32,
    },
    /// Record a project's public announcement (公告公示).
    AnnounceProject {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Allocate pool money to a library project.
    Allocate {
        #[arg(long)]
        pool: String,
        #[arg(long)]
        project: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        memo: String,
        /// Rules 9: the quota (its record's seq) the spending draws on.
        #[arg(long)]
        quota: Option<u64>,
    },
    /// Register a household (registry id only: never a name or ID number).
    RegisterHousehold {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        household_ref: String,
        /// 9- or 12-digit township/village code.
        #[arg(long)]
        village: String,
        #[arg(long, value_enum, default_value = "per-household")]
        basis: Basis,
        #[arg(long, default_value_t = 1)]
        members: u32,
    },
    /// Change a household's status from --value-date on.
    SetHouseholdStatus {
        #[arg(long)]
        account_id: String,
        #[arg(long, value_enum)]
        status: Status,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Rules 10: a household's monitoring category (防止返贫动态监测) from
    /// --value-date on: the day it was identified, or its risk cleared.
    SetMonitoring {
        #[arg(long)]
        account_id: String,
        #[arg(long, value_enum)]
        category: Monitoring,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Send money back up (idle-fund recovery, clawback, surplus).
    Return {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        #[arg(long, value_enum)]
        kind: ReturnKind,
        #[arg(long)]
        document: String,
        #[arg(long)]
        reason: String,
    },
    /// The bank credited a household payment (到账确认; rules 5). Give the
    /// bank's credit day with --value-date.
    ConfirmCredit {
        /// Sequence number of the Disbursement record.
        #[arg(long)]
        disbursement: u64,
        /// The household account it paid.
        #[arg(long)]
        household: String,
        /// The bank's reference for the credit (银行流水号).
        #[arg(long)]
        bank_reference: String,
        /// The bank's result file or receipt (回单号).
        #[arg(long)]
        document: String,
    },
    /// The bank could not credit a household payment (银行退回; rules 5):
    /// the payment's money goes back to the account that paid it.
    BankFailure {
        /// Sequence number of the Disbursement record.
        #[arg(long)]
        disbursement: u64,
        /// The household account it paid.
        #[arg(long)]
        household: String,
        /// The account that paid it.
        #[arg(long)]
        to: String,
        /// The payment's whole amount.
        #[arg(long, value_parser = yuan)]
        amount: u64,
        /// The bank's reference for the failed credit.
        #[arg(long)]
        bank_reference: String,
        #[arg(long)]
        document: String,
        /// Why the bank refused it, as the bank says (e.g. 账户已销户).
        #[arg(long)]
        reason: String,
    },
    /// Set a programme's standards from --value-date on (ADMINISTRATOR
    /// only; rules 5). Omitted standards are not set (0: no rule).
    SetProgrammeRules {
        #[arg(long)]
        programme: String,
        #[arg(long)]
        document: String,
        /// Most one PER_HOUSEHOLD household may be paid in one period.
        #[arg(long, value_parser = yuan, default_value = "0")]
        household_max: u64,
        /// Most per member of a PER_PERSON household in one period.
        #[arg(long, value_parser = yuan, default_value = "0")]
        person_max: u64,
        /// Least share (percent) of the programme's money held at county
        /// level or below.
        #[arg(long, default_value_t = 0)]
        county_share_min: u32,
        /// Longest time (days) its money may lie in one account.
        #[arg(long, default_value_t = 0)]
        idle_days_max: u32,
        /// Projects must be announced (公告公示) before money is allocated.
        #[arg(long)]
        announcement_required: bool,
        /// Rules 8: longest time (days) an org above county level may hold
        /// quota before issuing it on.
        #[arg(long, default_value_t = 0)]
        quota_issue_days_max: u32,
        /// Rules 9: longest time (days) from quota's split to an org until
        /// cash for all of it has been sent to that org.
        #[arg(long, default_value_t = 0)]
        cash_follow_days_max: u32,
        /// Rules 10: the programme pays only households under monitoring.
        #[arg(long)]
        monitored_only: bool,
    },
    /// Open, move or close an org's import window (rules 6): while open it
    /// may post records marked --imported. Signed by the root org or the
    /// org's parent.
    DeclareImportWindow {
        /// The org that may import.
        #[arg(long)]
        org_id: String,
        /// The last commit day of the window (YYYY-MM-DD); a day before
        /// today closes it.
        #[arg(long)]
        until: String,
        #[arg(long)]
        document: String,
    },
    /// Pair two orgs for money sent sideways (对口帮扶, 东西部协作; rules
    /// 6): FROM and its descendants may then credit TO and its
    /// descendants. Signed by an org above both (or the root org).
    DeclarePairing {
        #[arg(long)]
        from_org_id: String,
        #[arg(long)]
        to_org_id: String,
        #[arg(long)]
        document: String,
    },
    /// Issue budget quota (预算指标; rules 8): new quota for the signing
    /// org itself (no --from), or split from a quota it holds to a child
    /// org (分解下达), keeping that quota's programme, year, 直达 mark and
    /// 项目代码.
    IssueQuota {
        /// The org that receives it: the signing org for new quota.
        #[arg(long)]
        to_org_id: String,
        /// The seq of the quota it is split from.
        #[arg(long)]
        from: Option<u64>,
        /// Amount in yuan, e.g. 1000000.00.
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long)]
        programme: String,
        #[arg(long)]
        fiscal_year: u32,
        /// 文号 of the document that issues it.
        #[arg(long)]
        document: String,
        /// 直达资金 (only the root org creates it).
        #[arg(long)]
        direct: bool,
        /// 项目代码: required for 直达资金.
        #[arg(long, default_value = "")]
        project_code: String,
    },
    /// Record a project's performance evaluation (绩效评价; rules 5).
    EvaluateProject {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        document: String,
        /// 0-100; below 60 the project failed.
        #[arg(long)]
        score: u32,
        /// One per performance target, in order: met or not (e.g.
        /// --targets-met true,false).
        #[arg(long, value_delimiter = ',')]
        targets_met: Vec<bool>,
    },
    /// Reverse an earlier movement with a compensating record.
    Reverse {
        /// Sequence number of the record to reverse.
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        document: String,
        #[arg(long)]
        reason: String,
    },
    /// Move the ledger to a newer rules version from the next record on
    /// (root org only; see docs/record-format.md, "Rules versions").
    UpgradeRules {
        /// The rules version to run.
        #[arg(long)]
        version: u32,
        /// The decision (文号) that adopted it.
        #[arg(long)]
        document: String,
    },
}

fn public_key(text: &str) -> Result<Vec<u8>> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(hex::decode(text)?);
    }
    let json = std::fs::read_to_string(text)
        .with_context(|| format!("{text:?} is neither 64 hex digits nor a readable key file"))?;
    let (file, _) = KeyFile::from_json(&json).map_err(anyhow::Error::msg)?;
    Ok(hex::decode(file.public_key_hex)?)
}

fn body(request: PostRequest) -> Result<pb::request::Body> {
    use pb::request::Body as B;
    Ok(match request {
        PostRequest::RegisterOrg {
            org_id,
            name,
            role,
            division,
            public_key: key,
        } => B::RegisterOrg(pb::RegisterOrg {
            org_id,
            name,
            role: match role {
                Role::Administrator => pb::OrgRole::Administrator,
                Role::Finance => pb::OrgRole::Finance,
                Role::Auditor => pb::OrgRole::Auditor,
                Role::Witness => pb::OrgRole::Witness,
                Role::Mirror => pb::OrgRole::Mirror,
            } as i32,
            division_code: division,
            public_key: public_key(&key)?,
        }),
        PostRequest::AddKey {
            org_id,
            public_key: key,
            read_only,
        } => B::AddKey(pb::AddKey {
            org_id,
            public_key: public_key(&key)?,
            read_only,
        }),
        PostRequest::RevokeKey { key_id, reason } => B::RevokeKey(pb::RevokeKey { key_id, reason }),
        PostRequest::OpenAccount {
            account_id,
            kind,
            name,
            programme,
        } => B::OpenAccount(pb::OpenAccount {
            account_id,
            kind: match kind {
                Kind::Treasury => pb::AccountKind::Treasury,
                Kind::Programme => pb::AccountKind::Programme,
                Kind::Pool => pb::AccountKind::Pool,
            } as i32,
            name,
            programme_code: programme,
            household_ref: String::new(),
        }),
        PostRequest::Appropriate {
            account,
            amount,
            programme,
            fiscal_year,
            document,
            purpose,
            memo,
        } => B::Appropriation(pb::Appropriation {
            account_id: account,
            amount_fen: amount,
            programme_code: programme,
            fiscal_year,
            document_no: document,
            purpose,
            memo,
        }),
        PostRequest::Transfer {
            from,
            to,
            amount,
            sources,
            document,
            purpose,
            memo,
            quota,
        } => B::Transfer(pb::Transfer {
            from_account_id: from,
            to_account_id: to,
            amount_fen: amount,
            sources,
            document_no: document,
            purpose,
            memo,
            quota_seq: quota,
        }),
        PostRequest::Disburse {
            from,
            household,
            amount,
            sources,
            programme,
            period,
            document,
            memo,
            quota,
        } => B::Disbursement(pb::Disbursement {
            from_account_id: from,
            household_account_id: household,
            amount_fen: amount,
            sources,
            programme_code: programme,
            period,
            document_no: document,
            memo,
            quota_seq: quota,
        }),
        PostRequest::Consolidate {
            from,
            pool,
            amount,
            sources,
            plan,
            memo,
        } => B::Consolidation(pb::Consolidation {
            from_account_id: from,
            pool_account_id: pool,
            amount_fen: amount,
            sources,
            plan_document_no: plan,
            memo,
        }),
        PostRequest::RegisterProject {
            account_id,
            name,
            category,
            location,
            budget,
            targets,
            responsible_unit,
            fiscal_year,
        } => B::RegisterProject(pb::RegisterProject {
            account_id,
            name,
            category,
            location_code: location,
            budget_fen: budget,
            performance_targets: targets,
            responsible_unit,
            fiscal_year,
        }),
        PostRequest::AnnounceProject {
            account_id,
            document,
            memo,
        } => B::AnnounceProject(pb::AnnounceProject {
            account_id,
            document_no: document,
            memo,
        }),
        PostRequest::Allocate {
            pool,
            project,
            amount,
            sources,
            document,
            memo,
            quota,
        } => B::Allocation(pb::Allocation {
            pool_account_id: pool,
            project_account_id: project,
            amount_fen: amount,
            sources,
            document_no: document,
            memo,
            quota_seq: quota,
        }),
        PostRequest::RegisterHousehold {
            account_id,
            household_ref,
            village,
            basis,
            members,
        } => B::RegisterHousehold(pb::RegisterHousehold {
            account_id,
            household_ref,
            village_code: village,
            basis: match basis {
                Basis::PerHousehold => pb::SubsidyBasis::PerHousehold,
                Basis::PerPerson => pb::SubsidyBasis::PerPerson,
            } as i32,
            members,
        }),
        PostRequest::SetHouseholdStatus {
            account_id,
            status,
            document,
            reason,
        } => B::SetHouseholdStatus(pb::SetHouseholdStatus {
            account_id,
            status: match status {
                Status::Registered => pb::HouseholdStatus::Registered,
                Status::Exited => pb::HouseholdStatus::Exited,
                Status::Ineligible => pb::HouseholdStatus::Ineligible,
            } as i32,
            document_no: document,
            reason,
        }),
        PostRequest::SetMonitoring {
            account_id,
            category,
            document,
            reason,
        } => B::SetMonitoring(pb::SetMonitoring {
            account_id,
            category: match category {
                Monitoring::Cleared => pb::MonitoringCategory::NotMonitored,
                Monitoring::Unstable => pb::MonitoringCategory::Unstable,
                Monitoring::Marginal => pb::MonitoringCategory::Marginal,
                Monitoring::SuddenHardship => pb::MonitoringCategory::SuddenHardship,
            } as i32,
            document_no: document,
            reason,
        }),
        PostRequest::Return {
            from,
            to,
            amount,
            sources,
            kind,
            document,
            reason,
        } => B::Return(pb::Return {
            from_account_id: from,
            to_account_id: to,
            amount_fen: amount,
            sources,
            kind: match kind {
                ReturnKind::IdleRecovery => pb::ReturnKind::IdleRecovery,
                ReturnKind::Clawback => pb::ReturnKind::Clawback,
                ReturnKind::Surplus => pb::ReturnKind::Surplus,
            } as i32,
            document_no: document,
            reason,
            ..Default::default()
        }),
        PostRequest::SetProgrammeRules {
            programme,
            document,
            household_max,
            person_max,
            county_share_min,
            idle_days_max,
            announcement_required,
            quota_issue_days_max,
            cash_follow_days_max,
            monitored_only,
        } => B::SetProgrammeRules(pb::SetProgrammeRules {
            programme_code: programme,
            document_no: document,
            household_max_fen: household_max,
            person_max_fen: person_max,
            county_share_min_percent: county_share_min,
            idle_days_max,
            announcement_required,
            quota_issue_days_max,
            cash_follow_days_max,
            monitored_only,
        }),
        PostRequest::DeclareImportWindow {
            org_id,
            until,
            document,
        } => B::DeclareImportWindow(pb::DeclareImportWindow {
            org_id,
            until_date: until,
            document_no: document,
        }),
        PostRequest::DeclarePairing {
            from_org_id,
            to_org_id,
            document,
        } => B::DeclarePairing(pb::DeclarePairing {
            from_org_id,
            to_org_id,
            document_no: document,
        }),
        PostRequest::IssueQuota {
            to_org_id,
            from,
            amount,
            programme,
            fiscal_year,
            document,
            direct,
            project_code,
        } => B::IssueQuota(pb::IssueQuota {
            to_org_id,
            from_quota_seq: from,
            amount_fen: amount,
            programme_code: programme,
            fiscal_year,
            document_no: document,
            direct,
            project_code,
        }),
        PostRequest::EvaluateProject {
            account_id,
            document,
            score,
            targets_met,
        } => B::EvaluateProject(pb::EvaluateProject {
            account_id,
            document_no: document,
            score,
            targets_met,
        }),
        PostRequest::ConfirmCredit {
            disbursement,
            household,
            bank_reference,
            document,
        } => B::ConfirmCredit(pb::ConfirmCredit {
            disbursement_seq: disbursement,
            household_account_id: household,
            bank_reference,
            document_no: document,
        }),
        PostRequest::BankFailure {
            disbursement,
            household,
            to,
            amount,
            bank_reference,
            document,
            reason,
        } => B::Return(pb::Return {
            from_account_id: household,
            to_account_id: to,
            amount_fen: amount,
            sources: Vec::new(),
            kind: pb::ReturnKind::BankFailure as i32,
            document_no: document,
            reason,
            disbursement_seq: disbursement,
            bank_reference,
        }),
        PostRequest::Reverse {
            seq,
            document,
            reason,
        } => B::Reversal(pb::Reversal {
            target_seq: seq,
            document_no: document,
            reason,
        }),
        PostRequest::UpgradeRules { version, document } => B::UpgradeRules(pb::UpgradeRules {
            rules_version: version,
            document_no: document,
        }),
    })
}

pub async fn run(args: PostArgs) -> Result<()> {
    if let Some(path) = &args.from_file {
        if args.request.is_some() {
            bail!("--from-file posts the requests of a file: name no request kind with it");
        }
        return post_file(&args, path).await;
    }
    let Some(request) = args.request else {
        bail!("name the kind of request to post (see --help), or give --from-file FILE");
    };
    let signer = Signer::from_key_file(args.server.key_file()?)?;
    let body = body(request)?;
    let mut client = crate::remote::connect(&args.server).await?;
    let idempotency_key = args.idempotency_key.unwrap_or_else(new_idempotency_key);
    if idempotency_key.is_empty() {
        bail!("--idempotency-key may not be empty");
    }
    let mut request = client.request_with_key(body, idempotency_key.clone());
    request.value_date = args.value_date.unwrap_or_default();
    request.imported = args.imported;
    if args.sign_only {
        println!(
            "{}",
            serde_json::to_string(&SignedLine::of(&signer.sign(&request)))?
        );
        return Ok(());
    }
    let posted = client
        .post_signed(signer.sign(&request))
        .await
        .map_err(status)?;
    output::posted(&posted, &idempotency_key, args.server.json);
    Ok(())
}

/// Posts the signed requests of a bulk-load file over one PostStream,
/// reading the file as the stream takes requests, and prints each result.
async fn post_file(args: &PostArgs, path: &std::path::Path) -> Result<()> {
    use std::io::BufRead;
    use tokio_stream::StreamExt;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // A thread parses lines as the stream asks for them; the line numbers
    // sent wait in `lines` for their answers, in order.
    let (tx, rx) = tokio::sync::mpsc::channel::<(usize, pb::SignedRequest)>(1024);
    let shown = path.display().to_string();
    let reader = std::thread::spawn(move || -> Result<()> {
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("cannot read {shown}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let signed =
                SignedLine::parse(&line).with_context(|| format!("{shown} line {}", i + 1))?;
            if tx.blocking_send((i + 1, signed)).is_err() {
                break;
            }
        }
        Ok(())
    });
    let lines = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let sent = lines.clone();
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |(line, signed)| {
        sent.lock().expect("line queue").push_back(line);
        signed
    });
    let mut client = crate::remote::connect(&args.server).await?;
    let mut results = client.post_stream(requests).await.map_err(status)?;
    let (mut recorded, mut duplicates, mut refused) = (0u64, 0u64, 0u64);
    while let Some(result) = results.next().await {
        let result = result.map_err(status)?;
        let line = lines
            .lock()
            .expect("line queue")
            .pop_front()
            .context("the server answered more requests than were sent")?;
        match result.result {
            Some(pb::post_result::Result::Ok(ok)) => {
                if ok.duplicate {
                    duplicates += 1;
                } else {
                    recorded += 1;
                }
                output::streamed_ok(line, &ok, args.server.json);
            }
            Some(pb::post_result::Result::Error(e)) => {
                refused += 1;
                output::streamed_error(line, &e, args.server.json);
            }
            None => bail!("the server sent an empty result for line {line}"),
        }
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the file reader panicked"))??;
    if let Some(line) = lines.lock().expect("line queue").pop_front() {
        bail!("the stream ended before line {line} was answered; post the file again: recorded lines come back as duplicates");
    }
    eprintln!("{recorded} recorded, {duplicates} already recorded, {refused} refused");
    if refused > 0 {
        bail!("{refused} requests were refused");
    }
    Ok(())
}
