//! `meshcore.RouteTable`: the core route table behind a reader-writer lock ([`Locked`]).
//!
//! Lookups take the read lock and updates the write lock, so a lookup sees the table before or
//! after an update, never half of one. `lock.rs` says how the lock and the GIL stay clear of
//! each other.

use crate::batch;
use crate::convert::{self, int_arg, type_name, Addr};
use crate::error::{self, guard, raise, Exc};
use crate::lock::Locked;
use meshcore_core::route::table::{
    parse_routes, Family, RouteError, RouteTable, Update, MAX_VALUE,
};
use meshcore_core::route::{Address, AnyPrefix, Prefix};
use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple, PyType};
use std::fmt::Display;
use std::io::Read;

/// What a poisoned table calls itself.
const TABLE: &str = "route table";

#[pyclass(frozen, module = "meshcore", name = "RouteTable")]
pub struct PyRouteTable {
    inner: Locked<RouteTable>,
}

fn route_error(py: Python<'_>, e: &RouteError) -> PyErr {
    raise(py, Exc::Route, e.to_string())
}

/// The message for a route value outside the allowed range (the core's wording).
fn value_range(v: impl Display) -> String {
    format!("value {v} is outside 0..={MAX_VALUE}")
}

/// The family of the table that holds routes of address type `A`.
trait Fam: Address {
    fn of(t: &RouteTable) -> &Family<Self>;
    fn of_mut(t: &mut RouteTable) -> &mut Family<Self>;
    fn any(p: Prefix<Self>) -> AnyPrefix;
}

impl Fam for u32 {
    fn of(t: &RouteTable) -> &Family<u32> {
        &t.v4
    }
    fn of_mut(t: &mut RouteTable) -> &mut Family<u32> {
        &mut t.v4
    }
    fn any(p: Prefix<u32>) -> AnyPrefix {
        AnyPrefix::V4(p)
    }
}

impl Fam for u128 {
    fn of(t: &RouteTable) -> &Family<u128> {
        &t.v6
    }
    fn of_mut(t: &mut RouteTable) -> &mut Family<u128> {
        &mut t.v6
    }
    fn any(p: Prefix<u128>) -> AnyPrefix {
        AnyPrefix::V6(p)
    }
}

/// Routes copied out of the table, to become Python objects once the lock is released.
type Routes = Vec<(AnyPrefix, u32)>;

fn routes_of<A: Fam>(it: impl Iterator<Item = (Prefix<A>, u32)>) -> Routes {
    it.map(|(p, v)| (A::any(p), v)).collect()
}

