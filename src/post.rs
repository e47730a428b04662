//! `fundtrail post …`: build a request, sign it with a key file, post it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fundtrail_api::pb;
use fundtrail_client::{new_idempotency_key, Signer};
use fundtrail_core::keyfile::KeyFile;
use fundtrail_core::money::Fen;

use crate::{output, status, Server};

#[derive(Args)]
pub struct PostArgs {
    #[command(flatten)]
    server: Server,
    /// Key file of the signing org (see `fundtrail keygen`).
    #[arg(long, env = "FUNDTRAIL_KEY")]
    key: PathBuf,
    /// Idempotency key: posting again with the same key and the same request
    /// returns the first result instead of recording twice. Default: random.
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(subcommand)]
    request: PostRequest,
}

#[derive(Clone, Copy, ValueEnum)]
enum Role {
    Administrator,
    Finance,
    Auditor,
    Witness,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Treasury,
    Programme,
    Pool,
    Project,
    Household,
}

/// An amount given in yuan ("1234.56") and turned into fen exactly.
fn yuan(text: &str) -> Result<u64, String> {
    Fen::parse_yuan(text).map(|f| f.0)
}

/// "SOURCE_SEQ:YUAN", e.g. "12:5000.00".
fn earmark(text: &str) -> Result<pb::SourceAmount, String> {
    let (seq, amount) = text
        .split_once(':')
        .ok_or("an earmark is SOURCE_SEQ:YUAN, e.g. 12:5000.00")?;
    Ok(pb::SourceAmount {
        source_seq: seq
            .parse()
            .map_err(|_| format!("{seq:?} is not a source sequence number"))?,
        amount_fen: yuan(amount)?,
    })
}

#[derive(Subcommand)]
enum PostRequest {
    /// Register a child org of the signing org, with its first key.
    RegisterOrg {
        #[arg(long)]
        org_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// GB/T 2260 division code, e.g. 620000 (甘肃省), 513431 (昭觉县).
        #[arg(long)]
        division: String,
        /// The new org's public key: 64 hex digits, or a key file.
        #[arg(long)]
        public_key: String,
    },
    /// Add a key to the signing org or one of its child orgs.
    AddKey {
        #[arg(long)]
        org_id: String,
        /// 64 hex digits, or a key file.
        #[arg(long)]
        public_key: String,
    },
    /// Revoke a key of the signing org or one of its child orgs.
    RevokeKey {
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Open an account owned by the signing org.
    OpenAccount {
        #[arg(long)]
        account_id: String,
        #[arg(long, value_enum)]
        kind: Kind,
        #[arg(long)]
        name: String,
        /// Fund programme code the account holds.
        #[arg(long, default_value = "")]
        programme: String,
        /// Household registry id (household accounts only; never a name or ID number).
        #[arg(long, default_value = "")]
        household_ref: String,
    },
    /// Appropriate money into an account of the signing org (creates a source).
    Appropriate {
        #[arg(long)]
        account: String,
        /// Amount in yuan, e.g. 1000000.00.
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long)]
        programme: String,
        #[arg(long)]
        fiscal_year: u32,
        /// 文号 of the appropriation document.
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        purpose: String,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Transfer between accounts (not to households).
    Transfer {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        /// Spend these sources (SOURCE_SEQ:YUAN, repeatable); default oldest first.
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        purpose: String,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Pay a registered household.
    Disburse {
        #[arg(long)]
        from: String,
        /// The household's account id.
        #[arg(long)]
        household: String,
        #[arg(long, value_parser = yuan)]
        amount: u64,
        #[arg(long = "source", value_parser = earmark)]
        sources: Vec<pb::SourceAmount>,
        #[arg(long)]
        programme: String,
        /// Month the payment is for, YYYY-MM.
        #[arg(long)]
        period: String,
        #[arg(long)]
        document: String,
        #[arg(long, default_value = "")]
        memo: String,
    },
    /// Reverse an earlier movement with a compensating record.
    Reverse {
        /// Sequence number of the record to reverse.
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        document: String,
        #[arg(long)]
        reason: String,
    },
}

fn public_key(text: &str) -> Result<Vec<u8>> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(hex::decode(text)?);
    }
    let json = std::fs::read_to_string(text)
        .with_context(|| format!("{text:?} is neither 64 hex digits nor a readable key file"))?;
    let (file, _) = KeyFile::from_json(&json).map_err(anyhow::Error::msg)?;
    Ok(hex::decode(file.public_key_hex)?)
}

