//! Poptrie (Asai and Ohara, SIGCOMM 2015): a longest-prefix-match table small enough to stay in
//! cache, compiled from a [`Rib`].
//!
//! Layout:
//! - a **direct table** indexed by the top `S` bits of the address (`S` = 18 for IPv4, 16 for
//!   IPv6): each slot is either a leaf (the answer for the whole slot) or the root of a subtree,
//!   told apart by a one-bit-per-slot bitmap that stays in L1/L2;
//! - **subtrees** of 64-way nodes (6-bit strides; the last stride of IPv4 is narrower). A node
//!   holds `vector` (bit i: child i is a node) and `leafvec` (bit i: a new run of equal leaves
//!   starts at child i) and two base indices; child or leaf i is found at
//!   `base + popcount(bits up to i) - 1`, so there are no per-child pointers;
//! - **leaf pushing**: every leaf holds the final answer for its range, so a lookup ends at the
//!   first leaf without tracking a best match so far; runs of equal leaves are stored once.
//!
//! All subtrees share one node array and one leaf array (a subtree's nodes are contiguous), so
//! a lookup touches the direct table, one node per stride and one leaf, and nothing else.
//! Values are next-hop ids in `0..=u32::MAX - 1`; `u32::MAX` inside means "no route".

use super::rib::Rib;
use super::{Address, Prefix};

/// "No route" inside leaves and direct slots.
const NONE: u32 = u32::MAX;
/// Stride of the nodes below the direct table, in bits.
const STRIDE: u8 = 6;
/// Lookups walked together by [`Poptrie::lookup_many`].
pub const LANES: usize = 16;

