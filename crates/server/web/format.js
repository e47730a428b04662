// Money and dates as the ledger's users read them: yuan from integer fen
// (BigInt, never a float), dates and times in China Standard Time.

const CST_OFFSET_MS = 8 * 3600 * 1000;
const DAY_MS = 86400 * 1000;

function fen(value) {
  return typeof value === "bigint" ? value : BigInt(value);
}

/// 123456n → "1234.56" (docs/exports.md).
export function plainYuan(amountFen) {
  const value = fen(amountFen);
  const sign = value < 0n ? "-" : "";
  const abs = value < 0n ? -value : value;
  return `${sign}${abs / 100n}.${String(abs % 100n).padStart(2, "0")}`;
}

/// 123456n → "¥1,234.56".
export function yuan(amountFen) {
  const [whole, cents] = plainYuan(amountFen).split(".");
  const negative = whole.startsWith("-");
  const digits = negative ? whole.slice(1) : whole;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}¥${grouped}.${cents}`;
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/// Days since 1970-01-01 → "YYYY-MM-DD".
export function dayDate(day) {
  const d = new Date(Number(day) * DAY_MS);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/// Unix milliseconds → "YYYY-MM-DD HH:MM:SS" in CST.
export function cstTime(unixMs) {
  const d = new Date(Number(unixMs) + CST_OFFSET_MS);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}
