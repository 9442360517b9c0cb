//! Poptrie (Asai and Ohara, SIGCOMM 2015): a longest-prefix-match table small enough to stay in
//! cache, compiled from a [`Rib`].
//!
//! Layout:
//! - a **direct table** indexed by the top `S` bits of the address (`S` = 18 for IPv4, 20 for
//!   IPv6): each slot is either a value (the answer for the whole slot) or the root of a
//!   subtree, told apart by a one-bit-per-slot bitmap that stays in L1/L2. The IPv6 table is
//!   4 MiB, but the global unicast space 2000::/3 touches only an eighth of it, and the wider
//!   index saves one node level on the /32 and /48 walks that dominate IPv6 tables;
//! - **subtrees** of 64-way nodes (6-bit strides; the last stride of IPv4 is narrower). A node
//!   holds `vector` (bit i: child i is a node) and `leafvec` (bit i: a new run of equal leaves
//!   starts at child i) and two base indices; child or leaf i is found at
//!   `base + popcount(bits up to i) - 1`, so there are no per-child pointers;
//! - **leaf pushing**: every leaf holds the final answer for its range, so a lookup ends at the
//!   first leaf without tracking a best match so far; runs of equal leaves are stored once, and
//!   a child whose routes all carry the value it inherits is a leaf, not a node (route
//!   aggregation);
//! - **16-bit leaves**: while the table has fewer than 32,768 distinct values, a leaf is a
//!   16-bit index into a small next-hop table, which halves the leaf array; above that, leaves
//!   hold the values themselves. Direct slots always hold values.
//!
//! All subtrees share one node array and one leaf array (a subtree's nodes are contiguous), so
//! a lookup touches the direct table, one node per stride and one leaf, and nothing else.
//! Values are next-hop ids in `0..=u32::MAX - 1`; `u32::MAX` inside means "no route".
//!
//! On x86-64 the lookups run in a copy compiled for `popcnt` and BMI, chosen at run time, so the
//! library still loads on CPUs without them.

// The lookup bodies must inline into the copies compiled for detected CPU features.
#![allow(clippy::inline_always)]

use super::rib::Rib;
use super::{Address, Prefix};
use std::collections::HashMap;

/// "No route" inside leaves and direct slots.
const NONE: u32 = u32::MAX;
/// Stride of the nodes below the direct table, in bits.
const STRIDE: u8 = 6;
/// Lookups resolved together by [`Poptrie::lookup_many`] (256 rather than 128: twice the
/// subtree lanes per pass, so more node and leaf misses in flight).
pub const LANES: usize = 256;
// Lane numbers are kept as `u8`.
const _: () = assert!(LANES <= 256);
/// Distinct values up to which a build picks 16-bit leaves; the rest of the 65,536 indices
/// are headroom for values that updates add later.
const NARROW_BUILD: usize = 1 << 15;
/// Entries of the direct-mapped cache in front of the next-hop map.
const HOP_CACHE: usize = 256;
/// Size of the 16-bit index space of the next-hop table.
const NARROW_MAX: usize = 1 << 16;

#[inline]
fn leaf_value(v: u32) -> i64 {
    // NONE wraps to 0, then -1; no branch.
    i64::from(v.wrapping_add(1)) - 1
}

/// A value as a direct slot holds it: plus one, so that "no route" is 0 and a table that
/// is mostly empty (the IPv6 direct table outside 2000::/3) stays in untouched zero pages.
#[inline]
fn enc(v: u32) -> u32 {
    v.wrapping_add(1)
}

#[inline]
fn dec(e: u32) -> u32 {
    e.wrapping_sub(1)
}

/// Whether this CPU runs the lookup copies compiled for `popcnt` and BMI.
#[cfg(target_arch = "x86_64")]
fn fast_cpu() -> bool {
    std::is_x86_feature_detected!("popcnt")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("lzcnt")
}

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Bit i: child i is an internal node.
    vector: u64,
    /// Bit i: child i is a leaf whose value differs from the previous leaf child's.
    leafvec: u64,
    /// Index of the first leaf of this node in the leaf array.
    leaf_base: u32,
    /// Index of the first child node in the node array.
    child_base: u32,
}

/// Bits `0..=c` of `bits`, counted.
#[inline(always)]
fn rank(bits: u64, c: u32) -> u32 {
    (bits << (63 - c)).count_ones()
}

/// Ask for the cache line holding `*p` (the pointer is never dereferenced, so it may point
/// anywhere).
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint and never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Ask for both cache lines a node may straddle (24-byte nodes: a quarter of them do).
#[inline(always)]
fn prefetch_node(p: *const Node) {
    prefetch(p);
    prefetch(
        p.cast::<u8>()
            .wrapping_add(core::mem::size_of::<Node>() - 1),
    );
}

/// A leaf as stored: a next-hop index (16-bit) or the value itself (32-bit).
trait Leaf: Copy + core::fmt::Debug {
    fn value(self, hops: &[u32]) -> u32;
}

impl Leaf for u16 {
    #[inline(always)]
    fn value(self, hops: &[u32]) -> u32 {
        hops[usize::from(self)]
    }
}

impl Leaf for u32 {
    #[inline(always)]
    fn value(self, _: &[u32]) -> u32 {
        self
    }
}

#[derive(Debug, Clone)]
enum Leaves {
    /// Indices into `Poptrie::hops`; index 0 is "no route".
    Narrow(Vec<u16>),
    /// The values themselves.
    Wide(Vec<u32>),
}

impl Leaves {
    fn len(&self) -> usize {
        match self {
            Leaves::Narrow(v) => v.len(),
            Leaves::Wide(v) => v.len(),
        }
    }
    fn bytes(&self) -> usize {
        match self {
            Leaves::Narrow(v) => v.capacity() * 2,
            Leaves::Wide(v) => v.capacity() * 4,
        }
    }
    /// Copy leaves as stored (no next-hop lookups) from `src` to `to`.
    fn copy_within(&mut self, src: core::ops::Range<usize>, to: usize) {
        match self {
            Leaves::Narrow(v) => v.copy_within(src, to),
            Leaves::Wide(v) => v.copy_within(src, to),
        }
    }
    fn grow(&mut self, n: usize) {
        match self {
            Leaves::Narrow(v) => v.resize(v.len() + n, 0),
            Leaves::Wide(v) => v.resize(v.len() + n, NONE),
        }
    }
}

/// Hasher for the next-hop map's `u32` keys: one multiply, high bits folded down.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl core::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0 ^ u64::from(v)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type HopMap = HashMap<u32, u16, core::hash::BuildHasherDefault<IdHasher>>;

