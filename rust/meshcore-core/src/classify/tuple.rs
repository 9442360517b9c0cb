//! Placeholder: a rank-sorted scan (replaced by the tuple-space structure).

use super::{Key, Rule};
use crate::route::Address;

#[derive(Debug, Clone)]
pub struct TupleMerge<A: Address> {
    rules: Vec<Rule<A>>,
}

impl<A: Address> Default for TupleMerge<A> {
    fn default() -> Self {
        TupleMerge { rules: Vec::new() }
    }
}

impl<A: Address> TupleMerge<A> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn build(mut rules: Vec<Rule<A>>) -> Self {
        rules.sort_by_key(Rule::rank);
        TupleMerge { rules }
    }
    pub fn insert(&mut self, rule: Rule<A>) {
        let at = self.rules.partition_point(|r| r.rank() < rule.rank());
        self.rules.insert(at, rule);
    }
    /// Remove every entry with this rule id; returns how many there were.
    pub fn remove(&mut self, id: u32) -> usize {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before - self.rules.len()
    }
    pub fn len(&self) -> usize {
        self.rules.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
    pub fn rules(&self) -> impl Iterator<Item = &Rule<A>> {
        self.rules.iter()
    }
    pub fn classify(&self, k: &Key<A>) -> Option<u32> {
        self.rules.iter().find(|r| r.matches(k)).map(|r| r.id)
    }
    pub fn classify_batch(&self, keys: &[Key<A>], out: &mut [i64]) {
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.classify(k).map_or(-1, i64::from);
        }
    }
    pub fn memory(&self) -> usize {
        self.rules.capacity() * core::mem::size_of::<Rule<A>>()
    }
}
