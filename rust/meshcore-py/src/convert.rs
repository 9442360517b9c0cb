//! Conversions between Python values and core types: addresses, link names, byte buffers.

use crate::error::{raise, Exc};
use meshcore_core::wire::stack::LinkType;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub fn link(py: Python<'_>, name: &str) -> PyResult<LinkType> {
    LinkType::from_name(name).ok_or_else(|| {
        raise(
            py,
            Exc::Config,
            format!("unknown link type '{name}': expected 'ethernet', 'ip' or 'sll'"),
        )
    })
}

/// An IP address from a `str` or an `ipaddress` address object.
pub fn ip_addr(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<IpAddr> {
    let py = obj.py();
    let text = if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if obj.hasattr("packed")? && obj.hasattr("version")? {
        obj.str()?.to_cow()?.into_owned()
    } else {
        return Err(raise(
            py,
            Exc::Packet,
            format!("{what} must be an address string or ipaddress object"),
        ));
    };
    text.parse::<IpAddr>().map_err(|_| {
        raise(
            py,
            Exc::Packet,
            format!("{what}: {text:?} is not an IP address"),
        )
    })
}

/// Format the address of a summary (IPv4 in the first four bytes).
pub fn format_addr(version: u8, a: &[u8; 16]) -> String {
    if version == 4 {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    } else {
        Ipv6Addr::from(*a).to_string()
    }
}

/// The bytes of a packet as a `bytes` object: the object itself when it is one (no copy),
/// otherwise one copy of any C-contiguous buffer.
pub fn packet_bytes<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.clone());
    }
    let py = obj.py();
    let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
        raise(
            py,
            Exc::Packet,
            "data must be a bytes-like object of unsigned bytes",
        )
    })?;
    let v = buf.to_vec(py)?;
    Ok(PyBytes::new(py, &v))
}
