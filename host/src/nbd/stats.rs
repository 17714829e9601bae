//! Process-wide NBD counters for `/metrics`: connections and requests by
//! command, bytes moved and failed requests. Relaxed atomics: they are
//! statistics, read without stopping the data path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The counters. One instance, [`STATS`], for the whole process.
#[derive(Debug, Default)]
pub struct NbdStats {
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    flushes: AtomicU64,
    zeroes: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    errors: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NbdSnapshot {
    /// Connections in the transmission phase now.
    pub connections_open: u64,
    /// Connections that reached the transmission phase since start.
    pub connections_total: u64,
    /// READ requests.
    pub reads: u64,
    /// WRITE requests.
    pub writes: u64,
    /// FLUSH requests.
    pub flushes: u64,
    /// TRIM and WRITE_ZEROES requests.
    pub zeroes: u64,
    /// Bytes returned by successful reads.
    pub bytes_read: u64,
    /// Bytes stored by successful writes.
    pub bytes_written: u64,
    /// Requests answered with an error.
    pub errors: u64,
}

/// The process's NBD counters.
pub static STATS: NbdStats = NbdStats {
    connections_open: AtomicU64::new(0),
    connections_total: AtomicU64::new(0),
    reads: AtomicU64::new(0),
    writes: AtomicU64::new(0),
    flushes: AtomicU64::new(0),
    zeroes: AtomicU64::new(0),
    bytes_read: AtomicU64::new(0),
    bytes_written: AtomicU64::new(0),
    errors: AtomicU64::new(0),
};

/// What a request was, for counting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Read,
    Write,
    Flush,
    Zero,
    Other,
}

impl NbdStats {
    pub(crate) fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Counts one answered request of `len` bytes; `error` is its NBD error.
    pub(crate) fn request(&self, op: Op, len: u32, error: u32) {
        let counter = match op {
            Op::Read => &self.reads,
            Op::Write => &self.writes,
            Op::Flush => &self.flushes,
            Op::Zero => &self.zeroes,
            Op::Other => &self.errors,
        };
        if !matches!(op, Op::Other) {
            counter.fetch_add(1, Relaxed);
        }
        if error != 0 || matches!(op, Op::Other) {
            self.errors.fetch_add(1, Relaxed);
            return;
        }
        match op {
            Op::Read => self.bytes_read.fetch_add(u64::from(len), Relaxed),
            Op::Write => self.bytes_written.fetch_add(u64::from(len), Relaxed),
            _ => 0,
        };
    }

    /// The counters now.
    pub fn snapshot(&self) -> NbdSnapshot {
        NbdSnapshot {
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            flushes: self.flushes.load(Relaxed),
            zeroes: self.zeroes.load(Relaxed),
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}
