//! Crash test: runs the real `fundtrail serve`, posts transfers from many
//! concurrent clients, kills the server with SIGKILL at a random moment,
//! restarts it on the same data directory and checks that nothing
//! acknowledged was lost: every acknowledged record is there, byte for byte,
//! under the seq it was acknowledged with; the log has no gap; the derived
//! state agrees with the log; and money is conserved. Several rounds, each
//! killed at a different moment, run on the same ledger.
//!
//! Set `FUNDTRAIL_CRASH_SEED` to replay a run's kill points and amounts; the
//! seed is printed at the start.

#![cfg(unix)]

#[path = "process/mod.rs"]
mod process;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fundtrail_api::pb;
use fundtrail_api::pb::request::Body;
use fundtrail_client::{Client, Signer};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;

const TREASURY: &str = "mof-treasury";
const TARGETS: usize = 8;
const CLIENTS: usize = 16;
/// Small, so that it runs out during the first round and later transfers
/// are paid from two sources (more than one leg).
const FIRST_APPROPRIATION_FEN: u64 = 1_000_000;
const SECOND_APPROPRIATION_FEN: u64 = 100_000_000_000;
const TRANSFER_FEN_MAX: u64 = 20_000;
/// One kill per window, so the kill points differ from round to round.
/// Measured from the round's first acknowledgement, so every round kills a
/// server that is busy committing, however slow the machine.
const KILL_WINDOWS_MS: [(u64, u64); 4] = [(50, 150), (150, 300), (300, 450), (450, 600)];
/// SIGKILL's signal number (9 on every unix).
const SIGKILL: i32 = 9;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn target(i: usize) -> String {
    format!("prog-{i}")
}

