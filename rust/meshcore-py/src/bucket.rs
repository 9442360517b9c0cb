//! `meshcore.TokenBucket`, `meshcore.Gcra` and `meshcore.LeakyBucket`, plus the numpy batch
//! arguments the meters share (`Ints`, `Times`, bool / uint8 / float64 outputs).
//!
//! Each object is its core value behind a [`Locked`] (`lock.rs`): a single call converts its
//! arguments, reads the clock, then takes the lock without waiting while holding the GIL; a
//! batch validates and runs with the GIL released. Items held by the shaper are moved in and
//! out under the lock and released after it.

use crate::clock::{self, Clock};
use crate::convert::{bool_row, bytes_len};
use crate::error::{raise, Exc};
use crate::lock::Locked;
use crate::red::contiguous;
use meshcore_core::queue::bucket::{all_at_most, CostRow, Gcra, TokenBucket};
use meshcore_core::queue::shaper::LeakyBucket;
use meshcore_core::queue::{
    all_seconds, nanos_checked_into, nanos_of_seconds, nanos_to_seconds, prefetch_rows,
    seconds_at_least, wait_seconds, Nanos, Ratio, Verdict, NANOS_PER_SEC,
};
use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

fn config(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, Exc::Config, msg)
}

/// A cost or size argument: an int >= 0.
fn count(py: Python<'_>, n: i64, what: &str) -> PyResult<u64> {
    u64::try_from(n).map_err(|_| config(py, format!("{what} must be >= 0, got {n}")))
}

/// A one-dimensional integer column read in place (int64 or uint64; other integer dtypes are
/// converted to int64 first).
pub enum Ints<'py> {
    U(PyReadonlyArray1<'py, u64>),
    I(PyReadonlyArray1<'py, i64>),
}

/// The slice of an [`Ints`], for use without the GIL.
#[derive(Clone, Copy)]
pub enum IntSlice<'a> {
    U(&'a [u64]),
    I(&'a [i64]),
}

impl<'py> Ints<'py> {
    pub fn get(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Ints<'py>> {
        if let Some(a) = contiguous::<i64>(obj) {
            return Ok(Ints::I(a));
        }
        if let Some(a) = contiguous::<u64>(obj) {
            return Ok(Ints::U(a));
        }
        let py = obj.py();
        // Bools are no counts or colours, although numpy casts them: a TypeError.
        let bools = |got: String| {
            PyTypeError::new_err(format!(
                "{what} must be a one-dimensional integer array, not {got}"
            ))
        };
        if let Some(i) = bool_row(obj)? {
            return Err(bools(format!("a bool (row {i})")));
        }
        let np = py.import("numpy")?;
        let arr = np
            .call_method1("asarray", (obj,))
            .and_then(|a| Ok(a.cast_into::<PyUntypedArray>()?))
            .map_err(|_| {
                config(
                    py,
                    format!("{what} must be a one-dimensional integer array"),
                )
            })?;
        let dtype = arr.dtype();
        let (kind, size) = (dtype.kind(), dtype.itemsize());
        if kind == b'b' {
            return Err(bools("an array of bool".into()));
        }
        // An empty list reads as float64: no rows, so no wrong kind of number either.
        let empty = arr.ndim() == 1 && arr.is_empty();
        if arr.ndim() != 1 || !(matches!(kind, b'i' | b'u') || empty) {
            return Err(config(
                py,
                format!(
                    "{what} must be a one-dimensional integer array, got {}-dimensional {}",
                    arr.ndim(),
                    dtype.str()?
                ),
            ));
        }
        let dt = if kind == b'u' && size == 8 {
            "uint64"
        } else {
            "int64"
        };
        let a = np.call_method1("ascontiguousarray", (&arr, dt))?;
        Ok(if dt == "uint64" {
            Ints::U(a.cast_into::<PyArray1<u64>>()?.readonly())
        } else {
            Ints::I(a.cast_into::<PyArray1<i64>>()?.readonly())
        })
    }

    pub fn slice(&self) -> PyResult<IntSlice<'_>> {
        Ok(match self {
            Ints::U(a) => IntSlice::U(a.as_slice()?),
            Ints::I(a) => IntSlice::I(a.as_slice()?),
        })
    }
}

impl<'a> IntSlice<'a> {
    /// Rows `range` of the column.
    pub fn sub(self, range: std::ops::Range<usize>) -> IntSlice<'a> {
        match self {
            IntSlice::U(s) => IntSlice::U(&s[range]),
            IntSlice::I(s) => IntSlice::I(&s[range]),
        }
    }

    pub fn len(self) -> usize {
        match self {
            IntSlice::U(s) => s.len(),
            IntSlice::I(s) => s.len(),
        }
    }

    /// Asks for rows `range` to be brought into L2 (a hint).
    pub fn prefetch(self, range: std::ops::Range<usize>) {
        match self {
            IntSlice::U(s) => prefetch_rows(&s[range]),
            IntSlice::I(s) => prefetch_rows(&s[range]),
        }
    }

    /// The rows as u64 in `dst` (as long as the slice), in one branch-free pass; the first row
    /// that is negative or above `max`, with its value, if there is one.
    #[allow(clippy::cast_sign_loss)] // negative int64 rows are flagged, never used
    pub fn convert(self, max: u64, dst: &mut [u64]) -> Option<(usize, i128)> {
        let mut bad = false;
        match self {
            IntSlice::U(s) => {
                for (d, &v) in dst.iter_mut().zip(s) {
                    *d = v;
                    bad |= v > max;
                }
            }
            IntSlice::I(s) => {
                for (d, &v) in dst.iter_mut().zip(s) {
                    *d = v as u64;
                    bad |= v < 0 || v as u64 > max;
                }
            }
        }
        if bad {
            self.first_outside(max)
        } else {
            None
        }
    }

    /// The first row that is negative or above `max`, with its value.
    pub fn first_outside(self, max: u64) -> Option<(usize, i128)> {
        // A branch-free pass first (in vector lanes); the search only on failure. Read as
        // u64, a negative int64 row is above any bound below 2**63.
        let fine = match self {
            IntSlice::U(s) => all_at_most(s, max),
            IntSlice::I(s) => all_at_most(s, max.min(i64::MAX as u64)),
        };
        if fine {
            return None;
        }
        match self {
            IntSlice::U(s) => s
                .iter()
                .position(|&v| v > max)
                .map(|i| (i, i128::from(s[i]))),
            IntSlice::I(s) => s
                .iter()
                .position(|&v| u64::try_from(v).map_or(true, |v| v > max))
                .map(|i| (i, i128::from(s[i]))),
        }
    }
}

