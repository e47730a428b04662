//! `fundtrail bench`: measured, not guessed. Starts `fundtrail serve` in its
//! own process on a fresh data directory and drives it over loopback gRPC:
//!
//! 0. the ceiling: how many signatures a second this machine checks with
//!    `verify_batch` on every core, and with one-by-one strict checks (what
//!    the server does; docs/record-format.md §5.2 says why);
//! 1. writes: transfers and household disbursements, all signed before the
//!    clock starts, posted concurrently (single `Post`s, `PostBatch` calls,
//!    `PostStream`s, or single posts offered at a fixed rate), each answered
//!    only after its
//!    group-commit fdatasync; optionally with a reader timing queries;
//!    with `--queries`, then the whole log read back a ListEntries page at
//!    a time;
//! 2. optionally, inclusion-proof requests, unary and streamed;
//! 3. disk bytes per record, and the time a restart takes to serve again;
//! 4. optionally, the audit's full replay of the journal.
//!
//! Each throughput is printed with latency percentiles and as a percentage
//! of the ceiling.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ed25519_dalek::{Signature, VerifyingKey};
use fundtrail_api::pb;
use fundtrail_api::pb::request::Body as B;
use fundtrail_client::{Client, Signer};
use fundtrail_server::genesis::{self, RootOrg};
use fundtrail_server::verify::Replay;
use fundtrail_store::Journal;

#[derive(Args)]
pub struct BenchArgs {
    /// Records to post in total (half transfers, half disbursements).
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
    /// Offer single posts at this many a second (open loop) instead of as
    /// fast as --clients can.
    #[arg(long, conflicts_with = "batch")]
    rate: Option<u64>,
    /// Post over one PostStream per client instead of Post or PostBatch.
    #[arg(long, conflicts_with_all = ["batch", "rate"])]
    stream: bool,
    /// While writing, time signed queries (GetAccount) one after another;
    /// then read the whole log back a ListEntries page at a time.
    #[arg(long)]
    queries: bool,
    /// Then measure inclusion-proof requests for this many seconds each,
    /// unary and streamed (0: skip).
    #[arg(long, default_value_t = 0)]
    proof_seconds: u64,
    /// Then replay the journal as `fundtrail audit` does and report its rate.
    #[arg(long)]
    audit: bool,
    /// Open this many change-feed streams (Query.Watch from record 0) that
    /// are never read, before writing: writers must not wait for them.
    #[arg(long, default_value_t = 0)]
    stalled_watchers: u64,
    /// Keep the journal in this (empty) PostgreSQL database instead of a
    /// file (docs/postgres.md).
    #[arg(long, value_name = "POSTGRES_URL", conflicts_with = "audit")]
    journal: Option<String>,
}

/// Households the disbursements go to.
const BENCH_HOUSEHOLDS: u64 = 1_000;
/// Amount of each benched movement.
const BENCH_AMOUNT_FEN: u64 = 100;
/// Seconds the ceiling is measured for.
const CEILING_SECONDS: f64 = 2.0;

fn percentile(sorted: &[Duration], pct: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() - 1) * pct / 100;
    sorted[rank].as_secs_f64() * 1e3
}

/// Prints one measurement; returns its throughput per second.
/// Reads every record back, signed, a ListEntries page of the largest
/// size at a time, and reports records a second and the time per page.
async fn list_everything(client: &Client) -> Result<()> {
    let mut client = client.clone();
    let mut request = pb::ListEntriesRequest {
        page_size: fundtrail_core::limits::PAGE_SIZE_MAX,
        ..Default::default()
    };
    let (started, mut records, mut latencies) = (Instant::now(), 0, Vec::new());
    loop {
        let t = Instant::now();
        let page = client
            .query
            .list_entries(request.clone())
            .await
            .map_err(crate::remote::status)?
            .into_inner();
        latencies.push(t.elapsed());
        records += page.entries.len();
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let what = format!(
        "reads after writing: the whole log, signed ListEntries pages of {} (latency per page)",
        request.page_size
    );
    report(&what, records, started.elapsed(), latencies, None);
    Ok(())
}

fn report(
    what: &str,
    count: usize,
    elapsed: Duration,
    mut latencies: Vec<Duration>,
    ceiling: Option<f64>,
) -> f64 {
    latencies.sort();
    let rate = count as f64 / elapsed.as_secs_f64();
    println!("{what}");
    println!("  count:      {count}");
    println!("  elapsed:    {:.2} s", elapsed.as_secs_f64());
    match ceiling {
        Some(ceiling) => println!(
            "  throughput: {rate:.0} /s ({:.1}% of the verify_batch ceiling)",
            100.0 * rate / ceiling
        ),
        None => println!("  throughput: {rate:.0} /s"),
    }
    if !latencies.is_empty() {
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            percentile(&latencies, 50),
            percentile(&latencies, 90),
            percentile(&latencies, 99),
            percentile(&latencies, 100),
        );
    }
    rate
}

