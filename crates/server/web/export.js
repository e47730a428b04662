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
