// Checks, in the browser, that a record is in the signed log: written from
// docs/record-format.md (sections 4, 5 and 7) with WebCrypto's SHA-256 and
// Ed25519, apart from the server's Rust code. Nothing here trusts the
// server: a record counts as verified only if its bytes hash, through the
// audit path, to the root of a checkpoint signed by the log key the user
// pinned.

const subtle = globalThis.crypto.subtle;
const ASCII = new TextEncoder();

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(text) {
  if (!/^([0-9a-f]{2})*$/.test(text)) throw new Error("not lowercase hex");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new Error("not standard base64 with padding");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export function toBase64(bytes) {
  return btoa(String.fromCharCode(...bytes));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle.digest("SHA-256", bytes));
}

/// RFC 9162 leaf hash: SHA-256(0x00 ‖ data).
export function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

/// RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right).
export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/// The root that the audit path `proof` gives leaf `index` of a tree of
/// `size` leaves (RFC 9162 §2.1.3.2), or null when the path cannot belong to
/// such a tree. `index` and `size` are BigInt.
export async function rootFromInclusionProof(index, size, leaf, proof) {
  if (typeof index !== "bigint" || typeof size !== "bigint") throw new Error("index and size are BigInt");
  if (index >= size || leaf.length !== 32) return null;
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (p.length !== 32 || sn === 0n) return null;
    if (fn % 2n === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2n === 0n) {
        do {
          fn >>= 1n;
          sn >>= 1n;
        } while (fn % 2n === 0n && fn !== 0n);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

/// Parses a note verifier key "<name>+<hex key id>+<base64(0x01 ‖ key)>"
/// (section 7.2) and checks its key id. Throws on anything else.
export async function parseVkey(vkey) {
  const first = vkey.indexOf("+");
  const second = vkey.indexOf("+", first + 1);
  if (first <= 0 || second < 0) throw new Error("a log key has the form name+keyid+key");
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  const key = fromBase64(vkey.slice(second + 1));
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error("the log key's id is not 8 hex digits");
  if (key.length !== 33 || key[0] !== 0x01) throw new Error("the log key is not an Ed25519 key (type 0x01, 32 bytes)");
  const digest = await sha256(concat(ASCII.encode(name), Uint8Array.of(0x0a), key));
  if (hex(digest.subarray(0, 4)) !== idHex) throw new Error("the log key's id does not match its name and key");
  const publicKey = key.subarray(1);
  return {
    name,
    keyId: fromHex(idHex),
    publicKey,
    cryptoKey: await subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]),
  };
}

export async function ed25519Verify(publicKey, signature, message) {
  if (signature.length !== 64) return false;
  const key = await subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return subtle.verify({ name: "Ed25519" }, key, signature, message);
}

/// Opens a signed note with `verifier` (from parseVkey): returns its text if
/// a line of the verifier's name and key id carries a valid signature over
/// it, and throws otherwise (section 7.3, C2SP signed-note).
export async function openNote(note, verifier) {
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("the note has no blank line before its signatures");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2).split("\n");
  if (lines.pop() !== "") throw new Error("the note's last signature line does not end in a newline");
  const textBytes = ASCII.encode(text);
  for (const line of lines) {
    if (!line.startsWith("\u2014 ")) throw new Error("a signature line does not start with an em dash");
    const [name, b64, extra] = line.slice(2).split(" ");
    if (extra !== undefined || !b64) throw new Error("a signature line is malformed");
    if (name !== verifier.name) continue;
    const sig = fromBase64(b64);
    if (sig.length !== 68 || !equal(sig.subarray(0, 4), verifier.keyId)) continue;
    if (await subtle.verify({ name: "Ed25519" }, verifier.cryptoKey, sig.subarray(4), textBytes)) {
      return text;
    }
    throw new Error("the log's signature on the checkpoint does not verify with the pinned key");
  }
  throw new Error("no signature by the pinned log key on the checkpoint");
}

/// A fundtrail checkpoint (section 7.1) opened with the pinned log key:
/// { origin, size (BigInt), root (32 bytes) }. Throws if not signed by it.
export async function openCheckpoint(note, verifier) {
  const text = await openNote(note, verifier);
  const lines = text.split("\n");
  if (lines.length < 4 || lines[lines.length - 1] !== "") throw new Error("the checkpoint text is not three lines");
  const [origin, sizeText, rootText] = lines;
  if (origin !== verifier.name) throw new Error(`the checkpoint's origin ${origin} is not the pinned log's`);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error("the checkpoint's size is not a decimal number");
  const root = fromBase64(rootText);
  if (root.length !== 32) throw new Error("the checkpoint's root is not 32 bytes");
  return { origin, size: BigInt(sizeText), root };
}

/// Verifies that `record` (bytes) is leaf `index` of the log whose signed
/// checkpoint `note` the pinned `vkey` opens, using the audit path `proof`.
/// Returns { ok: true, size } or { ok: false, reason } (in Chinese, for the
/// page); never throws for bad input.
export async function verifyRecord({ vkey, note, index, record, proof, seq }) {
  try {
    const verifier = await parseVkey(vkey);
    const checkpoint = await openCheckpoint(note, verifier);
    if (seq !== index) return { ok: false, reason: `记录自身的序号 ${seq} 与证明的位置 ${index} 不符` };
    const leaf = await leafHash(record);
    const root = await rootFromInclusionProof(index, checkpoint.size, leaf, proof);
    if (root === null || !equal(root, checkpoint.root)) {
      return { ok: false, reason: `默克尔路径算出的根与检查点（${checkpoint.size} 条）的根不符` };
    }
    return { ok: true, size: checkpoint.size, leaf: hex(leaf) };
  } catch (e) {
    return { ok: false, reason: `检查点未通过：${e.message}` };
  }
}

/// Verifies the client's signature inside a record (section 5.2) with the
/// Ed25519 public key registered for its key id.
export function verifyRequestSignature(publicKey, signedRequest) {
  const message = concat(ASCII.encode("fundtrail/v1/request\n"), signedRequest.payload);
  return ed25519Verify(publicKey, signedRequest.signature, message);
}
