//! One-pass parse of a whole frame into a flat [`Summary`], and its fixed-size batch row.
//!
//! This is the hot path behind `Packet.parse` and `parse_batch`. Rules it follows:
//! - Non-IP EtherTypes (ARP, LLDP, ...) are not errors: `version` is 0 and the walk stops.
//! - IPv4 and IPv6 fragments set `is_fragment`; a non-first fragment (offset != 0) has no
//!   transport header, so `has_ports` is false. A first fragment too short for the fixed
//!   transport header is an error (the RFC 1858 tiny-fragment case).
//! - Link padding after the IP datagram is ignored: the datagram length fields bound the payload.
//! - On error the fields parsed so far stay filled in, so a batch row still shows the addresses
//!   of a packet whose transport header is truncated.

use super::checksum;
use super::ethernet::{self, ethertype, MAX_VLAN_TAGS};
use super::icmp::IcmpPacket;
use super::ipv4;
use super::ipv6::{self, MAX_EXT_HEADERS};
use super::tcp::TcpPacket;
use super::udp::UdpPacket;
use super::{be16, be32, byte, proto, Error, ErrorKind, Layer, Result};

/// What the first byte of a buffer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, with optional 802.1Q / QinQ tags (pcap link type 1).
    Ethernet,
    /// Raw IPv4 or IPv6, the version nibble decides (TUN devices; pcap link types 101, 228, 229).
    Ip,
    /// Linux cooked capture v1 (pcap link type 113, `tcpdump -i any` before libpcap 1.10).
    Sll,
    /// Linux cooked capture v2 (pcap link type 276, `tcpdump -i any` since libpcap 1.10).
    Sll2,
}

impl LinkType {
    pub fn from_name(name: &str) -> Option<LinkType> {
        match name {
            "ethernet" | "eth" | "en10mb" => Some(LinkType::Ethernet),
            "ip" | "raw" | "tun" => Some(LinkType::Ip),
            "sll" | "linux_sll" => Some(LinkType::Sll),
            "sll2" | "linux_sll2" => Some(LinkType::Sll2),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LinkType::Ethernet => "ethernet",
            LinkType::Ip => "ip",
            LinkType::Sll => "sll",
            LinkType::Sll2 => "sll2",
        }
    }
}

/// Summary flag bits (the `flags` column of a batch row).
pub mod flag {
    pub const FRAGMENT: u8 = 0x01;
    pub const MORE_FRAGMENTS: u8 = 0x02;
    pub const DONT_FRAGMENT: u8 = 0x04;
    pub const HAS_PORTS: u8 = 0x08;
    pub const HAS_ICMP: u8 = 0x10;
    pub const VLAN: u8 = 0x20;
    /// IPv4 options or IPv6 extension headers are present.
    pub const IP_EXTENSIONS: u8 = 0x40;
}

/// Everything the one-pass parse learns about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// 4, 6, or 0 for a frame that is not IP.
    pub version: u8,
    /// Source address: IPv4 in the first four bytes (rest zero), IPv6 in all sixteen.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 TOS byte or IPv6 traffic class (DSCP << 2 | ECN).
    pub tos: u8,
    /// IP datagram length in bytes, from the header (link padding excluded).
    pub length: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub flags: u8,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
    /// IPv4 identification, or the IPv6 fragment header identification.
    pub ident: u32,
    pub flow_label: u32,
    /// The EtherType after the VLAN tags (0x0800 / 0x86dd for raw IP input).
    pub ethertype: u16,
    pub vlan_count: u8,
    /// Tag control information of each tag, outermost first.
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
    pub ext_count: u8,
    pub ext_types: [u8; MAX_EXT_HEADERS],
    /// Offsets from the start of the buffer: network header, transport header, payload, datagram end.
    pub l3_offset: usize,
    pub l4_offset: usize,
    pub payload_offset: usize,
    pub end: usize,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            version: 0,
            src: [0; 16],
            dst: [0; 16],
            protocol: 0,
            ttl: 0,
            tos: 0,
            length: 0,
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            flags: 0,
            frag_offset: 0,
            ident: 0,
            flow_label: 0,
            ethertype: 0,
            vlan_count: 0,
            vlan_tci: [0; MAX_VLAN_TAGS],
            ext_count: 0,
            ext_types: [0; MAX_EXT_HEADERS],
            l3_offset: 0,
            l4_offset: 0,
            payload_offset: 0,
            end: 0,
        }
    }
}

