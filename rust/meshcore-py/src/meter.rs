//! `meshcore.SrTCM`, `meshcore.TrTCM` and `meshcore.TrTCM4115`: the core meters behind a
//! [`Locked`], with a cheap single `color` call and a GIL-free `color_many`.

use crate::bucket::{bad_time, out_array, write_out, IntSlice, Ints, TimeSlice, Times, CHUNK};
use crate::clock::{self, Clock};
use crate::error::{raise, Exc};
use crate::lock::Locked;
use meshcore_core::queue::bucket::nanos_of_seconds;
use meshcore_core::queue::meter::{Meter, SrTcm, TrTcm, TrTcm4115};
use meshcore_core::queue::{Color, Nanos, Ratio};
use numpy::PyArray1;
use pyo3::prelude::*;

/// The colour of one packet: convert, read the clock, then one short locked step.
fn color_one<'py, M: Meter + Send + Sync>(
    py: Python<'py>,
    (inner, clock): (&Locked<M>, &Clock),
    size: i64,
    now: Option<f64>,
    pre: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let t = clock.now(py, now)?;
    let size = u64::try_from(size).map_err(|_| {
        raise(
            py,
            Exc::Config,
            format!("size must be >= 0 bytes, got {size}"),
        )
    })?;
    let pre = match pre {
        Some(c) => clock::color_arg(py, c)?,
        None => Color::Green,
    };
    let c = inner.write_one(py, move |m| m.color(size, t, pre))?;
    clock::color(py, c)
}

/// The colour codes of a batch, with the GIL released for the checks and the metering.
fn color_batch<'py, M: Meter + Send + Sync + Clone>(
    py: Python<'py>,
    (inner, clock): (&Locked<M>, &Clock),
    sizes: &Bound<'py, PyAny>,
    times: Option<&Bound<'py, PyAny>>,
    colors: Option<&Bound<'py, PyAny>>,
    out: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let sizes = Ints::get(sizes, "sizes")?;
    let s = sizes.slice()?;
    let n = s.len();
    let times = Times::get(py, clock, times, n)?;
    let ts = times.slice()?;
    let colors = colors
        .filter(|c| !c.is_none())
        .map(|c| Ints::get(c, "colors"))
        .transpose()?;
    let cs = colors.as_ref().map(Ints::slice).transpose()?;
    if let Some(c) = cs.filter(|c| c.len() != n) {
        return Err(raise(
            py,
            Exc::Config,
            format!("colors has {} rows, the batch {n}", c.len()),
        ));
    }
    let out = out_array::<u8>(py, out, n, "uint8")?;
    let mut w = write_out(py, &out)?;
    let o = w.as_slice_mut()?;
    let r = inner.write(py, move |m| {
        // Checked and run per chunk, as the buckets' batches; a bad row restores the meter.
        let saved = m.clone();
        for (k, o) in o.chunks_mut(CHUNK).enumerate() {
            let rows = k * CHUNK..k * CHUNK + o.len();
            let (s, ts) = (s.sub(rows.clone()), ts.sub(rows.clone()));
            let cs = cs.map(|c| c.sub(rows.clone()));
            let bad = if let Some((i, v)) = s.first_outside(u64::MAX) {
                Some(format!(
                    "sizes[{}] = {v} must be >= 0 bytes",
                    rows.start + i
                ))
            } else if let Some((i, t)) = ts.first_bad() {
                Some(bad_time(rows.start + i, t))
            } else {
                cs.and_then(|c| c.first_outside(2)).map(|(i, v)| {
                    format!(
                        "colors[{}] = {v} is not Color.GREEN, YELLOW or RED (0, 1, 2)",
                        rows.start + i
                    )
                })
            };
            if let Some(msg) = bad {
                *m = saved;
                return Err(msg);
            }
            meter_rows(m, s, ts, cs, o);
        }
        Ok(())
    })?;
    r.map_err(|m| raise(py, Exc::Config, m))?;
    drop(w);
    Ok(out)
}

/// A checked colour code (0..=2) as a colour.
#[inline]
fn code(c: u64) -> Color {
    Color::from_code(u8::try_from(c).unwrap_or(0)).unwrap_or(Color::Green)
}

/// The rows of a batch, one monomorphic loop per combination of column types: the colours...
#[allow(clippy::cast_sign_loss)] // int64 columns are checked >= 0 before this runs
fn meter_rows<M: Meter>(
    m: &mut M,
    sizes: IntSlice<'_>,
    times: TimeSlice<'_>,
    colors: Option<IntSlice<'_>>,
    out: &mut [u8],
) {
    match colors {
        None => with_times(m, sizes, times, std::iter::repeat(Color::Green), out),
        Some(IntSlice::U(c)) => with_times(m, sizes, times, c.iter().map(|&x| code(x)), out),
        Some(IntSlice::I(c)) => {
            with_times(m, sizes, times, c.iter().map(|&x| code(x as u64)), out);
        }
    }
}

