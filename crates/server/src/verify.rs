//! The scrub: replays the whole journal of a running engine with
//! [`fundtrail_verify::Replay`] and checks it against what the engine
//! holds: leaf hashes, signed checkpoints and derived state.

use std::collections::BTreeMap;

use fundtrail_tlog::{record_hash, stored_hash_index};
pub use fundtrail_verify::{replay_record, Replay, ReplayError, Summary};

use std::sync::Arc;

use tracing::{info, warn};

use crate::engine::Engine;

/// Longest the scrub waits for derived state to reach the replayed records.
const SCRUB_INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The result of a scrub.
#[derive(Debug, Clone, Default)]
pub struct ScrubReport {
    pub records_checked: u64,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    /// The engine began shutting down before the scrub finished.
    pub stopped: bool,
}

/// Starts the start-up scrub of a writer's `engine` on a thread of its
/// own: a problem it finds stops writes; the engine joins it at shutdown.
pub fn start_scrub(engine: &Arc<Engine>) -> Result<(), String> {
    let scrubbed = engine.clone();
    let scrub = std::thread::Builder::new()
        .name("scrub".into())
        .spawn(move || {
            let stamp = scrubbed.resyncs().stamp();
            let report = scrub(&scrubbed);
            // Another writer's records replayed into the state while
            // the scrub compared it: a difference proves nothing.
            let overtaken = !scrubbed.resyncs().quiet_since(stamp);
            let metrics = scrubbed.metrics();
            match report.problem {
                Some(problem) if overtaken => {
                    metrics.scrubbed("inconclusive");
                    warn!(
                        %problem,
                        "scrub inconclusive: another writer's records were replayed during it"
                    )
                }
                Some(problem) => {
                    metrics.scrubbed("problem");
                    scrubbed.gate().stop(crate::gate::Stop::Scrub(problem))
                }
                None if report.stopped => metrics.scrubbed("stopped"),
                None => {
                    metrics.scrubbed("intact");
                    info!(
                        records = report.records_checked,
                        "scrub found the log intact"
                    )
                }
            }
        })
        .map_err(|e| format!("cannot start the scrub: {e}"))?;
    engine.keep_scrub(scrub);
    Ok(())
}

/// Replays the whole journal of a running engine and checks (a) every record
/// against its stored leaf hash, its signature, authority and effects; (b)
/// every signed checkpoint's root; (c) the derived state in the store against the
/// replayed one. Reports the first problem.
pub fn scrub(engine: &Engine) -> ScrubReport {
    let count = engine.record_count();
    let mut report = ScrubReport::default();
    let mut replay = Replay::new();
    for seq in 0..count {
        if engine.is_stopping() {
            report.records_checked = seq;
            report.stopped = true;
            return report;
        }
        let fail = |reason: String| ScrubReport {
            records_checked: seq,
            first_bad_seq: Some(seq),
            problem: Some(format!("record {seq}: {reason}")),
            stopped: false,
        };
        let bytes = match engine.record_bytes(seq) {
            Ok(bytes) => bytes,
            Err(e) => return fail(e.to_string()),
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
    let checkpoints = engine.checkpoints().all();
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
    // Derived state: only comparable once the indexer holds exactly the
    // replayed records, and while no write lands during the read.
    let indexed = engine.indexed();
    if !indexed.wait_blocking(count, SCRUB_INDEX_WAIT) || engine.record_count() != count {
        return report;
    }
    let stored = match engine.state().dump() {
        Ok(dump) => dump,
        Err(e) => {
            report.problem = Some(e.to_string());
            return report;
        }
    };
    if engine.record_count() != count || indexed.get() != count {
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
