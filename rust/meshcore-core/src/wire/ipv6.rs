//! IPv6 (RFC 8200): header view, extension-header walk to the transport header, and emit.
//!
//! The walk knows the headers that share the generic `next-header, length` layout (hop-by-hop,
//! routing, destination options, mobility, HIP, shim6), the fragment header and AH (RFC 4302, length
//! in 4-octet units). It stops at ESP and "no next header". Hop-by-hop must come first; option
//! TLVs in hop-by-hop and destination-options headers must tile the header exactly. A fragment
//! header with a non-zero offset ends the walk: a non-first fragment carries no transport header.

use super::{be16, be32, byte, proto, put16, put32, Error, ErrorKind, Layer, Result};

pub const HEADER_LEN: usize = 40;
pub const MAX_EXT_HEADERS: usize = 16;

/// A zero-copy view of an IPv6 header and payload.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// Check the fixed header (40 bytes, version 6); the payload length is not checked here.
#[inline]
pub fn check_header(b: &[u8]) -> Result<()> {
    if b.len() < HEADER_LEN {
        return Err(Error::truncated(Layer::Ipv6, HEADER_LEN, b.len()));
    }
    let version = b[0] >> 4;
    if version != 6 {
        return Err(Error::new(
            Layer::Ipv6,
            ErrorKind::BadVersion,
            version as usize,
            6,
        ));
    }
    Ok(())
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        check_header(b)?;
        let total = HEADER_LEN + usize::from(be16(b, 4));
        if b.len() < total {
            return Err(Error::truncated(Layer::Ipv6, total, b.len()));
        }
        Ok(Ipv6Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.b(), 0) >> 4) & 0xff) as u8
    }
    pub fn flow_label(&self) -> u32 {
        be32(self.b(), 0) & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        be16(self.b(), 4)
    }
    pub fn next_header(&self) -> u8 {
        byte(self.b(), 6)
    }
    pub fn hop_limit(&self) -> u8 {
        byte(self.b(), 7)
    }
    pub fn src(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[8..24]);
        a
    }
    pub fn dst(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.b()[24..40]);
        a
    }
    /// Header plus payload, bounded by the payload length field.
    pub fn datagram(&self) -> &[u8] {
        &self.b()[..HEADER_LEN + usize::from(self.payload_len())]
    }
}

/// Where the extension-header walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtWalk {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, ESP, 59 for none, ...).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub l4_offset: usize,
    /// A fragment header with the M flag or a non-zero offset was seen.
    pub is_fragment: bool,
    /// Fragment offset in bytes (0 when not fragmented).
    pub frag_offset: u16,
    pub more_frags: bool,
    pub frag_ident: u32,
    /// Number of extension headers walked.
    pub count: usize,
    /// Their types, in order (the first `count` entries).
    pub types: [u8; MAX_EXT_HEADERS],
    /// The final destination named by a routing header with segments left, for the
    /// upper-layer checksum's pseudo-header (RFC 8200 section 8.1).
    pub final_dst: Option<[u8; 16]>,
}

impl ExtWalk {
    /// Whether the transport header is present (not a non-first fragment, not ESP / no-next).
    pub fn has_transport(&self) -> bool {
        self.frag_offset == 0 && self.protocol != proto::ESP && self.protocol != proto::IPV6_NONXT
    }
}

/// Whether `nh` is an extension header with the generic (next, len-in-8-octets) layout.
#[inline]
fn is_generic_ext(nh: u8) -> bool {
    matches!(
        nh,
        proto::HOPOPT
            | proto::IPV6_ROUTE
            | proto::IPV6_OPTS
            | proto::MOBILITY
            | proto::HIP
            | proto::SHIM6
    )
}

/// The final destination of one routing header (RFC 8200 section 4.4) that still has segments
/// left: the last address of a type 0 header, the home address of type 2 (RFC 6275), or
/// Segment List[0] of a segment routing header (type 4, RFC 8754, listed in reverse). Type 3
/// (RPL, compressed addresses) is not decoded.
pub fn routing_destination(h: &[u8]) -> Option<[u8; 16]> {
    let segments_left = byte(h, 3);
    if segments_left == 0 {
        return None;
    }
    let at = match byte(h, 2) {
        0 => 8 + (h.len().checked_sub(8)? / 16).checked_sub(1)? * 16,
        2 | 4 => 8,
        _ => return None,
    };
    let mut a = [0u8; 16];
    a.copy_from_slice(h.get(at..at + 16)?);
    Some(a)
}

