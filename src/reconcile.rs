//! `fundtrail reconcile`: a bank's 一卡通 result file matched against the
//! payments a county recorded (docs/reconcile.md). Reads the file (CSV with
//! named columns, UTF-8 or GB18030), refuses every malformed line with its
//! number and reason, and reports each line and each unreported payment.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fundtrail_api::pb;
use fundtrail_client::{Client, Signer};
use fundtrail_core::dates::format_date;
use fundtrail_core::money::Fen;
use fundtrail_core::reconcile::{
    reconcile, summary, BankLine, Columns, Finding, Payment, BANK_FILE_BYTES_MAX,
    BANK_FILE_LINES_MAX,
};
use serde_json::json;

use crate::csvexport::{body_of, disbursements, registered_households, EntryPages};
use crate::remote::{connect, Server};

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
    /// Post the bank's results as signed records with the county's key
    /// (--key): a ConfirmCredit for each credited payment, dated the
    /// bank's value date, and a BANK_FAILURE Return for each failed one.
    /// A payment whose result was posted before is not posted again; each
    /// request uses its bank reference as idempotency key.
    #[arg(long)]
    post: bool,
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

/// Where a payment went from and to, for posting the bank's result.
struct PaidAccounts {
    household: String,
    paying: String,
}

/// The bank's result the county posted for a payment: its reference, and
/// whether it was a credit.
struct Posted {
    bank_reference: String,
    credited: bool,
}

/// The bank's results `county` posted, by payment seq.
async fn posted_results(client: &mut Client, county: &str) -> Result<HashMap<u64, Posted>> {
    let mut posted = HashMap::new();
    for kind in ["ConfirmCredit", "Return"] {
        let mut pages = EntryPages::new(pb::ListEntriesRequest {
            org_id: county.into(),
            kind: kind.into(),
            ..Default::default()
        });
        while let Some(entries) = pages.next(client).await? {
            for entry in &entries {
                let (seq, bank_reference, credited) = match body_of(entry) {
                    Some(pb::request::Body::ConfirmCredit(c)) => {
                        (c.disbursement_seq, c.bank_reference.clone(), true)
                    }
                    Some(pb::request::Body::Return(r))
                        if r.kind() == pb::ReturnKind::BankFailure =>
                    {
                        (r.disbursement_seq, r.bank_reference.clone(), false)
                    }
                    _ => continue,
                };
                posted.insert(
                    seq,
                    Posted {
                        bank_reference,
                        credited,
                    },
                );
            }
        }
    }
    Ok(posted)
}

/// The county's payments to the households it registered, not reversed
/// (marked when the bank sent them back), with each one's accounts by seq.
async fn payments(
    client: &mut Client,
    county: &str,
    posted: &HashMap<u64, Posted>,
) -> Result<(Vec<Payment>, HashMap<u64, PaidAccounts>)> {
    let households = registered_households(client, county).await?;
    let mut payments = Vec::new();
    let mut accounts = HashMap::new();
    for (entry, d) in disbursements(client, county).await? {
        let Some(household) = households.get(&d.household_account_id) else {
            continue;
        };
        if entry.reversed_by_seq.is_some() {
            continue;
        }
        let effects = entry.effects.unwrap_or_default();
        accounts.insert(
            entry.seq,
            PaidAccounts {
                household: d.household_account_id.clone(),
                paying: d.from_account_id.clone(),
            },
        );
        payments.push(Payment {
            seq: entry.seq,
            household_ref: household.household_ref.clone(),
            amount: Fen(effects.legs.iter().map(|l| l.amount_fen).sum()),
            value_day: effects.value_day,
            returned_by_bank: posted.get(&entry.seq).is_some_and(|p| !p.credited),
        });
    }
    Ok((payments, accounts))
}

/// What posting the bank's result for a finding comes to: nothing (not a
/// result), a result posted before, or a signed record to post.
enum ToPost {
    Before { line_no: u64, reference: String },
    Record(u64, String, pb::request::Body),
}

