//! The HTTP port (`serve --http ADDR`): `/metrics` for Prometheus. It
//! answers only on a loopback address until readers sign in there.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::info;

use crate::engine::Engine;

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Refuses an HTTP address that is not a loopback address.
pub fn check_http_address(addr: SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "--http {addr}: the HTTP port listens on a loopback address only (127.0.0.1 or ::1); put a proxy in front to reach it from elsewhere"
        ))
    }
}

/// Serves the HTTP port on `listener` until `shutdown` resolves.
pub async fn serve_http(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    check_http_address(addr)?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(engine);
    info!(%addr, "HTTP port serving /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the HTTP port failed: {e}"))
}

async fn metrics(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    let text = engine.metrics().render(&engine);
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text)
}
