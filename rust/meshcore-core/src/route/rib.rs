//! The routing information base: every route of one address family, in order.
//!
//! Routes are kept in `BTreeMap`s keyed by `(address, length)` (packed in one `u64` for IPv4),
//! which orders them as a depth-first walk of the prefix tree (a prefix before everything inside
//! it). That order makes
//! "the routes inside P" one range scan, and "the routes covering an address" one probe per
//! prefix length in use (a 129-bit set of the lengths present keeps that short).
//!
//! The maps are shards by the top [`SHARD_BITS`] bits of the address (a route shorter than that
//! goes to the shard of its first address): every key of a shard is below every key of the
//! next, so the shards one after another are the routes in order, and each probe searches a
//! tree a few thousand times smaller than the whole table (two or three levels fewer on a full
//! table, where every route update probes it once or twice).
//!
//! The longest-prefix match here is the reference the fast structures are tested against: it
//! costs one tree probe per length in use, so it is correct, not quick.

use super::{Address, Prefix};
use std::collections::BTreeMap;

/// Address bits that pick a route's shard (4,096 shards).
pub const SHARD_BITS: u8 = 12;

/// Routes of one family: prefix -> next-hop id.
#[derive(Debug, Clone)]
pub struct Rib<A: Address> {
    /// Shard `i`: the routes whose address starts with the bits of `i`. Empty (no shards)
    /// until the first insert, so that an empty table costs nothing.
    shards: Vec<BTreeMap<A::Key, u32>>,
    /// Routes in all shards.
    len: usize,
    /// How many routes have each length (index = length).
    per_len: Vec<u32>,
}

impl<A: Address> Default for Rib<A> {
    fn default() -> Self {
        Rib::new()
    }
}

/// The shard of the routes whose address is `addr`.
#[inline]
fn shard<A: Address>(addr: A) -> usize {
    addr.chunk(0, SHARD_BITS) as usize
}

impl<A: Address> Rib<A> {
    pub fn new() -> Rib<A> {
        Rib {
            shards: Vec::new(),
            len: 0,
            per_len: vec![0; usize::from(A::BITS) + 1],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of the route `addr`/`len` (`addr` without host bits).
    #[inline]
    fn probe(&self, addr: A, len: u8) -> Option<u32> {
        self.shards.get(shard(addr))?.get(&addr.key(len)).copied()
    }

    /// Add or replace a route; returns the value it replaced.
    pub fn insert(&mut self, p: Prefix<A>, value: u32) -> Option<u32> {
        if self.shards.is_empty() {
            self.shards = vec![BTreeMap::new(); 1 << SHARD_BITS];
        }
        let old = self.shards[shard(p.addr())].insert(p.addr().key(p.len()), value);
        if old.is_none() {
            self.len += 1;
            self.per_len[usize::from(p.len())] += 1;
        }
        old
    }

    /// Remove a route; returns its value.
    pub fn remove(&mut self, p: Prefix<A>) -> Option<u32> {
        let old = self
            .shards
            .get_mut(shard(p.addr()))?
            .remove(&p.addr().key(p.len()));
        if old.is_some() {
            self.len -= 1;
            self.per_len[usize::from(p.len())] -= 1;
        }
        old
    }

    /// The value of exactly this prefix.
    pub fn get(&self, p: Prefix<A>) -> Option<u32> {
        self.probe(p.addr(), p.len())
    }

    /// Prefix lengths in use, longest first.
    fn lengths_desc(&self, at_most: u8) -> impl Iterator<Item = u8> + '_ {
        (0..=at_most)
            .rev()
            .filter(|&l| self.per_len[usize::from(l)] > 0)
    }

    /// The longest route covering `addr`.
    pub fn lookup(&self, addr: A) -> Option<(Prefix<A>, u32)> {
        self.covering_addr(addr, A::BITS).next()
    }

    /// Routes covering `addr` with length at most `max_len`, longest first.
    fn covering_addr(&self, addr: A, max_len: u8) -> impl Iterator<Item = (Prefix<A>, u32)> + '_ {
        self.lengths_desc(max_len).filter_map(move |len| {
            let a = addr.and(A::mask(len));
            self.probe(a, len).map(|v| (prefix::<A>(a.key(len)), v))
        })
    }

