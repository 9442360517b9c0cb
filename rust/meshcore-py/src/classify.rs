//! `meshcore.Classifier`: the core classifier, with each rule's action label, behind a
//! reader-writer lock ([`Locked`]; `lock.rs` says how it stays clear of the GIL).
//!
//! Rule arguments are converted and checked before the lock is taken; the core checks the rest
//! (duplicate ids, mixed families) under the write lock and refuses a bad rule whole. Batches
//! read their columns in place where the dtype and layout allow (uint32 or (n, 16) uint8
//! addresses, uint16 ports, uint8 protocols), copy them after a range check otherwise, and
//! classify a block of keys at a time under the read lock with the GIL released.

use crate::batch::{out_array, writable_rows, Pinned};
use crate::convert::{self, int_arg, type_name, Addr};
use crate::error::{self, guard, raise, Exc};
use crate::lock::Locked;
use meshcore_core::classify::classbench;
use meshcore_core::classify::text::{self, parse_protocol, protocol_number};
use meshcore_core::classify::{port_range, proto_match, Classifier, Key, Match, Spec};
use meshcore_core::route::{Address, AnyPrefix};
use meshcore_core::wire::stack::ROW_LEN;
use numpy::{
    Element, PyArray1, PyArray2, PyArrayDescr, PyArrayDescrMethods, PyArrayMethods,
    PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Keys gathered per batch call to the core.
const BLOCK: usize = 1024;

/// What a poisoned classifier calls itself.
const CLASSIFIER: &str = "classifier";

/// The rules and the action label of each rule that has one.
#[derive(Default)]
struct Rules {
    set: Classifier,
    actions: HashMap<u32, String>,
}

#[pyclass(frozen, module = "meshcore", name = "Classifier")]
pub struct PyClassifier {
    inner: Locked<Rules>,
}

fn rule_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, Exc::Rule, msg)
}

/// Re-raise a `RuleError` from a conversion with the argument's name in front.
fn named(py: Python<'_>, what: &str, e: PyErr) -> PyErr {
    if error::is_class(py, &e, Exc::Rule) {
        rule_error(py, format!("{what}: {}", e.value(py)))
    } else {
        e
    }
}

/// A rule id or priority: an int (numpy integers too, not bools) in `0..=u32::MAX`.
fn u32_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u32> {
    let Some(int) = int_arg(obj)? else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be an int, not {}",
            type_name(obj)?
        )));
    };
    int.extract::<u32>()
        .map_err(|_| rule_error(obj.py(), format!("{what} {int} is outside 0..=4294967295")))
}

/// An int argument in `0..=max` (a port, a protocol number).
fn small_int(obj: &Bound<'_, PyAny>, what: &str, max: u16) -> PyResult<Option<u16>> {
    let Some(int) = int_arg(obj)? else {
        return Ok(None);
    };
    match int.extract::<u16>() {
        Ok(v) if v <= max => Ok(Some(v)),
        _ => Err(rule_error(
            obj.py(),
            format!("{what} {int} is outside 0..={max}"),
        )),
    }
}

/// `"any"` (None), a prefix or address string, or an `ipaddress` network or address.
fn rule_prefix(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<AnyPrefix>> {
    let Some(obj) = obj else {
        return Ok(None);
    };
    if let Ok(s) = obj.cast::<PyString>() {
        if s.to_cow()?.trim().eq_ignore_ascii_case("any") {
            return Ok(None);
        }
    }
    convert::prefix_arg(obj, true, Exc::Rule)
        .map(|(p, _)| Some(p))
        .map_err(|e| named(obj.py(), what, e))
}

/// A port (an exact match) or an inclusive `(lo, hi)` range.
fn rule_ports(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<(u16, u16)> {
    let Some(obj) = obj else {
        return Ok((0, u16::MAX));
    };
    let py = obj.py();
    // The tuple first: probing a tuple for `__index__` raises and formats an AttributeError.
    let pair = obj.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
    if pair.is_none() {
        if let Some(p) = small_int(obj, what, u16::MAX)? {
            return Ok((p, p));
        }
    }
    let Some(pair) = pair else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a port (int) or an inclusive (lo, hi) range, not {}",
            type_name(obj)?
        )));
    };
    let end = |i: usize| -> PyResult<u64> {
        let item = pair.get_item(i)?;
        let Some(int) = int_arg(&item)? else {
            return Err(PyTypeError::new_err(format!(
                "{what} range ends must be ints, not {}",
                type_name(&item)?
            )));
        };
        int.extract::<u64>()
            .map_err(|_| rule_error(py, format!("{what}: port {int} is outside 0..=65535")))
    };
    port_range(end(0)?, end(1)?).map_err(|e| rule_error(py, format!("{what}: {e}")))
}