/// A compiled longest-prefix-match table for one address family.
#[derive(Debug, Clone)]
pub struct Poptrie<A: Address> {
    /// Value plus one (0: no route), or the index of the subtree's root in `nodes` when the
    /// slot's bit in `is_tree` is set.
    direct: Vec<u32>,
    is_tree: Vec<u64>,
    /// Bit per slot: routes longer than the direct width fall inside it (it is a subtree, or
    /// a value because they all carry the inherited one).
    has_deep: Vec<u64>,
    /// Leaf-pushed value of the routes no longer than the direct width, per slot (encoded as
    /// in `direct`): what a leaf slot holds and what a subtree inherits.
    base: Vec<u32>,
    nodes: Vec<Node>,
    /// Per node: the value its range inherits from above (for rebuilding it alone).
    inherit: Vec<u32>,
    leaves: Leaves,
    /// Next-hop table of 16-bit leaves: `hops[0]` is "no route".
    hops: Vec<u32>,
    hop_of: HopMap,
    /// Recent entries of `hop_of` (an index never changes once given).
    hop_cache: [(u32, u16); HOP_CACHE],
    /// Free blocks of nodes and of leaves, by size (index = size, 1..=64).
    free_nodes: Vec<Vec<u32>>,
    free_leaves: Vec<Vec<u32>>,
    /// Node and leaf entries in free blocks.
    garbage: usize,
    /// An update needed a 65,537th next-hop index: the table must be rebuilt.
    overflow: bool,
    /// Reused buffer of the routes under a rebuilt node.
    buf: Vec<Route<A>>,
}

/// A route as the builder sees it.
#[derive(Debug, Clone, Copy)]
struct Route<A> {
    addr: A,
    len: u8,
    value: u32,
}

impl<A: Address> Route<A> {
    fn of((p, value): (Prefix<A>, u32)) -> Route<A> {
        Route {
            addr: p.addr(),
            len: p.len(),
            value,
        }
    }
}

/// Whether a node is needed for `routes` (all longer than the node's depth) under a range that
/// inherits `inherited`: some route must change an answer. Otherwise the range is one leaf.
fn needs_node<A: Address>(routes: &[Route<A>], inherited: u32) -> bool {
    routes.iter().any(|r| r.value != inherited)
}

impl<A: Address> Poptrie<A> {
    /// Direct-table width in bits: 18 for IPv4, 20 for IPv6.
    const S: u8 = if A::BITS == 32 { 18 } else { 20 };

    /// Compile the routes of `rib`.
    pub fn build(rib: &Rib<A>) -> Poptrie<A> {
        let s = Self::S;
        let slots = 1usize << s;
        let mut distinct = std::collections::HashSet::new();
        for (_, v) in rib.iter() {
            distinct.insert(v);
            if distinct.len() >= NARROW_BUILD {
                break;
            }
        }
        let leaves = if distinct.len() < NARROW_BUILD {
            Leaves::Narrow(Vec::new())
        } else {
            Leaves::Wide(Vec::new())
        };
        let mut hop_of = HopMap::default();
        hop_of.insert(NONE, 0);
        let mut t = Poptrie {
            direct: vec![0; slots],
            is_tree: vec![0; slots.div_ceil(64)],
            has_deep: vec![0; slots.div_ceil(64)],
            base: vec![0; slots],
            nodes: Vec::new(),
            inherit: Vec::new(),
            leaves,
            hops: vec![NONE],
            hop_of,
            hop_cache: [(NONE, 0); HOP_CACHE],
            free_nodes: vec![Vec::new(); 65],
            free_leaves: vec![Vec::new(); 65],
            garbage: 0,
            overflow: false,
            buf: Vec::new(),
        };
        let routes: Vec<Route<A>> = rib.iter().map(Route::of).collect();
        // Routes no longer than the direct width fill their slot ranges. Address order puts a
        // prefix before the prefixes inside it, so more-specifics overwrite.
        for r in routes.iter().filter(|r| r.len <= s) {
            let first = r.addr.chunk(0, s) as usize;
            let run = first..first + (1usize << (s - r.len));
            t.direct[run.clone()].fill(enc(r.value));
            t.base[run].fill(enc(r.value));
        }
        // Longer routes, grouped by slot (they are in address order), become subtrees.
        let deep: Vec<Route<A>> = routes.into_iter().filter(|r| r.len > s).collect();
        let mut i = 0;
        while i < deep.len() {
            let slot = deep[i].addr.chunk(0, s);
            let mut j = i;
            while j < deep.len() && deep[j].addr.chunk(0, s) == slot {
                j += 1;
            }
            t.plant(slot as usize, &deep[i..j]);
            i = j;
        }
        t
    }

    fn is_tree(&self, slot: usize) -> bool {
        self.is_tree[slot / 64] >> (slot % 64) & 1 == 1
    }

    /// The 16-bit index of `value`, allocating one if needed; `None` when all are taken.
    fn hop_index(&mut self, value: u32) -> Option<u16> {
        let slot = &mut self.hop_cache[value as usize % HOP_CACHE];
        if slot.0 == value {
            return Some(slot.1);
        }
        if let Some(&i) = self.hop_of.get(&value) {
            *slot = (value, i);
            return Some(i);
        }
        if self.hops.len() >= NARROW_MAX {
            return None;
        }
        let i = u16::try_from(self.hops.len()).ok()?;
        self.hops.push(value);
        self.hop_of.insert(value, i);
        Some(i)
    }

    /// A block of `k` (1..=64) contiguous nodes: a free one of that size, or new space.
    fn alloc_nodes(&mut self, k: usize) -> u32 {
        if let Some(at) = self.free_nodes[k].pop() {
            self.garbage -= k;
            return at;
        }
        let at = self.nodes.len();
        self.nodes.resize(at + k, Node::default());
        self.inherit.resize(at + k, NONE);
        at as u32
    }

    /// A block of `k` (1..=64) contiguous leaves.
    fn alloc_leaves(&mut self, k: usize) -> u32 {
        if let Some(at) = self.free_leaves[k].pop() {
            self.garbage -= k;
            return at;
        }
        let at = self.leaves.len();
        self.leaves.grow(k);
        at as u32
    }

    /// Release the blocks below node `at` (its children, recursively, and its leaves); the
    /// node itself stays where it is.
    fn free_below(&mut self, at: u32) {
        let n = self.nodes[at as usize];
        let kids = n.vector.count_ones();
        for k in 0..kids {
            self.free_below(n.child_base + k);
        }
        if kids > 0 {
            self.free_nodes[kids as usize].push(n.child_base);
            self.garbage += kids as usize;
        }
        let nl = n.leafvec.count_ones() as usize;
        if nl > 0 {
            self.free_leaves[nl].push(n.leaf_base);
            self.garbage += nl;
        }
    }