    /// Routes covering the prefix `p` (itself included when present), longest first: what
    /// py-radix calls `search_covering`. pytricia's `parent` is the first of these after `p`.
    pub fn covering(&self, p: Prefix<A>) -> Vec<(Prefix<A>, u32)> {
        self.covering_addr(p.addr(), p.len()).collect()
    }

    /// Whether any route is longer than `len` bits.
    pub fn has_longer(&self, len: u8) -> bool {
        self.per_len[usize::from(len) + 1..].iter().any(|&c| c > 0)
    }

    /// The value of the longest route covering `p` (itself included) that is longer than
    /// `longer_than` bits: one probe per length in use between the two.
    pub fn longest_covering(&self, p: Prefix<A>, longer_than: u8) -> Option<u32> {
        self.lengths_desc(p.len())
            .take_while(|&len| len > longer_than)
            .find_map(|len| self.probe(p.addr().and(A::mask(len)), len))
    }

    /// Routes inside the prefix `p`, in order; with `include_self`, `p` itself when present:
    /// what pytricia calls `children` (without `p`) and py-radix `search_covered` (with it).
    pub fn covered(
        &self,
        p: Prefix<A>,
        include_self: bool,
    ) -> impl Iterator<Item = (Prefix<A>, u32)> + '_ {
        let start = p.addr().key(p.len());
        let end = p.last().key(A::BITS);
        // The shards the prefix spans (one, unless it is shorter than the shard bits); in
        // each, an open range and a stop at `end`: one search of the tree instead of two (it
        // runs on every route update, where the range is nearly always empty).
        self.shards
            .get(shard(p.addr())..=shard(p.last()))
            .unwrap_or_default()
            .iter()
            .flat_map(move |m| m.range(start..).take_while(move |(k, _)| **k <= end))
            .filter(move |(k, _)| include_self || **k != start)
            .map(|(&k, &v)| (prefix::<A>(k), v))
    }

    /// Every route in order (by address, then length).
    pub fn iter(&self) -> impl Iterator<Item = (Prefix<A>, u32)> + '_ {
        self.shards
            .iter()
            .flat_map(BTreeMap::iter)
            .map(|(&k, &v)| (prefix::<A>(k), v))
    }
}

