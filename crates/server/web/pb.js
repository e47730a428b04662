// Protobuf (proto3) wire format for the web view, written from
// docs/record-format.md section 2 and the .proto files: an encoder for the
// flat request messages the page sends, a reader for the answers and for
// record bytes. 64-bit integers are BigInt, so amounts in fen stay exact.

// A schema line: "<number> <name> <type>[*|?]" separated by ";". Types:
// s string, b bytes, u64, i64, u32, i32, e enum, bool, or a message name.
// "*" repeated, "?" proto3 optional (undefined when absent).
const SCHEMAS = {};

function msg(name, text) {
  const fields = {};
  for (const part of text.split(";").map((p) => p.trim()).filter(Boolean)) {
    const [no, field, spec] = part.split(/\s+/);
    const repeated = spec.endsWith("*");
    const optional = spec.endsWith("?");
    const type = spec.replace(/[*?]$/, "");
    fields[Number(no)] = { field, type, repeated, optional };
  }
  SCHEMAS[name] = fields;
}

// Requests.
msg("GetLedgerRequest", "");
msg("GetEntryRequest", "1 seq u64");
msg("ListEntriesRequest", "1 page_size u32; 2 page_token s; 3 account_id s; 4 org_id s; 5 kind s; 6 source_seq u64?; 7 document_no s; 8 from_time_ms i64; 9 to_time_ms i64");
msg("GetAccountRequest", "1 account_id s; 2 as_of_seq u64?; 3 as_of_date s");
msg("ListAccountsRequest", "1 page_size u32; 2 page_token s; 3 owner_org_id s");
msg("GetOrgRequest", "1 org_id s");
msg("TraceForwardRequest", "1 seq u64; 2 page_size u32; 3 page_token s");
msg("TraceBackwardRequest", "1 account_id s?; 2 seq u64?");
msg("HouseholdStatementRequest", "1 account_id s");
msg("IdleFundsRequest", "1 older_than_days u32; 2 level s; 3 division_prefix s; 4 programme_code s; 5 page_size u32; 6 page_token s");
msg("AnomaliesRequest", "1 idle_older_than_days u32; 2 page_size u32; 3 page_token s");
msg("SpendingProgressRequest", "1 org_id s; 2 programme_code s; 3 fiscal_year u32");
msg("GetLogKeyRequest", "");
msg("GetCheckpointRequest", "1 tree_size u64");
msg("GetInclusionProofRequest", "1 index u64; 2 tree_size u64; 3 leaf_hash b");