fn route_list(py: Python<'_>, routes: Routes) -> PyResult<Bound<'_, PyList>> {
    PyList::new(py, routes.into_iter().map(|(p, v)| (p.to_string(), v)))
}

/// An address, or `RouteError`.
fn address(obj: &Bound<'_, PyAny>) -> PyResult<Addr> {
    convert::address(obj, Exc::Route)
}

/// A prefix, or `RouteError`; whether a length was given (see `convert::prefix_arg`).
fn prefix_arg(obj: &Bound<'_, PyAny>, strict: bool) -> PyResult<(AnyPrefix, bool)> {
    convert::prefix_arg(obj, strict, Exc::Route)
}

/// A route value: an int (numpy integers too, not bools) in `0..=MAX_VALUE`.
fn value_arg(obj: &Bound<'_, PyAny>) -> PyResult<u32> {
    let Some(int) = int_arg(obj)? else {
        return Err(PyTypeError::new_err(format!(
            "a route value must be an int, not {}",
            type_name(obj)?
        )));
    };
    match int.extract::<u32>() {
        Ok(v) if v <= MAX_VALUE => Ok(v),
        _ => Err(raise(obj.py(), Exc::Route, value_range(&int))),
    }
}

impl PyRouteTable {
    /// The columns of `insert_many` / `update_many`, checked, then applied in order.
    fn rows(
        &self,
        py: Python<'_>,
        (addresses, lengths, values): (&Bound<'_, PyAny>, &Bound<'_, PyAny>, &Bound<'_, PyAny>),
        strict: bool,
        withdraw: bool,
    ) -> PyResult<()> {
        let batch = address_batch(addresses)?;
        let (n, bits) = match &batch {
            Batch::V4(v) => (v.len(), <u32 as Address>::BITS),
            Batch::V6(v) => (v.len(), <u128 as Address>::BITS),
        };
        let lengths = int_column(lengths, "lengths", "prefix length", bits.into())?;
        let values = int_column(values, "values", "value", MAX_VALUE.into())?;
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
        match &batch {
            Batch::V4(a) => self.apply_rows(py, a, (&lengths, &values), strict, withdraw),
            Batch::V6(a) => self.apply_rows(py, a, (&lengths, &values), strict, withdraw),
        }
    }

    /// Check every row, then apply them all in order (see `batch_routes`).
    fn apply_rows<A: Fam>(
        &self,
        py: Python<'_>,
        addrs: &[A],
        cols: (&[i128], &[i128]),
        strict: bool,
        withdraw: bool,
    ) -> PyResult<()> {
        let (lengths, values) = cols;
        let ops = py
            .detach(|| batch_routes(addrs, lengths, values, strict, withdraw))
            .map_err(|e| route_error(py, &e))?;
        self.inner.write(py, move |t| A::of_mut(t).apply(&ops))
    }
}

/// Check the rows of a batch: values first, then each row's length and prefix. With
/// `withdraw`, a value of -1 is a withdrawal (`None`).
fn batch_routes<A: Address>(
    addrs: &[A],
    lengths: &[i128],
    values: &[i128],
    strict: bool,
    withdraw: bool,
) -> Result<Vec<Update<A>>, RouteError> {
    let row = |index: usize, message: String| RouteError::Row { index, message };
    let values = values
        .iter()
        .enumerate()
        .map(
            |(i, &v)| match u32::try_from(v).ok().filter(|&v| v <= MAX_VALUE) {
                Some(v) => Ok(Some(v)),
                None if withdraw && v == -1 => Ok(None),
                None if withdraw => Err(row(i, format!("{} (or -1 to withdraw)", value_range(v)))),
                None => Err(row(i, value_range(v))),
            },
        )
        .collect::<Result<Vec<Option<u32>>, _>>()?;
    addrs
        .iter()
        .zip(lengths)
        .zip(values)
        .enumerate()
        .map(|(i, ((&a, &len), v))| {
            let len = u8::try_from(len)
                .ok()
                .filter(|&l| l <= A::BITS)
                .ok_or_else(|| row(i, format!("prefix length {len} is outside 0..={}", A::BITS)))?;
            let p = Prefix::new(a, len, strict).map_err(|e| row(i, e.to_string()))?;
            Ok((p, v))
        })
        .collect()
}

/// A one-dimensional column of integers (numpy array, list, ...) as i128, or `RouteError`.
/// A list keeps its Python ints exact (numpy would make `[0, 2**63]` float64). An integer too
/// large even for i128 is a row error at once: `{noun} {value} is outside 0..={max}`.
fn int_column(obj: &Bound<'_, PyAny>, what: &str, noun: &str, max: u64) -> PyResult<Vec<i128>> {
    let py = obj.py();
    let wrong = |why: String| {
        raise(
            py,
            Exc::Route,
            format!("{what} must be a one-dimensional integer array{why}"),
        )
    };
    // Bools are no lengths or values, although Python counts them as ints and numpy casts
    // them: a TypeError, as for one value (`table[prefix] = True`) and in `classify_many`.
    let bools = |got: String| {
        PyTypeError::new_err(format!(
            "{what} must be a one-dimensional integer array, not {got}"
        ))
    };
    if let Some(i) = convert::bool_row(obj)? {
        return Err(bools(format!("a bool (row {i})")));
    }
    let np = py.import("numpy")?;
    let as_array = |dtype: Option<&str>| match np.call_method1("asarray", (obj, dtype)) {
        Ok(arr) => Ok(arr.cast_into::<PyUntypedArray>()?),
        Err(e) => {
            let err = wrong(format!(" ({})", e.value(py)));
            err.set_cause(py, Some(e));
            Err(err)
        }
    };
    let mut arr = as_array(None)?;
    let kind = arr.dtype().kind();
    if matches!(kind, b'f' | b'c') && !obj.is_instance_of::<PyUntypedArray>() {
        arr = as_array(Some("object"))?;
    }
    if arr.ndim() != 1 {
        return Err(wrong(format!(", not {}-dimensional", arr.ndim())));
    }
    let dtype = arr.dtype();
    match dtype.kind() {
        b'b' => Err(bools("an array of bool".into())),
        b'i' => {
            let a = np.call_method1("ascontiguousarray", (&arr, "int64"))?;
            let a = a.cast::<PyArray1<i64>>()?.readonly();
            Ok(a.as_slice()?.iter().map(|&v| i128::from(v)).collect())
        }
        b'u' => {
            let a = np.call_method1("ascontiguousarray", (&arr, "uint64"))?;
            let a = a.cast::<PyArray1<u64>>()?.readonly();
            Ok(a.as_slice()?.iter().map(|&v| i128::from(v)).collect())
        }
        b'O' => {
            let mut out = Vec::with_capacity(arr.len());
            for (i, item) in arr.try_iter()?.enumerate() {
                let item = item?;
                if convert::is_bool(&item)? {
                    return Err(bools(format!("a bool (row {i})")));
                }
                let Some(int) = int_arg(&item)? else {
                    return Err(wrong(format!(
                        " (row {i} is a {}, not an int)",
                        type_name(&item)?
                    )));
                };
                out.push(int.extract::<i128>().map_err(|_| {
                    let message = format!("{noun} {int} is outside 0..={max}");
                    route_error(py, &RouteError::Row { index: i, message })
                })?);
            }
            Ok(out)
        }
        _ => Err(wrong(format!(", not {}", dtype.str()?))),
    }
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
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        if a.dtype().kind() == b'b' {
            // As for the other columns (and `classify_many`): bools are refused by type.
            return Err(PyTypeError::new_err(
                "addresses must be a uint32 array (IPv4) or an (n, 16) uint8 array (IPv6), \
                 not an array of bool",
            ));
        }
    }
    // uint32 in the other byte order ('>u4' here): one converting copy.
    let native;
    let obj = match obj.cast::<PyUntypedArray>() {
        Ok(a)
            if a.dtype().kind() == b'u'
                && a.dtype().itemsize() == 4
                && a.dtype().is_native_byteorder() == Some(false) =>
        {
            native = a.call_method1("astype", ("=u4",))?;
            &native
        }
        _ => obj,
    };
    if let Ok(a) = obj.cast::<PyArray1<u32>>() {
        let r = a.readonly();
        return Ok(Batch::V4(match r.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => r.as_array().iter().copied().collect(),
        }));
    }
    if let Ok(a) = obj.cast::<PyArray2<u8>>() {
        if a.shape()[1] != 16 {
            return Err(wrong());
        }
        let r = a.readonly();
        let row = |bytes: &mut dyn Iterator<Item = u8>| {
            let mut b = [0u8; 16];
            for (d, s) in b.iter_mut().zip(bytes) {
                *d = s;
            }
            u128::from_be_bytes(b)
        };
        // `as_slice` also takes a Fortran-ordered (column-major) array: rows only in C order.
        let flat = r.as_slice().ok().filter(|_| a.is_c_contiguous());
        return Ok(Batch::V6(match flat {
            Some(flat) => flat
                .chunks_exact(16)
                .map(|c| row(&mut c.iter().copied()))
                .collect(),
            None => r
                .as_array()
                .rows()
                .into_iter()
                .map(|c| row(&mut c.iter().copied()))
                .collect(),
        }));
    }
    Err(wrong())
}