    /// Make direct slot `slot` answer for its deep routes `routes` (address order, all longer
    /// than the direct width) under the slot's base value: a subtree, or the base value
    /// itself when no route changes an answer.
    fn plant(&mut self, slot: usize, routes: &[Route<A>]) {
        let (word, bit) = (slot / 64, slot % 64);
        if self.is_tree(slot) {
            let root = self.direct[slot];
            self.free_below(root);
            self.free_nodes[1].push(root);
            self.garbage += 1;
            self.is_tree[word] &= !(1 << bit);
        }
        if routes.is_empty() {
            self.has_deep[word] &= !(1 << bit);
        } else {
            self.has_deep[word] |= 1 << bit;
        }
        let inherited = dec(self.base[slot]);
        if !needs_node(routes, inherited) {
            self.direct[slot] = self.base[slot];
            return;
        }
        let root = self.alloc_nodes(1);
        self.build_node(root, routes, Self::S, inherited);
        self.direct[slot] = root;
        self.is_tree[word] |= 1 << bit;
    }

    /// Fill node `at` for the range of the routes' common top `depth` bits, where `routes` are
    /// in address order, lie in that range and are all longer than `depth`, and `inherited` is
    /// the value of the longest route covering the range. Blocks for its leaves and children
    /// are allocated here; the node's old blocks must have been freed.
    fn build_node(&mut self, at: u32, routes: &[Route<A>], depth: u8, inherited: u32) {
        let width = STRIDE.min(A::BITS - depth);
        let child_len = depth + width;
        // Leaf-pushed value of each child: routes ending inside this stride, in address order
        // (a prefix comes before the more-specifics that overwrite it).
        let mut value = [inherited; 64];
        paint(&mut value, routes, depth, width);
        // Children with longer routes become nodes, unless no route of theirs changes the
        // child's own value: then the child is that leaf.
        let groups = child_groups(routes, depth, width);
        let mut vector = 0u64;
        for c in 0..1usize << width {
            let (s, e) = groups[c];
            vector |= u64::from(needs_node(&routes[s as usize..e as usize], value[c])) << c;
        }
        let mut runs = [NONE; 64];
        let (leafvec, nl) = leaf_runs(&value, 1 << width, vector, &mut runs);
        let leaf_base = if nl > 0 { self.alloc_leaves(nl) } else { 0 };
        self.write_leaves(leaf_base as usize, &runs[..nl]);
        let ng = vector.count_ones() as usize;
        let child_base = if ng > 0 { self.alloc_nodes(ng) } else { 0 };
        self.nodes[at as usize] = Node {
            vector,
            leafvec,
            leaf_base,
            child_base,
        };
        self.inherit[at as usize] = inherited;
        let (mut kids, mut to) = (vector, child_base);
        while kids != 0 {
            let c = kids.trailing_zeros() as usize;
            kids &= kids - 1;
            let (s, e) = groups[c];
            self.build_node(to, &routes[s as usize..e as usize], child_len, value[c]);
            to += 1;
        }
    }

    fn write_leaves(&mut self, at: usize, values: &[u32]) {
        if matches!(self.leaves, Leaves::Narrow(_)) {
            for (k, &v) in values.iter().enumerate() {
                let i = self.hop_index(v).unwrap_or_else(|| {
                    // Out of 16-bit indices: `update` rebuilds the table with wide leaves.
                    self.overflow = true;
                    0
                });
                if let Leaves::Narrow(l) = &mut self.leaves {
                    l[at + k] = i;
                }
            }
        } else if let Leaves::Wide(l) = &mut self.leaves {
            l[at..at + values.len()].copy_from_slice(values);
        }
    }

    /// Collect into `self.buf` the routes of `rib` inside `addr`/`depth` and longer than it.
    fn gather(&mut self, rib: &Rib<A>, addr: A, depth: u8) {
        let p = Prefix::new(addr, depth, false)
            .unwrap_or_else(|_| unreachable!("a depth is a valid prefix length"));
        self.buf.clear();
        self.buf.extend(rib.covered(p, false).map(Route::of));
    }

    /// Recompute direct slot `slot` from the RIB under its base value.
    fn refresh_slot(&mut self, rib: &Rib<A>, slot: usize) {
        self.gather(rib, A::place(slot as u32, A::BITS - Self::S), Self::S);
        let routes = std::mem::take(&mut self.buf);
        self.plant(slot, &routes);
        self.buf = routes;
    }

    /// Bring the table up to date after `changed` was inserted into, replaced in or removed
    /// from `rib` (which must be the RIB the table was built from).
    ///
    /// A route longer than the direct width rebuilds only the deepest node whose range holds
    /// it (or, when that node's routes no longer change any answer, its parent). A shorter
    /// route repaints its direct slots and rebuilds the subtrees whose inherited value
    /// changed. When free space outweighs live space, or the 16-bit next-hop indices run out,
    /// the whole table is rebuilt (amortised over many updates).
    pub fn update(&mut self, rib: &Rib<A>, changed: Prefix<A>) {
        self.update_known(rib, changed, rib.get(changed));
    }

    /// [`Poptrie::update`] when the caller knows the route's value in `rib` now (`None`:
    /// withdrawn), which saves a RIB probe.
    pub fn update_known(&mut self, rib: &Rib<A>, changed: Prefix<A>, now: Option<u32>) {
        let s = Self::S;
        if changed.len() > s {
            let slot = changed.addr().chunk(0, s) as usize;
            if self.is_tree(slot) {
                self.update_subtree(rib, slot, changed, now);
            } else {
                self.refresh_slot(rib, slot);
            }
        } else {
            // Paint the slots under `changed`: the longest route covering all of them, then the
            // routes inside it no longer than the direct width, in address order.
            let first = changed.addr().chunk(0, s) as usize;
            let count = 1usize << (s - changed.len());
            let base = rib.covering(changed).first().map_or(NONE, |&(_, v)| v);
            let mut values = vec![base; count];
            for (p, v) in rib.covered(changed, false).filter(|(p, _)| p.len() <= s) {
                let at = p.addr().chunk(0, s) as usize - first;
                values[at..at + (1usize << (s - p.len()))].fill(v);
            }
            for (k, &v) in values.iter().enumerate() {
                let slot = first + k;
                if self.base[slot] == enc(v) {
                    continue;
                }
                self.base[slot] = enc(v);
                if self.has_deep[slot / 64] >> (slot % 64) & 1 == 1 {
                    // Its deep routes did not change, but what they inherit did.
                    self.refresh_slot(rib, slot);
                } else {
                    self.direct[slot] = enc(v);
                }
            }
        }
        let live = self.nodes.len() + self.leaves.len() - self.garbage;
        if self.overflow || self.garbage > live.max(1 << 16) {
            *self = Poptrie::build(rib);
        }
    }

