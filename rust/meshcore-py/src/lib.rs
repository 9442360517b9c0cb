//! `meshcore._meshcore`: the PyO3 glue around `meshcore-core`.
//!
//! This crate only converts, releases the GIL and maps errors (see `error.rs`); every algorithm
//! lives in the core. Users import `meshcore`, never this module.

mod balance;
mod batch;
mod bucket;
mod build;
mod classify;
mod clock;
mod codel;
mod convert;
mod error;
mod lock;
mod meter;
mod packet;
mod red;
mod route;

use meshcore_core::wire::stack::{ROW_FIELDS, ROW_LEN};
use meshcore_core::wire::{Error, ErrorKind, Layer};
use pyo3::prelude::*;

/// The message for a `parse_batch` error code, or None for 0.
#[pyfunction]
fn describe_error(code: i64) -> Option<String> {
    u8::try_from(code).ok().and_then(Error::describe_code)
}

/// Panic on purpose, to check that a Rust panic surfaces as `meshcore.InternalError`.
#[pyfunction]
fn _debug_panic(py: Python<'_>, message: &str) -> PyResult<()> {
    error::guard(py, || panic!("{message}"))
}

#[pymodule(gil_used = false)]
fn _meshcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<packet::PyPacket>()?;
    m.add_class::<route::PyRouteTable>()?;
    m.add_class::<classify::PyClassifier>()?;
    m.add_class::<red::PyRedQueue>()?;
    m.add_class::<codel::PyCodel>()?;
    // Rate limits, shapers and meters.
    m.add_class::<bucket::PyTokenBucket>()?;
    m.add_class::<bucket::PyGcra>()?;
    m.add_class::<bucket::PyLeakyBucket>()?;
    m.add_class::<meter::PySrTcm>()?;
    m.add_class::<meter::PyTrTcm>()?;
    m.add_class::<meter::PyTrTcm4115>()?;
    // Load balancing.
    m.add_class::<balance::PyBalancer>()?;
    m.add_class::<balance::PyEndpointInfo>()?;
    m.add_function(wrap_pyfunction!(batch::_parse_batch, m)?)?;
    m.add_function(wrap_pyfunction!(batch::_read_capture, m)?)?;
    m.add_function(wrap_pyfunction!(build::build_packet, m)?)?;
    m.add_function(wrap_pyfunction!(build::checksum, m)?)?;
    m.add_function(wrap_pyfunction!(build::decrement_ttl, m)?)?;
    m.add_function(wrap_pyfunction!(build::mark_ce, m)?)?;
    m.add_function(wrap_pyfunction!(build::update_checksums, m)?)?;
    m.add_function(wrap_pyfunction!(describe_error, m)?)?;
    m.add_function(wrap_pyfunction!(_debug_panic, m)?)?;
    m.add("ROW_LEN", ROW_LEN)?;
    m.add("ROW_FIELDS", ROW_FIELDS.to_vec())?;
    let codes: Vec<(u8, String)> = Layer::ALL
        .iter()
        .flat_map(|l| ErrorKind::ALL.iter().map(move |k| Error::new(*l, *k, 0, 0)))
        .filter_map(|e| Error::describe_code(e.code()).map(|d| (e.code(), d)))
        .collect();
    m.add(
        "ERROR_CODES",
        codes
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )?;
    Ok(())
}