/// A rule's protocol: None (any), a number, a name (or any protocol of the text format, such
/// as "0x06/0xff"), or `(value, mask)`.
fn rule_proto(obj: Option<&Bound<'_, PyAny>>) -> PyResult<(u8, u8)> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok((0, 0));
    };
    let py = obj.py();
    if let Ok(s) = obj.cast::<PyString>() {
        return parse_protocol(s.to_cow()?.trim())
            .map_err(|e| rule_error(py, format!("proto: {e}")));
    }
    let pair = obj.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
    if pair.is_none() {
        if let Some(v) = small_int(obj, "proto", 255)? {
            return Ok((v as u8, 0xff));
        }
    }
    if let Some(pair) = pair {
        let byte = |i: usize, what: &str| -> PyResult<u8> {
            let item = pair.get_item(i)?;
            match small_int(&item, what, 255)? {
                Some(v) => Ok(v as u8),
                None => Err(PyTypeError::new_err(format!(
                    "{what} must be an int, not {}",
                    type_name(&item)?
                ))),
            }
        };
        let (v, m) = (byte(0, "proto value")?, byte(1, "proto mask")?);
        return proto_match(v, m).map_err(|e| rule_error(py, format!("proto: {e}")));
    }
    Err(PyTypeError::new_err(format!(
        "proto must be None, an int, a name or a (value, mask) pair, not {}",
        type_name(obj)?
    )))
}

/// A packet's protocol: a number in 0..=255 or a protocol name.
fn packet_proto(obj: &Bound<'_, PyAny>) -> PyResult<u8> {
    if let Ok(s) = obj.cast::<PyString>() {
        let name = s.to_cow()?;
        return protocol_number(name.trim())
            .ok_or_else(|| rule_error(obj.py(), format!("proto: unknown protocol name {name:?}")));
    }
    match small_int(obj, "proto", 255)? {
        Some(v) => Ok(v as u8),
        None => Err(PyTypeError::new_err(format!(
            "proto must be an int or a protocol name, not {}",
            type_name(obj)?
        ))),
    }
}

fn packet_port(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<u16> {
    small_int(obj, what, u16::MAX)?.ok_or_else(|| {
        let name = type_name(obj).unwrap_or_default();
        PyTypeError::new_err(format!("{what} must be an int, not {name}"))
    })
}

/// One alternative of a rule, from the keyword arguments of `add` (or a `rule()` dict).
fn rule_match(
    src: Option<&Bound<'_, PyAny>>,
    dst: Option<&Bound<'_, PyAny>>,
    sport: Option<&Bound<'_, PyAny>>,
    dport: Option<&Bound<'_, PyAny>>,
    proto: Option<&Bound<'_, PyAny>>,
) -> PyResult<Match> {
    Ok(Match {
        src: rule_prefix(src, "src")?,
        dst: rule_prefix(dst, "dst")?,
        sport: rule_ports(sport, "sport")?,
        dport: rule_ports(dport, "dport")?,
        proto: rule_proto(proto)?,
    })
}

/// A rule as `rule()` describes it: a dict of plain values.
fn describe<'py>(
    py: Python<'py>,
    spec: &Spec,
    action: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", spec.id)?;
    d.set_item("priority", spec.priority)?;
    d.set_item("action", action)?;
    let text = |p: Option<AnyPrefix>| p.map_or_else(|| "any".to_string(), |p| p.to_string());
    let matches = PyList::empty(py);
    for m in &spec.matches {
        let md = PyDict::new(py);
        md.set_item("src", text(m.src))?;
        md.set_item("dst", text(m.dst))?;
        md.set_item("sport", m.sport)?;
        md.set_item("dport", m.dport)?;
        md.set_item("proto", m.proto)?;
        matches.append(md)?;
    }
    d.set_item("matches", matches)?;
    Ok(d)
}

/// The inverse of [`describe`], for unpickling.
fn undescribe(obj: &Bound<'_, PyAny>) -> PyResult<(Spec, Option<String>)> {
    let d = obj.cast::<PyDict>()?;
    let item = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(key)?
            .ok_or_else(|| rule_error(obj.py(), format!("a rule dict needs {key:?}")))
    };
    let id = u32_arg(&item("id")?, "id")?;
    let priority = u32_arg(&item("priority")?, "priority")?;
    let action: Option<String> = item("action")?.extract()?;
    let mut matches = Vec::new();
    for m in item("matches")?.try_iter()? {
        let m = m?;
        let m = m.cast::<PyDict>()?;
        let field = |key: &str| m.get_item(key);
        matches.push(rule_match(
            field("src")?.as_ref(),
            field("dst")?.as_ref(),
            field("sport")?.as_ref(),
            field("dport")?.as_ref(),
            field("proto")?.as_ref(),
        )?);
    }
    Ok((
        Spec {
            id,
            priority,
            matches,
        },
        action,
    ))
}

/// A classifier built from `specs` in one bulk build, with the GIL released. `line(i)` names
/// where rule `i` came from, for the message when one is refused.
fn build(
    py: Python<'_>,
    specs: Vec<Spec>,
    actions: HashMap<u32, String>,
    line: impl Fn(usize) -> String,
) -> PyResult<PyClassifier> {
    let mut set = Classifier::new();
    guard(py, || Ok(py.detach(|| set.add_all(specs))))?
        .map_err(|(i, e)| rule_error(py, format!("{}: {e}", line(i))))?;
    Ok(PyClassifier {
        inner: Locked::new(Rules { set, actions }, CLASSIFIER),
    })
}

