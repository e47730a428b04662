//! `fundtrail export-csv`: reports an office opens in a spreadsheet. UTF-8
//! with a byte-order mark (so Excel reads the Chinese), a Chinese header
//! row (the English names are in docs/exports.md), amounts in yuan with
//! two decimals, times in China Standard Time. Rows are written a page at
//! a time as they arrive, so no report sits in memory whole.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use fundtrail_api::convert::{body_kind, request_to_core};
use fundtrail_api::pb;
use fundtrail_client::Client;
use fundtrail_core::apply::document_no;
use fundtrail_core::dates::{format_cst_time, format_date};
use fundtrail_core::money::plain_yuan;

use crate::remote::{connect, status, Server};

/// Rows asked for per page.
const PAGE_ROWS: u32 = 1_000;

/// The pages of a `ListEntries` query, fetched one at a time; the client
/// is passed to each call, so it stays free between pages.
pub(crate) struct EntryPages {
    request: pb::ListEntriesRequest,
    done: bool,
}

impl EntryPages {
    pub(crate) fn new(request: pb::ListEntriesRequest) -> EntryPages {
        EntryPages {
            request: pb::ListEntriesRequest {
                page_size: PAGE_ROWS,
                ..request
            },
            done: false,
        }
    }

    /// The next page's entries; `None` after the last.
    pub(crate) async fn next(&mut self, client: &mut Client) -> Result<Option<Vec<pb::Entry>>> {
        if self.done {
            return Ok(None);
        }
        let page = client
            .query
            .list_entries(self.request.clone())
            .await
            .map_err(status)?
            .into_inner();
        self.done = page.next_page_token.is_empty();
        self.request.page_token = page.next_page_token;
        Ok(Some(page.entries))
    }
}

/// A record's decoded request body, if the reader was shown it.
pub(crate) fn body_of(entry: &pb::Entry) -> Option<&pb::request::Body> {
    entry
        .body
        .as_ref()
        .and_then(|request| request.body.as_ref())
}

/// The households `org` registered, by account.
pub(crate) async fn registered_households(
    client: &mut Client,
    org: &str,
) -> Result<HashMap<String, pb::RegisterHousehold>> {
    let mut households = HashMap::new();
    let mut pages = EntryPages::new(pb::ListEntriesRequest {
        org_id: org.into(),
        kind: "RegisterHousehold".into(),
        ..Default::default()
    });
    while let Some(entries) = pages.next(client).await? {
        for entry in &entries {
            if let Some(pb::request::Body::RegisterHousehold(h)) = body_of(entry) {
                households.insert(h.account_id.clone(), h.clone());
            }
        }
    }
    Ok(households)
}

/// The payments to households `org` signed, each with its entry.
pub(crate) async fn disbursements(
    client: &mut Client,
    org: &str,
) -> Result<Vec<(pb::Entry, pb::Disbursement)>> {
    let mut paid = Vec::new();
    let mut pages = EntryPages::new(pb::ListEntriesRequest {
        org_id: org.into(),
        kind: "Disbursement".into(),
        ..Default::default()
    });
    while let Some(entries) = pages.next(client).await? {
        for entry in entries {
            if let Some(pb::request::Body::Disbursement(d)) = body_of(&entry).cloned() {
                paid.push((entry, d));
            }
        }
    }
    Ok(paid)
}

/// A registered project with what reached it and its announcement.
pub(crate) struct Project {
    pub registered: pb::RegisterProject,
    /// Every movement of money into the project, exactly.
    pub received_fen: u128,
    /// The 公告公示 document, if the project was announced.
    pub announcement: Option<String>,
}

/// The projects `org` registered (every org's when empty), a page at a time.
pub(crate) struct ProjectPages {
    pages: EntryPages,
    announced: HashMap<String, String>,
}

impl ProjectPages {
    pub(crate) async fn new(client: &mut Client, org: &str) -> Result<ProjectPages> {
        Ok(ProjectPages {
            pages: EntryPages::new(pb::ListEntriesRequest {
                org_id: org.into(),
                kind: "RegisterProject".into(),
                ..Default::default()
            }),
            announced: announcements(client, org).await?,
        })
    }

