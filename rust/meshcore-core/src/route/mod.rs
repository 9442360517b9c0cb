//! Route tables: prefixes of IPv4 and IPv6 addresses and the structures that hold them.
//!
//! - [`Prefix`] is an address with a length whose host bits are zero, generic over the address
//!   width ([`Address`] is implemented for `u32`, IPv4, and `u128`, IPv6), parsed from text
//!   strictly (host bits are an error) or leniently (host bits are cleared).
//! - [`rib::Rib`] is the routing information base: the set of routes, ordered, with exact
//!   get / insert / remove, covering and covered queries, and a reference longest-prefix match
//!   that probes each present prefix length. Fast lookup structures are built from it.
//!
//! Addresses are host-order integers: `10.0.0.1` is `0x0a00_0001`.

pub mod poptrie;
pub mod rib;
pub mod table;

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An address width: `u32` for IPv4, `u128` for IPv6.
pub trait Address: Copy + Ord + Eq + core::hash::Hash + fmt::Debug + Send + Sync + 'static {
    /// Address length in bits (32 or 128).
    const BITS: u8;
    const ZERO: Self;
    /// The mask of a prefix of `len` bits (`len <= BITS`).
    fn mask(len: u8) -> Self;
    #[must_use]
    fn and(self, other: Self) -> Self;
    #[must_use]
    fn or(self, other: Self) -> Self;
    #[must_use]
    fn not(self) -> Self;
    /// Text form of the address.
    fn format(self) -> String;
    /// `width` (<= 32) bits starting `from` bits below the most significant one.
    fn chunk(self, from: u8, width: u8) -> u32;
    /// `v` shifted left by `shift` bits.
    fn place(v: u32, shift: u8) -> Self;
    /// A prefix as one ordered key: by address, then by length.
    type Key: Ord + Copy + fmt::Debug + Send + Sync;
    fn key(self, len: u8) -> Self::Key;
    fn unkey(key: Self::Key) -> (Self, u8);
}

impl Address for u32 {
    const BITS: u8 = 32;
    const ZERO: Self = 0;
    #[inline]
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        }
    }
    fn and(self, other: u32) -> u32 {
        self & other
    }
    fn or(self, other: u32) -> u32 {
        self | other
    }
    fn not(self) -> u32 {
        !self
    }
    fn format(self) -> String {
        Ipv4Addr::from(self).to_string()
    }
    #[inline]
    fn chunk(self, from: u8, width: u8) -> u32 {
        // Shifted in 64 bits, where a shift by 32 (`from` at the end, or a zero `width`) is
        // defined: two shifts and no branch in the lookup loops.
        let top = u64::from((u64::from(self) << from) as u32);
        (top >> (32 - u32::from(width))) as u32
    }
    #[inline]
    fn place(v: u32, shift: u8) -> u32 {
        v.checked_shl(u32::from(shift)).unwrap_or(0)
    }
    /// One integer, so that the RIB's tree compares keys in one instruction.
    type Key = u64;
    #[inline]
    fn key(self, len: u8) -> u64 {
        u64::from(self) << 8 | u64::from(len)
    }
    #[inline]
    fn unkey(key: u64) -> (u32, u8) {
        ((key >> 8) as u32, key as u8)
    }
}

impl Address for u128 {
    const BITS: u8 = 128;
    const ZERO: Self = 0;
    #[inline]
    fn mask(len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len.min(128)))
        }
    }
    fn and(self, other: u128) -> u128 {
        self & other
    }
    fn or(self, other: u128) -> u128 {
        self | other
    }
    fn not(self) -> u128 {
        !self
    }
    fn format(self) -> String {
        Ipv6Addr::from(self).to_string()
    }
    #[inline]
    fn chunk(self, from: u8, width: u8) -> u32 {
        if width == 0 {
            return 0;
        }
        // Most chunks lie in one 64-bit half: shift that half alone (a 128-bit shift by a
        // variable amount costs several instructions and a branch).
        let (from, width) = (u32::from(from), u32::from(width));
        if from + width <= 64 {
            let hi = (self >> 64) as u64;
            return ((hi << from) >> (64 - width)) as u32;
        }
        if from >= 64 {
            let lo = self as u64;
            return ((lo << (from - 64)) >> (64 - width)) as u32;
        }
        ((self << from) >> (128 - width)) as u32
    }
    #[inline]
    fn place(v: u32, shift: u8) -> u128 {
        u128::from(v).checked_shl(u32::from(shift)).unwrap_or(0)
    }
    type Key = (u128, u8);
    #[inline]
    fn key(self, len: u8) -> (u128, u8) {
        (self, len)
    }
    #[inline]
    fn unkey(key: (u128, u8)) -> (u128, u8) {
        key
    }
}

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// The text is not `address/length` with a valid address of the expected family.
    BadAddress(String),
    /// The length is missing, not a number, or longer than the address.
    BadLength(String),
    /// Bits past the length are set (`10.0.0.1/8`); `strict = false` clears them instead.
    HostBits(String),
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::BadAddress(s) => write!(f, "{s:?} is not an IP prefix"),
            PrefixError::BadLength(s) => write!(f, "{s:?} has a bad prefix length"),
            PrefixError::HostBits(s) => write!(f, "{s:?} has host bits set"),
        }
    }
}

