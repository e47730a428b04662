//! A typed fundtrail client: signs requests with an org's Ed25519 key and
//! talks to the `Ledger` and `Query` services. Used by the CLI, the tests and
//! other Rust systems.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fundtrail_client::{Client, Signer};
//! use fundtrail_api::pb;
//! let signer = Signer::from_key_file("fundtrail-data/root.key".as_ref())?;
//! // Reads are signed with the same key (docs/read-signature.md).
//! let mut client = Client::connect_as("http://127.0.0.1:50051", &signer).await?;
//! let body = pb::request::Body::OpenAccount(pb::OpenAccount {
//!     account_id: "mof-treasury".into(),
//!     kind: pb::AccountKind::Treasury as i32,
//!     name: "中央国库".into(),
//!     ..Default::default()
//! });
//! let posted = client.post(&signer, body).await?;
//! println!("recorded as #{}", posted.seq);
//! # Ok(()) }
//! ```

use std::path::Path;

use ed25519_dalek::SigningKey;
pub use fundtrail_api;
use fundtrail_api::pb;
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::signing;
use prost::Message;
pub use transport::{Session, Signed, TlsFiles};

pub mod proofs;
pub mod transport;
pub mod witness;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
}

/// An org's signing key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl Signer {
    pub fn new(key: SigningKey) -> Signer {
        let key_id = signing::key_id(&key.verifying_key().to_bytes());
        Signer { key, key_id }
    }

    pub fn from_key_file(path: &Path) -> Result<Signer, ClientError> {
        let fail = |reason: String| ClientError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let (_, key) = KeyFile::from_json(&text).map_err(fail)?;
        Ok(Signer::new(key))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Encodes and signs `request` (docs/design.md §4).
    pub fn sign(&self, request: &pb::Request) -> pb::SignedRequest {
        let payload = request.encode_to_vec();
        let signature = signing::sign(&self.key, &payload).to_vec();
        pb::SignedRequest {
            payload,
            key_id: self.key_id.clone(),
            signature,
        }
    }
}

pub use fundtrail_core::clock::now_ms;

/// A fresh random idempotency key.
pub fn new_idempotency_key() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// How to reach a ledger: TLS files, and the key that signs reads.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    pub tls: TlsFiles,
    /// Without a reader key only the public calls answer (log key,
    /// checkpoints, proofs, ledger info, health).
    pub reader: Option<Signer>,
    /// Shared with other clients whose writes this one must read; a new
    /// session when not given.
    pub session: Option<Session>,
}

/// A connection to one fundtrail ledger.
#[derive(Clone)]
pub struct Client {
    pub ledger: pb::ledger_client::LedgerClient<Signed>,
    pub query: pb::query_client::QueryClient<Signed>,
    pub audit: pb::audit_client::AuditClient<Signed>,
    ledger_id: String,
    session: Session,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("ledger_id", &self.ledger_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects without a reader key: public calls and writes only.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        Client::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects and signs every read with `reader`.
    pub async fn connect_as(url: &str, reader: &Signer) -> Result<Client, ClientError> {
        let options = ConnectOptions {
            reader: Some(reader.clone()),
            ..Default::default()
        };
        Client::connect_with(url, &options).await
    }

    /// Connects as `options` say and learns the ledger's id.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
        let channel = transport::channel(url, &options.tls).await?;
        let session = options.session.clone().unwrap_or_default();
        let info = pb::query_client::QueryClient::new(Signed::new(
            channel.clone(),
            None,
            "",
            session.clone(),
        ))
        .get_ledger(pb::GetLedgerRequest {})
        .await?
        .into_inner();
        let signed = Signed::new(
            channel,
            options.reader.clone(),
            &info.ledger_id,
            session.clone(),
        );
        let ledger = pb::ledger_client::LedgerClient::new(signed.clone())
            .max_decoding_message_size(32 << 20);
        let audit =
            pb::audit_client::AuditClient::new(signed.clone()).max_decoding_message_size(32 << 20);
        let query = pb::query_client::QueryClient::new(signed).max_decoding_message_size(32 << 20);
        Ok(Client {
            ledger,
            query,
            audit,
            ledger_id: info.ledger_id,
            session,
        })
    }

    pub fn ledger_id(&self) -> &str {
        &self.ledger_id
    }

    /// What this client's reads wait to see; give it to other clients
    /// (`ConnectOptions::session`) to have them read this one's writes.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A request for this ledger, signed now, with a fresh idempotency key.
    pub fn request(&self, body: pb::request::Body) -> pb::Request {
        self.request_with_key(body, new_idempotency_key())
    }

    pub fn request_with_key(
        &self,
        body: pb::request::Body,
        idempotency_key: String,
    ) -> pb::Request {
        pb::Request {
            ledger_id: self.ledger_id.clone(),
            idempotency_key,
            signed_at_ms: now_ms(),
            body: Some(body),
            ..Default::default()
        }
    }

    /// Signs and posts `body`; answers once the record is durable.
    pub async fn post(
        &mut self,
        signer: &Signer,
        body: pb::request::Body,
    ) -> Result<pb::PostResponse, tonic::Status> {
        let request = self.request(body);
        self.post_signed(signer.sign(&request)).await
    }

    pub async fn post_signed(
        &mut self,
        signed: pb::SignedRequest,
    ) -> Result<pb::PostResponse, tonic::Status> {
        Ok(self.ledger.post(signed).await?.into_inner())
    }

    /// Posts `requests` over one PostStream and yields one result per
    /// request, in order, each once its record is durable (or refused).
    pub async fn post_stream(
        &mut self,
        requests: impl tokio_stream::Stream<Item = pb::SignedRequest> + Send + 'static,
    ) -> Result<
        impl tokio_stream::Stream<Item = Result<pb::PostResult, tonic::Status>> + Send + 'static,
        tonic::Status,
    > {
        use tokio_stream::StreamExt;
        let results = self.ledger.post_stream(requests).await?.into_inner();
        let session = self.session.clone();
        Ok(results.map(move |result| {
            if let Ok(pb::PostResult {
                result: Some(pb::post_result::Result::Ok(ok)),
            }) = &result
            {
                session.saw(ok.seq.saturating_add(1));
            }
            result
        }))
    }

    pub async fn post_batch(
        &mut self,
        requests: Vec<pb::SignedRequest>,
    ) -> Result<Vec<pb::PostResult>, tonic::Status> {
        Ok(self
            .ledger
            .post_batch(pb::PostBatchRequest { requests })
            .await?
            .into_inner()
            .results)
    }
}
