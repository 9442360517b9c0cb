//! [`Classifier`]: one rule set over both address families, as the Python `Classifier` sees it.
//!
//! A rule names its family through its prefixes: an IPv4 prefix makes it an IPv4 rule, an IPv6
//! prefix an IPv6 rule, and a rule whose source and destination are both "any" (`None`) applies
//! to packets of either family. Such a rule sits in both per-family structures with the same
//! id and rank. Ranks are `(priority, seq)`: `seq` counts additions, so among equal priorities
//! the rule added first wins, across families too.
//!
//! Every change is all or nothing: a refused rule (or batch) leaves the set as it was.
//!
//! Packets come as keys, as rows of the wire layer's batch parser ([`Classifier::classify_rows`])
//! or as raw frames ([`Classifier::classify_frames`], which parses them with that same parser a
//! block at a time). A row that failed to parse or is not IP gets -1; a packet without ports
//! (ICMP, a non-first fragment) is classified with both ports 0.

use super::tuple::TupleMerge;
use super::{proto_match, Key, Rule, RuleError};
use crate::route::{Address, AnyPrefix, Prefix};
use crate::wire::stack::{self, decode_flow, LinkType, OffsetError, ROW_LEN};
use std::collections::HashMap;

/// Packets per block in the row and frame batches: the rows of a block (64 KiB) stay in cache
/// between parsing and classifying.
const BLOCK: usize = 1024;

/// One alternative of a rule: the fields a packet must match, with "any" address fields left
/// open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// `None`: any source address, of either family.
    pub src: Option<AnyPrefix>,
    /// `None`: any destination address, of either family.
    pub dst: Option<AnyPrefix>,
    /// Inclusive range.
    pub sport: (u16, u16),
    /// Inclusive range.
    pub dport: (u16, u16),
    /// `(value, mask)`; `(0, 0)` matches any protocol.
    pub proto: (u8, u8),
}

impl Match {
    /// Matches every packet of either family.
    pub const ANY: Match = Match {
        src: None,
        dst: None,
        sport: (0, u16::MAX),
        dport: (0, u16::MAX),
        proto: (0, 0),
    };
}

/// A rule as the caller writes it: it matches a packet when any of its alternatives does (a
/// text rule with port or address lists has several). Most rules have one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub id: u32,
    pub priority: u32,
    pub matches: Vec<Match>,
}

/// Which per-family structures a rule alternative lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Both,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddError {
    /// A rule with this id is already in the set (or earlier in the same batch).
    Duplicate(u32),
    /// The source and destination prefixes are of different families.
    MixedFamilies,
    /// A rule with no alternatives could never match.
    Empty,
    /// A field is out of range.
    Rule(RuleError),
}