/// The addresses of a `lookup_many` call: borrowed from a contiguous array, or copied.
enum Source<'a> {
    V4(&'a [u32]),
    /// (n, 16) rows of IPv6 addresses in network byte order, flattened.
    Rows(&'a [u8]),
    Copied(Batch),
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::V4(a) => a.len(),
            Source::Rows(r) => r.len() / 16,
            Source::Copied(Batch::V4(a)) => a.len(),
            Source::Copied(Batch::V6(a)) => a.len(),
        }
    }

    fn lookup(&self, t: &RouteTable, out: &mut [i64]) {
        match self {
            Source::V4(a) => t.v4.lookup_many(a, out),
            Source::Copied(Batch::V4(a)) => t.v4.lookup_many(a, out),
            Source::Copied(Batch::V6(a)) => t.v6.lookup_many(a, out),
            Source::Rows(rows) => {
                const BLOCK: usize = 1024;
                let mut buf = [0u128; BLOCK];
                for (rows, o) in rows.chunks(16 * BLOCK).zip(out.chunks_mut(BLOCK)) {
                    for (b, row) in buf.iter_mut().zip(rows.chunks_exact(16)) {
                        *b = u128::from_be_bytes(row.try_into().unwrap_or([0; 16]));
                    }
                    t.v6.lookup_many(&buf[..o.len()], o);
                }
            }
        }
    }
}