/// The rules of a text, as one classifier.
fn from_rule_text(py: Python<'_>, text: &str, path: Option<&Path>) -> PyResult<PyClassifier> {
    let rules = py
        .detach(|| text::parse_rules(text))
        .map_err(|e| error::rule_line(py, &e, path))?;
    let lines: Vec<usize> = rules.iter().map(|r| r.line).collect();
    let mut actions = HashMap::with_capacity(rules.len());
    let specs = rules
        .into_iter()
        .map(|r| {
            actions.insert(r.spec.id, r.action);
            r.spec
        })
        .collect();
    build(py, specs, actions, |i| {
        let at = format!("line {}", lines.get(i).copied().unwrap_or(0));
        path.map_or_else(|| at.clone(), |p| format!("{}: {at}", p.display()))
    })
}

fn read_text(py: Python<'_>, path: &Path) -> PyResult<String> {
    let raw = std::fs::read(path).map_err(|e| error::io(py, &e, path))?;
    String::from_utf8(raw)
        .map_err(|_| rule_error(py, format!("{}: not UTF-8 text", path.display())))
}

/// An integer column of a batch: read in place, copied after a range check, or one value for
/// every row (held as a block of copies).
enum Ints<'py, T: Element> {
    Array(PyReadonlyArray1<'py, T>),
    Copied(Vec<T>),
    Same(Vec<T>),
}

/// A column's values, borrowed for use without the GIL.
#[derive(Clone, Copy)]
struct IntSlice<'a, T> {
    data: &'a [T],
    same: bool,
}

impl<T: Element + Copy> Ints<'_, T> {
    /// Rows, or None for one value for every row.
    fn rows(&self) -> Option<usize> {
        match self {
            Ints::Array(a) => Some(a.len()),
            Ints::Copied(v) => Some(v.len()),
            Ints::Same(_) => None,
        }
    }

    fn slice(&self) -> IntSlice<'_, T> {
        match self {
            Ints::Array(a) => IntSlice {
                data: a.as_slice().unwrap_or_default(),
                same: false,
            },
            Ints::Copied(v) => IntSlice {
                data: v,
                same: false,
            },
            Ints::Same(v) => IntSlice {
                data: v,
                same: true,
            },
        }
    }
}

impl<T> IntSlice<'_, T> {
    /// The values of rows `start..start + len` (`len` at most `BLOCK`).
    fn block(&self, start: usize, len: usize) -> &[T] {
        if self.same {
            self.data.get(..len).unwrap_or(self.data)
        } else {
            self.data.get(start..start + len).unwrap_or_default()
        }
    }
}

fn borrowed(py: Python<'_>, what: &str) -> PyErr {
    rule_error(
        py,
        format!("{what} is being written by another call: pass an array of its own"),
    )
}