/// A key of the map is a valid prefix by construction.
fn prefix<A: Address>(key: A::Key) -> Prefix<A> {
    let (addr, len) = A::unkey(key);
    Prefix::new(addr, len, false).unwrap_or_else(|_| unreachable!("keys are valid prefixes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;
    use std::collections::HashMap;

    fn p4(a: u32, l: u8) -> Prefix<u32> {
        Prefix::new(a, l, false).unwrap()
    }

    /// The obvious longest-prefix match over a plain map.
    fn naive<A: Address>(m: &HashMap<Prefix<A>, u32>, addr: A) -> Option<(Prefix<A>, u32)> {
        m.iter()
            .filter(|(p, _)| p.contains(addr))
            .max_by_key(|(p, _)| p.len())
            .map(|(p, v)| (*p, *v))
    }

    #[test]
    fn lookups_parents_children() {
        let mut r = Rib::new();
        r.insert(p4(0, 0), 1);
        r.insert(p4(0x0a00_0000, 8), 2);
        r.insert(p4(0x0a01_0000, 16), 3);
        r.insert(p4(0x0a01_0100, 24), 4);
        r.insert(p4(0x0b00_0000, 8), 5);
        assert_eq!(r.lookup(0x0a01_0105).unwrap().1, 4);
        assert_eq!(r.lookup(0x0a01_0205).unwrap().1, 3);
        assert_eq!(r.lookup(0x0c00_0000).unwrap().1, 1);
        let cov: Vec<u32> = r
            .covering(p4(0x0a01_0100, 24))
            .iter()
            .map(|x| x.1)
            .collect();
        assert_eq!(cov, vec![4, 3, 2, 1]);
        let kids: Vec<u32> = r.covered(p4(0x0a00_0000, 8), false).map(|x| x.1).collect();
        assert_eq!(kids, vec![3, 4]);
        let with_self: Vec<u32> = r.covered(p4(0x0a00_0000, 8), true).map(|x| x.1).collect();
        assert_eq!(with_self, vec![2, 3, 4]);
        assert_eq!(r.covered(p4(0, 0), false).count(), 4);
        assert_eq!(r.remove(p4(0x0a01_0000, 16)), Some(3));
        assert_eq!(r.lookup(0x0a01_0205).unwrap().1, 2);
        assert_eq!(r.remove(p4(0x0a01_0000, 16)), None);
        assert_eq!(r.len(), 4);
    }

    fn differential<A: Address>(seed: u64, random_addr: impl Fn(&mut Rng) -> A) {
        let mut rng = Rng::new(seed);
        let mut rib = Rib::<A>::new();
        let mut model: HashMap<Prefix<A>, u32> = HashMap::new();
        let mut known: Vec<Prefix<A>> = Vec::new();
        for step in 0..4000u32 {
            // Lengths cluster like real tables, with the extremes included.
            let len = match rng.below(10) {
                0 => 0,
                1 => A::BITS,
                _ => (rng.below(u64::from(A::BITS) + 1)) as u8,
            };
            let p = if !known.is_empty() && rng.below(3) == 0 {
                known[rng.below(known.len() as u64) as usize]
            } else {
                Prefix::new(random_addr(&mut rng), len, false).unwrap()
            };
            if rng.below(4) == 0 {
                assert_eq!(rib.remove(p), model.remove(&p));
            } else {
                assert_eq!(rib.insert(p, step), model.insert(p, step));
                known.push(p);
            }
            let probe = if rng.below(2) == 0 {
                random_addr(&mut rng)
            } else {
                known[rng.below(known.len() as u64) as usize].last()
            };
            assert_eq!(rib.lookup(probe), naive(&model, probe));
            assert_eq!(rib.len(), model.len());
        }
        // Covered sets agree with a filter over the model.
        for p in known.iter().take(200) {
            let mut want: Vec<_> = model
                .iter()
                .filter(|(q, _)| p.covers(q) && *q != p)
                .map(|(q, v)| (*q, *v))
                .collect();
            want.sort();
            let got: Vec<_> = rib.covered(*p, false).collect();
            assert_eq!(got, want);
            let mut cover: Vec<_> = model
                .iter()
                .filter(|(q, _)| q.covers(p))
                .map(|(q, v)| (*q, *v))
                .collect();
            cover.sort_by_key(|(q, _)| core::cmp::Reverse(q.len()));
            assert_eq!(rib.covering(*p), cover);
        }
        let mut all: Vec<_> = model.into_iter().collect();
        all.sort();
        assert_eq!(rib.iter().collect::<Vec<_>>(), all);
    }

    #[test]
    fn differential_ipv4() {
        for seed in 0..4 {
            // Few distinct high bits, so prefixes nest and collide often.
            differential::<u32>(seed, |r| {
                ((r.below(4) as u32) << 30) | (r.next_u64() as u32 & 0x00ff_ffff)
            });
        }
    }

    #[test]
    fn differential_across_shards() {
        // Addresses just below and above shard boundaries (and around the wrap at zero), so
        // that ranges, covering routes and the walk in order cross from shard to shard.
        let (s4, s6) = (32 - SHARD_BITS, 128 - SHARD_BITS);
        for seed in 0..4 {
            differential::<u32>(seed, |r| {
                ((r.below(8) as u32) << s4)
                    .wrapping_add(r.below(512) as u32)
                    .wrapping_sub(256)
            });
            differential::<u128>(seed, |r| {
                (u128::from(r.below(8)) << s6)
                    .wrapping_add(u128::from(r.below(512)))
                    .wrapping_sub(256)
            });
        }
    }

    #[test]
    fn differential_ipv6() {
        for seed in 0..4 {
            differential::<u128>(seed, |r| {
                (u128::from(r.below(4)) << 126) | u128::from(r.next_u64() as u32)
            });
        }
    }
}
