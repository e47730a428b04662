//! The fundtrail server: the write path ([`engine`], [`pipeline`]), what
//! runs beside it for a [`Role`] ([`open`]: a writer's scrub, a replica's
//! follower), the gRPC services behind one boundary, and [`serve`], which
//! runs them with the standard health and reflection services on one
//! listener. `docs/architecture.md` maps the modules.
//!
//! ```no_run
//! # async fn run() -> Result<(), fundtrail_server::start::StartError> {
//! use fundtrail_server::{engine::EngineConfig, serve, Role, ServeConfig};
//! let config = ServeConfig {
//!     engine: EngineConfig::new("./fundtrail-data"),
//!     role: Role::Writer { scrub_on_start: true },
//!     listen: "127.0.0.1:50051".parse().unwrap(),
//!     options: Default::default(),
//! };
//! serve(config, std::future::pending()).await
//! # }
//! ```

pub mod access_log;
pub mod audit;
pub mod boundary;
pub mod checkpoints;
mod checkpool;
pub mod crash;
pub mod dirlock;
pub mod engine;
pub mod follow;
mod follow_node;
pub mod gate;
pub mod genesis;
pub mod http_view;
pub mod jurisdiction;
pub mod metrics;
pub mod paced;
pub mod pipeline;
pub mod query;
pub mod recovery;
pub mod replica_status;
pub mod service;
pub mod shares;
pub mod start;
pub mod status;
pub mod tokens;
pub mod upstream;

use start::StartError;
pub mod verify;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use boundary::{BoundaryConfig, BoundaryLayer};
use engine::{Engine, EngineConfig};
use fundtrail_api::pb;
use tokio::net::TcpListener;
use tracing::{info, warn};

use fundtrail_core::limits::{
    CALL_TIMEOUT_MS, GRPC_MESSAGE_BYTES_MAX, HEADER_LIST_BYTES_MAX, KEEPALIVE_INTERVAL_MS,
    KEEPALIVE_TIMEOUT_MS, PENDING_RESET_STREAMS_MAX, QUERY_REQUEST_BYTES_MAX,
    RECONCILE_REQUEST_BYTES_MAX, SHUTDOWN_GRACE_MS, STREAMS_PER_CONNECTION_MAX,
};

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub engine: EngineConfig,
    pub role: Role,
    pub listen: SocketAddr,
    pub options: ServeOptions,
}

/// How the listener is served.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// TLS, and with a client CA, mTLS. `None` serves plaintext, which
    /// [`check_transport`] allows on loopback only unless told otherwise.
    pub tls: Option<TlsFiles>,
    /// Serve plaintext on a non-loopback address (behind a TLS proxy).
    pub insecure_plaintext: bool,
    pub boundary: BoundaryConfig,
}

/// PEM files of the server's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, every client must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

/// Refuses plaintext on an address other hosts can reach, unless the
/// operator said `--insecure-plaintext`.
pub fn check_transport(listen: SocketAddr, options: &ServeOptions) -> Result<(), StartError> {
    if options.tls.is_none() && !listen.ip().is_loopback() && !options.insecure_plaintext {
        return Err(StartError::Config(format!(
            "refusing to serve plaintext on {listen}, which other hosts can reach: give --tls-cert and --tls-key (and --client-ca to require client certificates), or --insecure-plaintext if a TLS proxy sits in front"
        )));
    }
    Ok(())
}

fn tls_config(files: &TlsFiles) -> Result<tonic::transport::ServerTlsConfig, String> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
    };
    let identity = tonic::transport::Identity::from_pem(
        read(&files.cert, "TLS certificate")?,
        read(&files.key, "TLS key")?,
    );
    let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(tonic::transport::Certificate::from_pem(read(
            ca,
            "client CA certificate",
        )?));
    }
    Ok(config)
}

/// What a server is to its ledger.
#[derive(Clone)]
pub enum Role {
    /// It writes; with `scrub_on_start` it replays the whole journal in the
    /// background after start-up and stops writes if the journal disagrees
    /// with the tree, the checkpoints or the derived state.
    Writer { scrub_on_start: bool },
    /// A verifying replica of this upstream, taking no writes.
    Replica(follow::Upstream),
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Writer { scrub_on_start } => f
                .debug_struct("Writer")
                .field("scrub_on_start", scrub_on_start)
                .finish(),
            Role::Replica(upstream) => f.debug_tuple("Replica").field(&upstream.name()).finish(),
        }
    }
}

/// Opens the ledger `config` names and starts what runs beside its write
/// path for `role`: a writer's start-up scrub, or a replica's follower.
pub fn open(config: EngineConfig, role: Role) -> Result<Arc<Engine>, StartError> {
    match role {
        Role::Writer { scrub_on_start } => {
            let engine = Engine::open(config)?;
            if scrub_on_start {
                verify::start_scrub(&engine).map_err(StartError::Unavailable)?;
            }
            Ok(engine)
        }
        Role::Replica(upstream) => follow::open(config, upstream),
    }
}

/// Opens the ledger and serves it on `config.listen` until `shutdown` resolves.
/// Errors before the server serves are [`StartError`]s; a transport that
/// fails later is [`StartError::Unavailable`] too.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    check_transport(config.listen, &config.options)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| StartError::Unavailable(format!("cannot listen on {}: {e}", config.listen)))?;
    // Opening replays and checks the journal: blocking work, off the runtime.
    let (engine, role) = (config.engine, config.role);
    let engine = tokio::task::spawn_blocking(move || open(engine, role))
        .await
        .map_err(|e| StartError::Unavailable(format!("opening the ledger failed: {e}")))??;
    serve_on(engine, listener, config.options, shutdown)
        .await
        .map_err(StartError::Unavailable)
}

