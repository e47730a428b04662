//! `fundtrail reconcile`: a bank's 一卡通 result file matched against the
//! payments a county recorded (docs/reconcile.md). Reads the file (CSV with
//! named columns, UTF-8 or GB18030), refuses every malformed line with its
//! number and reason, and reports each line and each unreported payment.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fundtrail_client::Client;
use fundtrail_core::dates::format_date;
use fundtrail_core::money::Fen;
use fundtrail_core::reconcile::{
    reconcile, summary, BankLine, Columns, Finding, Payment, BANK_FILE_BYTES_MAX,
    BANK_FILE_LINES_MAX,
};
use serde_json::json;

use crate::csvexport::{disbursements, registered_households};
use crate::{connect, Server};

#[derive(Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    server: Server,
    /// The bank's result file (docs/reconcile.md).
    #[arg(long)]
    bank_file: PathBuf,
    /// The county's org id: its households and the payments it signed.
    #[arg(long)]
    county: String,
    /// Reconcile the well-formed lines of a file that has malformed ones
    /// (each still reported); without it such a file is refused whole.
    #[arg(long)]
    skip_bad_lines: bool,
}

/// A line the file could not give, with why.
struct BadLine {
    line_no: u64,
    reason: String,
}

/// The file's text: UTF-8 (a byte-order mark is dropped), else GB18030.
fn decode(bytes: &[u8]) -> Result<String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_string());
    }
    encoding_rs::GB18030
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|text| text.into_owned())
        .context("the bank file is neither UTF-8 nor GB18030 text")
}

/// The file's lines, and the ones that were malformed.
fn read_bank_file(path: &PathBuf) -> Result<(Vec<BankLine>, Vec<BadLine>)> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > BANK_FILE_BYTES_MAX as u64 {
        bail!(
            "{} is {size} bytes; at most {BANK_FILE_BYTES_MAX} are read",
            path.display()
        );
    }
    let text = decode(&std::fs::read(path)?)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(header) => header.context("line 1 (the header) is not CSV")?,
        None => bail!("the bank file is empty: it needs a header row"),
    };
    let columns =
        Columns::from_header(&header.iter().collect::<Vec<_>>()).map_err(anyhow::Error::msg)?;
    let (mut lines, mut bad) = (Vec::new(), Vec::new());
    for (i, record) in records.enumerate() {
        if i + 2 > BANK_FILE_LINES_MAX {
            bail!("the bank file has more than {BANK_FILE_LINES_MAX} lines");
        }
        let line_no = (i + 2) as u64;
        match record {
            Ok(record) if record.iter().all(|f| f.trim().is_empty()) => {}
            Ok(record) => match columns.line(line_no, &record.iter().collect::<Vec<_>>()) {
                Ok(line) => lines.push(line),
                Err(reason) => bad.push(BadLine { line_no, reason }),
            },
            Err(e) => bad.push(BadLine {
                line_no,
                reason: format!("not CSV: {e}"),
            }),
        }
    }
    Ok((lines, bad))
}

/// The county's payments to the households it registered, not reversed.
async fn payments(client: &mut Client, county: &str) -> Result<Vec<Payment>> {
    let households = registered_households(client, county).await?;
    let mut payments = Vec::new();
    for (entry, d) in disbursements(client, county).await? {
        let Some(household) = households.get(&d.household_account_id) else {
            continue;
        };
        if entry.reversed_by_seq.is_some() {
            continue;
        }
        let effects = entry.effects.unwrap_or_default();
        payments.push(Payment {
            seq: entry.seq,
            household_ref: household.household_ref.clone(),
            amount: Fen(effects.legs.iter().map(|l| l.amount_fen).sum()),
            value_day: effects.value_day,
        });
    }
    Ok(payments)
}

