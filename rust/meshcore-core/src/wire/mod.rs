//! The wire layer: packet bytes in, meaning out, and back.
//!
//! Two kinds of types live here, as in smoltcp:
//! - **views** (`EthernetFrame<T>`, `Ipv4Packet<T>`, ...) wrap `T: AsRef<[u8]>`; `new_checked` checks
//!   the length once, after which the field getters read without bounds panics;
//! - **representations** (`Ipv4Repr`, `TcpRepr`, ...) hold the parsed meaning and can `emit` it.
//!
//! [`stack::parse`] walks a whole frame in one pass into a [`stack::Summary`], which is what
//! `Packet.parse` and `parse_batch` expose. [`build::PacketSpec`] emits complete packets with
//! correct checksums. All multi-byte fields are network byte order on the wire.

pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod stack;
pub mod tcp;
pub mod udp;

use core::fmt;

/// IP protocol numbers used by the parser.
pub mod proto {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

/// The protocol layer an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Layer {
    Ethernet = 1,
    Vlan = 2,
    Ipv4 = 3,
    Ipv6 = 4,
    Tcp = 5,
    Udp = 6,
    Icmp = 7,
    Icmpv6 = 8,
    Ip = 9,
    Sll = 10,
}

// (Layer codes fit in the high nibble of a batch error code: at most 15 layers.)

impl Layer {
    pub const ALL: [Layer; 10] = [
        Layer::Ethernet,
        Layer::Vlan,
        Layer::Ipv4,
        Layer::Ipv6,
        Layer::Tcp,
        Layer::Udp,
        Layer::Icmp,
        Layer::Icmpv6,
        Layer::Ip,
        Layer::Sll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Ethernet => "ethernet",
            Layer::Vlan => "vlan",
            Layer::Ipv4 => "ipv4",
            Layer::Ipv6 => "ipv6",
            Layer::Tcp => "tcp",
            Layer::Udp => "udp",
            Layer::Icmp => "icmp",
            Layer::Icmpv6 => "icmpv6",
            Layer::Ip => "ip",
            Layer::Sll => "sll",
        }
    }
}

/// What is wrong with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorKind {
    /// Fewer bytes than the header (or a length field) needs.
    Truncated = 1,
    /// The IP version nibble is not the one expected.
    BadVersion = 2,
    /// A header-length field is below the minimum (IPv4 IHL < 5, TCP data offset < 5, UDP length < 8).
    BadHeaderLength = 3,
    /// A total / payload length field is inconsistent with the header.
    BadLength = 4,
    /// An IPv4 option or IPv6 option is malformed.
    BadOption = 5,
    /// Too many stacked headers (VLAN tags or IPv6 extension headers).
    TooManyHeaders = 6,
    /// A header appears where the protocol forbids it (hop-by-hop not first).
    BadOrder = 7,
    /// A checksum did not verify (only reported when verification is asked for).
    BadChecksum = 8,
    /// The TTL / hop limit is already zero and cannot be decremented.
    TtlExpired = 9,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Truncated,
        ErrorKind::BadVersion,
        ErrorKind::BadHeaderLength,
        ErrorKind::BadLength,
        ErrorKind::BadOption,
        ErrorKind::TooManyHeaders,
        ErrorKind::BadOrder,
        ErrorKind::BadChecksum,
        ErrorKind::TtlExpired,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadVersion => "bad version",
            ErrorKind::BadHeaderLength => "bad header length",
            ErrorKind::BadLength => "bad length field",
            ErrorKind::BadOption => "malformed option",
            ErrorKind::TooManyHeaders => "too many stacked headers",
            ErrorKind::BadOrder => "header out of order",
            ErrorKind::BadChecksum => "bad checksum",
            ErrorKind::TtlExpired => "ttl expired",
        }
    }
}

/// A parse error: the layer, the kind, and the numbers that explain it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub layer: Layer,
    pub kind: ErrorKind,
    /// Bytes needed (or the offending field value), for the message.
    pub need: u32,
    /// Bytes available (or the limit), for the message.
    pub have: u32,
}

impl Error {
    pub const fn new(layer: Layer, kind: ErrorKind, need: usize, have: usize) -> Self {
        Error {
            layer,
            kind,
            need: need as u32,
            have: have as u32,
        }
    }

    pub const fn truncated(layer: Layer, need: usize, have: usize) -> Self {
        Error::new(layer, ErrorKind::Truncated, need, have)
    }

    /// Compact code for batch results: `layer << 4 | kind`; 0 means no error.
    pub fn code(self) -> u8 {
        ((self.layer as u8) << 4) | self.kind as u8
    }

    /// The generic message for a batch error code (without the byte counts).
    pub fn describe_code(code: u8) -> Option<String> {
        if code == 0 {
            return None;
        }
        let layer = Layer::ALL.iter().find(|l| **l as u8 == code >> 4)?;
        let kind = ErrorKind::ALL.iter().find(|k| **k as u8 == code & 0x0f)?;
        Some(format!("{}: {}", layer.name(), kind.describe()))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layer = self.layer.name();
        match self.kind {
            ErrorKind::Truncated => write!(
                f,
                "{layer}: truncated: need {} bytes, have {}",
                self.need, self.have
            ),
            ErrorKind::BadVersion => {
                write!(
                    f,
                    "{layer}: bad version {} (expected {})",
                    self.need, self.have
                )
            }
            ErrorKind::BadHeaderLength => write!(
                f,
                "{layer}: bad header length {} (minimum {})",
                self.need, self.have
            ),
            ErrorKind::BadLength => write!(
                f,
                "{layer}: bad length field {} (header needs {})",
                self.need, self.have
            ),
            ErrorKind::BadOption => write!(
                f,
                "{layer}: malformed option at offset {} (length {})",
                self.need, self.have
            ),
            ErrorKind::TooManyHeaders => write!(
                f,
                "{layer}: too many stacked headers (more than {})",
                self.have
            ),
            ErrorKind::BadOrder => write!(
                f,
                "{layer}: header out of order: type {} not allowed at position {}",
                self.need, self.have
            ),
            ErrorKind::BadChecksum => write!(
                f,
                "{layer}: bad checksum 0x{:04x} (expected 0x{:04x})",
                self.need, self.have
            ),
            ErrorKind::TtlExpired => {
                write!(f, "{layer}: ttl expired: ttl / hop limit is already 0")
            }
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian field reads over a slice whose length was checked by the caller.
/// They return 0 instead of panicking if a caller ever got the check wrong.
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

#[inline]
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_start_with_the_batch_description() {
        for layer in Layer::ALL {
            for kind in ErrorKind::ALL {
                let e = Error::new(layer, kind, 20, 12);
                let short = Error::describe_code(e.code()).unwrap();
                assert!(e.to_string().starts_with(&short), "{e} vs {short}");
            }
        }
        assert_eq!(Error::describe_code(0), None);
        assert_eq!(Error::describe_code(0xff), None);
    }
}
