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
mod remote;
mod serve;
mod tracecmd;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use fundtrail_api::pb;
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::rules::Rules;

use crate::remote::{connect, status, Server};
use crate::serve::{print_genesis, DataDir, RootArgs};

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
    Serve(serve::ServeArgs),
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
    /// Show a budget quota (rules 8) and its lineage up to the document
    /// that created it.
    Quota {
        #[command(flatten)]
        server: Server,
        /// The seq of its IssueQuota record.
        seq: u64,
    },
    /// List the budget quotas issued to an org.
    Quotas {
        #[command(flatten)]
        server: Server,
        org_id: String,
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Spending progress (支出进度) of an org: quota received and issued
    /// down, cash received, paid against its quota and all split from it,
    /// and paid ÷ quota, by programme and month.
    Progress {
        #[command(flatten)]
        server: Server,
        org_id: String,
        #[arg(long, default_value = "")]
        programme: String,
        #[arg(long, default_value_t = 0)]
        fiscal_year: u32,
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
        /// Money idle at least this many days is an IDLE_FUNDS finding. 0:
        /// findings for money idle one to two years and two years or more.
        #[arg(long, default_value_t = 0)]
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
    let args = config::with_config_file(command, std::env::args_os().collect());
    let cli = Cli::parse_from(args.unwrap_or_else(|error| fail(error)));
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
        fail(error);
    }
    Ok(())
}

/// Says what went wrong and exits; a server that did not start says who
/// must act by its status (docs/operations.md §7).
fn fail(error: anyhow::Error) -> ! {
    eprintln!("error: {error:#}");
    let start = error.downcast_ref::<fundtrail_server::start::StartError>();
    std::process::exit(start.map_or(1, |e| e.exit_code()))
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { data, root } => {
            data.connect_securely()?;
            print_genesis(&data.init(&root, Rules::CURRENT)?);
        }
        Command::Serve(args) => serve::run(args).await?,
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
        Command::Quota { server, seq } => {
            let mut client = connect(&server).await?;
            let lineage = client
                .query
                .get_quota(pb::GetQuotaRequest { seq })
                .await
                .map_err(status)?
                .into_inner();
            output::quota_lineage(&lineage, server.json);
        }
        Command::Quotas {
            server,
            org_id,
            page_size,
            page_token,
        } => {
            let mut client = connect(&server).await?;
            let page = client
                .query
                .list_quotas(pb::ListQuotasRequest {
                    org_id,
                    page_size,
                    page_token,
                })
                .await
                .map_err(status)?
                .into_inner();
            output::quotas(&page, server.json);
        }
        Command::Progress {
            server,
            org_id,
            programme,
            fiscal_year,
        } => {
            let mut client = connect(&server).await?;
            let progress = client
                .query
                .spending_progress(pb::SpendingProgressRequest {
                    org_id,
                    programme_code: programme,
                    fiscal_year,
                })
                .await
                .map_err(status)?
                .into_inner();
            output::progress(&progress, server.json);
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