impl Summary {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    pub fn is_fragment(&self) -> bool {
        self.has(flag::FRAGMENT)
    }
    pub fn has_ports(&self) -> bool {
        self.has(flag::HAS_PORTS)
    }
}

/// Parse a frame of the given link type. On error, `s` keeps what was parsed before it.
#[inline]
pub fn parse_into(data: &[u8], link: LinkType, s: &mut Summary) -> Result<()> {
    let et = match link {
        LinkType::Ethernet => {
            let info = ethernet::walk(data, &mut s.vlan_tci)?;
            s.vlan_count = info.vlan_count as u8;
            if info.vlan_count > 0 {
                s.flags |= flag::VLAN;
            }
            s.l3_offset = info.l3_offset;
            info.ethertype
        }
        LinkType::Sll | LinkType::Sll2 => {
            let info = if link == LinkType::Sll {
                ethernet::walk_sll(data)?
            } else {
                ethernet::walk_sll2(data)?
            };
            s.l3_offset = info.l3_offset;
            info.ethertype
        }
        LinkType::Ip => match data.first().map(|b| b >> 4) {
            Some(4) => ethertype::IPV4,
            Some(6) => ethertype::IPV6,
            Some(v) => return Err(Error::new(Layer::Ip, ErrorKind::BadVersion, v as usize, 4)),
            None => return Err(Error::truncated(Layer::Ip, 1, 0)),
        },
    };
    s.ethertype = et;
    let l3 = data.get(s.l3_offset..).unwrap_or(&[]);
    match et {
        ethertype::IPV4 => parse_ipv4(l3, s),
        ethertype::IPV6 => parse_ipv6(l3, s),
        _ => {
            // Not IP: `length` is the whole frame.
            s.length = u32::try_from(data.len()).unwrap_or(u32::MAX);
            s.end = data.len();
            s.l4_offset = s.l3_offset;
            s.payload_offset = s.l3_offset;
            Ok(())
        }
    }
}

/// Parse a frame into a fresh summary.
pub fn parse(data: &[u8], link: LinkType) -> Result<Summary> {
    let mut s = Summary::default();
    parse_into(data, link, &mut s)?;
    Ok(s)
}

/// Parse IPv4. A datagram longer than the buffer (a capture cut at its snapshot length) is an
/// `ipv4: truncated` error, but its header fields, and its ports when captured, are filled in.
#[inline]
fn parse_ipv4(d: &[u8], s: &mut Summary) -> Result<()> {
    let hl = ipv4::check_header(d)?;
    let total = usize::from(be16(d, 2));
    if total < hl {
        return Err(Error::new(Layer::Ipv4, ErrorKind::BadLength, total, hl));
    }
    s.version = 4;
    s.src[..4].copy_from_slice(&d[12..16]);
    s.dst[..4].copy_from_slice(&d[16..20]);
    s.protocol = d[9];
    s.ttl = d[8];
    s.tos = d[1];
    s.length = total as u32;
    s.ident = u32::from(be16(d, 4));
    let frag = be16(d, 6);
    s.frag_offset = (frag & 0x1fff) << 3;
    if frag & 0x4000 != 0 {
        s.flags |= flag::DONT_FRAGMENT;
    }
    if frag & 0x2000 != 0 {
        s.flags |= flag::MORE_FRAGMENTS | flag::FRAGMENT;
    }
    if s.frag_offset != 0 {
        s.flags |= flag::FRAGMENT;
    }
    s.l4_offset = s.l3_offset + hl;
    s.payload_offset = s.l4_offset;
    let avail = total.min(d.len());
    s.end = s.l3_offset + avail;
    if hl > ipv4::MIN_HEADER_LEN {
        s.flags |= flag::IP_EXTENSIONS;
        ipv4::check_options(&d[ipv4::MIN_HEADER_LEN..hl])?;
    }
    let snapped = avail < total;
    let l4 = if s.frag_offset == 0 {
        parse_l4(&d[hl..avail], s, Layer::Icmp, snapped)
    } else {
        Ok(())
    };
    if snapped {
        return Err(Error::truncated(Layer::Ipv4, total, d.len()));
    }
    l4
}

