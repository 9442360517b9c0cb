//! Emit complete packets: link header, IP header (with IPv4 options or IPv6 extension headers),
//! transport header and payload, with every length and checksum filled in.
//!
//! Used by tests, the demo and the router to make packets; parse(build(spec)) gives back the spec.

use super::checksum;
use super::ethernet::{
    ethertype, EthernetAddress, EthernetRepr, VlanTag, SLL2_HEADER_LEN, SLL_HEADER_LEN,
};
use super::icmp::{self, IcmpRepr};
use super::ipv4;
use super::ipv4::Ipv4Repr;
use super::ipv6::{self, Ipv6Repr};
use super::stack::{self, LinkType};
use super::tcp::TcpRepr;
use super::udp::{self, UdpRepr};
use super::{proto, put16, put32};
use core::fmt;

/// Why a packet could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

fn err<T>(msg: impl Into<String>) -> Result<T, BuildError> {
    Err(BuildError(msg.into()))
}

/// The network layer to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpSpec {
    /// `payload_len` and `protocol` are filled in by [`PacketSpec::build`].
    V4(Ipv4Repr),
    /// `payload_len` and `next_header` are filled in by [`PacketSpec::build`]. `ext` lists
    /// extension headers as `(type, body)`: the body follows the two-byte `next, length` prefix
    /// and is zero-padded (Pad1 options) to the header's unit. A fragment header is added at the
    /// end of the chain when `frag` is set.
    V6 {
        repr: Ipv6Repr,
        ext: Vec<(u8, Vec<u8>)>,
        frag: Option<Ipv6Frag>,
    },
}

/// IPv6 fragment header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Frag {
    /// Offset in bytes, a multiple of 8.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

/// The transport layer to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Spec {
    Tcp(TcpRepr),
    Udp(UdpRepr),
    /// ICMP over IPv4, ICMPv6 over IPv6.
    Icmp(IcmpRepr),
    /// No transport header: the payload follows the IP header under this protocol number.
    Raw(u8),
}

/// A complete packet description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketSpec {
    pub link: LinkType,
    pub eth_src: EthernetAddress,
    pub eth_dst: EthernetAddress,
    pub vlans: Vec<VlanTag>,
    pub ip: IpSpec,
    pub l4: L4Spec,
    pub payload: Vec<u8>,
}