/// A column of `T` (u16 ports, u8 protocols): an array of exactly `T` is read in place; any
/// other integer array (or list) is copied after a range check naming the bad row; an int is
/// one value for every row.
fn int_column<'py, T>(obj: &Bound<'py, PyAny>, what: &str, max: u16) -> PyResult<Ints<'py, T>>
where
    T: Element + Copy + TryFrom<u64>,
{
    let py = obj.py();
    let out_of_range = |v: String| rule_error(py, format!("{what} {v} is outside 0..={max}"));
    let row_out_of_range =
        |i: usize, v: String| rule_error(py, format!("row {i}: {what} {v} is outside 0..={max}"));
    let cast = |v: u64| T::try_from(v).ok().filter(|_| v <= u64::from(max));
    if let Ok(a) = obj.cast::<PyArray1<T>>() {
        let r = a.try_readonly().map_err(|_| borrowed(py, what))?;
        if r.as_slice().is_ok() {
            return Ok(Ints::Array(r));
        }
        return Ok(Ints::Copied(r.as_array().iter().copied().collect()));
    }
    // Bools are not ports or protocols, although Python counts them as ints and numpy casts
    // them: a TypeError, as in `classify`, whether one bool or an array (or list) of them.
    let not_bools = |got: &str| {
        PyTypeError::new_err(format!(
            "{what} must be an int or an integer array, not {got}"
        ))
    };
    // (An array is no bool scalar: the common columns skip the lookup.)
    if !obj.is_instance_of::<PyUntypedArray>() && convert::is_bool(obj)? {
        return Err(not_bools(&type_name(obj)?));
    }
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        if a.dtype().kind() == b'b' {
            return Err(not_bools("an array of bool"));
        }
    }
    if let Some(i) = convert::bool_row(obj)? {
        return Err(not_bools(&format!("a bool (row {i})")));
    }
    let array = match obj.cast::<PyUntypedArray>() {
        Ok(a) if a.ndim() == 0 => None,
        Ok(a) => Some(a.clone()),
        Err(_) if obj.is_instance_of::<PyString>() || int_arg(obj)?.is_some() => None,
        Err(_) => {
            let np = py.import("numpy")?;
            let a = np.call_method1("asarray", (obj,)).map_err(|e| {
                rule_error(py, format!("{what} must be integers ({})", e.value(py)))
            })?;
            Some(a.cast_into::<PyUntypedArray>()?)
        }
    };
    let Some(arr) = array else {
        // One value for every row.
        let scalar = if obj.is_instance_of::<PyUntypedArray>() {
            obj.call_method0("item")?
        } else {
            obj.clone()
        };
        let Some(int) = int_arg(&scalar)? else {
            return Err(PyTypeError::new_err(format!(
                "{what} must be an int or an integer array, not {}",
                type_name(obj)?
            )));
        };
        let v = int
            .extract::<u64>()
            .ok()
            .and_then(cast)
            .ok_or_else(|| out_of_range(int.to_string()))?;
        return Ok(Ints::Same(vec![v; BLOCK]));
    };
    let kind = arr.dtype().kind();
    if kind == b'b' {
        return Err(not_bools("an array of bool"));
    }
    if arr.ndim() != 1 {
        return Err(rule_error(
            py,
            format!(
                "{what} must be one-dimensional, not {}-dimensional",
                arr.ndim()
            ),
        ));
    }
    // numpy makes an empty list float64; with no values there is nothing to refuse. (An empty
    // float array passed as such is refused below, as a float array of any length is.)
    if arr.len() == 0 && !obj.is_instance_of::<PyUntypedArray>() {
        return Ok(Ints::Copied(Vec::new()));
    }
    let np = py.import("numpy")?;
    let values: Vec<T> = match kind {
        b'u' => {
            let a = np.call_method1("ascontiguousarray", (&arr, "uint64"))?;
            let a = a.cast::<PyArray1<u64>>()?.readonly();
            let s = a.as_slice()?;
            s.iter()
                .enumerate()
                .map(|(i, &v)| cast(v).ok_or_else(|| row_out_of_range(i, v.to_string())))
                .collect::<PyResult<_>>()?
        }
        b'i' => {
            let a = np.call_method1("ascontiguousarray", (&arr, "int64"))?;
            let a = a.cast::<PyArray1<i64>>()?.readonly();
            let s = a.as_slice()?;
            s.iter()
                .enumerate()
                .map(|(i, &v)| {
                    u64::try_from(v)
                        .ok()
                        .and_then(cast)
                        .ok_or_else(|| row_out_of_range(i, v.to_string()))
                })
                .collect::<PyResult<_>>()?
        }
        // Python ints numpy holds as objects (a list with one of 2**64 or more, or below
        // -2**63), or as float64 (a list with ints on both sides of int64's top), read one by
        // one so that an out-of-range one is named with its row.
        b'O' | b'f' if kind == b'O' || !obj.is_instance_of::<PyUntypedArray>() => {
            let not_ints =
                |got: String| rule_error(py, format!("{what} must hold integers, not {got}"));
            let objects = np.call_method1("asarray", (obj, "object"))?;
            let mut out = Vec::with_capacity(arr.len());
            for (i, item) in objects.try_iter()?.enumerate() {
                let item = item?;
                if convert::is_bool(&item)? {
                    return Err(not_bools(&format!("a bool (row {i})")));
                }
                let Some(int) = int_arg(&item)? else {
                    return Err(if kind == b'O' {
                        not_ints(format!("{} (row {i})", type_name(&item)?))
                    } else {
                        not_ints(arr.dtype().str()?.to_string())
                    });
                };
                let v = int.extract::<u64>().ok().and_then(cast);
                out.push(v.ok_or_else(|| row_out_of_range(i, int.to_string()))?);
            }
            out
        }
        _ => {
            return Err(rule_error(
                py,
                format!("{what} must hold integers, not {}", arr.dtype().str()?),
            ))
        }
    };
    Ok(Ints::Copied(values))
}

/// A shape as Python writes it: `(2,)`, `(2, 16)`.
fn shape_text(shape: &[usize]) -> String {
    if let [n] = shape {
        return format!("({n},)");
    }
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("({})", dims.join(", "))
}

/// The addresses of a batch column: uint32 (IPv4) or (n, 16) uint8 rows (IPv6, network byte
/// order), read in place when contiguous.
enum Addrs<'py> {
    V4(PyReadonlyArray1<'py, u32>),
    V6(PyReadonlyArray2<'py, u8>),
    V4Copied(Vec<u32>),
    V6Copied(Vec<u8>),
}

#[derive(Clone, Copy)]
enum AddrSlice<'a> {
    V4(&'a [u32]),
    /// 16 bytes per row.
    V6(&'a [u8]),
}

impl Addrs<'_> {
    fn rows(&self) -> usize {
        match self {
            Addrs::V4(a) => a.len(),
            Addrs::V6(a) => a.shape()[0],
            Addrs::V4Copied(v) => v.len(),
            Addrs::V6Copied(v) => v.len() / 16,
        }
    }

    fn is_v4(&self) -> bool {
        matches!(self, Addrs::V4(_) | Addrs::V4Copied(_))
    }

    fn slice(&self) -> AddrSlice<'_> {
        match self {
            Addrs::V4(a) => AddrSlice::V4(a.as_slice().unwrap_or_default()),
            Addrs::V6(a) => AddrSlice::V6(a.as_slice().unwrap_or_default()),
            Addrs::V4Copied(v) => AddrSlice::V4(v),
            Addrs::V6Copied(v) => AddrSlice::V6(v),
        }
    }
}

