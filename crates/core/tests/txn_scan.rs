//! `Txn::scan` merges staged writes over a base state chunk by chunk; it
//! must answer exactly what scanning the base with the writes applied does.

use fundtrail_core::state::{apply_writes, Kv, MemoryKv, Txn, Writes};
use proptest::prelude::*;

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Two prefixes, short suffixes: many collisions between base and staged.
    (
        prop::sample::select(vec![b'a', b'b']),
        prop::collection::vec(0u8..4, 0..3),
    )
        .prop_map(|(p, rest)| {
            let mut key = vec![p];
            key.extend(rest);
            key
        })
}

proptest! {
    #[test]
    fn scan_over_staged_writes_equals_scan_of_the_result(
        base in prop::collection::btree_map(key(), prop::collection::vec(any::<u8>(), 0..2), 0..20),
        writes in prop::collection::btree_map(key(), prop::option::of(prop::collection::vec(any::<u8>(), 0..2)), 0..20),
        start_suffix in prop::collection::vec(0u8..4, 0..2),
        limit in 1usize..8,
    ) {
        let base: MemoryKv = base;
        let writes: Writes = writes;
        let mut txn = Txn::new(&base);
        txn.extend(writes.clone());
        let mut applied = base.clone();
        apply_writes(&mut applied, writes);
        let prefix = b"a".to_vec();
        let mut start = prefix.clone();
        start.extend(start_suffix);
        prop_assert_eq!(
            txn.scan(&prefix, &start, limit).unwrap(),
            applied.scan(&prefix, &start, limit).unwrap()
        );
    }
}
