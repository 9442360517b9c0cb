//! Tuple-space classification with merged tuples (TupleMerge: Daly, Liu and Torng, IEEE/ACM
//! ToN 2019), for one address family.
//!
//! Every rule entry lives in one *table*. A table has a tuple of field widths (source and
//! destination prefix lengths, source and destination port prefix lengths, whether the
//! protocol is exact) no longer than those of any entry in it; it hashes each entry on its
//! fields cut to those widths, so one probe finds the only bucket that can hold entries
//! matching a packet. The entries of a bucket are chained best-ranked first and each is
//! verified in full, so a table's tuple may be coarser than its rules' (that is the merge:
//! similar rules share a table, and a packet probes far fewer tables than with one table per
//! exact tuple).
//!
//! - A prefilter reads a few header bits (address cells at three depths, the protocol, the
//!   exact ports folded to 8 bits) and names the candidate tables: those holding an entry
//!   that agrees with the packet there. Fields that hardly narrow the candidates for a rule
//!   set are dropped at each reindex.
//! - Lookup visits candidates best-first by the best rank each holds and stops as soon as one
//!   cannot beat the match already found; inside a bucket it stops at the first entry that
//!   matches or cannot win.
//! - A bucket holds at most [`Config::limit`] entries where it can: an entry that would
//!   overfill one goes to another compatible table, or to a new table with its rule's own
//!   (finer) tuple. Only entries whose own tuple cannot tell them apart share a longer chain.
//! - Insert and remove touch one table and one bucket: O(1) expected, plus a look at each
//!   table's bucket for the new rule when choosing where it goes, and a pass over one table's
//!   slots when its best-ranked entry leaves. Table indices are kept in best-rank order
//!   by an O(entries) reindex that runs after a bulk build and, amortised, after updates that
//!   broke the order (lookups stay correct meanwhile, only slower).
//! - Buckets are Robin Hood open-addressed slots (a hash tag and the last entry of a circular
//!   chain, 8 bytes) in an array whose home slots are at most three quarters full, with a few
//!   spill slots after them so that runs never wrap; entries live in one array with a free
//!   list, so no allocation per rule or per bucket. A reindex renumbers the entries so that
//!   each chain is contiguous in the order a lookup walks it.
//!
//! Invariants: every table's `best` (and `bests[t]`) is the minimum rank of its entries, and no
//! rank is `u64::MAX`; `inversions` counts the neighbouring live tables whose bests decrease
//! with the index (none: lookups may stop early);
//! chains are sorted by rank; each slot's chain holds exactly the entries whose fields, cut to
//! the table's tuple, equal the slot's key; the prefilter has a bit for every (entry's cell,
//! table) pair and may have more, and with one-word bitmaps its fused rows are `pass1 | bitmap`
//! of each direct field; no bucket and no cell-map key sits in the last `GROUP_SLOTS - 1` slots
//! of its array.

// The per-packet path (prefilter, candidate walk, table probe) is forced into one loop body:
// each piece runs several times per packet and is small next to a call.
#![allow(clippy::inline_always)]

use super::{Key, Rule};
use crate::route::{Address, Prefix};
use std::collections::HashMap;

/// An address width the tuple space can hash.
pub trait Word: Address {
    /// Mix the address into 64 bits.
    fn fold(self) -> u64;
    /// The top `bits` bits (1..=31).
    fn top(self, bits: u8) -> u32;
    /// The top 64 bits (the address in the high half for IPv4), from which the prefilter cuts
    /// its cells by one shift.
    fn hi64(self) -> u64;
    /// The mask of a prefix of `len` bits (`len` at most the width: stored prefixes), without
    /// a branch where the width allows.
    fn prefix_mask(len: u8) -> Self;
}

impl Word for u32 {
    #[inline]
    fn fold(self) -> u64 {
        u64::from(self)
    }
    #[inline]
    fn top(self, bits: u8) -> u32 {
        self >> (32 - u32::from(bits))
    }
    #[inline]
    fn hi64(self) -> u64 {
        u64::from(self) << 32
    }
    #[inline]
    fn prefix_mask(len: u8) -> u32 {
        // The low 32 - len bits, shifted in 64 bits so that length 0 needs no branch.
        !((u64::from(u32::MAX) >> u32::from(len)) as u32)
    }
}

impl Word for u128 {
    #[inline]
    fn fold(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).rotate_left(29)
    }
    #[inline]
    fn top(self, bits: u8) -> u32 {
        ((self >> 64) as u64 >> (64 - u32::from(bits))) as u32
    }
    #[inline]
    fn hi64(self) -> u64 {
        (self >> 64) as u64
    }
    #[inline]
    fn prefix_mask(len: u8) -> u128 {
        u128::mask(len)
    }
}

const NIL: u32 = u32::MAX;

/// Keys per chunk of [`TupleMerge::classify_batch`] (at most 32: a chunk's repeats are a
/// `u32` bit set).
const BATCH_CHUNK: usize = 16;

/// Tuning of the tuple space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Prefix lengths of a new table are rounded down to a multiple of this (1 = exact).
    pub quantum: u8,
    /// Entries per bucket before a rule looks for another table.
    pub limit: u16,
    /// Longest prefix length a new table's tuple keeps.
    pub cap: u8,
}

impl Config {
    /// The defaults for an address width, chosen on the ClassBench sets: IPv4 tables keep at
    /// most 24 prefix bits in multiples of 8 (so /25../32 rules share /24-keyed buckets), 16
    /// entries a bucket; IPv6 keeps up to /64 in multiples of 16.
    pub fn for_width(bits: u8) -> Config {
        if bits <= 32 {
            Config {
                quantum: 8,
                limit: 16,
                cap: 24,
            }
        } else {
            Config {
                quantum: 16,
                limit: 16,
                cap: 64,
            }
        }
    }
}

/// Field widths of a table or rule: (source prefix, destination prefix, source port prefix,
/// destination port prefix, protocol bits (0 or 8)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tuple {
    s: u8,
    d: u8,
    sp: u8,
    dp: u8,
    p: u8,
}

impl Tuple {
    fn of<A: Address>(r: &Rule<A>) -> Tuple {
        let port = |(lo, hi): (u16, u16)| (lo ^ hi).leading_zeros() as u8;
        Tuple {
            s: r.src.len(),
            d: r.dst.len(),
            sp: port(r.sport),
            dp: port(r.dport),
            p: if r.proto_mask == 0xff { 8 } else { 0 },
        }
    }

    /// Whether a rule of tuple `r` can sit in a table of tuple `self`.
    fn fits(self, r: Tuple) -> bool {
        self.s <= r.s && self.d <= r.d && self.sp <= r.sp && self.dp <= r.dp && self.p <= r.p
    }

    /// The coarser tuple a new table takes for a rule of tuple `self`: prefixes rounded down to
    /// the quantum, ports kept only when exact.
    fn relaxed(self, quantum: u8, cap: u8) -> Tuple {
        let q = quantum.max(1);
        let exact = |w: u8| if w == 16 { 16 } else { 0 };
        Tuple {
            s: (self.s - self.s % q).min(cap),
            d: (self.d - self.d % q).min(cap),
            sp: exact(self.sp),
            dp: exact(self.dp),
            p: self.p,
        }
    }

    fn bits(self) -> u32 {
        u32::from(self.s)
            + u32::from(self.d)
            + u32::from(self.sp)
            + u32::from(self.dp)
            + u32::from(self.p)
    }
}

/// A rule as the lookup reads it (the hot part of an entry).
///
/// Packed to 4-byte alignment so that the rank is one 64-bit load and an IPv4 entry still
/// takes 36 bytes (fields are only ever copied out, never borrowed).
#[derive(Debug, Clone, Copy)]
#[repr(C, packed(4))]
struct Entry<A: Address> {
    src: A,
    dst: A,
    /// `priority << 32 | seq` (see [`rank`]).
    rank: u64,
    sport: (u16, u16),
    dport: (u16, u16),
    slen: u8,
    dlen: u8,
    proto_value: u8,
    proto_mask: u8,
    id: u32,
    /// Next entry of the bucket's chain (worse rank). Chains are circular: the last entry's
    /// `next` is the first, so a slot that names the last reaches both ends in one step.
    next: u32,
}

impl<A: Word> Entry<A> {
    #[inline]
    fn rank(&self) -> u64 {
        self.rank
    }

    /// The packet at the entry's lowest corner (it matches the entry).
    fn corner(&self) -> Key<A> {
        Key {
            src: self.src,
            dst: self.dst,
            sport: self.sport.0,
            dport: self.dport.0,
            proto: self.proto_value,
        }
    }

    #[inline]
    fn matches(&self, k: &Key<A>) -> bool {
        k.src.and(A::prefix_mask(self.slen)) == { self.src }
            && k.dst.and(A::prefix_mask(self.dlen)) == { self.dst }
            && k.sport.wrapping_sub(self.sport.0) <= self.sport.1 - self.sport.0
            && k.dport.wrapping_sub(self.dport.0) <= self.dport.1 - self.dport.0
            && k.proto & self.proto_mask == self.proto_value
    }
}

/// Where an entry lives and which other entries share its rule id (the cold part).
#[derive(Debug, Clone, Copy)]
struct Home {
    table: u32,
    /// Next entry with the same rule id, or `NIL`.
    sibling: u32,
}

/// One bucket slot: the chain's last entry (whose `next` is the first), and `meta`: 24 bits of
/// the key's hash (the tag, which also picks the home slot) over 8 bits holding the slot's
/// distance from that home plus one, saturated at 255 (0: an empty slot). A lookup at
/// distance `d` compares both in one go (a bucket of its key sits exactly `d` past the home
/// they share) and stops at an occupant with a smaller distance (Robin Hood order), without
/// reading entries for most mismatches. Naming the last entry makes the usual insert (a rule
/// ranked below those already there) and the removal of the best entry O(1) however long the
/// chain; most chains hold one entry, which is both ends.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Slot {
    meta: u32,
    tail: u32,
}

const EMPTY: Slot = Slot { meta: 0, tail: NIL };
/// Slots a probe judges at once.
const GROUP_SLOTS: usize = 4;

/// The tag bits kept: all 24, except under test, where three are kept so that tags collide,
/// runs grow long and distances saturate.
#[cfg(not(test))]
const TAG_MASK: u32 = 0xff_ffff;
#[cfg(test)]
const TAG_MASK: u32 = 0xe0_0000;

impl Slot {
    #[inline]
    fn tag(self) -> u32 {
        self.meta >> 8
    }

    /// A slot of `tag` at distance `d` from its home.
    #[inline]
    fn new(tag: u32, d: usize, tail: u32) -> Slot {
        Slot {
            meta: tag << 8 | (d + 1).min(255) as u32,
            tail,
        }
    }
}

/// For [`GROUP_SLOTS`] slots from distance `want & 0xff` on: bit `j` of the first word is set
/// when slot `j` is a bucket of `want`'s tag at its distance (`meta == want + j`), of the second
/// when it ends a search (its distance is below `want`'s + j: empty, or nearer its home).
#[inline(always)]
fn scan(g: &[Slot], want: u32) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `g` holds four 8-byte slots (the caller sliced exactly GROUP_SLOTS), read as two
    // unaligned 16-byte loads; SSE2 is part of x86-64.
    unsafe {
        use core::arch::x86_64::{
            _mm_add_epi32, _mm_and_si128, _mm_castps_si128, _mm_castsi128_ps, _mm_cmpeq_epi32,
            _mm_cmplt_epi32, _mm_loadu_si128, _mm_movemask_ps, _mm_set1_epi32, _mm_set_epi32,
            _mm_shuffle_ps,
        };
        debug_assert_eq!(g.len(), 4);
        #[allow(clippy::cast_ptr_alignment)] // read with unaligned loads
        let p = g.as_ptr().cast::<core::arch::x86_64::__m128i>();
        let (a, b) = (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)));
        // The four metas, from (meta, tail) pairs.
        let m = _mm_castps_si128(_mm_shuffle_ps::<0b10_00_10_00>(
            _mm_castsi128_ps(a),
            _mm_castsi128_ps(b),
        ));
        #[allow(clippy::cast_possible_wrap)] // bit patterns, compared for equality
        let w = _mm_add_epi32(_mm_set1_epi32(want as i32), _mm_set_epi32(3, 2, 1, 0));
        let hit = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(m, w)));
        let ff = _mm_set1_epi32(0xff);
        let stop = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmplt_epi32(
            _mm_and_si128(m, ff),
            _mm_and_si128(w, ff),
        )));
        #[allow(clippy::cast_sign_loss)] // four mask bits
        (hit as u32, stop as u32)
    }
    #[cfg(not(target_arch = "x86_64"))]
    scan_scalar(g, want)
}

