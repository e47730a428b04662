//! `fundtrail`: run the ledger service, create ledgers and keys, post signed
//! requests and read the ledger. Thin: the work lives in `crates/`.

mod bench;
mod config;
mod csvexport;
mod demo;
mod logcmd;
mod notice;
mod output;
mod post;
mod reconcile;
mod tracecmd;

use fundtrail_core::rules::Rules;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use fundtrail_api::pb;
use fundtrail_client::{Client, ConnectOptions, Session, Signer, TlsFiles};
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::limits::{
    READ_COST_BURST_DEFAULT, READ_COST_MAX, READ_COST_PER_SECOND_DEFAULT, SIGNING_SKEW_MS_DEFAULT,
};
use fundtrail_server::engine::EngineConfig;
use fundtrail_server::follow::{NodeUpstream, Upstream};
use fundtrail_server::genesis::{self, RootOrg};

#[derive(Parser)]
#[command(
    name = "fundtrail",
    version,
    about = "A signed, append-only, Merkle-verifiable ledger of government fund flows",
    long_about = "fundtrail records fund flows — appropriations, transfers down the levels of government, \
and payments to registered households — as Ed25519-signed records in an append-only log, \
and answers where the money went.\n\nStart a service with `fundtrail serve`; every other \
command talks to it over gRPC (--server) or works on files."
)]
struct Cli {
    /// How the service writes its log lines (to stderr): `text` for people,
    /// `json` (one object per line) for log collectors.
    #[arg(long, global = true, env = "FUNDTRAIL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Clone)]
struct DataDir {
    /// Directory holding the journal, derived state and key files.
    #[arg(long, env = "FUNDTRAIL_DATA_DIR", default_value = "./fundtrail-data")]
    data_dir: PathBuf,
    /// Keep the journal in PostgreSQL, at this connection string
    /// (docs/postgres.md), instead of in DATA_DIR/journal.log. The data
    /// directory still holds the keys, checkpoints and derived state.
    #[arg(long, env = "FUNDTRAIL_JOURNAL", value_name = "POSTGRES_URL")]
    journal: Option<String>,
    /// With --journal or --follow-db: speak TLS to the database and check its certificate
    /// (chain and host name) against the CA certificates in this PEM file,
    /// as libpq's sslrootcert with sslmode=verify-full. Add sslmode=require
    /// to the connection string to refuse a database without TLS.
    #[arg(long, env = "PGSSLROOTCERT", value_name = "PEM")]
    journal_ca: Option<PathBuf>,
}

impl DataDir {
    /// Sets up TLS to the database, if asked; before any connection.
    fn connect_securely(&self) -> Result<()> {
        if let Some(ca) = &self.journal_ca {
            fundtrail_pg::use_root_certificates(ca)?;
        }
        Ok(())
    }

    fn journal_at(&self) -> genesis::JournalAt<'_> {
        match &self.journal {
            Some(url) => genesis::JournalAt::Postgres(url),
            None => genesis::JournalAt::File,
        }
    }

    /// Creates the ledger under `rules`: its keys in the data directory,
    /// its genesis record in the journal.
    fn init(&self, root: &RootArgs, rules: Rules) -> Result<genesis::Genesis> {
        genesis::init_at(
            &self.data_dir,
            self.journal_at(),
            &root_org(root),
            rules,
            &fundtrail_core::clock::SystemClock,
        )
        .map_err(anyhow::Error::msg)
    }
}