/// ... the times ...
fn with_times<M: Meter>(
    m: &mut M,
    sizes: IntSlice<'_>,
    times: TimeSlice<'_>,
    pres: impl Iterator<Item = Color>,
    out: &mut [u8],
) {
    match times {
        TimeSlice::One(t) => with_sizes(m, sizes, std::iter::repeat(t), pres, out),
        TimeSlice::Each(ts) => with_sizes(
            m,
            sizes,
            ts.iter().map(|&t| nanos_of_seconds(t).unwrap_or(0)),
            pres,
            out,
        ),
    }
}

/// ... and the sizes.
#[allow(clippy::cast_sign_loss)] // int64 sizes are checked >= 0 before this runs
fn with_sizes<M: Meter>(
    m: &mut M,
    sizes: IntSlice<'_>,
    times: impl Iterator<Item = Nanos>,
    pres: impl Iterator<Item = Color>,
    out: &mut [u8],
) {
    match sizes {
        IntSlice::U(v) => m.color_each(
            v.iter().zip(times).zip(pres).map(|((&b, t), c)| (b, t, c)),
            out,
        ),
        IntSlice::I(v) => m.color_each(
            v.iter()
                .zip(times)
                .zip(pres)
                .map(|((&b, t), c)| (b as u64, t, c)),
            out,
        ),
    }
}

fn num(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Ratio> {
    clock::ratio(py, obj, what)
}

/// The single-rate three-colour marker (RFC 2697).
#[pyclass(frozen, module = "meshcore", name = "SrTCM")]
pub struct PySrTcm {
    inner: Locked<SrTcm>,
    clock: Clock,
    params: (Ratio, Ratio, Ratio),
    color_aware: bool,
}

#[pymethods]
impl PySrTcm {
    #[new]
    #[pyo3(signature = (cir, cbs, ebs, *, color_aware = false, clock = None))]
    fn new(
        py: Python<'_>,
        cir: &Bound<'_, PyAny>,
        cbs: &Bound<'_, PyAny>,
        ebs: &Bound<'_, PyAny>,
        color_aware: bool,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let m = SrTcm::new(
            num(py, cir, "cir")?,
            num(py, cbs, "cbs")?,
            num(py, ebs, "ebs")?,
            color_aware,
        )
        .map_err(|e| clock::config_error(py, &e))?;
        Ok(PySrTcm {
            params: m.params(),
            inner: Locked::new(m, "srTCM meter"),
            clock: Clock::from_arg(py, clock)?,
            color_aware,
        })
    }

    #[pyo3(signature = (size, now = None, color = None))]
    fn color<'py>(
        &self,
        py: Python<'py>,
        size: i64,
        now: Option<f64>,
        color: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        color_one(py, (&self.inner, &self.clock), size, now, color)
    }

    #[pyo3(signature = (sizes, times = None, colors = None, out = None))]
    fn color_many<'py>(
        &self,
        py: Python<'py>,
        sizes: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        colors: Option<&Bound<'py, PyAny>>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        color_batch(py, (&self.inner, &self.clock), sizes, times, colors, out)
    }

    /// Committed information rate, bytes/s.
    #[getter]
    fn cir(&self) -> f64 {
        self.params.0.to_f64()
    }

    /// Committed burst size, bytes.
    #[getter]
    fn cbs(&self) -> f64 {
        self.params.1.to_f64()
    }

    /// Excess burst size, bytes.
    #[getter]
    fn ebs(&self) -> f64 {
        self.params.2.to_f64()
    }

    #[getter]
    fn color_aware(&self) -> bool {
        self.color_aware
    }

    fn __repr__(&self) -> String {
        format!(
            "SrTCM(cir={}, cbs={}, ebs={}, color_aware={})",
            self.cir(),
            self.cbs(),
            self.ebs(),
            py_bool(self.color_aware)
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The two-rate three-colour marker (RFC 2698).
#[pyclass(frozen, module = "meshcore", name = "TrTCM")]
pub struct PyTrTcm {
    inner: Locked<TrTcm>,
    clock: Clock,
    params: (Ratio, Ratio, Ratio, Ratio),
    color_aware: bool,
}

#[pymethods]
impl PyTrTcm {
    #[new]
    #[pyo3(signature = (cir, cbs, pir, pbs, *, color_aware = false, clock = None))]
    fn new(
        py: Python<'_>,
        cir: &Bound<'_, PyAny>,
        cbs: &Bound<'_, PyAny>,
        pir: &Bound<'_, PyAny>,
        pbs: &Bound<'_, PyAny>,
        color_aware: bool,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let m = TrTcm::new(
            num(py, cir, "cir")?,
            num(py, cbs, "cbs")?,
            num(py, pir, "pir")?,
            num(py, pbs, "pbs")?,
            color_aware,
        )
        .map_err(|e| clock::config_error(py, &e))?;
        Ok(PyTrTcm {
            params: m.params(),
            inner: Locked::new(m, "trTCM meter"),
            clock: Clock::from_arg(py, clock)?,
            color_aware,
        })
    }

    #[pyo3(signature = (size, now = None, color = None))]
    fn color<'py>(
        &self,
        py: Python<'py>,
        size: i64,
        now: Option<f64>,
        color: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        color_one(py, (&self.inner, &self.clock), size, now, color)
    }

    #[pyo3(signature = (sizes, times = None, colors = None, out = None))]
    fn color_many<'py>(
        &self,
        py: Python<'py>,
        sizes: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        colors: Option<&Bound<'py, PyAny>>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        color_batch(py, (&self.inner, &self.clock), sizes, times, colors, out)
    }

    /// Committed information rate, bytes/s.
    #[getter]
    fn cir(&self) -> f64 {
        self.params.0.to_f64()
    }

    /// Committed burst size, bytes.
    #[getter]
    fn cbs(&self) -> f64 {
        self.params.1.to_f64()
    }

    /// Peak information rate, bytes/s.
    #[getter]
    fn pir(&self) -> f64 {
        self.params.2.to_f64()
    }

    /// Peak burst size, bytes.
    #[getter]
    fn pbs(&self) -> f64 {
        self.params.3.to_f64()
    }

    #[getter]
    fn color_aware(&self) -> bool {
        self.color_aware
    }

    fn __repr__(&self) -> String {
        format!(
            "TrTCM(cir={}, cbs={}, pir={}, pbs={}, color_aware={})",
            self.cir(),
            self.cbs(),
            self.pir(),
            self.pbs(),
            py_bool(self.color_aware)
        )
    }
}