/// Parse IPv6 and walk its extension headers; a snapped datagram is handled as for IPv4.
#[inline]
fn parse_ipv6(d: &[u8], s: &mut Summary) -> Result<()> {
    ipv6::check_header(d)?;
    s.version = 6;
    s.src.copy_from_slice(&d[8..24]);
    s.dst.copy_from_slice(&d[24..40]);
    s.ttl = d[7];
    s.tos = ((be16(d, 0) >> 4) & 0xff) as u8;
    s.flow_label = be32(d, 0) & 0x000f_ffff;
    s.protocol = d[6];
    let total = ipv6::HEADER_LEN + usize::from(be16(d, 4));
    s.length = total as u32;
    let dgram = &d[..total.min(d.len())];
    let snapped = dgram.len() < total;
    let truncated = Error::truncated(Layer::Ipv6, total, d.len());
    s.end = s.l3_offset + dgram.len();
    s.l4_offset = s.l3_offset + ipv6::HEADER_LEN;
    s.payload_offset = s.l4_offset;
    let w = match ipv6::walk_ext(dgram) {
        Ok(w) => w,
        Err(_) if snapped => return Err(truncated),
        Err(e) => return Err(e),
    };
    s.protocol = w.protocol;
    s.ext_count = w.count as u8;
    s.ext_types = w.types;
    if w.count > 0 {
        s.flags |= flag::IP_EXTENSIONS;
    }
    s.ident = w.frag_ident;
    s.frag_offset = w.frag_offset;
    if w.is_fragment {
        s.flags |= flag::FRAGMENT;
    }
    if w.more_frags {
        s.flags |= flag::MORE_FRAGMENTS;
    }
    s.l4_offset = s.l3_offset + w.l4_offset;
    s.payload_offset = s.l4_offset;
    let l4 = if w.has_transport() {
        parse_l4(&dgram[w.l4_offset..], s, Layer::Icmpv6, snapped)
    } else {
        Ok(())
    };
    if snapped {
        return Err(truncated);
    }
    l4
}

/// Parse the transport header in `l4` (bounded by the datagram end, or by the capture when
/// `snapped`). In a fragment or a snapped capture the UDP length field describes bytes that
/// are not all here, so only the 8-byte header must be; otherwise the datagram is bounded by it.
#[inline]
fn parse_l4(l4: &[u8], s: &mut Summary, icmp_layer: Layer, snapped: bool) -> Result<()> {
    match s.protocol {
        proto::TCP => {
            let t = TcpPacket::new_checked(l4)?;
            s.src_port = t.src_port();
            s.dst_port = t.dst_port();
            s.tcp_flags = t.flags();
            s.flags |= flag::HAS_PORTS;
            s.payload_offset = s.l4_offset + t.header_len();
        }
        proto::UDP if snapped || s.is_fragment() => {
            if l4.len() < super::udp::HEADER_LEN {
                return Err(Error::truncated(
                    Layer::Udp,
                    super::udp::HEADER_LEN,
                    l4.len(),
                ));
            }
            s.src_port = be16(l4, 0);
            s.dst_port = be16(l4, 2);
            s.flags |= flag::HAS_PORTS;
            s.payload_offset = s.l4_offset + super::udp::HEADER_LEN;
        }
        proto::UDP => {
            let u = UdpPacket::new_checked(l4)?;
            s.src_port = u.src_port();
            s.dst_port = u.dst_port();
            s.flags |= flag::HAS_PORTS;
            s.payload_offset = s.l4_offset + super::udp::HEADER_LEN;
            // RFC 768: the datagram (and its checksum) covers `length` bytes, not the IP rest.
            s.end = s.l4_offset + usize::from(u.len());
        }
        proto::ICMP | proto::ICMPV6
            if (s.protocol == proto::ICMP) == (icmp_layer == Layer::Icmp) =>
        {
            let i = IcmpPacket::new_checked(l4, icmp_layer)?;
            s.icmp_type = i.msg_type();
            s.icmp_code = i.msg_code();
            s.flags |= flag::HAS_ICMP;
            s.payload_offset = s.l4_offset + super::icmp::HEADER_LEN;
        }
        _ => {}
    }
    Ok(())
}

/// The checksums a parsed frame carries: the IPv4 header's, and the transport one with the
/// accumulator of its pseudo-header (0 for ICMPv4, which has none).
struct ChecksumPlan {
    /// Start and length of the IPv4 header (checksum field at +10).
    ipv4_header: Option<(usize, usize)>,
    /// Layer, absolute offset of the checksum field, pseudo-header accumulator.
    transport: Option<(Layer, usize, u64)>,
}