#[derive(Args, Clone)]
struct Server {
    /// URL of the fundtrail service.
    #[arg(
        long,
        env = "FUNDTRAIL_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Key file of the org making the call: it signs every read
    /// (docs/read-signature.md) and every posted request.
    #[arg(long, env = "FUNDTRAIL_KEY")]
    key: Option<PathBuf>,
    /// PEM file of the CA that signed the server's TLS certificate
    /// (https:// URLs).
    #[arg(long, env = "FUNDTRAIL_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require mTLS.
    #[arg(long, env = "FUNDTRAIL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, env = "FUNDTRAIL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Answer reads only once the ledger's derived state holds record SEQ
    /// (for example the seq an earlier `fundtrail post` printed), waiting
    /// for it if need be.
    #[arg(long, env = "FUNDTRAIL_MIN_SEQ", value_name = "SEQ")]
    min_seq: Option<u64>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl Server {
    /// The key file given with --key, which this command needs.
    fn key_file(&self) -> Result<&Path> {
        self.key
            .as_deref()
            .context("this command signs with an org's key: give --key FILE (or FUNDTRAIL_KEY)")
    }
}

#[derive(Args, Clone)]
struct RootArgs {
    /// Id of the root org created at genesis.
    #[arg(long, default_value = "mof")]
    root_org_id: String,
    /// Name of the root org.
    #[arg(long, default_value = "中华人民共和国财政部")]
    root_org_name: String,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new ledger: the log key, the root org's key and the genesis
    /// record. Key files are written readable by their owner only.
    Init {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        root: RootArgs,
    },
    /// Run the gRPC service (Ledger, Query, health, reflection). Creates the
    /// ledger first when the data directory holds none.
    Serve {
        #[command(flatten)]
        data: DataDir,
        #[command(flatten)]
        root: RootArgs,
        /// Read any of these flags from a TOML file, by their long names
        /// (`listen = "127.0.0.1:50051"`); flags and environment variables
        /// given override it (docs/operations.md).
        #[arg(long, env = "FUNDTRAIL_CONFIG", value_name = "TOML")]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, env = "FUNDTRAIL_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Also serve HTTP here: `/metrics` in the Prometheus text format
        /// (docs/operations.md). Loopback addresses only. Off by default.
        #[arg(long, env = "FUNDTRAIL_HTTP", value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Largest accepted distance between a request's signing time and the
        /// server's clock, in milliseconds.
        #[arg(long, env = "FUNDTRAIL_MAX_SKEW_MS", default_value_t = SIGNING_SKEW_MS_DEFAULT)]
        max_skew_ms: u64,
        /// Seed a deterministic national demo scenario (三区三州 provinces,
        /// counties, projects, 10,000 households, months of history) into an
        /// empty data directory; a directory holding a ledger is served unchanged.
        #[arg(long)]
        demo: bool,
        /// Sign a checkpoint at least every this many records…
        #[arg(
            long,
            env = "FUNDTRAIL_CHECKPOINT_EVERY_RECORDS",
            default_value_t = 1_000
        )]
        checkpoint_every_records: u64,
        /// …and at least every this many milliseconds while records arrive.
        #[arg(long, env = "FUNDTRAIL_CHECKPOINT_EVERY_MS", default_value_t = 1_000)]
        checkpoint_every_ms: u64,
        /// With --journal: hold the database's writer lease this long at a
        /// time; a writer that stops is replaced after at most this long.
        /// 0 writes without the lease: two writers then take turns, each
        /// catching up when the other wrote first, one mostly waiting
        /// (docs/postgres.md).
        #[arg(long, env = "FUNDTRAIL_LEASE_MS", default_value_t = fundtrail_server::engine::JOURNAL_LEASE_MS_DEFAULT, requires = "journal")]
        lease_ms: u64,
        /// Run as a verifying replica of the ledger kept in this PostgreSQL
        /// database (a standby's, usually): it replays and checks every
        /// record, adopts each checkpoint the log signed once its own tree
        /// has it, serves reads at the newest, and takes no writes
        /// (docs/postgres.md). DATA_DIR holds only its own state and key.
        #[arg(long, env = "FUNDTRAIL_FOLLOW_DB", value_name = "POSTGRES_URL", conflicts_with_all = ["journal", "demo"])]
        follow_db: Option<String>,
        /// Run as a verifying replica of another fundtrail node (a writer or
        /// a replica), over gRPC: it exports the log with --follow-key,
        /// checks every record against the log's signed checkpoints,
        /// replays it, and keeps the records it verified in its own
        /// journal (docs/deploy.md). DATA_DIR holds only the replica's files.
        #[arg(long, env = "FUNDTRAIL_FOLLOW", value_name = "URL", conflicts_with_all = ["journal", "demo", "follow_db"], requires = "follow_key")]
        follow: Option<String>,
        /// With --follow: the key file of an org that may export the whole
        /// log (a MIRROR org, the root org, or an audit office at 000000).
        #[arg(
            long,
            env = "FUNDTRAIL_FOLLOW_KEY",
            value_name = "KEY_FILE",
            requires = "follow"
        )]
        follow_key: Option<PathBuf>,
        /// With --follow or --follow-db: the log's verifier key (as
        /// `fundtrail log-key` prints it) the replayed genesis must name;
        /// without it, the first genesis seen is trusted.
        #[arg(long, env = "FUNDTRAIL_PIN_LOG_KEY", value_name = "VKEY")]
        pin_log_key: Option<String>,
        /// With --follow: the CA certificate (PEM) that signed the upstream's.
        #[arg(
            long,
            env = "FUNDTRAIL_FOLLOW_CA",
            value_name = "PEM",
            requires = "follow"
        )]
        follow_ca: Option<PathBuf>,
        /// With --follow: a client certificate (PEM) for an upstream that requires one…
        #[arg(long, value_name = "PEM", requires = "follow_cert_key")]
        follow_cert: Option<PathBuf>,
        /// …and its private key (PEM).
        #[arg(long, value_name = "PEM", requires = "follow_cert")]
        follow_cert_key: Option<PathBuf>,
        /// With --demo: multiply the households (and their payments) by this.
        #[arg(long, default_value_t = 1, requires = "demo")]
        demo_scale: u32,
        /// PEM certificate chain to serve TLS with.
        #[arg(long, env = "FUNDTRAIL_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of the TLS certificate.
        #[arg(long, env = "FUNDTRAIL_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// PEM CA certificate: clients must present a certificate it signed (mTLS).
        #[arg(long, env = "FUNDTRAIL_CLIENT_CA", requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// Serve plaintext on a non-loopback address (only behind a TLS proxy).
        #[arg(long)]
        insecure_plaintext: bool,
        /// Read allowance of each key (and each address for unsigned public
        /// calls), in cost units per second; a GetEntry costs 1, a trace 50.
        #[arg(long, env = "FUNDTRAIL_READ_UNITS_PER_SECOND", default_value_t = READ_COST_PER_SECOND_DEFAULT)]
        read_units_per_second: u32,
        /// Unused allowance a key may save up, in cost units (at least 100,
        /// the dearest call).
        #[arg(long, env = "FUNDTRAIL_READ_UNITS_BURST", default_value_t = READ_COST_BURST_DEFAULT)]
        read_units_burst: u32,
    },
    /// Generate an Ed25519 key pair into a new key file (mode 0600) and print
    /// its key id and public key, to register with `post register-org` or
    /// `post add-key`.
    Keygen {
        /// Where to write the key file; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
        /// A note on what the key is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Sign a request with an org key and post it.
    Post(post::PostArgs),
    /// Show one record: what was signed, by which key, and what it did.
    Entry {
        #[command(flatten)]
        server: Server,
        /// The record's sequence number.
        seq: u64,
    },
    /// List records in sequence order.
    Entries {
        #[command(flatten)]
        server: Server,
        /// Only records that moved money in or out of this account.
        #[arg(long)]
        account: Option<String>,
        /// Only records signed by this org.
        #[arg(long, default_value = "")]
        org: String,
        /// Only records of this kind, e.g. Disbursement.
        #[arg(long, default_value = "")]
        kind: String,
        /// Only records that carried money of this source (appropriation seq).
        #[arg(long)]
        source: Option<u64>,
        /// Only records citing this 文号.
        #[arg(long, default_value = "")]
        document: String,
        /// Records per page (at most 1000).
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Continue from a previous page.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show an account and its balance by source.
    Account {
        #[command(flatten)]
        server: Server,
        account_id: String,
        /// The balance by business date (记账日期, YYYY-MM-DD, CST): only
        /// records dated on or before it count.
        #[arg(long, default_value = "")]
        as_of: String,
    },
    /// List accounts.
    Accounts {
        #[command(flatten)]
        server: Server,
        /// Only accounts of this org.
        #[arg(long, default_value = "")]
        owner: String,
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show an org and its keys.
    Org {
        #[command(flatten)]
        server: Server,
        org_id: String,
    },
    /// Show the ledger's id and size.
    Ledger {
        #[command(flatten)]
        server: Server,
    },
    /// Measure write throughput and latency against a fresh in-process
    /// server on a temporary data directory.
    Bench(bench::BenchArgs),
    /// Follow the money: forward from an appropriation or record, or back
    /// from a household, account or record.
    #[command(subcommand)]
    Trace(tracecmd::TraceCommand),
    /// Every payment a household received, with its status history.
    Statement {
        #[command(flatten)]
        server: Server,
        /// The household's account id.
        household: String,
    },
    /// Money not yet paid out, by account and age.
    Idle(tracecmd::IdleArgs),
    /// Findings to follow up: duplicate or ineligible household payments,
    /// households of another county, unannounced allocations, idle money.
    Anomalies {
        #[command(flatten)]
        server: Server,
        /// Money idle at least this many days is a finding.
        #[arg(long, default_value_t = 365)]
        idle_days: u32,
        /// A household payment the bank has not confirmed (or refused) this
        /// many days after it was made is a finding. 0: not checked.
        #[arg(long, default_value_t = 0)]
        unconfirmed_days: u32,
    },
    /// Breaches of the programme rules in force and of performance
    /// evaluations, each with its records (docs/compliance.md).
    Compliance {
        #[command(flatten)]
        server: Server,
        /// Only this programme.
        #[arg(long, default_value = "")]
        programme: String,
        /// Only accounts of orgs whose division code starts with this.
        #[arg(long, default_value = "")]
        division: String,
        /// Only accounts of orgs of this level: central, province,
        /// prefecture or county.
        #[arg(long, default_value = "")]
        level: String,
        /// Only breaches with a record in this period: YYYY or YYYY-MM.
        #[arg(long, default_value = "")]
        period: String,
    },
    /// Follow the ledger as it is written: committed entries from --from,
    /// then new ones as they commit, and each new signed checkpoint
    /// (Query.Watch). Resumes by itself after a disconnect, from the seq
    /// after the last entry printed.
    Tail {
        #[command(flatten)]
        server: Server,
        /// The first record: 0 for the whole ledger; by default only what
        /// commits from now.
        #[arg(long)]
        from: Option<u64>,
        /// Only entries moving money in or out of this account (repeatable).
        #[arg(long)]
        account: Vec<String>,
        /// Only entries signed by this org.
        #[arg(long, default_value = "")]
        org: String,
        /// Only entries of this kind, e.g. Disbursement (repeatable).
        #[arg(long)]
        kind: Vec<String>,
    },
    /// Match a bank's 一卡通 result file against the payments a county
    /// recorded: credited, failed at the bank, no payment, amount or date
    /// mismatch, a bank reference twice, and payments no line reports
    /// (file format in docs/reconcile.md).
    Reconcile(reconcile::ReconcileArgs),
    /// Print the log's verifier key (name+key id+base64 key) to pin once.
    LogKey {
        #[command(flatten)]
        server: Server,
    },
    /// Print the newest signed checkpoint (a C2SP signed note), with cosignatures.
    Checkpoint {
        #[command(flatten)]
        server: Server,
        /// A specific checkpoint by its tree size.
        #[arg(long, default_value_t = 0)]
        tree_size: u64,
    },
    /// Fetch an inclusion or consistency proof as JSON, for `fundtrail verify`.
    #[command(subcommand)]
    Prove(logcmd::ProveCommand),
    /// Check a proof offline against a pinned log key and signed checkpoints.
    #[command(subcommand)]
    Verify(logcmd::VerifyCommand),
    /// Export records (the exact leaf bytes) to a file for `fundtrail audit`.
    Export {
        #[command(flatten)]
        server: Server,
        /// The file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// One past the last record; 0 means up to the newest.
        #[arg(long, default_value_t = 0)]
        end: u64,
    },
    /// Replay an export from genesis: check every signature and key's
    /// authority, recompute the Merkle root against a signed checkpoint and
    /// every balance, and print a summary or the first record that fails.
    Audit(fundtrail_audit::AuditArgs),
    /// Act as a witness: cosign the log's checkpoints, refusing any that is
    /// not consistent with the last one cosigned.
    Witness(logcmd::WitnessArgs),
    /// Ask the server to re-check its whole journal against the tree, the
    /// signed checkpoints and its derived state.
    Scrub {
        #[command(flatten)]
        server: Server,
    },
    /// Who read what: the access-log entries about one household, or of one
    /// org's reads, each checked against a signed access checkpoint.
    /// Auditors and administrators, within their jurisdiction.
    AccessLog(logcmd::AccessLogArgs),
    /// A report as CSV an office opens in a spreadsheet (UTF-8 with BOM,
    /// Chinese header, yuan with two decimals; columns in docs/exports.md):
    /// entries, payments, idle, anomalies or projects.
    ExportCsv(csvexport::ExportCsvArgs),
    /// The 公告公示 sheet of a county or one of its villages: announced
    /// projects and payments to households (registry references masked),
    /// as a printable HTML page or as CSV.
    PublicNotice(notice::NoticeArgs),
}

fn main() -> Result<()> {
    // Die quietly on a closed pipe (`fundtrail entries | head`), as Unix tools do.
    #[cfg(unix)]
    // SAFETY: resetting SIGPIPE to its default action before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Parsed once to answer --help and refuse bad flags, then again with
    // the config file's settings (serve --config).
    Cli::parse();
    let mut command = Cli::command();
    command.build();
    let cli = Cli::parse_from(config::with_config_file(
        command,
        std::env::args_os().collect(),
    )?);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Err(error) = runtime.block_on(run(cli.command)) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
    Ok(())
}

fn root_org(root: &RootArgs) -> RootOrg {
    RootOrg {
        org_id: root.root_org_id.clone(),
        name: root.root_org_name.clone(),
        ..RootOrg::default()
    }
}

fn print_genesis(created: &genesis::Genesis) {
    println!("created ledger {}", created.ledger_id);
    println!(
        "  root org:      {} (key {})",
        created.root_org_id, created.root_key_id
    );
    println!("  root key file: {}", created.root_key_path.display());
    println!("  log key file:  {}", created.log_key_path.display());
    println!("keep both key files secret: they can sign for the root org and for the log");
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { data, root } => {
            data.connect_securely()?;
            print_genesis(&data.init(&root, Rules::CURRENT)?);
        }
        Command::Serve {
            config: _,
            data,
            root,
            listen,
            max_skew_ms,
            demo,
            demo_scale,
            checkpoint_every_records,
            checkpoint_every_ms,
            lease_ms,
            follow_db,
            follow,
            follow_key,
            follow_ca,
            follow_cert,
            follow_cert_key,
            pin_log_key,
            http,
            tls_cert,
            tls_key,
            client_ca,
            insecure_plaintext,
            read_units_per_second,
            read_units_burst,
        } => {
            let (Some(per_second), Some(burst)) = (
                NonZeroU32::new(read_units_per_second),
                NonZeroU32::new(read_units_burst).filter(|b| b.get() >= READ_COST_MAX),
            ) else {
                bail!("--read-units-per-second must be above zero and --read-units-burst at least {READ_COST_MAX}");
            };
            let options = fundtrail_server::ServeOptions {
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| fundtrail_server::TlsFiles {
                        cert,
                        key,
                        client_ca,
                    }),
                insecure_plaintext,
                boundary: fundtrail_server::boundary::BoundaryConfig {
                    read_cost_per_second: per_second,
                    read_cost_burst: burst,
                    ..Default::default()
                },
            };
            fundtrail_server::check_transport(listen, &options).map_err(anyhow::Error::msg)?;
            if let Some(addr) = http {
                fundtrail_server::http_view::check_http_address(addr)
                    .map_err(anyhow::Error::msg)?;
            }
            if checkpoint_every_records == 0 || checkpoint_every_ms == 0 {
                bail!("--checkpoint-every-records and --checkpoint-every-ms must be above zero");
            }
            if max_skew_ms > fundtrail_core::limits::SIGNING_SKEW_MS_MAX {
                bail!(
                    "--max-skew-ms may be at most {}",
                    fundtrail_core::limits::SIGNING_SKEW_MS_MAX
                );
            }
            if !(1..=100).contains(&demo_scale) {
                bail!("--demo-scale must be between 1 and 100");
            }
            data.connect_securely()?;
            let upstream = match (follow_db, follow, follow_key) {
                (Some(url), _, _) => Some(Upstream::Database(url)),
                (None, Some(url), Some(key)) => Some(Upstream::Node(Box::new(NodeUpstream {
                    url,
                    tls: TlsFiles {
                        ca_cert: follow_ca,
                        cert: follow_cert,
                        key: follow_cert_key,
                    },
                    reader: Signer::from_key_file(&key)?,
                }))),
                _ => None,
            };
            if pin_log_key.is_some() && upstream.is_none() {
                bail!("--pin-log-key is for a replica: give --follow or --follow-db");
            }
            let created =
                upstream.is_none() && !genesis::exists_at(&data.data_dir, data.journal_at());
            if created {
                // The demo's history is a migration from an earlier system,
                // loaded under the rules it was written for; the demo then
                // moves the ledger on to the current rules.
                let rules = if demo {
                    demo::HISTORY_RULES
                } else {
                    Rules::CURRENT
                };
                print_genesis(&data.init(&root, rules)?);
            }
            let config = EngineConfig {
                skew_ms_max: max_skew_ms,
                checkpoints: fundtrail_server::checkpoints::CheckpointPolicy {
                    every_records: checkpoint_every_records,
                    every_ms: checkpoint_every_ms,
                },
                journal_url: data.journal.clone(),
                journal_lease_ms: (lease_ms > 0).then_some(lease_ms),
                pinned_log_vkey: pin_log_key,
                ..EngineConfig::new(data.data_dir.clone())
            };
            let role = match upstream {
                Some(upstream) => fundtrail_server::Role::Replica(upstream),
                None => fundtrail_server::Role::Writer {
                    scrub_on_start: true,
                },
            };
            // Opening replays and checks the journal: off the async workers.
            let engine = tokio::task::spawn_blocking(move || fundtrail_server::open(config, role))
                .await?
                .map_err(anyhow::Error::msg)?;
            if demo {
                demo::prepare(engine.clone(), &data.data_dir, created, demo_scale).await?;
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            });
            let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
                let _ = stopped.wait_for(|&stop| stop).await;
            };
            let boundary = fundtrail_server::boundary_layer(&engine, &options);
            let http_port = match http {
                Some(addr) => {
                    let listener = tokio::net::TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr}"))?;
                    println!("fundtrail HTTP on http://{}", listener.local_addr()?);
                    Some(tokio::spawn(fundtrail_server::http_view::serve_http(
                        engine.clone(),
                        boundary.clone(),
                        listener,
                        until_stopped(stopped.clone()),
                    )))
                }
                None => None,
            };
            // The last line scripts and tests wait for (with --listen
            // ADDR:0, it names the port the system chose).
            println!("fundtrail listening on {}", listener.local_addr()?);
            std::io::Write::flush(&mut std::io::stdout())?;
            fundtrail_server::serve_on_with(
                engine,
                listener,
                options,
                boundary,
                until_stopped(stopped),
            )
            .await
            .map_err(anyhow::Error::msg)?;
            if let Some(http_port) = http_port {
                http_port.await?.map_err(anyhow::Error::msg)?;
            }
        }
        Command::Keygen { out, label } => keygen(&out, &label)?,
        Command::Post(args) => post::run(args).await?,
        Command::Entry { server, seq } => {
            let mut client = connect(&server).await?;
            let entry = client
                .query
                .get_entry(pb::GetEntryRequest { seq })
                .await
                .map_err(status)?
                .into_inner();
            output::entry(&entry, server.json);
        }
        Command::Entries {
            server,
            account,
            org,
            kind,
            source,
            document,
            page_size,
            page_token,
        } => {
            let mut client = connect(&server).await?;
            let page = client
                .query
                .list_entries(pb::ListEntriesRequest {
                    page_size,
                    page_token,
                    account_id: account.unwrap_or_default(),
                    org_id: org,
                    kind,
                    source_seq: source,
                    document_no: document,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            output::entries(&page, server.json);
        }
        Command::Account {
            server,
            account_id,
            as_of,
        } => {
            let mut client = connect(&server).await?;
            let account = client
                .query
                .get_account(pb::GetAccountRequest {
                    account_id,
                    as_of_date: as_of,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            output::account(&account, server.json);
        }
        Command::Accounts {
            server,
            owner,
            page_size,
            page_token,
        } => {
            let mut client = connect(&server).await?;
            let page = client
                .query
                .list_accounts(pb::ListAccountsRequest {
                    page_size,
                    page_token,
                    owner_org_id: owner,
                })
                .await
                .map_err(status)?
                .into_inner();
            output::accounts(&page, server.json);
        }
        Command::Org { server, org_id } => {
            let mut client = connect(&server).await?;
            let org = client
                .query
                .get_org(pb::GetOrgRequest { org_id })
                .await
                .map_err(status)?
                .into_inner();
            output::org(&org, server.json);
        }
        Command::Ledger { server } => {
            let mut client = connect(&server).await?;
            let info = client
                .query
                .get_ledger(pb::GetLedgerRequest {})
                .await
                .map_err(status)?
                .into_inner();
            output::ledger(&info, server.json);
        }
        Command::Bench(args) => bench::run(args).await?,
        Command::LogKey { server } => logcmd::log_key(&server).await?,
        Command::Trace(command) => tracecmd::trace(command).await?,
        Command::Statement { server, household } => tracecmd::statement(&server, household).await?,
        Command::Idle(args) => tracecmd::idle(args).await?,
        Command::ExportCsv(args) => csvexport::run(args).await?,
        Command::Reconcile(args) => reconcile::run(args).await?,
        Command::Tail {
            server,
            from,
            account,
            org,
            kind,
        } => {
            let request = pb::WatchRequest {
                from_seq: from.unwrap_or(u64::MAX),
                account_ids: account,
                org_id: org,
                kinds: kind,
            };
            output::tail(&server, request).await?
        }
        Command::PublicNotice(args) => notice::run(args).await?,
        Command::Anomalies {
            server,
            idle_days,
            unconfirmed_days,
        } => tracecmd::anomalies(&server, idle_days, unconfirmed_days).await?,
        Command::Compliance {
            server,
            programme,
            division,
            level,
            period,
        } => {
            let request = pb::ComplianceRequest {
                programme_code: programme,
                division_prefix: division,
                level,
                period,
                ..Default::default()
            };
            tracecmd::compliance(&server, request).await?
        }
        Command::Checkpoint { server, tree_size } => logcmd::checkpoint(&server, tree_size).await?,
        Command::Prove(command) => logcmd::prove(command).await?,
        Command::Verify(command) => logcmd::verify(command)?,
        Command::Export {
            server,
            out,
            start,
            end,
        } => logcmd::export(&server, &out, start, end).await?,
        Command::Audit(args) => fundtrail_audit::audit(args)?,
        Command::Witness(args) => logcmd::witness(args).await?,
        Command::Scrub { server } => logcmd::scrub(&server).await?,
        Command::AccessLog(args) => logcmd::access_log(args).await?,
    }
    Ok(())
}

/// A gRPC refusal as an error a person can read.
pub fn status(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("refused ({:?}): {}", status.code(), status.message())
}

async fn connect(server: &Server) -> Result<Client> {
    let reader = match &server.key {
        Some(path) => Some(Signer::from_key_file(path)?),
        None => None,
    };
    let options = ConnectOptions {
        tls: TlsFiles {
            ca_cert: server.ca_cert.clone(),
            cert: server.tls_cert.clone(),
            key: server.tls_key.clone(),
        },
        reader,
        session: server.min_seq.map(Session::reading),
    };
    Client::connect_with(&server.server, &options)
        .await
        .with_context(|| format!("is `fundtrail serve` running at {}?", server.server))
}

fn keygen(out: &Path, label: &str) -> Result<()> {
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let file = KeyFile::new(label, &key);
    fundtrail_store::secret::write_secret_file(out, file.to_json().as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("key id:     {}", file.key_id);
    println!("public key: {}", file.public_key_hex);
    println!("key file:   {} (readable by you only)", out.display());
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