fn transfer(amount_fen: u64) -> B {
    B::Transfer(pb::Transfer {
        from_account_id: "bench-treasury".into(),
        to_account_id: "bench-county".into(),
        amount_fen,
        document_no: "甘财农〔2026〕7号".into(),
        ..Default::default()
    })
}

fn household_id(h: u64) -> String {
    format!("bench-hh-{h:06}")
}

/// A payment to household `h`, drawing on budget quota `quota_seq` (rules
/// 9: every payment names the quota it draws on).
fn disbursement(h: u64, quota_seq: u64) -> B {
    B::Disbursement(pb::Disbursement {
        from_account_id: "bench-county".into(),
        household_account_id: household_id(h),
        amount_fen: BENCH_AMOUNT_FEN,
        programme_code: "2130599".into(),
        period: "2026-03".into(),
        document_no: "东财农〔2026〕3号".into(),
        quota_seq: Some(quota_seq),
        ..Default::default()
    })
}

/// `fundtrail serve` in its own process.
struct ServerProcess {
    child: Child,
    url: String,
}

impl ServerProcess {
    /// Starts the server on `data_dir` and returns once it listens, with
    /// how long that took (opening replays and loads state).
    async fn start(data_dir: &Path, journal: Option<&str>) -> Result<(ServerProcess, Duration)> {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("bench-server.log"))?;
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            // The bench measures the server, not the per-key read allowance.
            .args(["--read-units-per-second", &u32::MAX.to_string()])
            .args(["--read-units-burst", &u32::MAX.to_string()])
            .args(journal.map(|url| ["--journal", url]).into_iter().flatten())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start `fundtrail serve`")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                let _ = child.wait();
                bail!(
                    "the server stopped before listening; see {}",
                    data_dir.join("bench-server.log").display()
                );
            };
            if let Some(addr) = line?.strip_prefix("fundtrail listening on ") {
                break addr.to_string();
            }
        };
        let elapsed = started.elapsed();
        let server = ServerProcess {
            child,
            url: format!("http://{addr}"),
        };
        // Once it answers, it also handles SIGTERM as a graceful stop.
        Client::connect(&server.url).await?;
        Ok((server, elapsed))
    }

    /// Stops the server as an operator does (SIGTERM) and waits for it.
    fn stop(mut self) -> Result<()> {
        let pid = i32::try_from(self.child.id())?;
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the server exited with {status}");
        }
        Ok(())
    }
}

/// Signs `bodies` on every core: the client's signing is not the server's
/// work, so it happens before any clock starts.
fn sign_all(client: &Client, signer: &Signer, bodies: Vec<B>) -> Vec<pb::SignedRequest> {
    let requests: Vec<pb::Request> = bodies.into_iter().map(|b| client.request(b)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = requests.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|r| signer.sign(r)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a signing thread panicked"))
            .collect()
    })
}

