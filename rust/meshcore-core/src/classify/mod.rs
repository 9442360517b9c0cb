//! Packet classification: priority-ordered 5-tuple rules (source and destination prefix,
//! source and destination port ranges, protocol with mask) and the first-match answer for a
//! packet's key.
//!
//! - [`Rule`] is one rule over an address family (`u32` IPv4, `u128` IPv6), with the rule id
//!   the caller chose, a priority (lower wins) and an insertion sequence number that breaks
//!   ties (the rule added first wins).
//! - [`Classifier`] holds a rule set over both families and answers for packet keys, parsed
//!   batch rows and raw frames.
//! - [`classbench`] reads ClassBench filter and trace files; [`text`] reads the rule format for
//!   people (`allow tcp from 10.0.0.0/8 to any port 80,443`).
//! - [`linear_first_match`] is the reference: a scan of every rule, correct rather than quick;
//!   the fast structures are tested against it.

pub mod classbench;
pub mod classifier;
pub mod text;
pub mod tuple;

pub use classifier::{AddError, Classifier, Family, Match, Spec};

use crate::route::{Address, Prefix};

/// The header fields a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key<A: Address> {
    pub src: A,
    pub dst: A,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// One classification rule. Port ranges are inclusive; the protocol matches when
/// `proto & proto_mask == proto_value` (mask 0: any protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<A: Address> {
    pub id: u32,
    pub priority: u32,
    /// Order of insertion: among equal priorities the smaller one wins.
    pub seq: u64,
    pub src: Prefix<A>,
    pub dst: Prefix<A>,
    pub sport: (u16, u16),
    pub dport: (u16, u16),
    pub proto_value: u8,
    pub proto_mask: u8,
}

impl<A: Address> Rule<A> {
    /// Whether the rule matches `k`.
    #[inline]
    pub fn matches(&self, k: &Key<A>) -> bool {
        self.src.contains(k.src)
            && self.dst.contains(k.dst)
            && (self.sport.0..=self.sport.1).contains(&k.sport)
            && (self.dport.0..=self.dport.1).contains(&k.dport)
            && k.proto & self.proto_mask == self.proto_value
    }

    /// The rank of a rule among matches: lower wins.
    #[inline]
    pub fn rank(&self) -> (u32, u64) {
        (self.priority, self.seq)
    }
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// A port range whose low end is above its high end.
    InvertedPorts { lo: u32, hi: u32 },
    /// A port outside 0..=65535.
    PortRange(u64),
    /// A protocol value with bits outside its mask (it could never match).
    ProtoOutsideMask { value: u8, mask: u8 },
}

impl core::fmt::Display for RuleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RuleError::InvertedPorts { lo, hi } => {
                write!(f, "port range {lo}..{hi} is inverted (low above high)")
            }
            RuleError::PortRange(p) => write!(f, "port {p} is outside 0..=65535"),
            RuleError::ProtoOutsideMask { value, mask } => write!(
                f,
                "protocol 0x{value:02x} has bits outside its mask 0x{mask:02x} and never matches"
            ),
        }
    }
}

impl std::error::Error for RuleError {}

/// Check an inclusive port range.
pub fn port_range(lo: u64, hi: u64) -> Result<(u16, u16), RuleError> {
    let lo16 = u16::try_from(lo).map_err(|_| RuleError::PortRange(lo))?;
    let hi16 = u16::try_from(hi).map_err(|_| RuleError::PortRange(hi))?;
    if lo16 > hi16 {
        return Err(RuleError::InvertedPorts {
            lo: u32::from(lo16),
            hi: u32::from(hi16),
        });
    }
    Ok((lo16, hi16))
}

/// Check a protocol value and mask.
pub fn proto_match(value: u8, mask: u8) -> Result<(u8, u8), RuleError> {
    if value & !mask != 0 {
        return Err(RuleError::ProtoOutsideMask { value, mask });
    }
    Ok((value, mask))
}

/// The id of the best-ranked rule matching `k`, scanning all of `rules`.
pub fn linear_first_match<A: Address>(rules: &[Rule<A>], k: &Key<A>) -> Option<u32> {
    rules
        .iter()
        .filter(|r| r.matches(k))
        .min_by_key(|r| r.rank())
        .map(|r| r.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u32, priority: u32, src: &str, dport: (u16, u16), proto: (u8, u8)) -> Rule<u32> {
        let src = match crate::route::parse_prefix(src, true).unwrap() {
            crate::route::AnyPrefix::V4(p) => p,
            crate::route::AnyPrefix::V6(_) => unreachable!(),
        };
        Rule {
            id,
            priority,
            seq: u64::from(id),
            src,
            dst: Prefix::new(0, 0, true).unwrap(),
            sport: (0, 65535),
            dport,
            proto_value: proto.0,
            proto_mask: proto.1,
        }
    }

    #[test]
    fn first_match_by_priority_then_insertion() {
        let rules = [
            rule(7, 5, "10.0.0.0/8", (80, 80), (6, 0xff)),
            rule(8, 1, "10.1.0.0/16", (0, 65535), (0, 0)),
            rule(9, 1, "10.0.0.0/8", (0, 65535), (0, 0)),
        ];
        let key = |src: u32, dport, proto| Key {
            src,
            dst: 1,
            sport: 9,
            dport,
            proto,
        };
        assert_eq!(
            linear_first_match(&rules, &key(0x0a01_0203, 80, 6)),
            Some(8)
        );
        assert_eq!(
            linear_first_match(&rules, &key(0x0a02_0203, 80, 6)),
            Some(9)
        );
        assert_eq!(
            linear_first_match(&rules[..1], &key(0x0a02_0203, 80, 17)),
            None
        );
        assert_eq!(
            linear_first_match(&rules[..1], &key(0x0a02_0203, 81, 6)),
            None
        );
        assert_eq!(linear_first_match(&rules, &key(0x0b00_0000, 80, 6)), None);
    }

    #[test]
    fn checks() {
        assert_eq!(port_range(0, 65535), Ok((0, 65535)));
        assert_eq!(
            port_range(80, 79),
            Err(RuleError::InvertedPorts { lo: 80, hi: 79 })
        );
        assert_eq!(port_range(1, 65536), Err(RuleError::PortRange(65536)));
        assert_eq!(proto_match(6, 0xff), Ok((6, 0xff)));
        assert!(proto_match(6, 0).is_err());
        assert!(RuleError::InvertedPorts { lo: 2, hi: 1 }
            .to_string()
            .contains("inverted"));
    }
}
