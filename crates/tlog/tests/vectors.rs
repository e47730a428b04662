//! The test vectors in `vectors.json`, shared with the web view's verifier
//! (`crates/server/web/verify.js`, tested against the same file in a real
//! browser by `tests/web.rs`): inclusion proofs, signed notes and
//! checkpoints, each with whether it must verify.
//!
//! The file is fixed: this test checks that tlog still produces and accepts
//! every vector in it. Its inclusion vectors came from tlog, which
//! `cross_check.rs` holds to two independent implementations; its notes
//! include Go's own vector. `FUNDTRAIL_WRITE_VECTORS=1` rewrites the file
//! (review the diff: a change means old proofs stop verifying).

use ed25519_dalek::SigningKey;
use fundtrail_tlog::{
    check_record, open_checkpoint, open_note, prove_record, record_hash, sign_checkpoint,
    tree_hash, Checkpoint, MemoryHashes, NoteSigner, NoteVerifier,
};
use serde_json::{json, Value};

const VECTORS: &str = "tests/vectors.json";

/// Go's golang.org/x/mod/sumdb/note example.
const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

const ORIGIN: &str = "fundtrail/fundtrail-vectors";

fn data(i: u64) -> Vec<u8> {
    format!("fundtrail record {i}").into_bytes()
}

fn tree(size: u64) -> MemoryHashes {
    let mut hashes = MemoryHashes::new();
    for i in 0..size {
        hashes.append(&data(i)).unwrap();
    }
    hashes
}

fn inclusion_vectors() -> Vec<Value> {
    let mut out = Vec::new();
    let mut cases: Vec<(u64, u64)> = (1..=17)
        .flat_map(|size| (0..size).map(move |index| (size, index)))
        .collect();
    cases.extend([0, 1, 511, 512, 513, 998, 999].map(|index| (1000, index)));
    for (size, index) in cases {
        let hashes = tree(size);
        let proof = prove_record(size, index, &hashes).unwrap();
        out.push(json!({
            "size": size,
            "index": index,
            "leaf": hex::encode(data(index)),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
            "root": hex::encode(tree_hash(size, &hashes).unwrap()),
        }));
    }
    out
}

fn log_signer(seed: u8) -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[seed; 32])).unwrap()
}

fn checkpoint_vectors() -> Vec<Value> {
    let size = 5;
    let checkpoint = Checkpoint {
        origin: ORIGIN.to_string(),
        tree_size: size,
        root_hash: tree_hash(size, &tree(size)).unwrap(),
    };
    let note = sign_checkpoint(&checkpoint, &log_signer(7)).unwrap();
    let changed = note.replacen("\n5\n", "\n6\n", 1);
    vec![
        json!({"vkey": log_signer(7).verifier().vkey(), "note": note, "valid": true,
               "size": size, "root": hex::encode(checkpoint.root_hash)}),
        // Signed by another key under the same name.
        json!({"vkey": log_signer(8).verifier().vkey(), "note": note, "valid": false}),
        // The size changed after signing.
        json!({"vkey": log_signer(7).verifier().vkey(), "note": changed, "valid": false}),
    ]
}

fn note_vectors() -> Vec<Value> {
    let mut out = vec![json!({"vkey": GO_VKEY, "note": GO_NOTE, "valid": true})];
    for (i, byte) in GO_NOTE.bytes().enumerate().take(20) {
        if byte == b'\n' {
            continue;
        }
        let mut bytes = GO_NOTE.as_bytes().to_vec();
        bytes[i] ^= 0x01;
        out.push(
            json!({"vkey": GO_VKEY, "note": String::from_utf8(bytes).unwrap(), "valid": false}),
        );
    }
    out
}

fn vectors() -> Value {
    json!({
        "comment": "Shared by crates/tlog/tests/vectors.rs and the web view's verify.js (tests/web.rs). Leaves are hex; a leaf's hash is SHA-256(0x00 || leaf).",
        "inclusion": inclusion_vectors(),
        "checkpoints": checkpoint_vectors(),
        "notes": note_vectors(),
    })
}

fn hash(text: &Value) -> [u8; 32] {
    hex::decode(text.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn the_vector_file_is_what_tlog_produces() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(VECTORS);
    let expected = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("FUNDTRAIL_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap();
    assert!(
        stored == expected,
        "{VECTORS} differs from what tlog produces"
    );
}

#[test]
fn tlog_accepts_and_refuses_each_vector_as_marked() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(VECTORS);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let inclusion = file["inclusion"].as_array().unwrap();
    assert_eq!(inclusion.len(), 153 + 7);
    for v in inclusion {
        let proof: Vec<[u8; 32]> = v["proof"].as_array().unwrap().iter().map(hash).collect();
        let leaf = record_hash(&hex::decode(v["leaf"].as_str().unwrap()).unwrap());
        let (size, index) = (v["size"].as_u64().unwrap(), v["index"].as_u64().unwrap());
        let root = hash(&v["root"]);
        check_record(&proof, size, &root, index, &leaf).unwrap();
        if let Some(first) = proof.first() {
            let mut tampered = proof.clone();
            tampered[0][0] ^= 1;
            assert!(check_record(&tampered, size, &root, index, &leaf).is_err());
            assert_ne!(first, &tampered[0]);
        }
    }
    for v in file["checkpoints"].as_array().unwrap() {
        let verifier = NoteVerifier::from_vkey(v["vkey"].as_str().unwrap()).unwrap();
        let opened = open_checkpoint(v["note"].as_str().unwrap(), &verifier, ORIGIN);
        assert_eq!(opened.is_ok(), v["valid"].as_bool().unwrap(), "{v}");
        if let Ok(checkpoint) = opened {
            assert_eq!(checkpoint.tree_size, v["size"].as_u64().unwrap());
            assert_eq!(checkpoint.root_hash, hash(&v["root"]));
        }
    }
    for v in file["notes"].as_array().unwrap() {
        let verifier = NoteVerifier::from_vkey(v["vkey"].as_str().unwrap()).unwrap();
        let opened = open_note(v["note"].as_str().unwrap(), &[&verifier]);
        assert_eq!(opened.is_ok(), v["valid"].as_bool().unwrap(), "{v}");
    }
}