/// The `times=` argument of a batch: float seconds per row, or one clock reading.
pub enum Times<'py> {
    One(Nanos),
    Each(PyReadonlyArray1<'py, f64>),
}

impl<'py> Times<'py> {
    pub fn get(
        py: Python<'py>,
        clock: &Clock,
        times: Option<&Bound<'py, PyAny>>,
        n: usize,
    ) -> PyResult<Times<'py>> {
        let Some(obj) = times.filter(|t| !t.is_none()) else {
            return Ok(Times::One(clock.now(py, None)?));
        };
        if let Some(a) = contiguous::<f64>(obj).filter(|a| a.len() == n) {
            return Ok(Times::Each(a));
        }
        // Bools are no times, although numpy casts them to 0.0 and 1.0: a TypeError.
        let bools = |got: String| {
            PyTypeError::new_err(format!("times must be an array of seconds, not {got}"))
        };
        if let Some(i) = bool_row(obj)? {
            return Err(bools(format!("a bool (row {i})")));
        }
        let np = py.import("numpy")?;
        let seconds = |e: PyErr| config(py, format!("times must be an array of seconds ({e})"));
        let arr = np.call_method1("asarray", (obj,)).map_err(seconds)?;
        // Text is no time either, although numpy parses "1.5" as 1.5: a TypeError.
        match arr.cast::<PyUntypedArray>().map(|a| a.dtype().kind()) {
            Ok(b'b') => return Err(bools("an array of bool".into())),
            Ok(b'U' | b'S') => return Err(bools("text".into())),
            _ => {}
        }
        let a = np
            .call_method1("ascontiguousarray", (arr, "float64"))
            .map_err(seconds)?;
        let a = a
            .cast_into::<PyArray1<f64>>()
            .map_err(|_| config(py, "times must be a one-dimensional array of seconds"))?;
        if a.len() != n {
            return Err(config(
                py,
                format!("times has {} rows, the batch {n}", a.len()),
            ));
        }
        Ok(Times::Each(a.readonly()))
    }

    pub fn slice(&self) -> PyResult<TimeSlice<'_>> {
        Ok(match self {
            Times::One(t) => TimeSlice::One(*t),
            Times::Each(a) => TimeSlice::Each(a.as_slice()?),
        })
    }
}

