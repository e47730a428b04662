//! The RFC 9162 Merkle tree: hashing, the dense layout of stored hashes, tree
//! hashes, and inclusion and consistency proofs.
//!
//! Records are numbered from 0. A tree of `tree_size` records holds records
//! `0..tree_size`. A *stored hash* is the hash of a complete (perfect) subtree:
//! `(level, n)` names the subtree of `2^level` records starting at record
//! `n * 2^level`. Level 0 holds record hashes. A log keeps every stored hash,
//! in the order they come into being as records are appended, so that each
//! stored hash has a fixed index (the Crosby–Wallach layout, as in Go's
//! `golang.org/x/mod/sumdb/tlog`). Every tree hash and proof below is built from
//! O(log n) stored hashes, read in one batch.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 hash: a record hash, an interior node hash or a tree hash.
pub type Hash = [u8; 32];

/// The largest tree this crate handles: 2^62 records.
///
/// It keeps every stored-hash index, `2 * tree_size` at most, inside a `u64`.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// The tree hash of the empty tree, SHA-256 of the empty string
/// (RFC 9162 §2.1.1: `MTH({}) = HASH()`).
pub const EMPTY_TREE_HASH: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Returns the hash of one record: `SHA-256(0x00 || data)`
/// (RFC 9162 §2.1.1, the leaf hash `MTH({d(0)})`).
pub fn record_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// Returns the hash of an interior node: `SHA-256(0x01 || left || right)`
/// (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Returns how many hashes are stored for a tree of `n` records: `2n - popcount(n)`.
///
/// Appending record `i` stores its record hash plus one interior hash for each
/// trailing 1 bit of `i` (each subtree it completes).
///
/// # Panics
/// If `n > MAX_TREE_SIZE`.
pub fn stored_hash_count(n: u64) -> u64 {
    assert!(n <= MAX_TREE_SIZE, "tlog: tree size beyond MAX_TREE_SIZE");
    2 * n - u64::from(n.count_ones())
}

/// Returns the index at which the stored hash `(level, n)` is kept: the hash of
/// the complete subtree of `2^level` records starting at record `n * 2^level`.
///
/// That hash is written when its last record, `m = (n+1) * 2^level - 1`, is
/// appended: right after the record hash of `m` and the `level - 1` hashes
/// below it on the same path, so at `stored_hash_count(m) + level`.
///
/// # Panics
/// If the subtree reaches beyond record `MAX_TREE_SIZE - 1`.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    assert!(
        u32::from(level) < 63 && n < (MAX_TREE_SIZE >> level),
        "tlog: stored hash position beyond MAX_TREE_SIZE"
    );
    let last_record = ((n + 1) << level) - 1;
    stored_hash_count(last_record) + u64::from(level)
}

/// Inverts [`stored_hash_index`]: returns the `(level, n)` kept at `index`.
///
/// # Panics
/// If `index >= stored_hash_count(MAX_TREE_SIZE)`.
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    assert!(
        index < stored_hash_count(MAX_TREE_SIZE),
        "tlog: stored hash index beyond MAX_TREE_SIZE"
    );
    // Find the record m whose hashes start at or before index and end after
    // it. stored_hash_count(index / 2) <= index, and the loop below runs at
    // most about 33 times, since each record adds at least one hash and
    // 2m - popcount(m) falls short of 2m by at most 64.
    let mut m = index / 2;
    while stored_hash_count(m + 1) <= index {
        m += 1;
    }
    let level = index - stored_hash_count(m);
    debug_assert!(level <= u64::from(m.trailing_ones()));
    (level as u8, m >> level)
}

/// Reads stored hashes by index. A log's storage implements this; the tree
/// functions below ask for O(log n) hashes per call, in one batch.
pub trait HashReader {
    /// Returns the stored hashes at `indexes`, in the same order.
    ///
    /// An implementation must return exactly `indexes.len()` hashes or an error,
    /// such as [`Error::MissingHash`] or [`Error::Storage`].
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>> {
        (**self).read_hashes(indexes)
    }
}

/// A slice of hashes in stored-hash order is a [`HashReader`].
impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|i| self.get(i))
                    .copied()
                    .ok_or(Error::MissingHash { index })
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>> {
        self.as_slice().read_hashes(indexes)
    }
}

