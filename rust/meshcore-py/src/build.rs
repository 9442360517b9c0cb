//! `build_packet`, `checksum`, `decrement_ttl`, `mark_ce`: emitting and patching packets from Python.

use crate::batch::Pinned;
use crate::convert;
use crate::error::{self, guard, raise, Exc};
use meshcore_core::wire::build::{ipv4_header, IpSpec, Ipv6Frag, L4Spec, PacketSpec};
use meshcore_core::wire::checksum as csum;
use meshcore_core::wire::ethernet::{ethertype, EthernetAddress, VlanTag};
use meshcore_core::wire::icmp::IcmpRepr;
use meshcore_core::wire::ipv6::Ipv6Repr;
use meshcore_core::wire::proto;
use meshcore_core::wire::stack;
use meshcore_core::wire::tcp::TcpRepr;
use meshcore_core::wire::udp::UdpRepr;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyInt, PyString};
use std::net::IpAddr;

fn mac(py: Python<'_>, s: &str, what: &str) -> PyResult<EthernetAddress> {
    EthernetAddress::parse(s).ok_or_else(|| {
        raise(
            py,
            Exc::Packet,
            format!("{what}: {s:?} is not a MAC address"),
        )
    })
}

/// TCP flags from an int or from letters as tcpdump / scapy write them ("SA", "FPU", ...).
fn tcp_flags(obj: &Bound<'_, PyAny>) -> PyResult<u16> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        let mut v = 0u16;
        for c in s.to_cow()?.chars() {
            v |= match c.to_ascii_uppercase() {
                'F' => 0x001,
                'S' => 0x002,
                'R' => 0x004,
                'P' => 0x008,
                'A' => 0x010,
                'U' => 0x020,
                'E' => 0x040,
                'C' => 0x080,
                'N' => 0x100,
                '.' => 0,
                other => {
                    return Err(raise(
                        py,
                        Exc::Packet,
                        format!("unknown TCP flag letter {other:?}"),
                    ))
                }
            };
        }
        return Ok(v);
    }
    Ok(convert::int_in(obj, "tcp_flags", 0x1ff)? as u16)
}

fn protocol(obj: &Bound<'_, PyAny>, v6: bool) -> PyResult<(Option<&'static str>, u8)> {
    let py = obj.py();
    if obj.cast::<PyInt>().is_ok() {
        return Ok((None, convert::int_in(obj, "proto", 0xff)? as u8));
    }
    let name: String = obj.extract()?;
    Ok(match name.to_ascii_lowercase().as_str() {
        "tcp" => (Some("tcp"), proto::TCP),
        "udp" => (Some("udp"), proto::UDP),
        "icmp" | "icmpv6" => (Some("icmp"), if v6 { proto::ICMPV6 } else { proto::ICMP }),
        _ => {
            return Err(raise(
                py,
                Exc::Packet,
                format!(
                    "unknown protocol {name:?}: use 'tcp', 'udp', 'icmp', 'icmpv6' or a number"
                ),
            ))
        }
    })
}

