//! Conversions between Python values and core types: addresses, link names, byte buffers.

use crate::error::{raise, Exc};
use meshcore_core::wire::stack::LinkType;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::net::{IpAddr, Ipv6Addr};

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

/// Format the address of a summary (IPv4 in the first four bytes) as a Python string.
///
/// IPv4 is formatted by hand: `Ipv4Addr`'s `Display` goes through the padding-aware formatter
/// and costs several times the whole parse; this is the hot accessor of the flow tuple.
pub fn format_addr<'py>(py: Python<'py>, version: u8, a: &[u8; 16]) -> Bound<'py, PyString> {
    if version == 4 {
        let mut buf = [0u8; 15];
        let mut n = 0;
        for (i, &octet) in a[..4].iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            if octet >= 100 {
                buf[n] = b'0' + octet / 100;
                n += 1;
            }
            if octet >= 10 {
                buf[n] = b'0' + (octet / 10) % 10;
                n += 1;
            }
            buf[n] = b'0' + octet % 10;
            n += 1;
        }
        // Only ASCII digits and dots were written.
        PyString::new(py, std::str::from_utf8(&buf[..n]).unwrap_or_default())
    } else {
        PyString::new(py, &Ipv6Addr::from(*a).to_string())
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
