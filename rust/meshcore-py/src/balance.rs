//! `meshcore.Balancer` and `meshcore.EndpointInfo`: the core's load balancer by endpoint name.
//!
//! The core addresses endpoints by index; Python users hold names. The binding keeps one
//! `str` object per endpoint, so `pick` returns an existing object (one reference count, no
//! allocation), and a map from those objects' addresses to indices, so `done` with the object
//! `pick` returned finds its endpoint without hashing the text. A name that is not one of those
//! objects (made elsewhere, or picked before a `set_endpoints`) is looked up by its text.
//!
//! The names live beside the core value behind the same [`Locked`]; the closures run under the
//! lock copy out an `Arc` of the name list (no Python object is touched there), and the name is
//! taken from it after the lock is released.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::clock::{self, Clock};
use crate::error::{raise, Exc};
use crate::lock::Locked;
use meshcore_core::balance::{hash_key, BalanceError, Balancer, Health, Options, Policy};
use meshcore_core::queue::{nanos_to_seconds, Nanos};
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyList, PyString};

fn config(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    raise(py, Exc::Config, msg)
}

fn balance_error(py: Python<'_>, e: &BalanceError) -> PyErr {
    match e {
        BalanceError::NoEndpoint(_) => raise(py, Exc::NoEndpoint, e.to_string()),
        BalanceError::UnknownEndpoint(_) => PyKeyError::new_err(e.to_string()),
        BalanceError::Param(p) => clock::config_error(py, p),
    }
}

/// Hashes an object address: the address itself, mixed once (addresses are 16-byte aligned, so
/// the low bits alone would crowd a few buckets).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

type AddrMap = HashMap<usize, u32, BuildHasherDefault<AddrHasher>>;

struct State {
    lb: Balancer,
    /// The endpoint names in index order, as the `str` objects `pick` returns.
    names: Arc<[Py<PyString>]>,
    /// Address of each object in `names` -> its index.
    by_addr: AddrMap,
}

fn addr_map(names: &[Py<PyString>]) -> AddrMap {
    let mut m = AddrMap::with_capacity_and_hasher(names.len(), BuildHasherDefault::default());
    for (i, n) in names.iter().enumerate() {
        m.insert(n.as_ptr() as usize, i as u32);
    }
    m
}

/// The `endpoints` argument: a list (any iterable but a string) of names, or a dict name ->
/// weight. Returns the core's (name, weight) pairs and the `str` objects to keep.
type Endpoints = (Vec<(String, f64)>, Vec<Py<PyString>>);

fn endpoints_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<Endpoints> {
    let mut pairs = Vec::new();
    let mut objs = Vec::new();
    let mut add = |name: &Bound<'_, PyAny>, w: f64| -> PyResult<()> {
        let Ok(s) = name.cast::<PyString>() else {
            return Err(config(
                py,
                format!(
                    "endpoint names must be str, got {}",
                    name.get_type().name()?
                ),
            ));
        };
        pairs.push((s.to_str()?.to_owned(), w));
        // A str subclass is copied to a plain str: pick returns plain str objects.
        objs.push(if s.is_exact_instance_of::<PyString>() {
            s.clone().unbind()
        } else {
            PyString::new(py, s.to_str()?).unbind()
        });
        Ok(())
    };
    if let Ok(d) = obj.cast::<PyDict>() {
        for (k, v) in d.iter() {
            if v.is_instance_of::<PyBool>() {
                return Err(config(
                    py,
                    format!("weight of endpoint {k} must be a number"),
                ));
            }
            let w: f64 = v.extract().map_err(|_| {
                config(
                    py,
                    format!(
                        "weight of endpoint {k} must be a number, got {}",
                        v.get_type()
                            .name()
                            .map(|n| n.to_string())
                            .unwrap_or_default()
                    ),
                )
            })?;
            add(&k, w)?;
        }
    } else if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(config(
            py,
            "endpoints must be a list of names or a dict name -> weight, not a single string",
        ));
    } else {
        let it = obj.try_iter().map_err(|_| {
            config(
                py,
                "endpoints must be a list of names or a dict name -> weight",
            )
        })?;
        for item in it {
            add(&item?, 1.0)?;
        }
    }
    Ok((pairs, objs))
}

