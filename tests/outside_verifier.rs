//! An outside verifier, as an auditor would write one in another language
//! from docs/record-format.md alone. It talks to a real server over gRPC but
//! checks everything with its own code: a hand-written protobuf wire-format
//! reader, SHA-256 and Ed25519 called directly, RFC 9162 inclusion proofs and
//! tree hashes computed by hand, and the C2SP checkpoint note, log signature
//! and witness cosignature parsed and checked by hand. No fundtrail decoding
//! or verification code is used for any check (fundtrail's client is used
//! only to create records, to reach the server and to act as a witness).

mod common;

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::*;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use fundtrail_api::pb;
use fundtrail_client::witness::{witness_round, Round, WitnessState};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// A minimal protobuf wire-format reader.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Len(&'a [u8]),
    Fixed32([u8; 4]),
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos).ok_or("varint cut short")?;
        *pos += 1;
        if i == 9 && byte > 1 {
            return Err("varint overflows 64 bits".into());
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos
        .checked_add(n)
        .filter(|&end| end <= buf.len())
        .ok_or("field cut short")?;
    let bytes = &buf[*pos..end];
    *pos = end;
    Ok(bytes)
}

/// A decoded message: its fields in wire order. Unknown fields are kept and
/// simply never asked for.
struct Message<'a> {
    fields: Vec<(u64, Value<'a>)>,
}

impl<'a> Message<'a> {
    fn parse(buf: &'a [u8]) -> Result<Message<'a>, String> {
        let mut fields = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let tag = read_varint(buf, &mut pos)?;
            let number = tag >> 3;
            if number == 0 || number > (1 << 29) - 1 {
                return Err(format!("bad field number {number}"));
            }
            let value = match tag & 7 {
                0 => Value::Varint(read_varint(buf, &mut pos)?),
                1 => Value::Fixed64(take(buf, &mut pos, 8)?.try_into().unwrap()),
                2 => {
                    let len = read_varint(buf, &mut pos)?;
                    let len = usize::try_from(len).map_err(|_| "length too large")?;
                    Value::Len(take(buf, &mut pos, len)?)
                }
                5 => Value::Fixed32(take(buf, &mut pos, 4)?.try_into().unwrap()),
                wire_type => return Err(format!("unsupported wire type {wire_type}")),
            };
            fields.push((number, value));
        }
        Ok(Message { fields })
    }

    /// The last occurrence of a field (proto3: the last one wins).
    fn last(&self, number: u64) -> Option<Value<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .map(|(_, v)| *v)
    }

    /// A varint field; absent means 0.
    fn varint(&self, number: u64) -> Result<u64, String> {
        match self.last(number) {
            None => Ok(0),
            Some(Value::Varint(v)) => Ok(v),
            Some(other) => Err(format!("field {number} is {other:?}, not a varint")),
        }
    }

    /// A bytes, string or sub-message field; absent means empty.
    fn bytes(&self, number: u64) -> Result<&'a [u8], String> {
        match self.last(number) {
            None => Ok(&[]),
            Some(Value::Len(b)) => Ok(b),
            Some(other) => Err(format!("field {number} is {other:?}, not length-delimited")),
        }
    }

    fn string(&self, number: u64) -> Result<String, String> {
        String::from_utf8(self.bytes(number)?.to_vec())
            .map_err(|_| format!("field {number} is not UTF-8"))
    }

    /// Every occurrence of a repeated length-delimited field.
    fn repeated(&self, number: u64) -> Vec<&'a [u8]> {
        self.fields
            .iter()
            .filter_map(|(n, v)| match v {
                Value::Len(b) if *n == number => Some(*b),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// fundtrail's record format, read by hand (field numbers from records.proto).

#[derive(Debug)]
struct Record<'a> {
    seq: u64,
    commit_time_ms: i64,
    payload: &'a [u8],
    key_id: String,
    signature: &'a [u8],
    signer_org_id: String,
    /// Effects.legs: (from, to, source_seq, amount_fen).
    legs: Vec<(String, String, u64, u64)>,
    registered_key_id: String,
}

fn parse_record(bytes: &[u8]) -> Result<Record<'_>, String> {
    let record = Message::parse(bytes)?;
    let request = Message::parse(record.bytes(3)?)?;
    let effects = Message::parse(record.bytes(4)?)?;
    let mut legs = Vec::new();
    for leg in effects.repeated(2) {
        let leg = Message::parse(leg)?;
        legs.push((
            leg.string(1)?,
            leg.string(2)?,
            leg.varint(3)?,
            leg.varint(4)?,
        ));
    }
    Ok(Record {
        seq: record.varint(1)?,
        // int64 is a two's-complement varint.
        commit_time_ms: record.varint(2)? as i64,
        payload: request.bytes(1)?,
        key_id: request.string(2)?,
        signature: request.bytes(3)?,
        signer_org_id: effects.string(1)?,
        legs,
        registered_key_id: effects.string(3)?,
    })
}