fn checksum_plan(data: &[u8], s: &Summary) -> ChecksumPlan {
    let mut plan = ChecksumPlan {
        ipv4_header: None,
        transport: None,
    };
    let l3 = data.get(s.l3_offset..s.end).unwrap_or(&[]);
    let l4_len = s.end.saturating_sub(s.l4_offset) as u32;
    let pseudo = match s.version {
        4 => {
            let hl = s.l4_offset - s.l3_offset;
            plan.ipv4_header = Some((s.l3_offset, hl));
            let src = [s.src[0], s.src[1], s.src[2], s.src[3]];
            let mut dst = [s.dst[0], s.dst[1], s.dst[2], s.dst[3]];
            if hl > ipv4::MIN_HEADER_LEN {
                // A source route names the final destination (RFC 9293 section 3.1).
                let opts = l3.get(ipv4::MIN_HEADER_LEN..hl).unwrap_or(&[]);
                dst = ipv4::source_route_destination(opts).unwrap_or(dst);
            }
            checksum::pseudo_v4(&src, &dst, s.protocol, l4_len)
        }
        6 => {
            let mut dst = s.dst;
            if s.ext_types[..usize::from(s.ext_count)].contains(&proto::IPV6_ROUTE) {
                // RFC 8200 section 8.1: the final destination of a routing header.
                let dgram = data.get(s.l3_offset..).unwrap_or(&[]);
                if let Ok(w) = ipv6::walk_ext(dgram.get(..s.length as usize).unwrap_or(dgram)) {
                    dst = w.final_dst.unwrap_or(dst);
                }
            }
            checksum::pseudo_v6(&s.src, &dst, s.protocol, l4_len)
        }
        _ => return plan,
    };
    // A fragment's transport checksum covers the reassembled datagram: not checkable here.
    if !s.is_fragment() {
        plan.transport = match s.protocol {
            proto::TCP if s.has_ports() => Some((Layer::Tcp, s.l4_offset + 16, pseudo)),
            proto::UDP if s.has_ports() => Some((Layer::Udp, s.l4_offset + 6, pseudo)),
            proto::ICMP if s.has(flag::HAS_ICMP) => Some((Layer::Icmp, s.l4_offset + 2, 0)),
            proto::ICMPV6 if s.has(flag::HAS_ICMP) => {
                Some((Layer::Icmpv6, s.l4_offset + 2, pseudo))
            }
            _ => None,
        };
    }
    plan
}

/// The checksum `region` should carry in its field at `field` (relative to the region).
fn expected_checksum(layer: Layer, region: &[u8], field: usize, acc: u64) -> u16 {
    let before = region.get(..field).unwrap_or(region);
    let after = region.get(field + 2..).unwrap_or(&[]);
    // Sum the two sides of the field; `before` has even length, so word alignment holds.
    let c = checksum::finish(checksum::sum(after, checksum::sum(before, acc)));
    if c == 0 && layer == Layer::Udp {
        0xffff // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
    } else {
        c
    }
}

/// Verify the IPv4 header checksum and the transport checksum of an already parsed frame.
/// Fragments' transport checksums cannot be checked (they cover the reassembled datagram) and are
/// skipped; a zero UDP checksum over IPv4 means "none" (RFC 768) and passes, over IPv6 it fails.
/// The pseudo-header uses the final destination of a source route or routing header.
pub fn verify_checksums(data: &[u8], s: &Summary) -> Result<()> {
    let plan = checksum_plan(data, s);
    if let Some((at, hl)) = plan.ipv4_header {
        let header = data.get(at..at + hl).unwrap_or(&[]);
        if checksum::fold(checksum::sum(header, 0)) != 0xffff {
            return Err(Error::new(
                Layer::Ipv4,
                ErrorKind::BadChecksum,
                usize::from(be16(header, 10)),
                usize::from(expected_checksum(Layer::Ipv4, header, 10, 0)),
            ));
        }
    }
    if let Some((layer, at, acc)) = plan.transport {
        let l4 = data.get(s.l4_offset..s.end).unwrap_or(&[]);
        let field = at - s.l4_offset;
        let found = be16(l4, field);
        if layer == Layer::Udp && found == 0 && s.version == 4 {
            return Ok(());
        }
        if checksum::fold(checksum::sum(l4, acc)) != 0xffff {
            return Err(Error::new(
                layer,
                ErrorKind::BadChecksum,
                usize::from(found),
                usize::from(expected_checksum(layer, l4, field, acc)),
            ));
        }
    }
    Ok(())
}