impl core::fmt::Display for AddError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddError::Duplicate(id) => write!(f, "rule id {id} is already in the classifier"),
            AddError::MixedFamilies => {
                write!(
                    f,
                    "source and destination prefixes are of different families"
                )
            }
            AddError::Empty => write!(f, "a rule needs at least one match"),
            AddError::Rule(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AddError {}

impl From<RuleError> for AddError {
    fn from(e: RuleError) -> Self {
        AddError::Rule(e)
    }
}

impl Match {
    /// The family the alternative applies to, or why it cannot be placed.
    pub fn family(&self) -> Result<Family, AddError> {
        let fam = |p: &Option<AnyPrefix>| match p {
            None => None,
            Some(AnyPrefix::V4(_)) => Some(Family::V4),
            Some(AnyPrefix::V6(_)) => Some(Family::V6),
        };
        match (fam(&self.src), fam(&self.dst)) {
            (None, None) => Ok(Family::Both),
            (Some(a), None) | (None, Some(a)) => Ok(a),
            (Some(a), Some(b)) if a == b => Ok(a),
            _ => Err(AddError::MixedFamilies),
        }
    }

    fn check(&self) -> Result<Family, AddError> {
        for (lo, hi) in [self.sport, self.dport] {
            if lo > hi {
                return Err(RuleError::InvertedPorts {
                    lo: u32::from(lo),
                    hi: u32::from(hi),
                }
                .into());
            }
        }
        proto_match(self.proto.0, self.proto.1)?;
        self.family()
    }

    fn rule<A: Address>(
        &self,
        id: u32,
        priority: u32,
        seq: u64,
        pick: impl Fn(AnyPrefix) -> Option<Prefix<A>>,
    ) -> Rule<A> {
        let any = Prefix::new(A::ZERO, 0, true).expect("/0 is valid");
        Rule {
            id,
            priority,
            seq,
            src: self.src.and_then(&pick).unwrap_or(any),
            dst: self.dst.and_then(&pick).unwrap_or(any),
            sport: self.sport,
            dport: self.dport,
            proto_value: self.proto.0,
            proto_mask: self.proto.1,
        }
    }
}

impl Spec {
    /// A rule of one alternative.
    pub fn single(id: u32, priority: u32, m: Match) -> Spec {
        Spec {
            id,
            priority,
            matches: vec![m],
        }
    }

    fn check(&self) -> Result<Vec<Family>, AddError> {
        if self.matches.is_empty() {
            return Err(AddError::Empty);
        }
        self.matches.iter().map(Match::check).collect()
    }

    fn rules(&self, fams: &[Family], seq: u64, r4: &mut Vec<Rule<u32>>, r6: &mut Vec<Rule<u128>>) {
        for (m, fam) in self.matches.iter().zip(fams) {
            if *fam != Family::V6 {
                r4.push(m.rule(self.id, self.priority, seq, v4));
            }
            if *fam != Family::V4 {
                r6.push(m.rule(self.id, self.priority, seq, v6));
            }
        }
    }
}

impl From<Rule<u32>> for Spec {
    /// A one-alternative IPv4 rule (a ClassBench filter, say); the insertion number is dropped.
    fn from(r: Rule<u32>) -> Spec {
        Spec::single(
            r.id,
            r.priority,
            Match {
                src: Some(AnyPrefix::V4(r.src)),
                dst: Some(AnyPrefix::V4(r.dst)),
                sport: r.sport,
                dport: r.dport,
                proto: (r.proto_value, r.proto_mask),
            },
        )
    }
}

fn v4(p: AnyPrefix) -> Option<Prefix<u32>> {
    match p {
        AnyPrefix::V4(p) => Some(p),
        AnyPrefix::V6(_) => None,
    }
}

fn v6(p: AnyPrefix) -> Option<Prefix<u128>> {
    match p {
        AnyPrefix::V6(p) => Some(p),
        AnyPrefix::V4(_) => None,
    }
}

/// Insertion numbers stay below this: the per-family structures rank by
/// `priority << 32 | seq` and need `seq < 2**32 - 1`. When they run out (after some four
/// billion additions), the rules are renumbered in rank order and rebuilt. Tests lower it to
/// exercise the renumbering.
#[cfg(not(test))]
const SEQ_LIMIT: u64 = u32::MAX as u64;
#[cfg(test)]
const SEQ_LIMIT: u64 = 200;

/// A priority-ordered rule set over IPv4 and IPv6 packets.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    v4: TupleMerge<u32>,
    v6: TupleMerge<u128>,
    /// Each rule as added, with its insertion number.
    specs: HashMap<u32, (Spec, u64)>,
    next_seq: u64,
}

impl Classifier {
    pub fn new() -> Classifier {
        Classifier::default()
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.specs.contains_key(&id)
    }

    /// The rule with this id, as added.
    pub fn get(&self, id: u32) -> Option<&Spec> {
        self.specs.get(&id).map(|s| &s.0)
    }

    /// Every rule, best-ranked first.
    pub fn specs(&self) -> Vec<&Spec> {
        let mut all: Vec<&(Spec, u64)> = self.specs.values().collect();
        all.sort_by_key(|(s, seq)| (s.priority, *seq));
        all.into_iter().map(|(s, _)| s).collect()
    }

