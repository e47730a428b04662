//! Per-client shares of a shared resource: at most `max` held at once by
//! one name (an org, an address), each given back when its guard drops.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// The counts of what each name holds.
pub struct Shares<K: Hash + Eq + Clone> {
    max: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

/// One unit of a name's share; given back when dropped.
pub struct Share<K: Hash + Eq + Clone> {
    held: Arc<Mutex<HashMap<K, usize>>>,
    name: K,
}

impl<K: Hash + Eq + Clone> Shares<K> {
    pub fn new(max: usize) -> Shares<K> {
        assert!(max >= 1, "a share holds at least one");
        Shares {
            max,
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// One more unit for `name`, unless it holds its share already.
    pub fn try_take(&self, name: &K) -> Option<Share<K>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(name.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Share {
            held: self.held.clone(),
            name: name.clone(),
        })
    }
}

impl<K: Hash + Eq + Clone> Drop for Share<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_holds_at_most_its_share_and_gets_it_back() {
        let shares = Shares::new(2);
        let a1 = shares.try_take(&"a").expect("first");
        let _a2 = shares.try_take(&"a").expect("second");
        assert!(shares.try_take(&"a").is_none(), "a third is past the share");
        let _b = shares
            .try_take(&"b")
            .expect("another name is not held back");
        drop(a1);
        assert!(shares.try_take(&"a").is_some(), "a unit given back is free");
    }
}