#[derive(Clone, Copy)]
pub enum TimeSlice<'a> {
    One(Nanos),
    Each(&'a [f64]),
}

impl<'a> TimeSlice<'a> {
    /// Rows `range` of the column.
    pub fn sub(self, range: std::ops::Range<usize>) -> TimeSlice<'a> {
        match self {
            TimeSlice::One(t) => TimeSlice::One(t),
            TimeSlice::Each(s) => TimeSlice::Each(&s[range]),
        }
    }

    /// Asks for rows `range` to be brought into L2 (a hint).
    pub fn prefetch(self, range: std::ops::Range<usize>) {
        if let TimeSlice::Each(s) = self {
            prefetch_rows(&s[range]);
        }
    }

    /// The first row that is no time in seconds, with its value.
    pub fn first_bad(self) -> Option<(usize, f64)> {
        match self {
            TimeSlice::One(_) => None,
            TimeSlice::Each(s) => {
                // A branch-free pass over the rows (in vector lanes), then the search on failure.
                if all_seconds(s) {
                    return None;
                }
                s.iter()
                    .position(|&t| nanos_of_seconds(t).is_none())
                    .map(|i| (i, s[i]))
            }
        }
    }

    /// The rows in ns in `dst` (as long as the slice), in one branch-free pass; the first row
    /// that is no time in seconds, with its value, if there is one.
    pub fn convert(self, dst: &mut [u64]) -> Option<(usize, f64)> {
        match self {
            TimeSlice::One(t) => {
                dst.fill(t);
                None
            }
            TimeSlice::Each(s) => {
                if nanos_checked_into(s, dst) {
                    None
                } else {
                    self.first_bad()
                }
            }
        }
    }

    /// Row `i` in ns (rows were checked with [`first_bad`](Self::first_bad)).
    #[inline]
    pub fn at(self, i: usize) -> Nanos {
        match self {
            TimeSlice::One(t) => t,
            TimeSlice::Each(s) => nanos_of_seconds(s[i]).unwrap_or(0),
        }
    }
}

/// The message for a bad row of `times`.
pub fn bad_time(i: usize, t: f64) -> String {
    // Debug keeps the ".0" of whole floats, as Python prints them.
    let t = if t.is_nan() {
        "nan".to_string()
    } else {
        format!("{t:?}")
    };
    format!("times[{i}] = {t} is not a time in seconds in [0, 9.2e9)")
}

/// A new output array of `n` rows, or the caller's `out` (1-D, contiguous, writable, `n` rows).
pub fn out_array<'py, T: Element>(
    py: Python<'py>,
    out: Option<Bound<'py, PyAny>>,
    n: usize,
    dtype: &str,
) -> PyResult<Bound<'py, PyArray1<T>>> {
    let Some(out) = out.filter(|o| !o.is_none()) else {
        return Ok(PyArray1::<T>::zeros(py, n, false));
    };
    let a = out
        .cast_into::<PyArray1<T>>()
        .map_err(|_| config(py, format!("out must be a one-dimensional {dtype} array")))?;
    if a.len() != n {
        return Err(config(
            py,
            format!("out has {} rows, the batch {n}", a.len()),
        ));
    }
    if !a.is_contiguous() {
        return Err(config(py, "out must be contiguous"));
    }
    Ok(a)
}

/// Borrow `out` for writing (it must not share memory with an argument being read).
pub fn write_out<'py, T: Element>(
    py: Python<'py>,
    out: &Bound<'py, PyArray1<T>>,
) -> PyResult<numpy::PyReadwriteArray1<'py, T>> {
    out.try_readwrite().map_err(|e| {
        config(
            py,
            format!("out cannot be written here ({e}): pass a writable array of its own"),
        )
    })
}

/// Seconds given as an exact number, rounded to the nearest ns; `what` names the argument.
fn seconds_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Nanos> {
    let r = clock::ratio(py, obj, what)?;
    // round(r * 1e9), halves up: floor((2 num 1e9 + den) / (2 den)).
    r.num()
        .checked_mul(2 * u128::from(NANOS_PER_SEC))
        .zip(r.den().checked_mul(2))
        .and_then(|(n, d)| n.checked_add(d / 2).map(|n| n / d))
        .and_then(|ns| u64::try_from(ns).ok())
        .filter(|&ns| ns < 9_200_000_000_000_000_000)
        .ok_or_else(|| config(py, format!("{what} must be below 9.2e9 seconds, got {obj}")))
}