/// The RFC 4115 two-rate meter (independent committed and excess buckets).
#[pyclass(frozen, module = "meshcore", name = "TrTCM4115")]
pub struct PyTrTcm4115 {
    inner: Locked<TrTcm4115>,
    clock: Clock,
    params: (Ratio, Ratio, Ratio, Ratio),
    color_aware: bool,
}

#[pymethods]
impl PyTrTcm4115 {
    #[new]
    #[pyo3(signature = (cir, cbs, eir, ebs, *, color_aware = false, clock = None))]
    fn new(
        py: Python<'_>,
        cir: &Bound<'_, PyAny>,
        cbs: &Bound<'_, PyAny>,
        eir: &Bound<'_, PyAny>,
        ebs: &Bound<'_, PyAny>,
        color_aware: bool,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let m = TrTcm4115::new(
            num(py, cir, "cir")?,
            num(py, cbs, "cbs")?,
            num(py, eir, "eir")?,
            num(py, ebs, "ebs")?,
            color_aware,
        )
        .map_err(|e| clock::config_error(py, &e))?;
        Ok(PyTrTcm4115 {
            params: m.params(),
            inner: Locked::new(m, "RFC 4115 meter"),
            clock: Clock::from_arg(py, clock)?,
            color_aware,
        })
    }

    #[pyo3(signature = (size, now = None, color = None))]
    fn color<'py>(
        &self,
        py: Python<'py>,
        size: i64,
        now: Option<f64>,
        color: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        color_one(py, (&self.inner, &self.clock), size, now, color)
    }

    #[pyo3(signature = (sizes, times = None, colors = None, out = None))]
    fn color_many<'py>(
        &self,
        py: Python<'py>,
        sizes: &Bound<'py, PyAny>,
        times: Option<&Bound<'py, PyAny>>,
        colors: Option<&Bound<'py, PyAny>>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        color_batch(py, (&self.inner, &self.clock), sizes, times, colors, out)
    }

    /// Committed information rate, bytes/s.
    #[getter]
    fn cir(&self) -> f64 {
        self.params.0.to_f64()
    }

    /// Committed burst size, bytes.
    #[getter]
    fn cbs(&self) -> f64 {
        self.params.1.to_f64()
    }

    /// Excess information rate, bytes/s.
    #[getter]
    fn eir(&self) -> f64 {
        self.params.2.to_f64()
    }

    /// Excess burst size, bytes.
    #[getter]
    fn ebs(&self) -> f64 {
        self.params.3.to_f64()
    }

    #[getter]
    fn color_aware(&self) -> bool {
        self.color_aware
    }

    fn __repr__(&self) -> String {
        format!(
            "TrTCM4115(cir={}, cbs={}, eir={}, ebs={}, color_aware={})",
            self.cir(),
            self.cbs(),
            self.eir(),
            self.ebs(),
            py_bool(self.color_aware)
        )
    }
}