/// The pickled form of a table: a header, then the IPv4 and the IPv6 routes in order.
///
/// Header: `MCRT`, format version 1, the IPv4 and IPv6 route counts (u64, little-endian). Each
/// route: the address (big-endian, 4 or 16 bytes), the length (1 byte), the value (u32,
/// little-endian).
mod state {
    use super::{Fam, RouteTable, MAX_VALUE};
    use meshcore_core::route::Prefix;

    const MAGIC: &[u8; 4] = b"MCRT";
    const VERSION: u8 = 1;
    const HEADER: usize = 4 + 1 + 8 + 8;

    /// An address type that can be written and read as big-endian bytes.
    trait Packed: Fam {
        const BYTES: usize;
        fn put(self, out: &mut Vec<u8>);
        fn take(b: &[u8]) -> Self;
    }

    impl Packed for u32 {
        const BYTES: usize = 4;
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_be_bytes());
        }
        fn take(b: &[u8]) -> u32 {
            u32::from_be_bytes(b.try_into().unwrap_or_default())
        }
    }

    impl Packed for u128 {
        const BYTES: usize = 16;
        fn put(self, out: &mut Vec<u8>) {
            out.extend_from_slice(&self.to_be_bytes());
        }
        fn take(b: &[u8]) -> u128 {
            u128::from_be_bytes(b.try_into().unwrap_or_default())
        }
    }

    fn put_routes<A: Packed>(t: &RouteTable, out: &mut Vec<u8>) {
        for (p, v) in A::of(t).rib().iter() {
            p.addr().put(out);
            out.push(p.len());
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    pub fn encode(t: &RouteTable) -> Vec<u8> {
        let (n4, n6) = (t.v4.len(), t.v6.len());
        let mut out = Vec::with_capacity(HEADER + n4 * 9 + n6 * 21);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(n4 as u64).to_le_bytes());
        out.extend_from_slice(&(n6 as u64).to_le_bytes());
        put_routes::<u32>(t, &mut out);
        put_routes::<u128>(t, &mut out);
        out
    }

    fn take_routes<A: Packed>(
        records: &[u8],
        first: usize,
    ) -> Result<Vec<(Prefix<A>, u32)>, String> {
        let mut routes: Vec<(Prefix<A>, u32)> = Vec::with_capacity(records.len() / (A::BYTES + 5));
        for (i, r) in records.chunks_exact(A::BYTES + 5).enumerate() {
            let (addr, rest) = r.split_at(A::BYTES);
            let p = Prefix::new(A::take(addr), rest[0], true)
                .map_err(|e| format!("route {}: {e}", first + i))?;
            let v = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]);
            if v > MAX_VALUE {
                return Err(format!(
                    "route {}: value {v} is outside 0..={MAX_VALUE}",
                    first + i
                ));
            }
            if routes
                .last()
                .is_some_and(|&(q, _)| (q.addr(), q.len()) >= (p.addr(), p.len()))
            {
                return Err(format!("route {}: routes out of order", first + i));
            }
            routes.push((p, v));
        }
        Ok(routes)
    }

    pub fn decode(b: &[u8]) -> Result<RouteTable, String> {
        if b.len() < HEADER || &b[..4] != MAGIC {
            return Err("not a pickled RouteTable".into());
        }
        if b[4] != VERSION {
            return Err(format!("unknown format version {}", b[4]));
        }
        let count = |at: usize| {
            let n = u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
            usize::try_from(n).unwrap_or(usize::MAX)
        };
        let (n4, n6) = (count(5), count(13));
        let size4 = n4.checked_mul(u32::BYTES + 5);
        let size6 = n6.checked_mul(u128::BYTES + 5);
        let want = size4
            .zip(size6)
            .and_then(|(a, b)| a.checked_add(b)?.checked_add(HEADER));
        let Some(want) = want.filter(|&w| w == b.len()) else {
            return Err(format!(
                "{} bytes for {n4} IPv4 and {n6} IPv6 routes",
                b.len()
            ));
        };
        let split = want - n6 * (u128::BYTES + 5);
        let v4 = take_routes::<u32>(&b[HEADER..split], 0)?;
        let v6 = take_routes::<u128>(&b[split..], n4)?;
        let mut t = RouteTable::default();
        t.v4.extend(&v4);
        t.v6.extend(&v6);
        Ok(t)
    }
}

