// The auditor's web view: sign in with an org key, pin the log key, and
// follow the money. Every view reads through the signed gRPC-web calls of
// api.js, so the server's jurisdiction rules decide what appears; every
// record shown can be checked against the signed log by verify.js.

import { Api, CallError, loadKeyFile } from "./api.js";
import {
  anomaliesCsv, download, entriesCsv, idleCsv, notice, noticeCsv, NOTICE_PAYMENT_HEADER,
  NOTICE_PROJECT_HEADER, projectsCsv,
} from "./export.js";
import { cstTime, dayDate, yuan } from "./format.js";
import { bodyOf, decodeRecord, documentNo } from "./pb.js";
import { hex, verifyRecord, verifyRequestSignature } from "./verify.js";

const VKEY_STORAGE = "fundtrail.pinnedLogKey";

/// What the page knows: the signed-in org and the pinned log key. Exported
/// for scripts driving the page (the browser tests).
export const state = {
  api: new Api(null),
  info: null,
  vkey: localStorage.getItem(VKEY_STORAGE) || "",
};

const ACCOUNT_KINDS = ["未指定", "国库", "专项资金", "统筹资金池", "项目", "农户"];
const KIND_LABELS = {
  Genesis: "创世", RegisterOrg: "机构登记", AddKey: "增加密钥", RevokeKey: "吊销密钥",
  OpenAccount: "开设账户", Appropriation: "预算下达", Transfer: "拨付", Disbursement: "发放到户",
  Reversal: "冲销", Consolidation: "统筹整合", RegisterProject: "项目登记", AnnounceProject: "项目公告",
  Allocation: "项目安排", RegisterHousehold: "农户登记", SetHouseholdStatus: "农户状态",
  Return: "资金收回", UpgradeRules: "规则升级", ConfirmCredit: "到账确认",
  SetProgrammeRules: "资金管理规则", EvaluateProject: "绩效评价",
  DeclareImportWindow: "历史数据导入期", DeclarePairing: "对口帮扶结对",
  IssueQuota: "预算指标下达", SetMonitoring: "防返贫监测",
};
const FIELD_LABELS = {
  account_id: "账户", from_account_id: "付出账户", to_account_id: "收入账户", household_account_id: "收款农户",
  pool_account_id: "资金池账户", project_account_id: "项目账户", amount_fen: "金额", budget_fen: "预算",
  sources: "资金来源", programme_code: "科目", fiscal_year: "年度", period: "所属期间", document_no: "文号",
  plan_document_no: "整合方案文号", purpose: "用途", memo: "备注", reason: "原因", target_seq: "被冲销记录",
  name: "名称", kind: "类型", category: "类别", location_code: "建设地点", performance_targets: "绩效目标",
  responsible_unit: "责任单位", household_ref: "户编号", village_code: "所在村", basis: "补助依据",
  members: "人数", status: "状态", org_id: "机构", role: "角色", division_code: "区划", public_key: "公钥",
  key_id: "密钥", root_org_id: "根机构", root_org_name: "根机构名称", root_public_key: "根机构公钥",
  log_public_key: "日志公钥", rules_version: "规则版本", to_org_id: "下达对象", from_quota_seq: "来源指标",
  direct: "直达资金", project_code: "项目代码", quota_seq: "所用指标",
};
const HOUSEHOLD_STATUS = ["未指定", "在册", "已退出", "不符合条件"];
const MONITORING = ["未指定", "未纳入监测", "脱贫不稳定户", "边缘易致贫户", "突发严重困难户"];
const BASIS = ["未指定", "按户", "按人"];
const LEVELS = { central: "中央", province: "省级", prefecture: "市级", county: "县级" };

// ---- DOM helpers: data goes in as text, never as markup.

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(href, text) {
  return el("a", { href }, text);
}

function money(amountFen) {
  return el("span", { class: "money", "data-fen": String(amountFen) }, yuan(amountFen));
}