    fn place(&mut self, spec: Spec, fams: &[Family], seq: u64) {
        let (mut r4, mut r6) = (Vec::new(), Vec::new());
        spec.rules(fams, seq, &mut r4, &mut r6);
        for r in r4 {
            self.v4.insert(r);
        }
        for r in r6 {
            self.v6.insert(r);
        }
        self.specs.insert(spec.id, (spec, seq));
    }

    /// Add one rule.
    pub fn add(&mut self, spec: Spec) -> Result<(), AddError> {
        let fams = spec.check()?;
        if self.specs.contains_key(&spec.id) {
            return Err(AddError::Duplicate(spec.id));
        }
        let seq = self.take_seqs(1);
        self.place(spec, &fams, seq);
        Ok(())
    }

    /// Reserve `n` insertion numbers and return the first, renumbering the rules first (in
    /// rank order, so no answer changes) when the numbers would reach [`SEQ_LIMIT`].
    fn take_seqs(&mut self, n: u64) -> u64 {
        if self.next_seq + n >= SEQ_LIMIT {
            let mut all: Vec<(Spec, u64)> = self.specs.drain().map(|(_, v)| v).collect();
            all.sort_by_key(|(s, seq)| (s.priority, *seq));
            let (mut r4, mut r6) = (Vec::new(), Vec::new());
            for (seq, (spec, _)) in all.into_iter().enumerate() {
                let seq = seq as u64;
                let fams = spec.check().expect("a rule in the set passed its checks");
                spec.rules(&fams, seq, &mut r4, &mut r6);
                self.specs.insert(spec.id, (spec, seq));
            }
            self.v4 = TupleMerge::build(r4);
            self.v6 = TupleMerge::build(r6);
            self.next_seq = self.specs.len() as u64;
        }
        let base = self.next_seq;
        self.next_seq += n;
        base
    }