/// Signatures checked per second on every core, with `verify_batch` over
/// batches of 256 and with one-by-one strict checks.
fn ceiling(signer: &Signer, samples: &[pb::SignedRequest]) -> Result<(f64, f64)> {
    let key = VerifyingKey::from_bytes(&signer.public_key())?;
    let messages: Vec<Vec<u8>> = samples
        .iter()
        .map(|s| fundtrail_core::signing::signed_message(&s.payload))
        .collect();
    let signatures: Vec<Signature> = samples
        .iter()
        .map(|s| Signature::from_slice(&s.signature))
        .collect::<Result<_, _>>()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rate = |batched: bool| -> Result<f64> {
        let started = Instant::now();
        let checked: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut checked = 0;
                        let keys = vec![key; 256];
                        while started.elapsed().as_secs_f64() < CEILING_SECONDS {
                            for (m, s) in messages.chunks(256).zip(signatures.chunks(256)) {
                                if batched {
                                    let m: Vec<&[u8]> = m.iter().map(Vec::as_slice).collect();
                                    ed25519_dalek::verify_batch(&m, s, &keys[..s.len()])
                                        .expect("bench signatures verify");
                                } else {
                                    for (m, s) in m.iter().zip(s) {
                                        key.verify_strict(m, s).expect("bench signatures verify");
                                    }
                                }
                                checked += s.len();
                            }
                        }
                        checked
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        Ok(checked as f64 / started.elapsed().as_secs_f64())
    };
    Ok((rate(true)?, rate(false)?))
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.clients == 0 || args.records == 0 || args.batch == 0 || args.rate == Some(0) {
        bail!("--clients, --records, --batch and --rate must be above zero");
    }
    if args.batch > fundtrail_core::limits::POST_BATCH_REQUESTS_MAX as u64 {
        bail!(
            "--batch may be at most {}",
            fundtrail_core::limits::POST_BATCH_REQUESTS_MAX
        );
    }
    let (data_dir, temporary) = match args.data_dir.clone() {
        Some(dir) => (dir, false),
        None => (
            std::env::temp_dir().join(format!(
                "fundtrail-bench-{}",
                hex::encode(rand::random::<[u8; 6]>())
            )),
            true,
        ),
    };
    let at = match &args.journal {
        Some(url) => genesis::JournalAt::Postgres(url),
        None => genesis::JournalAt::File,
    };
    let created = genesis::init_at(
        &data_dir,
        at,
        &RootOrg::default(),
        // The newest rules: what a ledger upgraded to them costs, measured
        // before new ledgers start under them.
        fundtrail_core::rules::Rules::NEWEST,
        &fundtrail_core::clock::SystemClock,
    )
    .map_err(anyhow::Error::msg)?;
    let result = bench(&args, &data_dir, &created.root_key_path).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

async fn bench(args: &BenchArgs, data_dir: &Path, root_key: &Path) -> Result<()> {
    let (server, _) = ServerProcess::start(data_dir, args.journal.as_deref()).await?;
    let root = Arc::new(Signer::from_key_file(root_key)?);
    let mut client = Client::connect_as(&server.url, &root).await?;
    let quota_seq = setup(&mut client, &root, args.records).await?;

    let bodies: Vec<B> = (0..args.records)
        .map(|i| match i % 2 {
            0 => transfer(BENCH_AMOUNT_FEN),
            _ => disbursement(i / 2 % BENCH_HOUSEHOLDS, quota_seq),
        })
        .collect();
    let requests = sign_all(&client, &root, bodies);
    let (batch_ceiling, strict_ceiling) = ceiling(&root, &requests[..requests.len().min(4096)])?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ceiling on {cores} cores: verify_batch {batch_ceiling:.0} signatures/s; one-by-one strict {strict_ceiling:.0}/s"
    );
    let ceiling = Some(batch_ceiling);
    // Streams that stop reading at once: held, never read, until the end.
    // Each on a connection of its own, as query.proto tells consumers: an
    // unread stream holds its connection's HTTP/2 window, which would
    // stall the writers' calls on a shared one.
    let mut watchers = connect_each(&server.url, Some(&root), args.stalled_watchers).await?;
    let mut stalled = Vec::new();
    for watcher in &mut watchers {
        let request = pb::WatchRequest::default();
        stalled.push(
            watcher
                .query
                .watch(request)
                .await
                .map_err(crate::remote::status)?
                .into_inner(),
        );
    }
    if !stalled.is_empty() {
        println!("{} stalled change-feed streams open", stalled.len());
    }

    // 1. Writes, with a reader timing queries alongside if asked.
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Another session (its reads do not wait for the writers' records), on
    // a thread and runtime of its own: an auditor's query does not queue
    // behind this process's writers encoding their batches.
    let reader = args.queries.then(|| {
        let writing = writing.clone();
        let (url, root) = (server.url.clone(), root.clone());
        std::thread::spawn(move || -> Result<Vec<Duration>> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut reader_client = Client::connect_as(&url, &root).await?;
                let mut latencies = Vec::new();
                while writing.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    reader_client
                        .query
                        .get_account(pb::GetAccountRequest {
                            account_id: "bench-county".into(),
                            ..Default::default()
                        })
                        .await?;
                    latencies.push(t.elapsed());
                }
                Ok(latencies)
            })
        })
    });
    let started = Instant::now();
    let (what, latencies) = match args.rate {
        None if args.stream => (
            format!(
                "writes: PostStream from {} clients (latency from each stream's start to each answer)",
                args.clients
            ),
            post_streams(&client, requests, args.clients).await?,
        ),
        Some(rate) => (
            format!("writes: single posts offered at {rate}/s (latency from when each was due)"),
            post_at_rate(&client, requests, rate).await?,
        ),
        None if args.batch == 1 => (
            format!(
                "writes: concurrent single posts from {} clients (latency per post)",
                args.clients
            ),
            post_concurrently(&client, requests, args.clients, 1).await?,
        ),
        None => (
            format!(
                "writes: PostBatch of {} from {} clients (latency per call)",
                args.batch, args.clients
            ),
            post_concurrently(&client, requests, args.clients, args.batch as usize).await?,
        ),
    };
    let elapsed = started.elapsed();
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    report(&what, args.records as usize, elapsed, latencies, ceiling);
    if let Some(reader) = reader {
        let latencies = reader
            .join()
            .map_err(|_| anyhow!("the query thread panicked"))??;
        report(
            "queries while writing: signed GetAccount, one at a time",
            latencies.len(),
            elapsed,
            latencies,
            None,
        );
        list_everything(&client).await?;
    }

    // 2. Inclusion proofs against a checkpoint of every record.
    let info = client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await?
        .into_inner();
    let record_count = info.record_count;
    if args.proof_seconds > 0 {
        let tree_size = signed_tree_size(&client, record_count).await?;
        // What verifiers do (public, hashes only), then what a signed reader
        // does (the record too; each read checked and access-logged).
        // Each client on its own connection, as separate verifiers are.
        let anonymous = connect_each(&server.url, None, args.clients).await?;
        let signed = connect_each(&server.url, Some(&root), args.clients).await?;
        for (clients, kind) in [
            (&anonymous, "public, hashes only"),
            (&signed, "signed, with the record, access-logged"),
        ] {
            let started = Instant::now();
            let latencies = prove_for(clients, tree_size, args.proof_seconds).await?;
            let what = format!(
                "inclusion proofs ({kind}): GetInclusionProof from {} clients, tree of {tree_size} records",
                args.clients
            );
            report(&what, latencies.len(), started.elapsed(), latencies, None);
        }
        let started = Instant::now();
        let proved = prove_streamed_for(&anonymous, tree_size, args.proof_seconds).await?;
        let what = format!(
            "inclusion proofs (public, streamed): GetInclusionProofs of {} random indexes from {} clients, tree of {tree_size} records",
            fundtrail_core::limits::INCLUSION_PROOFS_PER_CALL_MAX,
            args.clients
        );
        report(&what, proved, started.elapsed(), Vec::new(), None);
    }
    drop(client);
    server.stop()?;

    // 3. Disk, and a restart.
    disk_report(data_dir, record_count)?;
    let (server, restart) = ServerProcess::start(data_dir, args.journal.as_deref()).await?;
    println!(
        "restart at {record_count} records: serving after {:.2} s",
        restart.as_secs_f64()
    );
    server.stop()?;

    // 4. The audit's replay: every signature, authority, effect, leaf hash.
    if args.audit {
        let journal = Journal::open(
            &data_dir.join(fundtrail_store::journal::JOURNAL_FILE_NAME),
            fundtrail_store::header::FileKind::Journal,
            None,
        )?;
        let started = Instant::now();
        let mut replay = Replay::without_indexes();
        let records = journal.scan(0)?.map_while(Result::ok).map(|f| f.record);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        fundtrail_verify::replay_all(&mut replay, records, cores, |_| {})
            .map_err(|(seq, e)| anyhow!("record {seq}: {e}"))?;
        replay.summary().map_err(|e| anyhow!(e))?;
        report(
            "audit replay: full check of every record from genesis",
            replay.record_count() as usize,
            started.elapsed(),
            Vec::new(),
            ceiling,
        );
    }
    Ok(())
}