/// Build a complete packet; see `meshcore.build_packet` in the stubs for the arguments.
#[pyfunction]
#[pyo3(signature = (
    src, dst, *, proto = None, sport = 0, dport = 0, payload = None, link = "ethernet",
    ttl = 64, tos = 0, ident = 0, dont_fragment = false, more_fragments = false, frag_offset = 0,
    ip_options = None, flow_label = 0, ext_headers = None,
    eth_src = "02:00:00:00:00:01", eth_dst = "02:00:00:00:00:02", vlan = None, vlan_tci = None,
    tcp_flags = None, seq = 0, ack = 0, window = 65535, urgent = 0, tcp_options = None,
    icmp_type = None, icmp_code = 0, icmp_rest = 0
))]
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)] // mirrors a keyword API
pub fn build_packet<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyAny>,
    dst: &Bound<'py, PyAny>,
    proto: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = convert::arg_sport)] sport: u16,
    #[pyo3(from_py_with = convert::arg_dport)] dport: u16,
    payload: Option<PyBackedBytes>,
    link: &str,
    #[pyo3(from_py_with = convert::arg_ttl)] ttl: u8,
    #[pyo3(from_py_with = convert::arg_tos)] tos: u8,
    #[pyo3(from_py_with = convert::arg_ident)] ident: u32,
    dont_fragment: bool,
    more_fragments: bool,
    #[pyo3(from_py_with = convert::arg_frag_offset)] frag_offset: u16,
    ip_options: Option<PyBackedBytes>,
    #[pyo3(from_py_with = convert::arg_flow_label)] flow_label: u32,
    ext_headers: Option<Vec<(u8, PyBackedBytes)>>,
    eth_src: &str,
    eth_dst: &str,
    #[pyo3(from_py_with = convert::arg_vlan)] vlan: Option<Vec<u16>>,
    #[pyo3(from_py_with = convert::arg_vlan_tci)] vlan_tci: Option<Vec<u16>>,
    tcp_flags: Option<&Bound<'py, PyAny>>,
    #[pyo3(from_py_with = convert::arg_seq)] seq: u32,
    #[pyo3(from_py_with = convert::arg_ack)] ack: u32,
    #[pyo3(from_py_with = convert::arg_window)] window: u16,
    #[pyo3(from_py_with = convert::arg_urgent)] urgent: u16,
    tcp_options: Option<PyBackedBytes>,
    #[pyo3(from_py_with = convert::arg_icmp_type)] icmp_type: Option<u8>,
    #[pyo3(from_py_with = convert::arg_icmp_code)] icmp_code: u8,
    #[pyo3(from_py_with = convert::arg_icmp_rest)] icmp_rest: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    let link = convert::link(py, link)?;
    let (src, dst) = (convert::ip_addr(src, "src")?, convert::ip_addr(dst, "dst")?);
    let v6 = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => {
            return Err(raise(
                py,
                Exc::Packet,
                "src and dst must be the same IP version",
            ))
        }
    };
    let (kind, number) = match proto {
        Some(p) => protocol(p, v6)?,
        None => (Some("udp"), proto::UDP),
    };
    let l4 = match kind {
        Some("tcp") => L4Spec::Tcp(TcpRepr {
            src_port: sport,
            dst_port: dport,
            seq,
            ack,
            flags: match tcp_flags {
                Some(f) => self::tcp_flags(f)?,
                None => 0x002,
            },
            window,
            urgent,
            options: tcp_options.map(|b| b.to_vec()).unwrap_or_default(),
        }),
        Some("udp") => L4Spec::Udp(UdpRepr {
            src_port: sport,
            dst_port: dport,
        }),
        Some(_) => L4Spec::Icmp(IcmpRepr {
            msg_type: icmp_type.unwrap_or(if v6 { 128 } else { 8 }),
            msg_code: icmp_code,
            rest: icmp_rest,
        }),
        None => L4Spec::Raw(number),
    };
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut r = ipv4_header(s.octets(), d.octets());
            r.ttl = ttl;
            r.tos = tos;
            r.ident = u16::try_from(ident)
                .map_err(|_| raise(py, Exc::Packet, "ipv4 ident must fit in 16 bits"))?;
            r.dont_frag = dont_fragment;
            r.more_frags = more_fragments;
            r.frag_offset = frag_offset;
            r.options = ip_options.map(|b| b.to_vec()).unwrap_or_default();
            IpSpec::V4(r)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => IpSpec::V6 {
            repr: Ipv6Repr {
                src: s.octets(),
                dst: d.octets(),
                next_header: 0,
                hop_limit: ttl,
                traffic_class: tos,
                flow_label,
                payload_len: 0,
            },
            ext: ext_headers
                .unwrap_or_default()
                .into_iter()
                .map(|(t, b)| (t, b.to_vec()))
                .collect(),
            frag: (more_fragments || frag_offset != 0).then_some(Ipv6Frag {
                offset: frag_offset,
                more: more_fragments,
                ident,
            }),
        },
        _ => unreachable!("versions checked above"),
    };
    if vlan.is_some() && vlan_tci.is_some() {
        return Err(raise(
            py,
            Exc::Packet,
            "pass vlan (ids) or vlan_tci, not both",
        ));
    }
    let tags = vlan_tci.or(vlan).unwrap_or_default();
    let n_tags = tags.len();
    let spec = PacketSpec {
        link,
        eth_src: mac(py, eth_src, "eth_src")?,
        eth_dst: mac(py, eth_dst, "eth_dst")?,
        vlans: tags
            .into_iter()
            .enumerate()
            .map(|(i, tci)| VlanTag {
                // QinQ: the outer tag of a stack is a service tag (802.1ad).
                tpid: if n_tags > 1 && i == 0 {
                    ethertype::QINQ
                } else {
                    ethertype::VLAN
                },
                tci,
            })
            .collect(),
        ip,
        l4,
        payload: payload.map(|b| b.to_vec()).unwrap_or_default(),
    };
    let bytes = guard(py, || spec.build().map_err(|e| error::build(py, &e)))?;
    Ok(PyBytes::new(py, &bytes))
}

