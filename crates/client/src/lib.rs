//! A typed fundtrail client: signs requests with an org's Ed25519 key and
//! talks to the `Ledger` and `Query` services. Used by the CLI, the tests and
//! other Rust systems.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use fundtrail_client::{Client, Signer};
//! use fundtrail_api::pb;
//! let signer = Signer::from_key_file("fundtrail-data/root.key".as_ref())?;
//! let mut client = Client::connect("http://127.0.0.1:50051").await?;
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
use fundtrail_api::pb;
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::signing;
use prost::Message;
use tonic::transport::Channel;

pub use fundtrail_api;

pub mod proofs;
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

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Encodes and signs `request` (DESIGN.md §4).
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

/// A connection to one fundtrail ledger.
#[derive(Clone)]
pub struct Client {
    pub ledger: pb::ledger_client::LedgerClient<Channel>,
    pub query: pb::query_client::QueryClient<Channel>,
    pub audit: pb::audit_client::AuditClient<Channel>,
    ledger_id: String,
}

impl Client {
    /// Connects and learns the ledger's id.
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let fail = |reason: String| ClientError::Connect {
            url: url.to_string(),
            reason,
        };
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| fail(e.to_string()))?
            .connect()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let ledger = pb::ledger_client::LedgerClient::new(channel.clone())
            .max_decoding_message_size(32 << 20);
        let audit =
            pb::audit_client::AuditClient::new(channel.clone()).max_decoding_message_size(32 << 20);
        let mut query =
            pb::query_client::QueryClient::new(channel).max_decoding_message_size(32 << 20);
        let info = query
            .get_ledger(pb::GetLedgerRequest {})
            .await?
            .into_inner();
        Ok(Client {
            ledger,
            query,
            audit,
            ledger_id: info.ledger_id,
        })
    }

    pub fn ledger_id(&self) -> &str {
        &self.ledger_id
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