/// [`scan`] one slot at a time (the portable form, and the tests' reference).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn scan_scalar(g: &[Slot], want: u32) -> (u32, u32) {
    let mut hit = 0u32;
    let mut stop = 0u32;
    for (j, s) in g.iter().enumerate() {
        let w = want + j as u32;
        hit |= u32::from(s.meta == w) << j;
        stop |= u32::from(s.meta & 0xff < w & 0xff) << j;
    }
    (hit, stop)
}

/// For four keys of a cell map: bit `j` of the first word is set when key `j` is `want`, of the
/// second when it is empty (0).
#[inline(always)]
fn scan_keys(g: &[u32], want: u32) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `g` holds four u32 keys (the caller sliced exactly GROUP_SLOTS), read as one
    // unaligned 16-byte load; SSE2 is part of x86-64.
    unsafe {
        use core::arch::x86_64::{
            _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps, _mm_set1_epi32,
            _mm_setzero_si128,
        };
        debug_assert_eq!(g.len(), 4);
        let k = _mm_loadu_si128(g.as_ptr().cast());
        #[allow(clippy::cast_possible_wrap)] // bit patterns, compared for equality
        let hit = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(
            k,
            _mm_set1_epi32(want as i32),
        )));
        let empty = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_setzero_si128())));
        #[allow(clippy::cast_sign_loss)] // four mask bits
        (hit as u32, empty as u32)
    }
    #[cfg(not(target_arch = "x86_64"))]
    scan_keys_scalar(g, want)
}

/// [`scan_keys`] one key at a time (the portable form, and the tests' reference).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn scan_keys_scalar(g: &[u32], want: u32) -> (u32, u32) {
    let mut hit = 0u32;
    let mut empty = 0u32;
    for (j, &k) in g.iter().enumerate() {
        hit |= u32::from(k == want) << j;
        empty |= u32::from(k == 0) << j;
    }
    (hit, empty)
}

/// Whether two keys are equal, with one branch for the caller (a flow's packets arrive in
/// runs of irregular length, so each field's own branch would be mispredicted).
#[inline(always)]
fn same<A: Word>(a: &Key<A>, b: &Key<A>) -> bool {
    (a.src == b.src)
        & (a.dst == b.dst)
        & (a.sport == b.sport)
        & (a.dport == b.dport)
        & (a.proto == b.proto)
}

/// The entries of the chain ending at `tail`, best first.
fn chain<A: Address>(tail: u32, entries: &[Entry<A>]) -> impl Iterator<Item = u32> + '_ {
    let mut at = Some(entries[tail as usize].next);
    std::iter::from_fn(move || {
        let e = at?;
        at = (e != tail).then(|| entries[e as usize].next);
        Some(e)
    })
}

#[derive(Debug, Clone)]
struct Table<A: Address> {
    tuple: Tuple,
    smask: A,
    dmask: A,
    /// The ports and protocol bits of the tuple, in [`l4`] form.
    l4mask: u64,
    /// Minimum rank of the entries.
    best: u64,
    entries: u32,
    /// Occupied slots.
    used: u32,
    /// Home slots: any number (not a power of two: a hash picks its home by multiply-high).
    homes: usize,
    /// The `homes` home slots, then at least [`SLOT_SPILL`] more. Runs go forward and never
    /// wrap; a bucket sits at most `slots.len() - GROUP_SLOTS` (a run that would go further
    /// doubles the slots past the homes), so the last slots are always empty and every group a
    /// probe reads fits in the array.
    slots: Vec<Slot>,
}

/// Slots of a new table past its last home slot. A run that would pass the end adds homes,
/// which spreads the buckets out, up to [`ROOMY`] homes a bucket; past that it doubles the
/// slots after the homes instead. Buckets whose tags crowd the top of the tag range (which a
/// rule set can be made to do) land on the last home at any size and would call for ever more
/// homes, while a run is never longer than the buckets, which bounds the slots past the homes.
const SLOT_SPILL: usize = 8;

/// Home slots a bucket (or cell map key) beyond which a run too long for the end of the array
/// gets more room past the homes rather than more homes.
const ROOMY: usize = 4;

/// More room in a table or cell map of `keys` buckets or keys where a run would pass the end:
/// half as many homes again while there are fewer than [`ROOMY`] a key, else twice the slots
/// past them (see [`SLOT_SPILL`]).
fn more_room(homes: &mut usize, spill: &mut usize, keys: usize) {
    if *homes < ROOMY * keys {
        *homes = *homes * 3 / 2 + 1;
    } else {
        *spill *= 2;
    }
}

/// A table's cut of a packet or rule: what its buckets are keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut<A> {
    src: A,
    dst: A,
    /// Ports and protocol packed by [`l4`].
    l4: u64,
}

/// Source port, destination port and protocol in one word, so a table cuts them with one AND.
#[inline]
fn l4(sport: u16, dport: u16, proto: u8) -> u64 {
    u64::from(sport) << 24 | u64::from(dport) << 8 | u64::from(proto)
}

impl<A: Word> Table<A> {
    fn new(tuple: Tuple) -> Table<A> {
        let pm = |w: u8| if w == 0 { 0 } else { u16::MAX << (16 - w) };
        Table {
            tuple,
            smask: A::mask(tuple.s),
            dmask: A::mask(tuple.d),
            l4mask: l4(
                pm(tuple.sp),
                pm(tuple.dp),
                if tuple.p == 8 { 0xff } else { 0 },
            ),
            best: u64::MAX,
            entries: 0,
            used: 0,
            homes: 4,
            slots: vec![EMPTY; 4 + SLOT_SPILL],
        }
    }

    #[inline]
    fn cut_key(&self, k: &Key<A>, kl4: u64) -> Cut<A> {
        Cut {
            src: k.src.and(self.smask),
            dst: k.dst.and(self.dmask),
            l4: kl4 & self.l4mask,
        }
    }

    #[inline]
    fn cut_entry(&self, e: &Entry<A>) -> Cut<A> {
        Cut {
            src: e.src.and(self.smask),
            dst: e.dst.and(self.dmask),
            l4: l4(e.sport.0, e.dport.0, e.proto_value) & self.l4mask,
        }
    }

    #[inline]
    fn hash(c: &Cut<A>) -> u64 {
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let a = c.src.fold().wrapping_mul(K1) ^ c.dst.fold().rotate_left(32) ^ c.l4;
        a.wrapping_mul(K2)
    }

    /// A slot's tag: the hash's top 24 bits, which also pick its home slot.
    #[inline]
    fn tag(h: u64) -> u32 {
        (h >> 40) as u32 & TAG_MASK
    }

    /// The number of home slots.
    #[inline]
    fn homes(&self) -> usize {
        self.homes
    }

    /// The home slot of a tag.
    #[inline]
    fn start(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.homes() as u64) >> 24) as usize
    }

    /// How far slot `i`'s occupant sits past its home.
    #[inline]
    fn displacement(&self, i: usize, s: Slot) -> usize {
        i - self.start(s.tag())
    }

    /// Place a new bucket (Robin Hood: an occupant nearer its home than the newcomer gives
    /// up its slot), so that a lookup for an absent key stops at the first occupant nearer
    /// its home than the lookup has come. When the run would pass the last slot a bucket may
    /// take, the bucket left over is returned (the others are in place) for [`grow`](Self::grow).
    #[must_use]
    fn place(&mut self, mut tag: u32, mut tail: u32) -> Option<(u32, u32)> {
        let mut i = self.start(tag);
        let mut d = 0;
        while i + GROUP_SLOTS <= self.slots.len() {
            let here = self.slots[i];
            if here.tail == NIL {
                self.slots[i] = Slot::new(tag, d, tail);
                return None;
            }
            let hd = self.displacement(i, here);
            if hd < d {
                self.slots[i] = Slot::new(tag, d, tail);
                (tag, tail) = (here.tag(), here.tail);
                d = hd;
            }
            i += 1;
            d += 1;
        }
        Some((tag, tail))
    }

    /// The slot index holding the bucket for `cut`, or the empty slot where it would go.
    fn find(&self, cut: &Cut<A>, h: u64, entries: &[Entry<A>]) -> Option<usize> {
        let tag = Self::tag(h);
        let mut i = self.start(tag);
        let mut d = 0;
        loop {
            let s = self.slots[i];
            if s.tail == NIL || self.displacement(i, s) < d {
                return None;
            }
            if s.tag() == tag && self.cut_entry(&entries[s.tail as usize]) == *cut {
                return Some(i);
            }
            i += 1;
            d += 1;
        }
    }

    /// Number of entries in the bucket of `cut`, counted up to `cap`.
    fn bucket_len(&self, cut: &Cut<A>, entries: &[Entry<A>], cap: usize) -> usize {
        self.find(cut, Self::hash(cut), entries)
            .map_or(0, |i| chain(self.slots[i].tail, entries).take(cap).count())
    }

    /// Move every bucket to a table with half as many home slots again (`extra` is `None`: the
    /// load asks for them), or, with `extra` a bucket left over by [`place`](Self::place) (a
    /// run would have passed the end), to one with more room: more homes, or twice the slots
    /// past them once the homes are [`ROOMY`] times the buckets (see [`SLOT_SPILL`]); more
    /// room again while a run would still pass the end.
    fn grow(&mut self, extra: Option<(u32, u32)>) {
        let buckets: Vec<(u32, u32)> = self
            .slots
            .iter()
            .filter(|s| s.tail != NIL)
            .map(|s| (s.tag(), s.tail))
            .chain(extra)
            .collect();
        let mut spill = self.slots.len() - self.homes;
        if extra.is_none() {
            self.homes = self.homes * 3 / 2 + 1;
        } else {
            more_room(&mut self.homes, &mut spill, buckets.len());
        }
        'fresh: loop {
            self.slots = vec![EMPTY; self.homes + spill];
            for &(tag, tail) in &buckets {
                if self.place(tag, tail).is_some() {
                    more_room(&mut self.homes, &mut spill, buckets.len());
                    continue 'fresh;
                }
            }
            return;
        }
    }

    /// Empty slot `i`, shifting the rest of its run back one place (no tombstones; a run
    /// ends before the last slot, which is always empty).
    fn vacate(&mut self, mut i: usize) {
        let mut j = i + 1;
        loop {
            let s = self.slots[j];
            if s.tail == NIL {
                break;
            }
            let d = self.displacement(j, s);
            if d == 0 {
                break;
            }
            self.slots[i] = Slot::new(s.tag(), d - 1, s.tail);
            i = j;
            j += 1;
        }
        self.slots[i] = EMPTY;
        self.used -= 1;
    }

    /// The best rank in this table, from the chain heads.
    fn recompute_best(&mut self, entries: &[Entry<A>]) {
        self.best = self
            .slots
            .iter()
            .filter(|s| s.tail != NIL)
            .map(|s| entries[entries[s.tail as usize].next as usize].rank())
            .min()
            .unwrap_or(u64::MAX);
    }

    /// The best `(rank, id)` in this table matching `k` that beats `best`.
    ///
    /// A slot whose tag and distance match is walked without checking its key: an entry that
    /// matches `k` has `k`'s cut, so it is in `k`'s bucket whatever slot led to it, and a walk
    /// that finds nothing (in `k`'s bucket or in another of the same tag) goes on to the next
    /// slot.
    #[inline(always)]
    fn probe(&self, k: &Key<A>, kl4: u64, best: u64, entries: &[Entry<A>]) -> Option<(u64, u32)> {
        let tag = Self::tag(Self::hash(&self.cut_key(k, kl4)));
        let mut i = self.start(tag);
        let mut want = tag << 8 | 1;
        loop {
            // Four slots at a time without a branch per slot: which of them is a bucket of the
            // tag at its distance, and which ends the search (an occupant nearer its home, or
            // an empty slot). Only the first such event counts. Every group that can hold a
            // bucket fits in the array (the last slots are empty and end the search first);
            // near saturated distances, one slot at a time below.
            if let Some(g) = self
                .slots
                .get(i..i + GROUP_SLOTS)
                .filter(|_| want & 0xff < 0xff - GROUP_SLOTS as u32)
            {
                let (hit, stop) = scan(g, want);
                let any = hit | stop;
                // Past slot `j` of the group (the whole group when nothing happened in it).
                let j = if any == 0 {
                    GROUP_SLOTS - 1
                } else {
                    let j = any.trailing_zeros() as usize;
                    if hit & (1 << j) == 0 {
                        return None;
                    }
                    if let Some(found) = walk(g[j].tail, k, best, entries) {
                        return Some(found);
                    }
                    j
                };
                i += j + 1;
                want += j as u32 + 1;
                continue;
            }
            let s = self.slots[i];
            if s.meta == want {
                if let Some(found) = walk(s.tail, k, best, entries) {
                    return Some(found);
                }
            } else if s.meta & 0xff < want & 0xff {
                // Robin Hood order: past an occupant nearer its home, the key is absent.
                return None;
            }
            i += 1;
            if want & 0xff == 0xff {
                return self.probe_far(i, tag, k, best, entries);
            }
            want += 1;
        }
    }

    /// The rest of [`probe`](Self::probe) past distance 254, where distances saturate: every
    /// slot of the tag up to the end of the run.
    #[cold]
    fn probe_far(
        &self,
        mut i: usize,
        tag: u32,
        k: &Key<A>,
        best: u64,
        entries: &[Entry<A>],
    ) -> Option<(u64, u32)> {
        loop {
            let s = self.slots[i];
            if s.tail == NIL {
                return None;
            }
            if s.tag() == tag {
                if let Some(found) = walk(s.tail, k, best, entries) {
                    return Some(found);
                }
            }
            i += 1;
        }
    }
}