// Answers.
msg("ReplicaInfo", "1 upstream s; 2 upstream_checkpoint_size u64; 3 stopped bool");
msg("LedgerInfo", "1 ledger_id s; 2 root_org_id s; 3 record_count u64; 4 writable bool; 5 read_only_reason s; 6 log_public_key b; 7 rules_version u32; 8 replica ReplicaInfo");
msg("Entry", "1 seq u64; 2 commit_time_ms i64; 3 request SignedRequest; 4 body Request; 5 effects Effects; 6 record b; 7 reversed_by_seq u64?");
msg("ListEntriesResponse", "1 entries Entry*; 2 next_page_token s");
msg("SourceBalance", "1 source_seq u64; 2 amount_fen u64; 3 programme_code s; 4 document_no s; 5 fiscal_year u32");
msg("Account", "1 account_id s; 2 owner_org_id s; 3 kind e; 4 name s; 5 programme_code s; 6 household_ref s; 7 division_code s; 8 opened_seq u64; 9 balance_fen u64; 10 balances SourceBalance*");
msg("ListAccountsResponse", "1 accounts Account*; 2 next_page_token s");
msg("OrgKey", "1 key_id s; 2 public_key b; 3 added_seq u64; 4 revoked_seq u64?; 5 read_only bool");
msg("Org", "1 org_id s; 2 name s; 3 role e; 4 division_code s; 5 parent_org_id s; 6 registered_seq u64; 7 keys OrgKey*");
msg("FlowNode", "1 account_id s; 2 owner_org_id s; 3 kind e; 4 name s; 5 division_code s; 6 received_fen u64; 7 held_fen u64; 8 held_since_day i32");
msg("FlowEdge", "1 from_account_id s; 2 to_account_id s; 3 amount_fen u64; 4 records u32; 5 first_seq u64; 6 last_seq u64; 7 kinds s*; 8 document_nos s*");
msg("FlowGraph", "1 source_seq u64; 2 traced_fen u64; 3 reached_households_fen u64; 4 withdrawn_fen u64; 5 nodes FlowNode*; 6 edges FlowEdge*; 7 next_page_token s; 8 source_document_no s; 9 programme_code s");
msg("Hop", "1 seq u64; 2 kind s; 3 from_account_id s; 4 to_account_id s; 5 amount_fen u64; 6 document_no s; 7 signer_org_id s; 8 key_id s; 9 value_day i32");
msg("Lineage", "1 source_seq u64; 2 amount_fen u64; 3 source_document_no s; 4 programme_code s; 5 appropriating_org_id s; 6 hops Hop*");
msg("TraceBackwardResponse", "1 lineages Lineage*; 2 truncated bool");
msg("HouseholdStatusChange", "1 effective_day i32; 2 status e; 3 seq u64");
msg("SourceAmount", "1 source_seq u64; 2 amount_fen u64");
msg("HouseholdPaymentLine", "1 seq u64; 2 value_day i32; 3 amount_fen u64; 4 programme_code s; 5 period s; 6 document_no s; 7 from_account_id s; 8 reversed bool; 9 sources SourceAmount*; 10 bank_status e; 11 bank_result_seq u64; 12 bank_reference s; 13 bank_day i32");
msg("MonitoringChange", "1 effective_day i32; 2 category e; 3 seq u64");
msg("HouseholdStatementResponse", "1 account_id s; 2 owner_org_id s; 3 household_ref s; 4 village_code s; 5 basis e; 6 members u32; 7 status_today e; 8 statuses HouseholdStatusChange*; 9 payments HouseholdPaymentLine*; 10 received_fen u64; 11 balance_fen u64; 12 monitoring_today e; 13 monitoring MonitoringChange*");
msg("IdleFundsRow", "1 account_id s; 2 owner_org_id s; 3 division_code s; 4 level s; 5 kind e; 6 name s; 7 balance_fen u64; 8 idle_fen u64; 9 age_0_30_fen u64; 10 age_30_90_fen u64; 11 age_90_365_fen u64; 12 age_365_730_fen u64; 13 age_730_plus_fen u64; 14 oldest_day i32");
msg("IdleFundsResponse", "1 rows IdleFundsRow*; 2 next_page_token s; 3 as_of_day i32");
msg("Finding", "1 kind s; 2 account_id s; 3 seqs u64*; 4 amount_fen u64; 5 detail s");
msg("AnomaliesResponse", "1 findings Finding*; 2 next_page_token s");
msg("ProgressRow", "1 programme_code s; 2 month s; 3 quota_received_fen u64; 4 quota_issued_down_fen u64; 5 cash_received_fen u64; 6 paid_fen u64; 7 paid_basis_points u64");
msg("SpendingProgressResponse", "1 rows ProgressRow*");
msg("GetLogKeyResponse", "1 vkey s; 2 access_log_vkey s");
msg("GetCheckpointResponse", "1 note s; 2 tree_size u64; 3 root_hash b");
msg("GetInclusionProofResponse", "1 index u64; 2 tree_size u64; 3 record b; 4 hashes b*; 5 leaf_hash b");