/// An in-memory log of stored hashes, for tests and tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryHashes {
    hashes: Vec<Hash>,
    tree_size: u64,
}

impl MemoryHashes {
    /// Returns an empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of records appended so far.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Returns all stored hashes, in stored-hash order.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The tree of `tree_size` records whose stored hashes are `hashes`, as
    /// [`MemoryHashes::hashes`] gave them; `None` unless there are exactly
    /// [`stored_hash_count`]`(tree_size)` of them. Proves nothing about the
    /// hashes themselves: a caller that did not compute them checks a root.
    pub fn from_stored(tree_size: u64, hashes: Vec<Hash>) -> Option<Self> {
        if tree_size > crate::MAX_TREE_SIZE || hashes.len() as u64 != stored_hash_count(tree_size) {
            return None;
        }
        Some(Self { hashes, tree_size })
    }

    /// Appends a record and returns its 0-based index.
    pub fn append(&mut self, data: &[u8]) -> Result<u64> {
        self.append_record_hash(record_hash(data))
    }

    /// Appends a record given by its record hash and returns its 0-based index.
    pub fn append_record_hash(&mut self, record_hash: Hash) -> Result<u64> {
        let index = self.tree_size;
        let new = stored_hashes_for_record_hash(index, record_hash, &self.hashes)?;
        self.hashes.extend(new);
        self.tree_size += 1;
        Ok(index)
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>> {
        self.hashes.read_hashes(indexes)
    }
}

/// The right edge of a growing tree: the hash of each complete subtree in
/// the binary decomposition of its size, largest first. It gives the root
/// of every size it passes through while holding at most 62 hashes, for a
/// writer or verifier that sees the records in order and keeps no other
/// hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    tree_size: u64,
    /// Subtree hashes for the 1 bits of `tree_size`, highest bit first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The frontier of the first `tree_size` records of a tree whose
    /// stored hashes `reader` holds, to push later records onto.
    ///
    /// Reads one stored hash per 1 bit of `tree_size`.
    pub fn from_stored<R: HashReader + ?Sized>(tree_size: u64, reader: &R) -> Result<Self> {
        check_tree_size(tree_size)?;
        let mut indexes = Vec::with_capacity(tree_size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev().filter(|level| tree_size >> level & 1 == 1) {
            indexes.push(stored_hash_index(level, start >> level));
            start += 1 << level;
        }
        debug_assert_eq!(start, tree_size);
        let peaks = read_exact(reader, &indexes)?;
        Ok(Frontier { tree_size, peaks })
    }

    /// Records pushed so far.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// Appends a record given by its record hash.
    pub fn push(&mut self, record_hash: Hash) -> Result<()> {
        check_tree_size(self.tree_size.saturating_add(1))?;
        // Each trailing 1 bit of the old size is a peak the new record's
        // subtree absorbs, exactly as in `stored_hashes_for_record_hash`.
        let mut hash = record_hash;
        for _ in 0..self.tree_size.trailing_ones() {
            let left = self.peaks.pop().expect("one peak per 1 bit of the size");
            hash = node_hash(&left, &hash);
        }
        self.peaks.push(hash);
        self.tree_size += 1;
        debug_assert_eq!(self.peaks.len() as u32, self.tree_size.count_ones());
        Ok(())
    }

    /// The tree hash `MTH(D[0:tree_size])` of the records pushed so far.
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(mut hash) = peaks.next().copied() else {
            return EMPTY_TREE_HASH;
        };
        for left in peaks {
            hash = node_hash(left, &hash);
        }
        hash
    }
}

/// Returns the hashes to store when record `n` (0-based; the tree has `n`
/// records before it) with contents `data` is appended, in stored-hash order:
/// its record hash, then the hash of each complete subtree it finishes, lowest
/// first. They belong at indexes `stored_hash_count(n)..stored_hash_count(n + 1)`.
///
/// Reads one stored hash per trailing 1 bit of `n`.
pub fn stored_hashes<R: HashReader + ?Sized>(n: u64, data: &[u8], reader: &R) -> Result<Vec<Hash>> {
    stored_hashes_for_record_hash(n, record_hash(data), reader)
}

