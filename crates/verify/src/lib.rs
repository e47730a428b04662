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
    replay_checked(txn, seq, bytes, None)
}

/// [`replay_record`], for a record whose signature was already checked
/// against `verified_public_key` ([`check_signatures`]): the rules still
/// check that this is the key registered under the record's key id, and
/// check the signature themselves if it is not.
pub fn replay_checked<K: Kv + ?Sized>(
    txn: &mut Txn<K>,
    seq: u64,
    bytes: &[u8],
    verified_public_key: Option<[u8; 32]>,
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
        verified_public_key,
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
    /// Leaves the query indexes ([`key::INDEX_PREFIXES`]) out of `state`.
    indexes_dropped: bool,
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

    /// A replay that keeps what the rules read and the summary counts, but
    /// not the query indexes: an audit checks the same things in less
    /// memory, and its [`Replay::snapshot`] stays small.
    pub fn without_indexes() -> Replay {
        Replay {
            indexes_dropped: true,
            ..Replay::default()
        }
    }

    pub fn record_count(&self) -> u64 {
        self.tree.tree_size()
    }

    /// Checks and applies the next record.
    pub fn push(&mut self, record: &[u8]) -> Result<(), String> {
        self.push_checked(record, None)
    }

    /// [`Replay::push`] for a record whose signature [`check_signatures`]
    /// already checked against `verified_public_key`.
    pub fn push_checked(
        &mut self,
        record: &[u8],
        verified_public_key: Option<[u8; 32]>,
    ) -> Result<(), String> {
        let seq = self.record_count();
        let mut txn = Txn::new(&self.state);
        replay_checked(&mut txn, seq, record, verified_public_key).map_err(|e| e.to_string())?;
        let mut writes = txn.into_writes();
        if self.indexes_dropped {
            writes.retain(|k, _| !key::is_index(k));
        }
        apply_writes(&mut self.state, writes);
        self.tree.append(record).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn root(&self, tree_size: u64) -> Result<Hash, String> {
        tree_hash(tree_size, &self.tree).map_err(|e| e.to_string())
    }

    /// The replay as bytes [`Replay::from_snapshot`] reads back, less the
    /// query indexes: the tree size (u64 big-endian), every stored hash
    /// (32 bytes each, as many as the size implies), the number of state
    /// entries (u64), then each entry in key order as key length (u32),
    /// key, value length (u32), value.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.tree.tree_size().to_be_bytes());
        for hash in self.tree.hashes() {
            out.extend_from_slice(hash);
        }
        let entries: Vec<_> = self
            .state
            .iter()
            .filter(|(k, _)| !key::is_index(k))
            .collect();
        out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
        for (k, v) in entries {
            for part in [k, v] {
                let len =
                    u32::try_from(part.len()).expect("state keys and values are far below 4 GiB");
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(part);
            }
        }
        out
    }

    /// Rebuilds a replay (without indexes) from [`Replay::snapshot`]'s
    /// bytes. Checks their shape only: whether the hashes are the log's is
    /// for the caller to check against a signed root.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Replay, String> {
        let mut rest = bytes;
        let tree_size = take_u64(&mut rest)?;
        let hash_count =
            fundtrail_tlog::stored_hash_count(tree_size.min(fundtrail_tlog::MAX_TREE_SIZE));
        if hash_count.saturating_mul(32) > rest.len() as u64 {
            return Err(format!(
                "it ends inside the hashes of a tree of {tree_size} records"
            ));
        }
        let mut hashes = Vec::with_capacity(hash_count as usize);
        for _ in 0..hash_count {
            hashes.push(take(&mut rest, 32)?.try_into().expect("32 bytes"));
        }
        let tree = MemoryHashes::from_stored(tree_size, hashes)
            .ok_or_else(|| format!("a tree of {tree_size} records is out of range"))?;
        let entry_count = take_u64(&mut rest)?;
        let mut state = MemoryKv::new();
        for _ in 0..entry_count {
            let k = take_part(&mut rest)?;
            let v = take_part(&mut rest)?;
            if key::is_index(&k) || state.insert(k, v).is_some() {
                return Err("it holds an index key or the same key twice".into());
            }
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes follow its last entry", rest.len()));
        }
        Ok(Replay {
            state,
            tree,
            indexes_dropped: true,
        })
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

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if rest.len() < n {
        return Err("it ends early".into());
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take_u64(rest: &mut &[u8]) -> Result<u64, String> {
    Ok(u64::from_be_bytes(
        take(rest, 8)?.try_into().expect("8 bytes"),
    ))
}

fn take_part(rest: &mut &[u8]) -> Result<Vec<u8>, String> {
    let len = u32::from_be_bytes(take(rest, 4)?.try_into().expect("4 bytes"));
    Ok(take(rest, len as usize)?.to_vec())
}

/// Public keys by key id, learned from the records that register them.
/// Only a hint: the rules check that a record's key is the one registered
/// at its position.
#[derive(Debug, Default, Clone)]
pub struct KeyBook {
    keys: std::collections::HashMap<String, [u8; 32]>,
}

impl KeyBook {
    /// Learns the keys `records` register (genesis, new orgs, added keys);
    /// records that do not decode are left to the replay to refuse.
    pub fn learn(&mut self, records: &[Vec<u8>]) {
        use fundtrail_core::model::Body;
        for bytes in records {
            let Ok(record) = pb::Record::decode(bytes.as_slice()) else {
                continue;
            };
            let Some(signed) = record.request else {
                continue;
            };
            let Ok(request) = decode_request(&signed.payload) else {
                continue;
            };
            let key = match &request.body {
                Body::Genesis(g) => g.root_public_key,
                Body::RegisterOrg(r) => r.public_key,
                Body::AddKey(a) => a.public_key,
                _ => continue,
            };
            self.keys.insert(fundtrail_core::signing::key_id(&key), key);
        }
    }
}

/// Checks the signature of each of `records` against the key its key id
/// names in `keys`, on `threads` threads; returns, for each, the key that
/// verified it, or `None` (unknown key, bad signature, or not a record) to
/// leave the check to the replay, which then names the problem.
pub fn check_signatures(
    records: &[Vec<u8>],
    keys: &KeyBook,
    threads: usize,
) -> Vec<Option<[u8; 32]>> {
    let check = |bytes: &Vec<u8>| -> Option<[u8; 32]> {
        let record = pb::Record::decode(bytes.as_slice()).ok()?;
        let signed = record.request?;
        let key = *keys.keys.get(&signed.key_id)?;
        fundtrail_core::signing::verify(&key, &signed.payload, &signed.signature).ok()?;
        Some(key)
    };
    let chunk = records.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(check).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| part.join().expect("a signature-checking thread panicked"))
            .collect()
    })
}

