//! `fundtrail bench`: write throughput and latency of concurrent single posts
//! (each answered only after its group-commit fdatasync), against a fresh
//! in-process server on a temporary data directory, over real gRPC.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use fundtrail_server::engine::{Engine, EngineConfig};
use fundtrail_server::genesis::{self, RootOrg};

#[derive(Args)]
pub struct BenchArgs {
    /// Transfers to post in total.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Concurrent clients, each posting one request at a time.
    #[arg(long, default_value_t = 64)]
    clients: u64,
    /// Data directory to create (must not exist); default: a temporary one, removed afterwards.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * pct / 100.0).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.clients == 0 || args.records == 0 {
        bail!("--clients and --records must be above zero");
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
    let engine = Engine::open(EngineConfig {
        scrub_on_start: false,
        ..EngineConfig::new(data_dir.clone())
    })
    .map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fundtrail_server::serve_on(engine, listener, async {
        let _ = stopped.await;
    }));

    let root = Signer::from_key_file(&created.root_key_path)?;
    let mut client = Client::connect(&url).await?;
    use pb::request::Body as B;
    for (account_id, kind) in [
        ("bench-treasury", pb::AccountKind::Treasury),
        ("bench-county", pb::AccountKind::Programme),
    ] {
        client
            .post(
                &root,
                B::OpenAccount(pb::OpenAccount {
                    account_id: account_id.into(),
                    kind: kind as i32,
                    name: account_id.into(),
                    ..Default::default()
                }),
            )
            .await?;
    }
    client
        .post(
            &root,
            B::Appropriation(pb::Appropriation {
                account_id: "bench-treasury".into(),
                amount_fen: args.records * 100,
                programme_code: "BENCH".into(),
                fiscal_year: 2026,
                document_no: "财农〔2026〕1号".into(),
                ..Default::default()
            }),
        )
        .await?;

    let root = Arc::new(root);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.clients {
        let count = args.records / args.clients + u64::from(worker < args.records % args.clients);
        let mut client = client.clone();
        let root = root.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let body = B::Transfer(pb::Transfer {
                    from_account_id: "bench-treasury".into(),
                    to_account_id: "bench-county".into(),
                    amount_fen: 100,
                    document_no: "甘财农〔2026〕7号".into(),
                    ..Default::default()
                });
                let t = Instant::now();
                client.post(&root, body).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, tonic::Status>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let _ = stop.send(());
    server.await?.map_err(anyhow::Error::msg)?;
    println!("concurrent single posts (each acknowledged after its batch's fdatasync)");
    println!("  records:    {}", latencies.len());
    println!("  clients:    {}", args.clients);
    println!("  elapsed:    {:.2} s", elapsed.as_secs_f64());
    println!(
        "  throughput: {:.0} records/s",
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3,
        percentile(&latencies, 90.0).as_secs_f64() * 1e3,
        percentile(&latencies, 99.0).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    Ok(())
}