/// The first entry of the chain ending at `tail` that matches `k`, as `(rank, id)`, if it
/// ranks better than `best`.
#[inline(always)]
fn walk<A: Word>(tail: u32, k: &Key<A>, best: u64, entries: &[Entry<A>]) -> Option<(u64, u32)> {
    let mut at = entries[tail as usize].next;
    loop {
        let e = &entries[at as usize];
        if e.rank() >= best {
            return None;
        }
        if e.matches(k) {
            return Some((e.rank(), e.id));
        }
        if at == tail {
            return None;
        }
        at = e.next;
    }
}

/// Cell maps: cell keys to a bitmap of tables; an array indexed by the cell for cells of at
/// most 8 bits, otherwise open-addressed.
///
/// An open-addressed map probes linearly from a key's home slot and never wraps: past the
/// `homes` home slots lie at least [`SPILL`] more, and a key sits at most `keys.len() -
/// GROUP_SLOTS`, so every group of [`GROUP_SLOTS`] keys a lookup reads before it finds its key
/// lies inside the array (a key that would go further doubles the slots past the homes
/// instead, as for tables: see [`SLOT_SPILL`]). Keys are never removed, so the slots from a
/// key's home to the key are all occupied.
#[derive(Debug, Clone, Default)]
struct CellMap {
    direct: bool,
    /// Cells of a direct map; its bitmaps are allocated by the first [`CellMap::set`] (an
    /// empty direct map reads as all zero), so that maps of fields no entry uses, and those of
    /// an empty family, cost nothing.
    cells: usize,
    /// Home slots of an open-addressed map (0 while it is empty: every lookup starts at slot 0
    /// and finds no group there).
    homes: usize,
    /// `cell + 1` (cells have at most 31 bits), 0 = empty.
    keys: Vec<u32>,
    /// `words` bitmap words per slot.
    bits: Vec<u64>,
    used: usize,
}

/// Slots of a new open-addressed cell map past its last home slot.
const SPILL: usize = 16;
/// The multiplier that spreads cells over a map's home slots (Fibonacci hashing).
const CELL_HASH: u64 = 0x9e37_79b9_7f4a_7c15;

impl CellMap {
    fn new(cell_bits: u8) -> CellMap {
        if cell_bits <= 8 {
            CellMap {
                direct: true,
                cells: 1 << cell_bits,
                ..CellMap::default()
            }
        } else {
            CellMap::default()
        }
    }

    /// The home slot of `cell`.
    #[inline]
    fn slot(&self, cell: u32) -> usize {
        let h = u64::from(cell).wrapping_mul(CELL_HASH) >> 32;
        ((h * self.homes as u64) >> 32) as usize
    }