    /// The next page's projects; `None` after the last.
    pub(crate) async fn next(&mut self, client: &mut Client) -> Result<Option<Vec<Project>>> {
        let Some(entries) = self.pages.next(client).await? else {
            return Ok(None);
        };
        let mut projects = Vec::with_capacity(entries.len());
        for entry in &entries {
            let Some(pb::request::Body::RegisterProject(registered)) = body_of(entry) else {
                continue;
            };
            projects.push(Project {
                received_fen: project_received_fen(client, &registered.account_id).await?,
                announcement: self.announced.get(&registered.account_id).cloned(),
                registered: registered.clone(),
            });
        }
        Ok(Some(projects))
    }
}

/// The byte-order mark Excel needs to read UTF-8.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Report {
    /// Every record, one row per movement of money.
    Entries,
    /// Payments to households (Disbursement records).
    Payments,
    /// Money held, by age (as `fundtrail idle`).
    Idle,
    /// Findings (as `fundtrail anomalies`).
    Anomalies,
    /// Registered projects: budget, 绩效目标, responsible unit, money received.
    Projects,
    /// Spending progress (支出进度) of `--org`, by programme and month (as
    /// `fundtrail progress`).
    Progress,
}

#[derive(Args)]
pub struct ExportCsvArgs {
    #[command(flatten)]
    server: Server,
    /// Which report.
    #[arg(value_enum)]
    report: Report,
    /// Write here (a new file); standard output when not given.
    #[arg(long)]
    out: Option<PathBuf>,
    /// entries, payments: only records that moved money in or out of this account.
    #[arg(long, default_value = "")]
    account: String,
    /// entries, payments, projects: only records signed by this org.
    #[arg(long, default_value = "")]
    org: String,
    /// entries: only records of this kind, e.g. Transfer.
    #[arg(long, default_value = "")]
    kind: String,
    /// entries, payments: only records citing this 文号.
    #[arg(long, default_value = "")]
    document: String,
    /// idle: only money at least this many days old; anomalies: money idle
    /// this long is an IDLE_FUNDS finding (0: one finding for money idle one
    /// to two years, one for two years or more).
    #[arg(long, default_value_t = 0)]
    days: u32,
    /// idle: central, province, prefecture or county.
    #[arg(long, default_value = "")]
    level: String,
    /// idle: only accounts of orgs whose division code starts with this.
    #[arg(long, default_value = "")]
    division: String,
    /// idle, progress: only money (or quota) of this programme.
    #[arg(long, default_value = "")]
    programme: String,
    /// progress: only quota of this fiscal year (0: every year).
    #[arg(long, default_value_t = 0)]
    fiscal_year: u32,
}

pub async fn run(args: ExportCsvArgs) -> Result<()> {
    let mut client = connect(&args.server).await?;
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = std::io::BufWriter::new(sink);
    sink.write_all(UTF8_BOM)?;
    let mut csv = csv::Writer::from_writer(sink);
    let rows = match args.report {
        Report::Entries => entries(&mut client, &args, &mut csv, false).await?,
        Report::Payments => entries(&mut client, &args, &mut csv, true).await?,
        Report::Idle => idle(&mut client, &args, &mut csv).await?,
        Report::Anomalies => anomalies(&mut client, &args, &mut csv).await?,
        Report::Projects => projects(&mut client, &args, &mut csv).await?,
        Report::Progress => progress(&mut client, &args, &mut csv).await?,
    };
    csv.flush()?;
    if let Some(path) = &args.out {
        eprintln!("wrote {rows} rows to {}", path.display());
    }
    Ok(())
}

type Csv = csv::Writer<std::io::BufWriter<Box<dyn Write>>>;

const ENTRY_HEADER: [&str; 10] = [
    "序号",
    "记账时间",
    "业务日期",
    "类型",
    "签名机构",
    "付出账户",
    "收入账户",
    "金额（元）",
    "资金来源",
    "文号",
];

const PAYMENT_HEADER: [&str; 9] = [
    "序号",
    "记账时间",
    "业务日期",
    "付款机构",
    "付款账户",
    "收款户",
    "金额（元）",
    "项目代码",
    "所属期间",
];

/// Entries (one row per leg), or only Disbursements as payments.
async fn entries(
    client: &mut Client,
    args: &ExportCsvArgs,
    csv: &mut Csv,
    payments: bool,
) -> Result<u64> {
    if payments {
        csv.write_record(PAYMENT_HEADER)?;
    } else {
        csv.write_record(ENTRY_HEADER)?;
    }
    let kind = if payments {
        "Disbursement".to_string()
    } else {
        args.kind.clone()
    };
    let mut rows = 0;
    let mut pages = EntryPages::new(pb::ListEntriesRequest {
        account_id: args.account.clone(),
        org_id: args.org.clone(),
        kind,
        document_no: args.document.clone(),
        ..Default::default()
    });
    while let Some(entries) = pages.next(client).await? {
        for entry in &entries {
            rows += if payments {
                payment_row(csv, entry)?
            } else {
                entry_rows(csv, entry)?
            };
        }
    }
    Ok(rows)
}