    /// Add many rules, in order (earlier ones win ties). All or nothing: on an error nothing is
    /// added and the error comes with the index of the refused rule. A large batch is built in
    /// bulk rather than rule by rule.
    pub fn add_all(&mut self, specs: Vec<Spec>) -> Result<(), (usize, AddError)> {
        let mut fams = Vec::with_capacity(specs.len());
        let mut seen = std::collections::HashSet::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let fam = s.check().map_err(|e| (i, e))?;
            if self.specs.contains_key(&s.id) || !seen.insert(s.id) {
                return Err((i, AddError::Duplicate(s.id)));
            }
            fams.push(fam);
        }
        let base = self.take_seqs(specs.len() as u64);
        let bulk = specs.len() >= 64 && specs.len() >= self.specs.len();
        if bulk {
            let mut r4: Vec<Rule<u32>> = self.v4.rules().collect();
            let mut r6: Vec<Rule<u128>> = self.v6.rules().collect();
            for ((i, s), fam) in specs.into_iter().enumerate().zip(&fams) {
                let seq = base + i as u64;
                s.rules(fam, seq, &mut r4, &mut r6);
                self.specs.insert(s.id, (s, seq));
            }
            self.v4 = TupleMerge::build(r4);
            self.v6 = TupleMerge::build(r6);
        } else {
            for ((i, s), fam) in specs.into_iter().enumerate().zip(&fams) {
                self.place(s, fam, base + i as u64);
            }
        }
        Ok(())
    }

    /// Remove a rule; returns it, or `None` if no rule has this id.
    pub fn remove(&mut self, id: u32) -> Option<Spec> {
        let (spec, _) = self.specs.remove(&id)?;
        self.v4.remove(id);
        self.v6.remove(id);
        Some(spec)
    }

    /// The id of the best-ranked rule matching an IPv4 packet.
    #[inline]
    pub fn classify_v4(&self, k: &Key<u32>) -> Option<u32> {
        self.v4.classify(k)
    }

    /// The id of the best-ranked rule matching an IPv6 packet.
    #[inline]
    pub fn classify_v6(&self, k: &Key<u128>) -> Option<u32> {
        self.v6.classify(k)
    }

    /// Classify IPv4 packets: `out[i]` is the rule id, or -1.
    pub fn classify_v4_batch(&self, keys: &[Key<u32>], out: &mut [i64]) {
        self.v4.classify_batch(keys, out);
    }

    /// Classify IPv6 packets: `out[i]` is the rule id, or -1.
    pub fn classify_v6_batch(&self, keys: &[Key<u128>], out: &mut [i64]) {
        self.v6.classify_batch(keys, out);
    }

    /// Classify the rows of the wire layer's batch parser ([`stack::parse_batch`], `ROW_LEN`
    /// bytes each): `out[i]` is the rule id for row `i`, or -1 when nothing matches, the row has
    /// a parse error, or it is not IP. Rows without ports have ports 0 in them. Entries of `out`
    /// past the last whole row are set to -1.
    pub fn classify_rows(&self, rows: &[u8], out: &mut [i64]) {
        let mut scratch = Scratch::default();
        for (rows, out) in rows.chunks(ROW_LEN * BLOCK).zip(out.chunks_mut(BLOCK)) {
            self.row_block(rows, out, &mut scratch);
        }
        let whole = rows.len() / ROW_LEN;
        if let Some(rest) = out.get_mut(whole..) {
            rest.fill(-1);
        }
    }

    /// Parse frames with the wire layer's batch parser and classify them as
    /// [`classify_rows`](Self::classify_rows) does; frame `i` is
    /// `buf[offsets[i]..offsets[i + 1]]`. The offsets are checked first (as `parse_batch`
    /// checks them), and `out` must hold one entry per frame, else `OffsetError::Shape`.
    pub fn classify_frames(
        &self,
        buf: &[u8],
        offsets: &[i64],
        link: LinkType,
        out: &mut [i64],
    ) -> Result<(), OffsetError> {
        let n = stack::check_offsets(offsets, buf.len())?;
        if out.len() != n {
            return Err(OffsetError::Shape);
        }
        let mut rows = vec![0u8; ROW_LEN * n.min(BLOCK)];
        let mut scratch = Scratch::default();
        for (start, out) in (0..n).step_by(BLOCK).zip(out.chunks_mut(BLOCK)) {
            let rows = &mut rows[..ROW_LEN * out.len()];
            stack::parse_batch(buf, &offsets[start..=start + out.len()], link, false, rows)?;
            self.row_block(rows, out, &mut scratch);
        }
        Ok(())
    }

    /// One block of rows: keys gathered per family, classified in two batches, scattered back.
    fn row_block(&self, rows: &[u8], out: &mut [i64], s: &mut Scratch) {
        s.k4.clear();
        s.at4.clear();
        s.k6.clear();
        s.at6.clear();
        for (i, (row, o)) in rows.chunks_exact(ROW_LEN).zip(out.iter_mut()).enumerate() {
            *o = -1;
            let Ok(row) = <&[u8; ROW_LEN]>::try_from(row) else {
                continue;
            };
            let f = decode_flow(row);
            if f.error != 0 {
                continue;
            }
            match f.version {
                4 => {
                    let a = |b: [u8; 16]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                    s.k4.push(Key {
                        src: a(f.src),
                        dst: a(f.dst),
                        sport: f.sport,
                        dport: f.dport,
                        proto: f.proto,
                    });
                    s.at4.push(i);
                }
                6 => {
                    s.k6.push(Key {
                        src: u128::from_be_bytes(f.src),
                        dst: u128::from_be_bytes(f.dst),
                        sport: f.sport,
                        dport: f.dport,
                        proto: f.proto,
                    });
                    s.at6.push(i);
                }
                _ => {}
            }
        }
        s.ids.resize(s.k4.len().max(s.k6.len()), -1);
        if !s.k4.is_empty() {
            let ids = &mut s.ids[..s.k4.len()];
            self.classify_v4_batch(&s.k4, ids);
            for (&at, &id) in s.at4.iter().zip(ids.iter()) {
                out[at] = id;
            }
        }
        if !s.k6.is_empty() {
            let ids = &mut s.ids[..s.k6.len()];
            self.classify_v6_batch(&s.k6, ids);
            for (&at, &id) in s.at6.iter().zip(ids.iter()) {
                out[at] = id;
            }
        }
    }

    /// Bytes held by the lookup structures of both families, with their per-entry bookkeeping
    /// (not the rule descriptions kept for `get` and rebuilds).
    pub fn memory(&self) -> usize {
        self.v4.memory() + self.v6.memory()
    }
}

