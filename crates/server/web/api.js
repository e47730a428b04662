// Calls to the server as gRPC-web, each signed with the org key the user
// loaded, exactly as docs/read-signature.md says for gRPC: the same signed
// bytes, the same metadata. The key stays in this page's memory (a
// non-extractable WebCrypto key); it is never sent or stored.

import { decode, encode } from "./pb.js";
import { fromHex, hex, sha256, toBase64 } from "./verify.js";

const subtle = globalThis.crypto.subtle;
const UTF8 = new TextEncoder();

// PKCS #8 wrapping of a 32-byte Ed25519 seed (RFC 8410): WebCrypto imports
// private keys only in this form or as JWK.
const PKCS8_ED25519_PREFIX = fromHex("302e020100300506032b657004220420");

/// gRPC status codes the page explains (the rest show their number).
const CODES = {
  3: "请求有误",
  5: "未找到",
  7: "无权查看（不在本机构辖区内）",
  8: "请求过多，请稍后再试",
  9: "条件不满足",
  14: "服务暂不可用",
  16: "身份未通过验证",
};

export class CallError extends Error {
  constructor(code, message) {
    super(`${CODES[code] || `错误 ${code}`}：${message}`);
    this.code = code;
  }
}

/// A signer from a fundtrail key file (the JSON `fundtrail keygen` writes):
/// checks that its parts agree before use.
export async function loadKeyFile(text) {
  let file;
  try {
    file = JSON.parse(text);
  } catch {
    throw new Error("不是 fundtrail 密钥文件（JSON 无法解析）");
  }
  if (!/^[0-9a-f]{64}$/.test(file.secret_key_hex || "") || !/^[0-9a-f]{64}$/.test(file.public_key_hex || "")) {
    throw new Error("密钥文件缺少 secret_key_hex 或 public_key_hex（各 64 位十六进制）");
  }
  const pkcs8 = new Uint8Array([...PKCS8_ED25519_PREFIX, ...fromHex(file.secret_key_hex)]);
  const probe = await subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await subtle.exportKey("jwk", probe);
  const publicKey = Uint8Array.from(atob(jwk.x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  if (hex(publicKey) !== file.public_key_hex) throw new Error("密钥文件的公钥与私钥不符");
  const keyId = hex((await sha256(publicKey)).subarray(0, 8));
  if (file.key_id && file.key_id !== keyId) throw new Error("密钥文件的 key_id 与公钥不符");
  const key = await subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  return { keyId, label: file.label || "", key };
}

function nonce() {
  return hex(globalThis.crypto.getRandomValues(new Uint8Array(16)));
}

/// The read-signature metadata for one call (docs/read-signature.md §2–3).
export async function readHeaders(signer, ledgerId, method, requestBytes, signedAtMs = Date.now()) {
  const n = nonce();
  const text =
    "fundtrail/v1/read\n" +
    `${ledgerId}\n${method}\n${hex(await sha256(requestBytes))}\n${signedAtMs}\n${n}\n`;
  const signature = new Uint8Array(await subtle.sign({ name: "Ed25519" }, signer.key, UTF8.encode(text)));
  return {
    "fundtrail-key-id": signer.keyId,
    "fundtrail-signed-at-ms": String(signedAtMs),
    "fundtrail-nonce": n,
    "fundtrail-signature-bin": toBase64(signature),
  };
}

function frame(bytes) {
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

function trailerMap(text) {
  const map = {};
  for (const line of text.split("\r\n")) {
    const at = line.indexOf(":");
    if (at > 0) map[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
  }
  return map;
}

function statusOf(map) {
  const code = Number(map["grpc-status"] ?? "2");
  let message = map["grpc-message"] || "";
  try {
    message = decodeURIComponent(message);
  } catch {
    // Shown as sent.
  }
  return { code, message };
}

/// The server, as one org: `call` signs and sends a unary call and decodes
/// its answer. `ledgerId` comes from GetLedger, which needs no signature.
export class Api {
  constructor(signer) {
    this.signer = signer;
    this.ledgerId = "";
  }

  async call(service, method, requestType, responseType, fields = {}) {
    const path = `/fundtrail.v1.${service}/${method}`;
    const body = encode(requestType, fields);
    const headers = {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
    };
    if (this.signer && this.ledgerId) Object.assign(headers, await readHeaders(this.signer, this.ledgerId, path, body));
    const response = await fetch(path, { method: "POST", headers, body: frame(body) });
    if (!response.ok) throw new CallError(14, `HTTP ${response.status}`);
    if (response.headers.get("grpc-status") !== null) {
      const status = statusOf({
        "grpc-status": response.headers.get("grpc-status"),
        "grpc-message": response.headers.get("grpc-message"),
      });
      if (status.code !== 0) throw new CallError(status.code, status.message);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    let message = null;
    let status = null;
    for (let at = 0; at + 5 <= bytes.length; ) {
      const flags = bytes[at];
      const length = new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0);
      const data = bytes.subarray(at + 5, at + 5 + length);
      if (data.length !== length) throw new CallError(14, "答复不完整");
      if (flags & 0x80) status = statusOf(trailerMap(new TextDecoder().decode(data)));
      else message = data;
      at += 5 + length;
    }
    if (status && status.code !== 0) throw new CallError(status.code, status.message);
    if (message === null) throw new CallError(14, "答复中没有消息");
    return decode(responseType, message);
  }

  async ledger() {
    const info = await this.call("Query", "GetLedger", "GetLedgerRequest", "LedgerInfo");
    this.ledgerId = info.ledger_id;
    return info;
  }

  query(method, fields) {
    const [requestType, responseType] = QUERY_TYPES[method];
    return this.call("Query", method, requestType, responseType, fields);
  }

  audit(method, fields) {
    const [requestType, responseType] = AUDIT_TYPES[method];
    return this.call("Audit", method, requestType, responseType, fields);
  }

  /// Every page of a paged query, `merge`d into one answer.
  async pages(method, fields, each) {
    let token = "";
    for (let page = 0; page < 10000; page++) {
      const answer = await this.query(method, { ...fields, page_token: token });
      each(answer);
      if (!answer.next_page_token) return;
      token = answer.next_page_token;
    }
    throw new Error("分页过多");
  }
}

const QUERY_TYPES = {
  GetEntry: ["GetEntryRequest", "Entry"],
  ListEntries: ["ListEntriesRequest", "ListEntriesResponse"],
  GetAccount: ["GetAccountRequest", "Account"],
  ListAccounts: ["ListAccountsRequest", "ListAccountsResponse"],
  GetOrg: ["GetOrgRequest", "Org"],
  TraceForward: ["TraceForwardRequest", "FlowGraph"],
  TraceBackward: ["TraceBackwardRequest", "TraceBackwardResponse"],
  HouseholdStatement: ["HouseholdStatementRequest", "HouseholdStatementResponse"],
  IdleFunds: ["IdleFundsRequest", "IdleFundsResponse"],
  Anomalies: ["AnomaliesRequest", "AnomaliesResponse"],
  SpendingProgress: ["SpendingProgressRequest", "SpendingProgressResponse"],
};

const AUDIT_TYPES = {
  GetLogKey: ["GetLogKeyRequest", "GetLogKeyResponse"],
  GetCheckpoint: ["GetCheckpointRequest", "GetCheckpointResponse"],
  GetInclusionProof: ["GetInclusionProofRequest", "GetInclusionProofResponse"],
};
