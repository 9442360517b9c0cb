//! `meshcore.Packet`: one parsed frame, its fields read lazily from the summary.

use crate::convert;
use crate::error::{self, guard};
use meshcore_core::wire::ethernet::EthernetAddress;
use meshcore_core::wire::proto;
use meshcore_core::wire::stack::{self, flag, LinkType, Summary};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

#[pyclass(frozen, module = "meshcore", name = "Packet")]
pub struct PyPacket {
    s: Summary,
    link: LinkType,
    data: Py<PyBytes>,
}

impl PyPacket {
    fn ip(&self) -> bool {
        self.s.version != 0
    }
    fn bytes<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        self.data.as_bytes(py)
    }
    fn addr<'py>(&self, py: Python<'py>, a: &[u8; 16]) -> Option<Bound<'py, PyString>> {
        self.ip()
            .then(|| convert::format_addr(py, self.s.version, a))
    }
    fn packed<'py>(&self, py: Python<'py>, a: &[u8; 16]) -> Option<Bound<'py, PyBytes>> {
        match self.s.version {
            4 => Some(PyBytes::new(py, &a[..4])),
            6 => Some(PyBytes::new(py, a)),
            _ => None,
        }
    }
    fn proto_name(&self) -> String {
        match self.s.protocol {
            proto::TCP => "tcp".into(),
            proto::UDP => "udp".into(),
            proto::ICMP => "icmp".into(),
            proto::ICMPV6 => "icmpv6".into(),
            p => format!("proto {p}"),
        }
    }
}

#[pymethods]
impl PyPacket {
    /// Parse one frame. `link` is "ethernet" (default), "ip" (raw IP, as read from a TUN device)
    /// or "sll" (Linux cooked capture). Raises PacketError naming the layer on malformed input.
    #[classmethod]
    #[pyo3(signature = (data, link = "ethernet"))]
    fn parse(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        link: &str,
    ) -> PyResult<PyPacket> {
        let link = convert::link(py, link)?;
        let bytes = convert::packet_bytes(data)?;
        guard(py, || {
            let s = stack::parse(bytes.as_bytes(), link).map_err(|e| error::wire(py, e))?;
            Ok(PyPacket {
                s,
                link,
                data: bytes.unbind(),
            })
        })
    }