/// Recompute and store the IPv4 header checksum and the transport checksum of a parsed frame
/// (after NAT or any rewrite). Fragments keep their transport checksum. Returns the offsets
/// of the two-byte fields written (IPv4 header, transport).
pub fn fill_checksums(data: &mut [u8], s: &Summary) -> [Option<usize>; 2] {
    let plan = checksum_plan(data, s);
    let mut written = [None, None];
    if let Some((at, hl)) = plan.ipv4_header {
        if let Some(header) = data.get(at..at + hl) {
            let c = expected_checksum(Layer::Ipv4, header, 10, 0);
            super::put16(data, at + 10, c);
            written[0] = Some(at + 10);
        }
    }
    if let Some((layer, at, acc)) = plan.transport {
        if let Some(l4) = data.get(s.l4_offset..s.end) {
            let c = expected_checksum(layer, l4, at - s.l4_offset, acc);
            super::put16(data, at, c);
            written[1] = Some(at);
        }
    }
    written
}

/// Size of one batch row in bytes. The layout (native byte order) is mirrored by the numpy dtype
/// in `python/meshcore/wire.py`; [`ROW_FIELDS`] lists it so the binding can check the mirror.
pub const ROW_LEN: usize = 64;

/// `(name, offset, size)` of each batch row field.
pub const ROW_FIELDS: [(&str, usize, usize); 21] = [
    ("src", 0, 16),
    ("dst", 16, 16),
    ("length", 32, 4),
    ("sport", 36, 2),
    ("dport", 38, 2),
    ("vlan", 40, 2),
    ("l3_offset", 42, 2),
    ("l4_offset", 44, 2),
    ("payload_offset", 46, 2),
    ("proto", 48, 1),
    ("version", 49, 1),
    ("ttl", 50, 1),
    ("error", 51, 1),
    ("flags", 52, 1),
    ("tcp_flags", 53, 1),
    ("icmp_type", 54, 1),
    ("icmp_code", 55, 1),
    ("tos", 56, 1),
    ("vlan_count", 57, 1),
    ("ethertype", 58, 2),
    ("frag_offset", 60, 2),
];

#[inline]
fn sat16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// Encode a summary into one batch row (native byte order). `error` is 0 or an [`Error::code`].
#[inline]
pub fn encode_row(s: &Summary, error: u8, row: &mut [u8; ROW_LEN]) {
    row[0..16].copy_from_slice(&s.src);
    row[16..32].copy_from_slice(&s.dst);
    row[32..36].copy_from_slice(&s.length.to_ne_bytes());
    row[36..38].copy_from_slice(&s.src_port.to_ne_bytes());
    row[38..40].copy_from_slice(&s.dst_port.to_ne_bytes());
    let vid = if s.vlan_count > 0 {
        s.vlan_tci[0] & 0x0fff
    } else {
        0
    };
    row[40..42].copy_from_slice(&vid.to_ne_bytes());
    row[42..44].copy_from_slice(&sat16(s.l3_offset).to_ne_bytes());
    row[44..46].copy_from_slice(&sat16(s.l4_offset).to_ne_bytes());
    row[46..48].copy_from_slice(&sat16(s.payload_offset).to_ne_bytes());
    row[48] = s.protocol;
    row[49] = s.version;
    row[50] = s.ttl;
    row[51] = error;
    row[52] = s.flags;
    row[53] = s.tcp_flags as u8;
    row[54] = s.icmp_type;
    row[55] = s.icmp_code;
    row[56] = s.tos;
    row[57] = s.vlan_count;
    row[58..60].copy_from_slice(&s.ethertype.to_ne_bytes());
    row[60..62].copy_from_slice(&s.frag_offset.to_ne_bytes());
    row[62..64].fill(0);
}

/// The flow fields of a batch row, as [`encode_row`] wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowFlow {
    /// 4, 6, or 0 for a frame that is not IP.
    pub version: u8,
    /// 0, or the [`Error::code`] of the frame.
    pub error: u8,
    /// IPv4 in the first four bytes (rest zero), IPv6 in all sixteen; network byte order.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// 0 when the frame has no ports.
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