const BODY_KINDS: [(u64, &str); 24] = [
    (10, "genesis"),
    (11, "register_org"),
    (12, "add_key"),
    (13, "revoke_key"),
    (14, "open_account"),
    (15, "appropriation"),
    (16, "transfer"),
    (17, "disbursement"),
    (18, "reversal"),
    (19, "consolidation"),
    (20, "register_project"),
    (21, "announce_project"),
    (22, "allocation"),
    (23, "register_household"),
    (24, "set_household_status"),
    (25, "return"),
    (26, "upgrade_rules"),
    (27, "confirm_credit"),
    (28, "set_programme_rules"),
    (29, "evaluate_project"),
    (30, "declare_import_window"),
    (31, "declare_pairing"),
    (32, "issue_quota"),
    (33, "set_monitoring"),
];

struct Request<'a> {
    ledger_id: String,
    signed_at_ms: i64,
    kind: &'static str,
    body: Message<'a>,
}

fn parse_request(payload: &[u8]) -> Result<Request<'_>, String> {
    let request = Message::parse(payload)?;
    let bodies: Vec<(u64, &[u8])> = request
        .fields
        .iter()
        .filter_map(|(n, v)| match v {
            Value::Len(b) if (10..=33).contains(n) => Some((*n, *b)),
            _ => None,
        })
        .collect();
    let [(number, body)] = bodies[..] else {
        return Err(format!("{} bodies in the request, want 1", bodies.len()));
    };
    let kind = BODY_KINDS.iter().find(|(n, _)| *n == number).unwrap().1;
    Ok(Request {
        ledger_id: request.string(1)?,
        signed_at_ms: request.varint(3)? as i64,
        kind,
        body: Message::parse(body)?,
    })
}

// ---------------------------------------------------------------------------
// Hashes and signatures, by hand.

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

fn leaf_hash(record: &[u8]) -> [u8; 32] {
    sha256(&[&[0x00], record])
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    sha256(&[&[0x01], left, right])
}