#[inline]
fn leaf_value(v: u32) -> i64 {
    if v == NONE {
        -1
    } else {
        i64::from(v)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Bit i: child i is an internal node.
    vector: u64,
    /// Bit i: child i is a leaf whose value differs from the previous leaf child's.
    leafvec: u64,
    /// Index of the first leaf of this node in `Subtree::leaves`.
    leaf_base: u32,
    /// Index of the first child node in `Subtree::nodes`.
    child_base: u32,
}

/// Nodes and leaves of all subtrees, each subtree in one contiguous run of both arrays.
#[derive(Debug, Clone, Default)]
struct Arena {
    nodes: Vec<Node>,
    leaves: Vec<u32>,
}

/// A compiled longest-prefix-match table for one address family.
#[derive(Debug, Clone)]
pub struct Poptrie<A: Address> {
    /// Direct-table width in bits.
    s: u8,
    /// Leaf value, or the index of the subtree's root in `arena.nodes` when the slot's bit in
    /// `is_tree` is set.
    direct: Vec<u32>,
    is_tree: Vec<u64>,
    arena: Arena,
    /// Where each subtree lives in the arena, by slot.
    regions: std::collections::HashMap<u32, Region>,
    /// Leaf-pushed value of the routes no longer than the direct width, per slot: what a leaf
    /// slot holds and what a subtree inherits.
    base: Vec<u32>,
    /// Arena entries no longer reachable (replaced subtrees).
    garbage: usize,
    _family: core::marker::PhantomData<A>,
}

/// The arena space of one subtree; a rebuilt subtree that fits is written back in place.
#[derive(Debug, Clone, Copy)]
struct Region {
    node_at: u32,
    node_cap: u32,
    leaf_at: u32,
    leaf_cap: u32,
}

/// A route as the builder sees it.
#[derive(Debug, Clone, Copy)]
struct Route<A> {
    addr: A,
    len: u8,
    value: u32,
}

impl<A: Address> Poptrie<A> {
    /// The direct-table width used for this family.
    pub fn default_direct_bits() -> u8 {
        if A::BITS == 32 {
            18
        } else {
            16
        }
    }

    /// Compile the routes of `rib`.
    pub fn build(rib: &Rib<A>) -> Poptrie<A> {
        let s = Self::default_direct_bits();
        let slots = 1usize << s;
        let mut t = Poptrie {
            s,
            direct: vec![NONE; slots],
            is_tree: vec![0; slots.div_ceil(64)],
            arena: Arena::default(),
            regions: std::collections::HashMap::new(),
            base: Vec::new(),
            garbage: 0,
            _family: core::marker::PhantomData,
        };
        let routes: Vec<Route<A>> = rib
            .iter()
            .map(|(p, value)| Route {
                addr: p.addr(),
                len: p.len(),
                value,
            })
            .collect();
        // Routes no longer than the direct width fill their slot ranges, shortest first so that
        // longer ones overwrite.
        let mut short: Vec<&Route<A>> = routes.iter().filter(|r| r.len <= s).collect();
        short.sort_by_key(|r| r.len);
        for r in short {
            let first = r.addr.chunk(0, s) as usize;
            let count = 1usize << (s - r.len);
            t.direct[first..first + count].fill(r.value);
        }
        t.base.clone_from(&t.direct);
        // Longer routes, grouped by slot (they are in address order), become subtrees.
        let deep: Vec<Route<A>> = routes.into_iter().filter(|r| r.len > s).collect();
        let mut i = 0;
        while i < deep.len() {
            let slot = deep[i].addr.chunk(0, s);
            let mut j = i;
            while j < deep.len() && deep[j].addr.chunk(0, s) == slot {
                j += 1;
            }
            let inherited = t.direct[slot as usize];
            t.plant(slot, &deep[i..j], inherited);
            i = j;
        }
        t
    }

    fn is_tree(&self, slot: usize) -> bool {
        self.is_tree[slot / 64] >> (slot % 64) & 1 == 1
    }

    /// Build a subtree for `slot` from its (non-empty, address-ordered) deep routes and make the
    /// slot point at it. It is written over the slot's old subtree when it fits there (the
    /// common case for an update), otherwise appended, the old space becoming garbage.
    fn plant(&mut self, slot: u32, deep: &[Route<A>], inherited: u32) {
        let mut tmp = Arena::default();
        tmp.nodes.push(Node::default());
        build_node(&mut tmp, 0, deep, self.s, inherited);
        let (nn, nl) = (tmp.nodes.len(), tmp.leaves.len());
        let region = match self.regions.get(&slot) {
            Some(r) if r.node_cap as usize >= nn && r.leaf_cap as usize >= nl => *r,
            _ => {
                self.retire(slot);
                let r = Region {
                    node_at: self.arena.nodes.len() as u32,
                    node_cap: nn as u32,
                    leaf_at: self.arena.leaves.len() as u32,
                    leaf_cap: nl as u32,
                };
                self.arena
                    .nodes
                    .resize(self.arena.nodes.len() + nn, Node::default());
                self.arena.leaves.resize(self.arena.leaves.len() + nl, NONE);
                r
            }
        };
        for (k, mut n) in tmp.nodes.into_iter().enumerate() {
            n.child_base += region.node_at;
            n.leaf_base += region.leaf_at;
            self.arena.nodes[region.node_at as usize + k] = n;
        }
        let at = region.leaf_at as usize;
        self.arena.leaves[at..at + nl].copy_from_slice(&tmp.leaves);
        self.regions.insert(slot, region);
        self.direct[slot as usize] = region.node_at;
        self.is_tree[slot as usize / 64] |= 1 << (slot % 64);
    }

    /// Forget the subtree of `slot` (if any), counting its space as garbage.
    fn retire(&mut self, slot: u32) {
        if let Some(r) = self.regions.remove(&slot) {
            self.garbage += r.node_cap as usize + r.leaf_cap as usize;
        }
        self.is_tree[slot as usize / 64] &= !(1 << (slot % 64));
    }

    /// The prefix of direct slot `slot`.
    fn slot_prefix(&self, slot: u32) -> Prefix<A> {
        Prefix::new(A::place(slot, A::BITS - self.s), self.s, false)
            .unwrap_or_else(|_| unreachable!("a slot is a valid prefix"))
    }

    /// Recompute `slot` from the RIB: a leaf with `base` (the leaf-pushed value of the routes no
    /// longer than the direct width), or a new subtree when longer routes fall inside it.
    fn refresh_slot(&mut self, rib: &Rib<A>, slot: u32, base: u32) {
        let sp = self.slot_prefix(slot);
        let deep: Vec<Route<A>> = rib
            .covered(sp, false)
            .filter(|(p, _)| p.len() > self.s)
            .map(|(p, value)| Route {
                addr: p.addr(),
                len: p.len(),
                value,
            })
            .collect();
        if deep.is_empty() {
            self.retire(slot);
            self.direct[slot as usize] = base;
        } else {
            self.plant(slot, &deep, base);
        }
    }

    /// Bring the table up to date after `changed` was inserted into, replaced in or removed
    /// from `rib` (which must be the RIB the table was built from). Only the direct slots and
    /// subtrees under `changed` are rebuilt; when replaced subtrees outweigh live ones the whole
    /// table is rebuilt to reclaim their space (amortised over many updates).
    pub fn update(&mut self, rib: &Rib<A>, changed: Prefix<A>) {
        let s = self.s;
        if changed.len() > s {
            let slot = changed.addr().chunk(0, s);
            let base = self.base[slot as usize];
            self.refresh_slot(rib, slot, base);
        } else {
            // Paint the slots under `changed`: the longest route covering all of them, then the
            // routes inside it no longer than the direct width, shortest first.
            let first = changed.addr().chunk(0, s) as usize;
            let count = 1usize << (s - changed.len());
            let base = rib.covering(changed).first().map_or(NONE, |&(_, v)| v);
            let mut values = vec![base; count];
            let mut inner: Vec<(Prefix<A>, u32)> = rib
                .covered(changed, false)
                .filter(|(p, _)| p.len() <= s)
                .collect();
            inner.sort_by_key(|(p, _)| p.len());
            for (p, v) in inner {
                let at = p.addr().chunk(0, s) as usize - first;
                values[at..at + (1usize << (s - p.len()))].fill(v);
            }
            for (k, &v) in values.iter().enumerate() {
                let slot = first + k;
                if !self.is_tree(slot) {
                    self.direct[slot] = v;
                } else if self.base[slot] != v {
                    // Its deep routes did not change: only a new inherited value needs a rebuild.
                    self.refresh_slot(rib, slot as u32, v);
                }
            }
            self.base[first..first + count].copy_from_slice(&values);
        }
        let live = self.arena.nodes.len() + self.arena.leaves.len() - self.garbage;
        if self.garbage > live.max(1 << 16) {
            *self = Poptrie::build(rib);
        }
    }

    /// The value of the longest route covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: A) -> Option<u32> {
        let slot = addr.chunk(0, self.s) as usize;
        let entry = self.direct[slot];
        let v = if self.is_tree[slot / 64] >> (slot % 64) & 1 == 0 {
            entry
        } else {
            let sub = &self.arena;
            let mut node = &sub.nodes[entry as usize];
            let mut depth = self.s;
            loop {
                let width = STRIDE.min(A::BITS - depth);
                let c = addr.chunk(depth, width);
                let upto = if c == 63 { u64::MAX } else { (2u64 << c) - 1 };
                if node.vector >> c & 1 == 1 {
                    let k = (node.vector & upto).count_ones() - 1;
                    node = &sub.nodes[(node.child_base + k) as usize];
                    depth += width;
                } else {
                    let k = (node.leafvec & upto).count_ones() - 1;
                    break sub.leaves[(node.leaf_base + k) as usize];
                }
            }
        };
        (v != NONE).then_some(v)
    }

    /// Look up a batch; -1 where no route matches.
    ///
    /// Lookups run in groups of [`LANES`] that advance one level at a time together, so the
    /// loads of a level are independent of each other and their cache misses overlap, instead
    /// of each lookup waiting on its own chain of dependent loads.
    pub fn lookup_many(&self, addrs: &[A], out: &mut [i64]) {
        for (group, out) in addrs.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let mut node = [0u32; LANES];
            let mut pending = 0u32;
            for (i, (&a, o)) in group.iter().zip(out.iter_mut()).enumerate() {
                let slot = a.chunk(0, self.s) as usize;
                let entry = self.direct[slot];
                if self.is_tree[slot / 64] >> (slot % 64) & 1 == 1 {
                    node[i] = entry;
                    pending |= 1 << i;
                } else {
                    *o = leaf_value(entry);
                }
            }
            let mut depth = self.s;
            while pending != 0 {
                let width = STRIDE.min(A::BITS - depth);
                let mut lanes = pending;
                while lanes != 0 {
                    let i = lanes.trailing_zeros() as usize;
                    lanes &= lanes - 1;
                    let n = &self.arena.nodes[node[i] as usize];
                    let c = group[i].chunk(depth, width);
                    let upto = if c == 63 { u64::MAX } else { (2u64 << c) - 1 };
                    if n.vector >> c & 1 == 1 {
                        node[i] = n.child_base + (n.vector & upto).count_ones() - 1;
                    } else {
                        let k = n.leaf_base + (n.leafvec & upto).count_ones() - 1;
                        out[i] = leaf_value(self.arena.leaves[k as usize]);
                        pending &= !(1 << i);
                    }
                }
                depth += width;
            }
        }
    }

    /// Bytes of memory held by the table.
    pub fn memory(&self) -> usize {
        self.direct.capacity() * 4
            + self.base.capacity() * 4
            + self.is_tree.capacity() * 8
            + self.arena.nodes.capacity() * core::mem::size_of::<Node>()
            + self.arena.leaves.capacity() * 4
    }

    /// Node and leaf counts (for reports).
    pub fn counts(&self) -> (usize, usize) {
        (self.arena.nodes.len(), self.arena.leaves.len())
    }
}

