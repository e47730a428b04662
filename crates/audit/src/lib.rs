//! The auditor's own tool: checks an exported fundtrail log (or a backup's
//! journal) offline against a signed checkpoint and the pinned log key,
//! trusting nothing but the records. Every signature, every key's authority
//! at its position, every record's effects under the rules that accepted
//! it, conservation of every source, and the Merkle root against the
//! checkpoint ([`fundtrail_verify`]).
//!
//! It links only the domain rules, the tree, the verifier and the file
//! formats: no storage engine, no gRPC, no database. `fundtrail-audit` is
//! its binary; `fundtrail audit` the same command inside the service's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use fundtrail_api::pb;
use fundtrail_format::header::{FileHeader, FileKind};
use fundtrail_format::Journal;
use fundtrail_tlog::HashReader;
use fundtrail_verify::{ledger_of_origin, open_pinned, Replay};
use prost::Message;

/// What to audit, against which checkpoint and key.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The export file (`fundtrail export`), or a journal file: a
    /// backup's `journal.log` (docs/operations.md).
    #[arg(long)]
    pub export: PathBuf,
    /// The log's pinned verifier key.
    #[arg(long)]
    pub vkey: String,
    /// A signed checkpoint to compare the recomputed root with.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Resume from an audit saved with --save: records it covers are not
    /// replayed again (the export may start at any record up to its end,
    /// and those it repeats must match), and the checkpoint must extend it.
    #[arg(long, value_name = "SAVED")]
    pub since_checkpoint: Option<PathBuf>,
    /// After a successful audit, save it here (replacing the file) so the
    /// next one can resume with --since-checkpoint. Records past the
    /// checkpoint are left for that next audit.
    #[arg(long, value_name = "SAVED")]
    pub save: Option<PathBuf>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Audits as `args` says and prints the summary; an error says where the