    /// The slot holding `want` (a key, `cell + 1`), or the empty one where it would go, from
    /// its home on; `None` when that would be past the last slot a key may take.
    fn find_slot(&self, want: u32) -> Option<usize> {
        let mut i = self.slot(want - 1);
        while i + GROUP_SLOTS <= self.keys.len() {
            let k = self.keys[i];
            if k == want || k == 0 {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The bitmap of `cell`, if any table has an entry there.
    #[inline]
    fn get(&self, cell: u32, words: usize) -> Option<&[u64]> {
        if self.direct {
            let at = cell as usize * words;
            return self.bits.get(at..at + words);
        }
        let i = self.find_slot(cell + 1)?;
        if self.keys[i] == 0 {
            return None;
        }
        self.bits.get(i * words..(i + 1) * words)
    }

    /// The one-word bitmap of `cell` (zero if no table has an entry there), for a direct map
    /// of one word per cell.
    #[inline(always)]
    fn get1_direct(&self, cell: u32) -> u64 {
        debug_assert!(self.direct);
        self.bits.get(cell as usize).copied().unwrap_or(0)
    }

    /// [`get1_direct`](Self::get1_direct) for a hashed map.
    #[inline(always)]
    fn get1_hashed(&self, cell: u32) -> u64 {
        debug_assert!(!self.direct);
        let want = cell + 1;
        let mut i = self.slot(cell);
        // Four keys at a time, as in `Table::probe`. A group that does not fit in the array
        // is past every key (see the type's invariant), and an empty map has none.
        while let Some(g) = self.keys.get(i..i + GROUP_SLOTS) {
            let (hit, empty) = scan_keys(g, want);
            let any = hit | empty;
            if any != 0 {
                // Whether the first event is the key or an empty slot is as good as random
                // for a packet: select the bitmap or zero without a branch.
                let j = any.trailing_zeros() as usize;
                let keep = 0u64.wrapping_sub(u64::from(hit >> j & 1));
                return self.bits.get(i + j).map_or(0, |b| b & keep);
            }
            i += GROUP_SLOTS;
        }
        0
    }

    fn set(&mut self, cell: u32, table: u32, words: usize) {
        if self.direct {
            if self.bits.is_empty() {
                self.bits = vec![0; self.cells * words];
            }
            self.used += 1;
            self.bits[cell as usize * words + table as usize / 64] |= 1 << (table % 64);
            return;
        }
        let want = cell + 1;
        let spill = self.keys.len() - self.homes;
        if (self.used + 1) * 4 > self.homes * 3 {
            self.rehash((self.homes * 3 / 2).max(16), spill.max(SPILL), words);
        }
        let i = loop {
            if let Some(i) = self.find_slot(want) {
                break i;
            }
            // The run would pass the last slot.
            let (mut homes, mut spill) = (self.homes, self.keys.len() - self.homes);
            more_room(&mut homes, &mut spill, self.used + 1);
            self.rehash(homes, spill, words);
        };
        if self.keys[i] == 0 {
            self.keys[i] = want;
            self.used += 1;
        }
        self.bits[i * words + table as usize / 64] |= 1 << (table % 64);
    }

    /// Move every key to a map of `homes` home slots and `spill` slots past them, with
    /// [`more_room`] while a run would pass the last slot.
    fn rehash(&mut self, homes: usize, mut spill: usize, words: usize) {
        let old_keys = std::mem::take(&mut self.keys);
        let old_bits = std::mem::take(&mut self.bits);
        self.homes = homes;
        'fresh: loop {
            self.keys = vec![0; self.homes + spill];
            self.bits = vec![0; (self.homes + spill) * words];
            for (i, &k) in old_keys.iter().enumerate().filter(|(_, &k)| k != 0) {
                let Some(j) = self.find_slot(k) else {
                    more_room(&mut self.homes, &mut spill, self.used + 1);
                    continue 'fresh;
                };
                self.keys[j] = k;
                self.bits[j * words..(j + 1) * words]
                    .copy_from_slice(&old_bits[i * words..(i + 1) * words]);
            }
            return;
        }
    }

    fn memory(&self) -> usize {
        self.keys.capacity() * 4 + self.bits.capacity() * 8
    }
}

/// Estimated instructions of a prefilter lookup in a direct map, of one in a hashed map, and
/// of a table probe with its share of the candidate walk, for [`Prefilter::prune`]; measured
/// with cachegrind on the ClassBench sets.
const COST_DIRECT: u64 = 12;
const COST_HASHED: u64 = 40;
const COST_PROBE: u64 = 80;

/// Depths of the address cuts.
const DEPTHS: usize = 3;
/// Prefilter fields: source cuts (shallow to deep), destination cuts, the protocol, and the
/// source and destination ports (folded to 8 bits by [`port_cell`]; tables with exact ports).
const PROTO: usize = 2 * DEPTHS;
const SPORT: usize = 2 * DEPTHS + 1;
const DPORT: usize = 2 * DEPTHS + 2;
const FIELDS: usize = 2 * DEPTHS + 3;
/// Room for the per-field arrays read by a field number masked to four bits (no bounds check).
const FIELD_SLOTS: usize = 16;
/// Lookup order: the most telling fields first, so that an empty candidate set stops early.
const LOOKUP_ORDER: [usize; FIELDS] = [
    DEPTHS - 1,
    2 * DEPTHS - 1,
    DEPTHS - 2,
    2 * DEPTHS - 2,
    0,
    DEPTHS,
    DPORT,
    SPORT,
    PROTO,
];

/// The fields whose cells are the top byte of a header part (for IPv4 the shallowest address
/// cuts; for both families the protocol and the port cells), in the order of
/// [`Prefilter::fused`]'s rows.
const FUSED_FIELDS: [usize; 5] = [0, DEPTHS, PROTO, SPORT, DPORT];

/// The cell of an exact port: its 16 bits mixed down to 8 (Fibonacci hashing), so that the
/// few exact ports of a rule set spread over a 256-cell direct map.
#[inline(always)]
fn port_cell(p: u16) -> u32 {
    u32::from(p).wrapping_mul(0x9e37_79b1) >> 24
}

/// A packet's header parts as the prefilter steps cut them: each step's cell is the top bits
/// of one part (source, destination, protocol, source and destination port cells) by a
/// shift. Eight, so that a part number masked to three bits needs no bounds check.
#[inline(always)]
fn step_parts<A: Word>(k: &Key<A>) -> [u64; 8] {
    [
        k.src.hi64(),
        k.dst.hi64(),
        u64::from(k.proto) << 56,
        u64::from(port_cell(k.sport)) << 56,
        u64::from(port_cell(k.dport)) << 56,
        0,
        0,
        0,
    ]
}

/// Which tables can hold an entry matching a packet, read from a few header bits before any
/// table is probed. Each field is a cut of the header: the top bits of the source or the
/// destination at three depths, the protocol, and each port mixed down to 8 bits. A table
/// whose tuple fixes all the bits of a field (for a port: an exact port) is *filtered* on it:
/// a bitmap per cell of the field lists the tables with an entry in the cell. A packet's
/// candidates are the tables that every field lets through.
///
/// Bits are set on insert and left on removal (a stale bit costs one needless probe, never a
/// wrong answer); the owner refills the filter when removals pile up and when a new table's
/// index outgrows the bitmap width.
#[derive(Debug, Clone, Default)]
struct Prefilter {
    words: usize,
    /// Cut depths in bits, shallow to deep, for both addresses.
    cuts: [u8; DEPTHS],
    /// One per field, and spares up to [`FIELD_SLOTS`] so that a field number masked to four
    /// bits indexes the maps without a bounds check.
    maps: [CellMap; FIELD_SLOTS],
    /// Per field: tables not filtered on it.
    pass: [Vec<u64>; FIELDS],
    /// The first word of each `pass`, inline for the one-word lookup.
    pass1: [u64; FIELD_SLOTS],
    /// Per field: how many table indices were filtered on it since the last refill (a field
    /// that filters no table is not looked up).
    filtered: [usize; FIELDS],
    /// Fields in use, as a bit set (see [`Prefilter::prune`]).
    enabled: u32,
    /// The lookups a packet makes: fields that filter some table, in [`LOOKUP_ORDER`], as
    /// (field, header part: 0 source / 1 destination / 2 protocol, the shift that cuts the
    /// part's [`step_parts`] word to the field's cell).
    steps: [(u8, u8, u8); FIELDS],
    nsteps: usize,
    /// The first `ndirect` steps read direct maps, the rest hashed ones.
    ndirect: usize,
    /// For one-word bitmaps: per field of [`FUSED_FIELDS`] with a direct map, and per cell,
    /// the tables that field lets through (`pass1 | bitmap`; all ones for a field without a
    /// direct map, and for a dropped one). The one-word lookup reads one word per field here
    /// instead of walking the direct steps: no branch, no bounds check. Allocated with the
    /// first table index, so an empty family costs nothing.
    fused: Option<Box<[[u64; 256]; 5]>>,
    removed: usize,
}

impl Prefilter {
    fn new<A: Address>(words: usize) -> Prefilter {
        // Cells are at most 31 bits (the cell maps store `cell + 1` in 32).
        let cuts = if A::BITS == 32 {
            [8, 16, 24]
        } else {
            [16, 24, 31]
        };
        Prefilter {
            words,
            cuts,
            maps: std::array::from_fn(|f| match f {
                PROTO | SPORT | DPORT => CellMap::new(8),
                f if f >= FIELDS => CellMap::default(),
                f => CellMap::new(cuts[f % DEPTHS]),
            }),
            pass: std::array::from_fn(|_| vec![0; words]),
            pass1: [0; FIELD_SLOTS],
            filtered: [0; FIELDS],
            enabled: (1 << FIELDS) - 1,
            steps: [(0, 0, 0); FIELDS],
            nsteps: 0,
            ndirect: 0,
            fused: None,
            removed: 0,
        }
    }

    /// Recompute `steps` after the set of fields that filter a table changed: the direct maps
    /// first (cheap), then the hashed ones, each in [`LOOKUP_ORDER`].
    fn replan(&mut self) {
        self.nsteps = 0;
        for direct in [true, false] {
            for f in LOOKUP_ORDER {
                if self.filtered[f] == 0 || self.maps[f].direct != direct {
                    continue;
                }
                let step = match f {
                    PROTO => (2, 8),
                    SPORT => (3, 8),
                    DPORT => (4, 8),
                    f if f < DEPTHS => (0, self.cuts[f]),
                    f => (1, self.cuts[f - DEPTHS]),
                };
                self.steps[self.nsteps] = (f as u8, step.0, 64 - step.1);
                self.nsteps += 1;
            }
            if direct {
                self.ndirect = self.nsteps;
            }
        }
    }

    /// Stop using fields whose lookups cost more than the probes they save. Judged on the
    /// entries' own header values (the corner packets of the rules), each with its rank: such a
    /// packet costs a lookup per field plus a probe per candidate table whose best rank is no
    /// worse than its own (tables are visited best first, and the walk stops once the packet's
    /// own rule, or a better one, has matched). The field whose removal lowers the estimated
    /// total most goes first, and the rest are judged again without it, until no removal
    /// pays. `bests` is the tables' best ranks in index order (sorted: this runs after a
    /// reindex). Tables filtered on a dropped field pass it from now on.
    fn prune<A: Word>(&mut self, samples: &[(Key<A>, u64)], bests: &[u64]) {
        let words = self.words;
        let fields: Vec<usize> = self.steps[..self.nsteps]
            .iter()
            .map(|&(f, _, _)| usize::from(f))
            .collect();
        let nf = fields.len();
        if nf == 0 || samples.is_empty() {
            return;
        }
        let step_cost: Vec<u64> = fields
            .iter()
            .map(|&f| {
                if self.maps[f].direct {
                    COST_DIRECT
                } else {
                    COST_HASHED
                }
            })
            .collect();
        // Per sample: each field's candidate bitmap, then the tables ranked no worse.
        let stride = (nf + 1) * words;
        let mut cand = vec![0u64; samples.len() * stride];
        for (&(k, rank), row) in samples.iter().zip(cand.chunks_exact_mut(stride)) {
            for (j, &f) in fields.iter().enumerate() {
                let bits = self.maps[f].get(self.cell(f, &k), words);
                for w in 0..words {
                    row[j * words + w] = self.pass[f][w] | bits.map_or(0, |b| b[w]);
                }
            }
            let within = bests.partition_point(|&b| b <= rank);
            for w in 0..words {
                let lo = w * 64;
                row[nf * words + w] = match within.saturating_sub(lo) {
                    0 => 0,
                    n if n >= 64 => u64::MAX,
                    n => (1 << n) - 1,
                };
            }
        }
        let cost = |on: u32| -> u64 {
            let mut probes = 0u64;
            for row in cand.chunks_exact(stride) {
                for w in 0..words {
                    let mut c = row[nf * words + w];
                    for j in (0..nf).filter(|j| on & (1 << j) != 0) {
                        c &= row[j * words + w];
                    }
                    probes += u64::from(c.count_ones());
                }
            }
            let steps: u64 = (0..nf)
                .filter(|j| on & (1 << j) != 0)
                .map(|j| step_cost[j])
                .sum();
            probes * COST_PROBE + steps * samples.len() as u64
        };
        // The address and protocol fields first, as if the port fields did not exist; then
        // the port fields are added one at a time while one pays. (Judged all together, the
        // cheap port lookups can displace an address field that the corner packets undervalue.)
        let ports: u32 = (0..nf)
            .filter(|&j| matches!(fields[j], SPORT | DPORT))
            .fold(0, |acc, j| acc | 1 << j);
        let mut on: u32 = ((1 << nf) - 1) & !ports;
        let mut now = cost(on);
        while let Some((c, j)) = (0..nf)
            .filter(|j| on & (1 << j) != 0)
            .map(|j| (cost(on & !(1 << j)), j))
            .min()
            .filter(|&(c, _)| c < now)
        {
            now = c;
            on &= !(1 << j);
        }
        while let Some((c, j)) = (0..nf)
            .filter(|j| ports & !on & (1 << j) != 0)
            .map(|j| (cost(on | 1 << j), j))
            .min()
            .filter(|&(c, _)| c < now)
        {
            now = c;
            on |= 1 << j;
        }
        for (j, &f) in fields.iter().enumerate() {
            if on & (1 << j) == 0 {
                self.enabled &= !(1 << f);
                self.maps[f] = CellMap::default();
                self.pass[f].fill(u64::MAX);
                self.pass1[f] = u64::MAX;
                self.filtered[f] = 0;
            }
        }
        self.refill_fused();
        self.replan();
    }

    /// Recompute [`fused`](Self::fused) from the maps and `pass1` (one-word bitmaps only).
    fn refill_fused(&mut self) {
        if self.words != 1 {
            return;
        }
        let mut fused = self
            .fused
            .take()
            .unwrap_or_else(|| Box::new([[u64::MAX; 256]; 5]));
        for (row, &f) in fused.iter_mut().zip(&FUSED_FIELDS) {
            let map = &self.maps[f];
            for (c, w) in row.iter_mut().enumerate() {
                *w = if map.direct {
                    self.pass1[f] | map.get1_direct(c as u32)
                } else {
                    u64::MAX
                };
            }
        }
        self.fused = Some(fused);
    }

    /// The fields that filter a table of this tuple, as a bit set.
    fn fields(&self, tuple: Tuple) -> u32 {
        let mut set = 0;
        for (d, &c) in self.cuts.iter().enumerate() {
            if tuple.s >= c {
                set |= 1 << d;
            }
            if tuple.d >= c {
                set |= 1 << (DEPTHS + d);
            }
        }
        if tuple.p == 8 {
            set |= 1 << PROTO;
        }
        if tuple.sp == 16 {
            set |= 1 << SPORT;
        }
        if tuple.dp == 16 {
            set |= 1 << DPORT;
        }
        set & self.enabled
    }

    /// Record a new table index's tuple.
    fn table(&mut self, t: u32, tuple: Tuple) {
        let set = self.fields(tuple);
        let (w, bit) = (t as usize / 64, 1u64 << (t % 64));
        for (f, pass) in self.pass.iter_mut().enumerate() {
            if set & (1 << f) != 0 {
                self.filtered[f] += 1;
                pass[w] &= !bit;
            } else {
                pass[w] |= bit;
            }
        }
        self.pass1 = std::array::from_fn(|f| self.pass.get(f).map_or(0, |p| p[0]));
        if self.words == 1 {
            // Bit `t` of every cell becomes the field's pass bit: a new index has no entries
            // yet, and `add` sets the bits of those that come.
            match &mut self.fused {
                Some(fused) => {
                    for (row, &f) in fused.iter_mut().zip(&FUSED_FIELDS) {
                        if self.maps[f].direct {
                            let on = self.pass1[f] & bit;
                            for w in row.iter_mut() {
                                *w = (*w & !bit) | on;
                            }
                        }
                    }
                }
                None => self.refill_fused(),
            }
        }
        if set & !self.planned() != 0 {
            self.replan();
        }
    }

    /// The fields in `steps`, as a bit set.
    fn planned(&self) -> u32 {
        self.steps[..self.nsteps]
            .iter()
            .fold(0, |acc, &(f, _, _)| acc | 1 << f)
    }

    /// The cell of field `f` for these header values (as [`step_parts`] cuts them).
    #[inline]
    fn cell<A: Word>(&self, f: usize, k: &Key<A>) -> u32 {
        match f {
            PROTO => u32::from(k.proto),
            SPORT => port_cell(k.sport),
            DPORT => port_cell(k.dport),
            f if f < DEPTHS => k.src.top(self.cuts[f]),
            f => k.dst.top(self.cuts[f - DEPTHS]),
        }
    }

    fn add<A: Word>(&mut self, t: u32, tuple: Tuple, e: &Entry<A>) {
        let set = self.fields(tuple);
        for f in 0..FIELDS {
            if set & (1 << f) != 0 {
                let c = self.cell(f, &e.corner());
                self.maps[f].set(c, t, self.words);
                if let (Some(fused), Some(row)) =
                    (&mut self.fused, FUSED_FIELDS.iter().position(|&g| g == f))
                {
                    if self.maps[f].direct {
                        fused[row][c as usize] |= 1 << t;
                    }
                }
            }
        }
    }

    /// Candidate tables for `k` when the bitmaps are one word wide (up to 63 tables).
    #[inline(always)]
    fn candidates1<A: Word>(&self, k: &Key<A>) -> u64 {
        let Some(fused) = &self.fused else {
            // No table index yet: no candidates.
            return 0;
        };
        let mut out = u64::MAX;
        if self.ndirect > 0 {
            // Every direct field at once (those not in use read all ones), in the order of
            // FUSED_FIELDS; the address rows only where a cut is one byte (IPv4).
            let top = |a: A| (a.hi64() >> 56) as usize;
            if A::BITS == 32 {
                out &= fused[0][top(k.src)] & fused[1][top(k.dst)];
            }
            out &= fused[2][usize::from(k.proto)]
                & fused[3][port_cell(k.sport) as usize]
                & fused[4][port_cell(k.dport) as usize];
            if out == 0 {
                return 0;
            }
        }
        // The hashed fields are address cuts (part 0 or 1).
        let addrs = [k.src.hi64(), k.dst.hi64()];
        for &(f, part, shift) in &self.steps[self.ndirect..self.nsteps] {
            let cell = (addrs[usize::from(part & 1)] >> shift) as u32;
            let f = usize::from(f & 15);
            out &= self.pass1[f] | self.maps[f].get1_hashed(cell);
            if out == 0 {
                break;
            }
        }
        out
    }

    /// Candidate tables for `k` into `out` (`words` long).
    #[inline(always)]
    fn candidates<A: Word>(&self, k: &Key<A>, out: &mut [u64]) {
        let parts = step_parts(k);
        out.fill(u64::MAX);
        for &(f, part, shift) in &self.steps[..self.nsteps] {
            let cell = (parts[usize::from(part & 7)] >> shift) as u32;
            let f = usize::from(f);
            let pass = &self.pass[f];
            let mut any = 0;
            match self.maps[f].get(cell, self.words) {
                Some(b) => {
                    for ((o, p), b) in out.iter_mut().zip(pass).zip(b) {
                        *o &= p | b;
                        any |= *o;
                    }
                }
                None => {
                    for (o, p) in out.iter_mut().zip(pass) {
                        *o &= p;
                        any |= *o;
                    }
                }
            }
            if any == 0 {
                return;
            }
        }
    }

    fn memory(&self) -> usize {
        self.maps.iter().map(CellMap::memory).sum::<usize>()
            + self.pass.iter().map(|p| p.capacity() * 8).sum::<usize>()
            + self
                .fused
                .as_ref()
                .map_or(0, |f| core::mem::size_of_val(&**f))
    }
}

/// A tuple-space classifier for one address family. Several entries may share a rule id (the
/// alternatives of one rule); they share its rank and are removed together.
#[derive(Debug, Clone)]
pub struct TupleMerge<A: Word> {
    config: Config,
    entries: Vec<Entry<A>>,
    homes: Vec<Home>,
    free: Vec<u32>,
    /// Rule id -> its first entry (the others follow through `Home::sibling`).
    ids: HashMap<u32, u32>,
    /// Tables by index; emptied ones stay `None` until the next [`TupleMerge::reindex`].
    tables: Vec<Option<Table<A>>>,
    /// Each table's best rank (`u64::MAX` for an empty index), read by lookups that skip
    /// tables without touching them.
    bests: Vec<u64>,
    live_tables: usize,
    /// Neighbouring live tables out of best-rank order. At zero a lookup can stop at the first
    /// candidate that cannot win. Updates made while it is not zero count towards a reindex.
    inversions: usize,
    unordered_updates: usize,
    live: usize,
    filter: Prefilter,
}

impl<A: Word> Default for TupleMerge<A> {
    fn default() -> Self {
        TupleMerge::with_config(Config::for_width(A::BITS))
    }
}

/// A rule's rank as one integer: priority, then insertion order (`seq` below 2**32).
#[inline]
fn rank<A: Address>(r: &Rule<A>) -> u64 {
    u64::from(r.priority) << 32 | (r.seq & 0xffff_ffff)
}

impl<A: Word> TupleMerge<A> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_config(config: Config) -> Self {
        TupleMerge {
            config,
            entries: Vec::new(),
            homes: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            tables: Vec::new(),
            bests: Vec::new(),
            live_tables: 0,
            inversions: 0,
            unordered_updates: 0,
            live: 0,
            filter: Prefilter::new::<A>(1),
        }
    }

    /// Build from many rules at once (in rank order, which packs tables best).
    pub fn build(rules: Vec<Rule<A>>) -> Self {
        Self::build_with(rules, Config::for_width(A::BITS))
    }

    pub fn build_with(mut rules: Vec<Rule<A>>, config: Config) -> Self {
        rules.sort_by_key(rank);
        let mut t = Self::with_config(config);
        t.entries.reserve(rules.len());
        t.homes.reserve(rules.len());
        for r in rules {
            t.add(r);
        }
        t.reindex();
        t
    }

    /// Number of entries (rule alternatives).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number of tables a lookup may visit.
    pub fn tables(&self) -> usize {
        self.live_tables
    }

    /// Every entry, as a rule (`seq` holds the low 32 bits of the insertion number).
    ///
    /// # Panics
    ///
    /// Never: stored prefix lengths are within the address width.
    pub fn rules(&self) -> impl Iterator<Item = Rule<A>> + '_ {
        self.ids.values().flat_map(move |&first| {
            let mut at = first;
            std::iter::from_fn(move || {
                if at == NIL {
                    return None;
                }
                let e = &self.entries[at as usize];
                at = self.homes[at as usize].sibling;
                Some(Rule {
                    id: e.id,
                    priority: (e.rank() >> 32) as u32,
                    seq: e.rank() & 0xffff_ffff,
                    src: Prefix::new(e.src, e.slen, false).expect("stored prefixes are valid"),
                    dst: Prefix::new(e.dst, e.dlen, false).expect("stored prefixes are valid"),
                    sport: e.sport,
                    dport: e.dport,
                    proto_value: e.proto_value,
                    proto_mask: e.proto_mask,
                })
            })
        })
    }

