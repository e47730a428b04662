//! `fundtrail-audit`: the audit of an exported log, alone.
//!
//! ```text
//! fundtrail-audit --export ledger.export --vkey "$(cat log.vkey)" --checkpoint checkpoint.txt
//! ```

use clap::Parser;

/// Checks an exported fundtrail log against a signed checkpoint and the
/// pinned log key, offline.
#[derive(Parser)]
#[command(name = "fundtrail-audit", version)]
struct Cli {
    #[command(flatten)]
    args: fundtrail_audit::AuditArgs,
}

fn main() -> anyhow::Result<()> {
    fundtrail_audit::audit(Cli::parse().args)
}
