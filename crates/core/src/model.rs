//! Domain types: what a request says, what the ledger remembers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
}

impl Role {
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
}

impl Body {
    /// The record kind's name as the API spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Genesis(_) => "Genesis",
            Body::RegisterOrg(_) => "RegisterOrg",
            Body::AddKey(_) => "AddKey",
            Body::RevokeKey(_) => "RevokeKey",
            Body::OpenAccount(_) => "OpenAccount",
            Body::Appropriation(_) => "Appropriation",
            Body::Transfer(_) => "Transfer",
            Body::Disbursement(_) => "Disbursement",
            Body::Reversal(_) => "Reversal",
        }
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
}

/// Compensating record for an earlier movement (冲销).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    pub target_seq: u64,
    pub document_no: String,
    pub reason: String,
}

/// One source's money moving between two accounts. `None` on the from side
/// is money entering the ledger; `None` on the to side is money leaving it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub from_account_id: Option<String>,
    pub to_account_id: Option<String>,
    pub source_seq: u64,
    pub amount: Fen,
}

/// What accepting a request did; stored in the record beside the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    pub signer_org_id: String,
    pub legs: Vec<Leg>,
    pub registered_key_id: Option<String>,
}

/// The ledger's identity, from genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMeta {
    pub ledger_id: String,
    pub root_org_id: String,
    pub log_public_key: [u8; 32],
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
    /// source seq → balance of that source; zero balances are removed.
    pub balances: BTreeMap<u64, Fen>,
}

impl Account {
    /// The total balance over all sources.
    pub fn balance(&self) -> u128 {
        self.balances.values().map(|f| u128::from(f.0)).sum()
    }
}

/// A source of money (资金来源): one appropriation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub source_seq: u64,
    pub account_id: String,
    pub amount: Fen,
    /// Taken out of the ledger again by reversing the appropriation.
    pub withdrawn: Fen,
    pub programme_code: String,
    pub fiscal_year: u32,
    pub document_no: String,
}

/// The money a record moved, kept so that it can be reversed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub seq: u64,
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