fn addr_column<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Addrs<'py>> {
    let py = obj.py();
    let wrong = |got: String| {
        rule_error(
            py,
            format!(
                "{what} must be a uint32 array (IPv4) or an (n, 16) uint8 array (IPv6), not {got}"
            ),
        )
    };
    let Ok(arr) = obj.cast::<PyUntypedArray>() else {
        return Err(wrong(type_name(obj)?));
    };
    let dt = arr.dtype();
    if dt.kind() == b'u' && dt.itemsize() == 4 && arr.ndim() == 1 {
        // uint32 in the other byte order: one converting copy.
        let native = if dt.is_native_byteorder() == Some(false) {
            arr.call_method1("astype", ("=u4",))?
        } else {
            arr.clone().into_any()
        };
        let a = native.cast::<PyArray1<u32>>()?;
        let r = a.try_readonly().map_err(|_| borrowed(py, what))?;
        if r.as_slice().is_ok() {
            return Ok(Addrs::V4(r));
        }
        return Ok(Addrs::V4Copied(r.as_array().iter().copied().collect()));
    }
    if dt.kind() == b'u' && dt.itemsize() == 1 && arr.ndim() == 2 && arr.shape()[1] == 16 {
        let a = arr.cast::<PyArray2<u8>>()?;
        let r = a.try_readonly().map_err(|_| borrowed(py, what))?;
        // Rows in place only in C order: `as_slice` also takes Fortran order (column-major).
        if a.is_c_contiguous() {
            return Ok(Addrs::V6(r));
        }
        return Ok(Addrs::V6Copied(r.as_array().iter().copied().collect()));
    }
    Err(wrong(format!(
        "{} of shape {}",
        dt.str()?,
        shape_text(arr.shape())
    )))
}

/// The port and protocol columns of a batch, borrowed.
#[derive(Clone, Copy)]
struct Columns<'a> {
    sport: IntSlice<'a, u16>,
    dport: IntSlice<'a, u16>,
    proto: IntSlice<'a, u8>,
}

/// Gather keys a block at a time and classify each block with `batch`.
fn classify_blocks<'a, A: Address, I: Iterator<Item = A> + 'a>(
    rows: impl Fn(usize, usize) -> (I, I),
    cols: Columns<'_>,
    out: &mut [i64],
    batch: impl Fn(&[Key<A>], &mut [i64]),
) {
    let mut keys: Vec<Key<A>> = Vec::with_capacity(BLOCK);
    for (start, o) in (0..out.len()).step_by(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let len = o.len();
        let (src, dst) = rows(start, len);
        let ports = cols
            .sport
            .block(start, len)
            .iter()
            .zip(cols.dport.block(start, len));
        keys.clear();
        keys.extend(
            src.zip(dst)
                .zip(ports)
                .zip(cols.proto.block(start, len))
                .map(|(((src, dst), (&sport, &dport)), &proto)| Key {
                    src,
                    dst,
                    sport,
                    dport,
                    proto,
                }),
        );
        batch(&keys, o);
    }
}

fn v4_block(a: &[u32], start: usize, len: usize) -> std::iter::Copied<std::slice::Iter<'_, u32>> {
    a.get(start..start + len)
        .unwrap_or_default()
        .iter()
        .copied()
}

fn v6_block(rows: &[u8], start: usize, len: usize) -> impl Iterator<Item = u128> + '_ {
    rows.get(16 * start..16 * (start + len))
        .unwrap_or_default()
        .chunks_exact(16)
        .map(|r| u128::from_be_bytes(r.try_into().unwrap_or([0; 16])))
}

/// Offsets of a frame batch as int64, read in place when they already are.
enum Offsets<'py> {
    Array(PyReadonlyArray1<'py, i64>),
    Copied(Vec<i64>),
}

fn offsets_arg<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Offsets<'py>> {
    let py = obj.py();
    let wrong = || {
        raise(
            py,
            Exc::Packet,
            "offsets must be a one-dimensional integer array of N + 1 entries",
        )
    };
    if let Ok(a) = obj.cast::<PyArray1<i64>>() {
        let r = a.try_readonly().map_err(|_| borrowed(py, "offsets"))?;
        if r.as_slice().is_ok() {
            return Ok(Offsets::Array(r));
        }
        return Ok(Offsets::Copied(r.as_array().to_vec()));
    }
    // Bools are no offsets, although numpy casts them: a TypeError, as for the port columns.
    let bools = |got: String| {
        PyTypeError::new_err(format!(
            "offsets must be a one-dimensional integer array, not {got}"
        ))
    };
    if let Some(i) = convert::bool_row(obj)? {
        return Err(bools(format!("a bool (row {i})")));
    }
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj,))
        .map_err(|_| wrong())?
        .cast_into::<PyUntypedArray>()?;
    if arr.dtype().kind() == b'b' {
        return Err(bools("an array of bool".into()));
    }
    if arr.ndim() != 1 || !(matches!(arr.dtype().kind(), b'i' | b'u') || arr.len() == 0) {
        return Err(wrong());
    }
    if arr.dtype().kind() == b'u' {
        let a = np.call_method1("ascontiguousarray", (&arr, "uint64"))?;
        let a = a.cast::<PyArray1<u64>>()?.readonly();
        return a
            .as_slice()?
            .iter()
            .map(|&v| {
                i64::try_from(v).map_err(|_| raise(py, Exc::Packet, "offsets do not fit in int64"))
            })
            .collect::<PyResult<_>>()
            .map(Offsets::Copied);
    }
    let a = np.call_method1("ascontiguousarray", (&arr, "int64"))?;
    let a = a.cast::<PyArray1<i64>>()?.readonly();
    Ok(Offsets::Copied(a.as_slice()?.to_vec()))
}