#[pymethods]
impl PyRouteTable {
    #[new]
    fn new() -> Self {
        PyRouteTable {
            inner: Locked::new(RouteTable::default(), TABLE),
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
        self.inner.write_one(py, move |t| {
            t.insert(p, v);
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
        let old = self.inner.write_one(py, move |t| t.remove(p))?;
        old.ok_or_else(|| PyKeyError::new_err(p.to_string()))
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
        match self.inner.read(py, move |t| t.get(p))? {
            Some(v) => Ok(Some(v.into_pyobject(py)?.into_any())),
            None => Ok(default),
        }
    }

    fn __getitem__(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<u32> {
        let (p, _) = prefix_arg(prefix, true)?;
        self.inner
            .read(py, move |t| t.get(p))?
            .ok_or_else(|| PyKeyError::new_err(p.to_string()))
    }

    /// False for anything that is not a prefix (None, "garbage", host bits), as no route has
    /// it; `get` and `[]` still raise for those.
    fn __contains__(&self, py: Python<'_>, prefix: &Bound<'_, PyAny>) -> PyResult<bool> {
        let p = match prefix_arg(prefix, true) {
            Ok((p, _)) => p,
            Err(e)
                if error::is_class(py, &e, Exc::Route) || e.is_instance_of::<PyTypeError>(py) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        self.inner.read(py, move |t| t.get(p).is_some())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, RouteTable::len)
    }

    /// `(prefix, value)` pairs, IPv4 then IPv6, each in address order (a snapshot).
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let routes = self.inner.read_detached(py, |t| {
            let mut all = routes_of(t.v4.rib().iter());
            all.extend(routes_of(t.v6.rib().iter()));
            all
        })?;
        Ok(route_list(py, routes)?.try_iter()?.into_any())
    }

    /// The value of the longest route matching `address`, or None.
    fn lookup(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<Option<u32>> {
        match self::address(address)? {
            Addr::V4(a) => self.inner.read(py, move |t| t.v4.lookup(a)),
            Addr::V6(a) => self.inner.read(py, move |t| t.v6.lookup(a)),
        }
    }

    /// The longest route matching `address` as `(prefix, value)`, or None.
    fn lookup_prefix<'py>(
        &self,
        py: Python<'py>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let found = match self::address(address)? {
            Addr::V4(a) => self.inner.read(py, move |t| {
                t.v4.lookup_prefix(a).map(|(p, v)| (AnyPrefix::V4(p), v))
            })?,
            Addr::V6(a) => self.inner.read(py, move |t| {
                t.v6.lookup_prefix(a).map(|(p, v)| (AnyPrefix::V6(p), v))
            })?,
        };
        found
            .map(|(p, v)| (p.to_string(), v).into_pyobject(py))
            .transpose()
    }

    /// Look up a batch: int64 values, -1 where no route matches. The GIL is released.
    #[pyo3(signature = (addresses, out = None))]
    fn lookup_many<'py>(
        &self,
        py: Python<'py>,
        addresses: &Bound<'py, PyAny>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        // Contiguous arrays are read in place (IPv6 rows converted a block at a time without
        // the GIL); anything else is copied into a batch first.
        let v4 = addresses
            .cast::<PyArray1<u32>>()
            .ok()
            .map(PyArrayMethods::readonly);
        let v6 = addresses
            .cast::<PyArray2<u8>>()
            .ok()
            .filter(|a| a.shape()[1] == 16 && a.is_c_contiguous())
            .map(PyArrayMethods::readonly);
        let src = if let Some(s) = v4.as_ref().and_then(|r| r.as_slice().ok()) {
            Source::V4(s)
        } else if let Some(s) = v6.as_ref().and_then(|r| r.as_slice().ok()) {
            Source::Rows(s)
        } else {
            Source::Copied(address_batch(addresses)?)
        };
        // The output is allocated by numpy, which backs large arrays with huge pages: first
        // touches of a 4 KiB-page buffer cost more than the lookups themselves.
        let out = batch::out_array(py, out, src.len(), Exc::Route)?;
        let mut w = batch::writable_rows(py, &out, Exc::Route)?;
        let o = w.as_slice_mut()?;
        self.inner.read_detached(py, move |t| src.lookup(t, o))?;
        drop(w);
        Ok(out)
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
        self.rows(py, (addresses, lengths, values), strict, false)
    }

    /// Apply route updates in row order: a value adds or replaces the route, -1 withdraws it
    /// (withdrawing an absent route does nothing). Arrays as for `insert_many`; all or
    /// nothing; readers see the table before or after the whole batch.
    #[pyo3(signature = (addresses, lengths, values, strict = true))]
    fn update_many(
        &self,
        py: Python<'_>,
        addresses: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        strict: bool,
    ) -> PyResult<()> {
        self.rows(py, (addresses, lengths, values), strict, true)
    }

    /// Routes covering `prefix_or_address`, longest first: for a prefix, those strictly shorter
    /// (its ancestors); for an address, every route that contains it.
    fn parents<'py>(
        &self,
        py: Python<'py>,
        prefix_or_address: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        fn covering<A: Fam>(t: &RouteTable, p: Prefix<A>, is_prefix: bool) -> Routes {
            let all = A::of(t).rib().covering(p);
            routes_of(all.into_iter().filter(|&(q, _)| !(is_prefix && q == p)))
        }
        let (p, is_prefix) = prefix_arg(prefix_or_address, true)?;
        let routes = self.inner.read(py, move |t| match p {
            AnyPrefix::V4(p) => covering(t, p, is_prefix),
            AnyPrefix::V6(p) => covering(t, p, is_prefix),
        })?;
        route_list(py, routes)
    }