// Records (docs/record-format.md section 3).
msg("Record", "1 seq u64; 2 commit_time_ms i64; 3 request SignedRequest; 4 effects Effects");
msg("SignedRequest", "1 payload b; 2 key_id s; 3 signature b");
msg("Leg", "1 from_account_id s; 2 to_account_id s; 3 source_seq u64; 4 amount_fen u64; 5 from_arrival_seq u64?");
msg("Effects", "1 signer_org_id s; 2 legs Leg*; 3 registered_key_id s; 4 value_day i32");
msg("Genesis", "1 root_org_id s; 2 root_org_name s; 3 division_code s; 4 root_public_key b; 5 log_public_key b; 6 rules_version u32");
msg("RegisterOrg", "1 org_id s; 2 name s; 3 role e; 4 division_code s; 5 public_key b");
msg("AddKey", "1 org_id s; 2 public_key b; 3 read_only bool");
msg("RevokeKey", "1 key_id s; 2 reason s");
msg("OpenAccount", "1 account_id s; 2 kind e; 3 name s; 4 programme_code s; 5 household_ref s");
msg("Appropriation", "1 account_id s; 2 amount_fen u64; 3 programme_code s; 4 fiscal_year u32; 5 document_no s; 6 purpose s; 7 memo s");
msg("Transfer", "1 from_account_id s; 2 to_account_id s; 3 amount_fen u64; 4 sources SourceAmount*; 5 document_no s; 6 purpose s; 7 memo s; 8 quota_seq u64?");
msg("Disbursement", "1 from_account_id s; 2 household_account_id s; 3 amount_fen u64; 4 sources SourceAmount*; 5 programme_code s; 6 period s; 7 document_no s; 8 memo s; 9 quota_seq u64?");
msg("Reversal", "1 target_seq u64; 2 document_no s; 3 reason s");
msg("Consolidation", "1 from_account_id s; 2 pool_account_id s; 3 amount_fen u64; 4 sources SourceAmount*; 5 plan_document_no s; 6 memo s");
msg("RegisterProject", "1 account_id s; 2 name s; 3 category s; 4 location_code s; 5 budget_fen u64; 6 performance_targets s*; 7 responsible_unit s; 8 fiscal_year u32");
msg("AnnounceProject", "1 account_id s; 2 document_no s; 3 memo s");
msg("Allocation", "1 pool_account_id s; 2 project_account_id s; 3 amount_fen u64; 4 sources SourceAmount*; 5 document_no s; 6 memo s; 7 quota_seq u64?");
msg("RegisterHousehold", "1 account_id s; 2 household_ref s; 3 village_code s; 4 basis e; 5 members u32");
msg("SetHouseholdStatus", "1 account_id s; 2 status e; 3 document_no s; 4 reason s");
msg("Return", "1 from_account_id s; 2 to_account_id s; 3 amount_fen u64; 4 sources SourceAmount*; 5 kind e; 6 document_no s; 7 reason s; 8 disbursement_seq u64; 9 bank_reference s");
msg("UpgradeRules", "1 rules_version u32; 2 document_no s");
msg("ConfirmCredit", "1 disbursement_seq u64; 2 household_account_id s; 3 bank_reference s; 4 document_no s");
msg("SetProgrammeRules", "1 programme_code s; 2 document_no s; 3 household_max_fen u64; 4 person_max_fen u64; 5 county_share_min_percent u32; 6 idle_days_max u32; 7 announcement_required bool; 8 quota_issue_days_max u32");
msg("EvaluateProject", "1 account_id s; 2 document_no s; 3 score u32; 4 targets_met bool*");
msg("DeclareImportWindow", "1 org_id s; 2 until_date s; 3 document_no s");
msg("DeclarePairing", "1 from_org_id s; 2 to_org_id s; 3 document_no s");
msg("IssueQuota", "1 to_org_id s; 2 from_quota_seq u64?; 3 amount_fen u64; 4 programme_code s; 5 fiscal_year u32; 6 document_no s; 7 direct bool; 8 project_code s");
msg("SetMonitoring", "1 account_id s; 2 category e; 3 document_no s; 4 reason s");

// Request.body: the oneof's field number names the kind.
export const BODY_KINDS = {
  10: "Genesis", 11: "RegisterOrg", 12: "AddKey", 13: "RevokeKey", 14: "OpenAccount",
  15: "Appropriation", 16: "Transfer", 17: "Disbursement", 18: "Reversal",
  19: "Consolidation", 20: "RegisterProject", 21: "AnnounceProject", 22: "Allocation",
  23: "RegisterHousehold", 24: "SetHouseholdStatus", 25: "Return", 26: "UpgradeRules",
  27: "ConfirmCredit", 28: "SetProgrammeRules", 29: "EvaluateProject",
  30: "DeclareImportWindow", 31: "DeclarePairing", 32: "IssueQuota", 33: "SetMonitoring",
};
msg("Request", "1 ledger_id s; 2 idempotency_key s; 3 signed_at_ms i64; 4 value_date s; 5 imported bool; " +
  Object.entries(BODY_KINDS).map(([no, kind]) => `${no} ${kind} ${kind}?`).join("; "));

