//! A block device on a remote NBD export: the host's own NBD client, so
//! that copy, hydration and attachments can use LUNs that another system
//! serves. Requests from many threads share the connections (several when
//! the server allows multi-connection), a broken connection is replaced
//! with backoff and its requests repeated (every NBD request is
//! idempotent), and a server's transient EIO is retried a few times.
//!
//! Durability is never overstated: if a connection broke while writes were
//! acknowledged but not yet flushed, the server may have lost them (it may
//! have restarted), so the next flush fails instead of vouching for them.

mod conn;
mod handshake;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::block::BlockDevice;
use crate::nbd::proto::*;
use conn::{Broken, Connection, Spares};

/// Why a remote export cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The connection failed.
    #[error("NBD connection: {0}")]
    Io(#[from] io::Error),
    /// The server does not speak the protocol as expected.
    #[error("NBD protocol: {0}")]
    Protocol(String),
    /// The server refused the export.
    #[error("the NBD server refused the export (reply {code:#x}): {message}")]
    Refused { code: u32, message: String },
    /// The export name is longer than the protocol allows.
    #[error("the export name is longer than 4096 bytes")]
    BadExportName,
    /// The export changed under a reconnect.
    #[error("the export changed size from {was} to {now} bytes across a reconnect")]
    Changed { was: u64, now: u64 },
}

/// How a remote device uses its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteOptions {
    /// Connections at most (used only when the server allows multi-conn).
    pub connections: usize,
    /// Longest a request may wait for its reply before its connection is
    /// given up.
    pub request_timeout: Duration,
    /// Longest a request keeps trying (reconnects, transient errors)
    /// before it fails.
    pub retry_for: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            connections: 4,
            request_timeout: Duration::from_secs(30),
            retry_for: Duration::from_secs(60),
        }
    }
}

/// Size and abilities of a remote export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteInfo {
    /// Bytes.
    pub size: u64,
    /// Writes are refused.
    pub read_only: bool,
    /// Requests spread over several connections.
    pub multi_conn: bool,
}

/// Largest request sent: servers accept at least this much (qemu-nbd and
/// nbdkit take 32 MiB and more).
const MAX_REQUEST: usize = 4 << 20;
/// Largest WRITE_ZEROES length in one request.
const MAX_ZERO_REQUEST: u64 = 1 << 30;
/// Times a server's EIO is retried before it is the answer.
const EIO_RETRIES: u32 = 3;
const EIO_ERRNO: u32 = 5;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A remote NBD export as a [`BlockDevice`].
pub struct RemoteDevice {
    addr: SocketAddr,
    export: String,
    opts: RemoteOptions,
    size: u64,
    flags: u16,
    slots: Vec<Mutex<Option<Arc<Connection>>>>,
    next_slot: AtomicUsize,
    /// Connections that broke so far (counted by the connections).
    breaks: Arc<AtomicU64>,
    spares: Arc<Spares>,
    /// `breaks` when the first write after the last flush was acknowledged.
    unflushed_since: Mutex<Option<u64>>,
}

impl RemoteDevice {
    /// Opens `export` on the server at `addr`.
    pub fn connect(
        addr: SocketAddr,
        export: &str,
        opts: RemoteOptions,
    ) -> Result<RemoteDevice, RemoteError> {
        let breaks = Arc::new(AtomicU64::new(0));
        let spares = Arc::new(Spares::default());
        let first = Connection::open(addr, export, Arc::clone(&breaks), Arc::clone(&spares))?;
        let info = first.info;
        let slots = if info.flags & TFLAG_CAN_MULTI_CONN != 0 {
            opts.connections.max(1)
        } else {
            1
        };
        let slots: Vec<_> = (0..slots).map(|_| Mutex::new(None)).collect();
        *lock(&slots[0]) = Some(first);
        Ok(RemoteDevice {
            addr,
            export: export.to_owned(),
            opts,
            size: info.size,
            flags: info.flags,
            slots,
            next_slot: AtomicUsize::new(0),
            breaks,
            spares,
            unflushed_since: Mutex::new(None),
        })
    }

    /// Size and abilities of the export.
    pub fn info(&self) -> RemoteInfo {
        RemoteInfo {
            size: self.size,
            read_only: self.flags & TFLAG_READ_ONLY != 0,
            multi_conn: self.slots.len() > 1,
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| lock(s).as_ref().is_some_and(|c| !c.is_broken()))
            .count()
    }

