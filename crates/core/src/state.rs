//! Derived state as a key–value map, and the key schema.
//!
//! The core decides what is stored under which key and how values are
//! encoded (postcard, deterministic), so that two replays of one journal give
//! byte-identical state whatever engine holds it. Storage engines implement
//! [`Kv`]; tests use [`MemoryKv`].

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Serialize};

use crate::model::*;
use crate::Fault;

/// Read access to derived state. A storage failure is a [`Fault`], never a
/// refusal: the caller did nothing wrong.
pub trait Kv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault>;

    /// Up to `limit` (key, value) pairs whose key starts with `prefix`, from
    /// `start` (which begins with `prefix`) on, in key order.
    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault>;
}

/// One key and its value.
pub type Row = (Vec<u8>, Vec<u8>);

/// Changes to derived state: a value to store, or `None` to delete the key.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Derived state held in memory: for tests and offline tools.
pub type MemoryKv = BTreeMap<Vec<u8>, Vec<u8>>;

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault> {
        Ok(self
            .range(start.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Applies `writes` to an in-memory state.
pub fn apply_writes(state: &mut MemoryKv, writes: Writes) {
    for (key, value) in writes {
        match value {
            Some(value) => state.insert(key, value),
            None => state.remove(&key),
        };
    }
}

/// Key prefixes. Every key of derived state starts with one of these.
pub mod key {
    pub const LEDGER: &[u8] = b"l";
    pub const ORG: u8 = b'o';
    pub const KEY: u8 = b'k';
    pub const ACCOUNT: u8 = b'a';
    pub const SOURCE: u8 = b's';
    pub const MOVEMENT: u8 = b'm';
    /// Idempotency entries scoped to a key (rules 1).
    pub const IDEMPOTENCY: u8 = b'i';
    /// Idempotency entries scoped to an org (rules 2).
    pub const ORG_IDEMPOTENCY: u8 = b'e';
    pub const PROJECT: u8 = b'p';
    pub const HOUSEHOLD: u8 = b'h';
    /// Household account ‖ 0x00 ‖ seq → the payment (HouseholdPayment) that
    /// Disbursement record `seq` made to it (schema 5; before, a list inside
    /// the household, rewritten whole by every payment).
    pub const HOUSEHOLD_PAYMENT: u8 = b'w';
    /// Index: account id ‖ 0x00 ‖ seq (big-endian) → empty, for each record
    /// that moved money in or out of the account.
    pub const ACCOUNT_ENTRY: u8 = b'x';
    /// Index: source seq ‖ seq → empty, for each record that carried the source.
    pub const SOURCE_ENTRY: u8 = b'f';
    /// Index: account ‖ 0x00 ‖ source seq ‖ arrival seq ‖ seq → empty, for
    /// each record that spent from that lot.
    pub const LOT_SPEND: u8 = b'z';
    /// Index: signer org ‖ 0x00 ‖ seq.
    pub const ORG_ENTRY: u8 = b'g';
    /// Index: record kind ‖ 0x00 ‖ seq.
    pub const KIND_ENTRY: u8 = b't';
    /// Index: 文号 ‖ 0x00 ‖ seq.
    pub const DOCUMENT_ENTRY: u8 = b'd';
    /// Index: non-household accounts that ever held money (for idle funds).
    pub const HOLDER: u8 = b'b';
    /// Money held: account ‖ 0x00 ‖ arrival day ‖ arrival seq ‖ source seq
    /// → amount (fen, big-endian). Key order is oldest money first.
    pub const LOT: u8 = b'q';
    /// Programme ‖ 0x00 ‖ seq → the rules that record set (ProgrammeRules;
    /// rules 5).
    pub const PROGRAMME_RULES: u8 = b'v';
    /// Project account ‖ 0x00 ‖ seq → an evaluation of it (Evaluation;
    /// rules 5).
    pub const EVALUATION: u8 = b'y';
    /// Prefix ‖ name → how many records the rules keep under prefix ‖
    /// name (u32): the rules bound them without scanning (rules 5).
    pub const COUNT: u8 = b'j';
    /// Disbursement seq → the bank's result for it (Settlement; rules 5).
    pub const SETTLEMENT: u8 = b'c';
    /// Org ‖ 0x00 ‖ bank reference → the seq of the record that cited it
    /// (rules 5): a bank reference names one result per org.
    pub const BANK_REFERENCE: u8 = b'r';
    /// Org → its import window (ImportWindow; rules 6).
    pub const IMPORT_WINDOW: u8 = b'n';
    /// From org ‖ 0x00 ‖ to org → the seq of the record that paired them
    /// (u64; rules 6).
    pub const PAIRING: u8 = b'u';
    /// Quota seq → the quota its IssueQuota record issued (Quota; rules 8).
    pub const QUOTA: u8 = b'Q';
    /// 文号 → what quota the document issued (QuotaDocument; rules 8): a
    /// document issuing 直达资金 issues one programme only.
    pub const QUOTA_DOCUMENT: u8 = b'D';
    /// Index: holder org ‖ 0x00 ‖ quota seq → empty (rules 8).
    pub const QUOTA_HOLDER: u8 = b'H';
    /// Index: parent quota seq ‖ split seq → empty, for each quota split
    /// from another (rules 8).
    pub const QUOTA_SPLIT: u8 = b'S';
    /// Index: seq → empty, for each imported record that moved cash down
    /// or paid out naming no quota (rules 9).
    pub const CASH_WITHOUT_QUOTA: u8 = b'C';
    /// Quota seq → what was drawn on it (QuotaUse; rules 9).
    pub const QUOTA_USE: u8 = b'U';
    /// Movement seq → the quota it drew on (QuotaDraw; rules 9).
    pub const QUOTA_DRAW: u8 = b'W';
    /// Quota seq ‖ month (YYYYMM, u32 big-endian) → what was drawn on the
    /// quota by movements dated in that month (QuotaUse; rules 9).
    pub const QUOTA_MONTH: u8 = b'M';
    /// Index: quota seq ‖ movement seq → empty, for each movement that sent
    /// cash down against the quota (rules 9; its QuotaDraw says when and
    /// how much): whether cash followed quota in time.
    pub const QUOTA_CASH: u8 = b'K';

    /// The split index entry of quota `split` under its parent `parent`.
    pub fn quota_split(parent: u64, split: u64) -> Vec<u8> {
        let mut key = self::seq(QUOTA_SPLIT, parent);
        key.extend_from_slice(&split.to_be_bytes());
        key
    }

    /// The cash index entry of movement `movement` under quota `quota`.
    pub fn quota_cash(quota: u64, movement: u64) -> Vec<u8> {
        let mut key = self::seq(QUOTA_CASH, quota);
        key.extend_from_slice(&movement.to_be_bytes());
        key
    }

    /// What was drawn on quota `seq` in `month` (YYYYMM).
    pub fn quota_month(seq: u64, month: u32) -> Vec<u8> {
        let mut key = self::seq(QUOTA_MONTH, seq);
        key.extend_from_slice(&month.to_be_bytes());
        key
    }

    /// Index prefixes: the rules write them for queries but never read
    /// them, so whatever only applies requests may leave them out.
    pub const INDEX_PREFIXES: [u8; 11] = [
        ACCOUNT_ENTRY,
        SOURCE_ENTRY,
        LOT_SPEND,
        ORG_ENTRY,
        KIND_ENTRY,
        DOCUMENT_ENTRY,
        HOLDER,
        QUOTA_HOLDER,
        QUOTA_SPLIT,
        CASH_WITHOUT_QUOTA,
        QUOTA_CASH,
    ];

    /// Whether `key` is under one of [`INDEX_PREFIXES`].
    pub fn is_index(key: &[u8]) -> bool {
        key.first().is_some_and(|p| INDEX_PREFIXES.contains(p))
    }

    /// The pairing that lets `from_org` credit `to_org` (rules 6).
    pub fn pairing(from_org: &str, to_org: &str) -> Vec<u8> {
        let mut key = named_prefix(PAIRING, from_org);
        key.extend_from_slice(to_org.as_bytes());
        key
    }

    /// Prefix of all lots of one account.
    pub fn lots(account_id: &str) -> Vec<u8> {
        named_prefix(LOT, account_id)
    }

    /// The key of one lot. Days are offset so that their big-endian bytes
    /// sort like the signed numbers.
    pub fn lot(account_id: &str, arrival_day: i32, arrival_seq: u64, source_seq: u64) -> Vec<u8> {
        let mut key = lots(account_id);
        key.extend_from_slice(&((arrival_day as u32) ^ 0x8000_0000).to_be_bytes());
        key.extend_from_slice(&arrival_seq.to_be_bytes());
        key.extend_from_slice(&source_seq.to_be_bytes());
        key
    }

    /// (arrival day, arrival seq, source seq) of a lot key of `account_id`.
    pub fn parse_lot(account_id: &str, key: &[u8]) -> Option<(i32, u64, u64)> {
        let rest = key.get(account_id.len() + 2..)?;
        if rest.len() != 20 {
            return None;
        }
        let day = (u32::from_be_bytes(rest[0..4].try_into().ok()?) ^ 0x8000_0000) as i32;
        let arrival = u64::from_be_bytes(rest[4..12].try_into().ok()?);
        let source = u64::from_be_bytes(rest[12..20].try_into().ok()?);
        Some((day, arrival, source))
    }

    /// name ‖ 0x00 ‖ seq under `prefix`.
    pub fn named_seq(prefix: u8, name: &str, seq: u64) -> Vec<u8> {
        let mut key = named(prefix, name);
        key.push(0);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// name ‖ 0x00 under `prefix`: the prefix of all `named_seq` keys of `name`.
    pub fn named_prefix(prefix: u8, name: &str) -> Vec<u8> {
        let mut key = named(prefix, name);
        key.push(0);
        key
    }

    pub fn source_entry(source_seq: u64, seq: u64) -> Vec<u8> {
        let mut key = self::seq(SOURCE_ENTRY, source_seq);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// Prefix of the spends of one lot.
    pub fn lot_spends(account_id: &str, source_seq: u64, arrival_seq: u64) -> Vec<u8> {
        let mut key = named_prefix(LOT_SPEND, account_id);
        key.extend_from_slice(&source_seq.to_be_bytes());
        key.extend_from_slice(&arrival_seq.to_be_bytes());
        key
    }

    pub fn lot_spend(account_id: &str, source_seq: u64, arrival_seq: u64, seq: u64) -> Vec<u8> {
        let mut key = lot_spends(account_id, source_seq, arrival_seq);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn household_payment(account_id: &str, seq: u64) -> Vec<u8> {
        named_seq(HOUSEHOLD_PAYMENT, account_id, seq)
    }

    pub fn org_entry(org_id: &str, seq: u64) -> Vec<u8> {
        named_seq(ORG_ENTRY, org_id, seq)
    }

    pub fn kind_entry(kind: &str, seq: u64) -> Vec<u8> {
        named_seq(KIND_ENTRY, kind, seq)
    }

    pub fn document_entry(document_no: &str, seq: u64) -> Vec<u8> {
        named_seq(DOCUMENT_ENTRY, document_no, seq)
    }

    pub fn named(prefix: u8, name: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(1 + name.len());
        key.push(prefix);
        key.extend_from_slice(name.as_bytes());
        key
    }

    pub fn seq(prefix: u8, seq: u64) -> Vec<u8> {
        let mut key = Vec::with_capacity(9);
        key.push(prefix);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn idempotency(key_id: &str, idempotency_key: &str) -> Vec<u8> {
        let mut key = named(IDEMPOTENCY, key_id);
        key.push(0);
        key.extend_from_slice(idempotency_key.as_bytes());
        key
    }

    /// The count of the records kept under `prefix` ‖ `name`.
    pub fn count(prefix: u8, name: &str) -> Vec<u8> {
        let mut key = vec![COUNT, prefix];
        key.extend_from_slice(name.as_bytes());
        key
    }

    pub fn bank_reference(org_id: &str, reference: &str) -> Vec<u8> {
        let mut key = named(BANK_REFERENCE, org_id);
        key.push(0);
        key.extend_from_slice(reference.as_bytes());
        key
    }

    pub fn org_idempotency(org_id: &str, idempotency_key: &str) -> Vec<u8> {
        let mut key = named(ORG_IDEMPOTENCY, org_id);
        key.push(0);
        key.extend_from_slice(idempotency_key.as_bytes());
        key
    }

    /// The seq an index key (`…‖ seq` big-endian) ends with.
    pub fn seq_suffix(key: &[u8]) -> Option<u64> {
        key.len()
            .checked_sub(8)
            .and_then(|at| key[at..].try_into().ok())
            .map(u64::from_be_bytes)
    }

    /// Prefix of all index keys of one account.
    pub fn account_entries(account_id: &str) -> Vec<u8> {
        let mut key = named(ACCOUNT_ENTRY, account_id);
        key.push(0);
        key
    }

    pub fn account_entry(account_id: &str, seq: u64) -> Vec<u8> {
        let mut key = account_entries(account_id);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }
}

/// A derived-state key in words, for reports: "account dx-xczx".
pub fn describe_key(key: &[u8]) -> String {
    let Some((&prefix, rest)) = key.split_first() else {
        return "the empty key".into();
    };
    let text = || String::from_utf8_lossy(rest).replace('\0', " ");
    let seq = || {
        rest.try_into()
            .map(u64::from_be_bytes)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| text())
    };
    match prefix {
        b'l' => "the ledger identity".into(),
        key::ORG => format!("org {}", text()),
        key::KEY => format!("key {}", text()),
        key::ACCOUNT => format!("account {}", text()),
        key::SOURCE => format!("source {}", seq()),
        key::MOVEMENT => format!("the movement of record {}", seq()),
        key::IDEMPOTENCY => format!("idempotency entry {}", text()),
        key::ORG_IDEMPOTENCY => format!("org idempotency entry {}", text()),
        key::PROJECT => format!("project {}", text()),
        key::HOUSEHOLD => format!("household {}", text()),
        key::HOUSEHOLD_PAYMENT => format!("a payment to household {}", text()),
        key::ACCOUNT_ENTRY => format!("the entry index of account {}", text()),
        key::QUOTA => format!("quota {}", seq()),
        key::QUOTA_USE => format!("what was drawn on quota {}", seq()),
        key::QUOTA_DRAW => format!("the quota record {} drew on", seq()),
        key::QUOTA_MONTH => "a month of what was drawn on a quota".into(),
        key::QUOTA_DOCUMENT => format!("the quota issued by document {}", text()),
        key::SOURCE_ENTRY
        | key::LOT_SPEND
        | key::ORG_ENTRY
        | key::KIND_ENTRY
        | key::DOCUMENT_ENTRY
        | key::QUOTA_HOLDER
        | key::QUOTA_SPLIT
        | key::CASH_WITHOUT_QUOTA
        | key::QUOTA_CASH => {
            format!("an index entry ({})", text())
        }
        key::HOLDER => format!("the holder index of account {}", text()),
        key::SETTLEMENT => format!("the bank's result for record {}", seq()),
        key::PROGRAMME_RULES => format!("rules of programme {}", text()),
        key::COUNT => format!("a record count ({})", text()),
        key::EVALUATION => format!("an evaluation of project {}", text()),
        key::BANK_REFERENCE => format!("bank reference {}", text()),
        key::LOT => format!(
            "a lot of account {}",
            String::from_utf8_lossy(rest.split(|b| *b == 0).next().unwrap_or_default())
        ),
        _ => format!("key {:?}", String::from_utf8_lossy(key)),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding our own plain structs into a Vec cannot fail.
    postcard::to_stdvec(value).expect("postcard encodes plain structs")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Fault> {
    postcard::from_bytes(bytes).map_err(|e| {
        Fault::corrupt(format!(
            "derived state is corrupt ({e}); rebuild it from the journal"
        ))
    })
}

/// Typed reads over any [`Kv`].
pub trait StateRead: Kv {
    fn read<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Fault> {
        match self.get(key)? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }
    fn ledger(&self) -> Result<Option<LedgerMeta>, Fault> {
        self.read(key::LEDGER)
    }
    fn org(&self, org_id: &str) -> Result<Option<Org>, Fault> {
        self.read(&key::named(key::ORG, org_id))
    }
    /// The org `org_id` and its ancestors: the org first, the root last.
    fn org_chain(&self, org_id: &str) -> Result<Vec<Org>, Fault> {
        let mut chain: Vec<Org> = Vec::new();
        let mut next = Some(org_id.to_string());
        while let Some(id) = next {
            let org = self
                .org(&id)?
                .ok_or_else(|| Fault::corrupt(format!("derived state lacks org {id}")))?;
            if chain.iter().any(|o| o.org_id == org.org_id) {
                return Err(Fault::corrupt(format!(
                    "derived state is corrupt: org {id} is its own ancestor"
                )));
            }
            next = org.parent_org_id.clone();
            chain.push(org);
        }
        Ok(chain)
    }
    fn key(&self, key_id: &str) -> Result<Option<Key>, Fault> {
        // An id of another shape names no key; the store is not asked.
        if !crate::signing::is_key_id(key_id) {
            return Ok(None);
        }
        self.read(&key::named(key::KEY, key_id))
    }
    fn account(&self, account_id: &str) -> Result<Option<Account>, Fault> {
        self.read(&key::named(key::ACCOUNT, account_id))
    }
    fn source(&self, source_seq: u64) -> Result<Option<Source>, Fault> {
        self.read(&key::seq(key::SOURCE, source_seq))
    }
    fn project(&self, account_id: &str) -> Result<Option<Project>, Fault> {
        self.read(&key::named(key::PROJECT, account_id))
    }
    fn household(&self, account_id: &str) -> Result<Option<Household>, Fault> {
        self.read(&key::named(key::HOUSEHOLD, account_id))
    }
    fn household_payment(
        &self,
        account_id: &str,
        seq: u64,
    ) -> Result<Option<HouseholdPayment>, Fault> {
        self.read(&key::household_payment(account_id, seq))
    }
    /// Up to `limit` payments household `account_id` received, in record order.
    fn household_payments(
        &self,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<HouseholdPayment>, Fault> {
        let prefix = key::named_prefix(key::HOUSEHOLD_PAYMENT, account_id);
        self.scan(&prefix, &prefix, limit)?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }
    /// Up to `limit` lots of an account, oldest first.
    fn lots(&self, account_id: &str, limit: usize) -> Result<Vec<(LotKey, Lot)>, Fault> {
        let prefix = key::lots(account_id);
        let mut out = Vec::new();
        for (k, v) in self.scan(&prefix, &prefix, limit)? {
            let (day, arrival_seq, source_seq) =
                key::parse_lot(account_id, &k).ok_or_else(|| {
                    Fault::corrupt(format!("a lot key of account {account_id} is corrupt"))
                })?;
            let amount: crate::money::Fen = decode(&v)?;
            out.push((
                LotKey {
                    source_seq,
                    arrival_seq,
                },
                Lot {
                    amount,
                    arrival_day: day,
                },
            ));
        }
        Ok(out)
    }
    /// Up to `limit` rule records of `programme`, in record order.
    fn programme_rules(&self, programme: &str, limit: usize) -> Result<Vec<ProgrammeRules>, Fault> {
        let prefix = key::named_prefix(key::PROGRAMME_RULES, programme);
        self.scan(&prefix, &prefix, limit)?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }
    /// Up to `limit` evaluations of project `account_id`, in record order.
    fn evaluations(&self, account_id: &str, limit: usize) -> Result<Vec<Evaluation>, Fault> {
        let prefix = key::named_prefix(key::EVALUATION, account_id);
        self.scan(&prefix, &prefix, limit)?
            .iter()
            .map(|(_, v)| decode(v))
            .collect()
    }
    /// The bank's result for the household payment of record `seq`.
    fn import_window(&self, org_id: &str) -> Result<Option<ImportWindow>, Fault> {
        self.read(&key::named(key::IMPORT_WINDOW, org_id))
    }
    fn settlement(&self, seq: u64) -> Result<Option<Settlement>, Fault> {
        self.read(&key::seq(key::SETTLEMENT, seq))
    }
    /// Whether the bank sent back the payment of record `seq` (a
    /// BANK_FAILURE return): its money did not reach the household.
    fn returned_by_bank(&self, seq: u64) -> Result<bool, Fault> {
        Ok(self.settlement(seq)?.is_some_and(|s| !s.credited))
    }
    fn movement(&self, seq: u64) -> Result<Option<Movement>, Fault> {
        self.read(&key::seq(key::MOVEMENT, seq))
    }
    /// The quota record `seq` issued, if it issued one.
    fn quota(&self, seq: u64) -> Result<Option<Quota>, Fault> {
        self.read(&key::seq(key::QUOTA, seq))
    }
    /// What was drawn on quota `seq` (nothing, before rules 9).
    fn quota_use(&self, seq: u64) -> Result<QuotaUse, Fault> {
        Ok(self
            .read(&key::seq(key::QUOTA_USE, seq))?
            .unwrap_or_default())
    }
    /// What was drawn on quota `seq`, month by month (YYYYMM), oldest first.
    fn quota_months(&self, seq: u64) -> Result<Vec<(u32, QuotaUse)>, Fault> {
        let prefix = key::seq(key::QUOTA_MONTH, seq);
        // One row a month: a quota drawn on for a century holds 1,200.
        self.scan(&prefix, &prefix, 1_200)?
            .iter()
            .map(|(k, v)| {
                let month = k[prefix.len()..]
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| Fault::corrupt("a quota month key is corrupt"))?;
                Ok((month, decode(v)?))
            })
            .collect()
    }
    /// The quota movement `seq` drew on, if it drew on one.
    fn quota_draw(&self, seq: u64) -> Result<Option<QuotaDraw>, Fault> {
        self.read(&key::seq(key::QUOTA_DRAW, seq))
    }
    /// What quota document `document_no` issued so far.
    fn quota_document(&self, document_no: &str) -> Result<Option<QuotaDocument>, Fault> {
        self.read(&key::named(key::QUOTA_DOCUMENT, document_no))
    }
    fn idempotency(
        &self,
        key_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<IdempotencyEntry>, Fault> {
        self.read(&key::idempotency(key_id, idempotency_key))
    }
    fn org_idempotency(
        &self,
        org_id: &str,
        idempotency_key: &str,
    ) -> Result<Option<IdempotencyEntry>, Fault> {
        self.read(&key::org_idempotency(org_id, idempotency_key))
    }
}

impl<K: Kv + ?Sized> StateRead for K {}

/// Writes staged over a base state. Reads see the staged writes first. A
/// request is applied into a fresh `Txn`; only when it is accepted are the
/// writes handed on, so a refused request changes nothing.
pub struct Txn<'a, K: Kv + ?Sized> {
    base: &'a K,
    writes: Writes,
}

impl<'a, K: Kv + ?Sized> Txn<'a, K> {
    pub fn new(base: &'a K) -> Self {
        Txn {
            base,
            writes: BTreeMap::new(),
        }
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.writes.insert(key, Some(encode(value)));
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Stages another transaction's writes on top of these.
    pub fn extend(&mut self, writes: Writes) {
        self.writes.extend(writes);
    }

    pub fn into_writes(self) -> Writes {
        self.writes
    }
}

impl<K: Kv + ?Sized> Kv for Txn<'_, K> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Fault> {
        match self.writes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(&self, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Row>, Fault> {
        // Base rows a chunk at a time, merged with the staged writes up to
        // the last base row read (beyond it, base rows are unknown until the
        // next chunk), until `limit` rows survive the staged deletions.
        let mut out = Vec::new();
        let mut from = start.to_vec();
        while out.len() < limit {
            let base = self.base.scan(prefix, &from, limit)?;
            let complete = base.len() < limit;
            let upper = base.last().map(|(k, _)| k.clone());
            let staged = self
                .writes
                .range(from.clone()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .take_while(|(k, _)| complete || upper.as_ref().is_some_and(|u| *k <= u));
            let mut base = base.into_iter().peekable();
            let mut staged = staged.peekable();
            while out.len() < limit {
                let take_staged = match (base.peek(), staged.peek()) {
                    (None, None) => break,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((b, _)), Some((s, _))) => *s <= b,
                };
                if take_staged {
                    let (key, value) = staged.next().expect("peeked");
                    if base.peek().is_some_and(|(b, _)| b == key) {
                        base.next();
                    }
                    if let Some(value) = value {
                        out.push((key.clone(), value.clone()));
                    }
                } else {
                    out.push(base.next().expect("peeked"));
                }
            }
            match upper {
                Some(mut next) if !complete => {
                    next.push(0);
                    from = next;
                }
                _ => break,
            }
        }
        Ok(out)
    }
}
