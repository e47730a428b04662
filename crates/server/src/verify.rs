//! Checking a log from genesis without trusting anything but its records:
//! every signature, every key's authority at its position, every record's
//! effects, the Merkle tree, and the balances that follow. Used by the
//! server's scrub and by `fundtrail audit` on an export.

use std::collections::BTreeMap;

use fundtrail_core::model::{Account, AccountKind, Org, Source};
use fundtrail_core::state::{decode, key, MemoryKv, Txn};
use fundtrail_tlog::{record_hash, stored_hash_index, tree_hash, Hash, HashReader, MemoryHashes};

use crate::engine::{replay_record, Engine};

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
        replay_record(&mut txn, seq, record)?;
        let writes = txn.into_writes();
        fundtrail_core::state::apply_writes(&mut self.state, writes);
        self.tree.append(record).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn root(&self, tree_size: u64) -> Result<Hash, String> {
        tree_hash(tree_size, &self.tree).map_err(|e| e.to_string())
    }

    fn values<T: serde::de::DeserializeOwned>(&self, prefix: u8) -> Result<Vec<T>, String> {
        self.state
            .range(vec![prefix]..vec![prefix + 1])
            .map(|(_, v)| decode(v).map_err(|e| e.message))
            .collect()
    }

    /// Totals recomputed from the replayed state; checks conservation per
    /// source on the way.
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
            let net = u128::from(source.amount.0) - u128::from(source.withdrawn.0);
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

/// The result of a scrub.
#[derive(Debug, Clone, Default)]
pub struct ScrubReport {
    pub records_checked: u64,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

/// Replays the whole journal of a running engine and checks (a) every record
/// against its stored leaf hash, its signature, authority and effects; (b)
/// every signed checkpoint's root; (c) the derived state in sled against the
/// replayed one. Reports the first problem.
pub fn scrub(engine: &Engine) -> ScrubReport {
    let count = engine.record_count();
    let mut report = ScrubReport::default();
    let mut replay = Replay::new();
    for seq in 0..count {
        let fail = |reason: String| ScrubReport {
            records_checked: seq,
            first_bad_seq: Some(seq),
            problem: Some(format!("record {seq}: {reason}")),
        };
        let bytes = match engine.record_bytes(seq) {
            Ok(bytes) => bytes,
            Err(e) => return fail(e.message),
        };
        match engine.state().read_hashes(&[stored_hash_index(0, seq)]) {
            Ok(stored) if stored.first() == Some(&record_hash(&bytes)) => {}
            Ok(_) => {
                return fail(
                    "its bytes in the journal differ from the ones entered into the Merkle tree"
                        .into(),
                )
            }
            Err(e) => return fail(format!("its leaf hash cannot be read: {e}")),
        }
        if let Err(reason) = replay.push(&bytes) {
            return fail(reason);
        }
    }
    report.records_checked = count;
    let checkpoints = match engine.checkpoints().all() {
        Ok(all) => all,
        Err(e) => {
            report.problem = Some(e.message);
            return report;
        }
    };
    for signed in checkpoints
        .iter()
        .filter(|s| s.checkpoint.tree_size <= count)
    {
        match replay.root(signed.checkpoint.tree_size) {
            Ok(root) if root == signed.checkpoint.root_hash => {}
            _ => {
                report.problem = Some(format!(
                    "the records do not give the root of the signed checkpoint of {} records",
                    signed.checkpoint.tree_size
                ));
                return report;
            }
        }
    }
    if let Err(reason) = replay.summary() {
        report.problem = Some(reason);
        return report;
    }
    // Derived state: only comparable while no write lands during the read.
    let stored = match engine.state().dump() {
        Ok(dump) => dump,
        Err(e) => {
            report.problem = Some(e.message);
            return report;
        }
    };
    if engine.record_count() != count {
        return report;
    }
    let stored_core: BTreeMap<&Vec<u8>, &Vec<u8>> = stored
        .iter()
        .filter(|(k, _)| !k.starts_with(b"~"))
        .collect();
    let replayed: BTreeMap<&Vec<u8>, &Vec<u8>> = replay.state.iter().collect();
    if stored_core != replayed {
        let differing = stored_core
            .keys()
            .chain(replayed.keys())
            .find(|k| stored_core.get(*k) != replayed.get(*k))
            .map(|k| fundtrail_core::state::describe_key(k))
            .unwrap_or_default();
        report.problem = Some(format!(
            "the derived state differs from the journal at {differing}; stop the server, move the state directory away and restart to rebuild it"
        ));
    }
    report
}