/// A wait of `ns` nanoseconds from `now` (float seconds, `now_ns` nanoseconds) as float
/// seconds such that `now + wait` reaches the moment (infinity when `ns` is `u64::MAX`, the
/// core's answer for a wait that does not fit, or the moment is past the range of times).
fn wait_from(now: f64, now_ns: Nanos, ns: u64) -> f64 {
    if ns == u64::MAX {
        return f64::INFINITY;
    }
    wait_seconds(now, now_ns, u128::from(now_ns) + u128::from(ns))
}

/// Whether every answer is yes (one branch-free pass).
fn all_true(out: &[bool]) -> bool {
    out.iter().fold(true, |all, &o| all & o)
}

/// A limiter with a batch form: a token bucket or a GCRA. Neither admits a cost above its
/// `max_cost` (a negative int64 cost reads as one), which [`consume_batch`] relies on.
trait Consume: Send + Sync {
    /// `costs[i]` at `times[i]`, answers in `out` (all as long).
    fn consume_rows<C: CostRow>(&mut self, costs: &[C], times: &[Nanos], out: &mut [bool]);
    /// Every row at `now`.
    fn consume_at<C: CostRow>(&mut self, costs: &[C], now: Nanos, out: &mut [bool]);
}

impl Consume for TokenBucket {
    #[inline]
    fn consume_rows<C: CostRow>(&mut self, costs: &[C], times: &[Nanos], out: &mut [bool]) {
        self.try_consume_rows(costs, times, out);
    }

    #[inline]
    fn consume_at<C: CostRow>(&mut self, costs: &[C], now: Nanos, out: &mut [bool]) {
        self.try_consume_all_at(costs, now, out);
    }
}

impl Consume for Gcra {
    #[inline]
    fn consume_rows<C: CostRow>(&mut self, costs: &[C], times: &[Nanos], out: &mut [bool]) {
        self.try_consume_rows(costs, times, out);
    }

    #[inline]
    fn consume_at<C: CostRow>(&mut self, costs: &[C], now: Nanos, out: &mut [bool]) {
        // The GCRA has no cheaper form for one time; its row loop is already tight.
        let times = [now; CHUNK];
        for (c, o) in costs.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            self.try_consume_rows(c, &times[..c.len()], o);
        }
    }
}

/// Rows per chunk of a batch: each chunk's columns are checked and converted to u64 in stack
/// buffers of this many rows (16 KiB each, so they stay in L1 for the run), then run.
pub const CHUNK: usize = 2048;

/// Rows per step of a token bucket's or GCRA's batch: a step's costs are checked and its times
/// converted into a stack buffer, then run, while the columns two steps ahead are fetched
/// (so that reading them from memory overlaps the work, which short steps allow).
const STEP: usize = 256;

