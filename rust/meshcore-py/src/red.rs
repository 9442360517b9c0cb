//! `meshcore.RedQueue`: the core RED queue of Python objects behind a lock ([`Locked`]).
//!
//! Items are `Option<Py<PyAny>>`: `None` is a packet given only by its size (the batch form
//! without `items`), which `dequeue` hands back as the int size. Items are never dropped (their
//! reference released) while the lock is held: refused ones are passed out and released after.
//! Also the shared arrival-batch helpers used by `codel.rs`.

use crate::bucket::CHUNK;
use crate::clock::{self, config_error, Clock};
use crate::convert::{bool_row, bytes_len, int_arg, is_bool, py_bool};
use crate::error::{raise, Exc};
use crate::lock::{Locked, SMALL_BATCH};
use meshcore_core::queue::bucket::all_at_most;
use meshcore_core::queue::red::{CountRule, RedConfig, RedQueue};
use meshcore_core::queue::{
    all_seconds, nanos_checked, nanos_checked_into, seconds_to_nanos, sizes_checked_into, Nanos,
    ParamError, Verdict,
};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// A queued item: the object, or None for a packet known only by its size.
pub type Item = Option<Py<PyAny>>;

const QUEUE: &str = "RED queue";

/// A packet size argument in bytes: `size` when given, else the length of a bytes-like item,
/// else `default` (None: refused with `why`).
pub fn item_size(
    item: &Bound<'_, PyAny>,
    size: Option<i64>,
    default: Option<u32>,
    why: &str,
) -> PyResult<u32> {
    let py = item.py();
    if let Some(s) = size {
        return u32::try_from(s).map_err(|_| {
            raise(
                py,
                Exc::Config,
                format!("size must be in 0..2**32, got {s}"),
            )
        });
    }
    match (bytes_len(item)?, default) {
        (Some(n), _) => u32::try_from(n).map_err(|_| {
            raise(
                py,
                Exc::Config,
                format!("an item of {n} bytes is too large (sizes must be below 2**32)"),
            )
        }),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(raise(py, Exc::Config, why.to_string())),
    }
}

/// The arguments of an `enqueue_many` call, converted under the GIL.
pub struct Arrivals<'py> {
    sizes: PyReadonlyArray1<'py, i64>,
    times: Option<PyReadonlyArray1<'py, f64>>,
    ecn: Option<PyReadonlyArray1<'py, bool>>,
    items: Option<Vec<Py<PyAny>>>,
    /// The clock reading used when `times` is None.
    now: Nanos,
}

/// `obj` read in place when it is a one-dimensional, C-contiguous array of `T` that no one is
/// writing (a few hundred nanoseconds cheaper than converting through numpy).
pub fn contiguous<'py, T: numpy::Element>(
    obj: &Bound<'py, PyAny>,
) -> Option<PyReadonlyArray1<'py, T>> {
    let a = obj.cast::<PyArray1<T>>().ok()?;
    if a.is_c_contiguous() {
        a.try_readonly().ok()
    } else {
        None
    }
}

/// `obj` as a contiguous one-dimensional numpy array of `dtype` (kinds in `kinds`), or
/// ConfigError naming `what`.
fn column<'py, T: numpy::Element>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    dtype: &str,
    kinds: &[u8],
) -> PyResult<PyReadonlyArray1<'py, T>> {
    // The common case, an array of the right dtype already, without a call into numpy.
    if let Some(a) = contiguous::<T>(obj) {
        return Ok(a);
    }
    cast(&any_column(obj, what, dtype, kinds)?, dtype)
}

/// `arr` as a contiguous array of `dtype`.
fn cast<'py, T: numpy::Element>(
    arr: &Bound<'py, PyUntypedArray>,
    dtype: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    let np = arr.py().import("numpy")?;
    let a = np.call_method1("ascontiguousarray", (arr, dtype))?;
    Ok(a.cast_into::<PyArray1<T>>()?.readonly())
}