/// The signed record that posts the bank's result for `seq`, if the
/// finding is a result (credited or failed) not posted before.
fn result_body(
    finding: &Finding,
    lines: &HashMap<u64, &BankLine>,
    accounts: &HashMap<u64, PaidAccounts>,
    posted: &HashMap<u64, Posted>,
) -> Option<ToPost> {
    use pb::request::Body as B;
    let (line_no, seq, credited) = match *finding {
        Finding::Credited { line_no, seq } => (line_no, seq, true),
        Finding::Failed { line_no, seq } => (line_no, seq, false),
        _ => return None,
    };
    if let Some(before) = posted.get(&seq) {
        return Some(ToPost::Before {
            line_no,
            reference: before.bank_reference.clone(),
        });
    }
    let line = lines.get(&line_no)?;
    let paid = accounts.get(&seq)?;
    let document_no = format!("一卡通结果 {}", line.bank_reference);
    let body = if credited {
        B::ConfirmCredit(pb::ConfirmCredit {
            disbursement_seq: seq,
            household_account_id: paid.household.clone(),
            bank_reference: line.bank_reference.clone(),
            document_no,
        })
    } else {
        B::Return(pb::Return {
            from_account_id: paid.household.clone(),
            to_account_id: paid.paying.clone(),
            amount_fen: line.amount.0,
            kind: pb::ReturnKind::BankFailure as i32,
            document_no,
            reason: "银行入账失败".into(),
            disbursement_seq: seq,
            bank_reference: line.bank_reference.clone(),
            ..Default::default()
        })
    };
    let value_date = if credited {
        format_date(line.value_day)
    } else {
        String::new()
    };
    Some(ToPost::Record(line_no, value_date, body))
}

/// Posts the bank's results one by one. A payment whose result was posted
/// before is not posted again: reported as such when the reference is the
/// line's, refused when it is another. Fails after all were tried if any
/// was refused.
async fn post_results(
    client: &mut Client,
    signer: &Signer,
    lines: &HashMap<u64, &BankLine>,
    results: Vec<ToPost>,
) -> Result<()> {
    let (mut posted, mut before, mut refused) = (0, 0, 0);
    for result in results {
        let (line_no, value_date, body) = match result {
            ToPost::Record(line_no, value_date, body) => (line_no, value_date, body),
            ToPost::Before { line_no, reference } => {
                if lines
                    .get(&line_no)
                    .is_some_and(|l| l.bank_reference == reference)
                {
                    before += 1;
                    println!("line {line_no}: posted before");
                } else {
                    refused += 1;
                    println!(
                        "line {line_no}: REFUSED: the payment's bank result was posted before, with reference {reference}"
                    );
                }
                continue;
            }
        };
        let reference = match &body {
            pb::request::Body::ConfirmCredit(c) => c.bank_reference.clone(),
            pb::request::Body::Return(r) => r.bank_reference.clone(),
            _ => unreachable!("only bank results are posted"),
        };
        let mut request = client.request_with_key(body, reference);
        request.value_date = value_date;
        match client.post_signed(signer.sign(&request)).await {
            Ok(done) if done.duplicate => {
                before += 1;
                println!("line {line_no}: posted before as record {}", done.seq);
            }
            Ok(done) => {
                posted += 1;
                println!("line {line_no}: posted as record {}", done.seq);
            }
            Err(status) => {
                refused += 1;
                println!("line {line_no}: REFUSED: {}", status.message());
            }
        }
    }
    println!("bank results: {posted} posted, {before} posted before, {refused} refused");
    if refused > 0 {
        bail!("{refused} bank results were refused");
    }
    Ok(())
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
    if args.post && args.server.json {
        bail!("--post reports line by line in text; leave out --json");
    }
    // The key is checked before anything is read or posted.
    let signer = match args.post {
        true => Some(Signer::from_key_file(args.server.key_file()?)?),
        false => None,
    };
    let mut client = connect(&args.server).await?;
    let posted = posted_results(&mut client, &args.county).await?;
    let (payments, accounts) = payments(&mut client, &args.county, &posted).await?;
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
    if let Some(signer) = signer {
        let results = findings
            .iter()
            .filter_map(|f| result_body(f, &by_line, &accounts, &posted))
            .collect();
        post_results(&mut client, &signer, &by_line, results).await?;
    }
    Ok(())
}