    /// Routes strictly inside `prefix`, in address order.
    fn children<'py>(
        &self,
        py: Python<'py>,
        prefix: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (p, _) = prefix_arg(prefix, true)?;
        let routes = self.inner.read_detached(py, move |t| match p {
            AnyPrefix::V4(p) => routes_of(t.v4.rib().covered(p, false)),
            AnyPrefix::V6(p) => routes_of(t.v6.rib().covered(p, false)),
        })?;
        route_list(py, routes)
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
        let raw = std::fs::read(&path).map_err(|e| error::io(py, &e, &path))?;
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
            inner: Locked::new(t, TABLE),
        })
    }

    /// Pickle support: `RouteTable._from_state(state)` rebuilds the table from compact bytes.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let state = slf.get().inner.read_detached(py, state::encode)?;
        let rebuild = slf.get_type().getattr("_from_state")?;
        Ok((rebuild, (PyBytes::new(py, &state),)))
    }

    /// A table from the bytes `__reduce__` made; RouteError when they are not such bytes.
    #[classmethod]
    fn _from_state(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        state: &Bound<'_, PyBytes>,
    ) -> PyResult<PyRouteTable> {
        let bytes = state.as_bytes();
        let t = guard(py, || Ok(py.detach(|| state::decode(bytes))))?
            .map_err(|e| raise(py, Exc::Route, format!("bad RouteTable state: {e}")))?;
        Ok(PyRouteTable {
            inner: Locked::new(t, TABLE),
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (n4, n6) = self.inner.read(py, |t| (t.v4.len(), t.v6.len()))?;
        Ok(format!("RouteTable(ipv4={n4}, ipv6={n6})"))
    }
}