function defaultOf(spec) {
  if (spec.repeated) return [];
  if (spec.optional) return undefined;
  switch (spec.type) {
    case "u64": case "i64": return 0n;
    case "u32": case "i32": case "e": return 0;
    case "bool": return false;
    case "s": return "";
    case "b": return new Uint8Array(0);
    default: return null;
  }
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.pos = 0;
  }
  done() {
    return this.pos >= this.bytes.length;
  }
  varint() {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.bytes.length) throw new Error("protobuf: varint runs past the end");
      const byte = this.bytes[this.pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) {
        if (value >= 1n << 64n) throw new Error("protobuf: varint longer than 64 bits");
        return value;
      }
    }
    throw new Error("protobuf: varint longer than 10 bytes");
  }
  take(n) {
    if (n > this.bytes.length - this.pos) throw new Error("protobuf: field runs past the end");
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  skip(wireType) {
    switch (wireType) {
      case 0: this.varint(); break;
      case 1: this.take(8); break;
      case 2: this.take(Number(this.varint())); break;
      case 5: this.take(4); break;
      default: throw new Error(`protobuf: unknown wire type ${wireType}`);
    }
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

function scalar(type, value) {
  switch (type) {
    case "u64": return value;
    case "i64": return BigInt.asIntN(64, value);
    case "u32": return Number(BigInt.asUintN(32, value));
    case "i32": return Number(BigInt.asIntN(32, value));
    case "e": return Number(BigInt.asIntN(32, value));
    case "bool": return value !== 0n;
    default: throw new Error(`protobuf: ${type} is not a varint type`);
  }
}

/// Decodes `bytes` as the message `name`. Unknown fields are skipped.
export function decode(name, bytes) {
  const schema = SCHEMAS[name];
  if (!schema) throw new Error(`protobuf: no schema for ${name}`);
  const out = {};
  for (const spec of Object.values(schema)) out[spec.field] = defaultOf(spec);
  const reader = new Reader(bytes);
  while (!reader.done()) {
    const tag = reader.varint();
    const no = Number(tag >> 3n);
    const wireType = Number(tag & 7n);
    const spec = schema[no];
    if (!spec) {
      reader.skip(wireType);
      continue;
    }
    let value;
    if (wireType === 2) {
      const data = reader.take(Number(reader.varint()));
      if (spec.type === "s") value = UTF8.decode(data);
      else if (spec.type === "b") value = data.slice();
      else if (SCHEMAS[spec.type]) value = decode(spec.type, data);
      else {
        // A packed repeated varint field.
        const packed = new Reader(data);
        while (!packed.done()) out[spec.field].push(scalar(spec.type, packed.varint()));
        continue;
      }
    } else if (wireType === 0) {
      value = scalar(spec.type, reader.varint());
    } else {
      throw new Error(`protobuf: field ${no} of ${name} has wire type ${wireType}`);
    }
    if (spec.repeated) out[spec.field].push(value);
    else out[spec.field] = value;
  }
  return out;
}

function writeVarint(out, value) {
  let v = BigInt.asUintN(64, BigInt(value));
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

const UTF8_ENCODER = new TextEncoder();

/// Encodes the flat request message `name` from `fields` (names as in the
/// .proto). Defaults are left out, as proto3 does; an optional field is
/// written whenever it is set.
export function encode(name, fields) {
  const schema = SCHEMAS[name];
  if (!schema) throw new Error(`protobuf: no schema for ${name}`);
  const out = [];
  const numbers = Object.keys(schema).map(Number).sort((a, b) => a - b);
  for (const no of numbers) {
    const spec = schema[no];
    const value = fields[spec.field];
    if (value === undefined || value === null) continue;
    if (spec.type === "s" || spec.type === "b") {
      const data = spec.type === "s" ? UTF8_ENCODER.encode(value) : value;
      if (data.length === 0 && !spec.optional) continue;
      writeVarint(out, (no << 3) | 2);
      writeVarint(out, data.length);
      out.push(...data);
    } else {
      const number = typeof value === "boolean" ? (value ? 1n : 0n) : BigInt(value);
      if (number === 0n && !spec.optional) continue;
      writeVarint(out, no << 3);
      writeVarint(out, number);
    }
  }
  return new Uint8Array(out);
}

/// The kind and fields of a decoded Request's body: { kind, body }.
export function bodyOf(request) {
  for (const kind of Object.values(BODY_KINDS)) {
    if (request && request[kind] !== undefined) return { kind, body: request[kind] };
  }
  return { kind: "Unknown", body: {} };
}

/// The 文号 a body cites, as docs/exports.md's document_no column.
export function documentNo(kind, body) {
  return kind === "Consolidation" ? body.plan_document_no || "" : body.document_no || "";
}

/// A record's bytes decoded: the record, its signed request, and the body's
/// kind and fields.
export function decodeRecord(bytes) {
  const record = decode("Record", bytes);
  const request = decode("Request", record.request ? record.request.payload : new Uint8Array(0));
  return { record, request, ...bodyOf(request) };
}