    /// 4, 6, or None for a frame that is not IP (ARP, LLDP, ...).
    #[getter]
    fn version(&self) -> Option<u8> {
        self.ip().then_some(self.s.version)
    }
    /// Source IP address as a string.
    #[getter]
    fn src<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.addr(py, &self.s.src)
    }
    /// Destination IP address as a string.
    #[getter]
    fn dst<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyString>> {
        self.addr(py, &self.s.dst)
    }
    /// Source address in network byte order (4 or 16 bytes).
    #[getter]
    fn src_packed<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.packed(py, &self.s.src)
    }
    /// Destination address in network byte order (4 or 16 bytes).
    #[getter]
    fn dst_packed<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.packed(py, &self.s.dst)
    }
    /// Upper-layer protocol number (after IPv6 extension headers).
    #[getter]
    fn proto(&self) -> Option<u8> {
        self.ip().then_some(self.s.protocol)
    }
    #[getter]
    fn sport(&self) -> Option<u16> {
        self.s.has_ports().then_some(self.s.src_port)
    }
    #[getter]
    fn dport(&self) -> Option<u16> {
        self.s.has_ports().then_some(self.s.dst_port)
    }
    /// TTL (IPv4) or hop limit (IPv6).
    #[getter]
    fn ttl(&self) -> Option<u8> {
        self.ip().then_some(self.s.ttl)
    }
    /// IP datagram length in bytes from the header (link header and padding excluded);
    /// the frame length for a frame that is not IP.
    #[getter]
    fn length(&self) -> u32 {
        self.s.length
    }
    /// VLAN ids of the 802.1Q / QinQ tags, outermost first.
    #[getter]
    fn vlan(&self) -> Vec<u16> {
        self.vlan_tci().iter().map(|t| t & 0x0fff).collect()
    }
    /// Full tag control information (PCP << 13 | DEI << 12 | VID) of each tag.
    #[getter]
    fn vlan_tci(&self) -> Vec<u16> {
        self.s.vlan_tci[..usize::from(self.s.vlan_count)].to_vec()
    }
    #[getter]
    fn is_fragment(&self) -> bool {
        self.s.is_fragment()
    }
    /// Fragment offset in bytes.
    #[getter]
    fn frag_offset(&self) -> u16 {
        self.s.frag_offset
    }
    #[getter]
    fn more_fragments(&self) -> bool {
        self.s.has(flag::MORE_FRAGMENTS)
    }
    #[getter]
    fn dont_fragment(&self) -> bool {
        self.s.has(flag::DONT_FRAGMENT)
    }
    /// IPv4 identification, or the IPv6 fragment header's identification (0 when absent).
    #[getter]
    fn ident(&self) -> u32 {
        self.s.ident
    }
    /// The 5-tuple `(src, dst, sport, dport, proto)`; ports are None when there are none.
    #[getter]
    fn flow<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        (
            self.src(py),
            self.dst(py),
            self.sport(),
            self.dport(),
            self.proto(),
        )
            .into_pyobject(py)
    }
    /// "ethernet", "ip", "sll" or "sll2".
    #[getter]
    fn link(&self) -> &'static str {
        self.link.name()
    }
    /// EtherType of the network layer (after VLAN tags).
    #[getter]
    fn ethertype(&self) -> u16 {
        self.s.ethertype
    }
    #[getter]
    fn eth_src(&self, py: Python<'_>) -> Option<String> {
        self.mac(py, 6)
    }
    #[getter]
    fn eth_dst(&self, py: Python<'_>) -> Option<String> {
        self.mac(py, 0)
    }
    /// IPv4 TOS byte or IPv6 traffic class.
    #[getter]
    fn tos(&self) -> Option<u8> {
        self.ip().then_some(self.s.tos)
    }
    #[getter]
    fn dscp(&self) -> Option<u8> {
        self.ip().then_some(self.s.tos >> 2)
    }
    #[getter]
    fn ecn(&self) -> Option<u8> {
        self.ip().then_some(self.s.tos & 3)
    }
    /// IPv6 flow label (20 bits); None for IPv4.
    #[getter]
    fn flow_label(&self) -> Option<u32> {
        (self.s.version == 6).then_some(self.s.flow_label)
    }
    /// The nine TCP flag bits (FIN 0x01 ... CWR 0x80, NS 0x100); None when not TCP.
    #[getter]
    fn tcp_flags(&self) -> Option<u16> {
        (self.s.protocol == proto::TCP && self.s.has_ports()).then_some(self.s.tcp_flags)
    }
    #[getter]
    fn icmp_type(&self) -> Option<u8> {
        self.s.has(flag::HAS_ICMP).then_some(self.s.icmp_type)
    }
    #[getter]
    fn icmp_code(&self) -> Option<u8> {
        self.s.has(flag::HAS_ICMP).then_some(self.s.icmp_code)
    }
    /// IPv6 extension header types walked, in order.
    #[getter]
    fn ext_headers(&self) -> Vec<u16> {
        // u16, not u8: PyO3 turns a Vec<u8> into bytes, and this is a list of ints.
        self.s.ext_types[..usize::from(self.s.ext_count)]
            .iter()
            .map(|&t| u16::from(t))
            .collect()
    }
    /// Raw IPv4 option bytes (empty without options or for IPv6).
    #[getter]
    fn ip_options<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let opts = if self.s.version == 4 {
            self.bytes(py)
                .get(self.s.l3_offset + 20..self.s.l4_offset)
                .unwrap_or(&[])
        } else {
            &[]
        };
        PyBytes::new(py, opts)
    }
    /// Byte offset of the network header in `data`.
    #[getter]
    fn l3_offset(&self) -> usize {
        self.s.l3_offset
    }
    /// Byte offset of the transport header in `data`.
    #[getter]
    fn l4_offset(&self) -> usize {
        self.s.l4_offset
    }
    /// Byte offset of the transport payload in `data`.
    #[getter]
    fn payload_offset(&self) -> usize {
        self.s.payload_offset
    }
    /// Transport payload (up to the datagram end; link padding excluded).
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = self.bytes(py);
        PyBytes::new(py, b.get(self.s.payload_offset..self.s.end).unwrap_or(&[]))
    }
    /// The whole frame as given to `parse`.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    /// Check the IPv4 header checksum and the TCP / UDP / ICMP / ICMPv6 checksum (pseudo-header
    /// included). Fragments' transport checksums are not checkable and are skipped. Returns
    /// False on a mismatch, or raises PacketError saying which one when `strict` is true.
    #[pyo3(signature = (strict = false))]
    fn verify_checksums(&self, py: Python<'_>, strict: bool) -> PyResult<bool> {
        match stack::verify_checksums(self.bytes(py), &self.s) {
            Ok(()) => Ok(true),
            Err(e) if strict => Err(error::wire(py, e)),
            Err(_) => Ok(false),
        }
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.bytes(py).len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let vlan = if self.s.vlan_count > 0 {
            format!(" vlan={:?}", self.vlan())
        } else {
            String::new()
        };
        if !self.ip() {
            return format!(
                "Packet({} ethertype=0x{:04x}{vlan} len={})",
                self.link.name(),
                self.s.ethertype,
                self.bytes(py).len()
            );
        }
        let src = convert::format_addr(py, self.s.version, &self.s.src);
        let dst = convert::format_addr(py, self.s.version, &self.s.dst);
        let ends = match (self.sport(), self.dport()) {
            (Some(a), Some(b)) if self.s.version == 6 => format!("[{src}]:{a} -> [{dst}]:{b}"),
            (Some(a), Some(b)) => format!("{src}:{a} -> {dst}:{b}"),
            _ => format!("{src} -> {dst}"),
        };
        let frag = if self.s.is_fragment() {
            format!(" frag@{}", self.s.frag_offset)
        } else {
            String::new()
        };
        format!(
            "Packet(ipv{} {} {ends}{vlan}{frag} ttl={} len={})",
            self.s.version,
            self.proto_name(),
            self.s.ttl,
            self.s.length
        )
    }
}

impl PyPacket {
    fn mac(&self, py: Python<'_>, at: usize) -> Option<String> {
        if self.link != LinkType::Ethernet {
            return None;
        }
        let b = self.bytes(py).get(at..at + 6)?;
        let mut a = [0u8; 6];
        a.copy_from_slice(b);
        Some(EthernetAddress(a).to_string())
    }
}