    /// `changed` (longer than the direct width) changed inside the subtree of `slot`.
    fn update_subtree(&mut self, rib: &Rib<A>, slot: usize, changed: Prefix<A>, now: Option<u32>) {
        // Walk down to the deepest node whose range holds `changed` and that it could alter.
        // On the stack: at most (128 - 20) / 6 = 18 levels, and this runs on every update.
        let mut path = [(0u32, 0u8); 24];
        let mut up = 0;
        let (mut node, mut depth) = (self.direct[slot], Self::S);
        loop {
            let width = STRIDE.min(A::BITS - depth);
            let n = self.nodes[node as usize];
            if changed.len() <= depth + width {
                break;
            }
            let c = changed.addr().chunk(depth, width);
            if n.vector >> c & 1 == 0 {
                break;
            }
            path[up] = (node, depth);
            up += 1;
            node = n.child_base + rank(n.vector, c) - 1;
            depth += width;
        }
        // Rebuild its children under `changed`; when it then changes no answer, its parent
        // makes it a leaf instead (and so on up to the direct slot).
        loop {
            if self.rebuild_node(rib, node, depth, changed, now) {
                return;
            }
            if up == 0 {
                // The whole slot answers with its base value now.
                self.free_below(node);
                self.free_nodes[1].push(node);
                self.garbage += 1;
                self.is_tree[slot / 64] &= !(1 << (slot % 64));
                self.direct[slot] = self.base[slot];
                return;
            }
            up -= 1;
            (node, depth) = path[up];
        }
    }

    /// Recompute the children of node `at` (at `depth`) that `changed` overlaps, keeping the
    /// others (their subtrees are moved, not rebuilt). Returns whether the node is still
    /// needed: false when it ends up one leaf equal to what it inherits.
    ///
    /// Only the leaf runs around the overlapped children are recomputed: a run starts where a
    /// leaf child's value differs from the previous leaf child's, so outside the overlapped
    /// children and the first leaf child after them the starts (and the runs' values) stay.
    fn rebuild_node(
        &mut self,
        rib: &Rib<A>,
        at: u32,
        depth: u8,
        changed: Prefix<A>,
        now: Option<u32>,
    ) -> bool {
        let width = STRIDE.min(A::BITS - depth);
        let child_len = depth + width;
        let n = 1usize << width;
        let old = self.nodes[at as usize];
        let inherited = self.inherit[at as usize];
        // The children `changed` overlaps (`c0..=c1`), their new values (only those entries
        // of `value` are read) and the routes below them.
        let mut value = [NONE; 64];
        let c0 = changed.addr().chunk(depth, width) as usize;
        let c1;
        if changed.len() <= child_len {
            c1 = c0 + (1usize << (child_len - changed.len())) - 1;
            // `changed` itself, when present, is the longest route covering its range.
            let top = now
                .or_else(|| rib.longest_covering(changed, depth))
                .unwrap_or(inherited);
            value[c0..=c1].fill(top);
            self.buf.clear();
            if rib.has_longer(changed.len()) {
                self.buf.extend(rib.covered(changed, false).map(Route::of));
            }
            paint(&mut value, &self.buf, depth, width);
        } else {
            // A deeper `changed`: the child keeps what it inherits, the value of its old leaf
            // or of its old subtree.
            c1 = c0;
            value[c0] = if old.vector >> c0 & 1 == 1 {
                self.inherit[(old.child_base + rank(old.vector, c0 as u32) - 1) as usize]
            } else {
                self.leaf_at((old.leaf_base + rank(old.leafvec, c0 as u32) - 1) as usize)
            };
            self.gather(rib, changed.addr().and(A::mask(child_len)), child_len);
        }
        let routes = std::mem::take(&mut self.buf);
        let groups = child_groups(&routes, depth, width);
        // Outside the overlapped children the old node/leaf split stands.
        let span = (u64::MAX >> (63 - (c1 - c0))) << c0;
        let mut vector = old.vector & !span;
        for c in c0..=c1 {
            let (s, e) = groups[c];
            vector |= u64::from(needs_node(&routes[s as usize..e as usize], value[c])) << c;
        }
        if vector == old.vector {
            // The same children are nodes: the child block stays where it is, and only the
            // overlapped node children are rebuilt, each in its old place (the common case:
            // no copy of the untouched children, no block allocated or freed).
            let mut redo = vector & span;
            while redo != 0 {
                let c = redo.trailing_zeros() as usize;
                redo &= redo - 1;
                let to = old.child_base + rank(old.vector, c as u32) - 1;
                self.free_below(to);
                let (s, e) = groups[c];
                self.build_node(to, &routes[s as usize..e as usize], child_len, value[c]);
            }
        } else {
            let child_base = self.move_children(&routes, &groups, old, vector, span, &value, depth);
            let old_kids = old.vector.count_ones() as usize;
            if old_kids > 0 {
                self.free_nodes[old_kids].push(old.child_base);
                self.garbage += old_kids;
            }
            self.nodes[at as usize].child_base = child_base;
        }
        self.buf = routes;
        let (leafvec, leaf_base, nl) = self.patch_leaves(old, vector, n, (c0, c1), &value);
        let node = &mut self.nodes[at as usize];
        node.vector = vector;
        node.leafvec = leafvec;
        node.leaf_base = leaf_base;
        vector != 0 || nl != 1 || self.leaf_at(leaf_base as usize) != inherited
    }

    /// The leaves of a node that was `old` and whose node children are now `vector`, after the
    /// children `c0..=c1` (of `n`) took the values `value[c0..=c1]`: the runs starting in the
    /// window from `c0` to the first leaf child after `c1` are recomputed, the runs before
    /// and after it are kept. Returns the new `leafvec`, leaf block and run count; a block of
    /// another size replaces the old one, which is freed.
    fn patch_leaves(
        &mut self,
        old: Node,
        vector: u64,
        n: usize,
        (c0, c1): (usize, usize),
        value: &[u32; 64],
    ) -> (u64, u32, usize) {
        let leaf_children = !vector & (u64::MAX >> (64 - n));
        let old_value = |t: &Self, c: usize| {
            t.leaf_at((old.leaf_base + rank(old.leafvec, c as u32) - 1) as usize)
        };
        // Leaf children outside `c0..=c1` were leaf children before, with the same values.
        let below = leaf_children & ((1u64 << c0) - 1);
        let above = leaf_children & ((u64::MAX << c1) << 1);
        let end = if above == 0 {
            n - 1
        } else {
            above.trailing_zeros() as usize
        };
        let window = (u64::MAX << c0) & (u64::MAX >> (63 - end));
        let mut prev = if below == 0 {
            None
        } else {
            Some(old_value(self, 63 - below.leading_zeros() as usize))
        };
        // The runs starting in the window.
        let (mut starts, mut mid, mut new_mid) = (0u64, [NONE; 64], 0);
        let mut bits = leaf_children & window;
        while bits != 0 {
            let c = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let v = if c <= c1 {
                value[c]
            } else {
                old_value(self, c)
            };
            if prev != Some(v) {
                starts |= 1 << c;
                mid[new_mid] = v;
                new_mid += 1;
            }
            prev = Some(v);
        }
        let leafvec = old.leafvec & !window | starts;
        let before = (old.leafvec & ((1u64 << c0) - 1)).count_ones() as usize;
        let old_mid = (old.leafvec & window).count_ones() as usize;
        let old_nl = old.leafvec.count_ones() as usize;
        let nl = old_nl - old_mid + new_mid;
        let from = old.leaf_base as usize;
        if new_mid == old_mid {
            // As many leaves as before: rewrite in place the ones whose value changed.
            for (k, &v) in mid[..new_mid].iter().enumerate() {
                if self.leaf_at(from + before + k) != v {
                    self.write_leaves(from + before + k, &[v]);
                }
            }
            return (leafvec, old.leaf_base, nl);
        }
        // A new block: the kept runs copied as stored, the window's written.
        let leaf_base = if nl > 0 { self.alloc_leaves(nl) } else { 0 };
        let to = leaf_base as usize;
        let after = old_nl - before - old_mid;
        self.leaves.copy_within(from..from + before, to);
        self.write_leaves(to + before, &mid[..new_mid]);
        self.leaves.copy_within(
            from + before + old_mid..from + old_nl,
            to + before + new_mid,
        );
        debug_assert_eq!(before + new_mid + after, nl);
        if old_nl > 0 {
            self.free_leaves[old_nl].push(old.leaf_base);
            self.garbage += old_nl;
        }
        (leafvec, leaf_base, nl)
    }