impl PacketSpec {
    /// Emit the packet. Fails on lengths that do not fit their fields.
    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        let (l4_len, l4_proto) = match &self.l4 {
            L4Spec::Tcp(t) => {
                if t.options.len() > 40 {
                    return err("tcp options longer than 40 bytes");
                }
                (t.header_len(), proto::TCP)
            }
            L4Spec::Udp(_) => (udp::HEADER_LEN, proto::UDP),
            L4Spec::Icmp(_) => (
                icmp::HEADER_LEN,
                match self.ip {
                    IpSpec::V4(_) => proto::ICMP,
                    IpSpec::V6 { .. } => proto::ICMPV6,
                },
            ),
            L4Spec::Raw(p) => (0, *p),
        };
        let upper_len = l4_len + self.payload.len();
        if matches!(self.l4, L4Spec::Udp(_)) && upper_len > 0xffff {
            return err(format!("udp datagram of {upper_len} bytes exceeds 65535"));
        }
        let mut ext_bytes = Vec::new();
        let (l3_hdr, ethertype) = match &self.ip {
            IpSpec::V4(r) => {
                if r.options.len() > 40 {
                    return err("ipv4 options longer than 40 bytes");
                }
                if r.frag_offset % 8 != 0 {
                    return err("fragment offset must be a multiple of 8 bytes");
                }
                let mut r = r.clone();
                r.protocol = l4_proto;
                r.payload_len = upper_len;
                if r.total_len() > 0xffff {
                    return err(format!("ipv4 total length {} exceeds 65535", r.total_len()));
                }
                let mut h = vec![0u8; r.header_len()];
                r.emit(&mut h);
                (h, ethertype::IPV4)
            }
            IpSpec::V6 { repr, ext, frag } => {
                let mut chain: Vec<(u8, Vec<u8>)> = ext.clone();
                if let Some(f) = frag {
                    if f.offset % 8 != 0 {
                        return err("fragment offset must be a multiple of 8 bytes");
                    }
                    let mut body = vec![0u8; 6];
                    put16(&mut body, 0, f.offset | u16::from(f.more));
                    put32(&mut body, 2, f.ident);
                    chain.push((proto::IPV6_FRAG, body));
                }
                for (i, (typ, body)) in chain.iter().enumerate() {
                    let next = chain.get(i + 1).map_or(l4_proto, |e| e.0);
                    let (unit, extra) = if *typ == proto::AH { (4, 2) } else { (8, 1) };
                    let total = (body.len() + 2).div_ceil(unit).max(extra) * unit;
                    let len_field = total / unit - extra;
                    if *typ == proto::IPV6_FRAG && body.len() != 6 {
                        return err("ipv6 fragment header body must be 6 bytes");
                    }
                    if len_field > 255 {
                        return err("ipv6 extension header too long");
                    }
                    ext_bytes.push(next);
                    ext_bytes.push(if *typ == proto::IPV6_FRAG {
                        0
                    } else {
                        len_field as u8
                    });
                    ext_bytes.extend_from_slice(body);
                    ext_bytes.resize(ext_bytes.len() + total - 2 - body.len(), 0);
                }
                let mut r = repr.clone();
                r.next_header = chain.first().map_or(l4_proto, |e| e.0);
                r.payload_len = ext_bytes.len() + upper_len;
                if r.payload_len > 0xffff {
                    return err(format!(
                        "ipv6 payload length {} exceeds 65535 (jumbograms are not supported)",
                        r.payload_len
                    ));
                }
                let mut h = vec![0u8; ipv6::HEADER_LEN];
                r.emit(&mut h);
                (h, ethertype::IPV6)
            }
        };
        let mut out = Vec::with_capacity(64 + l3_hdr.len() + ext_bytes.len() + upper_len);
        match self.link {
            LinkType::Ethernet => {
                let eth = EthernetRepr {
                    dst: self.eth_dst,
                    src: self.eth_src,
                    vlans: self.vlans.clone(),
                    ethertype,
                };
                out.resize(eth.header_len(), 0);
                eth.emit(&mut out);
            }
            LinkType::Sll => {
                // Packet type 0 (to us), ARPHRD_ETHER, 6-byte address.
                out.resize(SLL_HEADER_LEN, 0);
                put16(&mut out, 2, 1);
                put16(&mut out, 4, 6);
                out[6..12].copy_from_slice(&self.eth_src.0);
                put16(&mut out, 14, ethertype);
            }
            LinkType::Sll2 => {
                // Protocol, reserved, interface 1, ARPHRD_ETHER, packet type 0, 6-byte address.
                out.resize(SLL2_HEADER_LEN, 0);
                put16(&mut out, 0, ethertype);
                put32(&mut out, 4, 1);
                put16(&mut out, 8, 1);
                out[11] = 6;
                out[12..18].copy_from_slice(&self.eth_src.0);
            }
            LinkType::Ip => {}
        }
        let l3_at = out.len();
        out.extend_from_slice(&l3_hdr);
        out.extend_from_slice(&ext_bytes);
        let l4_at = out.len();
        out.resize(l4_at + l4_len, 0);
        match &self.l4 {
            L4Spec::Tcp(t) => t.emit(&mut out[l4_at..]),
            L4Spec::Udp(u) => u.emit(&mut out[l4_at..], self.payload.len()),
            L4Spec::Icmp(i) => i.emit(&mut out[l4_at..]),
            L4Spec::Raw(_) => {}
        }
        out.extend_from_slice(&self.payload);
        // The pseudo-header names the final destination when a source route or a routing
        // header says where that is (RFC 9293 section 3.1, RFC 8200 section 8.1).
        let pseudo = match &self.ip {
            IpSpec::V4(r) => {
                let dst = ipv4::source_route_destination(&r.options).unwrap_or(r.dst);
                checksum::pseudo_v4(&r.src, &dst, l4_proto, upper_len as u32)
            }
            IpSpec::V6 { repr, .. } => {
                let dst = ipv6::walk_ext(&out[l3_at..l4_at])
                    .ok()
                    .and_then(|w| w.final_dst)
                    .unwrap_or(repr.dst);
                checksum::pseudo_v6(&repr.src, &dst, l4_proto, upper_len as u32)
            }
        };
        let field = match (&self.l4, l4_proto) {
            (L4Spec::Tcp(_), _) => Some((16, pseudo)),
            (L4Spec::Udp(_), _) => Some((6, pseudo)),
            (L4Spec::Icmp(_), proto::ICMP) => Some((2, 0)),
            (L4Spec::Icmp(_), _) => Some((2, pseudo)),
            (L4Spec::Raw(_), _) => None,
        };
        if let Some((at, acc)) = field {
            let mut c = checksum::finish(checksum::sum(&out[l4_at..], acc));
            if c == 0 && l4_proto == proto::UDP {
                c = 0xffff; // RFC 768: a computed zero is sent as all ones.
            }
            put16(&mut out, l4_at + at, c);
        }
        // Never emit what the parser would refuse (bad option TLVs, hop-by-hop not first, ...).
        if let Err(e) = stack::parse(&out, self.link) {
            return err(format!("the packet would not parse: {e}"));
        }
        Ok(out)
    }
}

