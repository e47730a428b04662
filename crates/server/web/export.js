// The web view's CSV exports: the columns, headers and formats of
// docs/exports.md, byte for byte as `fundtrail export-csv` writes them
// (UTF-8 with BOM, Chinese headers, yuan with two decimals, CST times).
// Built a page at a time into a Blob's parts.

import { bodyOf, documentNo } from "./pb.js";
import { cstTime, dayDate, plainYuan } from "./format.js";

const BOM = "\ufeff";
const PAGE_ROWS = 1000;

/// One CSV field, quoted as RFC 4180 when it must be.
function field(value) {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function line(values) {
  return values.map(field).join(",") + "\n";
}

const ENTRY_HEADER = ["序号", "记账时间", "业务日期", "类型", "签名机构", "付出账户", "收入账户", "金额（元）", "资金来源", "文号"];
const PAYMENT_HEADER = ["序号", "记账时间", "业务日期", "付款机构", "付款账户", "收款户", "金额（元）", "项目代码", "所属期间"];
const IDLE_HEADER = ["账户", "名称", "所属机构", "区划代码", "层级", "余额（元）", "闲置（元）", "30天内（元）", "30至90天（元）", "90至365天（元）", "365至730天（元）", "730天以上（元）", "截至日期"];
const ANOMALY_HEADER = ["类型", "账户", "相关记录", "金额（元）", "说明"];

function valueDate(entry) {
  const day = entry.effects ? entry.effects.value_day : 0;
  return day === 0 ? "" : dayDate(day);
}

function entryLines(entry) {
  const { kind, body } = bodyOf(entry.body);
  const effects = entry.effects || { signer_org_id: "", legs: [] };
  const fixed = [entry.seq, cstTime(entry.commit_time_ms), valueDate(entry), kind, effects.signer_org_id];
  const document = documentNo(kind, body);
  if (effects.legs.length === 0) return line([...fixed, "", "", "", "", document]);
  return effects.legs
    .map((leg) => line([...fixed, leg.from_account_id, leg.to_account_id, plainYuan(leg.amount_fen), leg.source_seq, document]))
    .join("");
}

function paymentLine(entry) {
  const { kind, body } = bodyOf(entry.body);
  if (kind !== "Disbursement") return "";
  const effects = entry.effects || { signer_org_id: "", legs: [] };
  // The household as the reader may see it: its id, or its pseudonym.
  const household = effects.legs.length ? effects.legs[0].to_account_id : body.household_account_id;
  const amount = effects.legs.reduce((sum, leg) => sum + leg.amount_fen, 0n);
  return line([
    entry.seq, cstTime(entry.commit_time_ms), valueDate(entry), effects.signer_org_id,
    body.from_account_id, household, plainYuan(amount), body.programme_code, body.period,
  ]);
}

/// `entries` or `payments` (docs/exports.md) for ListEntries `filters`.
export async function entriesCsv(api, report, filters) {
  const parts = [BOM, line(report === "payments" ? PAYMENT_HEADER : ENTRY_HEADER)];
  const fields = report === "payments" ? { ...filters, kind: "Disbursement" } : filters;
  await api.pages("ListEntries", { ...fields, page_size: PAGE_ROWS }, (page) => {
    parts.push(page.entries.map(report === "payments" ? paymentLine : entryLines).join(""));
  });
  return parts;
}

/// `idle` (docs/exports.md) for IdleFunds `filters`.
export async function idleCsv(api, filters) {
  const parts = [BOM, line(IDLE_HEADER)];
  await api.pages("IdleFunds", { ...filters, page_size: PAGE_ROWS }, (page) => {
    const asOf = dayDate(page.as_of_day);
    parts.push(page.rows.map((r) => line([
      r.account_id, r.name, r.owner_org_id, r.division_code, r.level,
      plainYuan(r.balance_fen), plainYuan(r.idle_fen), plainYuan(r.age_0_30_fen), plainYuan(r.age_30_90_fen),
      plainYuan(r.age_90_365_fen), plainYuan(r.age_365_730_fen), plainYuan(r.age_730_plus_fen), asOf,
    ])).join(""));
  });
  return parts;
}

/// `anomalies` (docs/exports.md) for Anomalies `filters`.
export async function anomaliesCsv(api, filters) {
  const parts = [BOM, line(ANOMALY_HEADER)];
  await api.pages("Anomalies", { ...filters, page_size: PAGE_ROWS }, (page) => {
    parts.push(page.findings.map((f) => line([f.kind, f.account_id, f.seqs.join(" "), plainYuan(f.amount_fen), f.detail])).join(""));
  });
  return parts;
}

const PROJECT_HEADER = ["项目账户", "项目名称", "类别", "建设地点", "年度", "预算（元）", "绩效目标", "责任单位", "已到位资金（元）", "公告文号"];
const NOTICE_PROJECT_HEADER = ["项目名称", "建设地点", "预算（元）", "绩效目标", "责任单位", "已到位资金（元）", "公告文号"];
const NOTICE_PAYMENT_HEADER = ["记录序号", "业务日期", "户编号（脱敏）", "所在村", "金额（元）", "所属期间", "文号", "状态"];

/// Every record of ListEntries `filters`, in order.
async function allEntries(api, filters) {
  const entries = [];
  await api.pages("ListEntries", { ...filters, page_size: PAGE_ROWS }, (page) => entries.push(...page.entries));
  return entries;
}

/// The bodies of kind `kind` that `org` signed.
async function bodies(api, org, kind) {
  const entries = await allEntries(api, { org_id: org, kind });
  return entries.map((entry) => ({ entry, ...bodyOf(entry.body) })).filter((b) => b.kind === kind);
}

/// The projects `org` registered (every org's when empty): { registered,
/// received_fen (every movement into it), announcement (文号 or "") }.
export async function projects(api, org) {
  const announced = new Map();
  for (const { body } of await bodies(api, org, "AnnounceProject")) {
    if (!announced.has(body.account_id)) announced.set(body.account_id, body.document_no);
  }
  const out = [];
  for (const { body } of await bodies(api, org, "RegisterProject")) {
    let received = 0n;
    for (const entry of await allEntries(api, { account_id: body.account_id })) {
      for (const leg of entry.effects ? entry.effects.legs : []) {
        if (leg.to_account_id === body.account_id) received += leg.amount_fen;
      }
    }
    out.push({ registered: body, received_fen: received, announcement: announced.get(body.account_id) || "" });
  }
  return out;
}

/// `projects` (docs/exports.md) of `org`.
export async function projectsCsv(api, org) {
  return [BOM, line(PROJECT_HEADER), ...(await projects(api, org)).map(({ registered: p, received_fen, announcement }) => line([
    p.account_id, p.name, p.category, p.location_code, p.fiscal_year, plainYuan(p.budget_fen),
    p.performance_targets.join("；"), p.responsible_unit, plainYuan(received_fen), announcement,
  ]))];
}

/// A registry reference with all but its first four and last two characters
/// hidden; one of 8 characters or fewer keeps only its last (docs/exports.md).
export function maskRef(reference) {
  const chars = Array.from(reference);
  const [head, tail] = chars.length > 8 ? [4, 2] : [0, Math.min(1, chars.length)];
  return chars.map((c, i) => (i < head || i + tail >= chars.length ? c : "*")).join("");
}

/// The 公告公示 sheet of `county` (its village `village` when given): the
/// announced projects and every payment it made to a household it
/// registered, as `fundtrail public-notice` builds it.
export async function notice(api, county, village) {
  const announced = (await projects(api, county))
    .filter((p) => p.announcement && p.registered.location_code.startsWith(village))
    .map(({ registered: p, received_fen, announcement }) => ({
      name: p.name, location_code: p.location_code, budget_fen: p.budget_fen,
      targets: p.performance_targets.join("；"), responsible_unit: p.responsible_unit,
      received_fen, document_no: announcement,
    }));
  const households = new Map();
  for (const { body } of await bodies(api, county, "RegisterHousehold")) {
    households.set(body.account_id, { masked: maskRef(body.household_ref), village: body.village_code });
  }
  const payments = [];
  for (const { entry, body } of await bodies(api, county, "Disbursement")) {
    // Another county's household, or one seen only under its pseudonym:
    // not this county's to announce.
    const household = households.get(body.household_account_id);
    if (!household || !household.village.startsWith(village)) continue;
    payments.push({
      seq: entry.seq,
      value_date: dayDate(entry.effects ? entry.effects.value_day : 0),
      masked_ref: household.masked,
      village_code: household.village,
      amount_fen: (entry.effects ? entry.effects.legs : []).reduce((sum, leg) => sum + leg.amount_fen, 0n),
      period: body.period,
      document_no: body.document_no,
      state: entry.reversed_by_seq !== undefined ? "已冲销" : "已拨付",
    });
  }
  return { projects: announced, payments };
}

/// The sheet as CSV: two tables, each under a title row, a blank row
/// between them (a lone empty field is written `""`, as RFC 4180 writers do).
export function noticeCsv(sheet) {
  return [
    BOM,
    line(["项目公示"]),
    line(NOTICE_PROJECT_HEADER),
    ...sheet.projects.map((p) => line([p.name, p.location_code, plainYuan(p.budget_fen), p.targets, p.responsible_unit, plainYuan(p.received_fen), p.document_no])),
    '""\n',
    line(["到户资金公示"]),
    line(NOTICE_PAYMENT_HEADER),
    ...sheet.payments.map((p) => line([p.seq, p.value_date, p.masked_ref, p.village_code, plainYuan(p.amount_fen), p.period, p.document_no, p.state])),
  ];
}

export { NOTICE_PAYMENT_HEADER, NOTICE_PROJECT_HEADER };

/// Offers `parts` to the user as a file download.
export function download(parts, filename) {
  const url = URL.createObjectURL(new Blob(parts, { type: "text/csv;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
