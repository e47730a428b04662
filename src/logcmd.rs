//! The verifiable-log commands: log key, checkpoints, proofs, offline
//! verification, export, full audit of an export, witness, scrub, and
//! the access log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use fundtrail_api::pb;
use fundtrail_client::proofs::{
    open_pinned, verify_consistency, verify_inclusion, ConsistencyProof, InclusionProof,
};
use fundtrail_client::witness::{witness_round, Round, WitnessState};
use fundtrail_core::keyfile::KeyFile;
use fundtrail_server::engine::ledger_of_origin;
use fundtrail_store::header::{FileHeader, FileKind};
use fundtrail_store::Journal;
use fundtrail_tlog::HashReader;
use fundtrail_verify::Replay;
use prost::Message;

use crate::{connect, status, Server};

#[derive(Subcommand)]
pub enum ProveCommand {
    /// Proof that record SEQ is in the tree (of the newest checkpoint, or --tree-size), as JSON.
    Inclusion {
        #[command(flatten)]
        server: Server,
        #[arg(long)]
        seq: u64,
        /// Tree size to prove against; default: the newest checkpoint's.
        #[arg(long, default_value_t = 0)]
        tree_size: u64,
    },
    /// Proof that the tree of --new-size records extends the one of --old-size, as JSON.
    Consistency {
        #[command(flatten)]
        server: Server,
        #[arg(long)]
        old_size: u64,
        #[arg(long)]
        new_size: u64,
    },
}

#[derive(Subcommand)]
pub enum VerifyCommand {
    /// Check an inclusion proof against a signed checkpoint.
    Inclusion {
        /// The log's verifier key, pinned (from `fundtrail log-key`).
        #[arg(long)]
        vkey: String,
        /// File holding the signed checkpoint note.
        #[arg(long)]
        checkpoint: PathBuf,
        /// File holding the proof (`fundtrail prove inclusion`).
        #[arg(long)]
        proof: PathBuf,
    },
    /// Check that a newer checkpoint extends an older one.
    Consistency {
        #[arg(long)]
        vkey: String,
        /// The older checkpoint note.
        #[arg(long)]
        old: PathBuf,
        /// The newer checkpoint note.
        #[arg(long)]
        new: PathBuf,
        #[arg(long)]
        proof: PathBuf,
    },
}

#[derive(Args)]
pub struct AuditArgs {
    /// The export file (`fundtrail export`), or a journal file: a
    /// backup's `journal.log` (docs/operations.md).
    #[arg(long)]
    export: PathBuf,
    /// The log's pinned verifier key.
    #[arg(long)]
    vkey: String,
    /// A signed checkpoint to compare the recomputed root with.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Resume from an audit saved with --save: records it covers are not
    /// replayed again (the export may start at any record up to its end,
    /// and those it repeats must match), and the checkpoint must extend it.
    #[arg(long, value_name = "SAVED")]
    since_checkpoint: Option<PathBuf>,
    /// After a successful audit, save it here (replacing the file) so the
    /// next one can resume with --since-checkpoint. Records past the
    /// checkpoint are left for that next audit.
    #[arg(long, value_name = "SAVED")]
    save: Option<PathBuf>,
}

#[derive(Args)]
pub struct WitnessArgs {
    #[command(flatten)]
    server: Server,
    /// The log's pinned verifier key.
    #[arg(long)]
    vkey: String,
    /// The witness org's id: the name in its cosignatures.
    #[arg(long)]
    name: String,
    /// Where the witness keeps the last checkpoint it cosigned.
    #[arg(long)]
    state: PathBuf,
    /// Run one round and stop.
    #[arg(long)]
    once: bool,
    /// Time between rounds.
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The log's verifier key, as the server serves it.
async fn fetch_log_key(client: &mut fundtrail_client::Client) -> Result<String> {
    Ok(client
        .audit
        .get_log_key(pb::GetLogKeyRequest {})
        .await
        .map_err(status)?
        .into_inner()
        .vkey)
}

pub async fn log_key(server: &Server) -> Result<()> {
    let mut client = connect(server).await?;
    let vkey = fetch_log_key(&mut client).await?;
    println!("{vkey}");
    Ok(())
}

pub async fn checkpoint(server: &Server, tree_size: u64) -> Result<()> {
    let mut client = connect(server).await?;
    let cp = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size })
        .await
        .map_err(status)?
        .into_inner();
    if server.json {
        let value = serde_json::json!({"note": cp.note, "tree_size": cp.tree_size, "root_hash": B64.encode(&cp.root_hash)});
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", cp.note);
    }
    Ok(())
}