/// Read the flow fields of a batch row.
#[inline]
pub fn decode_flow(row: &[u8; ROW_LEN]) -> RowFlow {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&row[0..16]);
    dst.copy_from_slice(&row[16..32]);
    RowFlow {
        version: row[49],
        error: row[51],
        src,
        dst,
        sport: u16::from_ne_bytes([row[36], row[37]]),
        dport: u16::from_ne_bytes([row[38], row[39]]),
        proto: row[48],
    }
}

/// How many packets ahead `parse_batch` prefetches.
const PREFETCH_AHEAD: usize = 8;

/// Hint the CPU to load the first two cache lines at `buf[at..]` (no-op off x86_64).
#[inline]
fn prefetch(buf: &[u8], at: i64) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at = usize::try_from(at).unwrap_or(0).min(buf.len());
        let p = buf[at..].as_ptr().cast::<i8>();
        // SAFETY (audited hot spot): SSE is part of the x86_64 baseline, and a prefetch has no
        // architectural effect: it never faults and reads nothing into the program, whatever
        // the address. `wrapping_add` keeps the pointer arithmetic defined past the buffer end.
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (buf, at);
    }
}

/// Why a batch's offsets were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetError {
    /// `out` does not hold `ROW_LEN` bytes per packet, or there are no offsets at all.
    Shape,
    /// `offsets[index]` is negative or past the end of the buffer.
    OutOfRange { index: usize, value: i64 },
    /// `offsets[index] > offsets[index + 1]`.
    Decreasing { index: usize },
}

/// Check the offsets of a batch over `len` bytes: at least one, none negative or past the end,
/// never decreasing. Returns the number of packets, `offsets.len() - 1`.
pub fn check_offsets(offsets: &[i64], len: usize) -> core::result::Result<usize, OffsetError> {
    let n = offsets.len().checked_sub(1).ok_or(OffsetError::Shape)?;
    let mut prev = 0usize;
    for (index, &value) in offsets.iter().enumerate() {
        let v = usize::try_from(value).map_err(|_| OffsetError::OutOfRange { index, value })?;
        if v > len {
            return Err(OffsetError::OutOfRange { index, value });
        }
        if index > 0 && v < prev {
            return Err(OffsetError::Decreasing { index: index - 1 });
        }
        prev = v;
    }
    Ok(n)
}

