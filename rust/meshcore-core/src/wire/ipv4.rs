//! IPv4 (RFC 791): header view, options walk, fragments, and the representation to emit.
//!
//! Checks made by [`Ipv4Packet::new_checked`]: version 4, IHL >= 5, header inside the buffer,
//! total length >= header length and <= buffer (a longer buffer is link padding, ignored).

use super::checksum;
use super::{be16, byte, put16, Error, ErrorKind, Layer, Result};

pub const MIN_HEADER_LEN: usize = 20;

/// A zero-copy view of an IPv4 header and payload.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Check the fixed header (length, version 4, IHL >= 5, header inside `b`); return its length.
/// The total length field is not checked here.
#[inline]
pub fn check_header(b: &[u8]) -> Result<usize> {
    if b.len() < MIN_HEADER_LEN {
        return Err(Error::truncated(Layer::Ipv4, MIN_HEADER_LEN, b.len()));
    }
    let version = b[0] >> 4;
    if version != 4 {
        return Err(Error::new(
            Layer::Ipv4,
            ErrorKind::BadVersion,
            version as usize,
            4,
        ));
    }
    let hl = usize::from(b[0] & 0x0f) * 4;
    if hl < MIN_HEADER_LEN {
        return Err(Error::new(
            Layer::Ipv4,
            ErrorKind::BadHeaderLength,
            hl,
            MIN_HEADER_LEN,
        ));
    }
    if b.len() < hl {
        return Err(Error::truncated(Layer::Ipv4, hl, b.len()));
    }
    Ok(hl)
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        let hl = check_header(b)?;
        let total = usize::from(be16(b, 2));
        if total < hl {
            return Err(Error::new(Layer::Ipv4, ErrorKind::BadLength, total, hl));
        }
        if b.len() < total {
            return Err(Error::truncated(Layer::Ipv4, total, b.len()));
        }
        Ok(Ipv4Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.b(), 0) & 0x0f) * 4
    }
    pub fn tos(&self) -> u8 {
        byte(self.b(), 1)
    }
    pub fn total_len(&self) -> u16 {
        be16(self.b(), 2)
    }
    pub fn ident(&self) -> u16 {
        be16(self.b(), 4)
    }
    pub fn dont_frag(&self) -> bool {
        byte(self.b(), 6) & 0x40 != 0
    }
    pub fn more_frags(&self) -> bool {
        byte(self.b(), 6) & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.b(), 6) & 0x1fff) << 3
    }
    pub fn ttl(&self) -> u8 {
        byte(self.b(), 8)
    }
    pub fn protocol(&self) -> u8 {
        byte(self.b(), 9)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.b(), 10)
    }
    pub fn src(&self) -> [u8; 4] {
        let b = self.b();
        [b[12], b[13], b[14], b[15]]
    }
    pub fn dst(&self) -> [u8; 4] {
        let b = self.b();
        [b[16], b[17], b[18], b[19]]
    }
    pub fn options(&self) -> &[u8] {
        &self.b()[MIN_HEADER_LEN..self.header_len()]
    }
    /// The payload, bounded by the total length field.
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..usize::from(self.total_len())]
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.b()[..self.header_len()], 0)) == 0xffff
    }
}

/// Check the type-length-value structure of IPv4 options (RFC 791 section 3.1).
pub fn check_options(opts: &[u8]) -> Result<()> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return Ok(()),
            1 => i += 1,
            _ => {
                let len = usize::from(byte(opts, i + 1));
                if i + 1 >= opts.len() || len < 2 || i + len > opts.len() {
                    return Err(Error::new(
                        Layer::Ipv4,
                        ErrorKind::BadOption,
                        MIN_HEADER_LEN + i,
                        len,
                    ));
                }
                i += len;
            }
        }
    }
    Ok(())
}

/// The final destination named by a loose or strict source route option (RFC 791 types 131
/// and 137) whose route is not yet complete (pointer within the option): the last address of
/// the route data. TCP and UDP checksums use it in the pseudo-header (RFC 9293 section 3.1).
pub fn source_route_destination(opts: &[u8]) -> Option<[u8; 4]> {
    let mut i = 0;
    let mut found = None;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(byte(opts, i + 1));
                if len < 2 || i + len > opts.len() {
                    break;
                }
                let ptr = usize::from(byte(opts, i + 2));
                if (kind == 131 || kind == 137) && len >= 7 && ptr <= len {
                    let last = i + 3 + (len - 3) / 4 * 4 - 4;
                    found = Some([opts[last], opts[last + 1], opts[last + 2], opts[last + 3]]);
                }
                i += len;
            }
        }
    }
    found
}

