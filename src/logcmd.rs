//! The verifiable-log commands: log key, checkpoints, proofs, offline
//! verification, export, full audit of an export, witness, scrub, and
//! the access log.

use std::io::Write;
use std::path::{Path, PathBuf};

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
use fundtrail_store::header::FileKind;
use fundtrail_store::Journal;
use fundtrail_verify::ledger_of_origin;
use prost::Message;

use crate::remote::{connect, status, Server};

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