    /// A new child block for a node whose node children are now `vector`: the overlapped
    /// children (`span`) that are nodes are built from their `routes` groups, the others are
    /// moved from their places in the block of `old` (the node as it was); the overlapped old
    /// subtrees are released. Returns the block's index; the old block is the caller's to free.
    #[allow(clippy::too_many_arguments)]
    fn move_children(
        &mut self,
        routes: &[Route<A>],
        groups: &[(u32, u32); 64],
        old: Node,
        vector: u64,
        span: u64,
        value: &[u32; 64],
        depth: u8,
    ) -> u32 {
        let width = STRIDE.min(A::BITS - depth);
        let child_len = depth + width;
        let kept = |c: usize| old.child_base + rank(old.vector, c as u32) - 1;
        let mut gone = old.vector & span;
        while gone != 0 {
            let c = gone.trailing_zeros() as usize;
            gone &= gone - 1;
            self.free_below(kept(c));
        }
        // New blocks first (the old ones are still read), then free the old ones.
        let kids = vector.count_ones() as usize;
        let child_base = if kids > 0 { self.alloc_nodes(kids) } else { 0 };
        let (mut bits, mut to) = (vector, child_base);
        while bits != 0 {
            let c = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if span >> c & 1 == 1 {
                let (s, e) = groups[c];
                self.build_node(to, &routes[s as usize..e as usize], child_len, value[c]);
            } else {
                let from = kept(c) as usize;
                self.nodes[to as usize] = self.nodes[from];
                self.inherit[to as usize] = self.inherit[from];
            }
            to += 1;
        }
        child_base
    }

    /// The value of leaf `k`.
    fn leaf_at(&self, k: usize) -> u32 {
        match &self.leaves {
            Leaves::Narrow(l) => self.hops[usize::from(l[k])],
            Leaves::Wide(l) => l[k],
        }
    }

