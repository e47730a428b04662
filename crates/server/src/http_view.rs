//! The HTTP port (`serve --http ADDR`): the auditor's web view, the read
//! services over gRPC-web for it, and `/metrics` for Prometheus.
//!
//! The web view is a handful of files bundled into the binary (`web/`):
//! nothing is fetched from elsewhere at run time. The page signs every call
//! with the org key the user loads (docs/read-signature.md, byte for byte as
//! over gRPC) and sends it as gRPC-web; the calls pass the same boundary
//! value as the gRPC port's, so a key's nonces, read allowance, jurisdiction
//! and access log are one. Only Query and Audit are served here: the HTTP
//! port never writes. It listens on loopback only: `/metrics` is open, and
//! the port has no TLS of its own (put a TLS proxy in front).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tracing::info;

use crate::boundary::BoundaryLayer;
use crate::engine::Engine;

/// The content type of the Prometheus text format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scripts, styles and data only from this origin; no inline script, no
/// framing, no form posts elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The web view's files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/app.js"),
    ),
    (
        "pb.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/pb.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/verify.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/api.js"),
    ),
    (
        "export.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/export.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/format.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../web/style.css"),
    ),
];

const INDEX_HTML: &[u8] = include_bytes!("../web/index.html");

/// Refuses an HTTP address that is not a loopback address.
pub fn check_http_address(addr: SocketAddr) -> Result<(), crate::start::StartError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(crate::start::StartError::Config(format!(
            "--http {addr}: the HTTP port listens on a loopback address only (127.0.0.1 or ::1); put a TLS proxy in front to reach it from elsewhere"
        )))
    }
}

/// Serves the HTTP port on `listener` until `shutdown` resolves. `boundary`
/// is the one the gRPC port uses ([`crate::boundary_layer`]).
pub async fn serve_http(
    engine: Arc<Engine>,
    boundary: BoundaryLayer,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    check_http_address(addr).map_err(|e| e.to_string())?;
    let grpc_web = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(boundary)
        .service(crate::read_routes(&engine));
    let app = Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
        .route("/metrics", get(metrics))
        .route_service("/fundtrail.v1.Query/{method}", grpc_web.clone())
        .route_service("/fundtrail.v1.Audit/{method}", grpc_web)
        .with_state(engine);
    info!(%addr, "HTTP port serving the web view and /metrics");
    // The peer's address goes with each call: the boundary charges
    // gRPC-web calls by it (or by the proxy's x-forwarded-for).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|e| format!("the HTTP port failed: {e}"))
}

fn page(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, bytes)) => page(content_type, bytes),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn metrics(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    let text = engine.metrics().render(&engine.gauges());
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text)
}
