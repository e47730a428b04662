//! `fundtrail public-notice`: the 公告公示 sheet of a county, or of one of
//! its villages, as a printable HTML page or as CSV: the announced projects
//! (name, budget, 绩效目标, responsible unit, money received) and every
//! payment to its households, with the household's registry reference
//! masked. The log holds no names; the sheet adds none.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use fundtrail_api::pb;
use fundtrail_client::Client;
use fundtrail_core::dates::{day_of_ms, format_date};
use fundtrail_core::money::{format_fen, plain_yuan};

use crate::csvexport::{disbursements, registered_households, ProjectPages};
use crate::remote::{connect, status, Server};

#[derive(Args)]
pub struct NoticeArgs {
    #[command(flatten)]
    server: Server,
    /// The county's org id: its projects and the payments it made.
    #[arg(long)]
    county: String,
    /// Only this township or village (a 9- or 12-digit code, or any prefix
    /// of one): projects built there, households registered there.
    #[arg(long, default_value = "")]
    village: String,
    /// Write CSV (UTF-8 with BOM) instead of HTML.
    #[arg(long)]
    csv: bool,
    /// The file to write (new).
    #[arg(long)]
    out: PathBuf,
}

/// One announced project as the sheet shows it.
struct Project {
    name: String,
    location_code: String,
    budget_fen: u128,
    targets: String,
    responsible_unit: String,
    received_fen: u128,
    document_no: String,
}

/// One payment to a household.
struct Payment {
    seq: u64,
    value_date: String,
    masked_ref: String,
    village_code: String,
    amount_fen: u128,
    period: String,
    document_no: String,
    reversed: bool,
}

/// A household registry reference with all but its first four and last
/// two characters hidden; a short one keeps only its last character.
pub fn mask_ref(household_ref: &str) -> String {
    let chars: Vec<char> = household_ref.chars().collect();
    let (head, tail) = if chars.len() > 8 { (4, 2) } else { (0, 1) };
    let tail = tail.min(chars.len());
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < head || i + tail >= chars.len() {
                c
            } else {
                '*'
            }
        })
        .collect()
}