fn body(request: PostRequest) -> Result<pb::request::Body> {
    use pb::request::Body as B;
    Ok(match request {
        PostRequest::RegisterOrg {
            org_id,
            name,
            role,
            division,
            public_key: key,
        } => B::RegisterOrg(pb::RegisterOrg {
            org_id,
            name,
            role: match role {
                Role::Administrator => pb::OrgRole::Administrator,
                Role::Finance => pb::OrgRole::Finance,
                Role::Auditor => pb::OrgRole::Auditor,
                Role::Witness => pb::OrgRole::Witness,
            } as i32,
            division_code: division,
            public_key: public_key(&key)?,
        }),
        PostRequest::AddKey {
            org_id,
            public_key: key,
        } => B::AddKey(pb::AddKey {
            org_id,
            public_key: public_key(&key)?,
        }),
        PostRequest::RevokeKey { key_id, reason } => B::RevokeKey(pb::RevokeKey { key_id, reason }),
        PostRequest::OpenAccount {
            account_id,
            kind,
            name,
            programme,
            household_ref,
        } => B::OpenAccount(pb::OpenAccount {
            account_id,
            kind: match kind {
                Kind::Treasury => pb::AccountKind::Treasury,
                Kind::Programme => pb::AccountKind::Programme,
                Kind::Pool => pb::AccountKind::Pool,
                Kind::Project => pb::AccountKind::Project,
                Kind::Household => pb::AccountKind::Household,
            } as i32,
            name,
            programme_code: programme,
            household_ref,
        }),
        PostRequest::Appropriate {
            account,
            amount,
            programme,
            fiscal_year,
            document,
            purpose,
            memo,
        } => B::Appropriation(pb::Appropriation {
            account_id: account,
            amount_fen: amount,
            programme_code: programme,
            fiscal_year,
            document_no: document,
            purpose,
            memo,
        }),
        PostRequest::Transfer {
            from,
            to,
            amount,
            sources,
            document,
            purpose,
            memo,
        } => B::Transfer(pb::Transfer {
            from_account_id: from,
            to_account_id: to,
            amount_fen: amount,
            sources,
            document_no: document,
            purpose,
            memo,
        }),
        PostRequest::Disburse {
            from,
            household,
            amount,
            sources,
            programme,
            period,
            document,
            memo,
        } => B::Disbursement(pb::Disbursement {
            from_account_id: from,
            household_account_id: household,
            amount_fen: amount,
            sources,
            programme_code: programme,
            period,
            document_no: document,
            memo,
        }),
        PostRequest::Reverse {
            seq,
            document,
            reason,
        } => B::Reversal(pb::Reversal {
            target_seq: seq,
            document_no: document,
            reason,
        }),
    })
}

pub async fn run(args: PostArgs) -> Result<()> {
    let signer = Signer::from_key_file(&args.key)?;
    let body = body(args.request)?;
    let mut client = crate::connect(&args.server).await?;
    let idempotency_key = args.idempotency_key.unwrap_or_else(new_idempotency_key);
    if idempotency_key.is_empty() {
        bail!("--idempotency-key may not be empty");
    }
    let request = client.request_with_key(body, idempotency_key.clone());
    let posted = client
        .post_signed(signer.sign(&request))
        .await
        .map_err(status)?;
    output::posted(&posted, &idempotency_key, args.server.json);
    Ok(())
}