fn value_date(entry: &pb::Entry) -> String {
    match entry.effects.as_ref().map_or(0, |e| e.value_day) {
        0 => String::new(),
        day => format_date(day),
    }
}

fn entry_rows(csv: &mut Csv, entry: &pb::Entry) -> Result<u64> {
    let body = body_of(entry).cloned();
    let document = entry
        .body
        .clone()
        .and_then(|request| request_to_core(request).ok())
        .and_then(|request| document_no(&request.body).map(str::to_string))
        .unwrap_or_default();
    let effects = entry.effects.clone().unwrap_or_default();
    let fixed = [
        entry.seq.to_string(),
        format_cst_time(entry.commit_time_ms),
        value_date(entry),
        body_kind(&body).to_string(),
        effects.signer_org_id.clone(),
    ];
    if effects.legs.is_empty() {
        let mut row = fixed.to_vec();
        row.extend([
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            document,
        ]);
        csv.write_record(&row)?;
        return Ok(1);
    }
    for leg in &effects.legs {
        let mut row = fixed.to_vec();
        row.extend([
            leg.from_account_id.clone(),
            leg.to_account_id.clone(),
            plain_yuan(u128::from(leg.amount_fen)),
            leg.source_seq.to_string(),
            document.clone(),
        ]);
        csv.write_record(&row)?;
    }
    Ok(effects.legs.len() as u64)
}

fn payment_row(csv: &mut Csv, entry: &pb::Entry) -> Result<u64> {
    let Some(pb::request::Body::Disbursement(paid)) = body_of(entry) else {
        return Ok(0);
    };
    let effects = entry.effects.clone().unwrap_or_default();
    // The household as the reader may see it: its id, or its pseudonym.
    let household = effects
        .legs
        .first()
        .map(|leg| leg.to_account_id.clone())
        .unwrap_or_else(|| paid.household_account_id.clone());
    let amount_fen: u128 = effects
        .legs
        .iter()
        .map(|leg| u128::from(leg.amount_fen))
        .sum();
    csv.write_record([
        entry.seq.to_string(),
        format_cst_time(entry.commit_time_ms),
        value_date(entry),
        effects.signer_org_id.clone(),
        paid.from_account_id.clone(),
        household,
        plain_yuan(amount_fen),
        paid.programme_code.clone(),
        paid.period.clone(),
    ])?;
    Ok(1)
}

async fn idle(client: &mut Client, args: &ExportCsvArgs, csv: &mut Csv) -> Result<u64> {
    csv.write_record([
        "账户",
        "名称",
        "所属机构",
        "区划代码",
        "层级",
        "余额（元）",
        "闲置（元）",
        "30天内（元）",
        "30至90天（元）",
        "90至365天（元）",
        "365至730天（元）",
        "730天以上（元）",
        "截至日期",
    ])?;
    let mut rows = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .idle_funds(pb::IdleFundsRequest {
                older_than_days: args.days,
                level: args.level.clone(),
                division_prefix: args.division.clone(),
                programme_code: args.programme.clone(),
                page_size: PAGE_ROWS,
                page_token,
            })
            .await
            .map_err(status)?
            .into_inner();
        let as_of = format_date(page.as_of_day);
        for row in &page.rows {
            let yuan = |fen: u64| plain_yuan(u128::from(fen));
            csv.write_record([
                row.account_id.clone(),
                row.name.clone(),
                row.owner_org_id.clone(),
                row.division_code.clone(),
                row.level.clone(),
                yuan(row.balance_fen),
                yuan(row.idle_fen),
                yuan(row.age_0_30_fen),
                yuan(row.age_30_90_fen),
                yuan(row.age_90_365_fen),
                yuan(row.age_365_730_fen),
                yuan(row.age_730_plus_fen),
                as_of.clone(),
            ])?;
            rows += 1;
        }
        if page.next_page_token.is_empty() {
            return Ok(rows);
        }
        page_token = page.next_page_token;
    }
}