pub async fn run(args: NoticeArgs) -> Result<()> {
    if args.out.exists() {
        bail!(
            "{} exists; public-notice writes a new file",
            args.out.display()
        );
    }
    let mut client = connect(&args.server).await?;
    let county = client
        .query
        .get_org(pb::GetOrgRequest {
            org_id: args.county.clone(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let projects = projects(&mut client, &args).await?;
    let payments = payments(&mut client, &args).await?;
    let today = format_date(day_of_ms(fundtrail_client::now_ms()));
    let text = if args.csv {
        csv_sheet(&projects, &payments)?
    } else {
        html_sheet(&county.name, &args.village, &today, &projects, &payments)
    };
    std::fs::write(&args.out, text)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "wrote {} projects and {} payments to {}",
        projects.len(),
        payments.len(),
        args.out.display()
    );
    Ok(())
}

async fn projects(client: &mut Client, args: &NoticeArgs) -> Result<Vec<Project>> {
    let mut announced = Vec::new();
    let mut pages = ProjectPages::new(client, &args.county).await?;
    while let Some(projects) = pages.next(client).await? {
        for project in projects {
            let p = project.registered;
            let Some(document_no) = project.announcement else {
                continue;
            };
            if !p.location_code.starts_with(&args.village) {
                continue;
            }
            announced.push(Project {
                name: p.name,
                location_code: p.location_code,
                budget_fen: u128::from(p.budget_fen),
                targets: p.performance_targets.join("；"),
                responsible_unit: p.responsible_unit,
                received_fen: project.received_fen,
                document_no,
            });
        }
    }
    Ok(announced)
}

async fn payments(client: &mut Client, args: &NoticeArgs) -> Result<Vec<Payment>> {
    let households = registered_households(client, &args.county).await?;
    let mut payments = Vec::new();
    for (entry, d) in disbursements(client, &args.county).await? {
        let Some(household) = households.get(&d.household_account_id) else {
            // Another county's household, or one the reader sees only
            // under its pseudonym: not this county's to announce.
            continue;
        };
        if !household.village_code.starts_with(&args.village) {
            continue;
        }
        let amount_fen = entry
            .effects
            .iter()
            .flat_map(|e| &e.legs)
            .map(|leg| u128::from(leg.amount_fen))
            .sum();
        payments.push(Payment {
            seq: entry.seq,
            value_date: format_date(entry.effects.as_ref().map_or(0, |e| e.value_day)),
            masked_ref: mask_ref(&household.household_ref),
            village_code: household.village_code.clone(),
            amount_fen,
            period: d.period,
            document_no: d.document_no,
            reversed: entry.reversed_by_seq.is_some(),
        });
    }
    Ok(payments)
}

const PROJECT_HEADER: [&str; 7] = [
    "项目名称",
    "建设地点",
    "预算（元）",
    "绩效目标",
    "责任单位",
    "已到位资金（元）",
    "公告文号",
];

const PAYMENT_HEADER: [&str; 8] = [
    "记录序号",
    "业务日期",
    "户编号（脱敏）",
    "所在村",
    "金额（元）",
    "所属期间",
    "文号",
    "状态",
];

fn payment_state(payment: &Payment) -> &'static str {
    if payment.reversed {
        "已冲销"
    } else {
        "已拨付"
    }
}

fn csv_sheet(projects: &[Project], payments: &[Payment]) -> Result<Vec<u8>> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    {
        let mut csv = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(&mut out);
        csv.write_record(["项目公示"])?;
        csv.write_record(PROJECT_HEADER)?;
        for p in projects {
            csv.write_record([
                p.name.clone(),
                p.location_code.clone(),
                plain_yuan(p.budget_fen),
                p.targets.clone(),
                p.responsible_unit.clone(),
                plain_yuan(p.received_fen),
                p.document_no.clone(),
            ])?;
        }
        csv.write_record([""])?;
        csv.write_record(["到户资金公示"])?;
        csv.write_record(PAYMENT_HEADER)?;
        for p in payments {
            csv.write_record([
                p.seq.to_string(),
                p.value_date.clone(),
                p.masked_ref.clone(),
                p.village_code.clone(),
                plain_yuan(p.amount_fen),
                p.period.clone(),
                p.document_no.clone(),
                payment_state(p).to_string(),
            ])?;
        }
        csv.flush()?;
    }
    Ok(out)
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    out.push_str("<table><thead><tr>");
    for cell in header {
        let _ = write!(out, "<th>{}</th>", escape(cell));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

fn html_sheet(
    county_name: &str,
    village: &str,
    today: &str,
    projects: &[Project],
    payments: &[Payment],
) -> Vec<u8> {
    let place = if village.is_empty() {
        escape(county_name)
    } else {
        format!("{} {}", escape(county_name), escape(village))
    };
    let paid_fen: u128 = payments
        .iter()
        .filter(|p| !p.reversed)
        .map(|p| p.amount_fen)
        .sum();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <title>{place} 资金公告公示</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%;margin-bottom:2em}}\
         th,td{{border:1px solid #444;padding:4px 6px;font-size:12px}}\
         @media print{{body{{margin:0}}}}</style></head><body>\n\
         <h1>{place} 扶贫项目和到户资金公告公示</h1>\n\
         <p>公示日期：{today}（北京时间）。数据取自 fundtrail 签名账本，每条记录可按记录序号核验。</p>\n"
    );
    out.push_str("<h2>一、项目公示</h2>\n");
    table(
        &mut out,
        &PROJECT_HEADER,
        projects.iter().map(|p| {
            vec![
                p.name.clone(),
                p.location_code.clone(),
                format_fen(p.budget_fen),
                p.targets.clone(),
                p.responsible_unit.clone(),
                format_fen(p.received_fen),
                p.document_no.clone(),
            ]
        }),
    );
    let _ = writeln!(
        out,
        "<h2>二、到户资金公示</h2>\n<p>共 {} 笔，已拨付合计 {}。</p>",
        payments.len(),
        escape(&format_fen(paid_fen))
    );
    table(
        &mut out,
        &PAYMENT_HEADER,
        payments.iter().map(|p| {
            vec![
                p.seq.to_string(),
                p.value_date.clone(),
                p.masked_ref.clone(),
                p.village_code.clone(),
                format_fen(p.amount_fen),
                p.period.clone(),
                p.document_no.clone(),
                payment_state(p).to_string(),
            ]
        }),
    );
    out.push_str("</body></html>\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_reference_keeps_only_its_ends() {
        assert_eq!(mask_ref("HH-622926-0001"), "HH-6********01");
        assert_eq!(mask_ref("12345678"), "*******8");
        assert_eq!(mask_ref("A"), "A");
        assert_eq!(mask_ref(""), "");
    }

    #[test]
    fn html_escapes_what_it_prints() {
        assert_eq!(escape("<b>&\"'"), "&lt;b&gt;&amp;&quot;&#39;");
    }
}
