//! Cross-checks the Merkle tree against two implementations written apart from
//! it: the `ct-merkle` crate (RFC 6962, the same tree as RFC 9162 §2.1), and a
//! deliberately naive transcription of the recursive definitions of MTH, PATH
//! and PROOF in RFC 9162 §2.1.

use std::sync::OnceLock;

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use fundtrail_tlog::{
    check_record, check_tree, node_hash, prove_record, prove_tree, record_hash, tree_hash, Error,
    Hash, MemoryHashes, EMPTY_TREE_HASH,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn data(i: u64) -> Vec<u8> {
    format!("fundtrail record {i}").into_bytes()
}

fn to_bytes(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

fn to_hashes(bytes: &[u8]) -> Vec<Hash> {
    assert_eq!(bytes.len() % 32, 0);
    bytes.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

/// The indexes `0..size` to test at one tree size: all of them for small
/// trees; for larger ones both ends, the middle, each power of two and its
/// neighbours, and every 13th.
fn sample(size: u64) -> Vec<u64> {
    if size <= 40 {
        return (0..size).collect();
    }
    let mut out: Vec<u64> = (0..size).step_by(13).collect();
    out.extend([1, 2, size / 2, size - 2, size - 1]);
    let mut p = 1;
    while p < size {
        out.extend([p - 1, p, p + 1].into_iter().filter(|&i| i < size));
        p *= 2;
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn their_root(root: &Hash, size: u64) -> RootHash<Sha256> {
    RootHash::new((*root).into(), size)
}

/// Our proof with one hash added at the end, and with the last one dropped.
fn longer_and_shorter(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    let mut longer = proof.to_vec();
    longer.push([0x5a; 32]);
    out.push(longer);
    let mut front = vec![[0x5a; 32]];
    front.extend_from_slice(proof);
    out.push(front);
    if !proof.is_empty() {
        out.push(proof[..proof.len() - 1].to_vec());
        out.push(proof[1..].to_vec());
    }
    out
}

#[test]
fn matches_ct_merkle_for_every_size_up_to_300() {
    let mut ours = MemoryHashes::new();
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    // roots[s] is our tree hash at size s.
    let mut roots = vec![tree_hash(0, &ours).unwrap()];
    for size in 1..=300u64 {
        ours.append(&data(size - 1)).unwrap();
        theirs.push(data(size - 1));

        let root = tree_hash(size, &ours).unwrap();
        let their = theirs.root();
        assert_eq!(root.as_slice(), their.as_bytes().as_slice(), "root {size}");
        roots.push(root);

        for index in sample(size) {
            let leaf = record_hash(&data(index));
            let proof = prove_record(size, index, &ours).unwrap();
            let their_proof = theirs.prove_inclusion(index as usize);
            assert_eq!(
                to_bytes(&proof),
                their_proof.as_bytes(),
                "inclusion {index} in {size}"
            );
            // Each side verifies the other's proof.
            check_record(
                &to_hashes(their_proof.as_bytes()),
                size,
                &root,
                index,
                &leaf,
            )
            .unwrap();
            their
                .verify_inclusion(
                    &data(index),
                    index,
                    &InclusionProof::from_bytes(to_bytes(&proof)),
                )
                .unwrap();
            for bad in longer_and_shorter(&proof) {
                assert!(matches!(
                    check_record(&bad, size, &root, index, &leaf),
                    Err(Error::ProofLength { .. })
                ));
                let bad = InclusionProof::<Sha256>::from_bytes(to_bytes(&bad));
                assert!(their.verify_inclusion(&data(index), index, &bad).is_err());
            }
        }

        for old in sample(size + 1).into_iter().filter(|&old| old >= 1) {
            let old_root = roots[old as usize];
            let proof = prove_tree(size, old, &ours).unwrap();
            let their_proof = theirs.prove_consistency((size - old) as usize);
            assert_eq!(
                to_bytes(&proof),
                their_proof.as_bytes(),
                "consistency {old} to {size}"
            );
            check_tree(
                &to_hashes(their_proof.as_bytes()),
                size,
                &root,
                old,
                &old_root,
            )
            .unwrap();
            let ours_as_theirs = ConsistencyProof::try_from_bytes(to_bytes(&proof)).unwrap();
            their
                .verify_consistency(&their_root(&old_root, old), &ours_as_theirs)
                .unwrap();
            for bad in longer_and_shorter(&proof) {
                assert!(matches!(
                    check_tree(&bad, size, &root, old, &old_root),
                    Err(Error::ProofLength { .. })
                ));
                let bad = ConsistencyProof::<Sha256>::try_from_bytes(to_bytes(&bad)).unwrap();
                assert!(their
                    .verify_consistency(&their_root(&old_root, old), &bad)
                    .is_err());
            }
        }
    }
}

// --- A naive reference, straight from the recursive definitions. ---

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n]), RFC 9162 §2.1.1.
fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => Sha256::digest(b"").into(),
        1 => {
            let mut h = Sha256::new();
            h.update([0u8]);
            h.update(&d[0]);
            h.finalize().into()
        }
        n => {
            let k = largest_power_of_two_below(n);
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(mth(&d[..k]));
            h.update(mth(&d[k..]));
            h.finalize().into()
        }
    }
}

/// PATH(m, D[n]), RFC 9162 §2.1.3.1.
fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b), RFC 9162 §2.1.4.1.
fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

