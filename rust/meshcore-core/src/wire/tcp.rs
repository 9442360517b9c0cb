//! TCP (RFC 9293) header view and representation.

use super::{be16, be32, byte, put16, put32, Error, ErrorKind, Layer, Result};

pub const MIN_HEADER_LEN: usize = 20;

pub mod flags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;
}

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::truncated(Layer::Tcp, MIN_HEADER_LEN, b.len()));
        }
        let hl = usize::from(b[12] >> 4) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(Error::new(
                Layer::Tcp,
                ErrorKind::BadHeaderLength,
                hl,
                MIN_HEADER_LEN,
            ));
        }
        if b.len() < hl {
            return Err(Error::truncated(Layer::Tcp, hl, b.len()));
        }
        Ok(TcpPacket { buffer })
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
    pub fn seq(&self) -> u32 {
        be32(self.b(), 4)
    }
    pub fn ack(&self) -> u32 {
        be32(self.b(), 8)
    }
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.b(), 12) >> 4) * 4
    }
    /// The nine flag bits (NS in bit 8).
    pub fn flags(&self) -> u16 {
        be16(self.b(), 12) & 0x01ff
    }
    pub fn window(&self) -> u16 {
        be16(self.b(), 14)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 16)
    }
    pub fn urgent(&self) -> u16 {
        be16(self.b(), 18)
    }
    pub fn options(&self) -> &[u8] {
        &self.b()[MIN_HEADER_LEN..self.header_len()]
    }
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..]
    }
}

/// The meaning of a TCP header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    pub window: u16,
    pub urgent: u16,
    /// Raw option bytes, padded with zeros (EOL) to a multiple of 4 when emitted.
    pub options: Vec<u8>,
}

impl TcpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> TcpRepr {
        TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
            urgent: p.urgent(),
            options: p.options().to_vec(),
        }
    }

    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    /// Write the header with a zero checksum; the caller fills it (it covers the pseudo-header).
    pub fn emit(&self, buf: &mut [u8]) {
        let hl = self.header_len();
        if buf.len() < hl {
            return;
        }
        put16(buf, 0, self.src_port);
        put16(buf, 2, self.dst_port);
        put32(buf, 4, self.seq);
        put32(buf, 8, self.ack);
        put16(buf, 12, ((hl as u16 / 4) << 12) | (self.flags & 0x01ff));
        put16(buf, 14, self.window);
        put16(buf, 16, 0);
        put16(buf, 18, self.urgent);
        buf[20..20 + self.options.len()].copy_from_slice(&self.options);
        buf[20 + self.options.len()..hl].fill(0);
    }
}