/// `obj` as a one-dimensional numpy array of one of `kinds`, in its own dtype, or ConfigError
/// naming `what` (TypeError for bools where `kinds` has no bool: numpy would cast them).
fn any_column<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    dtype: &str,
    kinds: &[u8],
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = obj.py();
    let wrong = |detail: String| {
        raise(
            py,
            Exc::Config,
            format!("{what} must be a one-dimensional {dtype} array{detail}"),
        )
    };
    let no_bools = !kinds.contains(&b'b');
    let bools = |got: String| {
        PyTypeError::new_err(format!(
            "{what} must be a one-dimensional {dtype} array, not {got}"
        ))
    };
    if no_bools {
        if let Some(i) = bool_row(obj)? {
            return Err(bools(format!("a bool (row {i})")));
        }
    }
    let np = py.import("numpy")?;
    let arr = np
        .call_method1("asarray", (obj,))
        .map_err(|e| wrong(format!(" ({})", e.value(py))))?
        .cast_into::<PyUntypedArray>()?;
    if arr.ndim() != 1 {
        return Err(wrong(format!(", not {}-dimensional", arr.ndim())));
    }
    let kind = arr.dtype().kind();
    if no_bools && kind == b'b' {
        return Err(bools("an array of bool".into()));
    }
    // An empty list reads as float64: no rows, so no wrong kind of value either.
    if !kinds.contains(&kind) && !arr.is_empty() {
        return Err(wrong(format!(", not {}", arr.dtype())));
    }
    Ok(arr)
}

/// The `sizes` column as int64. A uint64 one is checked before the cast, which would show
/// 2**64 - 1 as -1, and so is a list numpy reads as objects or float64 (one with an int
/// beyond int64): its first size outside 0..2**32 is named as [`check`] names a bad row.
fn sizes_column<'py>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, i64>> {
    if let Some(a) = contiguous::<i64>(obj) {
        return Ok(a);
    }
    let py = obj.py();
    let bad_row = |i: usize, size: &dyn std::fmt::Display| {
        raise(
            py,
            Exc::Config,
            format!("sizes[{i}] = {size} is outside 0..2**32"),
        )
    };
    let arr = any_column(obj, "sizes", "int64", b"iuOf")?;
    let dt = arr.dtype();
    let not_ints = || {
        raise(
            py,
            Exc::Config,
            format!("sizes must be a one-dimensional int64 array, not {dt}"),
        )
    };
    match dt.kind() {
        b'u' if dt.itemsize() == 8 => {
            let wide = cast::<u64>(&arr, "uint64")?;
            let rows = wide.as_slice()?;
            if let Some(i) = rows.iter().position(|&s| u32::try_from(s).is_err()) {
                return Err(bad_row(i, &rows[i]));
            }
        }
        // An empty list reads as float64; a float array is refused as such.
        b'f' if arr.is_empty() => {}
        b'f' if obj.is_instance_of::<PyUntypedArray>() => return Err(not_ints()),
        b'O' | b'f' => {
            let objects = py
                .import("numpy")?
                .call_method1("asarray", (obj, "object"))?;
            for (i, item) in objects.try_iter()?.enumerate() {
                let item = item?;
                if is_bool(&item)? {
                    return Err(PyTypeError::new_err(format!(
                        "sizes must be a one-dimensional int64 array, not a bool (row {i})"
                    )));
                }
                let Some(int) = int_arg(&item)? else {
                    return Err(not_ints());
                };
                if int.extract::<u32>().is_err() {
                    return Err(bad_row(i, &int));
                }
            }
        }
        _ => {}
    }
    cast(&arr, "int64")
}