/// Buffers reused from block to block of a row batch.
#[derive(Default)]
struct Scratch {
    k4: Vec<Key<u32>>,
    at4: Vec<usize>,
    k6: Vec<Key<u128>>,
    at6: Vec<usize>,
    ids: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::parse_prefix;
    use crate::wire::build::{ipv4_header, IpSpec, L4Spec, PacketSpec};
    use crate::wire::ethernet::EthernetAddress;
    use crate::wire::ipv6::Ipv6Repr;
    use crate::wire::udp::UdpRepr;

    fn prefix(text: &str) -> AnyPrefix {
        parse_prefix(text, true).unwrap()
    }

    fn frame(ip: IpSpec, l4: L4Spec) -> Vec<u8> {
        PacketSpec {
            link: LinkType::Ip,
            eth_src: EthernetAddress::default(),
            eth_dst: EthernetAddress::default(),
            vlans: vec![],
            ip,
            l4,
            payload: vec![0; 8],
        }
        .build()
        .unwrap()
    }

    fn v6(src: u128, dst: u128) -> IpSpec {
        IpSpec::V6 {
            repr: Ipv6Repr {
                src: src.to_be_bytes(),
                dst: dst.to_be_bytes(),
                next_header: 0,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
                payload_len: 0,
            },
            ext: vec![],
            frag: None,
        }
    }

    /// Past the insertion-number limit (200 under test) the rules are renumbered; ties between
    /// equal priorities still go to the rule added first.
    #[test]
    fn insertion_numbers_renumber_without_changing_answers() {
        let mut rng = crate::rand::Rng::new(3);
        let mut c = Classifier::new();
        let mut live: Vec<(u32, u32, u16)> = Vec::new(); // (id, priority, dport) in add order
        for id in 0..1000u32 {
            if !live.is_empty() && rng.below(3) == 0 {
                let (gone, _, _) = live.remove(rng.below(live.len() as u64) as usize);
                assert!(c.remove(gone).is_some());
            }
            let (priority, dport) = (rng.below(4) as u32, rng.below(8) as u16);
            let m = Match {
                dport: (dport, 7),
                ..Match::ANY
            };
            c.add(Spec::single(id, priority, m)).unwrap();
            live.push((id, priority, dport));
            for port in 0..8u16 {
                let want = live
                    .iter()
                    .filter(|&&(_, _, lo)| lo <= port)
                    .min_by_key(|&&(_, p, _)| p) // first added among the best priority
                    .map(|&(id, _, _)| id);
                let k = Key {
                    src: 1u32,
                    dst: 2,
                    sport: 3,
                    dport: port,
                    proto: 6,
                };
                assert_eq!(c.classify_v4(&k), want, "after adding {id}, port {port}");
            }
        }
        assert!(c.next_seq < 1000, "renumbered along the way");
    }