/// A running `fundtrail serve`, killed when dropped (also on test failure,
/// when its log is printed).
struct Server {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts `fundtrail serve` on `dir/data` and waits until it listens.
    async fn start(dir: &Path, name: &str) -> (Server, Client) {
        let log = dir.join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_fundtrail"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.join("data"))
            // The checker reads every acknowledged record back at once.
            .args(["--read-units-per-second", "1000000"])
            .args(["--read-units-burst", "1000000"])
            // Port 0: the system picks a free one and the server names it.
            .arg("--listen")
            .arg("127.0.0.1:0")
            // Warnings, plus the engine's recovery report (how many
            // journal records were replayed into the derived state).
            .env("RUST_LOG", "warn,fundtrail_server::engine=info")
            .env("NO_COLOR", "1")
            .env_remove("FUNDTRAIL_MAX_SKEW_MS")
            .env_remove("FUNDTRAIL_DATA_DIR")
            .env_remove("FUNDTRAIL_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("create stderr file"))
            .spawn()
            .expect("start `fundtrail serve`");
        let mut server = Server {
            child: Some(child),
            url: String::new(),
            log,
        };
        let stdout = dir.join(format!("{name}.stdout"));
        let child = server.child.as_mut().expect("child is running");
        match process::listening_url(child, &stdout, START_TIMEOUT) {
            Ok(url) => server.url = url,
            Err(e) => panic!(
                "`fundtrail serve` ({name}) did not come up: {e}; stderr:\n{}",
                server.log_text()
            ),
        }
        let root = fundtrail_client::Signer::from_key_file(&dir.join("data").join("root.key"))
            .expect("the root key");
        let client = Client::connect_as(&server.url, &root)
            .await
            .unwrap_or_else(|e| {
                panic!("`fundtrail serve` ({name}) listens but does not answer: {e}")
            });
        (server, client)
    }

    /// Kills the server with SIGKILL, which it cannot catch: no shutdown
    /// code runs, nothing is flushed. Fails if it had already died.
    fn sigkill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let early = child.try_wait().expect("poll the server");
        assert!(
            early.is_none(),
            "the server died on its own before the kill: {early:?}; see {}",
            self.log.display()
        );
        child.kill().expect("send SIGKILL");
        child.wait().expect("reap the killed server")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server stderr {} ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// A post the server acknowledged.
#[derive(Clone)]
struct Ack {
    seq: u64,
    signed: pb::SignedRequest,
    amount: u64,
    commit_time_ms: i64,
    effects: Option<pb::Effects>,
}

/// A post whose answer was lost: it may or may not be in the log.
struct Lost {
    signed: pb::SignedRequest,
    amount: u64,
    error: tonic::Status,
    at: Instant,
}

struct WorkerReport {
    worker: usize,
    acks: Vec<Ack>,
    lost: Option<Lost>,
}

fn transfer_body(to: String, amount: u64, label: &str) -> Body {
    Body::Transfer(pb::Transfer {
        from_account_id: TREASURY.into(),
        to_account_id: to,
        amount_fen: amount,
        document_no: "财农〔2026〕12号".into(),
        memo: label.into(),
        ..Default::default()
    })
}

/// Posts transfers one after another until a post fails (the server died).
/// Tells `first_ack` when its first post is acknowledged.
async fn worker(
    mut client: Client,
    signer: Signer,
    round: usize,
    worker: usize,
    seed: u64,
    first_ack: Arc<Notify>,
) -> WorkerReport {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acks = Vec::new();
    for n in 0.. {
        let amount = rng.gen_range(1..=TRANSFER_FEN_MAX);
        let body = transfer_body(
            target(rng.gen_range(0..TARGETS)),
            amount,
            &format!("round {round} worker {worker} post {n}"),
        );
        let signed = signer.sign(&client.request(body));
        match client.post_signed(signed.clone()).await {
            Ok(response) => {
                assert!(
                    !response.duplicate,
                    "a fresh request was answered as a duplicate of #{}",
                    response.seq
                );
                if acks.is_empty() {
                    first_ack.notify_one();
                }
                acks.push(Ack {
                    seq: response.seq,
                    signed,
                    amount,
                    commit_time_ms: response.commit_time_ms,
                    effects: response.effects,
                });
            }
            Err(error) => {
                return WorkerReport {
                    worker,
                    acks,
                    lost: Some(Lost {
                        signed,
                        amount,
                        error,
                        at: Instant::now(),
                    }),
                };
            }
        }
    }
    WorkerReport {
        worker,
        acks,
        lost: None,
    }
}

async fn ledger_info(client: &mut Client) -> pb::LedgerInfo {
    client
        .query
        .get_ledger(pb::GetLedgerRequest {})
        .await
        .expect("GetLedger")
        .into_inner()
}

async fn list_all_entries(client: &mut Client) -> Vec<pb::Entry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .list_entries(pb::ListEntriesRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                account_id: String::new(),
                ..Default::default()
            })
            .await
            .expect("ListEntries")
            .into_inner();
        assert!(
            page.entries.len() <= 1000,
            "a page of {} entries for page_size 1000",
            page.entries.len()
        );
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

async fn list_all_accounts(client: &mut Client) -> Vec<pb::Account> {
    let mut accounts = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .list_accounts(pb::ListAccountsRequest {
                page_size: 4,
                page_token: page_token.clone(),
                owner_org_id: String::new(),
            })
            .await
            .expect("ListAccounts")
            .into_inner();
        accounts.extend(page.accounts);
        if page.next_page_token.is_empty() {
            return accounts;
        }
        page_token = page.next_page_token;
    }
}

/// Concurrent GetEntry calls: small unary answers can be slow one at a time.
const GET_ENTRY_TASKS: usize = 32;

