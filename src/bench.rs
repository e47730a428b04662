//! `fundtrail bench`: measured, not guessed. Against a fresh in-process
//! server on a temporary data directory, over real loopback gRPC:
//!
//! 1. writes: concurrent posts of transfers, each answered only after its
//!    group-commit fdatasync (single `Post`s, or `PostBatch` calls);
//! 2. optionally, inclusion-proof requests against the signed tree;
//! 3. optionally, the audit's full replay of the journal.
//!
//! Each prints throughput and latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::{Client, Signer};
use fundtrail_server::engine::{Engine, EngineConfig};
use fundtrail_server::genesis::{self, RootOrg};
use fundtrail_server::verify::Replay;
use fundtrail_store::Journal;

#[derive(Args)]
pub struct BenchArgs {
    /// Transfers to post in total.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// Data directory to create (must not exist); default: a temporary one, removed afterwards.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Requests per call: 1 posts each on its own (Post); more use PostBatch.
    #[arg(long, default_value_t = 1)]
    batch: u64,
    /// Then measure inclusion-proof requests for this many seconds (0: skip).
    #[arg(long, default_value_t = 0)]
    proof_seconds: u64,
    /// Then replay the journal as `fundtrail audit` does and report its rate.
    #[arg(long)]
    audit: bool,
}

fn percentile(sorted: &[Duration], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() - 1) * pct / 100;
    sorted[rank].as_secs_f64() * 1e3
}

fn report(what: &str, count: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!("{what}");
    println!("  count:      {count}");
    println!("  elapsed:    {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput: {:.0} /s",
        count as f64 / elapsed.as_secs_f64()
    );
    if !latencies.is_empty() {
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            percentile(&latencies, 50),
            percentile(&latencies, 90),
            percentile(&latencies, 99),
            percentile(&latencies, 100),
        );
    }
}

