//! [`Locked`]: a core value behind a reader-writer lock, shared by Python threads.
//!
//! Two rules keep the lock and the GIL from deadlocking:
//!
//! - No Python object is created and no Python code runs while a guard is held. Creating an
//!   object can start the garbage collector, whose finalizers may write to this same value (a
//!   self-deadlock) or hand the GIL to another thread. Arguments are converted before the lock
//!   is taken; results are copied out into Rust values and converted after it is released. The
//!   closures run under the lock must be `Send`, which keeps `Python` tokens and Python objects
//!   out of them.
//! - Nothing waits for the lock with the GIL held: writers take the lock with the GIL released
//!   unless it is free, and readers try the lock first and release the GIL only when it would
//!   block.
//!
//! A panic under a guard poisons the lock; every later use raises `InternalError`.

use crate::error::{guard, raise, Exc};
use pyo3::prelude::*;
use std::sync::{RwLock, TryLockError};

/// Batches with fewer rows than this run without releasing the GIL ([`Locked::write_rows`]).
pub const SMALL_BATCH: usize = 512;

pub struct Locked<T> {
    inner: RwLock<T>,
    /// What the value is, for the message once the lock is poisoned ("route table").
    what: &'static str,
}

impl<T: Send + Sync> Locked<T> {
    pub fn new(value: T, what: &'static str) -> Self {
        Locked {
            inner: RwLock::new(value),
            what,
        }
    }

    fn poisoned(&self, py: Python<'_>) -> PyErr {
        raise(
            py,
            Exc::Internal,
            format!("{} unusable after an earlier internal error", self.what),
        )
    }

    /// Run `f` under the read lock: at once when the lock is free, else waiting for it without
    /// the GIL. For short reads (one lookup), where releasing the GIL would cost more than `f`.
    pub fn read<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&T) -> R + Send) -> PyResult<R> {
        let inner = &self.inner;
        let r = guard(py, || {
            Ok(match inner.try_read() {
                Ok(t) => Some(f(&t)),
                Err(TryLockError::WouldBlock) => py.detach(|| inner.read().ok().map(|t| f(&t))),
                Err(TryLockError::Poisoned(_)) => None,
            })
        })?;
        r.ok_or_else(|| self.poisoned(py))
    }

    /// Run `f` under the read lock with the GIL released throughout (long reads).
    pub fn read_detached<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&T) -> R + Send,
    ) -> PyResult<R> {
        let inner = &self.inner;
        let r = guard(py, || Ok(py.detach(|| inner.read().ok().map(|t| f(&t)))))?;
        r.ok_or_else(|| self.poisoned(py))
    }

    /// Run `f` under the read lock, waiting for it: only for callers that have already
    /// released the GIL (inside `py.detach`). `None` when the lock is poisoned.
    pub fn read_blocking<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.inner.read().ok().map(|t| f(&t))
    }

    /// The error for a `None` from [`read_blocking`](Self::read_blocking).
    pub fn unusable(&self, py: Python<'_>) -> PyErr {
        self.poisoned(py)
    }

    /// Run `f` under the write lock with the GIL released, waiting for the lock included.
    pub fn write<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> R + Send,
    ) -> PyResult<R> {
        let inner = &self.inner;
        let r = guard(py, || {
            Ok(py.detach(|| inner.write().ok().map(|mut t| f(&mut t))))
        })?;
        r.ok_or_else(|| self.poisoned(py))
    }

    /// Run a batch of `rows` rows under the write lock: with the GIL released for a large batch
    /// ([`write`](Self::write)), or as [`write_one`](Self::write_one) for a small one, where
    /// releasing and re-taking the GIL would cost more than the rows (a router's batch of a few
    /// dozen packets).
    pub fn write_rows<R: Send>(
        &self,
        py: Python<'_>,
        rows: usize,
        f: impl FnOnce(&mut T) -> R + Send,
    ) -> PyResult<R> {
        if rows < SMALL_BATCH {
            self.write_one(py, f)
        } else {
            self.write(py, f)
        }
    }

    /// Run `f` under the write lock if it is free now, with the GIL held; `Ok(None)` when it is
    /// taken (the caller then goes through [`write_one`](Self::write_one)). `f` need not be
    /// `Send`: it may take a reference count on a Python object it returns (no object is
    /// created and no Python code runs, so the rules above hold).
    pub fn try_write_here<R>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> R,
    ) -> PyResult<Option<R>> {
        let inner = &self.inner;
        let r = guard(py, || {
            Ok(match inner.try_write() {
                Ok(mut t) => Some(Some(f(&mut t))),
                Err(TryLockError::WouldBlock) => Some(None),
                Err(TryLockError::Poisoned(_)) => None,
            })
        })?;
        r.ok_or_else(|| self.poisoned(py))
    }

    /// Run a short update (one route, one rule) under the write lock: taken at once with the
    /// GIL held when it is free (releasing and re-taking the GIL would cost a good part of the
    /// update), else waited for with the GIL released.
    pub fn write_one<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut T) -> R + Send,
    ) -> PyResult<R> {
        let inner = &self.inner;
        let r = guard(py, || {
            Ok(match inner.try_write() {
                Ok(mut t) => Some(f(&mut t)),
                Err(TryLockError::WouldBlock) => {
                    py.detach(|| inner.write().ok().map(|mut t| f(&mut t)))
                }
                Err(TryLockError::Poisoned(_)) => None,
            })
        })?;
        r.ok_or_else(|| self.poisoned(py))
    }
}