/// Run a batch of costs through a bucket, checking every cost against `max_cost` and every
/// time; a bad row raises and restores the bucket as it was before the batch. The answers land
/// in `out`.
///
/// Each chunk is first checked (the costs in place, then the times converted into a stack
/// buffer) in branch-free passes that do not touch the bucket, then run through the bucket's
/// tight row loop. A chunk with a bad row is not run: the message names the first bad cost of
/// the chunk, else its first bad time.
fn consume_batch<B: Consume + Clone>(
    py: Python<'_>,
    inner: &Locked<B>,
    (costs, times, out): (IntSlice<'_>, TimeSlice<'_>, &mut [bool]),
    max_cost: u64,
) -> PyResult<()> {
    // Read as u64, a negative int64 cost is at least 2**63: above max_cost when that is below.
    let lazy = max_cost < 1 << 63;
    let r = inner.write_rows(py, out.len(), move |b| {
        let saved = b.clone();
        let mut tbuf = [0u64; STEP];
        let n = out.len();
        for (k, o) in out.chunks_mut(STEP).enumerate() {
            let rows = k * STEP..k * STEP + o.len();
            let ahead = (rows.start + 2 * STEP).min(n)..(rows.start + 3 * STEP).min(n);
            costs.prefetch(ahead.clone());
            times.prefetch(ahead);
            let (c, t) = (costs.sub(rows.clone()), times.sub(rows.clone()));
            let tb = &mut tbuf[..o.len()];
            // The step runs first and its costs are checked after, only when it refused a row
            // (or a time is bad): a cost below 0 or above the burst is never admitted, so a
            // step with every row admitted has none. A bad row undoes the whole batch below.
            let bad_t = match t {
                TimeSlice::One(now) => {
                    match c {
                        IntSlice::U(c) => b.consume_at(c, now, o),
                        IntSlice::I(c) => b.consume_at(c, now, o),
                    }
                    None
                }
                TimeSlice::Each(_) => {
                    let bad = t.convert(tb);
                    if bad.is_none() {
                        match c {
                            IntSlice::U(c) => b.consume_rows(c, tb, o),
                            IntSlice::I(c) => b.consume_rows(c, tb, o),
                        }
                    }
                    bad
                }
            };
            if bad_t.is_none() && lazy && all_true(o) {
                continue;
            }
            let msg = if let Some((i, v)) = c.first_outside(max_cost) {
                let i = rows.start + i;
                if v < 0 {
                    format!("costs[{i}] = {v} must be >= 0")
                } else {
                    format!(
                        "costs[{i}] = {v} exceeds the burst: it can never conform (at most {max_cost})"
                    )
                }
            } else if let Some((i, x)) = bad_t {
                bad_time(rows.start + i, x)
            } else {
                continue;
            };
            // Undo the chunks already run.
            *b = saved;
            return Err(msg);
        }
        Ok(())
    })?;
    r.map_err(|m| config(py, m))
}

/// A token bucket: `rate` tokens/s, capacity `burst` tokens, starting full.
#[pyclass(frozen, module = "meshcore", name = "TokenBucket")]
pub struct PyTokenBucket {
    inner: Locked<TokenBucket>,
    clock: Clock,
    rate: Ratio,
    burst: Ratio,
    max_cost: u64,
}

#[pymethods]
impl PyTokenBucket {
    #[new]
    #[pyo3(signature = (rate, burst, *, clock = None))]
    fn new(
        py: Python<'_>,
        rate: &Bound<'_, PyAny>,
        burst: &Bound<'_, PyAny>,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let rate = clock::ratio(py, rate, "rate")?;
        let burst = clock::ratio(py, burst, "burst")?;
        let tb = TokenBucket::new(rate, burst).map_err(|e| clock::config_error(py, &e))?;
        Ok(PyTokenBucket {
            max_cost: tb.max_cost(),
            inner: Locked::new(tb, "token bucket"),
            clock: Clock::from_arg(py, clock)?,
            rate,
            burst,
        })
    }

    #[pyo3(signature = (n = 1, now = None))]
    fn try_consume(&self, py: Python<'_>, n: i64, now: Option<f64>) -> PyResult<bool> {
        let t = self.clock.now(py, now)?;
        let n = count(py, n, "n")?;
        self.inner
            .write_one(py, move |tb| tb.try_consume(n, t))?
            .map_err(|e| clock::config_error(py, &e))
    }

    #[pyo3(signature = (now = None))]
    fn tokens(&self, py: Python<'_>, now: Option<f64>) -> PyResult<f64> {
        let t = self.clock.now(py, now)?;
        self.inner.write_one(py, move |tb| tb.tokens(t))
    }

    #[pyo3(signature = (n = 1, now = None))]
    fn time_until(&self, py: Python<'_>, n: i64, now: Option<f64>) -> PyResult<f64> {
        let (secs, t) = self.clock.now_seconds(py, now)?;
        let n = count(py, n, "n")?;
        let ns = self
            .inner
            .write_one(py, move |tb| tb.time_until(n, t))?
            .map_err(|e| clock::config_error(py, &e))?;
        Ok(wait_from(secs, t, ns))
    }

    #[pyo3(signature = (costs, times = None, out = None))]
    fn try_consume_many<'py>(
        &self,
        py: Python<'py>,
        costs: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let costs = Ints::get(costs, "costs")?;
        let c = costs.slice()?;
        let times = Times::get(py, &self.clock, times, c.len())?;
        let out = out_array::<bool>(py, out, c.len(), "bool")?;
        let mut w = write_out(py, &out)?;
        let o = w.as_slice_mut()?;
        consume_batch(py, &self.inner, (c, times.slice()?, o), self.max_cost)?;
        drop(w);
        Ok(out)
    }

    /// Tokens added per second.
    #[getter]
    fn rate(&self) -> f64 {
        self.rate.to_f64()
    }

    /// Capacity in tokens.
    #[getter]
    fn burst(&self) -> f64 {
        self.burst.to_f64()
    }

    fn __repr__(&self) -> String {
        format!("TokenBucket(rate={}, burst={})", self.rate(), self.burst())
    }
}