pub async fn prove(command: ProveCommand) -> Result<()> {
    match command {
        ProveCommand::Inclusion {
            server,
            seq,
            tree_size,
        } => {
            let mut client = connect(&server).await?;
            let proof = client
                .audit
                .get_inclusion_proof(pb::GetInclusionProofRequest {
                    index: seq,
                    tree_size,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "{}",
                serde_json::to_string_pretty(&InclusionProof::from(proof))?
            );
        }
        ProveCommand::Consistency {
            server,
            old_size,
            new_size,
        } => {
            let mut client = connect(&server).await?;
            let proof = client
                .audit
                .get_consistency_proof(pb::GetConsistencyProofRequest {
                    first_size: old_size,
                    second_size: new_size,
                })
                .await
                .map_err(status)?
                .into_inner();
            let proof = ConsistencyProof {
                first_size: old_size,
                second_size: new_size,
                hashes: proof.hashes.iter().map(|h| B64.encode(h)).collect(),
            };
            println!("{}", serde_json::to_string_pretty(&proof)?);
        }
    }
    Ok(())
}

pub fn verify(command: VerifyCommand) -> Result<()> {
    match command {
        VerifyCommand::Inclusion {
            vkey,
            checkpoint,
            proof,
        } => {
            let note = read(&checkpoint)?;
            let proof: InclusionProof = serde_json::from_str(&read(&proof)?)
                .context("the proof file is not an inclusion proof")?;
            let record = verify_inclusion(&vkey, &note, &proof).map_err(|e| anyhow!(e))?;
            let request = record.request.unwrap_or_default();
            let kind = pb::Request::decode(request.payload.as_slice())
                .map(|r| fundtrail_api::body_kind(&r.body))
                .unwrap_or("Unknown");
            println!(
                "OK: record #{} ({kind}, signed by key {}) is in the log's tree of {} records",
                proof.index, request.key_id, proof.tree_size
            );
        }
        VerifyCommand::Consistency {
            vkey,
            old,
            new,
            proof,
        } => {
            let proof: ConsistencyProof = serde_json::from_str(&read(&proof)?)
                .context("the proof file is not a consistency proof")?;
            verify_consistency(&vkey, &read(&old)?, &read(&new)?, &proof)
                .map_err(|e| anyhow!(e))?;
            println!(
                "OK: the tree of {} records extends the tree of {} records: the log was only appended to",
                proof.second_size, proof.first_size
            );
        }
    }
    Ok(())
}

pub async fn export(server: &Server, out: &Path, start: u64, end: u64) -> Result<()> {
    let mut client = connect(server).await?;
    if out.exists() {
        bail!("{} exists; export writes a new file", out.display());
    }
    let vkey = fetch_log_key(&mut client).await?;
    let ledger_id = ledger_of_origin(&vkey)
        .ok_or_else(|| anyhow!("the server's log key {vkey:?} names no fundtrail ledger"))?;
    let mut stream = client
        .audit
        .export_log(pb::ExportLogRequest { start, end })
        .await
        .map_err(status)?
        .into_inner();
    let mut file = Journal::create(out, FileKind::Export, ledger_id)?;
    let mut batch = Vec::new();
    let mut count = 0u64;
    let mut expected = start;
    while let Some(item) = stream.message().await.map_err(status)? {
        if item.index != expected {
            bail!(
                "the server sent record {} where {expected} was due",
                item.index
            );
        }
        expected += 1;
        if item.record.is_empty() {
            // Withheld records would leave a file no one can replay.
            let _ = std::fs::remove_file(out);
            bail!(
                "the server withheld record {} (only its leaf hash came): the org of --key may not read it whole. A full export needs a MIRROR org, the root org, or an audit office whose jurisdiction covers the whole ledger",
                item.index
            );
        }
        batch.push(item.record);
        if batch.len() == 1_000 {
            count += batch.len() as u64;
            file.append(&std::mem::take(&mut batch))?;
        }
    }
    count += batch.len() as u64;
    if !batch.is_empty() {
        file.append(&batch)?;
    }
    eprintln!(
        "exported {count} records (from #{start}) of ledger {ledger_id} to {}",
        out.display()
    );
    Ok(())
}

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

pub async fn witness(args: WitnessArgs) -> Result<()> {
    let text = read(args.server.key_file()?)?;
    let (_, key) = KeyFile::from_json(&text).map_err(|e| anyhow!(e))?;
    let mut client = connect(&args.server).await?;
    let mut state = WitnessState::load(&args.state).map_err(|e| anyhow!(e))?;
    loop {
        let now_s = u64::try_from(fundtrail_core::clock::now_ms() / 1000)
            .map_err(|_| anyhow!("the system clock is before 1970"))?;
        match witness_round(&mut client, &args.vkey, &args.name, &key, &mut state, now_s).await {
            Ok(Round::Cosigned { tree_size }) => {
                state.save(&args.state).map_err(|e| anyhow!(e))?;
                println!("cosigned the checkpoint of {tree_size} records");
            }
            Ok(Round::Unchanged { tree_size }) => {
                println!("no new checkpoint (still {tree_size} records)")
            }
            Err(reason) => bail!("{reason}"),
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(args.interval_ms)).await;
    }
}

pub async fn scrub(server: &Server) -> Result<()> {
    let mut client = connect(server).await?;
    let report = client
        .audit
        .scrub(pb::ScrubRequest {})
        .await
        .map_err(status)?
        .into_inner();
    if report.ok {
        println!(
            "scrub OK: {} records match the tree, the signed checkpoints and the derived state",
            report.records_checked
        );
        Ok(())
    } else {
        bail!(
            "scrub FAILED after {} records: {}",
            report.records_checked,
            report.problem
        )
    }
}

#[derive(Args)]
pub struct AccessLogArgs {
    #[command(flatten)]
    server: Server,
    /// Entries whose answers revealed this household account.
    #[arg(long, conflicts_with = "org", required_unless_present = "org")]
    household: Option<String>,
    /// Entries of reads made by this org.
    #[arg(long)]
    org: Option<String>,
    /// The access log's pinned verifier key (`GetLogKey().access_log_vkey`);
    /// without it the server's is used, and printed.
    #[arg(long)]
    access_vkey: Option<String>,
}

/// Prints the access-log entries asked for, each proved included in the
/// signed access checkpoint.
pub async fn access_log(args: AccessLogArgs) -> Result<()> {
    use pb::get_access_log_request::About;
    let mut client = connect(&args.server).await?;
    let vkey = match args.access_vkey {
        Some(vkey) => vkey,
        None => {
            let vkey = client
                .audit
                .get_log_key(pb::GetLogKeyRequest {})
                .await
                .map_err(status)?
                .into_inner()
                .access_log_vkey;
            eprintln!("access-log key (not pinned; pin it with --access-vkey): {vkey}");
            vkey
        }
    };
    let about = match (args.household, args.org) {
        (Some(household), _) => About::HouseholdAccountId(household),
        (None, Some(org)) => About::OrgId(org),
        (None, None) => bail!("give --household or --org"),
    };
    let mut page_token = String::new();
    let mut out = std::io::stdout().lock();
    loop {
        let page = client
            .audit
            .get_access_log(pb::GetAccessLogRequest {
                about: Some(about.clone()),
                page_size: 0,
                page_token: page_token.clone(),
            })
            .await
            .map_err(status)?
            .into_inner();
        let checkpoint = open_pinned(&vkey, &page.checkpoint_note).map_err(|e| anyhow!(e))?;
        for entry in &page.entries {
            let proof: Vec<fundtrail_tlog::Hash> = entry
                .inclusion_proof
                .iter()
                .map(|h| h.as_slice().try_into())
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow!("entry {}: a proof hash is not 32 bytes", entry.index))?;
            let leaf: fundtrail_tlog::Hash = if entry.record.is_empty() {
                entry.leaf_hash.as_slice().try_into().map_err(|_| {
                    anyhow!("entry {}: withheld, with no 32-byte leaf hash", entry.index)
                })?
            } else {
                fundtrail_tlog::record_hash(&entry.record)
            };
            fundtrail_tlog::check_record(
                &proof,
                checkpoint.tree_size,
                &checkpoint.root_hash,
                entry.index,
                &leaf,
            )
            .map_err(|e| anyhow!("entry {} is not in the signed access log: {e}", entry.index))?;
            if entry.record.is_empty() {
                writeln!(
                    out,
                    "#{} withheld: it also names accounts outside your jurisdiction (proved by its leaf hash)",
                    entry.index
                )?;
                continue;
            }
            let record = pb::AccessRecord::decode(entry.record.as_slice())
                .with_context(|| format!("entry {} does not decode", entry.index))?;
            writeln!(
                out,
                "#{} {} {} (key {}) {} rows={} {} households=[{}] accounts=[{}]",
                record.index,
                crate::output::utc(record.time_ms),
                record.org_id,
                record.key_id,
                record.method,
                record.rows,
                record.outcome,
                record.household_account_ids.join(","),
                record.account_ids.join(","),
            )?;
        }
        if page.next_page_token.is_empty() {
            writeln!(
                out,
                "verified against the access log's signed checkpoint of {} entries",
                checkpoint.tree_size
            )?;
            return Ok(());
        }
        page_token = page.next_page_token;
    }
}