function table(headers, rows, attrs = {}) {
  return el("table", attrs, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

function row(...cells) {
  return el("tr", {}, cells.map((c) => el("td", c instanceof Node && c.classList && c.classList.contains("money") ? { class: "num" } : {}, c)));
}

const main = () => document.getElementById("main");

function show(...nodes) {
  main().replaceChildren(...nodes);
}

function failure(error) {
  const text = error instanceof CallError || error instanceof Error ? error.message : String(error);
  return el("p", { class: "error", role: "alert", "data-code": error.code ?? "" }, text);
}

function accountLink(id, kind) {
  if (!id) return "—";
  return link(kind === 5 ? `#/household/${encodeURIComponent(id)}` : `#/account/${encodeURIComponent(id)}`, id);
}

function recordLink(seq) {
  return link(`#/record/${seq}`, `#${seq}`);
}

function exportButton(label, filename, build) {
  const button = el("button", { class: "export", type: "button" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      download(await build(), filename);
    } catch (e) {
      button.after(failure(e));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

// ---- Verification of records against the pinned log key.

let checkpointCache = null;
const orgCache = new Map();

function org(id) {
  if (!orgCache.has(id)) orgCache.set(id, state.api.query("GetOrg", { org_id: id }).catch(() => null));
  return orgCache.get(id);
}

async function newestCheckpoint() {
  if (!checkpointCache) checkpointCache = state.api.audit("GetCheckpoint", { tree_size: 0n });
  return checkpointCache;
}

/// Checks record `seq` in the browser: its bytes, its audit path, the
/// checkpoint's signature by the pinned key, and the client's signature.
/// Returns { ok, reason?, size?, decoded? }.
export async function verifySeq(seq) {
  if (!state.vkey) return { ok: false, reason: "未钉住日志公钥：请先在“登录”页设置" };
  const checkpoint = await newestCheckpoint();
  if (BigInt(seq) >= checkpoint.tree_size) {
    return { ok: false, pending: true, reason: `记录尚未被最新检查点（${checkpoint.tree_size} 条）覆盖，稍后再验` };
  }
  const proof = await state.api.audit("GetInclusionProof", { index: BigInt(seq), tree_size: checkpoint.tree_size });
  if (proof.record.length === 0) return { ok: false, reason: "服务器未给出记录内容（无权查看）" };
  let decoded;
  try {
    decoded = decodeRecord(proof.record);
  } catch (e) {
    return { ok: false, reason: `记录无法解码：${e.message}` };
  }
  const result = await verifyRecord({
    vkey: state.vkey,
    note: checkpoint.note,
    index: BigInt(seq),
    record: proof.record,
    proof: proof.hashes,
    seq: decoded.record.seq,
  });
  if (!result.ok) return result;
  const signer = decoded.record.request;
  const registered = await org(decoded.record.effects.signer_org_id);
  const key = registered && registered.keys.find((k) => k.key_id === signer.key_id);
  const signed = key ? await verifyRequestSignature(key.public_key, signer) : false;
  if (!signed) return { ok: false, reason: `客户签名未通过（密钥 ${signer.key_id}）` };
  return { ...result, decoded };
}

function verifyBadge(seq, auto = true) {
  const badge = el("span", { class: "verify", "data-seq": String(seq), "data-state": "idle" }, "验证");
  const run = async () => {
    badge.dataset.state = "running";
    badge.textContent = "验证中…";
    try {
      const result = await verifySeq(seq);
      badge.dataset.state = result.ok ? "ok" : "failed";
      badge.textContent = result.ok ? "✓ 已验证" : "✗ 未通过";
      badge.title = result.ok ? `在检查点（${result.size} 条）中，日志签名与客户签名均有效` : result.reason;
    } catch (e) {
      badge.dataset.state = "failed";
      badge.textContent = "✗ 未通过";
      badge.title = e.message;
    }
  };
  badge.addEventListener("click", run);
  if (auto) queueMicrotask(run);
  return badge;
}

// ---- Views.

async function signin() {
  const status = el("p", { id: "signin-status" }, state.api.signer ? `已登录：${state.api.signer.label}（密钥 ${state.api.signer.keyId}）` : "未登录");
  const file = el("input", { type: "file", id: "keyfile", accept: ".key,.json,application/json" });
  file.addEventListener("change", async () => {
    try {
      const signer = await loadKeyFile(await file.files[0].text());
      state.api = new Api(signer);
      state.info = await state.api.ledger();
      checkpointCache = null;
      orgCache.clear();
      renderWho();
      status.textContent = `已登录：${signer.label}（密钥 ${signer.keyId}）`;
    } catch (e) {
      status.textContent = `登录失败：${e.message}`;
    }
  });
  const vkey = el("input", { id: "vkey", size: 80, value: state.vkey, placeholder: "fundtrail/<ledger_id>+<key id>+<公钥>" });
  const vkeyStatus = el("p", { id: "vkey-status" }, state.vkey ? "已钉住日志公钥" : "尚未钉住日志公钥");
  const save = el("button", { type: "button", id: "pin" }, "钉住");
  save.addEventListener("click", () => {
    state.vkey = vkey.value.trim();
    localStorage.setItem(VKEY_STORAGE, state.vkey);
    checkpointCache = null;
    vkeyStatus.textContent = "已钉住日志公钥";
  });
  const fetchKey = el("button", { type: "button" }, "从本服务器读取");
  fetchKey.addEventListener("click", async () => {
    const answer = await state.api.audit("GetLogKey", {});
    vkey.value = answer.vkey;
    vkeyStatus.textContent = "已读取服务器的日志公钥：请与可信渠道公布的公钥逐字核对后再钉住";
  });
  show(
    el("h2", {}, "登录"),
    el("p", {}, "选择本机构的只读密钥文件（fundtrail keygen 生成，由本机构以 fundtrail post add-key --read-only 登记）：只读密钥只能签名查询，不能签署记录、动用资金。密钥只留在本页内存中，不上传、不保存。"),
    file,
    status,
    el("h2", {}, "日志公钥"),
    el("p", {}, "验证记录时，检查点必须由此公钥签名。请从可信渠道（如审计机关公告）取得并钉住。"),
    vkey,
    el("div", { class: "buttons" }, save, fetchKey),
    vkeyStatus,
  );
}

function needSignin() {
  if (state.api.signer) return false;
  show(el("p", {}, "请先", link("#/signin", "登录"), "。"));
  return true;
}

async function appropriations() {
  const page = await state.api.query("ListEntries", { kind: "Appropriation", page_size: 200 });
  const rows = page.entries.map((entry) => {
    const { body } = bodyOf(entry.body);
    return row(link(`#/trace/${entry.seq}`, `#${entry.seq}`), body.document_no, body.programme_code, body.fiscal_year, accountLink(body.account_id), money(body.amount_fen || 0n), body.purpose);
  });
  show(
    el("h2", {}, "资金流向：选择一笔预算下达"),
    table(["记录", "文号", "科目", "年度", "账户", "金额", "用途"], rows, { id: "appropriations" }),
  );
}

/// TraceForward's pages merged, as the CLI does: edges summed by (from, to),
/// nodes' receipts summed, holdings from the first page naming the node.
async function traceGraph(seq) {
  const nodes = new Map();
  const edges = new Map();
  const graph = { traced_fen: 0n, withdrawn_fen: 0n, source_document_no: "", programme_code: "" };
  await paged("TraceForward", { seq: BigInt(seq), page_size: 10000 }, (page) => {
    for (const edge of page.edges) {
      const key = `${edge.from_account_id}\u0000${edge.to_account_id}`;
      const merged = edges.get(key);
      if (!merged) edges.set(key, { ...edge });
      else {
        merged.amount_fen += edge.amount_fen;
        merged.records += edge.records;
        merged.last_seq = edge.last_seq;
        for (const d of edge.document_nos) if (!merged.document_nos.includes(d)) merged.document_nos.push(d);
      }
    }
    for (const node of page.nodes) {
      const merged = nodes.get(node.account_id);
      if (!merged) nodes.set(node.account_id, { ...node });
      else merged.received_fen += node.received_fen;
    }
    graph.traced_fen = page.traced_fen;
    graph.withdrawn_fen += page.withdrawn_fen;
    graph.source_document_no = page.source_document_no;
    graph.programme_code = page.programme_code;
  });
  graph.nodes = nodes;
  graph.edges = [...edges.values()];
  graph.reached_households_fen = [...nodes.values()].filter((n) => n.kind === 5).reduce((s, n) => s + n.held_fen, 0n);
  return graph;
}

function paged(method, fields, each) {
  return state.api.pages(method, fields, each);
}

const KIND_COLOURS = ["#888", "#8c2d19", "#b4532a", "#2f6f8f", "#4c7a34", "#6b4c9a"];

/// Draws the traced flow as a layered Sankey diagram. Households are drawn
/// as one node per paying account ("N 户"); idle money (held by accounts
/// that are not households) is the hatched part of each node.
function sankey(graph, sourceAccount) {
  const groups = new Map();
  const layout = new Map();
  for (const node of graph.nodes.values()) {
    if (node.kind !== 5) layout.set(node.account_id, { id: node.account_id, label: node.name || node.account_id, kind: node.kind, received: node.received_fen, held: node.held_fen });
  }
  const links = [];
  for (const edge of graph.edges) {
    const to = graph.nodes.get(edge.to_account_id);
    let target = edge.to_account_id;
    if (to && to.kind === 5) {
      target = `households:${edge.from_account_id}`;
      let group = groups.get(target);
      if (!group) {
        group = { id: target, label: "", kind: 5, received: 0n, held: 0n, households: new Set(), parent: edge.from_account_id };
        groups.set(target, group);
        layout.set(target, group);
      }
      group.received += edge.amount_fen;
      group.households.add(edge.to_account_id);
      const merged = links.find((l) => l.from === edge.from_account_id && l.to === target);
      if (merged) {
        merged.amount += edge.amount_fen;
        continue;
      }
    }
    if (layout.has(edge.from_account_id) && layout.has(target)) links.push({ from: edge.from_account_id, to: target, amount: edge.amount_fen, edge });
  }
  for (const group of groups.values()) group.label = `农户 ${group.households.size} 户`;
  // Depth by breadth-first search from the source; later loops (returns)
  // are drawn as arcs back.
  const depth = new Map([[sourceAccount, 0]]);
  const queue = [sourceAccount];
  while (queue.length) {
    const at = queue.shift();
    for (const l of links) {
      if (l.from === at && !depth.has(l.to)) {
        depth.set(l.to, depth.get(at) + 1);
        queue.push(l.to);
      }
    }
  }
  for (const id of layout.keys()) if (!depth.has(id)) depth.set(id, 0);
  const columns = [];
  for (const [id, d] of depth) (columns[d] ||= []).push(layout.get(id));
  // Each column in the order of the nodes that pay into it, so bands cross
  // little; then by amount.
  const order = new Map();
  for (const column of columns) {
    const parentRank = (node) => {
      const ranks = links.filter((l) => l.to === node.id && order.has(l.from)).map((l) => order.get(l.from));
      return ranks.length ? Math.min(...ranks) : 0;
    };
    column.sort((a, b) => parentRank(a) - parentRank(b) || (b.received > a.received ? 1 : b.received < a.received ? -1 : 0));
    column.forEach((node, i) => order.set(node.id, i));
  }
  const nodeWidth = 14;
  const columnGap = 200;
  const labelChars = 12;
  const slotMin = 30;
  const sourceHeight = 520;
  const total = graph.traced_fen > 0n ? graph.traced_fen : 1n;
  const scale = (fen) => Math.max(2, (Number((fen * 1000000n) / total) / 1000000) * sourceHeight);
  let height = 0;
  for (const [d, column] of columns.entries()) {
    let y = 20;
    for (const node of column) {
      node.x = 10 + d * columnGap;
      node.y = y;
      node.h = scale(node.received);
      node.outAt = node.y;
      node.inAt = node.y;
      y += Math.max(node.h, slotMin) + 8;
    }
    height = Math.max(height, y + 20);
  }
  const width = 10 + (columns.length - 1) * columnGap + 220;
  const root = svg("svg", {
    id: "flow-diagram",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": "资金流向图",
    "data-traced-fen": String(graph.traced_fen),
  });
  root.append(svg("defs", {}, svg("pattern", { id: "idle-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
    svg("rect", { width: 6, height: 6, fill: "#f3c27a" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#c07a12", "stroke-width": 3 }))));
  const linkLayer = svg("g", { class: "links" });
  root.append(linkLayer);
  // Bands leave a node in the order of their targets, top to bottom, and
  // enter in the order of their sources, so they do not cross at the nodes.
  for (const l of links) l.w = scale(l.amount);
  const byTarget = [...links].sort((a, b) => layout.get(a.to).y - layout.get(b.to).y);
  for (const l of byTarget) {
    const from = layout.get(l.from);
    l.y0 = from.outAt + l.w / 2;
    from.outAt += l.w;
  }
  const bySource = [...links].sort((a, b) => layout.get(a.from).y - layout.get(b.from).y);
  for (const l of bySource) {
    const to = layout.get(l.to);
    l.y1 = to.inAt + l.w / 2;
    to.inAt += l.w;
  }
  for (const l of links) {
    const from = layout.get(l.from);
    const to = layout.get(l.to);
    const w = l.w;
    const x0 = from.x + nodeWidth;
    const x1 = to.x;
    const { y0, y1 } = l;
    const back = x1 <= x0;
    const path = back
      ? `M${x0},${y0} C${x0 + 60},${y0} ${x0 + 60},${height - 5} ${(x0 + x1) / 2},${height - 5} S${x1 - 60},${y1} ${x1},${y1}`
      : `M${x0},${y0} C${(x0 + x1) / 2},${y0} ${(x0 + x1) / 2},${y1} ${x1},${y1}`;
    linkLayer.append(svg("path", {
      d: path,
      class: back ? "link back" : "link",
      "stroke-width": w,
      "data-from": l.from,
      "data-to": l.to,
      "data-fen": String(l.amount),
    }, svg("title", {}, `${from.label} → ${to.label}：${yuan(l.amount)}${l.edge ? `，${l.edge.records} 笔，文号 ${l.edge.document_nos.join("、")}` : ""}`)));
  }
  for (const node of layout.values()) {
    const idleHeight = node.kind === 5 || node.received === 0n ? 0 : Math.min(node.h, (Number((node.held * 1000000n) / (node.received || 1n)) / 1000000) * node.h);
    const group = svg("g", {
      class: "node",
      tabindex: 0,
      "data-account": node.id,
      "data-received-fen": String(node.received),
      "data-held-fen": String(node.held),
      onclick: () => openNode(node),
      onkeydown: (e) => e.key === "Enter" && openNode(node),
    });
    group.append(svg("rect", { x: node.x, y: node.y, width: nodeWidth, height: node.h, fill: KIND_COLOURS[node.kind] || "#888" }));
    if (idleHeight > 0) group.append(svg("rect", { x: node.x, y: node.y + node.h - idleHeight, width: nodeWidth, height: idleHeight, fill: "url(#idle-hatch)" }));
    const idle = node.kind !== 5 && node.held > 0n ? `，闲置 ${yuan(node.held)}` : "";
    const short = node.label.length > labelChars ? `${node.label.slice(0, labelChars - 1)}…` : node.label;
    group.append(svg("text", { x: node.x + nodeWidth + 4, y: node.y + 11, class: "label" }, short));
    group.append(svg("text", { x: node.x + nodeWidth + 4, y: node.y + 24, class: "amount" }, `${yuan(node.received)}${node.kind !== 5 && node.held > 0n ? ` 闲置 ${yuan(node.held)}` : ""}`));
    group.append(svg("title", {}, `${node.label}（${node.id}）收到 ${yuan(node.received)}${idle}`));
    root.append(group);
  }
  return root;
}

function openNode(node) {
  if (node.households) {
    const first = document.querySelector(`#households [data-parent="${CSS.escape(node.parent)}"]`);
    if (first) first.scrollIntoView();
    return;
  }
  location.hash = `#/account/${encodeURIComponent(node.id)}`;
}

async function trace(seq) {
  show(el("p", {}, `正在追踪记录 #${seq} 的资金…`));
  const graph = await traceGraph(seq);
  const sourceEntry = await state.api.query("GetEntry", { seq: BigInt(seq) });
  const { kind, body } = bodyOf(sourceEntry.body);
  const sourceAccount = kind === "Appropriation" ? body.account_id : body.from_account_id || body.pool_account_id;
  const all = [...graph.nodes.values()];
  const accounts = all.filter((n) => n.kind !== 5).sort((a, b) => (b.received_fen > a.received_fen ? 1 : -1));
  const households = all.filter((n) => n.kind === 5);
  const parentOf = new Map(graph.edges.filter((e) => graph.nodes.get(e.to_account_id)?.kind === 5).map((e) => [e.to_account_id, e.from_account_id]));
  const idleTotal = accounts.reduce((s, n) => s + n.held_fen, 0n);
  const summary = el("dl", { class: "summary", id: "trace-summary" },
    el("dt", {}, "追踪金额"), el("dd", { "data-key": "traced" }, money(graph.traced_fen)),
    el("dt", {}, "已到户"), el("dd", { "data-key": "reached" }, money(graph.reached_households_fen)),
    el("dt", {}, "各级仍持有（闲置）"), el("dd", { "data-key": "idle" }, money(idleTotal)),
    el("dt", {}, "已收回出账"), el("dd", { "data-key": "withdrawn" }, money(graph.withdrawn_fen)),
  );
  const accountRows = accounts.map((n) => row(accountLink(n.account_id, n.kind), n.name, ACCOUNT_KINDS[n.kind], n.owner_org_id, n.division_code, money(n.received_fen), money(n.held_fen), n.held_since_day ? dayDate(n.held_since_day) : "—"));
  const shown = households.slice(0, 300);
  const householdRows = shown.map((n) => {
    const tr = row(accountLink(n.account_id, 5), n.owner_org_id, parentOf.get(n.account_id) || "", money(n.received_fen), money(n.held_fen));
    tr.dataset.parent = parentOf.get(n.account_id) || "";
    return tr;
  });
  show(
    el("h2", {}, `资金流向：记录 #${seq}（${KIND_LABELS[kind] || kind}）`),
    el("p", {}, `文号 ${graph.source_document_no || "—"}，科目 ${graph.programme_code || "—"}。`, verifyBadge(seq)),
    summary,
    el("div", { class: "diagram" }, sankey(graph, sourceAccount)),
    el("p", { class: "legend" }, "宽度按金额（元）；斜纹为账户仍持有的闲置资金；点击节点打开账户。"),
    el("h3", {}, "各账户"),
    table(["账户", "名称", "类型", "所属机构", "区划", "收到", "仍持有", "持有起始"], accountRows, { id: "flow-table" }),
    el("h3", {}, `到户（${households.length} 户${households.length > shown.length ? `，列出前 ${shown.length} 户` : ""}）`),
    table(["农户账户", "所属机构", "付款账户", "收到", "持有"], householdRows, { id: "households" }),
  );
}

async function account(id, params) {
  const asOf = params.get("date") || "";
  const acct = await state.api.query("GetAccount", { account_id: id, as_of_date: asOf });
  const note = asOf ? `截至业务日期 ${asOf}（北京时间）日终：只计业务日期在此日或之前的记录` : "当前余额";
  const date = el("input", { type: "date", id: "as-of", value: asOf });
  date.addEventListener("change", () => {
    location.hash = `#/account/${encodeURIComponent(id)}${date.value ? `?date=${date.value}` : ""}`;
  });
  const balances = acct.balances.map((b) =>
    row(link(`#/trace/${b.source_seq}`, `#${b.source_seq}`), b.document_no, b.programme_code, b.fiscal_year, money(b.amount_fen)));
  const entries = await state.api.query("ListEntries", { account_id: id, page_size: 100 });
  const entryRows = entries.entries.map((entry) => {
    const { kind, body } = bodyOf(entry.body);
    const moved = (entry.effects?.legs || []).filter((l) => l.from_account_id === id || l.to_account_id === id);
    const inFen = moved.filter((l) => l.to_account_id === id).reduce((s, l) => s + l.amount_fen, 0n);
    const outFen = moved.filter((l) => l.from_account_id === id).reduce((s, l) => s + l.amount_fen, 0n);
    return row(recordLink(entry.seq), cstTime(entry.commit_time_ms), KIND_LABELS[kind] || kind, documentNo(kind, body), money(inFen), money(outFen), verifyBadge(entry.seq, false));
  });
  show(
    el("h2", {}, `账户 ${acct.account_id}`),
    el("dl", { class: "summary" },
      el("dt", {}, "名称"), el("dd", {}, acct.name || "—"),
      el("dt", {}, "类型"), el("dd", {}, ACCOUNT_KINDS[acct.kind]),
      el("dt", {}, "所属机构"), el("dd", {}, acct.owner_org_id),
      el("dt", {}, "区划"), el("dd", {}, acct.division_code),
      el("dt", {}, "科目"), el("dd", {}, acct.programme_code || "—"),
      el("dt", {}, "开户记录"), el("dd", {}, recordLink(acct.opened_seq)),
      el("dt", {}, "余额"), el("dd", { id: "balance" }, money(acct.balances.reduce((s, b) => s + b.amount_fen, 0n))),
    ),
    acct.kind === 5 ? el("p", {}, link(`#/household/${encodeURIComponent(id)}`, "农户明细"), " · ", link(`#/back/${encodeURIComponent(id)}`, "回溯资金来源")) : el("p", {}, link(`#/back/${encodeURIComponent(id)}`, "回溯资金来源")),
    el("h3", {}, "按来源的余额 ", el("label", {}, "截至日期 ", date)),
    el("p", { class: "note" }, note),
    table(["来源记录", "文号", "科目", "年度", "金额"], balances, { id: "balances" }),
    el("h3", {}, "记录（前 100 条）"),
    el("div", { class: "buttons" },
      exportButton("导出记录 CSV", `entries-${id}.csv`, () => entriesCsv(state.api, "entries", { account_id: id })),
      exportButton("导出到户发放 CSV", `payments-${id}.csv`, () => entriesCsv(state.api, "payments", { account_id: id }))),
    table(["记录", "记账时间", "类型", "文号", "收入", "付出", "验证"], entryRows, { id: "entries" }),
  );
}

// What the bank said of a payment (一卡通): credited, returned, or nothing yet.
function bankStatus(p) {
  if (p.bank_status === 1) return el("span", {}, "已到账 ", recordLink(p.bank_result_seq));
  if (p.bank_status === 2) return el("span", {}, "银行退回 ", recordLink(p.bank_result_seq));
  return "未确认";
}

async function household(id) {
  const s = await state.api.query("HouseholdStatement", { account_id: id });
  const payments = s.payments.map((p) =>
    row(recordLink(p.seq), dayDate(p.value_day), money(p.amount_fen), p.programme_code, p.period, p.document_no, accountLink(p.from_account_id), p.reversed ? "已冲销" : "已拨付", bankStatus(p), verifyBadge(p.seq)));
  show(
    el("h2", {}, `农户 ${s.account_id}`),
    el("dl", { class: "summary", id: "household-summary" },
      el("dt", {}, "户编号"), el("dd", {}, s.household_ref),
      el("dt", {}, "所在村"), el("dd", {}, s.village_code),
      el("dt", {}, "所属机构"), el("dd", {}, s.owner_org_id),
      el("dt", {}, "补助依据"), el("dd", {}, `${BASIS[s.basis]}，${s.members} 人`),
      el("dt", {}, "当前状态"), el("dd", {}, HOUSEHOLD_STATUS[s.status_today]),
      el("dt", {}, "防返贫监测"), el("dd", { "data-key": "monitoring" }, MONITORING[s.monitoring_today] || "—"),
      el("dt", {}, "累计收到"), el("dd", { "data-key": "received" }, money(s.received_fen)),
      el("dt", {}, "余额"), el("dd", {}, money(s.balance_fen)),
    ),
    el("p", {}, link(`#/back/${encodeURIComponent(id)}`, "回溯每一笔资金的来源")),
    el("h3", {}, "到户发放"),
    el("div", { class: "buttons" }, exportButton("导出 CSV", `payments-${id}.csv`, () => entriesCsv(state.api, "payments", { account_id: id }))),
    table(["记录", "业务日期", "金额", "科目", "期间", "文号", "付款账户", "状态", "银行", "验证"], payments, { id: "payments" }),
    el("h3", {}, "状态变更"),
    table(["生效日期", "状态", "记录"], s.statuses.map((c) => row(dayDate(c.effective_day), HOUSEHOLD_STATUS[c.status], recordLink(c.seq)))),
  );
}

async function back(id) {
  const target = /^\d+$/.test(id) ? { seq: BigInt(id) } : { account_id: id };
  const answer = await state.api.query("TraceBackward", target);
  const sections = answer.lineages.map((lineage) => el("section", { class: "lineage" },
    el("h3", {}, "来源 ", recordLink(lineage.source_seq), ` ${lineage.source_document_no}（科目 ${lineage.programme_code}，${lineage.appropriating_org_id} 下达）：`, money(lineage.amount_fen)),
    table(["记录", "业务日期", "类型", "付出", "收入", "金额", "文号", "签名机构", "密钥", "验证"],
      lineage.hops.map((h) => row(recordLink(h.seq), h.value_day ? dayDate(h.value_day) : "—", KIND_LABELS[h.kind] || h.kind, accountLink(h.from_account_id), accountLink(h.to_account_id), money(h.amount_fen), h.document_no, h.signer_org_id, h.key_id, verifyBadge(h.seq)))),
  ));
  show(el("h2", {}, `回溯：${id}`), answer.truncated ? el("p", { class: "note" }, "记录过多，仅列出一部分。") : "", ...sections);
}

async function idle(params) {
  const days = Number(params.get("days") || "90");
  const rows = [];
  let asOf = 0;
  await paged("IdleFunds", { older_than_days: days, page_size: 1000 }, (page) => {
    asOf = page.as_of_day;
    rows.push(...page.rows);
  });
  const input = el("input", { type: "number", min: 0, id: "idle-days", value: days });
  input.addEventListener("change", () => (location.hash = `#/idle?days=${input.value}`));
  const totalIdle = rows.reduce((s, r) => s + r.idle_fen, 0n);
  show(
    el("h2", {}, "闲置资金（按账龄）"),
    el("p", {}, el("label", {}, "闲置超过 ", input, " 天"), `，截至 ${asOf ? dayDate(asOf) : "—"}，合计 `, money(totalIdle)),
    el("div", { class: "buttons" }, exportButton("导出 CSV", `idle-${days}d.csv`, () => idleCsv(state.api, { older_than_days: days }))),
    table(["账户", "名称", "层级", "区划", "余额", "闲置", "30天内", "30–90天", "90–365天", "365–730天", "730天以上"],
      rows.map((r) => row(accountLink(r.account_id, r.kind), r.name, LEVELS[r.level] || r.level, r.division_code, money(r.balance_fen), money(r.idle_fen), money(r.age_0_30_fen), money(r.age_30_90_fen), money(r.age_90_365_fen), money(r.age_365_730_fen), money(r.age_730_plus_fen))),
      { id: "idle" }),
  );
}

async function anomalies() {
  const findings = [];
  await paged("Anomalies", { page_size: 1000 }, (page) => findings.push(...page.findings));
  show(
    el("h2", {}, `异常（${findings.length} 项）`),
    el("div", { class: "buttons" }, exportButton("导出 CSV", "anomalies.csv", () => anomaliesCsv(state.api, {}))),
    table(["类型", "账户", "相关记录", "金额", "说明"],
      findings.map((f) => row(f.kind, accountLink(f.account_id), el("span", {}, f.seqs.flatMap((s, i) => [i ? " " : "", recordLink(s)])), money(f.amount_fen), f.detail)),
      { id: "anomalies" }),
  );
}

/// Basis points (1/10,000, a BigInt) as a percentage with two decimals.
function percent(basisPoints) {
  return `${basisPoints / 100n}.${String(basisPoints % 100n).padStart(2, "0")}%`;
}

// A <meter>, not a styled bar: the page's CSP allows no inline styles.
function progressCell(basisPoints, key) {
  return el("span", { "data-key": key, "data-bp": String(basisPoints) },
    el("meter", { min: 0, max: 10000, value: String(basisPoints) }), " ", percent(basisPoints));
}

/// The province above `org` (or `org` itself): division codes of provinces
/// end in 0000; at most a few levels up.
async function provinceOf(found) {
  let at = found;
  for (let level = 0; at && level < 6; level++) {
    if (/^(?!00)\d\d0000$/.test(at.division_code) || !at.parent_org_id) return at;
    at = await org(at.parent_org_id);
  }
  return null;
}

/// The latest cumulative row of each programme: progress as it stands.
function latest(rows) {
  const by = new Map();
  for (const r of rows) by.set(r.programme_code, r);
  return by;
}

/// 支出进度 (docs/quota.md): an org's quota and what was paid against it,
/// by programme and month; a county's page sets its progress beside its
/// province's.
async function progress(orgId) {
  const input = el("input", { id: "progress-org", value: orgId || "", placeholder: "机构，如 mg-czj" });
  const form = el("form", { class: "buttons", id: "progress-form" }, el("label", {}, "机构 ", input), el("button", { type: "submit" }, "查看"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/progress/${encodeURIComponent(input.value.trim())}`;
  });
  if (!orgId) {
    show(el("h2", {}, "支出进度"), form);
    return;
  }
  const self = await state.api.query("GetOrg", { org_id: orgId });
  const province = await provinceOf(self);
  const mine = (await state.api.query("SpendingProgress", { org_id: orgId })).rows;
  const above = province && province.org_id !== self.org_id
    ? latest((await state.api.query("SpendingProgress", { org_id: province.org_id })).rows)
    : new Map();
  const headers = ["科目", `${self.name} 收到指标`, "支出", "支出进度"];
  if (above.size) headers.push(`${province.name} 收到指标`, "支出", "支出进度");
  const compare = [...latest(mine).values()].map((r) => {
    const theirs = above.get(r.programme_code);
    const cells = [r.programme_code, money(r.quota_received_fen), money(r.paid_fen), progressCell(r.paid_basis_points, "org-bp")];
    if (above.size) cells.push(...(theirs ? [money(theirs.quota_received_fen), money(theirs.paid_fen), progressCell(theirs.paid_basis_points, "province-bp")] : ["—", "—", "—"]));
    const tr = row(...cells);
    tr.dataset.programme = r.programme_code;
    return tr;
  });
  show(
    form,
    el("h2", {}, `${self.name} 支出进度`),
    el("p", { class: "note" }, "支出进度 = 对本级指标及其逐级分解下达的指标的支出 ÷ 本级收到的指标；各月为截至该月末的累计数。"),
    mine.length === 0 ? el("p", { id: "progress-empty" }, "该机构没有收到预算指标。") : "",
    table(headers, compare, { id: "progress-compare" }),
    el("h3", {}, "按月累计"),
    table(["科目", "月份", "收到指标", "下达指标", "到位资金", "支出", "支出进度"],
      mine.map((r) => row(r.programme_code, r.month, money(r.quota_received_fen), money(r.quota_issued_down_fen), money(r.cash_received_fen), money(r.paid_fen), progressCell(r.paid_basis_points, "month-bp"))),
      { id: "progress-months" }),
  );
}

async function record(seq) {
  const entry = await state.api.query("GetEntry", { seq: BigInt(seq) });
  const status = el("div", { id: "verify-status", "data-state": "running" }, "正在验证…");
  const content = el("div", { id: "record-content" });
  show(el("h2", {}, `记录 #${seq}`), status, content);
  const result = await verifySeq(seq).catch((e) => ({ ok: false, reason: e.message }));
  status.dataset.state = result.ok ? "ok" : result.pending ? "pending" : "failed";
  status.replaceChildren(result.ok
    ? el("p", { class: "ok" }, `✓ 已验证：本记录在日志公钥签名的检查点（${result.size} 条）中，默克尔路径与客户签名均有效。叶哈希 ${result.leaf}`)
    : el("p", { class: result.pending ? "note" : "error" }, `✗ 未通过验证：${result.reason}`));
  // What is shown is what was verified: decoded here from the record bytes.
  const decoded = result.decoded || (entry.record.length ? decodeRecord(entry.record) : null);
  if (!decoded) {
    content.append(el("p", {}, "服务器未给出记录内容。"));
    return;
  }
  const { record: r, kind, body, request } = decoded;
  const fields = Object.entries(body).filter(([, value]) => value !== undefined).map(([name, value]) =>
    row(FIELD_LABELS[name] ? `${FIELD_LABELS[name]}（${name}）` : name, name.endsWith("_fen") ? money(value) : showValue(value)));
  content.append(
    el("dl", { class: "summary" },
      el("dt", {}, "类型"), el("dd", { "data-key": "kind" }, `${KIND_LABELS[kind] || kind}（${kind}）`),
      el("dt", {}, "记账时间"), el("dd", {}, cstTime(r.commit_time_ms)),
      el("dt", {}, "业务日期"), el("dd", {}, r.effects?.value_day ? dayDate(r.effects.value_day) : "—"),
      el("dt", {}, "签名机构"), el("dd", {}, r.effects?.signer_org_id || "—"),
      el("dt", {}, "签名密钥"), el("dd", {}, r.request?.key_id || "—"),
      el("dt", {}, "幂等键"), el("dd", {}, request.idempotency_key),
      entry.reversed_by_seq !== undefined ? [el("dt", {}, "已被冲销"), el("dd", {}, recordLink(entry.reversed_by_seq))] : [],
    ),
    el("h3", {}, "请求内容"),
    table(["字段", "值"], fields),
    el("h3", {}, "资金变动"),
    table(["付出账户", "收入账户", "资金来源", "金额"], (r.effects?.legs || []).map((l) => row(accountLink(l.from_account_id), accountLink(l.to_account_id), recordLink(l.source_seq), money(l.amount_fen))), { id: "legs" }),
    kind === "Appropriation" || kind === "Transfer" || kind === "Consolidation" || kind === "Allocation" ? el("p", {}, link(`#/trace/${seq}`, "追踪这笔资金的流向")) : "",
  );
}

function showValue(value) {
  if (value instanceof Uint8Array) return hex(value);
  if (Array.isArray(value)) {
    return value.map((v) => (v && v.source_seq !== undefined ? `来源 #${v.source_seq} ${yuan(v.amount_fen)}` : showValue(v))).join("；");
  }
  if (value && typeof value === "object") return JSON.stringify(value, (_, x) => (typeof x === "bigint" ? String(x) : x));
  return String(value);
}

async function noticeView(county, params) {
  const village = params.get("village") || "";
  const countyInput = el("input", { id: "notice-county", value: county || "", placeholder: "县级机构，如 bt-czj" });
  const villageInput = el("input", { id: "notice-village", value: village, placeholder: "乡镇或村代码（可空）" });
  const form = el("form", { class: "buttons", id: "notice-form" }, el("label", {}, "县 ", countyInput), el("label", {}, "村 ", villageInput), el("button", { type: "submit" }, "生成"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = villageInput.value.trim();
    location.hash = `#/notice/${encodeURIComponent(countyInput.value.trim())}${v ? `?village=${encodeURIComponent(v)}` : ""}`;
  });
  if (!county) {
    show(el("h2", {}, "公告公示"), form);
    return;
  }
  const org = await state.api.query("GetOrg", { org_id: county });
  const sheet = await notice(state.api, county, village);
  const paid = sheet.payments.filter((p) => p.state === "已拨付").reduce((sum, p) => sum + p.amount_fen, 0n);
  const print = el("button", { type: "button" }, "打印");
  print.addEventListener("click", () => window.print());
  const csv = el("button", { type: "button", class: "export" }, "导出公示 CSV");
  csv.addEventListener("click", () => download(noticeCsv(sheet), `notice-${county}${village ? `-${village}` : ""}.csv`));
  show(
    form,
    el("h2", {}, `${org.name}${village ? ` ${village}` : ""} 扶贫项目和到户资金公告公示`),
    el("p", {}, "数据取自 fundtrail 签名账本，每条记录可按记录序号核验；户编号已脱敏。"),
    el("div", { class: "buttons" }, print, csv, exportButton("导出项目 CSV", `projects-${county}.csv`, () => projectsCsv(state.api, county))),
    el("h3", {}, "一、项目公示"),
    table(NOTICE_PROJECT_HEADER, sheet.projects.map((p) => row(p.name, p.location_code, money(p.budget_fen), p.targets, p.responsible_unit, money(p.received_fen), p.document_no)), { id: "notice-projects" }),
    el("h3", {}, "二、到户资金公示"),
    el("p", { id: "notice-total", "data-count": sheet.payments.length, "data-paid-fen": String(paid) }, `共 ${sheet.payments.length} 笔，已拨付合计 `, money(paid), "。"),
    table(NOTICE_PAYMENT_HEADER, sheet.payments.map((p) => row(recordLink(p.seq), p.value_date, p.masked_ref, p.village_code, money(p.amount_fen), p.period, p.document_no, p.state)), { id: "notice-payments" }),
  );
}

async function accounts(params) {
  const org = params.get("org") || "";
  const rows = [];
  const page = await state.api.query("ListAccounts", { owner_org_id: org, page_size: 500 });
  rows.push(...page.accounts);
  show(
    el("h2", {}, "账户"),
    table(["账户", "名称", "类型", "所属机构", "区划", "余额"], rows.map((a) => row(accountLink(a.account_id, a.kind), a.name, ACCOUNT_KINDS[a.kind], a.owner_org_id, a.division_code, money(a.balance_fen))), { id: "accounts" }),
    page.next_page_token ? el("p", { class: "note" }, "仅列出前 500 个账户；请用搜索框查找。") : "",
  );
}

async function search(query) {
  const q = query.trim();
  if (/^\d+$/.test(q)) {
    location.hash = `#/record/${q}`;
    return;
  }
  try {
    const acct = await state.api.query("GetAccount", { account_id: q });
    location.hash = acct.kind === 5 ? `#/household/${encodeURIComponent(q)}` : `#/account/${encodeURIComponent(q)}`;
    return;
  } catch (e) {
    if (!(e instanceof CallError) || (e.code !== 5 && e.code !== 3)) throw e;
  }
  const page = await state.api.query("ListEntries", { document_no: q, page_size: 200 });
  show(
    el("h2", {}, `搜索：${q}`),
    page.entries.length === 0
      ? el("p", { id: "search-empty" }, "未找到：可输入账户、农户账户、记录号或文号。")
      : table(["记录", "记账时间", "类型", "文号", "签名机构"], page.entries.map((entry) => {
        const { kind, body } = bodyOf(entry.body);
        return row(recordLink(entry.seq), cstTime(entry.commit_time_ms), KIND_LABELS[kind] || kind, documentNo(kind, body), entry.effects?.signer_org_id);
      }), { id: "search-results" }),
  );
}

// ---- Routing.

function renderWho() {
  const who = document.getElementById("who");
  who.textContent = state.api.signer
    ? `${state.info ? state.info.ledger_id : ""} · ${state.api.signer.label}（${state.api.signer.keyId}）`
    : "未登录";
}

export async function route() {
  const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("current", a.getAttribute("href") === `#/${parts[0] || "signin"}`));
  main().dataset.view = parts[0] || "signin";
  main().dataset.ready = "false";
  try {
    if (parts[0] === "signin" || parts.length === 0) await signin();
    else if (needSignin()) return;
    else if (parts[0] === "trace") await (parts[1] ? trace(parts[1]) : appropriations());
    else if (parts[0] === "account") await account(parts[1], params);
    else if (parts[0] === "household") await household(parts[1]);
    else if (parts[0] === "back") await back(parts[1]);
    else if (parts[0] === "idle") await idle(params);
    else if (parts[0] === "anomalies") await anomalies();
    else if (parts[0] === "progress") await progress(parts[1]);
    else if (parts[0] === "record") await record(parts[1]);
    else if (parts[0] === "accounts") await accounts(params);
    else if (parts[0] === "notice") await noticeView(parts[1], params);
    else if (parts[0] === "search") await search(parts.slice(1).join("/"));
    else show(el("p", {}, "没有这个页面。"));
  } catch (e) {
    show(failure(e));
  } finally {
    main().dataset.ready = "true";
  }
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) location.hash = `#/search/${encodeURIComponent(q)}`;
});
window.addEventListener("hashchange", route);
renderWho();
route();