/// Like [`stored_hashes`], for a record given by its record hash.
pub fn stored_hashes_for_record_hash<R: HashReader + ?Sized>(
    n: u64,
    record_hash: Hash,
    reader: &R,
) -> Result<Vec<Hash>> {
    if n >= MAX_TREE_SIZE {
        return Err(Error::TreeTooLarge {
            tree_size: n.saturating_add(1),
            max: MAX_TREE_SIZE,
        });
    }
    // Record n is a right child at each level where n has a trailing 1 bit;
    // its left sibling there is the complete subtree just before it.
    let indexes: Vec<u64> = (0..n.trailing_ones())
        .map(|level| stored_hash_index(level as u8, (n >> level) - 1))
        .collect();
    let siblings = read_exact(reader, &indexes)?;
    let mut out = Vec::with_capacity(siblings.len() + 1);
    let mut hash = record_hash;
    out.push(hash);
    for left in &siblings {
        hash = node_hash(left, &hash);
        out.push(hash);
    }
    Ok(out)
}

/// Returns the tree hash `MTH(D[0:tree_size])` (RFC 9162 §2.1.1) of the first
/// `tree_size` records; [`EMPTY_TREE_HASH`] for 0.
///
/// Reads one stored hash per 1 bit of `tree_size`.
pub fn tree_hash<R: HashReader + ?Sized>(tree_size: u64, reader: &R) -> Result<Hash> {
    check_tree_size(tree_size)?;
    if tree_size == 0 {
        return Ok(EMPTY_TREE_HASH);
    }
    let hashes = read_ranges(&[(0, tree_size)], reader)?;
    Ok(hashes[0])
}