    #[test]
    fn frames_and_rows_classify_like_their_keys() {
        let mut c = Classifier::new();
        let udp = |dport: (u16, u16)| Match {
            dport,
            proto: (17, 0xff),
            ..Match::ANY
        };
        c.add(Spec::single(10, 0, udp((0, 999)))).unwrap();
        c.add(Spec::single(
            11,
            1,
            Match {
                src: Some(prefix("10.0.0.0/8")),
                ..Match::ANY
            },
        ))
        .unwrap();
        c.add(Spec::single(
            12,
            1,
            Match {
                dst: Some(prefix("2001:db8::/32")),
                ..udp((1000, 1999))
            },
        ))
        .unwrap();
        // Only packets without ports (port 0) match this one.
        c.add(Spec::single(
            13,
            2,
            Match {
                sport: (0, 0),
                dport: (0, 0),
                ..Match::ANY
            },
        ))
        .unwrap();
        let (mut buf, mut offsets, mut want) = (Vec::new(), vec![0i64], Vec::new());
        let mut push = |f: Vec<u8>, id: i64| {
            buf.extend_from_slice(&f);
            offsets.push(i64::try_from(buf.len()).unwrap());
            want.push(id);
        };
        // More than two blocks, both families interleaved, and frames that get -1.
        for i in 0..2500u32 {
            let dport = (i % 3000) as u16;
            let udp = L4Spec::Udp(UdpRepr {
                src_port: 7,
                dst_port: dport,
            });
            match i % 5 {
                0 | 1 => {
                    let src = if i % 2 == 0 { 0x0a00_0001 } else { 0x0b00_0001 };
                    let ip = IpSpec::V4(ipv4_header(u32::to_be_bytes(src), [192, 0, 2, 1]));
                    let id = if dport < 1000 {
                        10
                    } else if src >> 24 == 10 {
                        11
                    } else {
                        -1
                    };
                    push(frame(ip, udp), id);
                }
                2 => {
                    let dst = (0x2001_0db8u128 << 96) | u128::from(i);
                    let id = match dport {
                        0..=999 => 10,
                        1000..=1999 => 12,
                        _ => -1,
                    };
                    push(frame(v6(1, dst), udp), id);
                }
                3 => {
                    let ip = IpSpec::V4(ipv4_header([11, 0, 0, 1], [1, 1, 1, 1]));
                    push(frame(ip, L4Spec::Raw(1)), 13); // ICMP: ports 0
                }
                _ => {
                    let ip = IpSpec::V4(ipv4_header([10, 0, 0, 1], [1, 1, 1, 1]));
                    let mut f = frame(ip, udp);
                    f.truncate(if i % 2 == 0 { 24 } else { 0 }); // truncated, or empty
                    push(f, -1);
                }
            }
        }
        let mut out = vec![7i64; want.len()];
        c.classify_frames(&buf, &offsets, LinkType::Ip, &mut out)
            .unwrap();
        assert_eq!(out, want);
        let mut rows = vec![0u8; ROW_LEN * want.len()];
        stack::parse_batch(&buf, &offsets, LinkType::Ip, false, &mut rows).unwrap();
        let mut from_rows = vec![7i64; want.len() + 1];
        c.classify_rows(&rows, &mut from_rows);
        assert_eq!(from_rows[..want.len()], want[..]);
        assert_eq!(from_rows[want.len()], -1); // no row for it
        assert_eq!(
            c.classify_frames(&buf, &offsets, LinkType::Ip, &mut out[1..]),
            Err(OffsetError::Shape)
        );
        let mut bad = offsets.clone();
        bad[3] = bad[2] - 1;
        assert_eq!(
            c.classify_frames(&buf, &bad, LinkType::Ip, &mut out),
            Err(OffsetError::Decreasing { index: 2 })
        );
        let mut none: [i64; 0] = [];
        assert_eq!(
            c.classify_frames(&[], &[0], LinkType::Ip, &mut none),
            Ok(())
        );
    }

    #[test]
    fn classbench_rules_become_ipv4_specs() {
        let rules = crate::classify::classbench::parse_filters(
            "@10.0.0.0/8\t0.0.0.0/0\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\n",
        )
        .unwrap();
        let spec = Spec::from(rules[0]);
        assert_eq!((spec.id, spec.priority), (0, 0));
        assert_eq!(
            spec.matches,
            [Match {
                src: Some(prefix("10.0.0.0/8")),
                dst: Some(prefix("0.0.0.0/0")),
                sport: (0, 65535),
                dport: (80, 80),
                proto: (6, 0xff),
            }]
        );
        assert_eq!(spec.matches[0].family(), Ok(Family::V4));
    }
}