/// Fill node `at` of the arena for the region starting at the routes' common top `depth` bits,
/// where every route in `routes` is longer than `depth` and lies in the region, `routes` is in
/// address order, and `inherited` is the value of the longest route covering the region.
fn build_node<A: Address>(
    sub: &mut Arena,
    at: usize,
    routes: &[Route<A>],
    depth: u8,
    inherited: u32,
) {
    let width = STRIDE.min(A::BITS - depth);
    let n = 1usize << width;
    let child_len = depth + width;
    // Leaf-pushed value of each child: routes ending inside this stride, shortest first.
    let mut value = [inherited; 64];
    let mut short: Vec<&Route<A>> = routes.iter().filter(|r| r.len <= child_len).collect();
    short.sort_by_key(|r| r.len);
    for r in short {
        let first = r.addr.chunk(depth, width) as usize;
        let count = 1usize << (child_len - r.len);
        value[first..first + count].fill(r.value);
    }
    // Children with longer routes become nodes; their routes are contiguous in address order.
    let deep: Vec<Route<A>> = routes
        .iter()
        .filter(|r| r.len > child_len)
        .copied()
        .collect();
    let mut groups: Vec<(usize, usize, usize)> = Vec::new(); // (child, start, end) in `deep`
    let mut i = 0;
    while i < deep.len() {
        let c = deep[i].addr.chunk(depth, width) as usize;
        let mut j = i;
        while j < deep.len() && deep[j].addr.chunk(depth, width) as usize == c {
            j += 1;
        }
        groups.push((c, i, j));
        i = j;
    }
    let mut node = Node {
        leaf_base: sub.leaves.len() as u32,
        child_base: sub.nodes.len() as u32,
        ..Node::default()
    };
    for &(c, _, _) in &groups {
        node.vector |= 1 << c;
    }
    let mut last_leaf = None;
    for (c, &v) in value.iter().enumerate().take(n) {
        if node.vector >> c & 1 == 1 {
            continue;
        }
        if last_leaf != Some(v) {
            node.leafvec |= 1 << c;
            sub.leaves.push(v);
            last_leaf = Some(v);
        }
    }
    // Reserve the children's block first so that they are contiguous, then fill each.
    let base = sub.nodes.len();
    sub.nodes.resize(base + groups.len(), Node::default());
    sub.nodes[at] = node;
    for (k, &(c, start, end)) in groups.iter().enumerate() {
        build_node(sub, base + k, &deep[start..end], child_len, value[c]);
    }
}