/// Returns the inclusion proof `PATH(index, D[0:tree_size])` (RFC 9162 §2.1.3.1)
/// that record `index` (0-based) is in the tree of `tree_size` records: the
/// sibling hashes on the way from the record up to the root, lowest first.
pub fn prove_record<R: HashReader + ?Sized>(
    tree_size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Hash>> {
    check_tree_size(tree_size)?;
    if index >= tree_size {
        return Err(Error::IndexOutOfRange { index, tree_size });
    }
    read_ranges(&inclusion_ranges(tree_size, index), reader)
}

/// Checks that `proof` proves that the record with hash `record_hash` is record
/// `index` (0-based) of the tree of `tree_size` records whose tree hash is
/// `root`, by the verification algorithm of RFC 9162 §2.1.3.2.
///
/// A proof with more or fewer hashes than `PATH(index, D[0:tree_size])` has
/// is refused with [`Error::ProofLength`].
pub fn check_record(
    proof: &[Hash],
    tree_size: u64,
    root: &Hash,
    index: u64,
    record_hash: &Hash,
) -> Result<()> {
    if index >= tree_size {
        return Err(Error::IndexOutOfRange { index, tree_size });
    }
    let want = inclusion_ranges(tree_size, index).len();
    if proof.len() != want {
        return Err(Error::ProofLength {
            want,
            got: proof.len(),
        });
    }
    let mut f_n = index;
    let mut s_n = tree_size - 1;
    let mut r = *record_hash;
    for p in proof {
        if s_n == 0 {
            return Err(Error::BadInclusionProof);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n == 0 && r == *root {
        Ok(())
    } else {
        Err(Error::BadInclusionProof)
    }
}

/// Returns the consistency proof `PROOF(old_size, D[0:tree_size])`
/// (RFC 9162 §2.1.4.1) that the tree of `old_size` records is a prefix of the
/// tree of `tree_size` records.
///
/// The proof is empty when `old_size == tree_size`. RFC 9162 defines no proof
/// from the empty tree; for `old_size == 0` this returns an empty proof, which
/// [`check_tree`] accepts only with [`EMPTY_TREE_HASH`] as the old root.
pub fn prove_tree<R: HashReader + ?Sized>(
    tree_size: u64,
    old_size: u64,
    reader: &R,
) -> Result<Vec<Hash>> {
    check_tree_size(tree_size)?;
    if old_size > tree_size {
        return Err(Error::OldSizeTooLarge {
            old_size,
            tree_size,
        });
    }
    if old_size == 0 {
        return Ok(Vec::new());
    }
    read_ranges(&consistency_ranges(tree_size, old_size), reader)
}

/// Checks that `proof` proves that the tree of `old_size` records with tree
/// hash `old_root` is a prefix of the tree of `tree_size` records with tree
/// hash `root`, by the verification algorithm of RFC 9162 §2.1.4.2.
///
/// A proof with more or fewer hashes than `PROOF(old_size, D[0:tree_size])`
/// has is refused with [`Error::ProofLength`]. For `old_size == 0` the proof
/// must be empty and `old_root` must be [`EMPTY_TREE_HASH`].
pub fn check_tree(
    proof: &[Hash],
    tree_size: u64,
    root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Result<()> {
    if old_size > tree_size {
        return Err(Error::OldSizeTooLarge {
            old_size,
            tree_size,
        });
    }
    let want = if old_size == 0 {
        0
    } else {
        consistency_ranges(tree_size, old_size).len()
    };
    if proof.len() != want {
        return Err(Error::ProofLength {
            want,
            got: proof.len(),
        });
    }
    if old_size == 0 {
        return if *old_root == EMPTY_TREE_HASH {
            Ok(())
        } else {
            Err(Error::BadConsistencyProof)
        };
    }
    if old_size == tree_size {
        return if old_root == root {
            Ok(())
        } else {
            Err(Error::BadConsistencyProof)
        };
    }
    // When the old tree is a complete subtree, its hash is the proof's
    // implicit first element (RFC 9162 §2.1.4.2, step 3).
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(Error::BadConsistencyProof),
        }
    };
    let mut f_n = old_size - 1;
    let mut s_n = tree_size - 1;
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut f_r = *seed;
    let mut s_r = *seed;
    for c in rest {
        if s_n == 0 {
            return Err(Error::BadConsistencyProof);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n == 0 && f_r == *old_root && s_r == *root {
        Ok(())
    } else {
        Err(Error::BadConsistencyProof)
    }
}

/// Refuses tree sizes beyond [`MAX_TREE_SIZE`].
fn check_tree_size(tree_size: u64) -> Result<()> {
    if tree_size > MAX_TREE_SIZE {
        return Err(Error::TreeTooLarge {
            tree_size,
            max: MAX_TREE_SIZE,
        });
    }
    Ok(())
}

/// Returns the largest power of two strictly below `n`: the `k` at which
/// RFC 9162 §2.1.1 splits `D[0:n]`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Returns the record ranges `[lo, hi)` whose tree hashes make up
/// `PATH(index, D[0:tree_size])` (RFC 9162 §2.1.3.1), in proof order.
fn inclusion_ranges(tree_size: u64, index: u64) -> Vec<(u64, u64)> {
    debug_assert!(index < tree_size);
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, tree_size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    // The recursion appends the top sibling last.
    out.reverse();
    out
}

/// Returns the record ranges `[lo, hi)` whose tree hashes make up
/// `PROOF(old_size, D[0:tree_size])` = `SUBPROOF(old_size, D[0:tree_size], true)`
/// (RFC 9162 §2.1.4.1), in proof order. Needs `0 < old_size <= tree_size`.
fn consistency_ranges(tree_size: u64, old_size: u64) -> Vec<(u64, u64)> {
    debug_assert!(0 < old_size && old_size <= tree_size);
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, tree_size);
    // b is true while the range [lo, hi) still starts at record 0 on the
    // left spine, that is while the old tree's hash would be known already.
    let mut b = true;
    loop {
        let (n, m) = (hi - lo, old_size - lo);
        if m == n {
            if !b {
                out.push((lo, hi));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
            b = false;
        }
    }
    out.reverse();
    out
}

/// Appends to `out` the stored-hash indexes of the complete subtrees that make
/// up records `[lo, hi)`, largest (leftmost) first.
///
/// Every range this crate asks for starts at a multiple of the largest of
/// those subtrees, so each of them is aligned and stored.
fn subtree_indexes(lo: u64, hi: u64, out: &mut Vec<u64>) {
    assert!(lo < hi, "tlog: empty record range");
    let mut start = lo;
    while start < hi {
        let level = 63 - (hi - start).leading_zeros();
        assert!(
            start.trailing_zeros() >= level,
            "tlog: unaligned record range"
        );
        out.push(stored_hash_index(level as u8, start >> level));
        start += 1 << level;
    }
}

/// Returns `MTH` of a range from the hashes of the complete subtrees that make
/// it up, largest first: the range splits at its first subtree (RFC 9162 §2.1.1),
/// so the hash folds from the right.
fn fold_subtrees(hashes: &[Hash]) -> Hash {
    let (last, rest) = hashes.split_last().expect("tlog: no subtree hashes");
    rest.iter()
        .rev()
        .fold(*last, |acc, left| node_hash(left, &acc))
}

/// Reads, in one batch, what is needed for the tree hash of each range, and
/// returns those tree hashes in order.
fn read_ranges<R: HashReader + ?Sized>(ranges: &[(u64, u64)], reader: &R) -> Result<Vec<Hash>> {
    let mut indexes = Vec::new();
    let mut ends = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        subtree_indexes(lo, hi, &mut indexes);
        ends.push(indexes.len());
    }
    let hashes = read_exact(reader, &indexes)?;
    let mut start = 0;
    Ok(ends
        .into_iter()
        .map(|end| {
            let hash = fold_subtrees(&hashes[start..end]);
            start = end;
            hash
        })
        .collect())
}

/// Calls the reader and refuses an answer of the wrong length.
fn read_exact<R: HashReader + ?Sized>(reader: &R, indexes: &[u64]) -> Result<Vec<Hash>> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(Error::HashReaderCount {
            want: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn tree_of(n: u64) -> MemoryHashes {
        let mut t = MemoryHashes::new();
        for i in 0..n {
            t.append(format!("record {i}").as_bytes()).unwrap();
        }
        t
    }

    #[test]
    fn frontier_roots_equal_tree_hashes_at_every_size() {
        let tree = tree_of(130);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), EMPTY_TREE_HASH);
        for i in 0..130u64 {
            frontier
                .push(record_hash(format!("record {i}").as_bytes()))
                .unwrap();
            assert_eq!(frontier.tree_size(), i + 1);
            assert_eq!(
                frontier.root(),
                tree_hash(i + 1, &tree).unwrap(),
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn a_frontier_from_stored_hashes_grows_like_one_pushed_from_the_start() {
        let tree = tree_of(70);
        for size in 0..=64u64 {
            let mut frontier = Frontier::from_stored(size, &tree).unwrap();
            assert_eq!(
                frontier.root(),
                tree_hash(size, &tree).unwrap(),
                "size {size}"
            );
            for i in size..70 {
                frontier
                    .push(record_hash(format!("record {i}").as_bytes()))
                    .unwrap();
            }
            assert_eq!(
                frontier.root(),
                tree_hash(70, &tree).unwrap(),
                "from {size}"
            );
        }
        assert!(Frontier::from_stored(71, &tree).is_err(), "hashes it lacks");
    }

    #[test]
    fn record_and_node_hash_use_rfc_prefixes() {
        // SHA-256 of the single byte 0x00.
        assert_eq!(
            hex(&record_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let mut manual = Sha256::new();
        manual.update([1u8]);
        manual.update([2u8; 32]);
        manual.update([3u8; 32]);
        let manual: Hash = manual.finalize().into();
        assert_eq!(node_hash(&[2; 32], &[3; 32]), manual);
        assert_ne!(node_hash(&[2; 32], &[3; 32]), node_hash(&[3; 32], &[2; 32]));
    }

    #[test]
    fn empty_tree_hash_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(EMPTY_TREE_HASH, h);
        assert_eq!(tree_hash(0, &Vec::<Hash>::new()).unwrap(), EMPTY_TREE_HASH);
    }

    #[test]
    fn stored_hash_count_small() {
        let want = [0, 1, 3, 4, 7, 8, 10, 11, 15];
        for (n, w) in want.iter().enumerate() {
            assert_eq!(stored_hash_count(n as u64), *w, "n={n}");
        }
        assert_eq!(stored_hash_count(MAX_TREE_SIZE), 2 * MAX_TREE_SIZE - 1);
    }

    #[test]
    fn stored_hash_index_small() {
        // Order of appends: r0, r1, (1,0), r2, r3, (1,1), (2,0), r4, ...
        let want = [
            (0, 0),
            (0, 1),
            (1, 0),
            (0, 2),
            (0, 3),
            (1, 1),
            (2, 0),
            (0, 4),
        ];
        for (index, &(level, n)) in want.iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), index as u64);
            assert_eq!(split_stored_hash_index(index as u64), (level, n));
        }
    }

    #[test]
    fn split_inverts_stored_hash_index() {
        for index in 0..5000 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index);
        }
        for level in 0..62u8 {
            for n in [0, 1, 2, 3, 1000, (MAX_TREE_SIZE >> level) - 1] {
                if n < (MAX_TREE_SIZE >> level) {
                    let i = stored_hash_index(level, n);
                    assert_eq!(split_stored_hash_index(i), (level, n));
                }
            }
        }
        let last = stored_hash_count(MAX_TREE_SIZE) - 1;
        assert_eq!(split_stored_hash_index(last), (62, 0));
    }

    #[test]
    #[should_panic(expected = "beyond MAX_TREE_SIZE")]
    fn stored_hash_index_refuses_huge_positions() {
        stored_hash_index(1, MAX_TREE_SIZE / 2);
    }

    #[test]
    #[should_panic(expected = "beyond MAX_TREE_SIZE")]
    fn split_refuses_huge_index() {
        split_stored_hash_index(u64::MAX);
    }

    #[test]
    fn stored_hashes_appends_record_then_parents() {
        let mut hashes: Vec<Hash> = Vec::new();
        for n in 0..64u64 {
            let data = n.to_be_bytes();
            let new = stored_hashes(n, &data, &hashes).unwrap();
            assert_eq!(new.len() as u64, 1 + u64::from(n.trailing_ones()));
            assert_eq!(new[0], record_hash(&data));
            assert_eq!(hashes.len() as u64, stored_hash_count(n));
            hashes.extend(new);
        }
        // The last hash stored for 64 records is the level-6 root.
        assert_eq!(hashes.len() as u64, stored_hash_count(64));
        assert_eq!(
            hashes[stored_hash_index(6, 0) as usize],
            *hashes.last().unwrap()
        );
        assert_eq!(tree_hash(64, &hashes).unwrap(), *hashes.last().unwrap());
    }

    #[test]
    fn stored_hashes_refuses_beyond_max() {
        let hashes: Vec<Hash> = Vec::new();
        assert!(matches!(
            stored_hashes(MAX_TREE_SIZE, b"x", &hashes),
            Err(Error::TreeTooLarge { .. })
        ));
    }

    #[test]
    fn tree_hash_matches_hand_built_trees() {
        let t = tree_of(7);
        let r: Vec<Hash> = (0..7)
            .map(|i| record_hash(format!("record {i}").as_bytes()))
            .collect();
        assert_eq!(tree_hash(1, &t).unwrap(), r[0]);
        assert_eq!(tree_hash(2, &t).unwrap(), node_hash(&r[0], &r[1]));
        let h01 = node_hash(&r[0], &r[1]);
        let h23 = node_hash(&r[2], &r[3]);
        let h45 = node_hash(&r[4], &r[5]);
        assert_eq!(tree_hash(3, &t).unwrap(), node_hash(&h01, &r[2]));
        let h0123 = node_hash(&h01, &h23);
        assert_eq!(tree_hash(4, &t).unwrap(), h0123);
        assert_eq!(tree_hash(5, &t).unwrap(), node_hash(&h0123, &r[4]));
        assert_eq!(
            tree_hash(7, &t).unwrap(),
            node_hash(&h0123, &node_hash(&h45, &r[6]))
        );
    }

    #[test]
    fn tree_hash_refuses_missing_hashes_and_huge_trees() {
        let t = tree_of(5);
        assert!(matches!(tree_hash(6, &t), Err(Error::MissingHash { .. })));
        assert!(matches!(
            tree_hash(MAX_TREE_SIZE + 1, &t),
            Err(Error::TreeTooLarge { .. })
        ));
    }

    #[test]
    fn prove_and_check_record_roundtrip() {
        let t = tree_of(33);
        for size in 1..=33 {
            let root = tree_hash(size, &t).unwrap();
            for index in 0..size {
                let leaf = record_hash(format!("record {index}").as_bytes());
                let proof = prove_record(size, index, &t).unwrap();
                check_record(&proof, size, &root, index, &leaf).unwrap();
                // Another record's hash, index or root fails.
                let other = record_hash(b"other");
                assert!(matches!(
                    check_record(&proof, size, &root, index, &other),
                    Err(Error::BadInclusionProof)
                ));
                let mut bad_root = root;
                bad_root[0] ^= 1;
                assert!(check_record(&proof, size, &bad_root, index, &leaf).is_err());
            }
        }
    }

    #[test]
    fn prove_record_refuses_bad_input() {
        let t = tree_of(4);
        assert!(matches!(
            prove_record(4, 4, &t),
            Err(Error::IndexOutOfRange {
                index: 4,
                tree_size: 4
            })
        ));
        assert!(matches!(
            prove_record(5, 0, &t),
            Err(Error::MissingHash { .. })
        ));
        assert!(matches!(
            prove_record(u64::MAX, 0, &t),
            Err(Error::TreeTooLarge { .. })
        ));
    }

    #[test]
    fn check_record_refuses_wrong_lengths() {
        let t = tree_of(10);
        let root = tree_hash(10, &t).unwrap();
        let leaf = record_hash(b"record 3");
        let proof = prove_record(10, 3, &t).unwrap();
        let mut long = proof.clone();
        long.push([0; 32]);
        assert!(matches!(
            check_record(&long, 10, &root, 3, &leaf),
            Err(Error::ProofLength { want: 4, got: 5 })
        ));
        assert!(matches!(
            check_record(&proof[1..], 10, &root, 3, &leaf),
            Err(Error::ProofLength { want: 4, got: 3 })
        ));
        assert!(matches!(
            check_record(&proof, 10, &root, 10, &leaf),
            Err(Error::IndexOutOfRange { .. })
        ));
        // A one-record tree: the empty proof, root = record hash.
        check_record(&[], 1, &leaf, 0, &leaf).unwrap();
        assert!(check_record(&[], 0, &leaf, 0, &leaf).is_err());
    }

    #[test]
    fn check_functions_do_not_panic_on_huge_sizes() {
        let junk = vec![[7u8; 32]; 64];
        for tree_size in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1] {
            for index in [0, 1, tree_size / 2, tree_size - 1] {
                let want = inclusion_ranges(tree_size, index).len();
                assert!(want <= 64);
                assert!(check_record(&junk[..want], tree_size, &[0; 32], index, &[1; 32]).is_err());
            }
            for old_size in [1, 2, 3, tree_size / 2, tree_size - 1, tree_size] {
                let want = consistency_ranges(tree_size, old_size).len();
                assert!(want <= 64 * 2);
                let proof = vec![[7u8; 32]; want];
                assert!(check_tree(&proof, tree_size, &[0; 32], old_size, &[1; 32]).is_err());
            }
        }
    }

    #[test]
    fn prove_and_check_tree_roundtrip() {
        let t = tree_of(33);
        for size in 1..=33 {
            let root = tree_hash(size, &t).unwrap();
            for old in 0..=size {
                let old_root = tree_hash(old, &t).unwrap();
                let proof = prove_tree(size, old, &t).unwrap();
                check_tree(&proof, size, &root, old, &old_root).unwrap();
                let mut bad = old_root;
                bad[31] ^= 0x80;
                assert!(check_tree(&proof, size, &root, old, &bad).is_err());
                let mut bad = root;
                bad[31] ^= 0x80;
                if old > 0 {
                    assert!(check_tree(&proof, size, &bad, old, &old_root).is_err());
                }
            }
        }
    }

    #[test]
    fn consistency_proof_sizes_match_rfc_examples() {
        // RFC 9162 §2.1.5: the tree of 7 records, proofs from 3, 4 and 6.
        assert_eq!(
            consistency_ranges(7, 3),
            vec![(2, 3), (3, 4), (0, 2), (4, 7)]
        );
        assert_eq!(consistency_ranges(7, 4), vec![(4, 7)]);
        assert_eq!(consistency_ranges(7, 6), vec![(4, 6), (6, 7), (0, 4)]);
        // Inclusion proofs for records 0, 3 and 4 (a, d, e).
        assert_eq!(inclusion_ranges(7, 0), vec![(1, 2), (2, 4), (4, 7)]);
        assert_eq!(inclusion_ranges(7, 3), vec![(2, 3), (0, 2), (4, 7)]);
        assert_eq!(inclusion_ranges(7, 4), vec![(5, 6), (6, 7), (0, 4)]);
    }

    #[test]
    fn check_tree_refuses_bad_input() {
        let t = tree_of(10);
        let root = tree_hash(10, &t).unwrap();
        let old_root = tree_hash(6, &t).unwrap();
        let proof = prove_tree(10, 6, &t).unwrap();
        let mut long = proof.clone();
        long.push([0; 32]);
        assert!(matches!(
            check_tree(&long, 10, &root, 6, &old_root),
            Err(Error::ProofLength { .. })
        ));
        assert!(matches!(
            check_tree(&proof[1..], 10, &root, 6, &old_root),
            Err(Error::ProofLength { .. })
        ));
        assert!(matches!(
            check_tree(&proof, 6, &root, 10, &old_root),
            Err(Error::OldSizeTooLarge { .. })
        ));
        assert!(matches!(
            prove_tree(6, 10, &t),
            Err(Error::OldSizeTooLarge { .. })
        ));
        // Same size: empty proof, equal roots.
        check_tree(&[], 10, &root, 10, &root).unwrap();
        assert!(check_tree(&[], 10, &root, 10, &old_root).is_err());
        assert!(check_tree(&[root], 10, &root, 10, &root).is_err());
        // From the empty tree: empty proof and the empty-tree hash only.
        check_tree(&[], 10, &root, 0, &EMPTY_TREE_HASH).unwrap();
        assert!(check_tree(&[], 10, &root, 0, &root).is_err());
        assert!(check_tree(&[root], 10, &root, 0, &EMPTY_TREE_HASH).is_err());
    }

    #[test]
    fn memory_hashes_appends() {
        let mut t = MemoryHashes::new();
        assert_eq!(t.tree_size(), 0);
        assert_eq!(t.append(b"a").unwrap(), 0);
        assert_eq!(t.append(b"b").unwrap(), 1);
        assert_eq!(t.append_record_hash(record_hash(b"c")).unwrap(), 2);
        assert_eq!(t.tree_size(), 3);
        assert_eq!(t.hashes().len() as u64, stored_hash_count(3));
        assert!(matches!(
            t.read_hashes(&[0, 99]),
            Err(Error::MissingHash { index: 99 })
        ));
    }

    proptest::proptest! {
        #[test]
        fn stored_hash_index_roundtrips(level in 0u8..62, n_seed: u64) {
            let n = n_seed % (MAX_TREE_SIZE >> level);
            let index = stored_hash_index(level, n);
            proptest::prop_assert_eq!(split_stored_hash_index(index), (level, n));
        }

        #[test]
        fn split_then_index_roundtrips(index_seed: u64) {
            let index = index_seed % stored_hash_count(MAX_TREE_SIZE);
            let (level, n) = split_stored_hash_index(index);
            proptest::prop_assert_eq!(stored_hash_index(level, n), index);
        }
    }

    struct ShortReader;
    impl HashReader for ShortReader {
        fn read_hashes(&self, _indexes: &[u64]) -> Result<Vec<Hash>> {
            Ok(vec![[0; 32]])
        }
    }

    struct FailingReader;
    impl HashReader for FailingReader {
        fn read_hashes(&self, _indexes: &[u64]) -> Result<Vec<Hash>> {
            Err(Error::Storage("disk on fire".into()))
        }
    }

    #[test]
    fn misbehaving_readers_give_errors() {
        assert!(matches!(
            prove_record(7, 0, &ShortReader),
            Err(Error::HashReaderCount { want: 4, got: 1 })
        ));
        let err = tree_hash(3, &FailingReader).unwrap_err();
        assert!(matches!(err, Error::Storage(_)));
        assert_eq!(err.to_string(), "hash storage failed: disk on fire");
    }
}