/// The GCRA (virtual scheduling, ITU-T I.371).
#[pyclass(frozen, module = "meshcore", name = "Gcra")]
pub struct PyGcra {
    inner: Locked<Gcra>,
    clock: Clock,
    interval: Nanos,
    tolerance: Nanos,
    max_cost: u64,
}

#[pymethods]
impl PyGcra {
    #[new]
    #[pyo3(signature = (interval, tolerance, *, clock = None))]
    fn new(
        py: Python<'_>,
        interval: &Bound<'_, PyAny>,
        tolerance: &Bound<'_, PyAny>,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let interval = seconds_arg(py, interval, "interval")?;
        let tolerance = seconds_arg(py, tolerance, "tolerance")?;
        let g = Gcra::new(interval, tolerance).map_err(|e| clock::config_error(py, &e))?;
        Ok(PyGcra {
            max_cost: g.max_cost(),
            inner: Locked::new(g, "GCRA"),
            clock: Clock::from_arg(py, clock)?,
            interval,
            tolerance,
        })
    }

    #[pyo3(signature = (n = 1, now = None))]
    fn try_consume(&self, py: Python<'_>, n: i64, now: Option<f64>) -> PyResult<bool> {
        let t = self.clock.now(py, now)?;
        let n = count(py, n, "n")?;
        self.inner
            .write_one(py, move |g| g.try_consume(n, t))?
            .map_err(|e| clock::config_error(py, &e))
    }

    #[pyo3(signature = (n = 1, now = None))]
    fn time_until(&self, py: Python<'_>, n: i64, now: Option<f64>) -> PyResult<f64> {
        let (secs, t) = self.clock.now_seconds(py, now)?;
        let n = count(py, n, "n")?;
        let ns = self
            .inner
            .write_one(py, move |g| g.time_until(n, t))?
            .map_err(|e| clock::config_error(py, &e))?;
        Ok(wait_from(secs, t, ns))
    }

    #[pyo3(signature = (costs, times = None, out = None))]
    fn try_consume_many<'py>(
        &self,
        py: Python<'py>,
        costs: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let costs = Ints::get(costs, "costs")?;
        let c = costs.slice()?;
        let times = Times::get(py, &self.clock, times, c.len())?;
        let out = out_array::<bool>(py, out, c.len(), "bool")?;
        let mut w = write_out(py, &out)?;
        let o = w.as_slice_mut()?;
        consume_batch(py, &self.inner, (c, times.slice()?, o), self.max_cost)?;
        drop(w);
        Ok(out)
    }

    /// Emission interval T in seconds (rounded to the ns).
    #[getter]
    fn interval(&self) -> f64 {
        nanos_to_seconds(self.interval)
    }

    /// Tolerance tau in seconds (rounded to the ns).
    #[getter]
    fn tolerance(&self) -> f64 {
        nanos_to_seconds(self.tolerance)
    }

    /// The largest cost that can conform: 1 + floor(tolerance / interval).
    #[getter]
    fn burst(&self) -> u64 {
        self.max_cost
    }

    fn __repr__(&self) -> String {
        format!(
            "Gcra(interval={}, tolerance={})",
            self.interval(),
            self.tolerance()
        )
    }
}

/// An optional positive integer limit.
fn limit_arg(py: Python<'_>, v: Option<i64>, what: &str) -> PyResult<Option<u64>> {
    v.map(|n| {
        u64::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            config(
                py,
                format!("{what} must be > 0 (or None for no limit), got {n}"),
            )
        })
    })
    .transpose()
}

/// The pacing shaper queue.
#[pyclass(frozen, module = "meshcore", name = "LeakyBucket")]
pub struct PyLeakyBucket {
    inner: Locked<LeakyBucket<Py<PyAny>>>,
    clock: Clock,
    rate: Ratio,
    limit: Option<u64>,
    packet_limit: Option<u64>,
}