    /// The value of the longest route covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: A) -> Option<u32> {
        let v = match &self.leaves {
            Leaves::Narrow(l) => self.find(l, addr),
            Leaves::Wide(l) => self.find(l, addr),
        };
        (v != NONE).then_some(v)
    }

    // The one unsafe call: entering the copy compiled for CPU features detected at run time.
    #[allow(unsafe_code)]
    #[inline]
    fn find<L: Leaf>(&self, leaves: &[L], addr: A) -> u32 {
        #[cfg(target_arch = "x86_64")]
        if fast_cpu() {
            // SAFETY: the CPU has the features `find_fast` is compiled for (checked above).
            return unsafe { self.find_fast(leaves, addr) };
        }
        self.find_in(leaves, addr)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt,bmi1,bmi2,lzcnt")]
    fn find_fast<L: Leaf>(&self, leaves: &[L], addr: A) -> u32 {
        self.find_in(leaves, addr)
    }

    #[inline(always)]
    fn find_in<L: Leaf>(&self, leaves: &[L], addr: A) -> u32 {
        let slot = addr.chunk(0, Self::S) as usize;
        let entry = self.direct[slot];
        if self.is_tree[slot / 64] >> (slot % 64) & 1 == 0 {
            return dec(entry);
        }
        let mut node = entry;
        let mut depth = Self::S;
        loop {
            let n = &self.nodes[node as usize];
            let width = STRIDE.min(A::BITS - depth);
            let c = addr.chunk(depth, width);
            if n.vector >> c & 1 == 1 {
                node = n.child_base + rank(n.vector, c) - 1;
                depth += width;
            } else {
                let k = n.leaf_base + rank(n.leafvec, c) - 1;
                return leaves[k as usize].value(&self.hops);
            }
        }
    }

    /// Look up a batch; -1 where no route matches.
    ///
    /// Each group of [`LANES`] addresses is resolved one level at a time: first every
    /// address's direct slot (no data-dependent branch; subtree slots only set a bit), then
    /// the subtree lanes are listed from those bits with their roots prefetched, then one
    /// node per listed address and level. A lane that ends at a leaf prefetches it, and the
    /// pass reads its leaves only after all its nodes. The loads of one pass are independent
    /// of each other, so their cache misses overlap.
    pub fn lookup_many(&self, addrs: &[A], out: &mut [i64]) {
        match &self.leaves {
            Leaves::Narrow(l) => self.batch(l, addrs, out),
            Leaves::Wide(l) => self.batch(l, addrs, out),
        }
    }

    // The one unsafe call: entering the copy compiled for CPU features detected at run time.
    #[allow(unsafe_code)]
    fn batch<L: Leaf>(&self, leaves: &[L], addrs: &[A], out: &mut [i64]) {
        #[cfg(target_arch = "x86_64")]
        if fast_cpu() {
            // SAFETY: the CPU has the features `batch_fast` is compiled for (checked above).
            unsafe { self.batch_fast(leaves, addrs, out) };
            return;
        }
        self.batch_in(leaves, addrs, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt,bmi1,bmi2,lzcnt")]
    fn batch_fast<L: Leaf>(&self, leaves: &[L], addrs: &[A], out: &mut [i64]) {
        self.batch_in(leaves, addrs, out);
    }

    #[inline(always)]
    fn batch_in<L: Leaf>(&self, leaves: &[L], addrs: &[A], out: &mut [i64]) {
        // The direct width is a constant of the family, so slot arithmetic folds and slot
        // indices are provably in range.
        let s = Self::S;
        let direct = &self.direct[..1 << s];
        let is_tree = &self.is_tree[..(1 << s) / 64];
        let nodes = self.nodes.as_ptr();
        // `lane[..n]`: the addresses still walking, `addr[j]` the address of lane j and
        // `node[j]` the node it is at.
        let mut lane = [0u8; LANES];
        let mut addr = [A::ZERO; LANES];
        let mut node = [0u32; LANES];
        // Lanes that reached a leaf in this pass, and the leaf (fetched before it is read).
        let mut ended = [0u8; LANES];
        let mut leaf = [0u32; LANES];
        for (group, out) in addrs.chunks(LANES).zip(out.chunks_mut(LANES)) {
            // Every address's direct slot, with no data-dependent branch: the answer when the
            // slot holds a value, and one bit per address when it is a subtree.
            // The value (encoded plus one: -1 for none), and 1 for a subtree.
            let probe = |a: A| {
                let slot = a.chunk(0, s) as usize;
                (
                    i64::from(direct[slot]) - 1,
                    is_tree[slot / 64] >> (slot % 64) & 1,
                )
            };
            let mut trees = [0u64; LANES / 64];
            for ((g, o), t) in group.chunks(64).zip(out.chunks_mut(64)).zip(&mut trees) {
                // Four at a time (a loop the compiler does not unroll by itself).
                let (g4, o4) = (g.chunks_exact(4), o.chunks_exact_mut(4));
                let rest = g4.remainder().len();
                for (q, (a, o)) in g4.zip(o4).enumerate() {
                    let mut bits = 0;
                    for k in 0..4 {
                        let (v, tree) = probe(a[k]);
                        o[k] = v;
                        bits |= tree << k;
                    }
                    *t |= bits << (4 * q);
                }
                let done = g.len() - rest;
                for (i, (&a, o)) in g[done..].iter().zip(&mut o[done..]).enumerate() {
                    let (v, tree) = probe(a);
                    *o = v;
                    *t |= tree << (done + i);
                }
            }
            // The few subtree lanes: list them and start fetching their roots.
            let mut n = 0;
            for (w, &t) in trees.iter().enumerate() {
                let mut bits = t;
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let a = group[i];
                    let root = direct[a.chunk(0, s) as usize];
                    prefetch_node(nodes.wrapping_add(root as usize));
                    lane[n % LANES] = i as u8;
                    addr[n % LANES] = a;
                    node[n % LANES] = root;
                    n += 1;
                }
            }
            let mut depth = s;
            while n > 0 {
                let width = STRIDE.min(A::BITS - depth);
                let (mut m, mut d) = (0, 0);
                for j in 0..n.min(LANES) {
                    let nd = &self.nodes[node[j] as usize];
                    let c = addr[j].chunk(depth, width);
                    if nd.vector >> c & 1 == 1 {
                        let next = nd.child_base + rank(nd.vector, c) - 1;
                        prefetch_node(nodes.wrapping_add(next as usize));
                        lane[m % LANES] = lane[j];
                        addr[m % LANES] = addr[j];
                        node[m % LANES] = next;
                        m += 1;
                    } else {
                        let k = nd.leaf_base + rank(nd.leafvec, c) - 1;
                        prefetch(leaves.as_ptr().wrapping_add(k as usize));
                        ended[d % LANES] = lane[j];
                        leaf[d % LANES] = k;
                        d += 1;
                    }
                }
                for (&i, &k) in ended.iter().zip(&leaf).take(d) {
                    out[usize::from(i)] = leaf_value(leaves[k as usize].value(&self.hops));
                }
                n = m;
                depth += width;
            }
        }
    }

    /// Bytes of memory held by the table.
    pub fn memory(&self) -> usize {
        self.direct.capacity() * 4
            + self.base.capacity() * 4
            + self.is_tree.capacity() * 8
            + self.has_deep.capacity() * 8
            + self.nodes.capacity() * core::mem::size_of::<Node>()
            + self.leaves.bytes()
            + self.hops.capacity() * 4
            + self.hop_of.capacity() * 8
            + self.inherit.capacity() * 4
    }

    /// Node and leaf counts (for reports).
    pub fn counts(&self) -> (usize, usize) {
        (self.nodes.len(), self.leaves.len())
    }

    /// Whether leaves are 16-bit next-hop indices (fewer than 32,768 distinct values at the
    /// last build).
    pub fn narrow_leaves(&self) -> bool {
        matches!(self.leaves, Leaves::Narrow(_))
    }

    /// Check that every node's leaves are in the form a fresh build gives them: one leaf per
    /// run of equal leaf children, a run starting at the first leaf child and wherever the
    /// value changes (for tests of the in-place updates).
    #[cfg(test)]
    fn check_runs(&self) -> Result<(), String> {
        fn walk<A: Address>(t: &Poptrie<A>, at: u32, depth: u8) -> Result<(), String> {
            let nd = t.nodes[at as usize];
            let width = STRIDE.min(A::BITS - depth);
            let n = 1usize << width;
            let mut value = [NONE; 64];
            for (c, v) in value.iter_mut().enumerate().take(n) {
                if nd.vector >> c & 1 == 0 {
                    *v = t.leaf_at((nd.leaf_base + rank(nd.leafvec, c as u32) - 1) as usize);
                }
            }
            let mut runs = [NONE; 64];
            let (leafvec, nl) = leaf_runs(&value, n, nd.vector, &mut runs);
            let stored: Vec<u32> = (0..nd.leafvec.count_ones() as usize)
                .map(|k| t.leaf_at(nd.leaf_base as usize + k))
                .collect();
            if leafvec != nd.leafvec || runs[..nl] != stored[..] {
                return Err(format!(
                    "node {at} at depth {depth}: leafvec {:#x} runs {stored:?}, want {leafvec:#x} {:?}",
                    nd.leafvec,
                    &runs[..nl]
                ));
            }
            for k in 0..nd.vector.count_ones() {
                walk(t, nd.child_base + k, depth + width)?;
            }
            Ok(())
        }
        for (w, &bits) in self.is_tree.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                walk(self, self.direct[slot], Self::S)?;
            }
        }
        Ok(())
    }
}

/// Paint into `value` (one entry per child of a node at `depth` with `width`-bit stride) the
/// routes of `routes` that end inside the stride. Address order puts a prefix before the
/// more-specifics that overwrite it.
fn paint<A: Address>(value: &mut [u32; 64], routes: &[Route<A>], depth: u8, width: u8) {
    let child_len = depth + width;
    for r in routes.iter().filter(|r| r.len <= child_len) {
        let first = r.addr.chunk(depth, width) as usize;
        value[first..first + (1usize << (child_len - r.len))].fill(r.value);
    }
}

/// For each child of a node at `depth` with `width`-bit stride, the range of `routes`
/// (address order) that lie inside the child and are longer than it; `(0, 0)` for none.
fn child_groups<A: Address>(routes: &[Route<A>], depth: u8, width: u8) -> [(u32, u32); 64] {
    let child_len = depth + width;
    let mut groups = [(0u32, 0u32); 64];
    let mut i = 0;
    while i < routes.len() {
        if routes[i].len <= child_len {
            i += 1;
            continue;
        }
        let c = routes[i].addr.chunk(depth, width) as usize;
        let mut j = i + 1;
        while j < routes.len() && routes[j].addr.chunk(depth, width) as usize == c {
            j += 1;
        }
        groups[c] = (i as u32, j as u32);
        i = j;
    }
    groups
}