async fn anomalies(client: &mut Client, args: &ExportCsvArgs, csv: &mut Csv) -> Result<u64> {
    csv.write_record(["类型", "账户", "相关记录", "金额（元）", "说明"])?;
    let mut rows = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .query
            .anomalies(pb::AnomaliesRequest {
                idle_older_than_days: args.days,
                page_size: PAGE_ROWS,
                page_token,
                unconfirmed_after_days: 0,
            })
            .await
            .map_err(status)?
            .into_inner();
        for finding in &page.findings {
            let seqs: Vec<String> = finding.seqs.iter().map(u64::to_string).collect();
            csv.write_record([
                finding.kind.clone(),
                finding.account_id.clone(),
                seqs.join(" "),
                plain_yuan(u128::from(finding.amount_fen)),
                finding.detail.clone(),
            ])?;
            rows += 1;
        }
        if page.next_page_token.is_empty() {
            return Ok(rows);
        }
        page_token = page.next_page_token;
    }
}

/// The 支出进度 of `--org`, a row per programme and month.
async fn progress(client: &mut Client, args: &ExportCsvArgs, csv: &mut Csv) -> Result<u64> {
    if args.org.is_empty() {
        anyhow::bail!("progress: give the org with --org");
    }
    let progress = client
        .query
        .spending_progress(pb::SpendingProgressRequest {
            org_id: args.org.clone(),
            programme_code: args.programme.clone(),
            fiscal_year: args.fiscal_year,
        })
        .await
        .map_err(status)?
        .into_inner();
    csv.write_record([
        "科目",
        "月份",
        "收到指标（元）",
        "下达指标（元）",
        "到位资金（元）",
        "支出（元）",
        "支出进度（%）",
    ])?;
    for row in &progress.rows {
        csv.write_record([
            row.programme_code.clone(),
            row.month.clone(),
            plain_yuan(u128::from(row.quota_received_fen)),
            plain_yuan(u128::from(row.quota_issued_down_fen)),
            plain_yuan(u128::from(row.cash_received_fen)),
            plain_yuan(u128::from(row.paid_fen)),
            format!(
                "{}.{:02}",
                row.paid_basis_points / 100,
                row.paid_basis_points % 100
            ),
        ])?;
    }
    Ok(progress.rows.len() as u64)
}

/// Registered projects, with what each received (Allocation records into
/// it) and its announcement, a page of registrations at a time.
async fn projects(client: &mut Client, args: &ExportCsvArgs, csv: &mut Csv) -> Result<u64> {
    csv.write_record([
        "项目账户",
        "项目名称",
        "类别",
        "建设地点",
        "年度",
        "预算（元）",
        "绩效目标",
        "责任单位",
        "已到位资金（元）",
        "公告文号",
    ])?;
    let mut rows = 0;
    let mut pages = ProjectPages::new(client, &args.org).await?;
    while let Some(projects) = pages.next(client).await? {
        for Project {
            registered: project,
            received_fen,
            announcement,
        } in projects
        {
            csv.write_record([
                project.account_id,
                project.name,
                project.category,
                project.location_code,
                project.fiscal_year.to_string(),
                plain_yuan(u128::from(project.budget_fen)),
                project.performance_targets.join("；"),
                project.responsible_unit,
                plain_yuan(received_fen),
                announcement.unwrap_or_default(),
            ])?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// The money that reached the project: every leg into it, exactly.
async fn project_received_fen(client: &mut Client, account_id: &str) -> Result<u128> {
    let mut total_fen = 0u128;
    let mut pages = EntryPages::new(pb::ListEntriesRequest {
        account_id: account_id.into(),
        ..Default::default()
    });
    while let Some(entries) = pages.next(client).await? {
        for leg in entries
            .iter()
            .flat_map(|e| e.effects.iter().flat_map(|e| &e.legs))
        {
            if leg.to_account_id == account_id {
                total_fen += u128::from(leg.amount_fen);
            }
        }
    }
    Ok(total_fen)
}

/// The 文号 of each announced project's announcement (公告公示), by
/// project account: one short entry per announced project.
async fn announcements(client: &mut Client, org: &str) -> Result<HashMap<String, String>> {
    let mut announced = HashMap::new();
    let mut pages = EntryPages::new(pb::ListEntriesRequest {
        org_id: org.into(),
        kind: "AnnounceProject".into(),
        ..Default::default()
    });
    while let Some(entries) = pages.next(client).await? {
        for entry in &entries {
            if let Some(pb::request::Body::AnnounceProject(a)) = body_of(entry) {
                announced
                    .entry(a.account_id.clone())
                    .or_insert_with(|| a.document_no.clone());
            }
        }
    }
    Ok(announced)
}
