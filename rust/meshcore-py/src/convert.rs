//! Conversions between Python values and core types: addresses, prefixes, link names, byte
//! buffers. Functions used by several classes take the exception class to raise (`exc`), so
//! a route table raises `RouteError` and a classifier `RuleError` for the same bad address.

use crate::error::{raise, Exc};
use meshcore_core::route::{parse_prefix, Address, AnyPrefix, Prefix};
use meshcore_core::wire::stack::LinkType;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};
use std::net::IpAddr;

pub fn link(py: Python<'_>, name: &str) -> PyResult<LinkType> {
    LinkType::from_name(name).ok_or_else(|| {
        raise(
            py,
            Exc::Config,
            format!("unknown link type '{name}': expected 'ethernet', 'ip', 'sll' or 'sll2'"),
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

/// The name of an object's type, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(obj.get_type().name()?.to_cow()?.into_owned())
}

/// An address: `str`, `int` (IPv4 when it fits in 32 bits), packed `bytes` (4 or 16) or an
/// `ipaddress` address.
#[derive(Clone, Copy)]
pub enum Addr {
    V4(u32),
    V6(u128),
}

/// Whether `obj` is a bool, Python's or numpy's (`np.bool_`).
pub fn is_bool(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(true);
    }
    // (An int or a float is no numpy bool: the common rows skip the lookup.)
    if obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>() {
        return Ok(false);
    }
    obj.is_instance(&obj.py().import("numpy")?.getattr("bool_")?)
}

/// The first row of an integer column given as a list or tuple that is a bool: numpy reads
/// `[8, True]` as int64 `[8, 1]` without a word, so a column that refuses a bool array
/// looks at its rows before numpy does. None for anything else (arrays say so in their dtype).
pub fn bool_row(obj: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    if !obj.is_instance_of::<PyList>() && !obj.is_instance_of::<PyTuple>() {
        return Ok(None);
    }
    for (i, item) in obj.try_iter()?.enumerate() {
        if is_bool(&item?)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// An `int`, or an object with `__index__` (numpy integers) as one; None for anything else,
/// `bool` and numpy's `bool` included: True is no address and no next hop.
pub fn int_arg<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyInt>>> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(None);
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        return Ok(Some(i.clone()));
    }
    if !obj.hasattr("__index__")? {
        return Ok(None);
    }
    match obj.py().import("operator")?.call_method1("index", (obj,)) {
        Ok(i) => Ok(i.cast_into::<PyInt>().ok()),
        Err(e) if e.is_instance_of::<PyTypeError>(obj.py()) => Ok(None),
        Err(e) => Err(e),
    }
}

fn int_addr(i: &Bound<'_, PyInt>, exc: Exc) -> PyResult<Addr> {
    // u64 first: 128-bit extraction is much slower under the stable ABI.
    if let Ok(v) = i.extract::<u64>() {
        return Ok(u32::try_from(v).map_or(Addr::V6(u128::from(v)), Addr::V4));
    }
    i.extract::<u128>().map(Addr::V6).map_err(|_| {
        raise(
            i.py(),
            exc,
            format!("address {i} is outside 0..=2**128 - 1"),
        )
    })
}

/// The bytes of a `bytes`, `bytearray` or `memoryview`; None for other types.
fn packed_bytes(obj: &Bound<'_, PyAny>, exc: Exc) -> PyResult<Option<Vec<u8>>> {
    let py = obj.py();
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Some(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
            raise(
                py,
                exc,
                "a packed address must be a memoryview of unsigned bytes",
            )
        })?;
        return buf.to_vec(py).map(Some);
    }
    Ok(None)
}

fn packed_addr(py: Python<'_>, b: &[u8], what: &str, exc: Exc) -> PyResult<Addr> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Ok(Addr::V4(u32::from_be_bytes(a)));
    }
    if let Ok(a) = <[u8; 16]>::try_from(b) {
        return Ok(Addr::V6(u128::from_be_bytes(a)));
    }
    Err(raise(
        py,
        exc,
        format!("{what} must be 4 or 16 bytes, not {}", b.len()),
    ))
}

