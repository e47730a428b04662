//! Reaching a running fundtrail service from the CLI: the `--server`,
//! `--key` and TLS options every remote command takes, the connection they
//! make, and refusals as errors a person can read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use fundtrail_client::{Client, ConnectOptions, Session, Signer, TlsFiles};

#[derive(Args, Clone)]
pub struct Server {
    /// URL of the fundtrail service.
    #[arg(
        long,
        env = "FUNDTRAIL_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub(crate) server: String,
    /// Key file of the org making the call: it signs every read
    /// (docs/read-signature.md) and every posted request.
    #[arg(long, env = "FUNDTRAIL_KEY")]
    pub(crate) key: Option<PathBuf>,
    /// PEM file of the CA that signed the server's TLS certificate
    /// (https:// URLs).
    #[arg(long, env = "FUNDTRAIL_CA_CERT")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// PEM client certificate, for servers that require mTLS.
    #[arg(long, env = "FUNDTRAIL_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, env = "FUNDTRAIL_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Answer reads only once the ledger's derived state holds record SEQ
    /// (for example the seq an earlier `fundtrail post` printed), waiting
    /// for it if need be.
    #[arg(long, env = "FUNDTRAIL_MIN_SEQ", value_name = "SEQ")]
    pub(crate) min_seq: Option<u64>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

impl Server {
    /// The key file given with --key, which this command needs.
    pub(crate) fn key_file(&self) -> Result<&Path> {
        self.key
            .as_deref()
            .context("this command signs with an org's key: give --key FILE (or FUNDTRAIL_KEY)")
    }
}

/// A gRPC refusal as an error a person can read.
pub fn status(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("refused ({:?}): {}", status.code(), status.message())
}

pub(crate) async fn connect(server: &Server) -> Result<Client> {
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