/// The leaves of a node whose `n` children have leaf-pushed values `value` and whose node
/// children are the set bits of `vector`: the `leafvec` bitmap (a bit where a run of equal
/// leaf values starts, skipping node children) and the number of runs, whose values go to
/// the front of `runs`.
fn leaf_runs(value: &[u32; 64], n: usize, vector: u64, runs: &mut [u32; 64]) -> (u64, usize) {
    let leaf_children = !vector & (u64::MAX >> (64 - n));
    if leaf_children == 0 {
        return (0, 0);
    }
    // Node children take the value of the leaf before them (or the first leaf), so that a
    // leaf after a node compares with the leaf before the node.
    let first = leaf_children.trailing_zeros() as usize;
    let mut lv = *value;
    let mut nodes = vector & (u64::MAX >> (64 - n));
    while nodes != 0 {
        let c = nodes.trailing_zeros() as usize;
        nodes &= nodes - 1;
        lv[c] = if c < first { value[first] } else { lv[c - 1] };
    }
    // Where the value changes, as one byte per child (a loop the compiler vectorises), then
    // packed eight bytes at a time into bits: `leaf_children` masks what is beyond `n`.
    let mut change = [0u8; 64];
    for c in 1..64 {
        change[c] = u8::from(lv[c] != lv[c - 1]);
    }
    let mut starts = 1u64 << first;
    for (k, b) in change.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes(b.try_into().unwrap_or_else(|_| unreachable!()));
        // Byte j (0 or 1) lands on bit 56 + j without carries: the bytes gathered in one byte.
        starts |= (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    let leafvec = starts & leaf_children;
    let (mut nl, mut bits) = (0, leafvec);
    while bits != 0 {
        runs[nl] = lv[bits.trailing_zeros() as usize];
        bits &= bits - 1;
        nl += 1;
    }
    (leafvec, nl)
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
    use crate::route::table::MAX_VALUE;

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

    /// A prefix for the next churn step: half the time one seen before (a replacement or a
    /// removal), else a new random one (noted in `known`).
    fn pick_prefix<A: Address>(
        rng: &mut Rng,
        known: &mut Vec<Prefix<A>>,
        addr: impl Fn(&mut Rng) -> A,
        len: impl Fn(&mut Rng) -> u8,
    ) -> Prefix<A> {
        if rng.below(2) == 0 {
            known[rng.below(known.len() as u64) as usize]
        } else {
            let p = Prefix::new(addr(rng), len(rng), false).unwrap();
            known.push(p);
            p
        }
    }

    /// Random inserts, replacements and removals, each followed by an update, checked against
    /// the RIB; values are drawn from `0..values` (few values: aggregation happens often).
    fn churn<A: Address>(
        seed: u64,
        values: u32,
        addr: impl Fn(&mut Rng) -> A,
        len: impl Fn(&mut Rng) -> u8,
    ) {
        let mut rng = Rng::new(seed);
        let mut rib = random_table(&mut rng, 300, &addr, &len);
        let mut t = Poptrie::build(&rib);
        let mut known: Vec<Prefix<A>> = rib.iter().map(|(p, _)| p).collect();
        for step in 0..2000u32 {
            let p = pick_prefix(&mut rng, &mut known, &addr, &len);
            if rng.below(3) == 0 {
                rib.remove(p);
            } else {
                rib.insert(p, step % values);
            }
            t.update(&rib, p);
            assert_eq!(t.check_runs(), Ok(()), "step {step}");
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
        for (seed, values) in [(0, 50), (1, 50), (2, 3), (3, 2)] {
            churn::<u32>(
                seed,
                values,
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
            50,
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
    fn incremental_updates_every_length() {
        // Every prefix length, /0 and host routes included, packed into a few neighbourhoods so
        // that updates land at each depth of the walk and at the narrow last IPv4 stride.
        for seed in 0..2 {
            churn::<u32>(
                seed,
                5,
                |r| ((r.below(2) as u32) << 31) | ((r.next_u64() as u32) >> 20),
                |r| r.below(33) as u8,
            );
        }
        churn::<u128>(
            9,
            5,
            |r| (0x2001u128 << 112) | (u128::from(r.next_u64()) >> 40) | u128::from(r.below(4)),
            |r| r.below(129) as u8,
        );
    }

    #[test]
    fn one_slot_updates_match_a_fresh_build_everywhere() {
        // Churn inside one direct slot (10.0.0.0/18) and its cover, checked at every address of
        // the slot against a table built from scratch: node rebuilds that keep the node/leaf
        // split (children rebuilt in place, leaves rewritten in place), ones that change it
        // (children moved to a new block), run counts that grow and shrink, values equal to the
        // cover's (aggregated away) and withdrawals of shadowed routes.
        let mut rng = Rng::new(41);
        let slot = 10u32 << 24;
        let mut rib = Rib::new();
        rib.insert(Prefix::new(slot, 16, false).unwrap(), 0);
        let mut t = Poptrie::build(&rib);
        let mut known = Vec::new();
        for step in 0..400u32 {
            let p = if !known.is_empty() && rng.below(3) == 0 {
                known[rng.below(known.len() as u64) as usize]
            } else {
                let len = match rng.below(6) {
                    0 => 16,
                    1 | 2 => 24,
                    _ => 19 + rng.below(14) as u8,
                };
                let p = Prefix::new(slot | (rng.next_u64() as u32 & 0x3fff), len, false).unwrap();
                known.push(p);
                p
            };
            if rng.below(4) == 0 {
                rib.remove(p);
            } else {
                rib.insert(p, rng.below(3) as u32);
            }
            t.update(&rib, p);
            assert_eq!(t.check_runs(), Ok(()), "step {step}");
            let fresh = Poptrie::build(&rib);
            for a in slot..slot + (1 << 14) {
                assert_eq!(t.lookup(a), fresh.lookup(a), "step {step}, address {a:#x}");
            }
        }
    }

    #[test]
    fn sixteen_bit_leaves_give_way_to_wide_ones() {
        // Built narrow with 3 values; then 70,000 new distinct values arrive one by one, more
        // than 16-bit indices can hold: the table must switch to 32-bit leaves and stay right.
        let mut rng = Rng::new(31);
        let addr = |r: &mut Rng| (10u32 << 24) | (r.next_u64() as u32 >> 8);
        let mut rib = random_table(&mut rng, 50, &addr, &|r: &mut Rng| 16 + r.below(9) as u8);
        for p in rib.iter().map(|(p, _)| p).collect::<Vec<_>>() {
            rib.insert(p, rib.get(p).unwrap() % 3);
        }
        let mut t = Poptrie::build(&rib);
        assert!(t.narrow_leaves());
        let mut added = Vec::new();
        for i in 0..70_000u32 {
            let p = Prefix::new((10 << 24) | (i << 5), 27, false).unwrap();
            rib.insert(p, 1000 + i);
            t.update(&rib, p);
            added.push(p);
        }
        assert!(!t.narrow_leaves());
        let mut probes: Vec<u32> = added.iter().map(Prefix::last).collect();
        probes.extend((0..20_000).map(|_| addr(&mut rng)));
        assert_eq!(agrees_with(&t, &rib, &probes), None);
        assert_eq!(t.lookup(ip4("10.0.0.33")), Some(1001));
        let mut out = vec![0i64; probes.len()];
        t.lookup_many(&probes, &mut out);
        let want: Vec<i64> = probes
            .iter()
            .map(|&a| t.lookup(a).map_or(-1, i64::from))
            .collect();
        assert_eq!(out, want);
    }

    /// Churn on a table built with 32-bit leaves (more distinct values than 16-bit leaves
    /// take), checked every fifth update for the leaf form and now and then against a fresh
    /// build: the leaf patches that copy runs as stored, with wide leaves.
    fn churn_wide<A: Address>(
        seed: u64,
        addr: impl Fn(&mut Rng) -> A,
        len: impl Fn(&mut Rng) -> u8,
    ) {
        let mut rng = Rng::new(seed);
        let mut rib = Rib::new();
        for v in 0..40_000 {
            rib.insert(
                Prefix::new(addr(&mut rng), len(&mut rng), false).unwrap(),
                v,
            );
        }
        let mut t = Poptrie::build(&rib);
        assert!(!t.narrow_leaves());
        let mut known: Vec<Prefix<A>> = rib.iter().map(|(p, _)| p).collect();
        for step in 0..300u32 {
            let p = pick_prefix(&mut rng, &mut known, &addr, &len);
            if rng.below(4) == 0 {
                rib.remove(p);
            } else {
                rib.insert(p, rng.below(4) as u32);
            }
            t.update(&rib, p);
            if step % 5 == 0 {
                // A walk of the whole table: not at every step.
                assert_eq!(t.check_runs(), Ok(()), "step {step}");
            }
            if step % 50 == 0 {
                let fresh = Poptrie::build(&rib);
                for q in known.iter().step_by(7) {
                    for a in [q.addr(), q.last()] {
                        assert_eq!(t.lookup(a), fresh.lookup(a), "step {step}");
                    }
                }
            }
        }
        let probes: Vec<A> = known.iter().map(Prefix::last).collect();
        assert_eq!(agrees_with(&t, &rib, &probes), None);
    }

    #[test]
    fn wide_leaf_updates() {
        churn_wide::<u32>(
            51,
            |r| (10u32 << 24) | ((r.next_u64() as u32) >> 8),
            |r| 20 + r.below(13) as u8,
        );
        churn_wide::<u128>(
            52,
            |r| (0x2001u128 << 112) | (u128::from(r.next_u64() >> 30) << 64),
            |r| 40 + r.below(25) as u8,
        );
    }

    #[test]
    fn batch_equals_single() {
        let mut rng = Rng::new(21);
        let addr = |r: &mut Rng| ((r.below(3) as u32) << 28) | (r.next_u64() as u32 >> 6);
        let len = |r: &mut Rng| 8 + r.below(25) as u8;
        let rib = random_table(&mut rng, 3000, &addr, &len);
        let t = Poptrie::build(&rib);
        for n in [0, 1, 15, 16, 17, 127, 128, 129, 1000] {
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

    /// `lookup_many` against `lookup` on `probes` and on every prefix of it whose length is
    /// near a multiple of the batch's inner block sizes (4 and 64 addresses, 128-address groups).
    fn batch_agrees<A: Address>(t: &Poptrie<A>, probes: &[A]) {
        let mut sizes: Vec<usize> = (0..=9).collect();
        for m in [4, 64, 128, 192, 256, 320] {
            sizes.extend([m - 3, m - 1, m, m + 1, m + 3]);
        }
        sizes.push(probes.len());
        for n in sizes.into_iter().filter(|&n| n <= probes.len()) {
            let mut out = vec![7i64; n];
            t.lookup_many(&probes[..n], &mut out);
            for (k, (&a, &o)) in probes[..n].iter().zip(&out).enumerate() {
                assert_eq!(o, t.lookup(a).map_or(-1, i64::from), "n {n}, row {k}");
            }
        }
    }

    #[test]
    fn batch_lane_mixes() {
        // Subtree lanes none, few, half and all of a group; values at the top of the range
        // (encoded plus one in direct slots), "no route" inside subtrees, every depth.
        let mut rng = Rng::new(23);
        let addr = |r: &mut Rng| ((r.below(2) as u32) << 30) | (r.next_u64() as u32 >> 12);
        let mut rib = Rib::new();
        for i in 0..2000u32 {
            let p = Prefix::new(addr(&mut rng), 12 + rng.below(21) as u8, false).unwrap();
            let v = if i % 3 == 0 { MAX_VALUE - i } else { i % 40 };
            rib.insert(p, v);
        }
        rib.insert(Prefix::new(0x8000_0000, 1, false).unwrap(), MAX_VALUE);
        let t = Poptrie::build(&rib);
        let deep: Vec<u32> = rib
            .iter()
            .filter(|(p, _)| p.len() > 18)
            .map(|(p, _)| {
                p.addr()
                    | (rng.next_u64() as u32
                        & !u32::MAX.checked_shl(32 - u32::from(p.len())).unwrap_or(0))
            })
            .collect();
        let shallow: Vec<u32> = (0..600)
            .map(|_| rng.next_u64() as u32 | 0x8000_0000)
            .collect();
        let mixed: Vec<u32> = (0..1500)
            .map(|k| match k % 7 {
                0..=2 => deep[rng.below(deep.len() as u64) as usize],
                3 => shallow[k % shallow.len()],
                _ => addr(&mut rng),
            })
            .collect();
        let mut rare = shallow.clone();
        for k in (0..rare.len()).step_by(61) {
            rare[k] = deep[k % deep.len()];
        }
        for probes in [&deep, &shallow, &mixed, &rare] {
            batch_agrees(&t, probes);
        }
    }

    #[test]
    fn batch_ipv6() {
        let mut rng = Rng::new(24);
        let addr = |r: &mut Rng| {
            (0x2001u128 << 112) | (u128::from(r.below(4)) << 100) | (u128::from(r.next_u64()) << 36)
        };
        let rib = random_table(&mut rng, 1500, &addr, &|r: &mut Rng| {
            16 + r.below(113) as u8
        });
        let t = Poptrie::build(&rib);
        let mut probes: Vec<u128> = rib.iter().map(|(p, _)| p.last()).collect();
        probes.extend((0..1000).map(|_| addr(&mut rng)));
        probes.extend((0..300).map(|_| u128::from(rng.next_u64()) << 64));
        batch_agrees(&t, &probes);
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
