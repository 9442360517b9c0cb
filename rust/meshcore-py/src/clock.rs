//! Time and exact-number arguments shared by the queue, meter and AQM classes.
//!
//! Every call takes `now` in float seconds or `None`. `None` reads the object's clock: by default
//! CLOCK_MONOTONIC, the clock behind `time.monotonic()` (so explicit and implicit times mix), or a
//! Python callable given as `clock=` (for tests and simulations). Times become integer
//! nanoseconds once, here; the core never sees a float time.

use crate::error::{raise, Exc};
use meshcore_core::queue::{
    nanos_to_seconds, seconds_to_nanos, Color, Nanos, ParamError, Ratio, Verdict,
};
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyFloat, PyInt};

/// Where `now=None` reads the time from.
pub enum Clock {
    /// CLOCK_MONOTONIC, as `time.monotonic()`.
    Monotonic,
    /// A Python callable returning float seconds.
    Call(Py<PyAny>),
}

/// CLOCK_MONOTONIC in integer nanoseconds.
pub fn monotonic_ns() -> Nanos {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // CLOCK_MONOTONIC is never negative.
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// CLOCK_MONOTONIC_COARSE in integer nanoseconds: the timeline of [`monotonic_ns`] at the
/// kernel tick's resolution (1 to 4 ms), read in a few nanoseconds (no clock-source access).
pub fn monotonic_coarse_ns() -> Nanos {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// A refused parameter as `ConfigError`.
pub fn config_error(py: Python<'_>, e: &ParamError) -> PyErr {
    raise(py, Exc::Config, e.to_string())
}

/// Seconds (`what` names the argument) as nanoseconds, or `ConfigError`.
pub fn nanos(py: Python<'_>, seconds: f64, what: &str) -> PyResult<Nanos> {
    seconds_to_nanos(seconds, what).map_err(|e| config_error(py, &e))
}

impl Clock {
    /// The `clock=` argument: None for the monotonic clock, else a callable.
    pub fn from_arg(py: Python<'_>, clock: Option<Bound<'_, PyAny>>) -> PyResult<Clock> {
        match clock {
            None => Ok(Clock::Monotonic),
            Some(c) if c.is_callable() => Ok(Clock::Call(c.unbind())),
            Some(c) => Err(raise(
                py,
                Exc::Config,
                format!(
                    "clock must be a callable returning seconds, got {}",
                    c.get_type().name()?
                ),
            )),
        }
    }

    /// `now` in nanoseconds: the argument when given, else this clock's reading.
    #[inline]
    pub fn now(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Nanos> {
        match now {
            Some(s) => nanos(py, s, "now"),
            None => match self {
                Clock::Monotonic => Ok(monotonic_ns()),
                Clock::Call(f) => {
                    let s: f64 = f.bind(py).call0()?.extract()?;
                    nanos(py, s, "clock()")
                }
            },
        }
    }

    /// As [`now`](Self::now), with the time in float seconds as the caller has it: the
    /// argument, the callable's reading, or the monotonic reading as `time.monotonic()` gives
    /// it. A wait returned to the caller is measured from this float ([`wait_seconds`]).
    ///
    /// [`wait_seconds`]: meshcore_core::queue::wait_seconds
    pub fn now_seconds(&self, py: Python<'_>, now: Option<f64>) -> PyResult<(f64, Nanos)> {
        match now {
            Some(s) => Ok((s, nanos(py, s, "now")?)),
            None => match self {
                Clock::Monotonic => {
                    let ns = monotonic_ns();
                    Ok((nanos_to_seconds(ns), ns))
                }
                Clock::Call(f) => {
                    let s: f64 = f.bind(py).call0()?.extract()?;
                    Ok((s, nanos(py, s, "clock()")?))
                }
            },
        }
    }

    /// As [`now`](Self::now), but the default clock is read coarse ([`monotonic_coarse_ns`]):
    /// for callers that use time only over spans far longer than a tick (decays of seconds).
    #[inline]
    pub fn now_coarse(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Nanos> {
        match (now, self) {
            (None, Clock::Monotonic) => Ok(monotonic_coarse_ns()),
            _ => self.now(py, now),
        }
    }
}

/// An exact non-negative number argument (`what` names it): an int, a float (read as the decimal
/// it prints as), or anything with `as_integer_ratio()` (`Fraction`, `Decimal`).
pub fn ratio(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Ratio> {
    let bad = |detail: String| raise(py, Exc::Config, format!("{what} {detail}"));
    if obj.is_instance_of::<PyBool>() {
        return Err(bad("must be a number, got bool".into()));
    }
    if obj.is_instance_of::<PyFloat>() {
        let x: f64 = obj.extract()?;
        return Ratio::from_f64(x, what).map_err(|e| config_error(py, &e));
    }
    let (num, den): (Bound<'_, PyAny>, Bound<'_, PyAny>) = if obj.is_instance_of::<PyInt>() {
        (obj.clone(), 1u8.into_pyobject(py)?.into_any())
    } else if obj.hasattr("as_integer_ratio")? {
        match obj.call_method0("as_integer_ratio") {
            Ok(pair) => pair.extract()?,
            // A NaN or an infinity has no ratio (`Decimal`, numpy's float32): refused as a
            // float one is.
            Err(e)
                if e.is_instance_of::<PyValueError>(py)
                    || e.is_instance_of::<PyOverflowError>(py) =>
            {
                return Err(bad(format!("must be a finite number >= 0, got {obj}")));
            }
            Err(e) => return Err(e),
        }
    } else if let Ok(int) = obj.call_method0("__index__") {
        // Integers of other types (numpy's).
        (int, 1u8.into_pyobject(py)?.into_any())
    } else {
        return Err(bad(format!(
            "must be a number, got {}",
            obj.get_type().name()?
        )));
    };
    let (Ok(num), Ok(den)) = (num.extract::<u128>(), den.extract::<u128>()) else {
        return Err(bad(format!("must be >= 0 and below 2**128, got {obj}")));
    };
    Ratio::new(num, den).ok_or_else(|| bad("has a zero denominator".into()))
}

static VERDICTS: PyOnceLock<[Py<PyAny>; 3]> = PyOnceLock::new();
static COLORS: PyOnceLock<[Py<PyAny>; 3]> = PyOnceLock::new();

fn members(py: Python<'_>, class: &str) -> PyResult<[Py<PyAny>; 3]> {
    let cls = py.import("meshcore.queues")?.getattr(class)?;
    Ok([
        cls.call1((0,))?.unbind(),
        cls.call1((1,))?.unbind(),
        cls.call1((2,))?.unbind(),
    ])
}

/// The `meshcore.Verdict` member for `v` (cached: returning it costs one reference count).
pub fn verdict(py: Python<'_>, v: Verdict) -> PyResult<Bound<'_, PyAny>> {
    let all = VERDICTS.get_or_try_init(py, || members(py, "Verdict"))?;
    Ok(all[v as usize].bind(py).clone())
}

/// The `meshcore.Color` member for `c` (cached).
pub fn color(py: Python<'_>, c: Color) -> PyResult<Bound<'_, PyAny>> {
    let all = COLORS.get_or_try_init(py, || members(py, "Color"))?;
    Ok(all[c as usize].bind(py).clone())
}

/// A colour argument: a `Color`, or the int 0, 1 or 2.
pub fn color_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Color> {
    obj.extract::<u8>()
        .ok()
        .and_then(Color::from_code)
        .ok_or_else(|| {
            raise(
                py,
                Exc::Config,
                format!("color must be Color.GREEN, YELLOW or RED (0, 1, 2), got {obj}"),
            )
        })
}