/// The boundary every call of one server passes, on both of its ports.
pub fn boundary_layer(engine: &Arc<Engine>, options: &ServeOptions) -> BoundaryLayer {
    BoundaryLayer::new(engine.clone(), options.boundary)
}

/// The read services, as both ports build them: limits on what they decode
/// and encode.
fn query_service(engine: &Arc<Engine>) -> pb::query_server::QueryServer<service::QueryService> {
    // The boundary holds each method to its own limit first; Reconcile's is
    // the largest.
    pb::query_server::QueryServer::new(service::QueryService::new(engine.clone()))
        .max_decoding_message_size(RECONCILE_REQUEST_BYTES_MAX)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
}

fn audit_service(engine: &Arc<Engine>) -> pb::audit_server::AuditServer<audit::AuditService> {
    pb::audit_server::AuditServer::new(audit::AuditService {
        engine: engine.clone(),
    })
    .max_decoding_message_size(QUERY_REQUEST_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX)
}

/// Query and Audit (not Ledger: the HTTP port never writes) behind `boundary`.
pub(crate) fn read_routes(engine: &Arc<Engine>) -> tonic::service::Routes {
    tonic::service::Routes::new(query_service(engine)).add_service(audit_service(engine))
}

/// Reports the Ledger service SERVING while writes are open.
async fn ledger_health(health: &tonic_health::server::HealthReporter, writes_open: bool) {
    type Ledger = pb::ledger_server::LedgerServer<service::LedgerService>;
    if writes_open {
        health.set_serving::<Ledger>().await;
    } else {
        health.set_not_serving::<Ledger>().await;
    }
}

/// Serves an opened engine on a bound listener until `shutdown` resolves.
pub async fn serve_on(
    engine: Arc<Engine>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let boundary = boundary_layer(&engine, &options);
    serve_on_with(engine, listener, options, boundary, shutdown).await
}

/// [`serve_on`] behind a boundary the caller made, to share it with the
/// HTTP port ([`http_view::serve_http`]).
pub async fn serve_on_with(
    engine: Arc<Engine>,
    listener: TcpListener,
    options: ServeOptions,
    boundary: BoundaryLayer,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (health, health_service) = tonic_health::server::health_reporter();
    // The Ledger service is SERVING while it takes writes, NOT_SERVING
    // once they stop. The first status is set before the listener serves.
    let mut writes_open = engine.gate().watch();
    let open = *writes_open.borrow_and_update();
    ledger_health(&health, open).await;
    let reporter = health.clone();
    tokio::spawn(async move {
        while writes_open.changed().await.is_ok() {
            let open = *writes_open.borrow_and_update();
            ledger_health(&reporter, open).await;
        }
    });
    health
        .set_serving::<pb::query_server::QueryServer<service::QueryService>>()
        .await;
    health
        .set_serving::<pb::audit_server::AuditServer<audit::AuditService>>()
        .await;
    // Reflection in both versions: v1, and v1alpha for the many tools that
    // speak only that (grpc_cli, Python grpcio-reflection, older grpcurl).
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fundtrail_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| format!("cannot build the reflection service: {e}"))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fundtrail_api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| format!("cannot build the reflection service: {e}"))?;
    let ledger = pb::ledger_server::LedgerServer::new(service::LedgerService::new(engine.clone()))
        .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    info!(%addr, ledger_id = %engine.meta().ledger_id, "fundtrail serving");
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(files) = &options.tls {
        builder = builder
            .tls_config(tls_config(files)?)
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
    }
    let serving = builder
        .timeout(Duration::from_millis(CALL_TIMEOUT_MS))
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .concurrency_limit_per_connection(STREAMS_PER_CONNECTION_MAX as usize)
        .http2_max_header_list_size(HEADER_LIST_BYTES_MAX)
        .http2_max_pending_accept_reset_streams(Some(PENDING_RESET_STREAMS_MAX))
        .http2_keepalive_interval(Some(Duration::from_millis(KEEPALIVE_INTERVAL_MS)))
        .http2_keepalive_timeout(Some(Duration::from_millis(KEEPALIVE_TIMEOUT_MS)))
        .layer(boundary)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(ledger)
        .add_service(query_service(&engine))
        .add_service(audit_service(&engine))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY small answers wait ~40 ms for delayed ACKs.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                shutdown.await;
                let _ = stopping_tx.send(());
            },
        );
    // Calls finish on their own after the signal, but a stream whose client
    // stopped reading (a watch, an export) never does: after the grace
    // period the connections are closed anyway.
    let grace = async move {
        let _ = stopping_rx.await;
        tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
    };
    tokio::select! {
        served = serving => served.map_err(|e| format!("server failed: {e}"))?,
        () = grace => warn!("connections still open {SHUTDOWN_GRACE_MS} ms after the stop signal were closed"),
    }
    // Joining the engine's threads blocks: off the async workers, which may
    // still carry tasks other servers in this process need (a replica's
    // follower may wait on one).
    tokio::task::spawn_blocking(move || engine.shutdown())
        .await
        .map_err(|e| format!("shutdown failed: {e}"))?;
    info!("fundtrail stopped");
    Ok(())
}