/// Accounts, money, budget quota and households for the benched movements:
/// the treasury holds enough for every transfer, the county enough for
/// every disbursement before the first transfer arrives, and the quota
/// covers every disbursement. Returns the quota's seq.
async fn setup(client: &mut Client, root: &Signer, records: u64) -> Result<u64> {
    let enough = records
        .checked_mul(BENCH_AMOUNT_FEN)
        .ok_or_else(|| anyhow::anyhow!("--records is too large"))?;
    let mut bodies = Vec::new();
    for (account_id, kind) in [
        ("bench-treasury", pb::AccountKind::Treasury),
        ("bench-county", pb::AccountKind::Programme),
    ] {
        bodies.push(B::OpenAccount(pb::OpenAccount {
            account_id: account_id.into(),
            kind: kind as i32,
            name: account_id.into(),
            ..Default::default()
        }));
    }
    bodies.push(B::Appropriation(pb::Appropriation {
        account_id: "bench-treasury".into(),
        amount_fen: enough * 2,
        programme_code: "2130599".into(),
        fiscal_year: 2026,
        document_no: "财农〔2026〕1号".into(),
        ..Default::default()
    }));
    bodies.push(transfer(enough));
    for h in 0..BENCH_HOUSEHOLDS {
        bodies.push(B::RegisterHousehold(pb::RegisterHousehold {
            account_id: household_id(h),
            household_ref: format!("JDLK-BENCH-{h:06}"),
            village_code: "622926100201".into(),
            basis: pb::SubsidyBasis::PerHousehold as i32,
            members: 4,
        }));
    }
    let quota = client
        .post(
            root,
            B::IssueQuota(pb::IssueQuota {
                to_org_id: "mof".into(),
                amount_fen: enough,
                programme_code: "2130599".into(),
                fiscal_year: 2026,
                document_no: "财农〔2026〕12号".into(),
                direct: true,
                project_code: "100000213059926000001".into(),
                ..Default::default()
            }),
        )
        .await?
        .seq;
    let requests = sign_all(client, root, bodies);
    for chunk in requests.chunks(fundtrail_core::limits::POST_BATCH_REQUESTS_MAX) {
        check_results(&client.post_batch(chunk.to_vec()).await?)?;
    }
    Ok(quota)
}