/// GetEntry for each of `acks`, from concurrent tasks.
async fn check_acks_by_get_entry(client: &Client, acks: &[Ack], context: &str) {
    let chunk = acks.len().div_ceil(GET_ENTRY_TASKS).max(1);
    let mut tasks = Vec::new();
    for part in acks.chunks(chunk) {
        let part = part.to_vec();
        let mut client = client.clone();
        let context = context.to_string();
        tasks.push(tokio::spawn(async move {
            for ack in part {
                let entry = client
                    .query
                    .get_entry(pb::GetEntryRequest { seq: ack.seq })
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "{context}: acknowledged record #{} is missing: {e}",
                            ack.seq
                        )
                    })
                    .into_inner();
                assert_eq!(
                    entry.seq, ack.seq,
                    "{context}: GetEntry({}) answered another seq",
                    ack.seq
                );
                assert_eq!(
                    entry.request.as_ref().map(|r| &r.payload),
                    Some(&ack.signed.payload),
                    "{context}: record #{} holds another payload than the acknowledged one",
                    ack.seq
                );
                assert_eq!(
                    entry.request.as_ref(),
                    Some(&ack.signed),
                    "{context}: record #{} is not the signed request sent",
                    ack.seq
                );
                assert_eq!(
                    entry.commit_time_ms, ack.commit_time_ms,
                    "{context}: record #{} commit time changed",
                    ack.seq
                );
                assert_eq!(
                    entry.effects, ack.effects,
                    "{context}: record #{} effects changed",
                    ack.seq
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("GetEntry checker");
    }
}

/// What the log says happened, recomputed from its entries.
#[derive(Default)]
struct Recomputed {
    /// Per account: per source seq, credits minus debits.
    balances: BTreeMap<String, BTreeMap<u64, i128>>,
    appropriated: u128,
    /// Amount of each appropriation, by its seq.
    sources: BTreeMap<u64, u64>,
    transfers: u64,
    transferred: u128,
    debits: u128,
    credits: u128,
}

/// Checks every entry on its own and folds its legs into balances.
fn recompute(entries: &[pb::Entry], context: &str) -> Recomputed {
    let mut out = Recomputed::default();
    for entry in entries {
        let seq = entry.seq;
        let record = pb::Record::decode(entry.record.as_slice())
            .unwrap_or_else(|e| panic!("{context}: record #{seq} bytes do not decode: {e}"));
        assert_eq!(
            record.seq, seq,
            "{context}: record bytes of #{seq} say seq {}",
            record.seq
        );
        assert_eq!(
            record.request, entry.request,
            "{context}: record #{seq} bytes hold another request than shown"
        );
        assert_eq!(
            record.effects, entry.effects,
            "{context}: record #{seq} bytes hold other effects than shown"
        );
        assert_eq!(
            record.commit_time_ms, entry.commit_time_ms,
            "{context}: record #{seq} commit time differs from its bytes"
        );
        let payload = &entry
            .request
            .as_ref()
            .unwrap_or_else(|| panic!("{context}: record #{seq} has no request"))
            .payload;
        let decoded = pb::Request::decode(payload.as_slice())
            .unwrap_or_else(|e| panic!("{context}: payload of #{seq} does not decode: {e}"));
        assert_eq!(
            entry.body.as_ref(),
            Some(&decoded),
            "{context}: shown body of #{seq} is not its payload decoded"
        );
        let legs = entry
            .effects
            .as_ref()
            .map(|e| e.legs.as_slice())
            .unwrap_or_default();
        match decoded.body.as_ref() {
            Some(Body::Transfer(t)) => {
                assert!(!legs.is_empty(), "{context}: transfer #{seq} moved nothing");
                let moved: u64 = legs.iter().map(|l| l.amount_fen).sum();
                assert_eq!(
                    moved, t.amount_fen,
                    "{context}: legs of transfer #{seq} add up to {moved}, the transfer is {}",
                    t.amount_fen
                );
                for leg in legs {
                    assert_eq!(
                        leg.from_account_id, t.from_account_id,
                        "{context}: a leg of #{seq} debits the wrong account"
                    );
                    assert_eq!(
                        leg.to_account_id, t.to_account_id,
                        "{context}: a leg of #{seq} credits the wrong account"
                    );
                    assert!(leg.amount_fen > 0, "{context}: an empty leg in #{seq}");
                }
                out.transfers += 1;
                out.transferred += u128::from(t.amount_fen);
            }
            Some(Body::Appropriation(a)) => {
                assert_eq!(
                    legs.len(),
                    1,
                    "{context}: appropriation #{seq} has {} legs",
                    legs.len()
                );
                let leg = &legs[0];
                assert!(
                    leg.from_account_id.is_empty(),
                    "{context}: appropriation #{seq} debits {}",
                    leg.from_account_id
                );
                assert_eq!(
                    leg.to_account_id, a.account_id,
                    "{context}: appropriation #{seq} credits the wrong account"
                );
                assert_eq!(
                    leg.amount_fen, a.amount_fen,
                    "{context}: appropriation #{seq} credits the wrong amount"
                );
                assert_eq!(
                    leg.source_seq, seq,
                    "{context}: appropriation #{seq} names source {}",
                    leg.source_seq
                );
                out.appropriated += u128::from(a.amount_fen);
                out.sources.insert(seq, a.amount_fen);
            }
            _ => assert!(
                legs.is_empty(),
                "{context}: record #{seq} is no movement but has legs"
            ),
        }
        for leg in legs {
            assert!(
                !leg.to_account_id.is_empty(),
                "{context}: money left the ledger in #{seq}"
            );
            let amount = i128::from(leg.amount_fen);
            if !leg.from_account_id.is_empty() {
                *out.balances
                    .entry(leg.from_account_id.clone())
                    .or_default()
                    .entry(leg.source_seq)
                    .or_default() -= amount;
                out.debits += u128::from(leg.amount_fen);
            }
            *out.balances
                .entry(leg.to_account_id.clone())
                .or_default()
                .entry(leg.source_seq)
                .or_default() += amount;
            out.credits += u128::from(leg.amount_fen);
        }
    }
    out
}

/// Everything the restarted server must show after a crash.
struct Expect<'a> {
    context: &'a str,
    ledger_id: &'a str,
    /// Records before the first transfer of the test.
    setup_count: u64,
    /// Every transfer payload ever sent, acknowledged or not, with its amount.
    sent: &'a HashMap<Vec<u8>, u64>,
    /// Every acknowledged post so far: checked in the full listing.
    acks: &'a [Ack],
    /// Also read back one by one with GetEntry: the posts acknowledged
    /// since the previous check (each round), or all of them (at the end).
    get_entry_acks: &'a [Ack],
}

/// Checks the restarted ledger; returns its entries.
async fn check_ledger(client: &mut Client, expect: &Expect<'_>) -> Vec<pb::Entry> {
    let context = expect.context;
    let info = ledger_info(client).await;
    assert_eq!(
        info.ledger_id, expect.ledger_id,
        "{context}: another ledger came back"
    );
    assert!(
        info.writable,
        "{context}: the restarted ledger refuses writes: {}",
        info.read_only_reason
    );
    assert!(
        info.read_only_reason.is_empty(),
        "{context}: writable but gives a reason: {}",
        info.read_only_reason
    );
    let max_acked = expect.acks.iter().map(|a| a.seq).max().unwrap_or(0);
    assert!(
        info.record_count > max_acked,
        "{context}: the ledger holds {} records, but #{max_acked} was acknowledged",
        info.record_count
    );

    // The whole log, in order, without gap or duplicate.
    let entries = list_all_entries(client).await;
    assert_eq!(
        entries.len() as u64,
        info.record_count,
        "{context}: ListEntries gave {} entries for {} records",
        entries.len(),
        info.record_count
    );
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(
            entry.seq, i as u64,
            "{context}: entry {i} of the listing is #{} (gap or duplicate)",
            entry.seq
        );
    }

    // Every acknowledged post, byte for byte, under its seq.
    for ack in expect.acks {
        let entry = &entries[ack.seq as usize];
        assert_eq!(
            entry.request.as_ref(),
            Some(&ack.signed),
            "{context}: acknowledged #{} is not in the log as sent",
            ack.seq
        );
        assert_eq!(
            entry.commit_time_ms, ack.commit_time_ms,
            "{context}: acknowledged #{} changed commit time",
            ack.seq
        );
        assert_eq!(
            entry.effects, ack.effects,
            "{context}: acknowledged #{} changed effects",
            ack.seq
        );
    }
    check_acks_by_get_entry(client, expect.get_entry_acks, context).await;

    // Nothing in the log that nobody sent.
    for entry in &entries[expect.setup_count as usize..] {
        let payload = &entry.request.as_ref().expect("checked above").payload;
        assert!(
            expect.sent.contains_key(payload),
            "{context}: record #{} is no request this test sent",
            entry.seq
        );
    }

    // The derived state agrees with the log, and money is conserved.
    let log = recompute(&entries, context);
    assert_eq!(
        log.debits + log.appropriated,
        log.credits,
        "{context}: debits {} + appropriations {} != credits {}",
        log.debits,
        log.appropriated,
        log.credits
    );
    assert_eq!(
        log.debits, log.transferred,
        "{context}: transfer legs debit {}, transfers say {}",
        log.debits, log.transferred
    );
    assert_eq!(
        log.appropriated,
        u128::from(FIRST_APPROPRIATION_FEN + SECOND_APPROPRIATION_FEN),
        "{context}: appropriations in the log"
    );
    let accounts = list_all_accounts(client).await;
    assert_eq!(
        accounts.len(),
        1 + TARGETS,
        "{context}: accounts listed: {:?}",
        accounts.iter().map(|a| &a.account_id).collect::<Vec<_>>()
    );
    let mut total: u128 = 0;
    let mut by_source: BTreeMap<u64, u128> = BTreeMap::new();
    for account in &accounts {
        let id = &account.account_id;
        let by_source_state: u128 = account
            .balances
            .iter()
            .map(|b| u128::from(b.amount_fen))
            .sum();
        assert_eq!(
            by_source_state,
            u128::from(account.balance_fen),
            "{context}: {id}'s sources do not add up to its balance"
        );
        let from_log: BTreeMap<u64, i128> = log
            .balances
            .get(id)
            .map(|m| {
                m.iter()
                    .filter(|(_, &v)| v != 0)
                    .map(|(&k, &v)| (k, v))
                    .collect()
            })
            .unwrap_or_default();
        let from_state: BTreeMap<u64, i128> = account
            .balances
            .iter()
            .map(|b| (b.source_seq, i128::from(b.amount_fen)))
            .collect();
        assert_eq!(
            from_state, from_log,
            "{context}: {id}'s balance by source differs from what the log says"
        );
        for b in &account.balances {
            *by_source.entry(b.source_seq).or_default() += u128::from(b.amount_fen);
        }
        total += u128::from(account.balance_fen);
    }
    assert_eq!(
        total, log.appropriated,
        "{context}: the accounts hold {total} fen, {} fen were appropriated",
        log.appropriated
    );
    let expected_sources: BTreeMap<u64, u128> = log
        .sources
        .iter()
        .map(|(&k, &v)| (k, u128::from(v)))
        .collect();
    assert_eq!(
        by_source, expected_sources,
        "{context}: some source's money was created or lost"
    );
    let treasury = accounts
        .iter()
        .find(|a| a.account_id == TREASURY)
        .expect("treasury listed");
    let targets: u128 = accounts
        .iter()
        .filter(|a| a.account_id != TREASURY)
        .map(|a| u128::from(a.balance_fen))
        .sum();
    assert_eq!(
        targets, log.transferred,
        "{context}: targets hold {targets} fen, transfers in the log moved {}",
        log.transferred
    );
    assert_eq!(
        u128::from(treasury.balance_fen) + targets,
        log.appropriated,
        "{context}: treasury {} + targets {targets} != appropriated {}",
        treasury.balance_fen,
        log.appropriated
    );
    entries
}