/// The meaning of an IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub protocol: u8,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in bytes; must be a multiple of 8.
    pub frag_offset: u16,
    /// Raw option bytes; padded with zeros (EOL) to a multiple of 4 when emitted.
    pub options: Vec<u8>,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Ipv4Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        check_options(p.options())?;
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
            options: p.options().to_vec(),
            payload_len: p.payload().len(),
        })
    }

    pub fn header_len(&self) -> usize {
        MIN_HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    pub fn total_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Write the header (with a correct checksum) into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let hl = self.header_len();
        if buf.len() < hl {
            return;
        }
        buf[0] = 0x40 | (hl / 4) as u8;
        buf[1] = self.tos;
        put16(buf, 2, self.total_len() as u16);
        put16(buf, 4, self.ident);
        let flags = (u16::from(self.dont_frag) << 14) | (u16::from(self.more_frags) << 13);
        put16(buf, 6, flags | ((self.frag_offset >> 3) & 0x1fff));
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        put16(buf, 10, 0);
        buf[12..16].copy_from_slice(&self.src);
        buf[16..20].copy_from_slice(&self.dst);
        buf[20..20 + self.options.len()].copy_from_slice(&self.options);
        buf[20 + self.options.len()..hl].fill(0);
        let c = checksum::checksum(&buf[..hl]);
        put16(buf, 10, c);
    }
}

/// Decrement the TTL of the IPv4 header at the front of `buf` and patch its checksum
/// incrementally (RFC 1624). Returns the new TTL; a TTL of 0 is left alone and reported as error.
/// Only the header is checked: the rest of the datagram need not be in `buf`.
pub fn decrement_ttl(buf: &mut [u8]) -> Result<u8> {
    check_header(buf)?;
    let ttl = buf[8];
    if ttl == 0 {
        return Err(Error::new(Layer::Ipv4, ErrorKind::TtlExpired, 0, 1));
    }
    let old = be16(buf, 8);
    buf[8] = ttl - 1;
    let new = be16(buf, 8);
    let c = checksum::update16(be16(buf, 10), old, new);
    put16(buf, 10, c);
    Ok(ttl - 1)
}

/// Set ECN Congestion Experienced (RFC 3168) in the IPv4 header at the front of `buf` if the
/// packet is ECN-capable (ECT(0) or ECT(1)), patching the checksum incrementally (RFC 1624).
/// Returns whether the packet now carries CE: `false` for a Not-ECT packet, which is left alone
/// (a queue drops it instead). A packet already marked CE stays as it is and returns `true`.
pub fn set_ce(buf: &mut [u8]) -> Result<bool> {
    check_header(buf)?;
    match buf[1] & 3 {
        0 => Ok(false),
        3 => Ok(true),
        _ => {
            let old = be16(buf, 0);
            buf[1] |= 3;
            let c = checksum::update16(be16(buf, 10), old, be16(buf, 0));
            put16(buf, 10, c);
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of the IPv4 header checksum: UDP, 192.168.0.1 -> 192.168.0.199, 0xb861.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn known_header_checksum() {
        let mut pkt = HDR.to_vec();
        pkt.resize(0x73, 0);
        let p = Ipv4Packet::new_checked(&pkt[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        let mut out = vec![0u8; 20];
        r.emit(&mut out);
        assert_eq!(out, HDR);
    }

    #[test]
    fn options_walk() {
        assert!(check_options(&[1, 1, 7, 3, 0]).is_ok());
        assert!(check_options(&[7, 9, 0, 0]).is_err());
        assert!(check_options(&[7, 1, 0, 0]).is_err());
        assert!(check_options(&[1, 1, 1, 7]).is_err());
    }

    #[test]
    fn source_routes() {
        let lsrr = [1, 131, 11, 4, 10, 0, 0, 1, 10, 0, 0, 2, 0];
        assert_eq!(source_route_destination(&lsrr), Some([10, 0, 0, 2]));
        let done = [137, 11, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0];
        assert_eq!(source_route_destination(&done), None);
        assert_eq!(source_route_destination(&[131, 3, 4, 0]), None);
        assert_eq!(source_route_destination(&[7, 7, 4, 1, 2, 3, 4]), None);
    }

    #[test]
    fn ce_mark_keeps_checksum_valid() {
        let mut pkt = HDR.to_vec();
        pkt.resize(0x73, 0);
        assert_eq!(set_ce(&mut pkt), Ok(false)); // Not-ECT: untouched
        assert_eq!(&pkt[..20], &HDR);
        for ect in [1u8, 2] {
            let mut p = pkt.clone();
            p[1] = 0xb8 | ect; // DSCP EF with ECT(1) / ECT(0)
            let c = checksum::checksum(&{
                let mut h = p[..20].to_vec();
                h[10] = 0;
                h[11] = 0;
                h
            });
            p[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(set_ce(&mut p), Ok(true));
            assert_eq!(p[1], 0xbb);
            assert!(Ipv4Packet::new_checked(&p[..]).unwrap().verify_checksum());
            assert_eq!(set_ce(&mut p), Ok(true)); // already CE
            assert_eq!(p[1], 0xbb);
        }
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut pkt = HDR.to_vec();
        pkt.resize(0x73, 0);
        assert_eq!(decrement_ttl(&mut pkt).unwrap(), 63);
        assert!(Ipv4Packet::new_checked(&pkt[..]).unwrap().verify_checksum());
    }
}
