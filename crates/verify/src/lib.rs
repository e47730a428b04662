//! Checking a fundtrail log from genesis while trusting nothing but its
//! records: every signature, every key's authority at its position, every
//! record's effects recomputed under the rules version that accepted it,
//! the Merkle tree, and conservation of every source.
//!
//! An auditor's tool needs only this crate: it depends on the domain rules
//! (`fundtrail-core`), the tree (`fundtrail-tlog`) and the record format
//! (`fundtrail-api` without its gRPC services), never on the server or its
//! storage engine. The server's start-up replay and scrub use it too.
//!
//! ```
//! use fundtrail_verify::Replay;
//! let mut replay = Replay::new();
//! assert!(replay.push(b"not a record").is_err());
//! assert_eq!(replay.record_count(), 0);
//! ```

use std::collections::BTreeMap;

use fundtrail_api::{decode_request, effects_to_pb, pb};
use fundtrail_core::apply::{apply, Context, Outcome};
use fundtrail_core::model::{Account, AccountKind, Org, Source};
use fundtrail_core::state::{apply_writes, decode, key, Kv, MemoryKv, Txn};
use fundtrail_core::{Error, Fault};
use fundtrail_tlog::{tree_hash, Hash, MemoryHashes};
use prost::Message;

/// Why a record cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The record is wrong: it does not decode, is out of place, is not
    /// authorised, or its stored effects differ from the recomputed ones.
    Record(String),
    /// The state it is replayed against could not be read.
    Fault(Fault),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Record(reason) => f.write_str(reason),
            ReplayError::Fault(fault) => write!(f, "the state failed: {fault}"),
        }
    }
}

/// Applies one journal record to `txn`, checking it is record `seq`, that
/// its signature and authority hold, and that recomputing its effects under
/// the rules in force at `seq` gives exactly what the record says.
pub fn replay_record<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    seq: u64,
    bytes: &[u8],
) -> Result<(), ReplayError> {
    let bad = ReplayError::Record;
    let record = pb::Record::decode(bytes).map_err(|e| bad(format!("does not decode: {e}")))?;
    if record.seq != seq {
        return Err(bad(format!("it says it is record {}", record.seq)));
    }
    let signed = record.request.ok_or(bad("it holds no request".into()))?;
    let request = decode_request(&signed.payload).map_err(|e| bad(e.message))?;
    let ctx = Context {
        seq,
        commit_time_ms: record.commit_time_ms,
        key_id: &signed.key_id,
        payload: &signed.payload,
        signature: &signed.signature,
        verified_public_key: None,
        skew_ms_max: None,
    };
    match apply(txn, &ctx, &request) {
        Err(Error::Refused(rejection)) => Err(bad(rejection.message)),
        Err(Error::Fault(fault)) => Err(ReplayError::Fault(fault)),
        Ok(Outcome::Duplicate { seq: first }) => Err(bad(format!("it repeats record {first}"))),
        Ok(Outcome::Accepted { effects, writes }) => {
            if Some(effects_to_pb(&effects)) != record.effects {
                return Err(bad(
                    "its stored effects differ from the recomputed ones".into()
                ));
            }
            txn.extend(writes);
            Ok(())
        }
    }
}

/// A log replayed in memory.
#[derive(Default)]
pub struct Replay {
    pub state: MemoryKv,
    pub tree: MemoryHashes,
}

/// What a replayed log holds, in fen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub orgs: u64,
    pub accounts: u64,
    pub sources: u64,
    pub appropriated_fen: u128,
    pub withdrawn_fen: u128,
    /// Held by household accounts: money that reached households.
    pub disbursed_fen: u128,
    /// Held by every other account: money not yet paid out.
    pub idle_fen: u128,
}

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    pub fn record_count(&self) -> u64 {
        self.tree.tree_size()
    }

    /// Checks and applies the next record.
    pub fn push(&mut self, record: &[u8]) -> Result<(), String> {
        let seq = self.record_count();
        let mut txn = Txn::new(&self.state);
        replay_record(&mut txn, seq, record).map_err(|e| e.to_string())?;
        let writes = txn.into_writes();
        apply_writes(&mut self.state, writes);
        self.tree.append(record).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn root(&self, tree_size: u64) -> Result<Hash, String> {
        tree_hash(tree_size, &self.tree).map_err(|e| e.to_string())
    }

    fn values<T: serde::de::DeserializeOwned>(&self, prefix: u8) -> Result<Vec<T>, String> {
        self.state
            .range(vec![prefix]..vec![prefix + 1])
            .map(|(_, v)| decode(v).map_err(|e| e.to_string()))
            .collect()
    }

    /// Totals recomputed from the replayed state; checks conservation per
    /// source on the way: appropriated − withdrawn = Σ held, for each.
    pub fn summary(&self) -> Result<Summary, String> {
        let orgs: Vec<Org> = self.values(key::ORG)?;
        let accounts: Vec<Account> = self.values(key::ACCOUNT)?;
        let sources: Vec<Source> = self.values(key::SOURCE)?;
        let mut summary = Summary {
            records: self.record_count(),
            orgs: orgs.len() as u64,
            accounts: accounts.len() as u64,
            sources: sources.len() as u64,
            ..Summary::default()
        };
        let mut held: BTreeMap<u64, u128> = BTreeMap::new();
        for account in &accounts {
            for (&source, amount) in &account.balances {
                *held.entry(source).or_default() += u128::from(amount.0);
            }
            if account.kind == AccountKind::Household {
                summary.disbursed_fen += account.balance();
            } else {
                summary.idle_fen += account.balance();
            }
        }
        for source in &sources {
            summary.appropriated_fen += u128::from(source.amount.0);
            summary.withdrawn_fen += u128::from(source.withdrawn.0);
            let net = u128::from(source.amount.0)
                .checked_sub(u128::from(source.withdrawn.0))
                .ok_or_else(|| {
                    format!(
                        "source {} has more withdrawn than appropriated",
                        source.source_seq
                    )
                })?;
            let found = held.remove(&source.source_seq).unwrap_or(0);
            if found != net {
                return Err(format!(
                    "source {} is not conserved: {net} fen appropriated and not withdrawn, {found} fen held",
                    source.source_seq
                ));
            }
        }
        if let Some((source, _)) = held.into_iter().next() {
            return Err(format!(
                "accounts hold money of source {source}, which was never appropriated"
            ));
        }
        Ok(summary)
    }
}