/// A request key as the core's hash: str as its UTF-8 bytes, bytes-like as themselves, int as
/// the 8 little-endian bytes of its 64-bit two's complement (-2**63 <= key < 2**64).
fn key_hash(py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<u64> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(hash_key(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = key.cast::<PyBytes>() {
        return Ok(hash_key(b.as_bytes()));
    }
    if key.is_instance_of::<PyInt>() && !key.is_instance_of::<PyBool>() {
        let v = match key.extract::<u64>() {
            Ok(u) => u,
            Err(_) => key
                .extract::<i64>()
                .map(|i| u64::from_le_bytes(i.to_le_bytes()))
                .map_err(|_| {
                    config(
                        py,
                        format!("an int key must be in [-2**63, 2**64), got {key}"),
                    )
                })?,
        };
        return Ok(hash_key(&v.to_le_bytes()));
    }
    if let Ok(b) = key.cast::<PyByteArray>() {
        return Ok(hash_key(&b.to_vec()));
    }
    Err(config(
        py,
        format!(
            "key must be str, bytes, bytearray or int, got {}",
            key.get_type().name()?
        ),
    ))
}

fn random_seed() -> u64 {
    // std's RandomState draws fresh keys from the OS (once per thread, then increments them).
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(clock::monotonic_ns());
    h.finish()
}

/// One endpoint as `Balancer.endpoints()` reports it.
#[pyclass(frozen, module = "meshcore", name = "EndpointInfo", get_all)]
pub struct PyEndpointInfo {
    name: Py<PyString>,
    weight: f64,
    effective_weight: f64,
    health: &'static str,
    in_flight: u64,
    ewma: Option<f64>,
    failure_ratio: f64,
}

#[pymethods]
impl PyEndpointInfo {
    fn __repr__(&self, py: Python<'_>) -> String {
        let ewma = self
            .ewma
            .map_or_else(|| "None".to_string(), |e| format!("{e:.6}"));
        format!(
            "EndpointInfo(name={}, weight={:?}, effective_weight={:?}, health='{}', in_flight={}, \
             ewma={ewma}, failure_ratio={:.4})",
            self.name
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            self.weight,
            self.effective_weight,
            self.health,
            self.in_flight,
            self.failure_ratio
        )
    }
}

struct Info {
    weight: f64,
    effective_weight: f64,
    health: Health,
    in_flight: u64,
    ewma: Option<f64>,
    failure_ratio: f64,
}

/// A load balancer over named endpoints (see the stub for the contract).
#[pyclass(frozen, module = "meshcore", name = "Balancer")]
pub struct PyBalancer {
    inner: Locked<State>,
    clock: Clock,
    policy: Policy,
    /// `pick` and `done` read the time (peak EWMA, or slow start on): else `now=None` skips
    /// the clock, whose reading the core would not look at.
    timed: bool,
}

impl PyBalancer {
    /// `now` in ns for `pick` and `done`. The default clock is read coarse (the kernel tick,
    /// 1 to 4 ms, in a few ns instead of tens): the balancer uses time only for the peak-EWMA
    /// decay and slow start, over seconds, and the same timeline keeps explicit times mixable.
    #[inline]
    fn now(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Nanos> {
        if now.is_none() && !self.timed {
            return Ok(0);
        }
        self.clock.now_coarse(py, now)
    }
}

/// An endpoint argument's text (the slow path: the object is not one `pick` returned).
fn name_arg(py: Python<'_>, ep: &Bound<'_, PyAny>) -> PyResult<String> {
    let s = ep.cast::<PyString>().map_err(|_| {
        config(
            py,
            format!(
                "endpoint must be a str name, got {}",
                ep.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ),
        )
    })?;
    Ok(s.to_str()?.to_owned())
}

#[pymethods]
impl PyBalancer {
    #[new]
    #[pyo3(signature = (policy, endpoints, *, seed = None, clock = None, **options))]
    fn new(
        py: Python<'_>,
        policy: &str,
        endpoints: &Bound<'_, PyAny>,
        seed: Option<&Bound<'_, PyAny>>,
        clock: Option<Bound<'_, PyAny>>,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let policy: Policy = policy.parse().map_err(|e| clock::config_error(py, &e))?;
        let mut opts = Options::default();
        if let Some(kw) = options {
            for (k, v) in kw.iter() {
                let key: String = k.extract()?;
                if v.is_none() {
                    continue; // the default
                }
                if v.is_instance_of::<PyBool>() {
                    return Err(config(py, format!("{key} must be a number, got bool")));
                }
                let x: f64 = v.extract().map_err(|_| {
                    config(
                        py,
                        format!(
                            "{key} must be a number, got {}",
                            v.get_type()
                                .name()
                                .map(|n| n.to_string())
                                .unwrap_or_default()
                        ),
                    )
                })?;
                opts.set(&key, x).map_err(|e| clock::config_error(py, &e))?;
            }
        }
        let seed = match seed.filter(|s| !s.is_none()) {
            None => random_seed(),
            Some(s) if s.is_instance_of::<PyBool>() => {
                return Err(config(py, "seed must be an int in [0, 2**64), got bool"))
            }
            Some(s) => s
                .extract::<u64>()
                .map_err(|_| config(py, format!("seed must be an int in [0, 2**64), got {s}")))?,
        };
        let clock = Clock::from_arg(py, clock)?;
        let timed = policy == Policy::PeakEwma || opts.slow_start_window > 0;
        let (pairs, objs) = endpoints_arg(py, endpoints)?;
        let lb = Balancer::new(policy, &pairs, opts, seed).map_err(|e| balance_error(py, &e))?;
        let by_addr = addr_map(&objs);
        Ok(PyBalancer {
            inner: Locked::new(
                State {
                    lb,
                    names: objs.into(),
                    by_addr,
                },
                "balancer",
            ),
            clock,
            policy,
            timed,
        })
    }

    #[pyo3(signature = (key = None, now = None))]
    fn pick<'py>(
        &self,
        py: Python<'py>,
        key: Option<&Bound<'py, PyAny>>,
        now: Option<f64>,
    ) -> PyResult<Bound<'py, PyString>> {
        let t = self.now(py, now)?;
        let h = match key {
            Some(k) if !k.is_none() && self.policy.is_hash() => Some(key_hash(py, k)?),
            _ => None,
        };
        // Uncontended, the name's reference count is taken under the lock; else the name list
        // is copied out (an Arc) and read after it.
        let fast = self
            .inner
            .try_write_here(py, |s| s.lb.pick(h, t).map(|i| s.names[i].clone_ref(py)))?;
        if let Some(r) = fast {
            return r
                .map(|n| n.into_bound(py))
                .map_err(|e| balance_error(py, &e));
        }
        let r = self.inner.write_one(py, move |s| {
            s.lb.pick(h, t).map(|i| (i, Arc::clone(&s.names)))
        })?;
        match r {
            Ok((i, names)) => Ok(names[i].bind(py).clone()),
            Err(e) => Err(balance_error(py, &e)),
        }
    }

    #[pyo3(signature = (ep, latency, ok = true, now = None))]
    fn done(
        &self,
        py: Python<'_>,
        ep: &Bound<'_, PyAny>,
        latency: f64,
        ok: bool,
        now: Option<f64>,
    ) -> PyResult<()> {
        let t = self.now(py, now)?;
        let lat = clock::nanos(py, latency, "latency")?;
        let addr = ep.as_ptr() as usize;
        let hit = self.inner.write_one(py, move |s| {
            let Some(&i) = s.by_addr.get(&addr) else {
                return false;
            };
            // An index from the map is always in range.
            let _ = s.lb.done(i as usize, lat, ok, t);
            true
        })?;
        if hit {
            return Ok(());
        }
        let name = name_arg(py, ep)?;
        self.inner.write_one(py, move |s| {
            if let Some(i) = s.lb.index_of(&name) {
                let _ = s.lb.done(i, lat, ok, t);
            }
        })
    }

    #[pyo3(signature = (endpoints, now = None))]
    fn set_endpoints(
        &self,
        py: Python<'_>,
        endpoints: &Bound<'_, PyAny>,
        now: Option<f64>,
    ) -> PyResult<()> {
        let t = self.clock.now(py, now)?;
        let (pairs, objs) = endpoints_arg(py, endpoints)?;
        let by_addr = addr_map(&objs);
        let names: Arc<[Py<PyString>]> = objs.into();
        let old = self
            .inner
            .write_one(py, move |s| -> Result<_, BalanceError> {
                s.lb.set_endpoints(&pairs, t)?;
                s.by_addr = by_addr;
                // The old names are dropped after the lock is released.
                Ok(std::mem::replace(&mut s.names, names))
            })?;
        match old {
            Ok(old) => {
                drop(old);
                Ok(())
            }
            Err(e) => Err(balance_error(py, &e)),
        }
    }

    fn set_health(
        &self,
        py: Python<'_>,
        ep: &Bound<'_, PyAny>,
        healthy: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let health = if let Ok(b) = healthy.cast::<PyBool>() {
            if b.is_true() {
                Health::Healthy
            } else {
                Health::Unhealthy
            }
        } else if let Ok(s) = healthy.cast::<PyString>() {
            s.to_str()?
                .parse()
                .map_err(|e| clock::config_error(py, &e))?
        } else {
            return Err(config(
                py,
                format!(
                    "health must be a bool or \"healthy\", \"unhealthy\" or \"draining\", got {}",
                    healthy.get_type().name()?
                ),
            ));
        };
        let name = name_arg(py, ep)?;
        let key = name.clone();
        let found = self.inner.write_one(py, move |s| {
            s.lb.index_of(&key)
                .map(|i| s.lb.set_health(i, health).is_ok())
        })?;
        match found {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(name)),
        }
    }

    /// Per-endpoint snapshots at `now`, in index order.
    #[pyo3(signature = (now = None))]
    fn endpoints(&self, py: Python<'_>, now: Option<f64>) -> PyResult<Vec<PyEndpointInfo>> {
        let t = self.clock.now(py, now)?;
        let (infos, names) = self.inner.read(py, move |s| {
            let infos: Vec<Info> =
                s.lb.endpoints(t)
                    .map(|e| Info {
                        weight: e.weight,
                        effective_weight: e.effective_weight,
                        health: e.health,
                        in_flight: e.in_flight,
                        ewma: e.ewma,
                        failure_ratio: e.failure_ratio,
                    })
                    .collect();
            (infos, Arc::clone(&s.names))
        })?;
        Ok(infos
            .into_iter()
            .zip(names.iter())
            .map(|(e, n)| PyEndpointInfo {
                name: n.clone_ref(py),
                weight: e.weight,
                effective_weight: e.effective_weight,
                health: e.health.name(),
                in_flight: e.in_flight,
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                ewma: e.ewma.map(|ns| nanos_to_seconds(ns.round() as Nanos)),
                failure_ratio: e.failure_ratio,
            })
            .collect())
    }

    /// The endpoint names in index order.
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let names = self.inner.read(py, |s| Arc::clone(&s.names))?;
        PyList::new(py, names.iter().map(|n| n.bind(py)))
    }

    /// The policy's name.
    #[getter]
    fn policy(&self) -> &'static str {
        self.policy.name()
    }

    /// True while fewer than `panic_threshold` percent of the non-draining endpoints are
    /// healthy.
    #[getter]
    fn in_panic(&self, py: Python<'_>) -> PyResult<bool> {
        self.inner.read(py, |s| s.lb.in_panic())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.read(py, |s| s.lb.len())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let n = self.__len__(py)?;
        Ok(format!(
            "Balancer('{}', <{n} endpoints>)",
            self.policy.name()
        ))
    }
}