fn transfer() -> B {
    B::Transfer(pb::Transfer {
        from_account_id: "bench-treasury".into(),
        to_account_id: "bench-county".into(),
        amount_fen: 100,
        document_no: "甘财农〔2026〕7号".into(),
        ..Default::default()
    })
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.clients == 0 || args.records == 0 || args.batch == 0 {
        bail!("--clients, --records and --batch must be above zero");
    }
    if args.batch > fundtrail_core::limits::POST_BATCH_REQUESTS_MAX as u64 {
        bail!(
            "--batch may be at most {}",
            fundtrail_core::limits::POST_BATCH_REQUESTS_MAX
        );
    }
    let (data_dir, temporary) = match args.data_dir {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!(
                "fundtrail-bench-{}",
                hex::encode(rand::random::<[u8; 6]>())
            )),
            true,
        ),
    };
    let created = genesis::init(&data_dir, &RootOrg::default()).map_err(anyhow::Error::msg)?;
    let config = EngineConfig {
        scrub_on_start: false,
        ..EngineConfig::new(data_dir.clone())
    };
    let engine = Engine::open(config).map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The bench measures the server, not the per-key read allowance.
    let options = fundtrail_server::ServeOptions {
        boundary: fundtrail_server::boundary::BoundaryConfig {
            read_cost_per_second: std::num::NonZeroU32::MAX,
            read_cost_burst: std::num::NonZeroU32::MAX,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = tokio::spawn(fundtrail_server::serve_on(
        engine.clone(),
        listener,
        options,
        async {
            let _ = stopped.await;
        },
    ));

    let root = Arc::new(Signer::from_key_file(&created.root_key_path)?);
    let mut client = Client::connect_as(&url, &root).await?;
    for (account_id, kind) in [
        ("bench-treasury", pb::AccountKind::Treasury),
        ("bench-county", pb::AccountKind::Programme),
    ] {
        let open = pb::OpenAccount {
            account_id: account_id.into(),
            kind: kind as i32,
            name: account_id.into(),
            ..Default::default()
        };
        client.post(&root, B::OpenAccount(open)).await?;
    }
    let appropriation = pb::Appropriation {
        account_id: "bench-treasury".into(),
        amount_fen: args
            .records
            .checked_mul(100)
            .ok_or_else(|| anyhow::anyhow!("--records is too large"))?,
        programme_code: "2130599".into(),
        fiscal_year: 2026,
        document_no: "财农〔2026〕1号".into(),
        ..Default::default()
    };
    client.post(&root, B::Appropriation(appropriation)).await?;

    // 1. Writes.
    let calls = args.records.div_ceil(args.batch);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.clients {
        let my_calls = calls / args.clients + u64::from(worker < calls % args.clients);
        let mut client = client.clone();
        let root = root.clone();
        let batch = args.batch;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(my_calls as usize);
            for _ in 0..my_calls {
                let t = Instant::now();
                if batch == 1 {
                    client.post(&root, transfer()).await?;
                } else {
                    let requests = (0..batch)
                        .map(|_| root.sign(&client.request(transfer())))
                        .collect();
                    let results = client.post_batch(requests).await?;
                    if let Some(failed) = results
                        .iter()
                        .find(|r| !matches!(r.result, Some(pb::post_result::Result::Ok(_))))
                    {
                        return Err(tonic::Status::internal(format!(
                            "a batched post failed: {failed:?}"
                        )));
                    }
                }
                latencies.push(t.elapsed());
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let what = if args.batch == 1 {
        format!(
            "writes: concurrent single posts from {} clients (latency per post)",
            args.clients
        )
    } else {
        format!(
            "writes: PostBatch of {} from {} clients (latency per call)",
            args.batch, args.clients
        )
    };
    report(
        &what,
        (calls * args.batch) as usize,
        started.elapsed(),
        latencies,
    );

    // 2. Inclusion proofs against the newest checkpoint.
    if args.proof_seconds > 0 {
        let record_count = engine.record_count();
        engine
            .checkpoints()
            .sign(record_count, engine.state())
            .map_err(|e| anyhow::anyhow!(e))?;
        // What verifiers do (public, hashes only), then what a signed reader
        // does (the record too; each read checked and access-logged).
        let anonymous = Client::connect(&url).await?;
        for (client, kind) in [
            (&anonymous, "public, hashes only"),
            (&client, "signed, with the record, access-logged"),
        ] {
            let started = Instant::now();
            let latencies =
                prove_for(client, args.clients, record_count, args.proof_seconds).await?;
            let elapsed = started.elapsed();
            let what = format!(
                "inclusion proofs ({kind}): GetInclusionProof from {} clients, tree of {record_count} records",
                args.clients
            );
            report(&what, latencies.len(), elapsed, latencies);
        }
    }

    let _ = stop.send(());
    server.await?.map_err(anyhow::Error::msg)?;
    drop(engine);

    // 3. The audit's replay: every signature, authority, effect, leaf hash.
    if args.audit {
        let journal = Journal::open(
            &data_dir.join(fundtrail_store::journal::JOURNAL_FILE_NAME),
            fundtrail_store::header::FileKind::Journal,
            None,
        )?;
        let started = Instant::now();
        let mut replay = Replay::new();
        for frame in journal.scan(0)? {
            let frame = frame.map_err(|e| anyhow::anyhow!("{e}"))?;
            replay.push(&frame.record).map_err(|e| anyhow::anyhow!(e))?;
        }
        replay.summary().map_err(|e| anyhow::anyhow!(e))?;
        report(
            "audit replay: full check of every record from genesis",
            replay.record_count() as usize,
            started.elapsed(),
            Vec::new(),
        );
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}

/// Inclusion proofs of random records from `clients` tasks for `seconds`;
/// the latency of each.
async fn prove_for(
    client: &Client,
    clients: u64,
    record_count: u64,
    seconds: u64,
) -> Result<Vec<Duration>> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut index = worker.wrapping_mul(7_919) % record_count;
            while Instant::now() < until {
                // A linear congruential step: wrapping is the point.
                index = index
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407)
                    % record_count;
                let t = Instant::now();
                let proof = client
                    .audit
                    .get_inclusion_proof(pb::GetInclusionProofRequest {
                        index,
                        tree_size: record_count,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                latencies.push(t.elapsed());
                if proof.hashes.is_empty() && record_count > 1 {
                    return Err(tonic::Status::internal("an empty proof"));
                }
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}