impl std::error::Error for PrefixError {}

/// A prefix: `addr` with only its first `len` bits possibly set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix<A: Address> {
    addr: A,
    len: u8,
}

impl<A: Address> Prefix<A> {
    /// A prefix from an address and a length. With `strict`, host bits are an error; without,
    /// they are cleared. `len` above the address width is an error.
    pub fn new(addr: A, len: u8, strict: bool) -> Result<Self, PrefixError> {
        if len > A::BITS {
            return Err(PrefixError::BadLength(format!("{}/{len}", addr.format())));
        }
        let masked = addr.and(A::mask(len));
        if strict && masked != addr {
            return Err(PrefixError::HostBits(format!("{}/{len}", addr.format())));
        }
        Ok(Prefix { addr: masked, len })
    }

    pub fn addr(&self) -> A {
        self.addr
    }
    /// Prefix length in bits.
    #[allow(clippy::len_without_is_empty)] // a prefix length, not a container size
    pub fn len(&self) -> u8 {
        self.len
    }
    /// The last address inside the prefix.
    pub fn last(&self) -> A {
        self.addr.or(A::mask(self.len).not())
    }
    pub fn contains(&self, addr: A) -> bool {
        addr.and(A::mask(self.len)) == self.addr
    }
    /// Whether `other` lies inside this prefix (a prefix covers itself).
    pub fn covers(&self, other: &Prefix<A>) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl<A: Address> fmt::Display for Prefix<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr.format(), self.len)
    }
}

/// A prefix of either family, as parsed from text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnyPrefix {
    V4(Prefix<u32>),
    V6(Prefix<u128>),
}

impl fmt::Display for AnyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyPrefix::V4(p) => p.fmt(f),
            AnyPrefix::V6(p) => p.fmt(f),
        }
    }
}

/// Parse `address/length`; a bare address is a host route (/32 or /128).
pub fn parse_prefix(text: &str, strict: bool) -> Result<AnyPrefix, PrefixError> {
    let text = text.trim();
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let parse_len = |max: u8| -> Result<u8, PrefixError> {
        match len {
            None => Ok(max),
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => l
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| PrefixError::BadLength(text.to_string())),
            Some(_) => Err(PrefixError::BadLength(text.to_string())),
        }
    };
    let host_bits = |e: PrefixError| match e {
        PrefixError::HostBits(_) => PrefixError::HostBits(text.to_string()),
        other => other,
    };
    if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let len = parse_len(32)?;
        return Prefix::new(u32::from(a), len, strict)
            .map(AnyPrefix::V4)
            .map_err(host_bits);
    }
    if let Ok(a) = addr.parse::<Ipv6Addr>() {
        let len = parse_len(128)?;
        return Prefix::new(u128::from(a), len, strict)
            .map(AnyPrefix::V6)
            .map_err(host_bits);
    }
    Err(PrefixError::BadAddress(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(u32::mask(0), 0);
        assert_eq!(u32::mask(8), 0xff00_0000);
        assert_eq!(u32::mask(32), u32::MAX);
        assert_eq!(u128::mask(128), u128::MAX);
        assert_eq!(u128::mask(1), 1u128 << 127);
    }

    #[test]
    fn parsing() {
        let p = parse_prefix("10.0.0.0/8", true).unwrap();
        assert_eq!(p.to_string(), "10.0.0.0/8");
        assert!(matches!(
            parse_prefix("10.0.0.1/8", true),
            Err(PrefixError::HostBits(_))
        ));
        assert_eq!(
            parse_prefix("10.0.0.1/8", false).unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_prefix("2001:db8::/32", true).unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(parse_prefix("::1", true).unwrap().to_string(), "::1/128");
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "x/8",
            "::/129",
        ] {
            assert!(parse_prefix(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn chunks_at_every_position() {
        // Against a bit-by-bit reading, including a zero width and `from` at the end.
        for a in [0u32, u32::MAX, 0x8000_0001, 0xdead_beef, 0x0123_4567] {
            for from in 0..=32u8 {
                for width in 0..=32 - from {
                    let want = (0..width).fold(0u32, |acc, k| {
                        (acc << 1) | (a >> (31 - u32::from(from + k)) & 1)
                    });
                    assert_eq!(a.chunk(from, width), want, "{a:#x} {from} {width}");
                    let wide = u128::from(a) << 96 | u128::from(a);
                    assert_eq!(wide.chunk(from, width), want, "{a:#x} {from} {width}");
                }
            }
        }
    }

    #[test]
    fn containment() {
        let p = Prefix::new(0x0a00_0000u32, 8, true).unwrap();
        assert!(p.contains(0x0aff_ffff) && !p.contains(0x0b00_0000));
        assert_eq!(p.last(), 0x0aff_ffff);
        let q = Prefix::new(0x0a01_0000u32, 16, true).unwrap();
        assert!(p.covers(&q) && !q.covers(&p) && p.covers(&p));
    }
}