impl Offsets<'_> {
    fn slice(&self) -> &[i64] {
        match self {
            Offsets::Array(a) => a.as_slice().unwrap_or_default(),
            Offsets::Copied(v) => v,
        }
    }
}

/// The rows of a `parse_batch` result as flat bytes: a PACKET_DTYPE array, or (n, 64) uint8.
fn row_bytes<'py>(rows: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let py = rows.py();
    let wrong = |got: String| {
        rule_error(
            py,
            format!(
                "rows must be a one-dimensional PACKET_DTYPE array from meshcore.parse_batch, \
                 not {got}"
            ),
        )
    };
    let Ok(arr) = rows.cast::<PyUntypedArray>() else {
        return Err(wrong(type_name(rows)?));
    };
    let packet = py
        .import("meshcore.wire")?
        .getattr("PACKET_DTYPE")?
        .cast_into::<PyArrayDescr>()?;
    let dt = arr.dtype();
    let raw = dt.kind() == b'u' && dt.itemsize() == 1;
    let shape_ok = if raw {
        arr.ndim() == 2 && arr.shape()[1] == ROW_LEN
    } else {
        arr.ndim() == 1 && dt.is_equiv_to(&packet)
    };
    if !shape_ok {
        return Err(wrong(format!(
            "{} of shape {}",
            dt.str()?,
            shape_text(arr.shape())
        )));
    }
    // A contiguous array is viewed, not copied.
    let np = py.import("numpy")?;
    let flat = np
        .call_method1("ascontiguousarray", (arr,))?
        .call_method1("view", ("u1",))?
        .call_method1("reshape", (-1,))?;
    Ok(flat.cast_into::<PyArray1<u8>>()?)
}

#[pymethods]
impl PyClassifier {
    #[new]
    fn new() -> Self {
        PyClassifier {
            inner: Locked::new(Rules::default(), CLASSIFIER),
        }
    }