/// Check hop-by-hop / destination option TLVs (RFC 8200 section 4.2) inside one header.
fn check_tlvs(opts: &[u8], base: usize) -> Result<()> {
    let mut i = 0;
    while i < opts.len() {
        if opts[i] == 0 {
            i += 1; // Pad1
            continue;
        }
        if i + 2 > opts.len() || i + 2 + usize::from(opts[i + 1]) > opts.len() {
            return Err(Error::new(
                Layer::Ipv6,
                ErrorKind::BadOption,
                base + i,
                usize::from(byte(opts, i + 1)),
            ));
        }
        i += 2 + usize::from(opts[i + 1]);
    }
    Ok(())
}

/// Walk the extension headers of the datagram `d` (IPv6 header at offset 0, already length-checked
/// to hold `HEADER_LEN + payload_len` bytes, and `d` bounded to that).
pub fn walk_ext(d: &[u8]) -> Result<ExtWalk> {
    let mut w = ExtWalk {
        protocol: byte(d, 6),
        l4_offset: HEADER_LEN,
        ..ExtWalk::default()
    };
    let mut nh = w.protocol;
    let mut off = HEADER_LEN;
    loop {
        let len = if is_generic_ext(nh) {
            if nh == proto::HOPOPT && w.count != 0 {
                return Err(Error::new(Layer::Ipv6, ErrorKind::BadOrder, 0, w.count));
            }
            if d.len() < off + 2 {
                return Err(Error::truncated(Layer::Ipv6, off + 2, d.len()));
            }
            let len = (usize::from(d[off + 1]) + 1) * 8;
            if d.len() < off + len {
                return Err(Error::truncated(Layer::Ipv6, off + len, d.len()));
            }
            if nh == proto::HOPOPT || nh == proto::IPV6_OPTS {
                check_tlvs(&d[off + 2..off + len], off + 2)?;
            }
            if nh == proto::IPV6_ROUTE {
                w.final_dst = routing_destination(&d[off..off + len]).or(w.final_dst);
            }
            len
        } else if nh == proto::IPV6_FRAG {
            if d.len() < off + 8 {
                return Err(Error::truncated(Layer::Ipv6, off + 8, d.len()));
            }
            let fo = be16(d, off + 2);
            w.frag_offset = fo & 0xfff8;
            w.more_frags = fo & 1 != 0;
            w.frag_ident = be32(d, off + 4);
            w.is_fragment = w.more_frags || w.frag_offset != 0;
            8
        } else if nh == proto::AH {
            if d.len() < off + 2 {
                return Err(Error::truncated(Layer::Ipv6, off + 2, d.len()));
            }
            let len = (usize::from(d[off + 1]) + 2) * 4;
            if d.len() < off + len {
                return Err(Error::truncated(Layer::Ipv6, off + len, d.len()));
            }
            len
        } else {
            break;
        };
        if w.count == MAX_EXT_HEADERS {
            return Err(Error::new(
                Layer::Ipv6,
                ErrorKind::TooManyHeaders,
                w.count + 1,
                MAX_EXT_HEADERS,
            ));
        }
        w.types[w.count] = nh;
        w.count += 1;
        nh = d[off];
        off += len;
        if w.frag_offset != 0 {
            // A non-first fragment: the rest is an opaque piece of the original payload.
            break;
        }
    }
    w.protocol = nh;
    w.l4_offset = off;
    Ok(w)
}

/// The meaning of a fixed IPv6 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub next_header: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    /// Bytes after the fixed header (extension headers included).
    pub payload_len: usize,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Ipv6Repr {
        Ipv6Repr {
            src: p.src(),
            dst: p.dst(),
            next_header: p.next_header(),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
            payload_len: usize::from(p.payload_len()),
        }
    }

    pub fn emit(&self, buf: &mut [u8]) {
        if buf.len() < HEADER_LEN {
            return;
        }
        let w0 = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0xfffff);
        put32(buf, 0, w0);
        put16(buf, 4, self.payload_len as u16);
        buf[6] = self.next_header;
        buf[7] = self.hop_limit;
        buf[8..24].copy_from_slice(&self.src);
        buf[24..40].copy_from_slice(&self.dst);
    }
}

