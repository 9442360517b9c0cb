//! `meshcore.RouteTable`: the core route table behind a reader-writer lock.
//!
//! Lookups take the read lock and updates the write lock, so a lookup sees the table before or
//! after an update, never half of one; batch lookups hold the read lock with the GIL released.

use crate::error::{guard, raise, Exc};
use meshcore_core::route::table::{check_value, parse_routes, RouteError, RouteTable};
use meshcore_core::route::{parse_prefix, AnyPrefix, Prefix, PrefixError};
use numpy::{PyArray1, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyString, PyTuple, PyType};
use std::io::Read;
use std::net::IpAddr;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[pyclass(frozen, module = "meshcore", name = "RouteTable")]
pub struct PyRouteTable {
    inner: RwLock<RouteTable>,
}

fn route_error(py: Python<'_>, e: &RouteError) -> PyErr {
    raise(py, Exc::Route, e.to_string())
}

fn prefix_error(py: Python<'_>, e: &PrefixError) -> PyErr {
    raise(py, Exc::Route, e.to_string())
}

/// An address: `str`, `int` (IPv4 when it fits in 32 bits), packed `bytes` (4 or 16) or an
/// `ipaddress` address.
enum Addr {
    V4(u32),
    V6(u128),
}

fn addr_arg(obj: &Bound<'_, PyAny>) -> PyResult<Addr> {
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_cow()?;
        return match text.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ok(Addr::V4(u32::from(a))),
            Ok(IpAddr::V6(a)) => Ok(Addr::V6(u128::from(a))),
            Err(_) => Err(raise(
                py,
                Exc::Route,
                format!("{text:?} is not an IP address"),
            )),
        };
    }
    if obj.cast::<PyInt>().is_ok() {
        return match obj.extract::<u128>() {
            Ok(v) => Ok(u32::try_from(v).map_or(Addr::V6(v), Addr::V4)),
            Err(_) => Err(raise(
                py,
                Exc::Route,
                format!("address {obj} is out of range"),
            )),
        };
    }
    let packed = if let Ok(b) = obj.cast::<PyBytes>() {
        Some(b.as_bytes().to_vec())
    } else if obj.hasattr("packed")? && !obj.hasattr("prefixlen")? {
        Some(obj.getattr("packed")?.extract::<Vec<u8>>()?)
    } else {
        None
    };
    match packed.as_deref() {
        Some(b) if b.len() == 4 => Ok(Addr::V4(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        Some(b) if b.len() == 16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Ok(Addr::V6(u128::from_be_bytes(a)))
        }
        _ => Err(raise(
            py,
            Exc::Route,
            "an address must be a str, int, 4- or 16-byte bytes or an ipaddress address",
        )),
    }
}

/// A prefix: `str` ("10.0.0.0/8"; a bare address is a host route) or an `ipaddress` network.
/// Returns whether a length was given (a prefix) or not (an address).
fn prefix_arg(obj: &Bound<'_, PyAny>, strict: bool) -> PyResult<(AnyPrefix, bool)> {
    let py = obj.py();
    let text = if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if obj.hasattr("prefixlen")? && obj.hasattr("network_address")? {
        obj.str()?.to_cow()?.into_owned()
    } else {
        return match addr_arg(obj) {
            Ok(Addr::V4(a)) => Ok((AnyPrefix::V4(host(a)), false)),
            Ok(Addr::V6(a)) => Ok((AnyPrefix::V6(host(a)), false)),
            Err(_) => Err(raise(
                py,
                Exc::Route,
                "a prefix must be a str like '10.0.0.0/8' or an ipaddress network",
            )),
        };
    };
    let p = parse_prefix(&text, strict).map_err(|e| prefix_error(py, &e))?;
    Ok((p, text.contains('/')))
}

fn host<A: meshcore_core::route::Address>(a: A) -> Prefix<A> {
    Prefix::new(a, A::BITS, true).unwrap_or_else(|_| unreachable!("a host route is valid"))
}

fn value_arg(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let py = obj.py();
    if obj.cast::<PyInt>().is_err() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "a route value must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<u64>() {
        Ok(v) => check_value(v).map_err(|e| route_error(py, &e)),
        Err(_) => Err(route_error(py, &RouteError::Value(u64::MAX))),
    }
}