impl<'py> Arrivals<'py> {
    /// Convert the batch arguments; `now` is read from `clock` only when `times` is None.
    pub fn new(
        py: Python<'py>,
        clock: &Clock,
        sizes: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        ecn_capable: Option<&Bound<'py, PyAny>>,
        items: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Arrivals<'py>> {
        let sizes = sizes_column(sizes)?;
        let n = sizes.len();
        let same_len = |what: &str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(raise(
                    py,
                    Exc::Config,
                    format!("{what} has {len} entries, sizes {n}"),
                ))
            }
        };
        let times = times
            .map(|t| column::<f64>(t, "times", "float64", b"iuf"))
            .transpose()?;
        if let Some(t) = &times {
            same_len("times", t.len())?;
        }
        let ecn = ecn_capable
            .map(|e| column::<bool>(e, "ecn_capable", "bool", b"b"))
            .transpose()?;
        if let Some(e) = &ecn {
            same_len("ecn_capable", e.len())?;
        }
        let items = match items {
            None => None,
            Some(seq) => {
                let v: Vec<Py<PyAny>> = seq
                    .try_iter()?
                    .map(|i| i.map(Bound::unbind))
                    .collect::<PyResult<_>>()?;
                same_len("items", v.len())?;
                Some(v)
            }
        };
        let now = if times.is_some() {
            0
        } else {
            clock.now(py, None)?
        };
        Ok(Arrivals {
            sizes,
            times,
            ecn,
            items,
            now,
        })
    }

    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether the batch came with `items` (else its packets are known only by their sizes).
    pub fn has_items(&self) -> bool {
        self.items.is_some()
    }

    /// [`run`](Self::run) for a batch without items, a chunk at a time: each chunk's sizes
    /// and times are checked and converted into stack buffers (vectorized passes), then
    /// offered ([`RedQueue::enqueue_sizes`]). A bad row is seen only when its chunk comes: the
    /// arrivals before it are then undone ([`RedQueue::rollback`]), so that the batch changes
    /// nothing, and the error is the one a check of the whole batch first reports.
    pub fn run_sizes(
        self,
        py: Python<'_>,
        lock: &Locked<RedQueue<Item>>,
        out: &mut [u8],
    ) -> PyResult<()> {
        debug_assert!(self.items.is_none());
        let sizes = self.sizes.as_slice()?;
        let times = self.times.as_ref().map(|t| t.as_slice()).transpose()?;
        let ecn = self.ecn.as_ref().map(|e| e.as_slice()).transpose()?;
        let now = self.now;
        let good = lock.write_rows(py, sizes.len(), move |q| {
            let cp = q.checkpoint();
            // A short batch (a router's few dozen packets) in short buffers: zeroing the long
            // ones would cost it more than its rows.
            let good = if out.len() <= SHORT {
                sizes_in_chunks::<SHORT>(q, (sizes, times, ecn, now), out)
            } else {
                sizes_in_chunks::<CHUNK>(q, (sizes, times, ecn, now), out)
            };
            if !good {
                q.rollback(cp);
            }
            good
        })?;
        if good {
            return Ok(());
        }
        let checked = if sizes.len() < SMALL_BATCH {
            check(sizes, times)
        } else {
            py.detach(|| check(sizes, times))
        };
        // The chunk found a bad row, so the check finds one too.
        let e = checked
            .err()
            .unwrap_or_else(|| ParamError("a bad row".into()));
        Err(config_error(py, &e))
    }

    /// Offer every arrival in order to the queue behind `lock` with the GIL released, writing
    /// each verdict code to `out`. The sizes and times are checked before the first arrival, so
    /// a bad row changes nothing. Refused items are released after the lock.
    pub fn run<Q: Send + Sync>(
        self,
        py: Python<'_>,
        lock: &Locked<Q>,
        out: &mut [u8],
        offer: impl Fn(&mut Q, Item, u32, bool, Nanos) -> Result<Verdict, Item> + Send,
    ) -> PyResult<()> {
        let sizes = self.sizes.as_slice()?;
        let times = self.times.as_ref().map(|t| t.as_slice()).transpose()?;
        let ecn = self.ecn.as_ref().map(|e| e.as_slice()).transpose()?;
        let (items, now) = (self.items, self.now);
        let checked = if sizes.len() < SMALL_BATCH {
            check(sizes, times)
        } else {
            py.detach(|| check(sizes, times))
        };
        checked.map_err(|e| config_error(py, &e))?;
        let rejected = lock.write_rows(py, sizes.len(), move |q| {
            let mut rejected = Vec::new();
            let mut items = items.map(Vec::into_iter);
            // Times are converted a chunk at a time into a buffer (a vectorized pass), so the
            // arrival loop reads integers.
            let mut tbuf = [0u64; CHUNK];
            for (k, o) in out.chunks_mut(CHUNK).enumerate() {
                let rows = k * CHUNK..k * CHUNK + o.len();
                let t = &mut tbuf[..o.len()];
                match times {
                    Some(ts) => {
                        nanos_checked_into(&ts[rows.clone()], t); // checked above
                    }
                    None => t.fill(now),
                }
                let ecn = ecn.map(|e| &e[rows.clone()]);
                for (i, ((o, &size), &t)) in o.iter_mut().zip(&sizes[rows]).zip(&*t).enumerate() {
                    // Checked above.
                    let size = u32::try_from(size).unwrap_or(0);
                    let ect = ecn.is_some_and(|e| e[i]);
                    let item = items.as_mut().and_then(Iterator::next);
                    *o = match offer(q, item, size, ect, t) {
                        Ok(v) => v as u8,
                        Err(item) => {
                            rejected.extend(item);
                            Verdict::Dropped as u8
                        }
                    };
                }
            }
            rejected
        })?;
        drop(rejected);
        Ok(())
    }
}

/// Rows in batches of a short router call: buffers this long serve them.
const SHORT: usize = 64;

/// A size-only batch's columns: sizes, times (None: every row at `now`), ECN flags, `now`.
type SizeColumns<'a> = (&'a [i64], Option<&'a [f64]>, Option<&'a [bool]>, Nanos);