fn check_results(results: &[pb::PostResult]) -> Result<(), tonic::Status> {
    match results
        .iter()
        .find(|r| !matches!(r.result, Some(pb::post_result::Result::Ok(_))))
    {
        Some(failed) => Err(tonic::Status::internal(format!(
            "a benched post failed: {failed:?}"
        ))),
        None => Ok(()),
    }
}

/// Posts `requests` from `clients` tasks, `batch` per call (1: `Post`);
/// the latency of each call.
async fn post_concurrently(
    client: &Client,
    requests: Vec<pb::SignedRequest>,
    clients: u64,
    batch: usize,
) -> Result<Vec<Duration>> {
    let calls: Vec<Vec<pb::SignedRequest>> = requests.chunks(batch).map(<[_]>::to_vec).collect();
    let queue = Arc::new(std::sync::Mutex::new(calls.into_iter()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = client.clone();
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(call) = queue.lock().expect("queue lock").next() else {
                    break;
                };
                let t = Instant::now();
                if call.len() == 1 {
                    let request = call.into_iter().next().expect("one request");
                    client.post_signed(request).await?;
                } else {
                    check_results(&client.post_batch(call).await?)?;
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
    Ok(latencies)
}

/// Posts `requests` over one PostStream per client, each with its share;
/// the time from the stream's start to each answer.
async fn post_streams(
    client: &Client,
    requests: Vec<pb::SignedRequest>,
    clients: u64,
) -> Result<Vec<Duration>> {
    use tokio_stream::StreamExt;
    let share = requests.len().div_ceil(clients as usize).max(1);
    let mut tasks = Vec::new();
    for part in requests.chunks(share) {
        let mut client = client.clone();
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut results = client.post_stream(tokio_stream::iter(part)).await?;
            let mut latencies = Vec::new();
            while let Some(result) = results.next().await {
                check_results(&[result?])?;
                latencies.push(started.elapsed());
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

/// Offers each request as a single post at its due time, `rate` a second,
/// whether or not earlier ones were answered; the latency of each from
/// when it was due. A thread of its own keeps the times: the runtime's
/// timer rounds up to the millisecond, which would count against the
/// server.
async fn post_at_rate(
    client: &Client,
    requests: Vec<pb::SignedRequest>,
    rate: u64,
) -> Result<Vec<Duration>> {
    let runtime = tokio::runtime::Handle::current();
    let client = client.clone();
    let pacer = std::thread::spawn(move || {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let mut client = client.clone();
            tasks.push(runtime.spawn(async move {
                client.post_signed(request).await?;
                Ok::<_, tonic::Status>(due.elapsed())
            }));
        }
        tasks
    });
    let tasks = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow!("the pacing thread panicked"))?;
    let mut latencies = Vec::with_capacity(tasks.len());
    for task in tasks {
        latencies.push(task.await??);
    }
    Ok(latencies)
}

/// `count` clients of the server at `url`, each on a connection of its
/// own, signed by `reader` or anonymous.
async fn connect_each(url: &str, reader: Option<&Signer>, count: u64) -> Result<Vec<Client>> {
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(match reader {
            Some(reader) => Client::connect_as(url, reader).await?,
            None => Client::connect(url).await?,
        });
    }
    Ok(clients)
}

/// The size of a checkpoint the log signed that covers `record_count`
/// records, once there is one.
async fn signed_tree_size(client: &Client, record_count: u64) -> Result<u64> {
    let mut client = client.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let checkpoint = client
            .audit
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await?
            .into_inner();
        if checkpoint.tree_size >= record_count {
            return Ok(checkpoint.tree_size);
        }
        if Instant::now() > deadline {
            bail!("no checkpoint of {record_count} records within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bytes on disk per record, in all and file by file.
/// Disk in use: blocks allocated, not file lengths (fjall preallocates its
/// journal files, most of which stays unwritten).
fn disk_report(data_dir: &Path, record_count: u64) -> Result<()> {
    fn bytes(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .map(|entries| entries.flatten().map(|e| bytes(&e.path())).sum())
                .unwrap_or(0),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        }
    }
    let total = bytes(data_dir);
    println!(
        "disk at {record_count} records: {} bytes a record in all",
        total / record_count.max(1)
    );
    for part in [
        "journal.log",
        "derived/kv",
        "derived/tree.hashes",
        "derived/record.offsets",
        "checkpoints.log",
        "access.log",
    ] {
        println!(
            "  {part:<24} {:>6} bytes a record",
            bytes(&data_dir.join(part)) / record_count.max(1)
        );
    }
    Ok(())
}

/// The next pseudo-random record index below `record_count`: a linear
/// congruential step (wrapping is the point).
fn next_index(index: u64, record_count: u64) -> u64 {
    index
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        % record_count
}

/// Streamed inclusion proofs of random records, as many indexes a call as
/// allowed, from `clients` tasks for `seconds`; how many were proven.
async fn prove_streamed_for(clients: &[Client], record_count: u64, seconds: u64) -> Result<usize> {
    use tokio_stream::StreamExt;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (worker, client) in (0u64..).zip(clients) {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut proved = 0;
            let mut index = worker.wrapping_mul(7_919) % record_count;
            while Instant::now() < until {
                let indexes = (0..fundtrail_core::limits::INCLUSION_PROOFS_PER_CALL_MAX)
                    .map(|_| {
                        index = next_index(index, record_count);
                        index
                    })
                    .collect();
                let mut proofs = client
                    .audit
                    .get_inclusion_proofs(pb::GetInclusionProofsRequest {
                        tree_size: record_count,
                        indexes,
                    })
                    .await?
                    .into_inner();
                while let Some(proof) = proofs.next().await {
                    if proof?.leaf_hash.len() != 32 {
                        return Err(tonic::Status::internal("a proof without its leaf hash"));
                    }
                    proved += 1;
                }
            }
            Ok::<_, tonic::Status>(proved)
        }));
    }
    let mut proved = 0;
    for task in tasks {
        proved += task.await??;
    }
    Ok(proved)
}

/// Inclusion proofs of random records from `clients` tasks for `seconds`;
/// the latency of each.
async fn prove_for(clients: &[Client], record_count: u64, seconds: u64) -> Result<Vec<Duration>> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (worker, client) in (0u64..).zip(clients) {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut index = worker.wrapping_mul(7_919) % record_count;
            while Instant::now() < until {
                index = next_index(index, record_count);
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
