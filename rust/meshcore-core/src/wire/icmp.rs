//! ICMP (RFC 792) and ICMPv6 (RFC 4443): the common 8-byte header.
//!
//! Both share `type(1) code(1) checksum(2) rest(4)`; ICMPv4's checksum covers the message only,
//! ICMPv6's covers the IPv6 pseudo-header too.

use super::{be16, be32, byte, put16, put32, Error, Layer, Result};

pub const HEADER_LEN: usize = 8;

/// A zero-copy view of an ICMP or ICMPv6 message.
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub fn new_checked(buffer: T, layer: Layer) -> Result<Self> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::truncated(layer, HEADER_LEN, len));
        }
        Ok(IcmpPacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn msg_type(&self) -> u8 {
        byte(self.b(), 0)
    }
    pub fn msg_code(&self) -> u8 {
        byte(self.b(), 1)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 2)
    }
    /// The four type-specific bytes (identifier and sequence for echo).
    pub fn rest(&self) -> u32 {
        be32(self.b(), 4)
    }
}

/// The meaning of the ICMP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IcmpRepr {
    pub msg_type: u8,
    pub msg_code: u8,
    pub rest: u32,
}

impl IcmpRepr {
    /// Write the header with a zero checksum.
    pub fn emit(&self, buf: &mut [u8]) {
        if buf.len() < HEADER_LEN {
            return;
        }
        buf[0] = self.msg_type;
        buf[1] = self.msg_code;
        put16(buf, 2, 0);
        put32(buf, 4, self.rest);
    }
}
