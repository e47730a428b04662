//! Recovery: bringing derived state up to the journal after a start or
//! after another writer appended to a shared journal. It reads the journal
//! and writes derived state, and knows nothing of the running engine.

use fundtrail_core::limits::{BATCH_BYTES_MAX, FRAME_HEADER_BYTES, REPLAY_COMMIT_RECORDS};
use fundtrail_core::state::Txn;
use fundtrail_core::{signing, Fault};
use fundtrail_store::{
    JournalError, JournalStore, PendingTree, RecordLocation, RecordReader, StateStore, Watermark,
};
use fundtrail_verify::{replay_record, ReplayError};
use tracing::{info, warn};

/// Records between progress lines while replaying the journal at start-up.
const REPLAY_PROGRESS_RECORDS: u64 = 25 * REPLAY_COMMIT_RECORDS;

/// Brings derived state up to the journal. Returns why writes must be
/// refused, if they must; errors only when the stores fail.
/// Whether the journal holds, where the state says, the last record the
/// state applied (an empty state holds nothing to disagree with).
fn state_holds_journal(
    journal: &dyn JournalStore,
    state: &dyn StateStore,
    reader: &dyn RecordReader,
) -> Result<bool, Fault> {
    let watermark = state.watermark()?;
    let Some(last) = watermark.record_count.checked_sub(1) else {
        return Ok(true);
    };
    let held = match state.record_location(last)? {
        Some(location) if journal.end() >= watermark.journal_end => {
            read_if_intact(reader, location)?
        }
        _ => None,
    };
    Ok(held.is_some_and(|bytes| signing::sha256(&bytes) == watermark.last_record_sha256))
}

pub fn recover(
    journal: &mut dyn JournalStore,
    state: &dyn StateStore,
    reader: &dyn RecordReader,
) -> Result<Option<String>, Fault> {
    let watermark = state.watermark()?;
    if !state_holds_journal(journal, state, reader)? {
        return Ok(Some(format!(
            "journal and state disagree: the state has applied {} records, but the journal no longer holds record {} as applied (it was cut short or changed). Restore the journal; do not write until it is",
            watermark.record_count,
            watermark.record_count - 1
        )));
    }
    let journal_len = journal.end();
    let mut scan = journal
        .scan(watermark.journal_end)
        .map_err(|e| Fault::io(format!("cannot read the journal: {e}")))?;
    let mut watermark = watermark;
    let mut txn_writes = Txn::new(state);
    let mut tree = PendingTree::new(state, watermark.record_count);
    let mut locations = Vec::new();
    let mut replayed: u64 = 0;
    let mut problem = None;
    let mut torn_at = None;
    for frame in scan.by_ref() {
        let frame = match frame {
            Ok(frame) => frame,
            Err(JournalError::BadFrame { offset, reason }) => {
                torn_at = Some((offset, reason));
                break;
            }
            Err(JournalError::Io(e)) => {
                return Err(Fault::io(format!("cannot read the journal: {e}")))
            }
        };
        let seq = watermark.record_count;
        match replay_record(&mut txn_writes, seq, &frame.record) {
            Ok(()) => {}
            Err(ReplayError::Fault(fault)) => return Err(fault),
            Err(ReplayError::Record(reason)) => {
                problem = Some(format!(
                    "record {seq} (journal byte {}) cannot be replayed: {reason}",
                    frame.offset
                ));
                break;
            }
        }
        tree.append(&frame.record)
            .map_err(|e| Fault::io(format!("cannot extend the Merkle tree: {e}")))?;
        locations.push(RecordLocation {
            seq,
            offset: frame.offset,
        });
        watermark = Watermark {
            record_count: seq + 1,
            journal_end: frame.offset + FRAME_HEADER_BYTES as u64 + frame.record.len() as u64,
            last_record_sha256: signing::sha256(&frame.record),
        };
        replayed += 1;
        if replayed.is_multiple_of(REPLAY_COMMIT_RECORDS) {
            let writes = std::mem::replace(&mut txn_writes, Txn::new(state)).into_writes();
            let chunk =
                std::mem::replace(&mut tree, PendingTree::new(state, watermark.record_count));
            state.commit(writes, &std::mem::take(&mut locations), chunk, watermark)?;
        }
        if replayed.is_multiple_of(REPLAY_PROGRESS_RECORDS) {
            info!(
                replayed,
                journal_bytes_done = watermark.journal_end,
                journal_bytes = journal_len,
                "replaying the journal into derived state"
            );
        }
    }
    drop(scan);
    state.commit(txn_writes.into_writes(), &locations, tree, watermark)?;
    if replayed > 0 {
        info!(
            replayed,
            records = watermark.record_count,
            "replayed journal into state"
        );
    }
    if let Some(reason) = problem {
        return Ok(Some(reason));
    }
    if let Some((offset, reason)) = torn_at {
        let tail_bytes = journal_len - offset;
        if tail_bytes > BATCH_BYTES_MAX {
            return Ok(Some(format!(
                "the journal is damaged at byte {offset} ({reason}), {tail_bytes} bytes before its end: more than one batch, so not a torn write. Record {} onwards cannot be read",
                watermark.record_count
            )));
        }
        warn!(offset, tail_bytes, %reason, "cutting torn journal tail (never acknowledged)");
        journal
            .truncate(offset)
            .map_err(|e| Fault::io(format!("cannot cut the torn journal tail: {e}")))?;
    }
    Ok(None)
}

/// The record at `location` if its frame is intact; `None` if the frame is
/// damaged (the journal was changed or cut there). An I/O error is a fault,
/// not a verdict on the journal.
pub(crate) fn read_if_intact(
    reader: &dyn RecordReader,
    location: u64,
) -> Result<Option<Vec<u8>>, Fault> {
    match reader.read(location) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(JournalError::BadFrame { .. }) => Ok(None),
        Err(JournalError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(JournalError::Io(e)) => Err(Fault::io(format!("cannot read the journal: {e}"))),
    }
}