fn finding_json(finding: &Finding) -> serde_json::Value {
    let mut value = json!({ "kind": finding.kind() });
    let (line, seq) = match *finding {
        Finding::Credited { line_no, seq } | Finding::Failed { line_no, seq } => {
            (Some(line_no), Some(seq))
        }
        Finding::Mismatch {
            line_no,
            seq,
            amount_differs,
            date_differs,
        } => {
            value["amount_differs"] = json!(amount_differs);
            value["date_differs"] = json!(date_differs);
            (Some(line_no), Some(seq))
        }
        Finding::NoPayment { line_no } => (Some(line_no), None),
        Finding::DuplicateReference {
            line_no,
            first_line_no,
        } => {
            value["first_line"] = json!(first_line_no);
            (Some(line_no), None)
        }
        Finding::NoBankLine { seq } => (None, Some(seq)),
    };
    value["line"] = json!(line);
    value["seq"] = json!(seq);
    value
}

fn finding_text(
    finding: &Finding,
    lines: &HashMap<u64, &BankLine>,
    paid: &HashMap<u64, &Payment>,
) -> String {
    let bank = |line_no: u64| {
        lines.get(&line_no).map_or(String::new(), |l| {
            format!(
                "{} {} {} 流水号 {}",
                l.household_ref,
                l.amount,
                format_date(l.value_day),
                l.bank_reference
            )
        })
    };
    let record = |seq: u64| {
        paid.get(&seq).map_or(format!("#{seq}"), |p| {
            format!(
                "#{seq} ({} {} {})",
                p.household_ref,
                p.amount,
                format_date(p.value_day)
            )
        })
    };
    match *finding {
        Finding::Credited { line_no, seq } => {
            format!("line {line_no}: credited, record {}", record(seq))
        }
        Finding::Failed { line_no, seq } => {
            format!(
                "line {line_no}: FAILED at the bank: {}; record {} did not arrive",
                bank(line_no),
                record(seq)
            )
        }
        Finding::NoPayment { line_no } => {
            format!("line {line_no}: NO PAYMENT recorded for {}", bank(line_no))
        }
        Finding::Mismatch {
            line_no,
            seq,
            amount_differs,
            date_differs,
        } => format!(
            "line {line_no}: MISMATCH ({}{}): bank {}, record {}",
            if amount_differs { "amount" } else { "" },
            match (amount_differs, date_differs) {
                (true, true) => " and date",
                (false, true) => "date",
                _ => "",
            },
            bank(line_no),
            record(seq)
        ),
        Finding::DuplicateReference {
            line_no,
            first_line_no,
        } => {
            format!(
                "line {line_no}: DUPLICATE bank reference, first on line {first_line_no}: {}",
                bank(line_no)
            )
        }
        Finding::NoBankLine { seq } => {
            format!("record {}: paid, NO BANK LINE reports it", record(seq))
        }
    }
}

pub async fn run(args: ReconcileArgs) -> Result<()> {
    let (lines, bad) = read_bank_file(&args.bank_file)?;
    if !bad.is_empty() && !args.skip_bad_lines {
        for b in &bad {
            eprintln!("line {}: {}", b.line_no, b.reason);
        }
        bail!(
            "{} has {} malformed lines; nothing was reconciled (--skip-bad-lines reconciles the others)",
            args.bank_file.display(),
            bad.len()
        );
    }
    let mut client = connect(&args.server).await?;
    let payments = payments(&mut client, &args.county).await?;
    let findings = reconcile(&lines, &payments);
    let counts = summary(&findings);
    if args.server.json {
        let value = json!({
            "county": args.county,
            "lines": lines.len(),
            "payments": payments.len(),
            "summary": counts,
            "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
            "bad_lines": bad.iter().map(|b| json!({"line": b.line_no, "reason": b.reason})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for b in &bad {
        println!("line {}: skipped: {}", b.line_no, b.reason);
    }
    let by_line: HashMap<u64, &BankLine> = lines.iter().map(|l| (l.line_no, l)).collect();
    let by_seq: HashMap<u64, &Payment> = payments.iter().map(|p| (p.seq, p)).collect();
    for finding in findings.iter().filter(|f| f.kind() != "CREDITED") {
        println!("{}", finding_text(finding, &by_line, &by_seq));
    }
    println!(
        "{} lines against {} payments of {}: {}",
        lines.len(),
        payments.len(),
        args.county,
        counts
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