#[test]
fn matches_naive_rfc_recursion_up_to_100() {
    let mut ours = MemoryHashes::new();
    let mut records = Vec::new();
    assert_eq!(mth(&records), EMPTY_TREE_HASH);
    for size in 1..=100u64 {
        records.push(data(size - 1));
        ours.append(&data(size - 1)).unwrap();
        assert_eq!(tree_hash(size, &ours).unwrap(), mth(&records), "MTH {size}");
        for index in sample(size) {
            assert_eq!(
                prove_record(size, index, &ours).unwrap(),
                path(index as usize, &records),
                "PATH({index}, D[{size}])"
            );
        }
        for old in sample(size + 1).into_iter().filter(|&old| old >= 1) {
            assert_eq!(
                prove_tree(size, old, &ours).unwrap(),
                subproof(old as usize, &records, true),
                "PROOF({old}, D[{size}])"
            );
        }
    }
}

#[test]
fn node_and_record_hash_match_reference() {
    let records = vec![b"a".to_vec(), b"b".to_vec()];
    assert_eq!(mth(&records[..1]), record_hash(b"a"));
    assert_eq!(
        mth(&records),
        node_hash(&record_hash(b"a"), &record_hash(b"b"))
    );
}

// --- Random sizes: proofs from a big tree, checked by both verifiers. ---

const BIG: u64 = 5000;

fn big_tree() -> &'static MemoryHashes {
    static TREE: OnceLock<MemoryHashes> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut t = MemoryHashes::new();
        for i in 0..BIG {
            t.append(&data(i)).unwrap();
        }
        t
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_inclusion_proofs(size in 1..=BIG, index_seed: u64, flip_seed: u64) {
        let t = big_tree();
        let index = index_seed % size;
        let root = tree_hash(size, t).unwrap();
        let leaf = record_hash(&data(index));
        let proof = prove_record(size, index, t).unwrap();
        check_record(&proof, size, &root, index, &leaf).unwrap();
        let their = their_root(&root, size);
        their.verify_inclusion(&data(index), index, &InclusionProof::from_bytes(to_bytes(&proof))).unwrap();
        if !proof.is_empty() {
            // One flipped bit anywhere in the proof is refused by both.
            let mut bad = proof.clone();
            let bit = (flip_seed % (bad.len() as u64 * 256)) as usize;
            bad[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
            prop_assert!(matches!(
                check_record(&bad, size, &root, index, &leaf),
                Err(Error::BadInclusionProof)
            ));
            let bad = InclusionProof::<Sha256>::from_bytes(to_bytes(&bad));
            prop_assert!(their.verify_inclusion(&data(index), index, &bad).is_err());
        }
        // The right proof for another index is refused.
        if size > 1 {
            let other = (index + 1) % size;
            prop_assert!(check_record(&proof, size, &root, other, &leaf).is_err());
        }
    }

    #[test]
    fn random_consistency_proofs(size in 1..=BIG, old_seed: u64, flip_seed: u64) {
        let t = big_tree();
        let old = 1 + old_seed % size;
        let root = tree_hash(size, t).unwrap();
        let old_root = tree_hash(old, t).unwrap();
        let proof = prove_tree(size, old, t).unwrap();
        check_tree(&proof, size, &root, old, &old_root).unwrap();
        let their = their_root(&root, size);
        let theirs_old = their_root(&old_root, old);
        their.verify_consistency(&theirs_old, &ConsistencyProof::try_from_bytes(to_bytes(&proof)).unwrap()).unwrap();
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let bit = (flip_seed % (bad.len() as u64 * 256)) as usize;
            bad[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
            prop_assert!(matches!(
                check_tree(&bad, size, &root, old, &old_root),
                Err(Error::BadConsistencyProof)
            ));
            let bad = ConsistencyProof::<Sha256>::try_from_bytes(to_bytes(&bad)).unwrap();
            prop_assert!(their.verify_consistency(&theirs_old, &bad).is_err());
        }
        // The proof does not pass for a different old size with the same root.
        if old > 1 && old < size {
            prop_assert!(check_tree(&proof, size, &root, old - 1, &old_root).is_err());
        }
    }

    #[test]
    fn random_junk_never_panics(tree_size: u64, index: u64, n in 0usize..130, byte: u8) {
        let junk = vec![[byte; 32]; n];
        let _ = check_record(&junk, tree_size, &[byte; 32], index, &[!byte; 32]);
        let _ = check_tree(&junk, tree_size, &[byte; 32], index, &[!byte; 32]);
    }
}
