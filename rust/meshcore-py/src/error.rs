//! The one place where core errors become Python exceptions.
//!
//! The exception classes are defined in Python (`meshcore/errors.py`, where users read the tree);
//! they are looked up once and cached. A Rust panic inside an entry point is caught by [`guard`]
//! and raised as `meshcore.InternalError` instead of aborting or escaping as a `BaseException`.

use meshcore_core::classify::classbench::ParseError;
use meshcore_core::classify::AddError;
use meshcore_core::pcap::CaptureError;
use meshcore_core::wire::build::BuildError;
use meshcore_core::wire::stack::OffsetError;
use meshcore_core::wire::Error as WireError;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// The classes of `meshcore.errors`, by name.
#[derive(Clone, Copy)]
pub enum Exc {
    Packet,
    Config,
    Capture,
    Internal,
    Route,
    Rule,
    NoEndpoint,
}

static CLASSES: [PyOnceLock<Py<PyType>>; 7] = [
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
    PyOnceLock::new(),
];

fn class(py: Python<'_>, which: Exc) -> PyResult<Bound<'_, PyType>> {
    let (slot, name) = match which {
        Exc::Packet => (&CLASSES[0], "PacketError"),
        Exc::Config => (&CLASSES[1], "ConfigError"),
        Exc::Capture => (&CLASSES[2], "CaptureError"),
        Exc::Internal => (&CLASSES[3], "InternalError"),
        Exc::Route => (&CLASSES[4], "RouteError"),
        Exc::Rule => (&CLASSES[5], "RuleError"),
        Exc::NoEndpoint => (&CLASSES[6], "NoEndpointError"),
    };
    let cls = slot.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        let module = py.import("meshcore.errors")?;
        Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind())
    })?;
    Ok(cls.bind(py).clone())
}

/// Whether `e` is an exception of the given `meshcore` class.
pub fn is_class(py: Python<'_>, e: &PyErr, which: Exc) -> bool {
    class(py, which).is_ok_and(|cls| e.is_instance(py, &cls))
}

/// Make a `meshcore` exception of the given class.
pub fn raise(py: Python<'_>, which: Exc, msg: impl Into<String>) -> PyErr {
    match class(py, which) {
        Ok(cls) => PyErr::from_type(cls, msg.into()),
        Err(e) => e,
    }
}

pub fn wire(py: Python<'_>, e: WireError) -> PyErr {
    raise(py, Exc::Packet, e.to_string())
}

pub fn build(py: Python<'_>, e: &BuildError) -> PyErr {
    raise(py, Exc::Packet, format!("cannot build packet: {e}"))
}

pub fn capture(py: Python<'_>, e: &CaptureError) -> PyErr {
    raise(py, Exc::Capture, e.to_string())
}

pub fn offsets(py: Python<'_>, e: OffsetError, n_bytes: usize) -> PyErr {
    let msg = match e {
        OffsetError::Shape => "offsets must hold N + 1 entries for N packets".to_string(),
        OffsetError::OutOfRange { index, value } => {
            format!("offsets[{index}] = {value} is outside the buffer (0..={n_bytes})")
        }
        OffsetError::Decreasing { index } => {
            format!(
                "offsets decrease at index {index}: offsets[{index}] > offsets[{}]",
                index + 1
            )
        }
    };
    raise(py, Exc::Packet, msg)
}

/// A refused classifier rule.
pub fn rule(py: Python<'_>, e: &AddError) -> PyErr {
    raise(py, Exc::Rule, e.to_string())
}

/// A bad line of a rule file or text ("line 3: ..."), after the file's path when there is one.
pub fn rule_line(py: Python<'_>, e: &ParseError, path: Option<&Path>) -> PyErr {
    match path {
        Some(p) => raise(py, Exc::Rule, format!("{}: {e}", p.display())),
        None => raise(py, Exc::Rule, e.to_string()),
    }
}

/// A file that could not be read, raised as `open()` raises it: `OSError(errno, strerror,
/// filename)`, which Python turns into the subclass for the errno (`FileNotFoundError`,
/// `IsADirectoryError`, `PermissionError`, ...), with `errno` and `filename` set.
pub fn io(py: Python<'_>, e: &std::io::Error, path: &Path) -> PyErr {
    let Some(code) = e.raw_os_error() else {
        return PyOSError::new_err(format!("{}: {e}", path.display()));
    };
    // Python's wording, without the " (os error N)" that Rust's adds.
    let strerror = py
        .import("os")
        .and_then(|os| os.call_method1("strerror", (code,)))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| e.to_string());
    PyOSError::new_err((code, strerror, path.as_os_str().to_os_string()))
}

/// Run `f`, turning a Rust panic into `meshcore.InternalError`.
pub fn guard<T>(py: Python<'_>, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(raise(
                py,
                Exc::Internal,
                format!("internal error in meshcore (please report): {what}"),
            ))
        }
    }
}
