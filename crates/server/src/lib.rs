//! The fundtrail server: the sequencer with group commit ([`engine`]), the
//! gRPC services, and [`serve`], which runs them with the standard health
//! and reflection services on one listener.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! use fundtrail_server::{engine::EngineConfig, serve, ServeConfig};
//! let config = ServeConfig {
//!     engine: EngineConfig::new("./fundtrail-data"),
//!     listen: "127.0.0.1:50051".parse().unwrap(),
//! };
//! serve(config, std::future::pending()).await
//! # }
//! ```

pub mod audit;
pub mod checkpoints;
pub mod engine;
pub mod genesis;
pub mod query;
pub mod service;
pub mod status;
pub mod verify;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use engine::{Engine, EngineConfig};
use fundtrail_api::pb;
use tokio::net::TcpListener;
use tracing::info;

use fundtrail_core::limits::{GRPC_MESSAGE_BYTES_MAX, QUERY_REQUEST_BYTES_MAX};

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub engine: EngineConfig,
    pub listen: SocketAddr,
}

/// Opens the ledger and serves it on `config.listen` until `shutdown` resolves.
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let engine = Engine::open(config.engine)?;
    serve_on(engine, listener, shutdown).await
}

/// Serves an opened engine on a bound listener until `shutdown` resolves.
pub async fn serve_on(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (health, health_service) = tonic_health::server::health_reporter();
    // The Ledger service is SERVING while it takes writes, NOT_SERVING
    // once they stop.
    let mut writes_open = engine.gate().watch();
    let ledger_health = health.clone();
    tokio::spawn(async move {
        loop {
            let open = *writes_open.borrow_and_update();
            if open {
                ledger_health
                    .set_serving::<pb::ledger_server::LedgerServer<service::LedgerService>>()
                    .await;
            } else {
                ledger_health
                    .set_not_serving::<pb::ledger_server::LedgerServer<service::LedgerService>>()
                    .await;
            }
            if writes_open.changed().await.is_err() {
                break;
            }
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
    let ledger = pb::ledger_server::LedgerServer::new(service::LedgerService {
        engine: engine.clone(),
    })
    .max_decoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    let query = pb::query_server::QueryServer::new(service::QueryService {
        engine: engine.clone(),
    })
    .max_decoding_message_size(QUERY_REQUEST_BYTES_MAX)
    .max_encoding_message_size(GRPC_MESSAGE_BYTES_MAX);
    info!(%addr, ledger_id = %engine.meta().ledger_id, "fundtrail serving");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(ledger)
        .add_service(query)
        .add_service(pb::audit_server::AuditServer::new(audit::AuditService {
            engine: engine.clone(),
        }))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY small answers wait ~40 ms for delayed ACKs.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    engine.shutdown();
    info!("fundtrail stopped");
    Ok(())
}