    /// The connection of slot `i`, reconnecting (with backoff, until
    /// `deadline`) when it broke.
    fn connection(&self, i: usize, deadline: Instant) -> io::Result<Arc<Connection>> {
        let mut slot = lock(&self.slots[i]);
        if let Some(c) = slot.as_ref().filter(|c| !c.is_broken()) {
            return Ok(Arc::clone(c));
        }
        slot.take();
        let mut pause = Duration::from_millis(50);
        loop {
            match Connection::open(
                self.addr,
                &self.export,
                Arc::clone(&self.breaks),
                Arc::clone(&self.spares),
            ) {
                Ok(c) if c.info.size != self.size => {
                    c.close();
                    let e = RemoteError::Changed {
                        was: self.size,
                        now: c.info.size,
                    };
                    return Err(io::Error::other(e.to_string()));
                }
                Ok(c) => {
                    tracing::info!(addr = %self.addr, "NBD connection to the remote export restored");
                    *slot = Some(Arc::clone(&c));
                    return Ok(c);
                }
                Err(e) => {
                    let now = Instant::now();
                    if now + pause > deadline {
                        return Err(io::Error::other(format!(
                            "the remote export at {} is unreachable: {e}",
                            self.addr
                        )));
                    }
                    tracing::debug!(addr = %self.addr, error = %e, "NBD reconnect failed; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Sends one request, repeating it on a new connection when one breaks
    /// and after a transient EIO, until `retry_for` has passed.
    fn request(&self, kind: u16, offset: u64, length: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
        let req = Request {
            flags: 0,
            kind,
            handle: 0,
            offset,
            length,
        };
        let read_len = if kind == CMD_READ { length as usize } else { 0 };
        let deadline = Instant::now() + self.opts.retry_for;
        let mut eio = 0;
        loop {
            let i = self.next_slot.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            let conn = self.connection(i, deadline)?;
            match conn.call(req, payload, read_len, self.opts.request_timeout) {
                Ok(reply) if reply.error == 0 => return Ok(reply.data),
                Ok(reply) if reply.error == EIO_ERRNO && eio < EIO_RETRIES => {
                    eio += 1;
                    tracing::debug!(addr = %self.addr, "remote NBD EIO; retrying");
                    std::thread::sleep(Duration::from_millis(50 << eio));
                }
                Ok(reply) => {
                    return Err(io::Error::from_raw_os_error(
                        i32::try_from(reply.error).unwrap_or(libc::EIO),
                    ));
                }
                Err(Broken(why)) => {
                    tracing::warn!(addr = %self.addr, %why, "NBD connection to the remote export broke");
                    if Instant::now() >= deadline {
                        return Err(io::Error::other(format!("remote NBD export: {why}")));
                    }
                }
            }
        }
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.flags & TFLAG_READ_ONLY != 0 {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        if in_range(offset, len, self.size) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{len} bytes at {offset} lie outside the {}-byte export",
                    self.size
                ),
            ))
        }
    }

    /// Notes an acknowledged write for the next flush's check.
    fn wrote(&self) {
        let mut since = lock(&self.unflushed_since);
        if since.is_none() {
            *since = Some(self.breaks.load(Ordering::SeqCst));
        }
    }

    fn zero(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(MAX_ZERO_REQUEST);
            if self.flags & TFLAG_SEND_WRITE_ZEROES != 0 {
                // n <= 1 GiB fits the 32-bit length.
                self.request(CMD_WRITE_ZEROES, offset + done, n as u32, &[])?;
            } else {
                let zeroes = vec![0u8; MAX_REQUEST];
                let mut at = 0;
                while at < n {
                    let m = (n - at).min(MAX_REQUEST as u64) as usize;
                    self.request(CMD_WRITE, offset + done + at, m as u32, &zeroes[..m])?;
                    at += m as u64;
                }
            }
            done += n;
        }
        self.wrote();
        Ok(())
    }
}

impl BlockDevice for RemoteDevice {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        for (i, chunk) in buf.chunks_mut(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            let data = self.request(CMD_READ, at, chunk.len() as u32, &[])?;
            chunk.copy_from_slice(&data);
            self.spares.give(data);
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, buf.len() as u64)?;
        for (i, chunk) in buf.chunks(MAX_REQUEST).enumerate() {
            let at = offset + (i * MAX_REQUEST) as u64;
            self.request(CMD_WRITE, at, chunk.len() as u32, chunk)?;
        }
        self.wrote();
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let since = *lock(&self.unflushed_since);
        // Nothing written since the last flush: nothing to make durable,
        // and no reason to wait for a server that may be down (a detach or
        // a stop would hang on it).
        if since.is_none() {
            return Ok(());
        }
        if self.flags & TFLAG_SEND_FLUSH != 0 {
            self.request(CMD_FLUSH, 0, 0, &[])?;
        }
        let mut unflushed = lock(&self.unflushed_since);
        if unflushed.is_some() && *unflushed == since {
            *unflushed = None;
        }
        if let Some(at) = since
            && self.breaks.load(Ordering::SeqCst) != at
        {
            return Err(io::Error::other(
                "the connection to the remote export broke while writes were not yet flushed; \
                 the server may have lost them",
            ));
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.zero(offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        // NBD's TRIM may leave anything behind; the device promises zeroes.
        self.zero(offset, len)
    }
}

impl Drop for RemoteDevice {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(c) = lock(slot).take() {
                c.close();
            }
        }
    }
}