/// Decrement the hop limit of the IPv6 header at the front of `buf` (IPv6 has no header checksum).
/// Only the fixed header is checked: the rest of the datagram need not be in `buf`.
pub fn decrement_hop_limit(buf: &mut [u8]) -> Result<u8> {
    check_header(buf)?;
    let hl = buf[7];
    if hl == 0 {
        return Err(Error::new(Layer::Ipv6, ErrorKind::TtlExpired, 0, 1));
    }
    buf[7] = hl - 1;
    Ok(hl - 1)
}

/// Set ECN Congestion Experienced (RFC 3168) in the traffic class of the IPv6 header at the
/// front of `buf` if the packet is ECN-capable. IPv6 has no header checksum. Returns whether the
/// packet now carries CE (`false` for Not-ECT, left alone).
pub fn set_ce(buf: &mut [u8]) -> Result<bool> {
    check_header(buf)?;
    // Traffic class = low nibble of byte 0, high nibble of byte 1; ECN = its low two bits.
    if buf[1] & 0x30 == 0 {
        return Ok(false);
    }
    buf[1] |= 0x30;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(nh: u8, payload: &[u8]) -> Vec<u8> {
        let r = Ipv6Repr {
            src: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            next_header: nh,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0x12345,
            payload_len: payload.len(),
        };
        let mut v = vec![0u8; HEADER_LEN];
        r.emit(&mut v);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn walks_hbh_routing_dstopts_to_udp() {
        let mut p = vec![43, 0, 1, 4, 0, 0, 0, 0]; // HBH -> routing, PadN(4)
        p.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]); // routing -> dst opts
        p.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dst opts -> UDP
        p.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0, 8, 0, 0]);
        let d = header(0, &p);
        let w = walk_ext(&d).unwrap();
        assert_eq!(w.protocol, 17);
        assert_eq!(w.l4_offset, 64);
        assert_eq!(&w.types[..w.count], &[0, 43, 60]);
        assert!(!w.is_fragment);
    }

    #[test]
    fn routing_header_final_destination() {
        let last = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut srh = vec![17, 2, 4, 1, 0, 0, 0, 0];
        srh.extend_from_slice(&last);
        assert_eq!(routing_destination(&srh), Some(last));
        srh[3] = 0;
        assert_eq!(routing_destination(&srh), None);
        let mut t0 = vec![17, 4, 0, 2, 0, 0, 0, 0];
        t0.extend_from_slice(&[1; 16]);
        t0.extend_from_slice(&last);
        assert_eq!(routing_destination(&t0), Some(last));
        let d = header(43, &t0);
        assert_eq!(walk_ext(&d).unwrap().final_dst, Some(last));
        assert_eq!(routing_destination(&[17, 0, 3, 1, 0, 0, 0, 0]), None);
        assert_eq!(routing_destination(&[17, 0, 0, 1, 0, 0, 0, 0]), None);
    }

    #[test]
    fn non_first_fragment_stops() {
        let p = [6, 0, 0x00, 0xa9, 0, 0, 0, 7, 1, 2, 3, 4];
        let d = header(44, &p);
        let w = walk_ext(&d).unwrap();
        assert_eq!(w.protocol, 6);
        assert!(w.is_fragment);
        assert_eq!(w.frag_offset, 168);
        assert!(w.more_frags);
        assert!(!w.has_transport());
    }

    #[test]
    fn hbh_not_first_is_rejected() {
        let p = [0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];
        let d = header(60, &p);
        assert_eq!(walk_ext(&d).unwrap_err().kind, ErrorKind::BadOrder);
    }

    #[test]
    fn bad_tlv_is_rejected() {
        let p = [17, 0, 1, 9, 0, 0, 0, 0];
        let d = header(0, &p);
        assert_eq!(walk_ext(&d).unwrap_err().kind, ErrorKind::BadOption);
    }
}