/// Check a table against the RIB's reference lookup at `addrs` (for tests and fuzzing).
pub fn agrees_with<A: Address>(t: &Poptrie<A>, rib: &Rib<A>, addrs: &[A]) -> Option<A> {
    addrs
        .iter()
        .copied()
        .find(|&a| t.lookup(a) != rib.lookup(a).map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    fn p4(s: &str) -> Prefix<u32> {
        match super::super::parse_prefix(s, true).unwrap() {
            super::super::AnyPrefix::V4(p) => p,
            super::super::AnyPrefix::V6(_) => unreachable!(),
        }
    }

    fn ip4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }

    #[test]
    fn covering_prefix_wins_outside_the_more_specific() {
        // The oxidecomputer/poptrie 0.1.0 regression: 1.0.146.52 is in the /19, not the /24.
        for order in [[0, 1], [1, 0]] {
            let mut rib = Rib::new();
            let routes = [(p4("1.0.128.0/19"), 1), (p4("1.0.128.0/24"), 2)];
            for i in order {
                rib.insert(routes[i].0, routes[i].1);
            }
            let t = Poptrie::build(&rib);
            assert_eq!(t.lookup(ip4("1.0.146.52")), Some(1));
            assert_eq!(t.lookup(ip4("1.0.128.7")), Some(2));
            assert_eq!(t.lookup(ip4("1.0.160.0")), None);
        }
    }

    #[test]
    fn late_covering_prefix() {
        // The cidr-trie 3.1.2 regression: the /16 arrives after its more-specifics.
        let mut rib = Rib::new();
        for (i, s) in [
            "41.128.202.0/24",
            "41.128.92.0/24",
            "41.128.0.0/16",
            "41.128.185.0/24",
        ]
        .iter()
        .enumerate()
        {
            rib.insert(p4(s), i as u32);
        }
        let t = Poptrie::build(&rib);
        assert_eq!(t.lookup(ip4("41.128.227.47")), Some(2));
        assert_eq!(t.lookup(ip4("41.128.92.1")), Some(1));
    }

    #[test]
    fn host_routes_and_default() {
        let mut rib = Rib::new();
        rib.insert(p4("0.0.0.0/0"), 9);
        rib.insert(p4("10.1.2.3/32"), 1);
        rib.insert(p4("10.1.2.2/31"), 2);
        rib.insert(p4("255.255.255.255/32"), 3);
        let t = Poptrie::build(&rib);
        assert_eq!(t.lookup(ip4("10.1.2.3")), Some(1));
        assert_eq!(t.lookup(ip4("10.1.2.2")), Some(2));
        assert_eq!(t.lookup(ip4("10.1.2.4")), Some(9));
        assert_eq!(t.lookup(u32::MAX), Some(3));
        assert_eq!(t.lookup(0), Some(9));
    }

    fn random_table<A: Address>(
        rng: &mut Rng,
        n: usize,
        addr: &impl Fn(&mut Rng) -> A,
        len: &impl Fn(&mut Rng) -> u8,
    ) -> Rib<A> {
        let mut rib = Rib::new();
        for i in 0..n {
            let p = Prefix::new(addr(rng), len(rng), false).unwrap();
            rib.insert(p, (i % 300) as u32);
        }
        rib
    }

    #[test]
    fn differential_ipv4() {
        let mut rng = Rng::new(11);
        for round in 0..6 {
            // Nested tables: few distinct high bits so that prefixes overlap at every depth.
            let addr = |r: &mut Rng| ((r.below(3) as u32) << 28) | (r.next_u64() as u32 >> 6);
            let len = |r: &mut Rng| match r.below(8) {
                0 => r.below(33) as u8,
                1..=4 => 24,
                _ => 16 + r.below(17) as u8,
            };
            let rib = random_table(&mut rng, 500 + round * 700, &addr, &len);
            let t = Poptrie::build(&rib);
            let mut probes: Vec<u32> = (0..20_000).map(|_| addr(&mut rng)).collect();
            probes.extend(rib.iter().map(|(p, _)| p.last()));
            probes.extend(rib.iter().map(|(p, _)| p.addr().wrapping_sub(1)));
            assert_eq!(agrees_with(&t, &rib, &probes), None);
        }
    }

    fn churn<A: Address>(seed: u64, addr: impl Fn(&mut Rng) -> A, len: impl Fn(&mut Rng) -> u8) {
        let mut rng = Rng::new(seed);
        let mut rib = random_table(&mut rng, 300, &addr, &len);
        let mut t = Poptrie::build(&rib);
        let mut known: Vec<Prefix<A>> = rib.iter().map(|(p, _)| p).collect();
        for step in 0..2000u32 {
            let p = if rng.below(2) == 0 {
                known[rng.below(known.len() as u64) as usize]
            } else {
                let p = Prefix::new(addr(&mut rng), len(&mut rng), false).unwrap();
                known.push(p);
                p
            };
            if rng.below(3) == 0 {
                rib.remove(p);
            } else {
                rib.insert(p, step % 50);
            }
            t.update(&rib, p);
            if step % 50 == 0 {
                let mut probes: Vec<A> = (0..2000).map(|_| addr(&mut rng)).collect();
                probes.extend(known.iter().map(Prefix::last));
                probes.extend(known.iter().map(Prefix::addr));
                assert_eq!(agrees_with(&t, &rib, &probes), None, "step {step}");
            }
        }
        let probes: Vec<A> = known.iter().map(Prefix::last).collect();
        assert_eq!(agrees_with(&t, &rib, &probes), None);
    }

    #[test]
    fn incremental_updates_ipv4() {
        for seed in 0..3 {
            churn::<u32>(
                seed,
                |r| ((r.below(2) as u32) << 31) | ((r.next_u64() as u32) >> 9),
                |r| match r.below(8) {
                    0 => 10 + r.below(9) as u8,
                    1..=4 => 24,
                    _ => 16 + r.below(17) as u8,
                },
            );
        }
    }

    #[test]
    fn incremental_updates_ipv6() {
        churn::<u128>(
            5,
            |r| {
                (0x2001u128 << 112)
                    | (u128::from(r.below(2)) << 100)
                    | (u128::from(r.next_u64()) << 40)
            },
            |r| match r.below(6) {
                0 => 8 + r.below(9) as u8,
                1..=3 => 48,
                _ => 29 + r.below(36) as u8,
            },
        );
    }

    #[test]
    fn batch_equals_single() {
        let mut rng = Rng::new(21);
        let addr = |r: &mut Rng| ((r.below(3) as u32) << 28) | (r.next_u64() as u32 >> 6);
        let len = |r: &mut Rng| 8 + r.below(25) as u8;
        let rib = random_table(&mut rng, 3000, &addr, &len);
        let t = Poptrie::build(&rib);
        for n in [0, 1, 15, 16, 17, 1000] {
            let probes: Vec<u32> = (0..n).map(|_| addr(&mut rng)).collect();
            let mut out = vec![7i64; n];
            t.lookup_many(&probes, &mut out);
            let want: Vec<i64> = probes
                .iter()
                .map(|&a| t.lookup(a).map_or(-1, i64::from))
                .collect();
            assert_eq!(out, want);
        }
    }

    #[test]
    fn differential_ipv6() {
        let mut rng = Rng::new(12);
        for round in 0..4 {
            let addr = |r: &mut Rng| {
                (0x2001u128 << 112)
                    | (u128::from(r.below(4)) << 100)
                    | (u128::from(r.next_u64()) << 36)
            };
            let len = |r: &mut Rng| match r.below(6) {
                0 => r.below(129) as u8,
                1..=3 => 48,
                _ => 29 + r.below(36) as u8,
            };
            let rib = random_table(&mut rng, 400 + round * 500, &addr, &len);
            let t = Poptrie::build(&rib);
            let mut probes: Vec<u128> = (0..10_000).map(|_| addr(&mut rng)).collect();
            probes.extend(rib.iter().map(|(p, _)| p.last()));
            assert_eq!(agrees_with(&t, &rib, &probes), None);
        }
    }
}