/// A default IPv4 header with TTL 64 for the given addresses.
pub fn ipv4_header(src: [u8; 4], dst: [u8; 4]) -> Ipv4Repr {
    Ipv4Repr {
        src,
        dst,
        protocol: 0,
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: false,
        more_frags: false,
        frag_offset: 0,
        options: Vec::new(),
        payload_len: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::stack::{self, verify_checksums};
    use super::*;

    fn spec(ip: IpSpec, l4: L4Spec) -> PacketSpec {
        PacketSpec {
            link: LinkType::Ethernet,
            eth_src: EthernetAddress([2, 0, 0, 0, 0, 1]),
            eth_dst: EthernetAddress([2, 0, 0, 0, 0, 2]),
            vlans: vec![VlanTag {
                tpid: ethertype::VLAN,
                tci: 42,
            }],
            ip,
            l4,
            payload: b"hello".to_vec(),
        }
    }

    #[test]
    fn tcp_v4_round_trip() {
        let tcp = TcpRepr {
            src_port: 1234,
            dst_port: 80,
            seq: 7,
            flags: super::super::tcp::flags::SYN,
            window: 1000,
            ..TcpRepr::default()
        };
        let bytes = spec(
            IpSpec::V4(ipv4_header([10, 0, 0, 1], [10, 0, 0, 2])),
            L4Spec::Tcp(tcp),
        )
        .build()
        .unwrap();
        let s = stack::parse(&bytes, LinkType::Ethernet).unwrap();
        assert_eq!(
            (s.version, s.protocol, s.src_port, s.dst_port),
            (4, 6, 1234, 80)
        );
        assert_eq!(s.vlan_count, 1);
        assert_eq!(s.length as usize, bytes.len() - 18);
        verify_checksums(&bytes, &s).unwrap();
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(verify_checksums(&bad, &s).is_err());
    }

    #[test]
    fn udp_v6_with_ext_and_frag() {
        let repr = Ipv6Repr {
            src: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            next_header: 0,
            hop_limit: 9,
            traffic_class: 0,
            flow_label: 0,
            payload_len: 0,
        };
        let bytes = spec(
            IpSpec::V6 {
                repr,
                ext: vec![(0, vec![]), (60, vec![1, 2, 0, 0])],
                frag: Some(Ipv6Frag {
                    offset: 0,
                    more: true,
                    ident: 99,
                }),
            },
            L4Spec::Udp(UdpRepr {
                src_port: 53,
                dst_port: 5353,
            }),
        )
        .build()
        .unwrap();
        let s = stack::parse(&bytes, LinkType::Ethernet).unwrap();
        assert_eq!(
            (s.version, s.protocol, s.src_port, s.dst_port),
            (6, 17, 53, 5353)
        );
        assert_eq!(&s.ext_types[..s.ext_count as usize], &[0, 60, 44]);
        assert!(s.is_fragment());
        assert_eq!(s.ident, 99);
    }
}