fn pair(py: Python<'_>, p: AnyPrefix, v: u32) -> PyResult<Bound<'_, PyTuple>> {
    (p.to_string(), v).into_pyobject(py)
}

impl PyRouteTable {
    fn read(&self, py: Python<'_>) -> PyResult<RwLockReadGuard<'_, RouteTable>> {
        self.inner.read().map_err(|_| poisoned(py))
    }
    fn write(&self, py: Python<'_>) -> PyResult<RwLockWriteGuard<'_, RouteTable>> {
        self.inner.write().map_err(|_| poisoned(py))
    }
}

fn poisoned(py: Python<'_>) -> PyErr {
    raise(
        py,
        Exc::Internal,
        "route table unusable after an earlier internal error",
    )
}

/// Contiguous integers of a numpy array (any integer dtype) as i64, or `RouteError`.
fn int_column(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<i64>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (obj,))?;
    let kind: String = arr.getattr("dtype")?.getattr("kind")?.extract()?;
    let ndim: usize = arr.getattr("ndim")?.extract()?;
    if !(kind == "i" || kind == "u") || ndim != 1 {
        return Err(raise(
            py,
            Exc::Route,
            format!("{what} must be a one-dimensional integer array"),
        ));
    }
    let as64 = np.call_method1("ascontiguousarray", (arr, "int64"))?;
    let typed = as64.cast::<PyArray1<i64>>()?;
    Ok(typed.readonly().as_slice()?.to_vec())
}

/// Addresses of a batch: a 1-D uint32 array (IPv4) or an (n, 16) uint8 array (IPv6).
enum Batch {
    V4(Vec<u32>),
    V6(Vec<u128>),
}

fn address_batch(obj: &Bound<'_, PyAny>) -> PyResult<Batch> {
    let py = obj.py();
    let wrong = || {
        raise(
            py,
            Exc::Route,
            "addresses must be a uint32 array (IPv4) or an (n, 16) uint8 array (IPv6)",
        )
    };
    if let Ok(a) = obj.cast::<PyArray1<u32>>() {
        let r = a.readonly();
        return Ok(Batch::V4(match r.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => r.as_array().iter().copied().collect(),
        }));
    }
    if let Ok(a) = obj.cast::<numpy::PyArray2<u8>>() {
        if a.shape()[1] != 16 {
            return Err(wrong());
        }
        let r = a.readonly();
        if let Ok(flat) = r.as_slice() {
            let out = flat
                .chunks_exact(16)
                .map(|c| {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(c);
                    u128::from_be_bytes(b)
                })
                .collect();
            return Ok(Batch::V6(out));
        }
        let v = r.as_array();
        let out = v
            .rows()
            .into_iter()
            .map(|row| {
                let mut b = [0u8; 16];
                for (d, s) in b.iter_mut().zip(row.iter()) {
                    *d = *s;
                }
                u128::from_be_bytes(b)
            })
            .collect();
        return Ok(Batch::V6(out));
    }
    Err(wrong())
}

#[pymethods]
impl PyRouteTable {
    #[new]
    fn new() -> Self {
        PyRouteTable {
            inner: RwLock::new(RouteTable::default()),
        }
    }

    /// Add or replace the route for `prefix`; host bits are an error unless `strict` is false.
    #[pyo3(signature = (prefix, value, strict = true))]
    fn insert(
        &self,
        py: Python<'_>,
        prefix: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        strict: bool,
    ) -> PyResult<()> {
        let (p, _) = prefix_arg(prefix, strict)?;
        let v = value_arg(value)?;
        guard(py, || {
            self.write(py)?.insert(p, v);
            Ok(())
        })
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        prefix: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.insert(py, prefix, value, true)
    }

    /// Remove the route for exactly `prefix` and return its value; KeyError when absent.
    fn remove(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<u32> {
        let (p, _) = prefix_arg(prefix, true)?;
        let old = guard(py, || Ok(self.write(py)?.remove(p)))?;
        old.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(p.to_string()))
    }

    fn __delitem__(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<()> {
        self.remove(py, prefix).map(|_| ())
    }

    /// The value of exactly `prefix` (no longest-prefix match), or `default`.
    #[pyo3(signature = (prefix, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        prefix: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (p, _) = prefix_arg(prefix, true)?;
        match self.read(py)?.get(p) {
            Some(v) => Ok(Some(v.into_pyobject(py)?.into_any())),
            None => Ok(default),
        }
    }

    fn __getitem__(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<u32> {
        let (p, _) = prefix_arg(prefix, true)?;
        self.read(py)?
            .get(p)
            .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(p.to_string()))
    }

    fn __contains__(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (p, _) = prefix_arg(prefix, true)?;
        Ok(self.read(py)?.get(p).is_some())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.read(py)?.len())
    }

    /// `(prefix, value)` pairs, IPv4 then IPv6, each in address order (a snapshot).
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let t = self.read(py)?;
        let list = PyList::empty(py);
        for (p, v) in t.v4.rib().iter() {
            list.append(pair(py, AnyPrefix::V4(p), v)?)?;
        }
        for (p, v) in t.v6.rib().iter() {
            list.append(pair(py, AnyPrefix::V6(p), v)?)?;
        }
        Ok(list.try_iter()?.into_any())
    }

    /// The value of the longest route matching `address`, or None.
    fn lookup(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        let a = addr_arg(address)?;
        let t = self.read(py)?;
        Ok(match a {
            Addr::V4(a) => t.v4.lookup(a),
            Addr::V6(a) => t.v6.lookup(a),
        })
    }

    /// The longest route matching `address` as `(prefix, value)`, or None.
    fn lookup_prefix<'py>(
        &self,
        py: Python<'py>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let a = addr_arg(address)?;
        let t = self.read(py)?;
        match a {
            Addr::V4(a) => {
                t.v4.lookup_prefix(a)
                    .map(|(p, v)| pair(py, AnyPrefix::V4(p), v))
            }
            Addr::V6(a) => {
                t.v6.lookup_prefix(a)
                    .map(|(p, v)| pair(py, AnyPrefix::V6(p), v))
            }
        }
        .transpose()
    }

    /// Look up a batch: int64 values, -1 where no route matches. The GIL is released.
    fn lookup_many<'py>(
        &self,
        py: Python<'py>,
        addresses: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        // The common case without a copy: a contiguous uint32 array, read in place.
        if let Ok(a) = addresses.cast::<PyArray1<u32>>() {
            let r = a.readonly();
            if let Ok(slice) = r.as_slice() {
                let mut out = vec![0i64; slice.len()];
                let inner = &self.inner;
                let ok = py.detach(|| {
                    let Ok(t) = inner.read() else { return false };
                    t.v4.lookup_many(slice, &mut out);
                    true
                });
                if !ok {
                    return Err(poisoned(py));
                }
                return Ok(PyArray1::from_vec(py, out));
            }
        }
        let batch = address_batch(addresses)?;
        let n = match &batch {
            Batch::V4(v) => v.len(),
            Batch::V6(v) => v.len(),
        };
        let mut out = vec![0i64; n];
        let inner = &self.inner;
        let ok = py.detach(|| {
            let Ok(t) = inner.read() else { return false };
            match &batch {
                Batch::V4(v) => t.v4.lookup_many(v, &mut out),
                Batch::V6(v) => t.v6.lookup_many(v, &mut out),
            }
            true
        });
        if !ok {
            return Err(poisoned(py));
        }
        Ok(PyArray1::from_vec(py, out))
    }

    /// Insert one route per row: addresses as for `lookup_many`, prefix lengths, values. All or
    /// nothing: a bad row raises RouteError naming it and leaves the table unchanged.
    #[pyo3(signature = (addresses, lengths, values, strict = true))]
    fn insert_many(
        &self,
        py: Python<'_>,
        addresses: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        strict: bool,
    ) -> PyResult<()> {
        let batch = address_batch(addresses)?;
        let lengths = int_column(lengths, "lengths")?;
        let values = int_column(values, "values")?;
        let n = match &batch {
            Batch::V4(v) => v.len(),
            Batch::V6(v) => v.len(),
        };
        if lengths.len() != n || values.len() != n {
            return Err(raise(
                py,
                Exc::Route,
                format!(
                    "addresses, lengths and values differ in length ({n}, {}, {})",
                    lengths.len(),
                    values.len()
                ),
            ));
        }
        let row_err =
            |index: usize, message: String| route_error(py, &RouteError::Row { index, message });
        let mut checked_values = Vec::with_capacity(n);
        for (i, &v) in values.iter().enumerate() {
            let v = u64::try_from(v).map_err(|_| row_err(i, format!("value {v} is negative")))?;
            checked_values.push(check_value(v).map_err(|e| row_err(i, e.to_string()))?);
        }
        let len_of = |i: usize, max: u8| -> PyResult<u8> {
            u8::try_from(lengths[i])
                .ok()
                .filter(|&l| l <= max)
                .ok_or_else(|| {
                    row_err(
                        i,
                        format!("prefix length {} is outside 0..={max}", lengths[i]),
                    )
                })
        };
        match batch {
            Batch::V4(addrs) => {
                let mut routes = Vec::with_capacity(n);
                for (i, &a) in addrs.iter().enumerate() {
                    let p = Prefix::new(a, len_of(i, 32)?, strict)
                        .map_err(|e| row_err(i, e.to_string()))?;
                    routes.push((p, checked_values[i]));
                }
                guard(py, || {
                    self.write(py)?.v4.extend(&routes);
                    Ok(())
                })
            }
            Batch::V6(addrs) => {
                let mut routes = Vec::with_capacity(n);
                for (i, &a) in addrs.iter().enumerate() {
                    let p = Prefix::new(a, len_of(i, 128)?, strict)
                        .map_err(|e| row_err(i, e.to_string()))?;
                    routes.push((p, checked_values[i]));
                }
                guard(py, || {
                    self.write(py)?.v6.extend(&routes);
                    Ok(())
                })
            }
        }
    }

    /// Routes covering `prefix_or_address`, longest first: for a prefix, those strictly shorter
    /// (its ancestors); for an address, every route that contains it.
    fn parents<'py>(
        &self,
        py: Python<'py>,
        prefix_or_address: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (p, is_prefix) = prefix_arg(prefix_or_address, true)?;
        let t = self.read(py)?;
        let list = PyList::empty(py);
        match p {
            AnyPrefix::V4(p) => {
                for (q, v) in t.v4.rib().covering(p) {
                    if !(is_prefix && q == p) {
                        list.append(pair(py, AnyPrefix::V4(q), v)?)?;
                    }
                }
            }
            AnyPrefix::V6(p) => {
                for (q, v) in t.v6.rib().covering(p) {
                    if !(is_prefix && q == p) {
                        list.append(pair(py, AnyPrefix::V6(q), v)?)?;
                    }
                }
            }
        }
        Ok(list)
    }

    /// Routes strictly inside `prefix`, in address order.
    fn children<'py>(
        &self,
        py: Python<'py>,
        prefix: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (p, _) = prefix_arg(prefix, true)?;
        let t = self.read(py)?;
        let list = PyList::empty(py);
        match p {
            AnyPrefix::V4(p) => {
                for (q, v) in t.v4.rib().covered(p, false) {
                    list.append(pair(py, AnyPrefix::V4(q), v)?)?;
                }
            }
            AnyPrefix::V6(p) => {
                for (q, v) in t.v6.rib().covered(p, false) {
                    list.append(pair(py, AnyPrefix::V6(q), v)?)?;
                }
            }
        }
        Ok(list)
    }

    /// Read "prefix value" lines (gzip-compressed files too; "-" or a missing value means 0).
    #[classmethod]
    #[pyo3(signature = (path, strict = true))]
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
    fn load(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path: std::path::PathBuf,
        strict: bool,
    ) -> PyResult<PyRouteTable> {
        let raw = std::fs::read(&path)?;
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_string(&mut s)
                .map_err(|e| {
                    raise(
                        py,
                        Exc::Route,
                        format!("{}: bad gzip data: {e}", path.display()),
                    )
                })?;
            s
        } else {
            String::from_utf8(raw).map_err(|_| {
                raise(
                    py,
                    Exc::Route,
                    format!("{}: not UTF-8 text", path.display()),
                )
            })?
        };
        let routes = py
            .detach(|| parse_routes(&text, strict))
            .map_err(|e| raise(py, Exc::Route, format!("{}: {e}", path.display())))?;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (p, v) in routes {
            match p {
                AnyPrefix::V4(p) => v4.push((p, v)),
                AnyPrefix::V6(p) => v6.push((p, v)),
            }
        }
        let mut t = RouteTable::default();
        guard(py, || {
            py.detach(|| {
                t.v4.extend(&v4);
                t.v6.extend(&v6);
            });
            Ok(())
        })?;
        Ok(PyRouteTable {
            inner: RwLock::new(t),
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let t = self.read(py)?;
        Ok(format!(
            "RouteTable(ipv4={}, ipv6={})",
            t.v4.len(),
            t.v6.len()
        ))
    }
}