/// [`Arrivals::run_sizes`]'s loop, with buffers of `ROWS` rows: each chunk's sizes and times
/// are checked and converted into them, then offered. False (at once) when a chunk has a bad
/// row; the chunks before it have been offered.
fn sizes_in_chunks<const ROWS: usize>(
    q: &mut RedQueue<Item>,
    (sizes, times, ecn, now): SizeColumns<'_>,
    out: &mut [u8],
) -> bool {
    let (mut sbuf, mut tbuf) = ([0u32; ROWS], [0u64; ROWS]);
    for (k, o) in out.chunks_mut(ROWS).enumerate() {
        let rows_k = k * ROWS..k * ROWS + o.len();
        let (s, t) = (&mut sbuf[..o.len()], &mut tbuf[..o.len()]);
        let mut good = sizes_checked_into(&sizes[rows_k.clone()], s);
        match times {
            Some(ts) => good &= nanos_checked_into(&ts[rows_k.clone()], t),
            None => t.fill(now),
        }
        if !good {
            return false;
        }
        q.enqueue_sizes(s, t, ecn.map(|e| &e[rows_k]), o);
    }
    true
}

/// Sizes in 0..2**32 and valid times in seconds, or the first bad row.
fn check(sizes: &[i64], times: Option<&[f64]>) -> Result<(), ParamError> {
    // Branch-free passes; the position is searched only when there is a bad row.
    let bad_size = |s: i64| u32::try_from(s).is_err();
    if !all_at_most(sizes, u32::MAX.into()) {
        let i = sizes.iter().position(|&s| bad_size(s)).unwrap_or(0);
        return Err(ParamError(format!(
            "sizes[{i}] = {} is outside 0..2**32",
            sizes[i]
        )));
    }
    let times = times.unwrap_or(&[]);
    if !all_seconds(times) {
        let i = times.iter().position(|&t| !nanos_checked(t).1).unwrap_or(0);
        return seconds_to_nanos(times[i], &format!("times[{i}]")).map(|_| ());
    }
    Ok(())
}

/// A dequeued item as Python: the object, or its size for a size-only packet.
pub fn item_object(py: Python<'_>, item: Item, size: u32) -> PyResult<Py<PyAny>> {
    match item {
        Some(obj) => Ok(obj),
        None => Ok(size.into_pyobject(py)?.into_any().unbind()),
    }
}

/// Random Early Detection; see the stub for the user documentation.
#[pyclass(frozen, module = "meshcore", name = "RedQueue")]
pub struct PyRedQueue {
    inner: Locked<RedQueue<Item>>,
    clock: Clock,
    bytes_mode: bool,
}

