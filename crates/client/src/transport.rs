//! The client's side of the trust boundary: TLS settings, and a channel that
//! signs every fundtrail read with the reader's key (docs/read-signature.md)
//! and lets a client's reads see its own writes ([`Session`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fundtrail_core::signing::{sha256, ReadClaim};
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::transport::Channel;

use crate::{now_ms, ClientError, Signer};

use fundtrail_core::signing::{MIN_SEQ_HEADER, RECORD_COUNT_HEADER};
use fundtrail_core::signing::{
    READ_KEY_ID_HEADER as KEY_ID_HEADER, READ_NONCE_HEADER as NONCE_HEADER,
    READ_SIGNATURE_HEADER as SIGNATURE_HEADER, READ_SIGNED_AT_HEADER as SIGNED_AT_HEADER,
};

/// PEM files for a TLS connection.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// The CA that signed the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate and its key, for servers that require mTLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.cert.is_none() && self.key.is_none()
    }

    fn config(&self, host: &str) -> Result<tonic::transport::ClientTlsConfig, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut config = tonic::transport::ClientTlsConfig::new().domain_name(host);
        if let Some(ca) = &self.ca_cert {
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                config = config.identity(tonic::transport::Identity::from_pem(
                    read(cert)?,
                    read(key)?,
                ));
            }
            (None, None) => {}
            _ => return Err("a client certificate needs both --tls-cert and --tls-key".into()),
        }
        Ok(config)
    }
}

/// Opens a channel to `url`: TLS for `https://` URLs or when TLS files are
/// given, plaintext otherwise.
pub(crate) async fn channel(url: &str, tls: &TlsFiles) -> Result<Channel, ClientError> {
    let fail = |reason: String| ClientError::Connect {
        url: url.to_string(),
        reason,
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| fail(e.to_string()))?;
    if url.starts_with("https://") || !tls.is_empty() {
        if url.starts_with("http://") {
            return Err(fail(
                "TLS files were given for an http:// URL; use https://".into(),
            ));
        }
        let host = endpoint.uri().host().unwrap_or("localhost").to_string();
        endpoint = endpoint
            .tls_config(tls.config(&host).map_err(fail)?)
            .map_err(|e| fail(e.to_string()))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| fail(transport_reason(&e)))
}

/// tonic's transport errors hide their cause (a TLS alert, a refused
/// connection) behind "transport error": name it.
fn transport_reason(error: &tonic::transport::Error) -> String {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// Who signs reads on a channel, and for which ledger.
struct ReadKey {
    signer: Signer,
    ledger_id: String,
}

/// What a client has written, so that its reads see it: the durable record
/// count the ledger named in its latest write answer. Every read then asks
/// (`fundtrail-min-seq`) for derived state that holds those records.
/// Clones share one session; clients given the same session read each
/// other's writes.
#[derive(Clone, Debug, Default)]
pub struct Session {
    record_count: Arc<AtomicU64>,
}

impl Session {
    /// A session whose reads reflect at least records 0 to `min_seq`.
    pub fn reading(min_seq: u64) -> Session {
        let session = Session::default();
        session.saw(min_seq.saturating_add(1));
        session
    }

    /// Records the ledger held when it answered a write this session made.
    pub fn record_count(&self) -> u64 {
        self.record_count.load(Ordering::Acquire)
    }

    pub(crate) fn saw(&self, record_count: u64) {
        self.record_count.fetch_max(record_count, Ordering::AcqRel);
    }
}

/// A channel that adds a read signature to every fundtrail read, asks
/// reads to reflect the session's writes, and notes what writes recorded.
#[derive(Clone)]
pub struct Signed {
    channel: Channel,
    key: Option<Arc<ReadKey>>,
    session: Session,
}

impl Signed {
    pub(crate) fn new(
        channel: Channel,
        signer: Option<Signer>,
        ledger_id: &str,
        session: Session,
    ) -> Signed {
        Signed {
            channel,
            key: signer.map(|signer| {
                Arc::new(ReadKey {
                    signer,
                    ledger_id: ledger_id.to_string(),
                })
            }),
            session,
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type StdError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<Body>> for Signed {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Result<http::Response<Body>, StdError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        tower::Service::poll_ready(&mut self.channel, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let clone = self.channel.clone();
        let mut channel = std::mem::replace(&mut self.channel, clone);
        let key = self.key.clone();
        let session = self.session.clone();
        Box::pin(async move {
            let mut request = request;
            let reads = signs(request.uri().path());
            if let Some(seq) = session.record_count().checked_sub(1).filter(|_| reads) {
                request
                    .headers_mut()
                    .insert(MIN_SEQ_HEADER, http::HeaderValue::from(seq));
            }
            let request = match key {
                Some(key) if reads => sign(&key, request).await?,
                _ => request,
            };
            let response = channel.call(request).await.map_err(StdError::from)?;
            let count = response
                .headers()
                .get(RECORD_COUNT_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(count) = count {
                session.saw(count);
            }
            Ok(response)
        })
    }
}

/// Whether calls to `path` carry a read signature: every fundtrail read
/// (each takes one request message). Writes and cosignatures carry their
/// own signature inside the message; other services (health, reflection
/// streams) need none.
fn signs(path: &str) -> bool {
    path.starts_with("/fundtrail.v1.")
        && !path.starts_with("/fundtrail.v1.Ledger/")
        && path != "/fundtrail.v1.Audit/AddCosignature"
}

/// Adds the read signature over the request's one message frame.
async fn sign(
    key: &ReadKey,
    request: http::Request<Body>,
) -> Result<http::Request<Body>, StdError> {
    let (mut parts, body) = request.into_parts();
    let frame: Bytes = body.collect().await?.to_bytes();
    let message = frame.get(5..).unwrap_or_default();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let signed_at_ms = now_ms();
    let claim = ReadClaim {
        ledger_id: &key.ledger_id,
        method: parts.uri.path(),
        request_sha256: sha256(message),
        signed_at_ms,
        nonce: &nonce,
    };
    let signature = claim.sign(key.signer.signing_key());
    let headers = &mut parts.headers;
    headers.insert(KEY_ID_HEADER, key.signer.key_id().parse()?);
    headers.insert(SIGNED_AT_HEADER, signed_at_ms.to_string().parse()?);
    headers.insert(NONCE_HEADER, nonce.parse()?);
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(signature);
    headers.insert(SIGNATURE_HEADER, encoded.parse()?);
    Ok(http::Request::from_parts(
        parts,
        Body::new(Full::new(frame)),
    ))
}