    /// Add a rule; all checks happen before anything changes.
    #[pyo3(
        signature = (
            rule_id, *, priority, src = None, dst = None, sport = None, dport = None,
            proto = None, action = None
        ),
        text_signature = "($self, rule_id, *, priority, src='any', dst='any', \
                          sport=(0, 65535), dport=(0, 65535), proto=None, action=None)"
    )]
    #[allow(clippy::too_many_arguments)] // the keyword arguments of the Python method
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
    fn add(
        &self,
        py: Python<'_>,
        rule_id: &Bound<'_, PyAny>,
        priority: &Bound<'_, PyAny>,
        src: Option<Bound<'_, PyAny>>,
        dst: Option<Bound<'_, PyAny>>,
        sport: Option<Bound<'_, PyAny>>,
        dport: Option<Bound<'_, PyAny>>,
        proto: Option<Bound<'_, PyAny>>,
        action: Option<String>,
    ) -> PyResult<()> {
        let id = u32_arg(rule_id, "rule_id")?;
        let priority = u32_arg(priority, "priority")?;
        let m = rule_match(
            src.as_ref(),
            dst.as_ref(),
            sport.as_ref(),
            dport.as_ref(),
            proto.as_ref(),
        )?;
        let spec = Spec::single(id, priority, m);
        self.inner
            .write_one(py, move |r| {
                r.set.add(spec)?;
                if let Some(a) = action {
                    r.actions.insert(id, a);
                }
                Ok(())
            })?
            .map_err(|e| error::rule(py, &e))
    }

    /// Remove a rule; KeyError when no rule has this id.
    fn remove(&self, py: Python<'_>, rule_id: &Bound<'_, PyAny>) -> PyResult<()> {
        let id = u32_arg(rule_id, "rule_id")?;
        let found = self.inner.write_one(py, move |r| {
            r.actions.remove(&id);
            r.set.remove(id).is_some()
        })?;
        if found {
            Ok(())
        } else {
            Err(PyKeyError::new_err(id))
        }
    }

    /// The action label of a rule (None when it has none); KeyError when absent.
    fn action(&self, py: Python<'_>, rule_id: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let id = u32_arg(rule_id, "rule_id")?;
        let found = self.inner.read(py, move |r| {
            r.set.contains(id).then(|| r.actions.get(&id).cloned())
        })?;
        found.ok_or_else(|| PyKeyError::new_err(id))
    }

    /// A rule as a dict; KeyError when absent.
    fn rule<'py>(
        &self,
        py: Python<'py>,
        rule_id: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let id = u32_arg(rule_id, "rule_id")?;
        let found = self.inner.read(py, move |r| {
            r.set
                .get(id)
                .cloned()
                .map(|s| (s, r.actions.get(&id).cloned()))
        })?;
        let (spec, action) = found.ok_or_else(|| PyKeyError::new_err(id))?;
        describe(py, &spec, action)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, |r| r.set.len())
    }

    fn __contains__(&self, py: Python<'_>, rule_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let id = match int_arg(rule_id)? {
            Some(i) => match i.extract::<u32>() {
                Ok(id) => id,
                Err(_) => return Ok(false),
            },
            None => return Ok(false),
        };
        self.inner.read(py, move |r| r.set.contains(id))
    }

    /// Rule ids, best first (a snapshot).
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ids: Vec<u32> = self
            .inner
            .read_detached(py, |r| r.set.specs().iter().map(|s| s.id).collect())?;
        Ok(PyList::new(py, ids)?.try_iter()?.into_any())
    }

    /// Bytes held by the lookup structures.
    #[getter]
    fn memory(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, |r| r.set.memory())
    }

    /// The id of the best rule matching one packet, or None.
    fn classify(
        &self,
        py: Python<'_>,
        src: &Bound<'_, PyAny>,
        dst: &Bound<'_, PyAny>,
        sport: &Bound<'_, PyAny>,
        dport: &Bound<'_, PyAny>,
        proto: &Bound<'_, PyAny>,
    ) -> PyResult<Option<u32>> {
        let s = convert::address(src, Exc::Rule).map_err(|e| named(py, "src", e))?;
        let d = convert::address(dst, Exc::Rule).map_err(|e| named(py, "dst", e))?;
        let (sport, dport) = (packet_port(sport, "sport")?, packet_port(dport, "dport")?);
        let proto = packet_proto(proto)?;
        match (s, d) {
            (Addr::V4(src), Addr::V4(dst)) => {
                let k = Key {
                    src,
                    dst,
                    sport,
                    dport,
                    proto,
                };
                self.inner.read(py, move |r| r.set.classify_v4(&k))
            }
            (Addr::V6(src), Addr::V6(dst)) => {
                let k = Key {
                    src,
                    dst,
                    sport,
                    dport,
                    proto,
                };
                self.inner.read(py, move |r| r.set.classify_v6(&k))
            }
            _ => Err(rule_error(
                py,
                "src and dst are of different families (an int below 2**32 is IPv4)",
            )),
        }
    }

    /// Classify a batch of packets given as columns; the GIL is released.
    #[pyo3(signature = (src, dst, sport, dport, proto, *, out = None))]
    #[allow(clippy::too_many_arguments)] // the columns of the Python method
    fn classify_many<'py>(
        &self,
        py: Python<'py>,
        src: &Bound<'py, PyAny>,
        dst: &Bound<'py, PyAny>,
        sport: &Bound<'py, PyAny>,
        dport: &Bound<'py, PyAny>,
        proto: &Bound<'py, PyAny>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let src = addr_column(src, "src")?;
        let dst = addr_column(dst, "dst")?;
        if src.is_v4() != dst.is_v4() {
            return Err(rule_error(
                py,
                "src and dst are of different families (uint32 and (n, 16) uint8)",
            ));
        }
        let sport = int_column::<u16>(sport, "sport", u16::MAX)?;
        let dport = int_column::<u16>(dport, "dport", u16::MAX)?;
        let proto = match proto.cast::<PyString>() {
            Ok(_) => Ints::Same(vec![packet_proto(proto)?; BLOCK]),
            Err(_) => int_column::<u8>(proto, "proto", 255)?,
        };
        let n = src.rows();
        let lens = [
            Some(n),
            Some(dst.rows()),
            sport.rows(),
            dport.rows(),
            proto.rows(),
        ];
        if lens.iter().flatten().any(|&l| l != n) {
            let show: Vec<String> = lens
                .iter()
                .map(|l| l.map_or_else(|| "one".to_string(), |l| l.to_string()))
                .collect();
            return Err(rule_error(
                py,
                format!(
                    "src, dst, sport, dport and proto differ in length ({})",
                    show.join(", ")
                ),
            ));
        }
        let out = out_array(py, out, n, Exc::Rule)?;
        let mut w = writable_rows(py, &out, Exc::Rule)?;
        let o = w.as_slice_mut()?;
        let cols = Columns {
            sport: sport.slice(),
            dport: dport.slice(),
            proto: proto.slice(),
        };
        let (s, d) = (src.slice(), dst.slice());
        self.inner.read_detached(py, move |r| match (s, d) {
            (AddrSlice::V4(s), AddrSlice::V4(d)) => classify_blocks(
                |at, len| (v4_block(s, at, len), v4_block(d, at, len)),
                cols,
                o,
                |k, o| r.set.classify_v4_batch(k, o),
            ),
            (AddrSlice::V6(s), AddrSlice::V6(d)) => classify_blocks(
                |at, len| (v6_block(s, at, len), v6_block(d, at, len)),
                cols,
                o,
                |k, o| r.set.classify_v6_batch(k, o),
            ),
            // Refused above.
            _ => o.fill(-1),
        })?;
        drop(w);
        Ok(out)
    }

    /// Classify the rows of `meshcore.parse_batch`; the GIL is released.
    #[pyo3(signature = (rows, *, out = None))]
    fn classify_parsed<'py>(
        &self,
        py: Python<'py>,
        rows: &Bound<'py, PyAny>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let flat = row_bytes(rows)?;
        let r = flat.try_readonly().map_err(|_| borrowed(py, "rows"))?;
        let bytes = r.as_slice()?;
        let out = out_array(py, out, bytes.len() / ROW_LEN, Exc::Rule)?;
        let mut w = writable_rows(py, &out, Exc::Rule)?;
        let o = w.as_slice_mut()?;
        self.inner
            .read_detached(py, move |r| r.set.classify_rows(bytes, o))?;
        drop(w);
        Ok(out)
    }

    /// Parse and classify frames in one call without the GIL.
    #[pyo3(signature = (buffer, offsets, link = "ethernet", *, out = None))]
    fn classify_frames<'py>(
        &self,
        py: Python<'py>,
        buffer: &Bound<'py, PyAny>,
        offsets: &Bound<'py, PyAny>,
        link: &str,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let link = convert::link(py, link)?;
        let pinned = Pinned::get(buffer, "buffer")?;
        let offsets = offsets_arg(offsets)?;
        let offs = offsets.slice();
        let Some(n) = offs.len().checked_sub(1) else {
            return Err(raise(
                py,
                Exc::Packet,
                "offsets must hold N + 1 entries for N packets",
            ));
        };
        let out = out_array(py, out, n, Exc::Rule)?;
        let mut w = writable_rows(py, &out, Exc::Rule)?;
        let o = w.as_slice_mut()?;
        if pinned.overlaps_range(o.as_ptr() as usize, std::mem::size_of_val(o)) {
            return Err(rule_error(py, "out must not share memory with buffer"));
        }
        let inner = &self.inner;
        let r = guard(py, || {
            Ok(pinned.detach(py, |data| {
                inner
                    .read_blocking(|r| r.set.classify_frames(data, offs, link, o))
                    .map(|res| res.map_err(|e| (e, data.len())))
            }))
        })?;
        match r {
            None => Err(inner.unusable(py)),
            Some(Err((e, len))) => Err(error::offsets(py, e, len)),
            Some(Ok(())) => {
                drop(w);
                Ok(out)
            }
        }
    }

    /// Rules from a ClassBench filter file: rule id and priority are the 0-based rule index.
    #[classmethod]
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
    fn from_classbench(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        path: PathBuf,
    ) -> PyResult<PyClassifier> {
        let text = read_text(py, &path)?;
        let specs: Vec<Spec> = py
            .detach(|| classbench::parse_filters(&text))
            .map_err(|e| error::rule_line(py, &e, Some(&path)))?
            .into_iter()
            .map(Spec::from)
            .collect();
        build(py, specs, HashMap::new(), |i| {
            format!("{}: rule {i}", path.display())
        })
    }

    /// Rules in the text format (see the README and `classify/text.rs`).
    #[classmethod]
    fn from_text(_cls: &Bound<'_, PyType>, py: Python<'_>, text: &str) -> PyResult<PyClassifier> {
        from_rule_text(py, text, None)
    }

    /// Rules in the text format, from a file.
    #[classmethod]
    #[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
    fn load(_cls: &Bound<'_, PyType>, py: Python<'_>, path: PathBuf) -> PyResult<PyClassifier> {
        let text = read_text(py, &path)?;
        from_rule_text(py, &text, Some(&path))
    }

    /// Pickle support: `Classifier._from_rules(rules)` rebuilds from the `rule()` dicts, best
    /// first.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyList>,))> {
        let rules = slf.get().inner.read_detached(py, |r| {
            r.set
                .specs()
                .into_iter()
                .map(|s| (s.clone(), r.actions.get(&s.id).cloned()))
                .collect::<Vec<_>>()
        })?;
        let list = PyList::empty(py);
        for (spec, action) in rules {
            list.append(describe(py, &spec, action)?)?;
        }
        let rebuild = slf.get_type().getattr("_from_rules")?;
        Ok((rebuild, (list,)))
    }

    /// A classifier from `rule()` dicts, added in order in one bulk build.
    #[classmethod]
    fn _from_rules(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        rules: &Bound<'_, PyAny>,
    ) -> PyResult<PyClassifier> {
        let mut specs = Vec::new();
        let mut actions = HashMap::new();
        for (i, item) in rules.try_iter()?.enumerate() {
            let (spec, action) =
                undescribe(&item?).map_err(|e| named(py, &format!("rule {i}"), e))?;
            if let Some(a) = action {
                actions.insert(spec.id, a);
            }
            specs.push(spec);
        }
        build(py, specs, actions, |i| format!("rule {i}"))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let n = self.inner.read(py, |r| r.set.len())?;
        Ok(format!("Classifier(rules={n})"))
    }
}