/// An address, or None when `obj` is of no address type (the caller names the types it takes).
/// Bad values of an address type (and `bool`) raise `exc` saying why.
pub fn addr_arg(obj: &Bound<'_, PyAny>, exc: Exc) -> PyResult<Option<Addr>> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_cow()?;
        return match text.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ok(Some(Addr::V4(u32::from(a)))),
            Ok(IpAddr::V6(a)) => Ok(Some(Addr::V6(u128::from(a)))),
            Err(_) => Err(raise(py, exc, format!("{text:?} is not an IP address"))),
        };
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if obj.is_instance_of::<PyBool>() {
            return Err(raise(py, exc, format!("{obj} is a bool, not an address")));
        }
        return int_addr(i, exc).map(Some);
    }
    if let Some(b) = packed_bytes(obj, exc)? {
        return packed_addr(py, &b, "a packed address", exc).map(Some);
    }
    if obj.hasattr("packed")? && !obj.hasattr("prefixlen")? {
        let what = format!("{}.packed", type_name(obj)?);
        let packed = obj.getattr("packed")?;
        return match packed_bytes(&packed, exc)? {
            Some(b) => packed_addr(py, &b, &what, exc).map(Some),
            None => Err(raise(
                py,
                exc,
                format!("{what} must be 4 or 16 bytes, not {}", type_name(&packed)?),
            )),
        };
    }
    match int_arg(obj)? {
        Some(i) => int_addr(&i, exc).map(Some),
        None => Ok(None),
    }
}

/// An address, or an `exc` error naming the types an address may be.
pub fn address(obj: &Bound<'_, PyAny>, exc: Exc) -> PyResult<Addr> {
    addr_arg(obj, exc)?.ok_or_else(|| {
        let name = type_name(obj).unwrap_or_default();
        raise(
            obj.py(),
            exc,
            format!(
                "an address must be a str, int, 4- or 16-byte bytes or an ipaddress address, \
                 not {name}"
            ),
        )
    })
}

/// A prefix: `str` ("10.0.0.0/8"; a bare address is a host route) or an `ipaddress` network.
/// Returns whether a length was given (a prefix) or not (an address).
pub fn prefix_arg(obj: &Bound<'_, PyAny>, strict: bool, exc: Exc) -> PyResult<(AnyPrefix, bool)> {
    let py = obj.py();
    let text = if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if obj.hasattr("prefixlen")? && obj.hasattr("network_address")? {
        obj.str()?.to_cow()?.into_owned()
    } else {
        return match addr_arg(obj, exc)? {
            Some(Addr::V4(a)) => Ok((AnyPrefix::V4(host(a)), false)),
            Some(Addr::V6(a)) => Ok((AnyPrefix::V6(host(a)), false)),
            None => Err(raise(
                py,
                exc,
                format!(
                    "a prefix must be a str like '10.0.0.0/8' or an ipaddress network, not {}",
                    type_name(obj)?
                ),
            )),
        };
    };
    let p = parse_prefix(&text, strict).map_err(|e| raise(py, exc, e.to_string()))?;
    Ok((p, text.contains('/')))
}

pub fn host<A: Address>(a: A) -> Prefix<A> {
    Prefix::new(a, A::BITS, true).unwrap_or_else(|_| unreachable!("a host route is valid"))
}