/// Replays `records` on every core: while one chunk is applied in order,
/// the signatures of the next are checked in parallel. Stops at the first
/// record that fails, with its seq and why.
pub fn replay_all(
    replay: &mut Replay,
    records: impl Iterator<Item = Vec<u8>>,
    threads: usize,
    mut progress: impl FnMut(u64),
) -> Result<(), (u64, String)> {
    let mut keys = KeyBook::default();
    let mut records = records;
    let mut chunk: Vec<Vec<u8>> = records.by_ref().take(REPLAY_CHUNK_RECORDS).collect();
    keys.learn(&chunk);
    let mut checked = check_signatures(&chunk, &keys, threads);
    while !chunk.is_empty() {
        let following: Vec<Vec<u8>> = records.by_ref().take(REPLAY_CHUNK_RECORDS).collect();
        keys.learn(&following);
        let (applied, next_checked) = std::thread::scope(|scope| {
            let ahead = scope.spawn(|| check_signatures(&following, &keys, threads));
            let applied = apply_chunk(replay, &chunk, &checked);
            (
                applied,
                ahead.join().expect("the signature checker panicked"),
            )
        });
        applied?;
        progress(replay.record_count());
        chunk = following;
        checked = next_checked;
    }
    Ok(())
}

/// Records whose signatures are checked together while the chunk before
/// them is applied.
const REPLAY_CHUNK_RECORDS: usize = 4_096;

fn apply_chunk(
    replay: &mut Replay,
    chunk: &[Vec<u8>],
    checked: &[Option<[u8; 32]>],
) -> Result<(), (u64, String)> {
    for (record, key) in chunk.iter().zip(checked) {
        let seq = replay.record_count();
        replay.push_checked(record, *key).map_err(|e| (seq, e))?;
    }
    Ok(())
}

/// The origin line (and note key name) of this ledger's checkpoints.
pub fn checkpoint_origin(ledger_id: &str) -> String {
    format!("{CHECKPOINT_ORIGIN_PREFIX}{ledger_id}")
}

const CHECKPOINT_ORIGIN_PREFIX: &str = "fundtrail/";

/// The ledger id a checkpoint origin (or a vkey, which begins with the
/// origin and a `+`) names.
pub fn ledger_of_origin(origin: &str) -> Option<&str> {
    let name = origin.split('+').next()?;
    name.strip_prefix(CHECKPOINT_ORIGIN_PREFIX)
        .filter(|id| !id.is_empty())
}

/// Opens a checkpoint note with the pinned log verifier key
/// (`name+hex+base64`); the origin must be the key's name.
pub fn open_pinned(vkey: &str, note: &str) -> Result<fundtrail_tlog::Checkpoint, String> {
    let verifier = fundtrail_tlog::NoteVerifier::from_vkey(vkey.trim())
        .map_err(|e| format!("bad verifier key: {e}"))?;
    let origin = vkey
        .trim()
        .split('+')
        .next()
        .unwrap_or_default()
        .to_string();
    fundtrail_tlog::open_checkpoint(note, &verifier, &origin)
        .map_err(|e| format!("the checkpoint does not verify with the pinned key: {e}"))
}
