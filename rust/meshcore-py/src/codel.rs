//! `meshcore.CoDel`: the core CoDel queue of Python objects behind a lock ([`Locked`]).
//!
//! Packets CoDel drops at dequeue are carried out of the lock and released after it, like the
//! refused arrivals (see `red.rs`).

use crate::clock::{self, config_error, Clock};
use crate::convert::py_bool;
use crate::lock::Locked;
use crate::red::{item_object, item_size, Arrivals, Item};
use meshcore_core::queue::codel::{Codel, CodelConfig, Delivered};
use meshcore_core::queue::{nanos_to_seconds, seconds_at_least, Verdict};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

const QUEUE: &str = "CoDel queue";

/// CoDel (RFC 8289); see the stub for the user documentation.
#[pyclass(frozen, module = "meshcore", name = "CoDel")]
pub struct PyCodel {
    inner: Locked<Codel<Item>>,
    clock: Clock,
    mtu: u32,
}

impl PyCodel {
    /// One dequeue at `now`: the delivered packet; the dropped ones are released after the lock.
    fn take(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Option<Delivered<Item>>> {
        let now = self.clock.now(py, now)?;
        let (delivered, dropped) = self.inner.write_one(py, move |q| {
            let mut dropped = Vec::new();
            let d = q.dequeue(now, &mut dropped);
            (d, dropped)
        })?;
        drop(dropped);
        Ok(delivered)
    }
}

#[pymethods]
impl PyCodel {
    #[new]
    #[pyo3(signature = (target = 0.005, interval = 0.1, limit = 1000, *, mtu = 1514, ecn = false, clock = None))]
    fn new(
        py: Python<'_>,
        target: f64,
        interval: f64,
        limit: i64,
        mtu: i64,
        ecn: bool,
        clock: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let bad = |what: &str, v: i64| {
            crate::error::raise(
                py,
                crate::error::Exc::Config,
                format!(
                    "{what} must be in {}, got {v}",
                    if what == "mtu" {
                        "0..2**32"
                    } else {
                        "1..2**63"
                    }
                ),
            )
        };
        let limit = u64::try_from(limit).map_err(|_| bad("limit", limit))?;
        let mtu32 = u32::try_from(mtu).map_err(|_| bad("mtu", mtu))?;
        let cfg = CodelConfig {
            target: clock::nanos(py, target, "target")?,
            interval: clock::nanos(py, interval, "interval")?,
            limit,
            mtu: u64::from(mtu32),
            ecn,
        };
        let q = Codel::new(cfg).map_err(|e| config_error(py, &e))?;
        Ok(PyCodel {
            inner: Locked::new(q, QUEUE),
            clock: Clock::from_arg(py, clock)?,
            mtu: mtu32,
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
        let size = item_size(&item, size, Some(self.mtu), "")?;
        let now = self.clock.now(py, now)?;
        let item = Some(item.unbind());
        let r = self
            .inner
            .write_one(py, move |q| q.enqueue(item, size, ecn_capable, now))?;
        clock::verdict(py, r.unwrap_or(Verdict::Dropped))
    }

    #[pyo3(signature = (now = None))]
    fn dequeue(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        self.take(py, now)?
            .map(|d| item_object(py, d.item, d.size))
            .transpose()
    }

    #[pyo3(signature = (now = None))]
    fn dequeue_verdict<'py>(
        &self,
        py: Python<'py>,
        now: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(d) = self.take(py, now)? else {
            return Ok(None);
        };
        let item = item_object(py, d.item, d.size)?;
        let v = clock::verdict(py, d.verdict)?;
        Ok(Some(PyTuple::new(py, [item.into_bound(py), v])?))
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
            a.run(py, &self.inner, o, |q, item, size, ect, t| {
                q.enqueue(item, size, ect, t)
            })?;
        }
        Ok(out)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.read(py, Codel::stats)?;
        let d = PyDict::new(py);
        d.set_item("enqueued", s.enqueued)?;
        d.set_item("dequeued", s.dequeued)?;
        d.set_item("drops", s.drops)?;
        d.set_item("overlimit_drops", s.overlimit_drops)?;
        d.set_item("marks", s.marks)?;
        Ok(d)
    }

    #[getter]
    fn backlog(&self, py: Python<'_>) -> PyResult<u64> {
        self.inner.read(py, Codel::backlog)
    }

    #[getter]
    fn count(&self, py: Python<'_>) -> PyResult<u64> {
        self.inner.read(py, Codel::count)
    }

    #[getter]
    fn dropping(&self, py: Python<'_>) -> PyResult<bool> {
        self.inner.read(py, Codel::dropping)
    }

    #[getter]
    fn drop_next(&self, py: Python<'_>) -> PyResult<f64> {
        // A deadline: rounded so that a dequeue at this float time is at or after it.
        self.inner.read(py, |q| seconds_at_least(q.drop_next()))
    }

    #[getter]
    fn target(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner.read(py, |q| nanos_to_seconds(q.config().target))
    }

    #[getter]
    fn interval(&self, py: Python<'_>) -> PyResult<f64> {
        self.inner
            .read(py, |q| nanos_to_seconds(q.config().interval))
    }

    #[getter]
    fn limit(&self, py: Python<'_>) -> PyResult<u64> {
        self.inner.read(py, |q| q.config().limit)
    }

    #[getter]
    fn mtu(&self) -> u32 {
        self.mtu
    }

    #[getter]
    fn ecn(&self, py: Python<'_>) -> PyResult<bool> {
        self.inner.read(py, |q| q.config().ecn)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, Codel::len)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        self.inner.read(py, |q| {
            let c = q.config();
            format!(
                "CoDel(target={}, interval={}, limit={}, mtu={}, ecn={}, len={}, dropping={})",
                nanos_to_seconds(c.target),
                nanos_to_seconds(c.interval),
                c.limit,
                c.mtu,
                py_bool(c.ecn),
                q.len(),
                py_bool(q.dropping())
            )
        })
    }
}