/// How many records the restarted engine says it replayed into the derived
/// state (for the report only; 0 when the state was up to date).
fn replayed_records(log: &str) -> u64 {
    log.lines()
        .filter(|line| line.contains("replayed journal into state"))
        .filter_map(|line| {
            line.split_once("replayed=")
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

async fn setup(client: &mut Client, signer: &Signer) {
    let mut bodies = vec![Body::OpenAccount(pb::OpenAccount {
        account_id: TREASURY.into(),
        kind: pb::AccountKind::Treasury as i32,
        name: "中央国库".into(),
        ..Default::default()
    })];
    for i in 0..TARGETS {
        bodies.push(Body::OpenAccount(pb::OpenAccount {
            account_id: target(i),
            kind: pb::AccountKind::Programme as i32,
            name: format!("衔接资金 {i}"),
            programme_code: "2130599".into(),
            ..Default::default()
        }));
    }
    for (amount, document_no) in [
        (FIRST_APPROPRIATION_FEN, "财农〔2026〕12号"),
        (SECOND_APPROPRIATION_FEN, "财农〔2026〕13号"),
    ] {
        bodies.push(Body::Appropriation(pb::Appropriation {
            account_id: TREASURY.into(),
            amount_fen: amount,
            programme_code: "2130599".into(),
            fiscal_year: 2026,
            document_no: document_no.into(),
            ..Default::default()
        }));
    }
    for body in bodies {
        client.post(signer, body).await.expect("setup post");
    }
}

struct RoundStats {
    first_ack_ms: u128,
    delay_ms: u64,
    acks: usize,
    in_flight: usize,
    in_flight_durable: usize,
    record_count: u64,
    torn_tail_cut: bool,
    replayed: u64,
    restart_ms: u128,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_sigkill() {
    let test_started = Instant::now();
    let seed: u64 = std::env::var("FUNDTRAIL_CRASH_SEED")
        .ok()
        .map(|s| s.parse().expect("FUNDTRAIL_CRASH_SEED is a number"))
        .unwrap_or_else(rand::random);
    println!("crash test seed {seed} (FUNDTRAIL_CRASH_SEED={seed} replays the kill points)");
    let mut rng = StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, mut client) = Server::start(dir.path(), "serve-0").await;
    let signer = Signer::from_key_file(&dir.path().join("data").join("root.key"))
        .expect("root key written by serve");
    let ledger_id = client.ledger_id().to_string();
    setup(&mut client, &signer).await;
    let setup_count = ledger_info(&mut client).await.record_count;
    assert_eq!(
        setup_count,
        1 + 1 + TARGETS as u64 + 2,
        "genesis, accounts and appropriations"
    );

    let mut sent: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut acks: Vec<Ack> = Vec::new();
    let mut stats = Vec::new();

    for (round, &(low, high)) in KILL_WINDOWS_MS.iter().enumerate() {
        let delay_ms = rng.gen_range(low..=high);
        let context = format!(
            "round {round} (seed {seed}, killed {delay_ms} ms after the first acknowledgement)"
        );
        let count_before = ledger_info(&mut client).await.record_count;

        let first_ack = Arc::new(Notify::new());
        let posting = Instant::now();
        let mut workers = Vec::new();
        for w in 0..CLIENTS {
            let worker_seed = rng.gen();
            workers.push(tokio::spawn(worker(
                client.clone(),
                signer.clone(),
                round,
                w,
                worker_seed,
                first_ack.clone(),
            )));
        }
        tokio::time::timeout(START_TIMEOUT, first_ack.notified())
            .await
            .unwrap_or_else(|_| panic!("{context}: no post acknowledged within {START_TIMEOUT:?}"));
        let first_ack_ms = posting.elapsed().as_millis();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let killed_at = Instant::now();
        let status = server.sigkill();
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "{context}: the server did not die of SIGKILL: {status}"
        );
        drop(server);

        let mut round_acks = Vec::new();
        let mut lost = Vec::new();
        for handle in workers {
            let report = tokio::time::timeout(WORKER_STOP_TIMEOUT, handle)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{context}: a client kept posting {WORKER_STOP_TIMEOUT:?} after the kill"
                    )
                })
                .expect("worker task");
            let w = report.worker;
            for pair in report.acks.windows(2) {
                assert!(
                    pair[0].seq < pair[1].seq,
                    "{context}: worker {w} got #{} after #{}",
                    pair[1].seq,
                    pair[0].seq
                );
            }
            let failure = report
                .lost
                .unwrap_or_else(|| panic!("{context}: worker {w} stopped without an error"));
            assert!(
                failure.at >= killed_at,
                "{context}: worker {w}'s post failed before the kill: {}",
                failure.error
            );
            for ack in &report.acks {
                sent.insert(ack.signed.payload.clone(), ack.amount);
            }
            sent.insert(failure.signed.payload.clone(), failure.amount);
            round_acks.extend(report.acks);
            lost.push(failure);
        }
        let mut seen: HashSet<u64> = acks.iter().map(|a| a.seq).collect();
        for ack in &round_acks {
            assert!(
                ack.seq >= count_before,
                "{context}: a new post was acknowledged as old record #{}",
                ack.seq
            );
            assert!(
                seen.insert(ack.seq),
                "{context}: #{} was acknowledged twice",
                ack.seq
            );
        }
        assert!(
            !round_acks.is_empty(),
            "{context}: no post was acknowledged before the kill"
        );
        let acks_this_round = round_acks.len();
        acks.extend(round_acks.iter().cloned());

        // Restart on the same data directory.
        let restart = Instant::now();
        let (new_server, new_client) =
            Server::start(dir.path(), &format!("serve-{}", round + 1)).await;
        let restart_ms = restart.elapsed().as_millis();
        server = new_server;
        client = new_client;
        let restart_log = server.log_text();
        let torn_tail_cut = restart_log.contains("cutting torn journal tail");
        let replayed = replayed_records(&restart_log);

        let entries = check_ledger(
            &mut client,
            &Expect {
                context: &context,
                ledger_id: &ledger_id,
                setup_count,
                sent: &sent,
                acks: &acks,
                get_entry_acks: &round_acks,
            },
        )
        .await;
        let record_count = entries.len() as u64;
        let in_log: HashMap<&[u8], u64> = entries
            .iter()
            .map(|e| {
                (
                    e.request.as_ref().expect("checked").payload.as_slice(),
                    e.seq,
                )
            })
            .collect();

        // A new post continues the log right after its last record.
        let probe = client
            .post(
                &signer,
                transfer_body(target(0), 1, &format!("round {round} probe")),
            )
            .await
            .unwrap_or_else(|e| panic!("{context}: the restarted server refused a post: {e}"));
        assert_eq!(
            probe.seq, record_count,
            "{context}: the first post after restart is #{}",
            probe.seq
        );
        assert!(
            !probe.duplicate,
            "{context}: the probe was taken for a duplicate"
        );
        let probe_entry = client
            .query
            .get_entry(pb::GetEntryRequest { seq: probe.seq })
            .await
            .expect("probe entry")
            .into_inner();
        assert_eq!(probe_entry.seq, record_count);
        sent.insert(
            probe_entry
                .request
                .as_ref()
                .expect("probe request")
                .payload
                .clone(),
            1,
        );
        acks.push(Ack {
            seq: probe.seq,
            signed: probe_entry.request.clone().expect("probe request"),
            amount: 1,
            commit_time_ms: probe.commit_time_ms,
            effects: probe.effects.clone(),
        });

        // Retrying an acknowledged post answers with its first result.
        for ack in round_acks.iter().rev().take(CLIENTS) {
            let again = client
                .post_signed(ack.signed.clone())
                .await
                .unwrap_or_else(|e| panic!("{context}: retry of #{}: {e}", ack.seq));
            assert!(
                again.duplicate,
                "{context}: retry of acknowledged #{} was recorded again as #{}",
                ack.seq, again.seq
            );
            assert_eq!(
                again.seq, ack.seq,
                "{context}: retry of #{} answered another seq",
                ack.seq
            );
            assert_eq!(
                again.commit_time_ms, ack.commit_time_ms,
                "{context}: retry of #{} answered another commit time",
                ack.seq
            );
            assert_eq!(
                again.effects, ack.effects,
                "{context}: retry of #{} answered other effects",
                ack.seq
            );
        }

        // Retrying a post whose answer was lost: found if it made it to the
        // log before the kill, recorded now otherwise; never twice.
        // Retried concurrently, as the clients would.
        let retries: Vec<_> = lost
            .iter()
            .map(|failure| {
                let mut client = client.clone();
                let signed = failure.signed.clone();
                tokio::spawn(async move { client.post_signed(signed).await })
            })
            .collect();
        let mut in_flight_durable = 0;
        let mut new_seqs = Vec::new();
        for (failure, retry) in lost.iter().zip(retries) {
            let again = retry.await.expect("retry task").unwrap_or_else(|e| {
                panic!(
                    "{context}: retry of a post lost in the crash ({}): {e}",
                    failure.error
                )
            });
            match in_log.get(failure.signed.payload.as_slice()) {
                Some(&seq) => {
                    in_flight_durable += 1;
                    assert!(
                        again.duplicate,
                        "{context}: a post already in the log as #{seq} was recorded again as #{}",
                        again.seq
                    );
                    assert_eq!(
                        again.seq, seq,
                        "{context}: a post in the log as #{seq} was answered as #{}",
                        again.seq
                    );
                }
                None => {
                    assert!(
                        !again.duplicate,
                        "{context}: a post not in the log was answered as a duplicate of #{}",
                        again.seq
                    );
                    new_seqs.push(again.seq);
                }
            }
            acks.push(Ack {
                seq: again.seq,
                signed: failure.signed.clone(),
                amount: failure.amount,
                commit_time_ms: again.commit_time_ms,
                effects: again.effects.clone(),
            });
        }
        new_seqs.sort_unstable();
        let expected_new: Vec<u64> =
            (record_count + 1..record_count + 1 + new_seqs.len() as u64).collect();
        assert_eq!(
            new_seqs, expected_new,
            "{context}: seqs of the retried posts that were not in the log"
        );
        let count_after = ledger_info(&mut client).await.record_count;
        assert_eq!(
            count_after,
            record_count + 1 + new_seqs.len() as u64,
            "{context}: record count after the probe and retries"
        );

        stats.push(RoundStats {
            first_ack_ms,
            delay_ms,
            acks: acks_this_round,
            in_flight: lost.len(),
            in_flight_durable,
            record_count,
            torn_tail_cut,
            replayed,
            restart_ms,
        });
    }

    // The last state, once more, including the retries and probes.
    check_ledger(
        &mut client,
        &Expect {
            context: &format!("final check (seed {seed})"),
            ledger_id: &ledger_id,
            setup_count,
            sent: &sent,
            acks: &acks,
            get_entry_acks: &acks,
        },
    )
    .await;
    drop(server);

    for (round, s) in stats.iter().enumerate() {
        println!(
            "round {round}: first ack after {} ms, killed {} ms later; {} acknowledged; {} in flight, {} of them durable anyway; \
             {} records after restart, {} replayed from the journal into the state; torn tail cut: {}; restart took {} ms",
            s.first_ack_ms,
            s.delay_ms,
            s.acks,
            s.in_flight,
            s.in_flight_durable,
            s.record_count,
            s.replayed,
            s.torn_tail_cut,
            s.restart_ms
        );
    }
    println!("crash test took {:?}", test_started.elapsed());
}