/// fundtrail key id: lowercase hex of the first 8 bytes of SHA-256(key).
fn request_key_id(public_key: &[u8]) -> String {
    sha256(&[public_key])[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// C2SP signed-note key id: SHA-256(name ‖ 0x0A ‖ type ‖ key)[0..4].
fn note_key_id(name: &str, signature_type: u8, public_key: &[u8]) -> [u8; 4] {
    sha256(&[name.as_bytes(), &[0x0a, signature_type], public_key])[..4]
        .try_into()
        .unwrap()
}

fn verify_request_signature(
    public_key: &[u8],
    payload: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let key = VerifyingKey::from_bytes(public_key.try_into().map_err(|_| "key not 32 bytes")?)
        .map_err(|e| e.to_string())?;
    let signature = Signature::from_slice(signature).map_err(|e| e.to_string())?;
    let mut message = b"fundtrail/v1/request\n".to_vec();
    message.extend_from_slice(payload);
    key.verify_strict(&message, &signature)
        .map_err(|e| e.to_string())
}

/// RFC 9162 §2.1.3.2: checks an inclusion proof of `leaf` at `index` in the
/// tree of `tree_size` leaves with root `root`.
fn check_inclusion(
    index: u64,
    tree_size: u64,
    leaf: [u8; 32],
    proof: &[Vec<u8>],
    root: &[u8; 32],
) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut f_n, mut s_n, mut r) = (index, tree_size - 1, leaf);
    for p in proof {
        let Ok(p) = <[u8; 32]>::try_from(p.as_slice()) else {
            return false;
        };
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(&p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, &p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 §2.1.1: the tree hash of `leaves` (their leaf hashes), recursively.
fn tree_hash(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            // The largest power of two smaller than n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

// ---------------------------------------------------------------------------
// The key registry, from the exported log.

#[derive(Debug, Clone)]
struct RegisteredKey {
    public_key: Vec<u8>,
    org_id: String,
    registered_seq: u64,
    revoked_seq: Option<u64>,
}

#[derive(Debug, Default)]
struct Registry {
    keys: BTreeMap<String, RegisteredKey>,
    /// org id → role number (OrgRole).
    roles: BTreeMap<String, u64>,
    ledger_id: String,
    log_public_key: Vec<u8>,
}

fn build_registry(records: &[Vec<u8>]) -> Result<Registry, String> {
    let mut registry = Registry::default();
    for (index, bytes) in records.iter().enumerate() {
        let record = parse_record(bytes)?;
        let seq = record.seq;
        assert_eq!(seq, index as u64, "record seq is its leaf index");
        let request = parse_request(record.payload)?;
        let mut add = |org_id: String, public_key: &[u8]| {
            let key_id = request_key_id(public_key);
            assert_eq!(
                record.registered_key_id, key_id,
                "Effects.registered_key_id of record {seq}"
            );
            let old = registry.keys.insert(
                key_id,
                RegisteredKey {
                    public_key: public_key.to_vec(),
                    org_id,
                    registered_seq: seq,
                    revoked_seq: None,
                },
            );
            assert!(old.is_none(), "a key is registered once");
        };
        match request.kind {
            "genesis" => {
                assert_eq!(seq, 0, "genesis is record 0");
                let root_org = request.body.string(1)?;
                add(root_org.clone(), request.body.bytes(4)?);
                registry.roles.insert(root_org, 1);
                registry.ledger_id = request.ledger_id.clone();
                registry.log_public_key = request.body.bytes(5)?.to_vec();
            }
            "register_org" => {
                let org_id = request.body.string(1)?;
                registry
                    .roles
                    .insert(org_id.clone(), request.body.varint(3)?);
                add(org_id, request.body.bytes(5)?);
            }
            "add_key" => add(request.body.string(1)?, request.body.bytes(2)?),
            "revoke_key" => {
                let key_id = request.body.string(1)?;
                let key = registry
                    .keys
                    .get_mut(&key_id)
                    .ok_or("unknown key revoked")?;
                key.revoked_seq = Some(seq);
            }
            _ => {}
        }
        assert_eq!(
            request.ledger_id, registry.ledger_id,
            "record {seq} is for this ledger"
        );
    }
    Ok(registry)
}

/// Re-verifies one record's request signature against the registry: the key
/// must be registered by this record or an earlier one and not revoked by an
/// earlier one.
fn verify_record(registry: &Registry, record_bytes: &[u8]) -> Result<(), String> {
    let record = parse_record(record_bytes)?;
    let key = registry
        .keys
        .get(&record.key_id)
        .ok_or_else(|| format!("key {} is not in the registry", record.key_id))?;
    if request_key_id(&key.public_key) != record.key_id {
        return Err("registry key id mismatch".into());
    }
    if key.registered_seq > record.seq {
        return Err(format!(
            "key {} signed before it was registered",
            record.key_id
        ));
    }
    if key.registered_seq == record.seq && record.seq != 0 {
        return Err("only genesis may be signed by the key it registers".into());
    }
    if key.revoked_seq.is_some_and(|r| r < record.seq) {
        return Err(format!("key {} signed after its revocation", record.key_id));
    }
    if key.org_id != record.signer_org_id {
        return Err(format!(
            "Effects.signer_org_id {} is not the key's org {}",
            record.signer_org_id, key.org_id
        ));
    }
    verify_request_signature(&key.public_key, record.payload, record.signature)
}

// ---------------------------------------------------------------------------
// Checkpoint notes, by hand.

/// Splits a signed note into its text (ending in a newline) and signature
/// lines.
fn split_note(note: &str) -> (&str, Vec<&str>) {
    let blank = note
        .rfind("\n\n")
        .expect("a blank line before the signatures");
    let text = &note[..=blank];
    let lines = note[blank + 2..]
        .strip_suffix('\n')
        .expect("signature lines end in a newline")
        .split('\n')
        .collect();
    (text, lines)
}

/// Finds the line `— <name> <base64>` and returns the decoded bytes.
fn signature_of(lines: &[&str], name: &str) -> Option<Vec<u8>> {
    let prefix = format!("\u{2014} {name} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(|b| BASE64.decode(b).expect("signature is base64"))
}

/// Checks the log's Ed25519 signature line on `note` with the vkey's key and
/// returns (origin, tree size, root hash) from the checkpoint text.
fn open_checkpoint(note: &str, vkey: &str) -> Result<(String, u64, [u8; 32]), String> {
    let mut parts = vkey.splitn(3, '+');
    let (name, id_hex, key_b64) = (
        parts.next().unwrap(),
        parts.next().ok_or("vkey has no key id")?,
        parts.next().ok_or("vkey has no key")?,
    );
    let key = BASE64.decode(key_b64).map_err(|e| e.to_string())?;
    if key.len() != 33 || key[0] != 0x01 {
        return Err("vkey is not 0x01 ‖ 32-byte Ed25519 key".into());
    }
    let key_id = note_key_id(name, 0x01, &key[1..]);
    if hex_of(&key_id) != id_hex {
        return Err("vkey key id does not match its key".into());
    }
    let (text, lines) = split_note(note);
    let sig = signature_of(&lines, name).ok_or("no signature line from the log")?;
    if sig.len() != 4 + 64 || sig[..4] != key_id {
        return Err("log signature line has a wrong key id or length".into());
    }
    let verifying_key =
        VerifyingKey::from_bytes(key[1..].try_into().unwrap()).map_err(|e| e.to_string())?;
    verifying_key
        .verify_strict(text.as_bytes(), &Signature::from_slice(&sig[4..]).unwrap())
        .map_err(|e| format!("log signature does not verify: {e}"))?;
    let body: Vec<&str> = text.strip_suffix('\n').unwrap().split('\n').collect();
    let [origin, size, root] = body[..] else {
        return Err(format!("checkpoint text has {} lines, want 3", body.len()));
    };
    let size: u64 = size.parse().map_err(|_| "size is not decimal")?;
    let root: [u8; 32] = BASE64
        .decode(root)
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "root is not 32 bytes")?;
    Ok((origin.to_string(), size, root))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_verifier_checks_records_proofs_and_checkpoints_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let mut client = server.client().await;
    let chain = build_chain(&mut client, server.root()).await;
    let witness_key = SigningKey::from_bytes(&[41; 32]);
    let witness_signer = fundtrail_client::Signer::new(witness_key.clone());
    ok(
        &mut client,
        &chain.root,
        register_org(
            "cnao-witness",
            "审计署见证节点",
            pb::OrgRole::Witness,
            "000000",
            &witness_signer,
        ),
    )
    .await;
    checkpoint_of_all(&server, &mut client).await;
    let vkey = vkey(&mut client).await;
    // A witness (fundtrail's own client code) cosigns the newest checkpoint.
    let mut witness_state = WitnessState::default();
    let Round::Cosigned { tree_size } = witness_round(
        &mut client,
        &vkey,
        "cnao-witness",
        &witness_key,
        &mut witness_state,
        1_800_000_000,
    )
    .await
    .unwrap() else {
        panic!("the witness did not cosign");
    };
    let served = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest { tree_size })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.tree_size, tree_size);

    // --- Everything below is the outside verifier. ---

    // The whole log up to the checkpoint, via ExportLog.
    let mut stream = client
        .audit
        .export_log(pb::ExportLogRequest {
            start: 0,
            end: tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let mut records = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        assert_eq!(item.index, records.len() as u64);
        records.push(item.record);
    }
    assert_eq!(records.len() as u64, tree_size);

    // The key registry from the log; every record's signature re-verified.
    let registry = build_registry(&records).unwrap();
    assert!(registry.ledger_id.starts_with("fundtrail-"));
    for (seq, bytes) in records.iter().enumerate() {
        verify_record(&registry, bytes).unwrap_or_else(|e| panic!("record {seq}: {e}"));
    }
    let revoked = registry.keys.get(chain.revoked.key_id()).unwrap();
    assert!(
        revoked.revoked_seq.is_some(),
        "the revoked key is seen as revoked"
    );

    // The checkpoint note: the log's signature, origin, size, root.
    let (origin, size, root) = open_checkpoint(&served.note, &vkey).unwrap();
    assert_eq!(origin, format!("fundtrail/{}", registry.ledger_id));
    assert!(
        vkey.starts_with(&format!("{origin}+")),
        "vkey name is the origin"
    );
    assert_eq!(size, tree_size);
    assert_eq!(root.to_vec(), served.root_hash);
    // The vkey's key is the log key named in the genesis record.
    let vkey_key = BASE64.decode(vkey.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(vkey_key[1..], registry.log_public_key[..]);
    // The root is the RFC 9162 tree hash of the exported records.
    let leaves: Vec<[u8; 32]> = records.iter().map(|r| leaf_hash(r)).collect();
    assert_eq!(tree_hash(&leaves), root);
    // A changed checkpoint text no longer carries a valid log signature.
    let altered = served
        .note
        .replacen(&format!("\n{size}\n"), &format!("\n{}\n", size + 1), 1);
    assert_ne!(altered, served.note);
    assert!(open_checkpoint(&altered, &vkey)
        .unwrap_err()
        .contains("does not verify"));

    // The witness cosignature (C2SP tlog-cosignature/v1), with the witness
    // key taken from the log's own registry: an org of role WITNESS (4).
    assert_eq!(registry.roles.get("cnao-witness"), Some(&4));
    let witness_keys: Vec<&RegisteredKey> = registry
        .keys
        .values()
        .filter(|k| k.org_id == "cnao-witness")
        .collect();
    assert_eq!(witness_keys.len(), 1);
    let witness_public = &witness_keys[0].public_key;
    let (text, lines) = split_note(&served.note);
    assert_eq!(lines.len(), 2, "the log's line and one cosignature");
    let cosig = signature_of(&lines, "cnao-witness").expect("a cosignature line");
    assert_eq!(cosig.len(), 4 + 8 + 64);
    assert_eq!(
        cosig[..4],
        note_key_id("cnao-witness", 0x04, witness_public)
    );
    let time = u64::from_be_bytes(cosig[4..12].try_into().unwrap());
    assert_eq!(time, 1_800_000_000);
    let witness_verifier =
        VerifyingKey::from_bytes(witness_public.as_slice().try_into().unwrap()).unwrap();
    let cosig_signature = Signature::from_slice(&cosig[12..]).unwrap();
    let message = format!("cosignature/v1\ntime {time}\n{text}");
    witness_verifier
        .verify_strict(message.as_bytes(), &cosig_signature)
        .expect("the witness cosignature verifies");
    let wrong_time = format!("cosignature/v1\ntime {}\n{text}", time + 1);
    assert!(witness_verifier
        .verify_strict(wrong_time.as_bytes(), &cosig_signature)
        .is_err());

    // Two records fetched with their inclusion proofs: genesis and the
    // household disbursement.
    let disbursement_seq = records
        .iter()
        .position(|r| {
            parse_request(parse_record(r).unwrap().payload)
                .unwrap()
                .kind
                == "disbursement"
        })
        .expect("a disbursement in the log") as u64;
    for index in [0, disbursement_seq] {
        let proof = client
            .audit
            .get_inclusion_proof(pb::GetInclusionProofRequest {
                index,
                tree_size,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((proof.index, proof.tree_size), (index, tree_size));
        assert_eq!(
            proof.record, records[index as usize],
            "same bytes as exported"
        );
        let record = parse_record(&proof.record).unwrap();
        assert_eq!(record.seq, index);
        assert!(record.commit_time_ms > 1_700_000_000_000);
        let request = parse_request(record.payload).unwrap();
        assert_eq!(request.ledger_id, registry.ledger_id);
        assert!(request.signed_at_ms > 1_700_000_000_000);

        // Leaf hash and the inclusion proof against the signed root.
        let leaf = leaf_hash(&proof.record);
        assert!(check_inclusion(
            index,
            tree_size,
            leaf,
            &proof.hashes,
            &root
        ));
        // The signature, with the key found in the registry.
        verify_record(&registry, &proof.record).unwrap();
        let key = &registry.keys[&record.key_id];
        verify_request_signature(&key.public_key, record.payload, record.signature).unwrap();

        // What the record says.
        if index == 0 {
            assert_eq!(request.kind, "genesis");
            assert_eq!(request.body.string(1).unwrap(), "mof");
            assert_eq!(record.key_id, chain.root.key_id());
            assert_eq!(record.signer_org_id, "mof");
        } else {
            assert_eq!(request.kind, "disbursement");
            assert_eq!(request.body.string(1).unwrap(), "dx-xczx");
            assert_eq!(request.body.string(2).unwrap(), "dx-hh-0001");
            assert_eq!(request.body.varint(3).unwrap(), 3_000_00);
            assert_eq!(request.body.string(6).unwrap(), "2026-03");
            assert_eq!(record.key_id, chain.dongxiang.key_id());
            assert_eq!(record.signer_org_id, "dx-czj");
            assert_eq!(
                record.legs,
                vec![(
                    "dx-xczx".to_string(),
                    "dx-hh-0001".to_string(),
                    chain.central_source,
                    3_000_00
                )]
            );
        }

        // Negative: one changed record byte breaks the leaf and the proof;
        // so do a wrong index and a changed proof hash.
        let mut changed = proof.record.clone();
        let middle = changed.len() / 2;
        changed[middle] ^= 0x01;
        assert_ne!(leaf_hash(&changed), leaf);
        assert!(!check_inclusion(
            index,
            tree_size,
            leaf_hash(&changed),
            &proof.hashes,
            &root
        ));
        assert!(!check_inclusion(
            index ^ 1,
            tree_size,
            leaf,
            &proof.hashes,
            &root
        ));
        let mut bad_hashes = proof.hashes.clone();
        bad_hashes[0][0] ^= 0x80;
        assert!(!check_inclusion(index, tree_size, leaf, &bad_hashes, &root));
        assert!(!check_inclusion(
            index,
            tree_size,
            leaf,
            &proof.hashes[1..],
            &root
        ));

        // Negative: one changed payload byte breaks the signature.
        for position in [0, record.payload.len() / 2, record.payload.len() - 1] {
            let mut payload = record.payload.to_vec();
            payload[position] ^= 0x01;
            assert!(
                verify_request_signature(&key.public_key, &payload, record.signature).is_err(),
                "record {index}: payload byte {position} changed"
            );
        }
        // The signature covers the prefix: it is not one over the bare payload.
        let bare_key =
            VerifyingKey::from_bytes(key.public_key.as_slice().try_into().unwrap()).unwrap();
        let signature = Signature::from_slice(record.signature).unwrap();
        assert!(bare_key.verify_strict(record.payload, &signature).is_err());
    }

    // The journal file: a header (magic, format version, ledger id, CRC),
    // then u32 LE length ‖ u32 LE CRC-32C ‖ record, the same bytes as served.
    let journal = std::fs::read(dir.path().join("journal.log")).unwrap();
    assert_eq!(&journal[0..8], b"FTJOURNL");
    assert_eq!(u32::from_le_bytes(journal[8..12].try_into().unwrap()), 1);
    let id_len = u16::from_le_bytes(journal[12..14].try_into().unwrap()) as usize;
    let ledger_id = std::str::from_utf8(&journal[14..14 + id_len]).unwrap();
    let genesis = parse_request(parse_record(&records[0]).unwrap().payload).unwrap();
    assert_eq!(
        ledger_id, genesis.ledger_id,
        "the header names the genesis ledger"
    );
    let header_crc = u32::from_le_bytes(journal[14 + id_len..18 + id_len].try_into().unwrap());
    assert_eq!(crc32c::crc32c(&journal[..14 + id_len]), header_crc);
    let mut pos = 18 + id_len;
    let mut framed = Vec::new();
    while pos < journal.len() && framed.len() < records.len() {
        let len = u32::from_le_bytes(journal[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(journal[pos + 4..pos + 8].try_into().unwrap());
        let record = &journal[pos + 8..pos + 8 + len];
        assert_eq!(crc32c::crc32c(record), crc, "frame at byte {pos}");
        framed.push(record.to_vec());
        pos += 8 + len;
    }
    assert_eq!(framed, records);

    server.stop().await;
}

#[test]
fn the_hand_written_tree_code_matches_rfc_9162_on_small_trees() {
    // Every leaf of every tree up to 17 leaves, with proofs built by the
    // RFC 9162 §2.1.3.1 PATH definition, checks against the §2.1.1 root.
    fn path(m: usize, leaves: &[[u8; 32]]) -> Vec<Vec<u8>> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(tree_hash(&leaves[k..]).to_vec());
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(tree_hash(&leaves[..k]).to_vec());
            p
        }
    }
    let all: Vec<[u8; 32]> = (0u8..17).map(|i| leaf_hash(&[i])).collect();
    for n in 1..=all.len() {
        let leaves = &all[..n];
        let root = tree_hash(leaves);
        for (m, leaf) in leaves.iter().enumerate() {
            let proof = path(m, leaves);
            assert!(check_inclusion(m as u64, n as u64, *leaf, &proof, &root));
            let other = leaf_hash(b"other");
            assert!(!check_inclusion(m as u64, n as u64, other, &proof, &root));
        }
    }
    // Known shape: a tree of three leaves is H(H(l0, l1), l2).
    let three = tree_hash(&all[..3]);
    assert_eq!(three, node_hash(&node_hash(&all[0], &all[1]), &all[2]));
    // The empty tree hash is SHA-256 of nothing.
    assert_eq!(
        hex_of(&tree_hash(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