    /// Record table `t`'s new best rank (`u64::MAX`: the table emptied), keeping the count of
    /// out-of-order neighbours.
    fn set_best(&mut self, t: u32, best: u64) {
        let t = t as usize;
        let prev = self.bests[..t].iter().rposition(|&b| b != u64::MAX);
        let next = self.bests[t + 1..]
            .iter()
            .position(|&b| b != u64::MAX)
            .map(|i| t + 1 + i);
        let bad = |bests: &[u64], a: Option<usize>, b: Option<usize>| match (a, b) {
            (Some(a), Some(b)) => usize::from(bests[a] > bests[b]),
            _ => 0,
        };
        let around = |bests: &[u64]| {
            if bests[t] == u64::MAX {
                bad(bests, prev, next)
            } else {
                bad(bests, prev, Some(t)) + bad(bests, Some(t), next)
            }
        };
        self.inversions -= around(&self.bests);
        self.bests[t] = best;
        self.inversions += around(&self.bests);
    }

    /// The table for a new entry of tuple `want` and cut computed per table.
    fn choose(&mut self, e: &Entry<A>, want: Tuple) -> u32 {
        let limit = usize::from(self.config.limit.max(1));
        let mut pick: Option<(u32, u32)> = None;
        for (t, tab) in self.tables.iter().enumerate() {
            let Some(tab) = tab else { continue };
            let t = t as u32;
            if !tab.tuple.fits(want) {
                continue;
            }
            let bits = tab.tuple.bits();
            if pick.is_some_and(|(_, b)| b >= bits) {
                continue;
            }
            if tab.bucket_len(&tab.cut_entry(e), &self.entries, limit) < limit {
                pick = Some((t, bits));
            }
        }
        if let Some((t, _)) = pick {
            return t;
        }
        // A new table: coarse first; if that exists (it was full), the rule's own tuple.
        let relaxed = want.relaxed(self.config.quantum, self.config.cap);
        let tuple = if self.find_table(relaxed).is_none() {
            relaxed
        } else {
            want
        };
        match self.find_table(tuple) {
            Some(t) => t,
            None => self.new_table(tuple),
        }
    }

