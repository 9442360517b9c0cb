//! Batch entry points: extract inputs under the GIL, then run the core with the GIL released.

use crate::convert;
use crate::error::{self, guard, raise, Exc};
use meshcore_core::pcap;
use meshcore_core::wire::stack::{self, ROW_LEN};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray1, PyUntypedArrayMethods,
};
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A read-only C-contiguous byte buffer pinned for the duration of a call.
pub struct Pinned {
    buf: PyBuffer<u8>,
}

impl Pinned {
    pub fn get(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Pinned> {
        let buf = convert::byte_buffer(obj, what, false)?;
        Ok(Pinned { buf })
    }

    /// Whether the pinned bytes share memory with `other`.
    pub fn overlaps(&self, other: &[u8]) -> bool {
        self.overlaps_range(other.as_ptr() as usize, other.len())
    }

    /// Whether the pinned bytes share memory with the `len` bytes at address `addr`.
    pub fn overlaps_range(&self, addr: usize, len: usize) -> bool {
        let start = self.buf.buf_ptr() as usize;
        let end = start + self.buf.len_bytes();
        start < addr + len && addr < end
    }

    /// Run `f` over the bytes with the GIL released.
    ///
    /// The buffer export keeps the memory alive and its size fixed until `self` drops, which is
    /// after `f` returns. Its contents are read while other Python threads may run: as with
    /// numpy's own GIL-free loops, the caller must not write to the buffer during the call. One
    /// that does gets wrong rows for the packets it changed, or `InternalError` if a header read
    /// twice disagreed with itself; reads never leave the buffer.
    pub fn detach<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&[u8]) -> R + Send) -> R {
        let len = self.buf.len_bytes();
        let addr = self.buf.buf_ptr() as usize;
        py.detach(move || {
            let data: &[u8] = if len == 0 {
                &[]
            } else {
                // SAFETY: `addr..addr + len` is the exporter's contiguous buffer (checked
                // C-contiguous, item size 1), held alive by the `PyBuffer` borrowed for this
                // call; the exporter may not resize or free it while the export is held.
                #[allow(unsafe_code)]
                unsafe {
                    std::slice::from_raw_parts(addr as *const u8, len)
                }
            };
            f(data)
        })
    }
}

/// The array a batch lookup writes: the caller's `out` (an int64 array of `n` rows) or a new
/// one. A bad `out` raises `exc`.
pub fn out_array<'py>(
    py: Python<'py>,
    out: Option<Bound<'py, PyAny>>,
    n: usize,
    exc: Exc,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let Some(out) = out else {
        return Ok(PyArray1::<i64>::zeros(py, n, false));
    };
    let out = out
        .cast_into::<PyArray1<i64>>()
        .map_err(|_| raise(py, exc, "out must be a one-dimensional int64 array"))?;
    if out.len() != n {
        return Err(raise(
            py,
            exc,
            format!("out has {} rows, the batch {n}", out.len()),
        ));
    }
    Ok(out)
}

/// Borrow `out` for writing: it must be writable, contiguous and not share memory with an
/// array being read.
pub fn writable_rows<'py>(
    py: Python<'py>,
    out: &Bound<'py, PyArray1<i64>>,
    exc: Exc,
) -> PyResult<PyReadwriteArray1<'py, i64>> {
    let w = out.try_readwrite().map_err(|e| {
        raise(
            py,
            exc,
            format!("out cannot be written here ({e}): pass a writable array of its own"),
        )
    })?;
    if !w.is_contiguous() {
        return Err(raise(py, exc, "out must be contiguous"));
    }
    Ok(w)
}

/// Parse N packets given as one buffer and N + 1 offsets into an (N, 64) uint8 array of rows,
/// a new one or `out` (which must be C-contiguous, writable and exactly (N, 64)).
#[pyfunction]
#[pyo3(signature = (buffer, offsets, link = "ethernet", verify_checksums = false, out = None))]
#[allow(clippy::needless_pass_by_value)] // PyO3 hands extracted arguments over by value
pub fn _parse_batch<'py>(
    py: Python<'py>,
    buffer: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, i64>,
    link: &str,
    verify_checksums: bool,
    out: Option<Bound<'py, PyArray2<u8>>>,
) -> PyResult<Bound<'py, PyArray2<u8>>> {
    let link = convert::link(py, link)?;
    let pinned = Pinned::get(buffer, "buffer")?;
    let offs = offsets
        .as_slice()
        .map_err(|_| raise(py, Exc::Packet, "offsets must be a contiguous int64 array"))?;
    if offs.is_empty() {
        return Err(raise(
            py,
            Exc::Packet,
            "offsets must hold N + 1 entries for N packets",
        ));
    }
    let n = offs.len() - 1;
    let out = match out {
        Some(o) => {
            if o.shape() != [n, ROW_LEN] {
                return Err(raise(
                    py,
                    Exc::Packet,
                    format!("out must hold {n} rows for {n} packets"),
                ));
            }
            o
        }
        None => PyArray2::<u8>::zeros(py, [n, ROW_LEN], false),
    };
    let mut rw = out
        .try_readwrite()
        .map_err(|_| raise(py, Exc::Packet, "out must be writable and not in use"))?;
    let rows = rw
        .as_slice_mut()
        .map_err(|_| raise(py, Exc::Packet, "out must be C-contiguous"))?;
    if pinned.overlaps(rows) {
        return Err(raise(
            py,
            Exc::Packet,
            "out must not share memory with buffer",
        ));
    }
    guard(py, || {
        let r = pinned.detach(py, |data| {
            stack::parse_batch(data, offs, link, verify_checksums, rows)
                .map_err(|e| (e, data.len()))
        });
        r.map_err(|(e, len)| error::offsets(py, e, len))
    })?;
    drop(rw);
    Ok(out)
}

type CaptureTuple<'py> = (
    Bound<'py, PyBytes>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<u32>>,
    Bound<'py, PyArray1<u32>>,
    Vec<u32>,
);

/// Scan a pcap / pcapng file image: (packed data, offsets, timestamps in ns, wire lengths,
/// interface index per packet, link type per interface).
#[pyfunction]
pub fn _read_capture<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
) -> PyResult<CaptureTuple<'py>> {
    let pinned = Pinned::get(data, "capture data")?;
    let cap = guard(py, || {
        pinned
            .detach(py, pcap::scan)
            .map_err(|e| error::capture(py, &e))
    })?;
    Ok((
        PyBytes::new(py, &cap.data),
        PyArray1::from_vec(py, cap.offsets),
        PyArray1::from_vec(py, cap.timestamps_ns),
        PyArray1::from_vec(py, cap.wire_lengths),
        PyArray1::from_vec(py, cap.interfaces),
        cap.linktypes,
    ))
}
