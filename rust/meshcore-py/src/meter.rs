//! `meshcore.SrTCM`, `meshcore.TrTCM` and `meshcore.TrTCM4115`: the core meters behind a
//! [`Locked`], with a cheap single `color` call and a GIL-free `color_many`.

use crate::bucket::{bad_time, out_array, write_out, Ints, Times, CHUNK};
use crate::clock::{self, Clock};
use crate::convert::py_bool;
use crate::error::{raise, Exc};
use crate::lock::Locked;
use meshcore_core::queue::meter::{Meter, SrTcm, TrTcm, TrTcm4115};
use meshcore_core::queue::{Color, Ratio};
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
    let r = inner.write_rows(py, o.len(), move |m| {
        // Checked, converted and run per chunk, as the buckets' batches; a bad row restores
        // the meter.
        let saved = m.clone();
        let (mut sbuf, mut tbuf, mut cbuf) = ([0u64; CHUNK], [0u64; CHUNK], [0u64; CHUNK]);
        for (k, o) in o.chunks_mut(CHUNK).enumerate() {
            let rows = k * CHUNK..k * CHUNK + o.len();
            let n = o.len();
            let (sz, t, c) = (&mut sbuf[..n], &mut tbuf[..n], &mut cbuf[..n]);
            let bad = if let Some((i, v)) = s.sub(rows.clone()).convert(u64::MAX, sz) {
                Some(format!(
                    "sizes[{}] = {v} must be >= 0 bytes",
                    rows.start + i
                ))
            } else if let Some((i, x)) = ts.sub(rows.clone()).convert(t) {
                Some(bad_time(rows.start + i, x))
            } else if let Some(cs) = cs {
                cs.sub(rows.clone()).convert(2, c).map(|(i, v)| {
                    format!(
                        "colors[{}] = {v} is not Color.GREEN, YELLOW or RED (0, 1, 2)",
                        rows.start + i
                    )
                })
            } else {
                c.fill(Color::Green as u64);
                None
            };
            if let Some(msg) = bad {
                *m = saved;
                return Err(msg);
            }
            let rows = sz.iter().zip(t.iter()).zip(c.iter());
            m.color_each(rows.map(|((&b, &t), &c)| (b, t, code(c))), o);
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
