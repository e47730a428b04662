//! `fundtrail init` and `fundtrail serve`: the ledger's data directory,
//! creating a ledger in it, and running the service on it (with the demo,
//! the HTTP port and a replica's upstream when asked).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use fundtrail_client::{Signer, TlsFiles};
use fundtrail_core::limits::{
    READ_COST_BURST_DEFAULT, READ_COST_MAX, READ_COST_PER_SECOND_DEFAULT, SIGNING_SKEW_MS_DEFAULT,
};
use fundtrail_core::rules::Rules;
use fundtrail_server::engine::EngineConfig;
use fundtrail_server::follow::{NodeUpstream, Upstream};
use fundtrail_server::genesis::{self, RootOrg};
use fundtrail_server::start::StartError;

use crate::demo;

#[derive(Args, Clone)]
pub struct DataDir {
    /// Directory holding the journal, derived state and key files.
    #[arg(long, env = "FUNDTRAIL_DATA_DIR", default_value = "./fundtrail-data")]
    pub(crate) data_dir: PathBuf,
    /// Keep the journal in PostgreSQL, at this connection string
    /// (docs/postgres.md), instead of in DATA_DIR/journal.log. The data
    /// directory still holds the keys, checkpoints and derived state.
    #[arg(long, env = "FUNDTRAIL_JOURNAL", value_name = "POSTGRES_URL")]
    pub(crate) journal: Option<String>,
    /// With --journal or --follow-db: speak TLS to the database and check its certificate
    /// (chain and host name) against the CA certificates in this PEM file,
    /// as libpq's sslrootcert with sslmode=verify-full. Add sslmode=require
    /// to the connection string to refuse a database without TLS.
    #[arg(long, env = "PGSSLROOTCERT", value_name = "PEM")]
    pub(crate) journal_ca: Option<PathBuf>,
}

impl DataDir {
    /// Sets up TLS to the database, if asked; before any connection.
    pub(crate) fn connect_securely(&self) -> Result<()> {
        if let Some(ca) = &self.journal_ca {
            fundtrail_pg::use_root_certificates(ca)?;
        }
        Ok(())
    }

    pub(crate) fn journal_at(&self) -> genesis::JournalAt<'_> {
        match &self.journal {
            Some(url) => genesis::JournalAt::Postgres(url),
            None => genesis::JournalAt::File,
        }
    }

    /// Creates the ledger under `rules`: its keys in the data directory,
    /// its genesis record in the journal.
    pub(crate) fn init(&self, root: &RootArgs, rules: Rules) -> Result<genesis::Genesis> {
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
pub struct RootArgs {
    /// Id of the root org created at genesis.
    #[arg(long, default_value = "mof")]
    pub(crate) root_org_id: String,
    /// Name of the root org.
    #[arg(long, default_value = "中华人民共和国财政部")]
    pub(crate) root_org_name: String,
}

pub(crate) fn root_org(root: &RootArgs) -> RootOrg {
    RootOrg {
        org_id: root.root_org_id.clone(),
        name: root.root_org_name.clone(),
        ..RootOrg::default()
    }
}

pub(crate) fn print_genesis(created: &genesis::Genesis) {
    println!("created ledger {}", created.ledger_id);
    println!(
        "  root org:      {} (key {})",
        created.root_org_id, created.root_key_id
    );
    println!("  root key file: {}", created.root_key_path.display());
    println!("  log key file:  {}", created.log_key_path.display());
    println!("keep both key files secret: they can sign for the root org and for the log");
}

/// `fundtrail serve`: what to serve, where, and how.
#[derive(Args)]
pub struct ServeArgs {
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
}

/// Runs the service until it is stopped (Ctrl-C or SIGTERM).
pub async fn run(args: ServeArgs) -> Result<()> {
    let ServeArgs {
        data,
        root,
        config: _,
        listen,
        http,
        max_skew_ms,
        demo,
        checkpoint_every_records,
        checkpoint_every_ms,
        lease_ms,
        follow_db,
        follow,
        follow_key,
        pin_log_key,
        follow_ca,
        follow_cert,
        follow_cert_key,
        demo_scale,
        tls_cert,
        tls_key,
        client_ca,
        insecure_plaintext,
        read_units_per_second,
        read_units_burst,
    } = args;
    let (Some(per_second), Some(burst)) = (
        NonZeroU32::new(read_units_per_second),
        NonZeroU32::new(read_units_burst).filter(|b| b.get() >= READ_COST_MAX),
    ) else {
        return Err(StartError::Config(format!(
            "--read-units-per-second must be above zero and --read-units-burst at least {READ_COST_MAX}"
        ))
        .into());
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
    fundtrail_server::check_transport(listen, &options)?;
    if let Some(addr) = http {
        fundtrail_server::http_view::check_http_address(addr)?;
    }
    if checkpoint_every_records == 0 || checkpoint_every_ms == 0 {
        return Err(StartError::Config(
            "--checkpoint-every-records and --checkpoint-every-ms must be above zero".into(),
        )
        .into());
    }
    if max_skew_ms > fundtrail_core::limits::SIGNING_SKEW_MS_MAX {
        return Err(StartError::Config(format!(
            "--max-skew-ms may be at most {}",
            fundtrail_core::limits::SIGNING_SKEW_MS_MAX
        ))
        .into());
    }
    if !(1..=100).contains(&demo_scale) {
        return Err(StartError::Config("--demo-scale must be between 1 and 100".into()).into());
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
        return Err(StartError::Config(
            "--pin-log-key is for a replica: give --follow or --follow-db".into(),
        )
        .into());
    }
    let created = upstream.is_none() && !genesis::exists_at(&data.data_dir, data.journal_at());
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
    let engine =
        tokio::task::spawn_blocking(move || fundtrail_server::open(config, role)).await??;
    if demo {
        demo::prepare(engine.clone(), &data.data_dir, created, demo_scale).await?;
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| StartError::Unavailable(format!("cannot listen on {listen}: {e}")))?;
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
                .map_err(|e| StartError::Unavailable(format!("cannot listen on {addr}: {e}")))?;
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
    fundtrail_server::serve_on_with(engine, listener, options, boundary, until_stopped(stopped))
        .await
        .map_err(anyhow::Error::msg)?;
    if let Some(http_port) = http_port {
        http_port.await?.map_err(anyhow::Error::msg)?;
    }
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