#[pymethods]
impl PyRedQueue {
    #[new]
    #[pyo3(signature = (
        min_th, max_th, max_p, w_q = 0.002, limit = None, gentle = false, ecn = false,
        adaptive = false, seed = 0, *, count_rule = "fj", bytes_mode = false,
        packet_time = 0.0012, harddrop = true, adapt_interval = 0.5, clock = None
    ))]
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)] // the Python signature
    fn new(
        py: Python<'_>,
        min_th: f64,
        max_th: f64,
        max_p: f64,
        w_q: f64,
        limit: Option<i64>,
        gentle: bool,
        ecn: bool,
        adaptive: bool,
        seed: u64,
        count_rule: &str,
        bytes_mode: bool,
        packet_time: f64,
        harddrop: bool,
        adapt_interval: f64,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let limit = limit
            .map(|l| {
                u64::try_from(l)
                    .map_err(|_| raise(py, Exc::Config, format!("limit must be >= 1, got {l}")))
            })
            .transpose()?;
        let cfg = RedConfig {
            min_th,
            max_th,
            max_p,
            w_q,
            limit,
            gentle,
            ecn,
            adaptive,
            count_rule: CountRule::parse(count_rule).map_err(|e| config_error(py, &e))?,
            bytes_mode,
            packet_time: clock::nanos(py, packet_time, "packet_time")?,
            harddrop,
            adapt_interval: clock::nanos(py, adapt_interval, "adapt_interval")?,
            seed,
        };
        let q = RedQueue::new(cfg).map_err(|e| config_error(py, &e))?;
        Ok(PyRedQueue {
            inner: Locked::new(q, QUEUE),
            clock: Clock::from_arg(py, clock)?,
            bytes_mode,
        })
    }

    #[pyo3(signature = (item, size = None, now = None, ecn_capable = false))]
    fn enqueue<'py>(
        &self,
        py: Python<'py>,
        item: Bound<'py, PyAny>,
        size: Option<i64>,
        now: Option<f64>,
        ecn_capable: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let default = if self.bytes_mode { None } else { Some(1) };
        let size = item_size(
            &item,
            size,
            default,
            "size is required in bytes_mode for an item that is not bytes-like",
        )?;
        let now = self.clock.now(py, now)?;
        let item = Some(item.unbind());
        let r = self
            .inner
            .write_one(py, move |q| q.enqueue(item, size, ecn_capable, now))?;
        // A refused item is released here, after the lock.
        clock::verdict(py, r.unwrap_or(Verdict::Dropped))
    }

    #[pyo3(signature = (now = None))]
    fn dequeue(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let now = self.clock.now(py, now)?;
        let popped = self.inner.write_one(py, move |q| q.pop(now))?;
        popped
            .map(|(item, size)| item_object(py, item, size))
            .transpose()
    }

    #[pyo3(signature = (sizes, times = None, ecn_capable = None, items = None))]
    fn enqueue_many<'py>(
        &self,
        py: Python<'py>,
        sizes: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        ecn_capable: Option<&Bound<'py, PyAny>>,
        items: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let a = Arrivals::new(py, &self.clock, sizes, times, ecn_capable, items)?;
        let out = PyArray1::<u8>::zeros(py, a.len(), false);
        {
            let mut w = out.readwrite();
            let o = w.as_slice_mut()?;
            if a.has_items() {
                a.run(py, &self.inner, o, |q, item, size, ect, t| {
                    q.enqueue(item, size, ect, t)
                })?;
            } else {
                a.run_sizes(py, &self.inner, o)?;
            }
        }
        Ok(out)
    }

    #[pyo3(signature = (n, now = None))]
    fn dequeue_many<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let now = self.clock.now(py, now)?;
        let popped = self.inner.write(py, move |q| {
            let mut v = Vec::with_capacity(n.min(q.len()));
            while v.len() < n {
                let Some(p) = q.pop(now) else { break };
                v.push(p);
            }
            v
        })?;
        let objs = popped
            .into_iter()
            .map(|(item, size)| item_object(py, item, size))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, objs)
    }

    fn probability(&self, py: Python<'_>, avg: f64) -> PyResult<f64> {
        self.inner.read(py, move |q| q.probability(avg))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.read(py, RedQueue::stats)?;
        let d = PyDict::new(py);
        d.set_item("enqueued", s.enqueued)?;
        d.set_item("dequeued", s.dequeued)?;
        d.set_item("early_drops", s.early_drops)?;
        d.set_item("forced_drops", s.forced_drops)?;
        d.set_item("overlimit_drops", s.overlimit_drops)?;
        d.set_item("early_marks", s.early_marks)?;
        d.set_item("forced_marks", s.forced_marks)?;
        Ok(d)
    }

    #[getter]
    fn avg(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner.read(py, RedQueue::avg)
    }

    #[getter]
    fn max_p(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner.read(py, RedQueue::max_p)
    }

    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<i64> {
        self.inner.read(py, RedQueue::count)
    }

    #[getter]
    fn backlog(&self, py: Python<'_>) -> PyResult<u64> {
        self.inner.read(py, RedQueue::backlog)
    }

    #[getter]
    fn limit(&self, py: Python<'_>) -> PyResult<u64> {
        self.inner.read(py, RedQueue::limit)
    }

    #[getter]
    fn min_th(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner.read(py, |q| q.config().min_th)
    }

    #[getter]
    fn max_th(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner.read(py, |q| q.config().max_th)
    }

    #[getter]
    fn w_q(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner.read(py, |q| q.config().w_q)
    }

    #[getter]
    fn count_rule(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.inner.read(py, |q| q.config().count_rule.name())
    }

    #[getter]
    fn bytes_mode(&self) -> bool {
        self.bytes_mode
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, RedQueue::len)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.inner.read(py, |q| {
            let c = q.config();
            format!(
                "RedQueue(min_th={}, max_th={}, max_p={}, w_q={}, limit={}, gentle={}, ecn={}, \
                 adaptive={}, count_rule='{}', bytes_mode={}, len={}, avg={})",
                c.min_th,
                c.max_th,
                q.max_p(),
                c.w_q,
                q.limit(),
                py_bool(c.gentle),
                py_bool(c.ecn),
                py_bool(c.adaptive),
                c.count_rule.name(),
                py_bool(c.bytes_mode),
                q.len(),
                q.avg()
            )
        })
    }
}