/// Format the address of a summary (IPv4 in the first four bytes) as a Python string.
///
/// Formatted by hand into a stack buffer: `Display` for `Ipv4Addr` / `Ipv6Addr` goes through the
/// padding-aware formatter and a heap `String`, and costs more than the whole parse; these are
/// the hot accessors of the flow tuple. IPv6 follows RFC 5952 (lowercase, no leading zeros, the
/// longest run of two or more zero groups as `::`, the first such run on a tie, and IPv4-mapped
/// addresses as `::ffff:a.b.c.d`), the same text as `Ipv6Addr`'s `Display`.
pub fn format_addr<'py>(py: Python<'py>, version: u8, a: &[u8; 16]) -> Bound<'py, PyString> {
    let mut buf = [0u8; 48];
    let n = if version == 4 {
        write_ipv4(&mut buf, 0, [a[0], a[1], a[2], a[3]])
    } else {
        write_ipv6(&mut buf, a)
    };
    // Only ASCII hex digits, dots and colons were written.
    PyString::new(py, std::str::from_utf8(&buf[..n]).unwrap_or_default())
}

fn write_ipv4(buf: &mut [u8; 48], mut n: usize, octets: [u8; 4]) -> usize {
    for (i, &octet) in octets.iter().enumerate() {
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
    n
}

fn write_ipv6(buf: &mut [u8; 48], a: &[u8; 16]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let groups: [u16; 8] = std::array::from_fn(|i| u16::from_be_bytes([a[2 * i], a[2 * i + 1]]));
    if groups[..5] == [0; 5] && groups[5] == 0xffff {
        buf[..7].copy_from_slice(b"::ffff:");
        return write_ipv4(buf, 7, [a[12], a[13], a[14], a[15]]);
    }
    // The longest run of zero groups (length >= 2), first one on a tie.
    let (mut best_at, mut best_len, mut run_at, mut run_len) = (0, 0, 0, 0);
    for (i, &g) in groups.iter().enumerate() {
        if g == 0 {
            if run_len == 0 {
                run_at = i;
            }
            run_len += 1;
            if run_len > best_len {
                (best_at, best_len) = (run_at, run_len);
            }
        } else {
            run_len = 0;
        }
    }
    if best_len < 2 {
        best_len = 0;
    }
    let mut n = 0;
    let mut i = 0;
    while i < 8 {
        if best_len > 0 && i == best_at {
            buf[n] = b':';
            buf[n + 1] = b':';
            n += 2;
            i += best_len;
            continue;
        }
        if i > 0 && !(best_len > 0 && i == best_at + best_len) {
            buf[n] = b':';
            n += 1;
        }
        let g = groups[i];
        let mut started = false;
        for shift in [12u16, 8, 4, 0] {
            let d = ((g >> shift) & 0xf) as usize;
            if d != 0 || started || shift == 0 {
                buf[n] = HEX[d];
                n += 1;
                started = true;
            }
        }
        i += 1;
    }
    n
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

/// The byte buffer of `obj`, C-contiguous and, with `writable`, writable; else `PacketError`
/// naming `what`.
pub fn byte_buffer(obj: &Bound<'_, PyAny>, what: &str, writable: bool) -> PyResult<PyBuffer<u8>> {
    let py = obj.py();
    let buf = PyBuffer::<u8>::get(obj).map_err(|_| {
        let msg = if writable {
            format!("{what} must be a writable bytes-like object")
        } else {
            format!("{what} must be a bytes-like object of unsigned bytes")
        };
        raise(py, Exc::Packet, msg)
    })?;
    if writable && (buf.readonly() || !buf.is_c_contiguous()) {
        return Err(raise(
            py,
            Exc::Packet,
            format!("{what} must be writable and contiguous (bytearray, memoryview, numpy array)"),
        ));
    }
    if !buf.is_c_contiguous() {
        return Err(raise(py, Exc::Packet, format!("{what} must be contiguous")));
    }
    Ok(buf)
}

/// An int argument in `0..=max`, else `PacketError` naming the argument (not `OverflowError`).
pub fn int_in(obj: &Bound<'_, PyAny>, what: &str, max: u64) -> PyResult<u64> {
    let py = obj.py();
    if obj.cast::<PyInt>().is_err() {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<i64>() {
        Ok(v) if v >= 0 && v.unsigned_abs() <= max => Ok(v.unsigned_abs()),
        _ => Err(raise(
            py,
            Exc::Packet,
            format!("{what} must be in 0..={max}, got {obj}"),
        )),
    }
}

/// `#[pyo3(from_py_with = ...)]` extractors for range-checked integer arguments.
macro_rules! ranged {
    ($($fn_name:ident: $t:ty = $what:literal, $max:expr;)*) => {
        $(
            pub fn $fn_name(obj: &Bound<'_, PyAny>) -> PyResult<$t> {
                // In range by construction: `int_in` checked against `$max`.
                int_in(obj, $what, $max).map(|v| v as $t)
            }
        )*
    };
}

ranged! {
    arg_sport: u16 = "sport", 0xffff;
    arg_dport: u16 = "dport", 0xffff;
    arg_ttl: u8 = "ttl", 0xff;
    arg_tos: u8 = "tos", 0xff;
    arg_ident: u32 = "ident", 0xffff_ffff;
    arg_frag_offset: u16 = "frag_offset", 0xfff8;
    arg_flow_label: u32 = "flow_label", 0x000f_ffff;
    arg_seq: u32 = "seq", 0xffff_ffff;
    arg_ack: u32 = "ack", 0xffff_ffff;
    arg_window: u16 = "window", 0xffff;
    arg_urgent: u16 = "urgent", 0xffff;
    arg_icmp_code: u8 = "icmp_code", 0xff;
    arg_icmp_rest: u32 = "icmp_rest", 0xffff_ffff;
    arg_l3_offset: usize = "l3_offset", u32::MAX as u64;
}

/// `icmp_type`: None or an int in 0..=255.
pub fn arg_icmp_type(obj: &Bound<'_, PyAny>) -> PyResult<Option<u8>> {
    if obj.is_none() {
        return Ok(None);
    }
    int_in(obj, "icmp_type", 0xff).map(|v| Some(v as u8))
}

fn int_list(obj: &Bound<'_, PyAny>, what: &str, max: u64) -> PyResult<Option<Vec<u16>>> {
    if obj.is_none() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(int_in(&item?, what, max)? as u16);
    }
    Ok(Some(out))
}

/// `vlan`: VLAN ids, each in 0..=4095.
pub fn arg_vlan(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u16>>> {
    int_list(obj, "vlan id", 0x0fff)
}

/// `vlan_tci`: full tag control values (PCP << 13 | DEI << 12 | VID), each in 0..=65535.
pub fn arg_vlan_tci(obj: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u16>>> {
    int_list(obj, "vlan tci", 0xffff)
}

/// The length in bytes of a bytes, bytearray or memoryview (its `nbytes`); None for other objects.
/// The queues use it as the default size of a queued item.
pub fn bytes_len(item: &Bound<'_, PyAny>) -> PyResult<Option<usize>> {
    Ok(if let Ok(b) = item.cast::<PyBytes>() {
        Some(b.as_bytes().len())
    } else if let Ok(b) = item.cast::<PyByteArray>() {
        Some(b.len())
    } else if item.is_instance_of::<PyMemoryView>() {
        Some(item.getattr("nbytes")?.extract()?)
    } else {
        None
    })
}

/// A bool as Python prints it, for `repr`s.
pub fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

#[cfg(test)]
mod tests {
    use super::write_ipv6;
    use std::net::Ipv6Addr;

    #[test]
    fn ipv6_text_matches_std() {
        let cases = [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "2001:db8:0:0:1:0:0:1",
            "2001:0:0:1:0:0:0:1",
            "1:0:0:2:0:0:3:4",
            "fe80::1:2:3:4:5",
            "1:2:3:4:5:6:7:8",
            "1:0:3:4:5:6:7:8",
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            "::1.2.3.4",
            "ffff::",
        ];
        for c in cases {
            let a: Ipv6Addr = c.parse().unwrap();
            let mut buf = [0u8; 48];
            let n = write_ipv6(&mut buf, &a.octets());
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                a.to_string(),
                "{c}"
            );
        }
    }
}