/// Parse `offsets.len() - 1` packets; packet `i` is `buf[offsets[i]..offsets[i + 1]]`.
/// All offsets are checked before any row is written. Packet errors go into each row's `error`
/// column instead of failing the batch. With `verify`, bad checksums are reported there too.
pub fn parse_batch(
    buf: &[u8],
    offsets: &[i64],
    link: LinkType,
    verify: bool,
    out: &mut [u8],
) -> core::result::Result<(), OffsetError> {
    let n = check_offsets(offsets, buf.len())?;
    if out.len() != n * ROW_LEN {
        return Err(OffsetError::Shape);
    }
    for (i, (w, row)) in offsets
        .windows(2)
        .zip(out.chunks_exact_mut(ROW_LEN))
        .enumerate()
    {
        // Headers of packets a few places ahead are fetched into cache now (as DPDK's drivers
        // do): each frame's header is a fresh cache line, and without this the loop waits on
        // memory for every packet once frames are larger than a few cache lines.
        if let Some(&ahead) = offsets.get(i + PREFETCH_AHEAD) {
            prefetch(buf, ahead);
        }
        // Checked above: 0 <= w[0] <= w[1] <= buf.len().
        let (a, b) = (
            usize::try_from(w[0]).unwrap_or(0),
            usize::try_from(w[1]).unwrap_or(0),
        );
        let pkt = buf.get(a..b).unwrap_or(&[]);
        let Ok(row) = <&mut [u8; ROW_LEN]>::try_from(row) else {
            continue;
        };
        if !verify && fast_row(pkt, link, row) {
            continue;
        }
        let mut s = Summary::default();
        let mut code = match parse_into(pkt, link, &mut s) {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        if verify && code == 0 {
            if let Err(e) = verify_checksums(pkt, &s) {
                code = e.code();
            }
        }
        encode_row(&s, code, row);
    }
    Ok(())
}

/// The common case of a batch in one straight pass: Ethernet (untagged or one 802.1Q tag) or raw
/// IP, then IPv4 without options or fragmentation or IPv6 without extension headers, then a
/// complete TCP or UDP header. Writes the row `encode_row` would write and returns true; returns
/// false, writing nothing, for anything else, which then takes the general path. The fuzz target
/// checks that both paths give the same rows.
#[inline]
fn fast_row(pkt: &[u8], link: LinkType, row: &mut [u8; ROW_LEN]) -> bool {
    let (l3, et, tci) = match link {
        LinkType::Ethernet => {
            let (Some(&et_hi), Some(&et_lo)) = (pkt.get(12), pkt.get(13)) else {
                return false;
            };
            match u16::from_be_bytes([et_hi, et_lo]) {
                et @ (ethertype::IPV4 | ethertype::IPV6) => (14, et, None),
                ethertype::VLAN if pkt.len() >= 18 => match be16(pkt, 16) {
                    et @ (ethertype::IPV4 | ethertype::IPV6) => (18, et, Some(be16(pkt, 14))),
                    _ => return false,
                },
                _ => return false,
            }
        }
        LinkType::Ip => match pkt.first().map(|b| b >> 4) {
            Some(4) => (0, ethertype::IPV4, None),
            Some(6) => (0, ethertype::IPV6, None),
            _ => return false,
        },
        _ => return false,
    };
    let d = &pkt[l3..];
    // Checks first: nothing is written unless the fast path applies.
    let (hl, total, proto, ttl, tos, mut flags) = if et == ethertype::IPV4 {
        // Version 4, IHL 5, no MF, offset 0 (DF allowed).
        if d.len() < 20 || d[0] != 0x45 || be16(d, 6) & 0xbfff != 0 {
            return false;
        }
        let total = usize::from(be16(d, 2));
        if total < 20 || total > d.len() {
            return false;
        }
        let df = if d[6] & 0x40 != 0 {
            flag::DONT_FRAGMENT
        } else {
            0
        };
        (20, total, d[9], d[8], d[1], df)
    } else {
        if d.len() < 40 || d[0] >> 4 != 6 {
            return false;
        }
        let total = 40 + usize::from(be16(d, 4));
        if total > d.len() {
            return false;
        }
        (40, total, d[6], d[7], ((be16(d, 0) >> 4) & 0xff) as u8, 0)
    };
    let l4 = &d[hl..total];
    let (payload, tcp_flags) = match proto {
        proto::TCP => {
            if l4.len() < 20 {
                return false;
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return false;
            }
            (doff, l4[13])
        }
        proto::UDP => {
            let ulen = usize::from(be16(l4, 4));
            if l4.len() < 8 || ulen < 8 || ulen > l4.len() {
                return false;
            }
            (8, 0)
        }
        _ => return false,
    };
    flags |= flag::HAS_PORTS;
    if tci.is_some() {
        flags |= flag::VLAN;
    }
    let l4_at = l3 + hl;
    row.fill(0);
    if hl == 20 {
        row[0..4].copy_from_slice(&d[12..16]);
        row[16..20].copy_from_slice(&d[16..20]);
    } else {
        row[0..16].copy_from_slice(&d[8..24]);
        row[16..32].copy_from_slice(&d[24..40]);
    }
    row[32..36].copy_from_slice(&(total as u32).to_ne_bytes());
    row[36..38].copy_from_slice(&be16(l4, 0).to_ne_bytes());
    row[38..40].copy_from_slice(&be16(l4, 2).to_ne_bytes());
    row[40..42].copy_from_slice(&tci.map_or(0, |t| t & 0x0fff).to_ne_bytes());
    row[42..44].copy_from_slice(&(l3 as u16).to_ne_bytes());
    row[44..46].copy_from_slice(&(l4_at as u16).to_ne_bytes());
    row[46..48].copy_from_slice(&((l4_at + payload) as u16).to_ne_bytes());
    row[48] = proto;
    row[49] = if hl == 20 { 4 } else { 6 };
    row[50] = ttl;
    row[52] = flags;
    row[53] = tcp_flags;
    row[56] = tos;
    row[57] = u8::from(tci.is_some());
    row[58..60].copy_from_slice(&et.to_ne_bytes());
    true
}

/// Decrement the TTL / hop limit of the IP header at `data[l3_offset..]`, patching the IPv4 checksum
/// incrementally. Returns the new value.
pub fn decrement_ttl(data: &mut [u8], l3_offset: usize) -> Result<u8> {
    let l3 = data
        .get_mut(l3_offset..)
        .ok_or(Error::truncated(Layer::Ip, l3_offset + 1, 0))?;
    match byte(l3, 0) >> 4 {
        4 => ipv4::decrement_ttl(l3),
        6 => ipv6::decrement_hop_limit(l3),
        _ if l3.is_empty() => Err(Error::truncated(Layer::Ip, 1, 0)),
        v => Err(Error::new(Layer::Ip, ErrorKind::BadVersion, v as usize, 4)),
    }
}

/// Set ECN CE on the IP header at `data[l3_offset..]` if the packet is ECN-capable (see
/// [`ipv4::set_ce`], [`ipv6::set_ce`]); whether it now carries CE.
pub fn set_ce(data: &mut [u8], l3_offset: usize) -> Result<bool> {
    let l3 = data
        .get_mut(l3_offset..)
        .ok_or(Error::truncated(Layer::Ip, l3_offset + 1, 0))?;
    match byte(l3, 0) >> 4 {
        4 => ipv4::set_ce(l3),
        6 => ipv6::set_ce(l3),
        _ if l3.is_empty() => Err(Error::truncated(Layer::Ip, 1, 0)),
        v => Err(Error::new(Layer::Ip, ErrorKind::BadVersion, v as usize, 4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::{ipv4_header, IpSpec, L4Spec, PacketSpec};
    use crate::wire::ethernet::EthernetAddress;
    use crate::wire::udp::UdpRepr;

    #[test]
    fn fill_restores_what_a_rewrite_broke() {
        let spec = PacketSpec {
            link: LinkType::Ip,
            eth_src: EthernetAddress::default(),
            eth_dst: EthernetAddress::default(),
            vlans: vec![],
            ip: IpSpec::V4(ipv4_header([10, 0, 0, 1], [10, 0, 0, 2])),
            l4: L4Spec::Udp(UdpRepr {
                src_port: 5,
                dst_port: 6,
            }),
            payload: b"odd".to_vec(),
        };
        let good = spec.build().unwrap();
        let mut nat = good.clone();
        nat[12..16].copy_from_slice(&[192, 0, 2, 7]); // source NAT
        let s = parse(&nat, LinkType::Ip).unwrap();
        assert!(verify_checksums(&nat, &s).is_err());
        assert_eq!(fill_checksums(&mut nat, &s), [Some(10), Some(26)]);
        assert!(verify_checksums(&nat, &s).is_ok());
        let mut again = good.clone();
        let s = parse(&again, LinkType::Ip).unwrap();
        fill_checksums(&mut again, &s);
        assert_eq!(again, good);
    }

    #[test]
    fn rows_decode_to_their_flow() {
        let mut s = Summary {
            version: 6,
            protocol: 17,
            src_port: 0x1234,
            dst_port: 53,
            ..Summary::default()
        };
        s.src[0] = 0x20;
        s.src[15] = 1;
        s.dst[1] = 0x0d;
        let mut row = [0xaa; ROW_LEN];
        encode_row(&s, 7, &mut row);
        let f = decode_flow(&row);
        assert_eq!(
            (f.version, f.error, f.src, f.dst, f.sport, f.dport, f.proto),
            (6, 7, s.src, s.dst, 0x1234, 53, 17)
        );
        // The fields decode_flow reads are where ROW_FIELDS says they are.
        let at = |name: &str| ROW_FIELDS.iter().find(|f| f.0 == name).unwrap().1;
        assert_eq!(
            [at("src"), at("dst"), at("sport"), at("dport"), at("proto")],
            [0, 16, 36, 38, 48]
        );
        assert_eq!([at("version"), at("error")], [49, 51]);
    }

    #[test]
    fn offsets_are_checked_once_for_every_caller() {
        assert_eq!(check_offsets(&[0, 3, 3, 10], 10), Ok(3));
        assert_eq!(check_offsets(&[], 10), Err(OffsetError::Shape));
        assert_eq!(
            check_offsets(&[0, 11], 10),
            Err(OffsetError::OutOfRange {
                index: 1,
                value: 11
            })
        );
        assert_eq!(
            check_offsets(&[0, 5, 4], 10),
            Err(OffsetError::Decreasing { index: 1 })
        );
    }
}
