//! [`Classifier`]: one rule set over both address families, as the Python `Classifier` sees it.
//!
//! A rule names its family through its prefixes: an IPv4 prefix makes it an IPv4 rule, an IPv6
//! prefix an IPv6 rule, and a rule whose source and destination are both "any" (`None`) applies
//! to packets of either family. Such a rule sits in both per-family structures with the same
//! id and rank. Ranks are `(priority, seq)`: `seq` counts additions, so among equal priorities
//! the rule added first wins, across families too.
//!
//! Every change is all or nothing: a refused rule (or batch) leaves the set as it was.

use super::tuple::TupleMerge;
use super::{proto_match, Key, Rule, RuleError};
use crate::route::{Address, AnyPrefix, Prefix};
use std::collections::HashMap;

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
        let seq = self.next_seq;
        self.next_seq += 1;
        self.place(spec, &fams, seq);
        Ok(())
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
        let base = self.next_seq;
        self.next_seq += specs.len() as u64;
        let bulk = specs.len() >= 64 && specs.len() >= self.specs.len();
        if bulk {
            let mut r4: Vec<Rule<u32>> = self.v4.rules().copied().collect();
            let mut r6: Vec<Rule<u128>> = self.v6.rules().copied().collect();
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

    /// Remove every rule.
    pub fn clear(&mut self) {
        *self = Classifier::default();
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

    /// The IPv4 structure (for statistics).
    pub fn v4(&self) -> &TupleMerge<u32> {
        &self.v4
    }

    /// The IPv6 structure (for statistics).
    pub fn v6(&self) -> &TupleMerge<u128> {
        &self.v6
    }

    /// Bytes held by the lookup structures of both families (not the id map).
    pub fn memory(&self) -> usize {
        self.v4.memory() + self.v6.memory()
    }
}