/// The Internet checksum (RFC 1071) of a byte buffer.
#[pyfunction]
pub fn checksum(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<u16> {
    let pinned = Pinned::get(data, "data")?;
    Ok(pinned.detach(py, csum::checksum))
}

/// Run `patch` on a copy of the IP header at `buffer[l3_offset..]` and write the bytes it
/// changed back into the buffer.
///
/// The header is copied out, patched, and only the changed bytes are written back through the raw
/// pointer: no Rust reference to the shared buffer is formed, so another thread writing the same
/// buffer at the same time (free-threaded Python) gets unspecified bytes, never unsoundness here.
fn patch_ip_header<R>(
    py: Python<'_>,
    buffer: &Bound<'_, PyAny>,
    l3_offset: usize,
    patch: impl FnOnce(&mut [u8]) -> meshcore_core::wire::Result<R>,
) -> PyResult<R> {
    let buf = convert::byte_buffer(buffer, "buffer", true)?;
    let len = buf.len_bytes();
    let avail = len.saturating_sub(l3_offset).min(MAX_IP_HEADER);
    let mut header = [0u8; MAX_IP_HEADER];
    let base = buf.buf_ptr().cast::<u8>();
    if avail > 0 {
        // SAFETY: `l3_offset + avail <= len`, the exported, C-contiguous buffer's size, and the
        // export keeps it alive and unresizable until `buf` drops at the end of this function.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(l3_offset), header.as_mut_ptr(), avail);
        }
    }
    let before = header;
    let r = guard(py, || {
        patch(&mut header[..avail]).map_err(|e| error::wire(py, e))
    })?;
    for at in (0..avail).filter(|&i| header[i] != before[i]) {
        // SAFETY: as above; `at < avail`.
        #[allow(unsafe_code)]
        unsafe {
            *base.add(l3_offset + at) = header[at];
        }
    }
    Ok(r)
}

/// Decrement the TTL / hop limit in place, patching the IPv4 header checksum (RFC 1624).
#[pyfunction]
#[pyo3(signature = (buffer, l3_offset = 0))]
pub fn decrement_ttl(
    py: Python<'_>,
    buffer: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = convert::arg_l3_offset)] l3_offset: usize,
) -> PyResult<u8> {
    patch_ip_header(py, buffer, l3_offset, |h| stack::decrement_ttl(h, 0))
}

/// Set ECN Congestion Experienced in place on an ECN-capable packet (RFC 3168), patching the
/// IPv4 header checksum; whether the packet now carries CE (False for Not-ECT, left unchanged).
#[pyfunction]
#[pyo3(signature = (buffer, l3_offset = 0))]
pub fn mark_ce(
    py: Python<'_>,
    buffer: &Bound<'_, PyAny>,
    #[pyo3(from_py_with = convert::arg_l3_offset)] l3_offset: usize,
) -> PyResult<bool> {
    patch_ip_header(py, buffer, l3_offset, |h| stack::set_ce(h, 0))
}

/// The longest IP header `decrement_ttl` and `mark_ce` need: IPv4 with 40 bytes of options.
const MAX_IP_HEADER: usize = 60;

/// Recompute the IPv4 header checksum and the transport checksum of the frame in `buffer`
/// in place (after rewriting addresses or ports); returns how many checksums were written.
///
/// The frame is parsed from a copy; only the checksum fields are written back through the raw
/// pointer, so no Rust reference to the shared buffer is formed (see `decrement_ttl`).
#[pyfunction]
#[pyo3(signature = (buffer, link = "ethernet"))]
pub fn update_checksums(py: Python<'_>, buffer: &Bound<'_, PyAny>, link: &str) -> PyResult<usize> {
    let link = convert::link(py, link)?;
    let buf = convert::byte_buffer(buffer, "buffer", true)?;
    let frame = buf.to_vec(py)?;
    let base = buf.buf_ptr().cast::<u8>();
    guard(py, || {
        let s = stack::parse(&frame, link).map_err(|e| error::wire(py, e))?;
        let mut fixed = frame.clone();
        let written = stack::fill_checksums(&mut fixed, &s);
        let mut n = 0;
        for at in written.into_iter().flatten() {
            // SAFETY: `at + 2 <= frame.len() == buf.len_bytes()` (the field lies inside the
            // parsed frame), and the export keeps the buffer alive and unresizable until `buf`
            // drops at the end of this function.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::copy_nonoverlapping(fixed.as_ptr().add(at), base.add(at), 2);
            }
            n += 1;
        }
        Ok(n)
    })
}