#[pymethods]
impl PyLeakyBucket {
    #[new]
    #[pyo3(signature = (rate, limit = None, *, packet_limit = None, clock = None))]
    fn new(
        py: Python<'_>,
        rate: &Bound<'_, PyAny>,
        limit: Option<i64>,
        packet_limit: Option<i64>,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let rate = clock::ratio(py, rate, "rate")?;
        let limit = limit_arg(py, limit, "limit (bytes)")?;
        let packet_limit = limit_arg(py, packet_limit, "packet_limit")?;
        let lb =
            LeakyBucket::new(rate, limit, packet_limit).map_err(|e| clock::config_error(py, &e))?;
        Ok(PyLeakyBucket {
            inner: Locked::new(lb, "leaky bucket"),
            clock: Clock::from_arg(py, clock)?,
            rate,
            limit,
            packet_limit,
        })
    }

    #[pyo3(signature = (item, size = None, now = None))]
    fn enqueue<'py>(
        &self,
        py: Python<'py>,
        item: Bound<'py, PyAny>,
        size: Option<i64>,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = self.clock.now(py, now)?;
        let size = match size {
            Some(s) => count(py, s, "size")?,
            None => default_size(&item)?,
        };
        let item = item.unbind();
        let r = self
            .inner
            .write_one(py, move |lb| lb.enqueue(item, size, t))?;
        // A refused item is released here, after the lock.
        clock::verdict(
            py,
            if r.is_ok() {
                Verdict::Enqueued
            } else {
                Verdict::Dropped
            },
        )
    }

    #[pyo3(signature = (now = None))]
    fn dequeue(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        let t = self.clock.now(py, now)?;
        self.inner.write_one(py, move |lb| lb.dequeue(t))
    }

    fn next_departure(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self
            .inner
            .read(py, LeakyBucket::next_departure)?
            .map(seconds_at_least))
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, LeakyBucket::len)
    }

    /// Bytes held in the queue.
    #[getter]
    fn backlog(&self, py: Python<'_>) -> PyResult<u128> {
        self.inner.read(py, LeakyBucket::backlog)
    }

    /// Drain rate in bytes/s.
    #[getter]
    fn rate(&self) -> f64 {
        self.rate.to_f64()
    }

    #[getter]
    fn limit(&self) -> Option<u64> {
        self.limit
    }

    #[getter]
    fn packet_limit(&self) -> Option<u64> {
        self.packet_limit
    }

    #[pyo3(signature = (sizes, times = None))]
    fn schedule_many<'py>(
        &self,
        py: Python<'py>,
        sizes: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let sizes = Ints::get(sizes, "sizes")?;
        let s = sizes.slice()?;
        let times = Times::get(py, &self.clock, times, s.len())?;
        let ts = times.slice()?;
        let out = PyArray1::<f64>::zeros(py, s.len(), false);
        let mut w = out.try_readwrite()?;
        let o = w.as_slice_mut()?;
        let r = self.inner.write(py, move |lb| {
            if let Some((i, v)) = s.first_outside(u64::MAX) {
                return Err(format!("sizes[{i}] = {v} must be >= 0"));
            }
            if let Some((i, t)) = ts.first_bad() {
                return Err(bad_time(i, t));
            }
            let mut run = |it: &mut dyn Iterator<Item = u64>| {
                for ((i, size), o) in it.enumerate().zip(o.iter_mut()) {
                    *o = lb
                        .schedule(size, ts.at(i))
                        .map_or(f64::NAN, seconds_at_least);
                }
            };
            match s {
                IntSlice::U(v) => run(&mut v.iter().copied()),
                #[allow(clippy::cast_sign_loss)] // checked >= 0 above
                IntSlice::I(v) => run(&mut v.iter().map(|&x| x as u64)),
            }
            Ok(())
        })?;
        r.map_err(|m| config(py, m))?;
        drop(w);
        Ok(out)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let opt = |v: Option<u64>| v.map_or_else(|| "None".to_string(), |n| n.to_string());
        Ok(format!(
            "LeakyBucket(rate={}, limit={}, packet_limit={}, len={})",
            self.rate(),
            opt(self.limit),
            opt(self.packet_limit),
            self.__len__(py)?
        ))
    }
}

/// `len(item)` for bytes, bytearray and memoryview (its `nbytes`), else 1.
fn default_size(item: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(bytes_len(item)?.map_or(1, |n| n as u64))
}