    fn find_table(&self, tuple: Tuple) -> Option<u32> {
        self.tables
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.tuple == tuple))
            .map(|t| t as u32)
    }

    fn new_table(&mut self, tuple: Tuple) -> u32 {
        if self.tables.len() >= self.filter.words * 64 {
            // Make room in the bitmaps (and drop emptied indices) first.
            self.reindex();
        }
        self.tables.push(Some(Table::new(tuple)));
        self.bests.push(u64::MAX);
        self.live_tables += 1;
        let t = u32::try_from(self.tables.len() - 1).expect("fewer than 2**32 tables");
        self.filter.table(t, tuple);
        t
    }

    /// Renumber the live tables in best-rank order, dropping emptied indices, and refill the
    /// prefilter (fresh, so bits left by removed entries go too). O(entries); run after a
    /// bulk build and when enough updates have piled up to amortise it.
    fn reindex(&mut self) {
        let mut live: Vec<(u64, usize)> = self
            .tables
            .iter()
            .enumerate()
            .filter_map(|(t, tab)| tab.as_ref().map(|tab| (tab.best, t)))
            .collect();
        live.sort_unstable();
        let mut old = std::mem::take(&mut self.tables);
        self.tables = live.iter().map(|&(_, t)| old[t].take()).collect();
        self.bests = live.iter().map(|&(b, _)| b).collect();
        self.live_tables = self.tables.len();
        // Bitmaps with room for at least one more table (a new one past the end reindexes).
        let words = (self.tables.len() + 1).div_ceil(64);
        let mut f = Prefilter::new::<A>(words);
        for (t, tab) in self.tables.iter().enumerate() {
            let tab = tab.as_ref().expect("live table");
            let t = t as u32;
            f.table(t, tab.tuple);
            for s in tab.slots.iter().filter(|s| s.tail != NIL) {
                for e in chain(s.tail, &self.entries) {
                    f.add(t, tab.tuple, &self.entries[e as usize]);
                    self.homes[e as usize].table = t;
                }
            }
        }
        // Judge the fields on at most 4096 entries, spread over all of them.
        let entries = &self.entries;
        let step = self.live.div_ceil(4096).max(1);
        let samples: Vec<(Key<A>, u64)> = self
            .tables
            .iter()
            .flatten()
            .flat_map(|tab| tab.slots.iter().filter(|s| s.tail != NIL))
            .flat_map(|s| chain(s.tail, entries))
            .map(|e| {
                let e = &entries[e as usize];
                (e.corner(), e.rank())
            })
            .step_by(step)
            .collect();
        f.prune(&samples, &self.bests);
        self.filter = f;
        self.pack();
        self.inversions = 0;
        self.unordered_updates = 0;
    }

    /// Renumber the entries so that each bucket's chain sits in consecutive places in the
    /// order a lookup reads it (the tail its slot names, then the head and on), and drop the
    /// free places. A walk then reads neighbouring entries, mostly on one or two cache lines,
    /// instead of entries scattered in insertion order. The entry array keeps its capacity.
    fn pack(&mut self) {
        let mut order: Vec<u32> = Vec::with_capacity(self.live);
        for tab in self.tables.iter().flatten() {
            for s in tab.slots.iter().filter(|s| s.tail != NIL) {
                order.push(s.tail);
                order.extend(chain(s.tail, &self.entries).filter(|&e| e != s.tail));
            }
        }
        debug_assert_eq!(order.len(), self.live);
        let mut new_of = vec![NIL; self.entries.len()];
        for (n, &o) in order.iter().enumerate() {
            new_of[o as usize] = u32::try_from(n).expect("fewer than 2**32 entries");
        }
        let renumber = |i: u32| if i == NIL { NIL } else { new_of[i as usize] };
        let mut entries = Vec::with_capacity(self.entries.capacity());
        let mut homes = Vec::with_capacity(self.homes.capacity());
        for &o in &order {
            let mut e = self.entries[o as usize];
            e.next = renumber(e.next);
            entries.push(e);
            let mut h = self.homes[o as usize];
            h.sibling = renumber(h.sibling);
            homes.push(h);
        }
        for tab in self.tables.iter_mut().flatten() {
            for s in tab.slots.iter_mut().filter(|s| s.tail != NIL) {
                s.tail = renumber(s.tail);
            }
        }
        for first in self.ids.values_mut() {
            *first = renumber(*first);
        }
        self.entries = entries;
        self.homes = homes;
        self.free.clear();
    }

    /// After an update: reindex when the table order has been broken for long enough, or
    /// stale prefilter bits and emptied indices have piled up.
    fn maybe_reindex(&mut self) {
        if self.inversions > 0 {
            self.unordered_updates += 1;
        }
        if self.unordered_updates > self.live / 8 + 64
            || self.filter.removed > self.live / 2 + 64
            || self.tables.len() > 2 * self.live_tables + 16
        {
            self.reindex();
        }
    }

    /// Add one rule entry. The caller keeps `seq` below 2**32 and gives every alternative of a
    /// rule the same id, priority and seq.
    pub fn insert(&mut self, rule: Rule<A>) {
        self.add(rule);
        self.maybe_reindex();
    }

    fn add(&mut self, rule: Rule<A>) {
        let e = Entry {
            src: rule.src.addr(),
            dst: rule.dst.addr(),
            rank: rank(&rule),
            sport: rule.sport,
            dport: rule.dport,
            slen: rule.src.len(),
            dlen: rule.dst.len(),
            proto_value: rule.proto_value & rule.proto_mask,
            proto_mask: rule.proto_mask,
            id: rule.id,
            next: NIL,
        };
        let t = self.choose(&e, Tuple::of(&rule));
        let sibling = self.ids.get(&rule.id).copied().unwrap_or(NIL);
        let home = Home { table: t, sibling };
        let idx = if let Some(i) = self.free.pop() {
            self.entries[i as usize] = e;
            self.homes[i as usize] = home;
            i
        } else {
            self.entries.push(e);
            self.homes.push(home);
            u32::try_from(self.entries.len() - 1).expect("fewer than 2**32 entries")
        };
        self.ids.insert(rule.id, idx);
        self.live += 1;
        self.link(t, idx);
    }

    /// Put entry `idx` into its bucket of table `t`.
    fn link(&mut self, t: u32, idx: u32) {
        let entries = &mut self.entries;
        let tab = self.tables[t as usize].as_mut().expect("live table");
        if (tab.used as usize + 1) * 4 > tab.homes() * 3 {
            tab.grow(None);
        }
        let cut = tab.cut_entry(&entries[idx as usize]);
        let h = Table::hash(&cut);
        let r = entries[idx as usize].rank();
        if let Some(i) = tab.find(&cut, h, entries) {
            // Into the chain by rank; equal ranks (alternatives of one rule) after those there.
            let tail = tab.slots[i].tail;
            let head = entries[tail as usize].next;
            if r >= entries[tail as usize].rank() {
                entries[idx as usize].next = head;
                entries[tail as usize].next = idx;
                tab.slots[i].tail = idx;
            } else if r < entries[head as usize].rank() {
                entries[idx as usize].next = head;
                entries[tail as usize].next = idx;
            } else {
                let mut p = head;
                while r >= entries[entries[p as usize].next as usize].rank() {
                    p = entries[p as usize].next;
                }
                entries[idx as usize].next = entries[p as usize].next;
                entries[p as usize].next = idx;
            }
        } else {
            entries[idx as usize].next = idx;
            if let Some(left) = tab.place(Table::<A>::tag(h), idx) {
                tab.grow(Some(left));
            }
            tab.used += 1;
        }
        tab.entries += 1;
        self.filter.add(t, tab.tuple, &entries[idx as usize]);
        if r < tab.best {
            tab.best = r;
            self.set_best(t, r);
        }
    }

    /// Remove every entry of a rule id; returns how many there were.
    pub fn remove(&mut self, id: u32) -> usize {
        let Some(first) = self.ids.remove(&id) else {
            return 0;
        };
        let mut n = 0;
        let mut at = first;
        while at != NIL {
            let next = self.homes[at as usize].sibling;
            self.unlink(at);
            self.free.push(at);
            n += 1;
            at = next;
        }
        self.live -= n;
        self.filter.removed += n;
        self.maybe_reindex();
        n
    }

    /// Take entry `idx` out of its bucket (and drop its table if it empties).
    fn unlink(&mut self, idx: u32) {
        let t = self.homes[idx as usize].table;
        let entries = &mut self.entries;
        let tab = self.tables[t as usize].as_mut().expect("live table");
        let cut = tab.cut_entry(&entries[idx as usize]);
        let i = tab
            .find(&cut, Table::hash(&cut), entries)
            .expect("an entry is in its bucket");
        let next = entries[idx as usize].next;
        if next == idx {
            tab.vacate(i);
        } else {
            // The predecessor: the tail when `idx` is the head (the best entry), the usual case.
            let tail = tab.slots[i].tail;
            let mut p = tail;
            while entries[p as usize].next != idx {
                p = entries[p as usize].next;
            }
            entries[p as usize].next = next;
            if idx == tail {
                tab.slots[i].tail = p;
            }
        }
        entries[idx as usize].next = NIL;
        tab.entries -= 1;
        if tab.entries == 0 {
            self.tables[t as usize] = None;
            self.set_best(t, u64::MAX);
            self.live_tables -= 1;
        } else if entries[idx as usize].rank() == tab.best {
            tab.recompute_best(entries);
            let best = tab.best;
            self.set_best(t, best);
        }
    }

    /// The id of the best-ranked rule matching `k`.
    #[inline]
    pub fn classify(&self, k: &Key<A>) -> Option<u32> {
        match self.filter.words {
            1 => self.classify_n::<1>(k),
            2 => self.classify_n::<2>(k),
            3 => self.classify_n::<3>(k),
            4 => self.classify_n::<4>(k),
            words => {
                let mut cand = vec![0; words];
                self.filter.candidates(k, &mut cand);
                self.visit(k, &cand)
            }
        }
    }

    #[inline]
    fn classify_n<const W: usize>(&self, k: &Key<A>) -> Option<u32> {
        if W == 1 {
            return self.visit(k, &[self.filter.candidates1(k)]);
        }
        let mut cand = [0; W];
        self.filter.candidates(k, &mut cand);
        self.visit(k, &cand)
    }

    /// Probe the candidate tables best-first.
    #[inline(always)]
    fn visit(&self, k: &Key<A>, cand: &[u64]) -> Option<u32> {
        let kl4 = l4(k.sport, k.dport, k.proto);
        let mut best = u64::MAX;
        let mut id = None;
        let ordered = self.inversions == 0;
        'words: for (w, &word) in cand.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let t = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                // An emptied index (out of the best order) is passed over.
                let Some(Some(tab)) = self.tables.get(t) else {
                    continue;
                };
                if tab.best >= best {
                    // Indices in best order: no later candidate can win either.
                    if ordered {
                        break 'words;
                    }
                    continue;
                }
                if let Some((r, i)) = tab.probe(k, kl4, best, &self.entries) {
                    best = r;
                    id = Some(i);
                }
            }
        }
        id
    }

    /// Classify many keys: `out[i]` is the rule id for `keys[i]`, or -1.
    ///
    /// A packet with the same key as the one before it (a flow's burst) reuses its answer.
    /// With one-word bitmaps, keys go in chunks of [`BATCH_CHUNK`]: first the prefilter for the
    /// whole chunk (a loop of independent packets without data-dependent branches, which the
    /// processor overlaps), then the table probes one packet at a time.
    pub fn classify_batch(&self, keys: &[Key<A>], out: &mut [i64]) {
        if self.filter.words != 1 {
            let mut last: Option<(&Key<A>, i64)> = None;
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                let r = match last {
                    Some((prev, r)) if same(prev, k) => r,
                    _ => self.classify(k).map_or(-1, i64::from),
                };
                last = Some((k, r));
                *o = r;
            }
            return;
        }
        let mut prev: Option<&Key<A>> = None;
        let mut r = -1;
        let mut cand = [0u64; BATCH_CHUNK];
        for (ks, os) in keys.chunks(BATCH_CHUNK).zip(out.chunks_mut(BATCH_CHUNK)) {
            // Bit `j`: key `j` repeats the one before it.
            let mut repeats = 0u32;
            let mut p = prev;
            for (j, (k, c)) in ks.iter().zip(cand.iter_mut()).enumerate() {
                if p.is_some_and(|p| same(p, k)) {
                    repeats |= 1 << j;
                } else {
                    *c = self.filter.candidates1(k);
                }
                p = Some(k);
            }
            for (j, ((k, o), &c)) in ks.iter().zip(os.iter_mut()).zip(&cand).enumerate() {
                if repeats & (1 << j) == 0 {
                    r = self.visit(k, &[c]).map_or(-1, i64::from);
                }
                *o = r;
            }
            prev = ks.last();
        }
    }

    /// Bytes held by the structure (capacity, not just length).
    pub fn memory(&self) -> usize {
        use core::mem::size_of;
        let tables: usize = self
            .tables
            .iter()
            .flatten()
            .map(|t| t.slots.capacity() * size_of::<Slot>())
            .sum();
        self.entries.capacity() * size_of::<Entry<A>>()
            + self.homes.capacity() * size_of::<Home>()
            + self.free.capacity() * 4
            + self.ids.capacity() * (size_of::<(u32, u32)>() + 1)
            + self.tables.capacity() * size_of::<Option<Table<A>>>()
            + tables
            + self.bests.capacity() * 8
            + self.filter.memory()
    }

    /// Statistics: (tables, buckets, entries in the largest bucket).
    pub fn stats(&self) -> (usize, usize, usize) {
        let mut largest = 0;
        let mut buckets = 0usize;
        for t in self.tables.iter().flatten() {
            for s in t.slots.iter().filter(|s| s.tail != NIL) {
                buckets += 1;
                largest = largest.max(chain(s.tail, &self.entries).count());
            }
        }
        (self.live_tables, buckets, largest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::linear_first_match;
    use crate::rand::Rng;

    /// `classify_batch` and `classify` on every key give the linear scan's first match.
    fn batch_agrees_with_scan<A: Word>(t: &TupleMerge<A>, keys: &[Key<A>], rules: &[Rule<A>]) {
        let mut out = vec![0; keys.len()];
        t.classify_batch(keys, &mut out);
        for (k, o) in keys.iter().zip(&out) {
            let want = linear_first_match(rules, k);
            assert_eq!(t.classify(k), want, "{k:?}");
            assert_eq!(*o, want.map_or(-1, i64::from), "{k:?}");
        }
    }

    fn random_rule(rng: &mut Rng, id: u32, priority: u32) -> Rule<u32> {
        // Few distinct values so that rules overlap heavily and buckets fill up.
        let lens = [0u8, 8, 16, 24, 30, 32];
        let slen = lens[rng.below(lens.len() as u64) as usize];
        let dlen = lens[rng.below(lens.len() as u64) as usize];
        let addr = |rng: &mut Rng| 0x0a00_0000 | (rng.below(4) as u32) << 16 | rng.below(8) as u32;
        let ports = |rng: &mut Rng| -> (u16, u16) {
            match rng.below(4) {
                0 => (0, 65535),
                1 => {
                    let p = [0u16, 80, 443, 65535][rng.below(4) as usize];
                    (p, p)
                }
                2 => (1024, 65535),
                _ => {
                    let lo = rng.below(100) as u16;
                    (lo, lo + rng.below(20) as u16)
                }
            }
        };
        let (pv, pm) = match rng.below(3) {
            0 => (0, 0),
            1 => (6, 0xff),
            _ => (17, 0xff),
        };
        Rule {
            id,
            priority,
            seq: u64::from(id),
            src: Prefix::new(addr(rng), slen, false).unwrap(),
            dst: Prefix::new(addr(rng), dlen, false).unwrap(),
            sport: ports(rng),
            dport: ports(rng),
            proto_value: pv,
            proto_mask: pm,
        }
    }

    fn random_key(rng: &mut Rng) -> Key<u32> {
        let addr = |rng: &mut Rng| 0x0a00_0000 | (rng.below(4) as u32) << 16 | rng.below(8) as u32;
        Key {
            src: addr(rng),
            dst: addr(rng),
            sport: [0u16, 79, 80, 81, 443, 1023, 1024, 65535, 5][rng.below(9) as usize],
            dport: rng.below(120) as u16,
            proto: [6u8, 17, 1][rng.below(3) as usize],
        }
    }

    /// An IPv4 rule or key moved into IPv6 space (the top 32 bits), lengths kept.
    fn widen_rule(r: &Rule<u32>) -> Rule<u128> {
        let p = |p: Prefix<u32>| Prefix::new(u128::from(p.addr()) << 96, p.len(), true).unwrap();
        Rule {
            id: r.id,
            priority: r.priority,
            seq: r.seq,
            src: p(r.src),
            dst: p(r.dst),
            sport: r.sport,
            dport: r.dport,
            proto_value: r.proto_value,
            proto_mask: r.proto_mask,
        }
    }

    fn widen_key(k: &Key<u32>) -> Key<u128> {
        Key {
            src: u128::from(k.src) << 96 | 0x1234,
            dst: u128::from(k.dst) << 96 | 0x5678,
            sport: k.sport,
            dport: k.dport,
            proto: k.proto,
        }
    }

    /// Random rules, random inserts and removes (priorities in random order, so table order
    /// breaks and reindexes run), each state checked against the linear scan.
    fn differential<A: Word>(
        seed: u64,
        config: Config,
        rule: impl Fn(&Rule<u32>) -> Rule<A>,
        key: impl Fn(&Key<u32>) -> Key<A>,
    ) {
        let mut rng = Rng::new(seed);
        let mut rules: Vec<Rule<A>> = (0..300)
            .map(|i| {
                let p = rng.below(50) as u32;
                rule(&random_rule(&mut rng, i, p))
            })
            .collect();
        let mut t = TupleMerge::build_with(rules.clone(), config);
        let keys: Vec<Key<A>> = (0..400).map(|_| key(&random_key(&mut rng))).collect();
        let check = |t: &TupleMerge<A>, rules: &[Rule<A>]| {
            batch_agrees_with_scan(t, &keys, rules);
            assert_eq!(t.len(), rules.len());
        };
        check(&t, &rules);
        for round in 0..800u32 {
            if rng.below(2) == 0 && !rules.is_empty() {
                let i = rng.below(rules.len() as u64) as usize;
                let r = rules.swap_remove(i);
                assert_eq!(t.remove(r.id), 1);
                assert_eq!(t.remove(r.id), 0);
            } else {
                let p = rng.below(50) as u32;
                let r = rule(&random_rule(&mut rng, 1000 + round, p));
                rules.push(r);
                t.insert(r);
            }
            if round % 40 == 0 {
                check(&t, &rules);
            }
        }
        check(&t, &rules);
        // Remove everything: the structure empties out.
        for r in rules.drain(..) {
            t.remove(r.id);
        }
        assert!(t.is_empty());
        assert_eq!(t.tables(), 0);
        assert_eq!(t.classify(&keys[0]), None);
    }

    const CONFIGS: [Config; 3] = [
        Config {
            quantum: 8,
            limit: 16,
            cap: 24,
        },
        Config {
            quantum: 1,
            limit: 1,
            cap: 128,
        },
        Config {
            quantum: 16,
            limit: 3,
            cap: 16,
        },
    ];

    #[test]
    fn agrees_with_linear_scan_ipv4() {
        for (seed, config) in CONFIGS.into_iter().enumerate() {
            differential(seed as u64, config, |r| *r, |k| *k);
        }
    }

    #[test]
    fn agrees_with_linear_scan_ipv6() {
        for (seed, config) in CONFIGS.into_iter().enumerate() {
            differential(10 + seed as u64, config, widen_rule, widen_key);
        }
        differential(20, Config::for_width(128), widen_rule, widen_key);
    }

    /// The one-word lookup (the fused rows of the direct fields, then the hashed steps) names
    /// the same candidate tables as the per-step lookup, and the fused rows stay what a refill
    /// from the maps computes, through builds, inserts that add tables, removals and reindexes;
    /// IPv4 (address rows in use) and IPv6 (protocol and port rows only).
    #[test]
    fn fused_rows_agree_with_steps() {
        fn run<A: Word>(
            seed: u64,
            config: Config,
            rule: impl Fn(&Rule<u32>) -> Rule<A>,
            key: impl Fn(&Key<u32>) -> Key<A>,
        ) -> bool {
            let mut rng = Rng::new(seed);
            let mut rules: Vec<Rule<A>> = (0..120)
                .map(|i| {
                    let p = rng.below(50) as u32;
                    rule(&random_rule(&mut rng, i, p))
                })
                .collect();
            let keys: Vec<Key<A>> = (0..300).map(|_| key(&random_key(&mut rng))).collect();
            let mut fused_used = false;
            let mut check = |t: &TupleMerge<A>| {
                let f = &t.filter;
                if f.words != 1 {
                    return;
                }
                let mut again = f.clone();
                again.fused = None;
                again.refill_fused();
                assert_eq!(f.fused, again.fused);
                fused_used |= f.ndirect > 0;
                let live = t
                    .tables
                    .iter()
                    .enumerate()
                    .filter(|(_, tab)| tab.is_some())
                    .fold(0u64, |acc, (i, _)| acc | 1 << i);
                for k in &keys {
                    let mut plain = [0u64];
                    f.candidates(k, &mut plain);
                    assert_eq!(f.candidates1(k) & live, plain[0] & live, "{k:?}");
                }
            };
            let mut t = TupleMerge::build_with(rules.clone(), config);
            check(&t);
            for round in 0..300u32 {
                if round % 3 == 0 && !rules.is_empty() {
                    let r = rules.swap_remove(rng.below(rules.len() as u64) as usize);
                    t.remove(r.id);
                } else {
                    let p = rng.below(50) as u32;
                    let r = rule(&random_rule(&mut rng, 1000 + round, p));
                    rules.push(r);
                    t.insert(r);
                }
                if round % 25 == 0 {
                    check(&t);
                }
            }
            check(&t);
            batch_agrees_with_scan(&t, &keys, &rules);
            fused_used
        }
        let mut used = false;
        for (seed, config) in CONFIGS.into_iter().enumerate() {
            used |= run(60 + seed as u64, config, |r| *r, |k| *k);
            used |= run(70 + seed as u64, config, widen_rule, widen_key);
        }
        assert!(used, "some state read the fused rows");
        // An empty family has no rows and no candidates.
        let t = TupleMerge::<u32>::new();
        assert!(t.filter.fused.is_none());
        assert_eq!(t.filter.candidates1(&random_key(&mut Rng::new(1))), 0);
    }

    /// An open-addressed cell map finds every key it was given, with every table bit, and no
    /// other: empty, with one-word and wider bitmaps, and with keys whose homes crowd the last
    /// slots whatever the map's size (their runs reach the end of the spill area, so the map
    /// grows until they fit), never placing a key where a group of four would not fit.
    #[test]
    fn cell_maps_find_every_key() {
        let crowded: Vec<u32> = (0u32..)
            .filter(|&c| u64::from(c).wrapping_mul(CELL_HASH) >> 32 >= 0xffc0_0000)
            .take(40)
            .collect();
        let mut rng = Rng::new(5);
        let random: Vec<u32> = (0..400).map(|_| rng.below(1 << 24) as u32).collect();
        for words in [1usize, 3] {
            let mut m = CellMap::new(24);
            assert!(!m.direct);
            let mut want: HashMap<u32, Vec<u64>> = HashMap::new();
            let check = |m: &CellMap, want: &HashMap<u32, Vec<u64>>| {
                for c in crowded.iter().chain(&random).chain(&[0, 1, (1 << 24) - 1]) {
                    let bits = want.get(c);
                    assert_eq!(m.get(*c, words), bits.map(|b| &b[..]), "{c}");
                    if words == 1 {
                        assert_eq!(m.get1_hashed(*c), bits.map_or(0, |b| b[0]), "{c}");
                    }
                }
                let last = m.keys.len().saturating_sub(GROUP_SLOTS - 1);
                assert!(m.keys[last..].iter().all(|&k| k == 0));
            };
            check(&m, &want);
            for (n, &c) in crowded.iter().chain(&random[..200]).enumerate() {
                let t = (n * 7 % (64 * words)) as u32;
                m.set(c, t, words);
                want.entry(c).or_insert_with(|| vec![0; words])[t as usize / 64] |= 1 << (t % 64);
                if n % 37 == 0 {
                    check(&m, &want);
                }
            }
            check(&m, &want);
        }
    }

    /// Buckets whose tags all sit at the very top of the tag range (which a rule set can be
    /// made to produce) land on the last home slot at every table size: their run takes more
    /// room past the homes, not ever more homes, so memory stays in proportion to them.
    #[test]
    fn crowded_top_tags_grow_the_spill_not_the_homes() {
        let rule = Rule {
            id: 0,
            priority: 0,
            seq: 0,
            src: Prefix::new(0x0a00_0000u32, 32, false).unwrap(),
            dst: Prefix::new(0x0b00_0000u32, 32, false).unwrap(),
            sport: (0, 65535),
            dport: (0, 65535),
            proto_value: 6,
            proto_mask: 0xff,
        };
        let mut tab = Table::<u32>::new(Tuple::of(&rule));
        for tail in 0..300u32 {
            // As `TupleMerge::link` does for a new bucket.
            if (tab.used as usize + 1) * 4 > tab.homes() * 3 {
                tab.grow(None);
            }
            if let Some(left) = tab.place(TAG_MASK, tail) {
                tab.grow(Some(left));
            }
            tab.used += 1;
            // At most 1.5 * ROOMY homes a bucket, and twice the longest run past them.
            assert!(
                tab.slots.len() <= 8 * (tail as usize + 1) + 64,
                "{}",
                tab.slots.len()
            );
        }
        let mut tails: Vec<u32> = tab
            .slots
            .iter()
            .filter(|s| s.tail != NIL)
            .map(|s| s.tail)
            .collect();
        tails.sort_unstable();
        assert_eq!(tails, (0..300).collect::<Vec<_>>());
        let end = tab.slots.len() - (GROUP_SLOTS - 1);
        assert!(tab.slots[end..].iter().all(|s| s.tail == NIL));
        // Cells whose hash sits in the top 2**-16 of its range: the same for cell maps.
        let crowded: Vec<u32> = (0u32..)
            .filter(|&c| u64::from(c).wrapping_mul(CELL_HASH) >> 32 >= 0xffff_0000)
            .take(200)
            .collect();
        let mut m = CellMap::new(24);
        for (n, &c) in crowded.iter().enumerate() {
            m.set(c, 0, 1);
            assert!(m.keys.len() <= 8 * (n + 1) + 64, "{}", m.keys.len());
        }
        for &c in &crowded {
            assert_eq!(m.get1_hashed(c), 1, "{c}");
        }
        let last = m.keys.len() - (GROUP_SLOTS - 1);
        assert!(m.keys[last..].iter().all(|&k| k == 0));
    }

    /// Rules no tuple can tell apart share one long chain: inserted in any rank order and
    /// removed from its head, middle and tail, it keeps the best match first.
    #[test]
    fn group_scans_agree_with_one_at_a_time() {
        let mut rng = Rng::new(11);
        for _ in 0..20_000 {
            // Metas and keys drawn from a few values, so that equal and near values are common.
            let tag = rng.below(4) as u32;
            let d = 1 + rng.below(250) as u32;
            let slots: Vec<Slot> = (0..GROUP_SLOTS)
                .map(|_| Slot {
                    meta: if rng.below(5) == 0 {
                        0
                    } else {
                        (rng.below(4) as u32) << 8 | (d + rng.below(5) as u32).saturating_sub(2)
                    },
                    tail: rng.below(1 << 32) as u32,
                })
                .collect();
            let want = tag << 8 | d;
            assert_eq!(
                scan(&slots, want),
                scan_scalar(&slots, want),
                "{slots:?} {want}"
            );
            let keys: Vec<u32> = (0..GROUP_SLOTS).map(|_| rng.below(4) as u32).collect();
            let want = rng.below(4) as u32;
            assert_eq!(scan_keys(&keys, want), scan_keys_scalar(&keys, want));
        }
    }

    #[test]
    fn identical_rules_chain() {
        let mut rng = Rng::new(9);
        let base = random_rule(&mut rng, 0, 0);
        let mut t = TupleMerge::<u32>::new();
        let mut rules = Vec::new();
        for id in 0..400u32 {
            let r = Rule {
                id,
                priority: rng.below(40) as u32,
                seq: u64::from(id),
                ..base
            };
            rules.push(r);
            t.insert(r);
        }
        let k = Key {
            src: base.src.addr(),
            dst: base.dst.addr(),
            sport: base.sport.0,
            dport: base.dport.1,
            proto: base.proto_value,
        };
        assert_eq!(t.stats().2, 400);
        while !rules.is_empty() {
            assert_eq!(t.classify(&k), linear_first_match(&rules, &k));
            let i = rng.below(rules.len() as u64) as usize;
            assert_eq!(t.remove(rules.swap_remove(i).id), 1);
        }
        assert_eq!(t.classify(&k), None);
        assert!(t.is_empty());
    }

    /// Under test only eight tags exist, so a table of thousands of buckets has runs far
    /// longer than the 254 slots a distance counts: lookups past them, and removals that
    /// shift runs back, still find every rule.
    #[test]
    fn long_runs_saturate_distances() {
        let config = Config {
            quantum: 1,
            limit: 1,
            cap: 32,
        };
        let mut rng = Rng::new(11);
        let mut rules: Vec<Rule<u32>> = (0..3000u32)
            .map(|id| Rule {
                id,
                priority: id,
                seq: u64::from(id),
                src: Prefix::new(0x0a00_0000 | id, 32, false).unwrap(),
                dst: Prefix::new(0x0b00_0000 | (id % 7), 32, false).unwrap(),
                sport: (0, 65535),
                dport: (0, 65535),
                proto_value: 6,
                proto_mask: 0xff,
            })
            .collect();
        let mut t = TupleMerge::build_with(rules.clone(), config);
        assert_eq!(t.tables(), 1);
        let key = |id: u32| Key {
            src: 0x0a00_0000 | id,
            dst: 0x0b00_0000 | (id % 7),
            sport: 1,
            dport: 2,
            proto: 6,
        };
        let check = |t: &TupleMerge<u32>, rules: &[Rule<u32>]| {
            for id in (0..3100u32).step_by(7) {
                let k = key(id);
                assert_eq!(t.classify(&k), linear_first_match(rules, &k), "{id}");
            }
        };
        check(&t, &rules);
        for _ in 0..1500 {
            let r = rules.swap_remove(rng.below(rules.len() as u64) as usize);
            assert_eq!(t.remove(r.id), 1);
        }
        check(&t, &rules);
        for id in 3000..3100u32 {
            let r = Rule {
                id,
                priority: id,
                seq: u64::from(id),
                src: Prefix::new(0x0a00_0000 | id, 32, false).unwrap(),
                dst: Prefix::new(0x0b00_0000 | (id % 7), 32, false).unwrap(),
                ..rules[0]
            };
            rules.push(r);
            t.insert(r);
        }
        check(&t, &rules);
    }

    /// Buckets whose tags all pick the last home slots (under test only eight tags exist, and
    /// these all have the largest): their run would pass the end of the array, so the table
    /// grows until it fits, and the last slots stay empty. Lookups, and removals that shift
    /// the run back, still find every rule.
    #[test]
    fn runs_at_the_end_grow_the_table() {
        let config = Config {
            quantum: 1,
            limit: 1,
            cap: 32,
        };
        let rule = |id: u32| Rule {
            id,
            priority: id,
            seq: u64::from(id),
            src: Prefix::new(0x0a00_0000 | id, 32, false).unwrap(),
            dst: Prefix::new(0x0b00_0000, 32, false).unwrap(),
            sport: (0, 65535),
            dport: (0, 65535),
            proto_value: 6,
            proto_mask: 0xff,
        };
        let key = |id: u32| Key {
            src: 0x0a00_0000 | id,
            dst: 0x0b00_0000,
            sport: 1,
            dport: 2,
            proto: 6,
        };
        let probe = Table::<u32>::new(Tuple::of(&rule(0)).relaxed(1, 32));
        let last_tag = |id: u32| {
            let k = key(id);
            let cut = probe.cut_key(&k, l4(k.sport, k.dport, k.proto));
            Table::<u32>::tag(Table::<u32>::hash(&cut)) == TAG_MASK
        };
        let ids: Vec<u32> = (0..1 << 16).filter(|&id| last_tag(id)).take(300).collect();
        assert_eq!(ids.len(), 300);
        let mut rules: Vec<Rule<u32>> = ids[..200].iter().map(|&id| rule(id)).collect();
        let mut t = TupleMerge::build_with(rules.clone(), config);
        assert_eq!(t.tables(), 1);
        let check = |t: &TupleMerge<u32>, rules: &[Rule<u32>]| {
            for id in ids.iter().copied().chain(0..50) {
                let k = key(id);
                assert_eq!(t.classify(&k), linear_first_match(rules, &k), "{id}");
            }
            for tab in t.tables.iter().flatten() {
                let end = tab.slots.len() - (GROUP_SLOTS - 1);
                assert!(tab.slots[end..].iter().all(|s| s.tail == NIL));
            }
        };
        check(&t, &rules);
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let r = rules.swap_remove(rng.below(rules.len() as u64) as usize);
            assert_eq!(t.remove(r.id), 1);
        }
        check(&t, &rules);
        for &id in &ids[200..] {
            rules.push(rule(id));
            t.insert(rule(id));
        }
        check(&t, &rules);
    }

    #[test]
    fn alternatives_share_an_id() {
        let mut t = TupleMerge::<u32>::new();
        let mut r = random_rule(&mut Rng::new(5), 7, 1);
        r.dport = (80, 80);
        t.insert(r);
        r.dport = (443, 443);
        t.insert(r);
        let k = |dport| Key {
            src: r.src.addr(),
            dst: r.dst.addr(),
            sport: r.sport.0,
            dport,
            proto: r.proto_value,
        };
        assert_eq!(t.classify(&k(80)), Some(7));
        assert_eq!(t.classify(&k(443)), Some(7));
        assert_eq!(t.classify(&k(81)), None);
        assert_eq!(t.rules().count(), 2);
        assert_eq!(t.remove(7), 2);
        assert_eq!(t.classify(&k(80)), None);
    }

    /// A reindex packs each bucket's chain into consecutive entries (tail first, then head
    /// onwards) and drops free places; rule ids with several alternatives, removals and later
    /// inserts still see every entry.
    #[test]
    fn reindex_packs_chains() {
        let mut rng = Rng::new(21);
        for config in CONFIGS {
            let mut t = TupleMerge::with_config(config);
            let mut rules: Vec<Rule<u32>> = Vec::new();
            let keys: Vec<Key<u32>> = (0..400).map(|_| random_key(&mut rng)).collect();
            let check = |t: &TupleMerge<u32>, rules: &[Rule<u32>]| {
                for k in &keys {
                    assert_eq!(t.classify(k), linear_first_match(rules, k), "{k:?}");
                }
                assert_eq!(t.len(), rules.len());
                assert_eq!(t.rules().count(), rules.len());
            };
            // Ids with one to three alternatives, inserted one at a time.
            for id in 0..300u32 {
                let p = rng.below(50) as u32;
                let r = random_rule(&mut rng, id, p);
                for _ in 0..=rng.below(3) {
                    let alt = Rule {
                        dport: random_rule(&mut rng, id, 0).dport,
                        ..r
                    };
                    rules.push(alt);
                    t.insert(alt);
                }
            }
            // Removals leave free places behind.
            for id in (0..300u32).step_by(3) {
                let n = rules.iter().filter(|r| r.id == id).count();
                rules.retain(|r| r.id != id);
                assert_eq!(t.remove(id), n);
            }
            check(&t, &rules);
            t.reindex();
            assert!(t.free.is_empty());
            assert_eq!(t.entries.len(), t.len());
            for tab in t.tables.iter().flatten() {
                for s in tab.slots.iter().filter(|s| s.tail != NIL) {
                    let walk: Vec<u32> = chain(s.tail, &t.entries).collect();
                    let mut want: Vec<u32> = (s.tail..s.tail + walk.len() as u32).collect();
                    want.rotate_left(1);
                    assert_eq!(walk, want);
                }
            }
            check(&t, &rules);
            // Removal by id and new inserts after the renumbering.
            for id in (1..300u32).step_by(3) {
                let n = rules.iter().filter(|r| r.id == id).count();
                rules.retain(|r| r.id != id);
                assert_eq!(t.remove(id), n);
            }
            for id in 300..400u32 {
                let p = rng.below(50) as u32;
                let r = random_rule(&mut rng, id, p);
                rules.push(r);
                t.insert(r);
            }
            check(&t, &rules);
        }
    }

    /// Rules with exact ports spread over many tables: the port fields filter them (including
    /// ports whose cells collide, and ranges next to exact ports), in IPv4 and IPv6, before and
    /// after updates.
    #[test]
    fn exact_port_fields_filter() {
        fn run<A: Word>(
            ports: &[u16],
            rule: impl Fn(&Rule<u32>) -> Rule<A>,
            key: impl Fn(&Key<u32>) -> Key<A>,
        ) {
            let mut rng = Rng::new(33);
            let mut rules: Vec<Rule<A>> = Vec::new();
            for id in 0..400u32 {
                let prio = rng.below(40) as u32;
                let mut r = random_rule(&mut rng, id, prio);
                let pick = |rng: &mut Rng| ports[rng.below(ports.len() as u64) as usize];
                match rng.below(4) {
                    0 => {
                        let p = pick(&mut rng);
                        r.sport = (p, p);
                    }
                    1 => {
                        let p = pick(&mut rng);
                        r.dport = (p, p);
                    }
                    2 => {
                        let (a, b) = (pick(&mut rng), pick(&mut rng));
                        (r.sport, r.dport) = ((a, a), (b, b));
                    }
                    _ => {}
                }
                rules.push(rule(&r));
            }
            let mut t = TupleMerge::build(rules.clone());
            let planned = t.filter.planned();
            assert_ne!(planned & (1 << DPORT | 1 << SPORT), 0, "port fields in use");
            let keys: Vec<Key<A>> = (0..2000)
                .map(|i| {
                    let mut k = random_key(&mut rng);
                    if i % 2 == 0 {
                        k.sport = ports[rng.below(ports.len() as u64) as usize];
                        k.dport = ports[rng.below(ports.len() as u64) as usize];
                    }
                    key(&k)
                })
                .collect();
            let check = |t: &TupleMerge<A>, rules: &[Rule<A>]| {
                batch_agrees_with_scan(t, &keys, rules);
            };
            check(&t, &rules);
            for id in (0..400u32).step_by(3) {
                rules.retain(|r| r.id != id);
                t.remove(id);
            }
            for id in 400..500u32 {
                let prio = rng.below(40) as u32;
                let mut r = random_rule(&mut rng, id, prio);
                let p = ports[rng.below(ports.len() as u64) as usize];
                r.dport = (p, p);
                rules.push(rule(&r));
                t.insert(rule(&r));
            }
            check(&t, &rules);
        }
        // Two ports sharing a cell, so that a cell hit is not a port match.
        let twin = (1..=u16::MAX)
            .find(|&p| port_cell(p) == port_cell(80))
            .expect("a colliding port");
        let ports = [0u16, 53, 80, 443, twin, 8080, 65535];
        run(&ports, |r| *r, |k| *k);
        run(&ports, widen_rule, widen_key);
    }

    /// Batches of every length around the chunk width, with runs of repeated keys crossing
    /// chunk boundaries, agree with one lookup at a time: IPv4 and IPv6, with one-word and
    /// wider bitmaps, before and after updates.
    #[test]
    fn batch_chunks_agree_with_single_lookups() {
        fn run<A: Word>(
            seed: u64,
            (config, n): (Config, u32),
            rule: impl Fn(&Rule<u32>) -> Rule<A>,
            key: impl Fn(&Key<u32>) -> Key<A>,
        ) -> usize {
            let mut rng = Rng::new(seed);
            let mut rules: Vec<Rule<A>> = (0..n)
                .map(|i| {
                    let p = rng.below(50) as u32;
                    rule(&random_rule(&mut rng, i, p))
                })
                .collect();
            let mut t = TupleMerge::build_with(rules.clone(), config);
            // Runs of 1 to 40 copies of a key.
            let mut keys: Vec<Key<A>> = Vec::new();
            while keys.len() < 600 {
                let k = key(&random_key(&mut rng));
                for _ in 0..=rng.below(40) {
                    keys.push(k);
                }
            }
            let check = |t: &TupleMerge<A>, rules: &[Rule<A>]| {
                let want: Vec<i64> = keys
                    .iter()
                    .map(|k| linear_first_match(rules, k).map_or(-1, i64::from))
                    .collect();
                let c = BATCH_CHUNK;
                let lens = [
                    0,
                    1,
                    2,
                    c - 1,
                    c,
                    c + 1,
                    2 * c - 1,
                    2 * c,
                    2 * c + 1,
                    3 * c + 5,
                ];
                for start in [0, 1, 7, c - 1] {
                    for n in lens.into_iter().chain([keys.len() - start]) {
                        let n = n.min(keys.len() - start);
                        let mut out = vec![7; n];
                        t.classify_batch(&keys[start..start + n], &mut out);
                        assert_eq!(out, want[start..start + n], "start {start}, {n} keys");
                    }
                }
            };
            check(&t, &rules);
            for round in 0..200u32 {
                if round % 2 == 0 {
                    let r = rules.swap_remove(rng.below(rules.len() as u64) as usize);
                    t.remove(r.id);
                } else {
                    let p = rng.below(50) as u32;
                    let r = rule(&random_rule(&mut rng, n + round, p));
                    rules.push(r);
                    t.insert(r);
                }
            }
            check(&t, &rules);
            t.filter.words
        }
        let mut words = Vec::new();
        // One rule per table for the most part: bitmaps of several words.
        let many = (CONFIGS[1], 3000);
        let runs = CONFIGS.into_iter().map(|c| (c, 300)).chain([many]);
        for (seed, run_of) in runs.enumerate() {
            words.push(run(40 + seed as u64, run_of, |r| *r, |k| *k));
            words.push(run(50 + seed as u64, run_of, widen_rule, widen_key));
        }
        // Both the chunked path (one-word bitmaps) and the plain one were taken.
        assert!(
            words.contains(&1) && words.iter().any(|&w| w > 1),
            "{words:?}"
        );
    }
}
