//! UDP (RFC 768) header view and representation.

use super::{be16, put16, Error, ErrorKind, Layer, Result};

pub const HEADER_LEN: usize = 8;

/// A zero-copy view of a UDP datagram. `new_checked` requires 8 <= length field <= buffer.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::truncated(Layer::Udp, HEADER_LEN, b.len()));
        }
        let len = usize::from(be16(b, 4));
        if len < HEADER_LEN {
            return Err(Error::new(
                Layer::Udp,
                ErrorKind::BadHeaderLength,
                len,
                HEADER_LEN,
            ));
        }
        if b.len() < len {
            return Err(Error::truncated(Layer::Udp, len, b.len()));
        }
        Ok(UdpPacket { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn src_port(&self) -> u16 {
        be16(self.b(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.b(), 2)
    }
    pub fn len(&self) -> u16 {
        be16(self.b(), 4)
    }
    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 6)
    }
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..usize::from(self.len())]
    }
}

/// The meaning of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    /// Write the header for `payload_len` payload bytes with a zero checksum.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) {
        if buf.len() < HEADER_LEN {
            return;
        }
        put16(buf, 0, self.src_port);
        put16(buf, 2, self.dst_port);
        put16(buf, 4, (HEADER_LEN + payload_len) as u16);
        put16(buf, 6, 0);
    }
}