/// audit failed.
pub fn audit(args: AuditArgs) -> Result<()> {
    let note = read(&args.checkpoint)?;
    let checkpoint = open_pinned(&args.vkey, &note).map_err(|e| anyhow!(e))?;
    let ledger_id = ledger_of_origin(&checkpoint.origin).ok_or_else(|| {
        anyhow!(
            "the pinned checkpoint's origin {:?} names no fundtrail ledger",
            checkpoint.origin
        )
    })?;
    let mut replay = match &args.since_checkpoint {
        Some(path) => resume_audit(path, &args.vkey, ledger_id, checkpoint.tree_size)?,
        None => Replay::without_indexes(),
    };
    let audited_before = replay.record_count();
    if !args.export.exists() {
        bail!("{} does not exist", args.export.display());
    }
    // A server's own journal file (a backup's journal.log) holds every
    // record from genesis on: it is read as a full export.
    let file =
        Journal::open(&args.export, FileKind::Export, Some(ledger_id)).or_else(|not_export| {
            Journal::open(&args.export, FileKind::Journal, Some(ledger_id)).map_err(|_| not_export)
        })?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} records audited, {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let mut damaged = None;
    let mut frames = file
        .scan(0)?
        .map_while(|frame| match frame {
            Ok(frame) => Some(frame.record),
            Err(e) => {
                damaged = Some(e);
                None
            }
        })
        .peekable();
    skip_audited(&mut frames, &replay)?;
    // A saved audit ends exactly at a signed checkpoint.
    let limit = match args.save {
        Some(_) => checkpoint.tree_size.saturating_sub(audited_before),
        None => u64::MAX,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let replayed = fundtrail_verify::replay_all(
        &mut replay,
        frames
            .by_ref()
            .take(usize::try_from(limit).unwrap_or(usize::MAX)),
        cores,
        |records| progress.set_position(records),
    );
    drop(frames);
    if let Err((seq, reason)) = replayed {
        progress.abandon();
        bail!("audit FAILED at record #{seq}: {reason}");
    }
    if let Some(e) = damaged {
        progress.abandon();
        bail!("the export is damaged: {e}");
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let records = replay.record_count();
    if checkpoint.tree_size > records {
        bail!(
            "audit FAILED: the checkpoint covers {} records but the export holds only {records}",
            checkpoint.tree_size
        );
    }
    let root = replay.root(checkpoint.tree_size).map_err(|e| anyhow!(e))?;
    if root != checkpoint.root_hash {
        bail!(
            "audit FAILED: the export's first {} records do not give the root of the signed checkpoint",
            checkpoint.tree_size
        );
    }
    let summary = replay.summary().map_err(|e| anyhow!("audit FAILED: {e}"))?;
    if let Some(path) = &args.save {
        assert_eq!(
            records, checkpoint.tree_size,
            "a saved audit ends at its checkpoint"
        );
        save_audit(path, ledger_id, &note, &replay)?;
    }
    let rate = (records - audited_before) as f64 / elapsed.as_secs_f64().max(1e-9);
    let yuan = fundtrail_core::money::format_fen;
    if args.json {
        // JSON numbers here are integer fen; a total past u64 is refused, not cut.
        let fen = |total: u128| {
            u64::try_from(total)
                .map_err(|_| anyhow!("a total of {total} fen does not fit a JSON integer"))
        };
        let value = serde_json::json!({
            "ok": true, "records": summary.records, "orgs": summary.orgs, "accounts": summary.accounts,
            "sources": summary.sources, "appropriated_fen": fen(summary.appropriated_fen)?,
            "withdrawn_fen": fen(summary.withdrawn_fen)?, "disbursed_fen": fen(summary.disbursed_fen)?,
            "idle_fen": fen(summary.idle_fen)?, "checkpoint_tree_size": checkpoint.tree_size,
            "resumed_after_records": audited_before,
            "replay_records_per_second": rate.round(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "audit OK: every signature, key authority, effect and balance checks out"
    )?;
    writeln!(out, "  records:       {}", summary.records)?;
    writeln!(
        out,
        "  checkpoint:    root of the first {} records matches the signed checkpoint",
        checkpoint.tree_size
    )?;
    if args.since_checkpoint.is_some() {
        writeln!(
            out,
            "  resumed:       the first {audited_before} records were audited before; {} replayed now",
            records - audited_before
        )?;
    }
    if let Some(path) = &args.save {
        writeln!(
            out,
            "  saved:         {} (resume with --since-checkpoint)",
            path.display()
        )?;
    }
    writeln!(out, "  orgs:          {}", summary.orgs)?;
    writeln!(out, "  accounts:      {}", summary.accounts)?;
    writeln!(out, "  sources:       {}", summary.sources)?;
    writeln!(out, "  appropriated:  {}", yuan(summary.appropriated_fen))?;
    writeln!(out, "  withdrawn:     {}", yuan(summary.withdrawn_fen))?;
    writeln!(
        out,
        "  disbursed:     {} (held by households)",
        yuan(summary.disbursed_fen)
    )?;
    writeln!(
        out,
        "  idle:          {} (held by every other account)",
        yuan(summary.idle_fen)
    )?;
    writeln!(
        out,
        "  replay:        {:.2} s, {:.0} records/s",
        elapsed.as_secs_f64(),
        rate
    )?;
    Ok(())
}

/// Loads an audit saved by [`save_audit`], checks it is of `ledger_id`,
/// that its checkpoint verifies with `vkey` and its tree gives that
/// checkpoint's root, and that a checkpoint of `tree_size` records does
/// not go back before it.
fn resume_audit(path: &Path, vkey: &str, ledger_id: &str, tree_size: u64) -> Result<Replay> {
    let named = |e: String| anyhow!("{}: {e}", path.display());
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let mut cursor = std::io::Cursor::new(bytes.as_slice());
    let (_, header_len) = FileHeader::read(&mut cursor, FileKind::AuditState, Some(ledger_id))
        .map_err(|e| named(e.to_string()))?;
    let body = &bytes[header_len as usize..];
    let Some(payload_len) = body.len().checked_sub(32) else {
        return Err(named("it ends early".into()));
    };
    let (payload, digest) = body.split_at(payload_len);
    if fundtrail_core::signing::sha256(payload).as_slice() != digest {
        return Err(named("it is damaged (its SHA-256 does not match)".into()));
    }
    let (note_len, rest) = payload
        .split_at_checked(4)
        .ok_or_else(|| named("it ends early".into()))?;
    let note_len = u32::from_be_bytes(note_len.try_into().expect("4 bytes")) as usize;
    let (note, snapshot) = rest
        .split_at_checked(note_len)
        .ok_or_else(|| named("it ends early".into()))?;
    let note = std::str::from_utf8(note).map_err(|e| named(e.to_string()))?;
    let saved = open_pinned(vkey, note).map_err(named)?;
    let replay = Replay::from_snapshot(snapshot).map_err(named)?;
    if replay.record_count() != saved.tree_size
        || replay.root(saved.tree_size).map_err(named)? != saved.root_hash
    {
        return Err(named(format!(
            "its state does not give the root of the checkpoint of {} records it was saved at",
            saved.tree_size
        )));
    }
    if tree_size < saved.tree_size {
        bail!(
            "the checkpoint covers {tree_size} records, fewer than the {} already audited in {}",
            saved.tree_size,
            path.display()
        );
    }
    Ok(replay)
}

/// Passes over the export's records that `replay` already holds, checking
/// each is the record audited before (its leaf hash is in the tree). The
/// export must not start after them.
fn skip_audited(
    frames: &mut std::iter::Peekable<impl Iterator<Item = Vec<u8>>>,
    replay: &Replay,
) -> Result<()> {
    let audited = replay.record_count();
    let Some(first) = frames.peek() else {
        return Ok(());
    };
    // A first record that does not decode is left to the replay to name.
    let Ok(record) = pb::Record::decode(first.as_slice()) else {
        return Ok(());
    };
    if record.seq > audited {
        let wanted = match audited {
            0 => "an audit from genesis needs an export from record 0, or --since-checkpoint with a saved audit".to_string(),
            _ => format!("the audit saved ends at record #{}: export from record {audited} or earlier", audited - 1),
        };
        bail!("the export begins at record #{}; {wanted}", record.seq);
    }
    for seq in record.seq..audited {
        let Some(bytes) = frames.next() else {
            return Ok(());
        };
        let leaf = replay
            .tree
            .read_hashes(&[fundtrail_tlog::stored_hash_index(0, seq)])
            .map_err(|e| anyhow!(e))?;
        if leaf.first() != Some(&fundtrail_tlog::record_hash(&bytes)) {
            bail!("audit FAILED: record #{seq} of the export differs from the one audited before");
        }
    }
    Ok(())
}

/// Writes `replay`, audited up to the checkpoint `note`, where
/// [`resume_audit`] reads it: a file header of kind `FTAUDITS`, then the
/// note's length (u32 big-endian), the note, [`Replay::snapshot`], and the
/// SHA-256 of everything after the header. Replaces `path` atomically.
fn save_audit(path: &Path, ledger_id: &str, note: &str, replay: &Replay) -> Result<()> {
    let header = FileHeader::new(FileKind::AuditState, ledger_id).map_err(|e| anyhow!(e))?;
    let mut payload = Vec::new();
    let note_len = u32::try_from(note.len()).context("the checkpoint note is too long")?;
    payload.extend_from_slice(&note_len.to_be_bytes());
    payload.extend_from_slice(note.as_bytes());
    payload.extend_from_slice(&replay.snapshot());
    let digest = fundtrail_core::signing::sha256(&payload);
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    let partial = PathBuf::from(name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(&header.encode())?;
        file.write_all(&payload)?;
        file.write_all(&digest)?;
        file.sync_all()?;
        std::fs::rename(&partial, path)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
    })();
    written.with_context(|| format!("cannot save the audit to {}", path.display()))
}
