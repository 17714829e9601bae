//! The transmission phase of one connection. Requests of a connection run
//! concurrently on a small, lazily grown set of threads that take turns
//! reading the socket: the thread holding the read side parses one request
//! (and its payload), hands the read side on, then performs the I/O and
//! sends its reply under the write lock. No queue sits between parsing and
//! execution, so a lone request pays no thread hand-off.
//!
//! Payload buffers come from the server's budget only when a request needs
//! one, and a write's buffer fills as its payload arrives;
//! every wait on the client is recorded in the connection's activity for
//! the reaper's deadlines.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use super::budget::{Buffer, Holding};
use super::export::{ExportSlot, InFlight};
use super::proto::*;
use super::server::Ticket;
use super::stats::Op;
use super::transport::{ReadHalf, WriteHalf};

/// Threads per connection at most; enough to overlap a client's queue of
/// requests with fsyncs and cold reads on a small machine.
const MAX_WORKERS: usize = 8;
/// How far ahead of a write payload's arrival its buffer is made ready.
const PAYLOAD_CHUNK: usize = 1 << 20;
/// Largest single write used to zero a range when holes are not allowed.
const ZERO_CHUNK: usize = 1 << 20;
static ZEROES: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The read side of a connection, passed from thread to thread.
struct ReadSide {
    stream: ReadHalf,
    /// Set once no more requests are to be read (DISC, EOF, fatal error).
    done: bool,
}

/// One connection in the transmission phase.
pub(crate) struct Conn {
    id: u64,
    slot: Arc<ExportSlot>,
    reader: Mutex<ReadSide>,
    writer: Mutex<WriteHalf>,
    /// Threads waiting for the read side.
    idle: AtomicUsize,
    /// Threads serving this connection.
    workers: AtomicUsize,
    /// What this connection holds of the buffer budget.
    holding: Arc<Holding>,
    ticket: Ticket,
}

/// What the thread holding the read side found next.
enum Next {
    /// A request, with its payload when it is a write.
    Request(Request, Option<Buffer>),
    Disconnect,
}

/// Why reading requests stopped.
enum ReadError {
    /// The client went away or the socket was shut.
    Closed(io::Error),
    /// The client broke the protocol; the stream cannot be trusted.
    Protocol(String),
}

impl Conn {
    /// Wraps a negotiated connection. `stream` is the read side used
    /// during the handshake (it may already hold requests).
    pub(crate) fn new(
        slot: Arc<ExportSlot>,
        stream: ReadHalf,
        writer: WriteHalf,
        ticket: Ticket,
    ) -> Self {
        super::stats::STATS.connection_opened();
        Self {
            id: ticket.id(),
            slot,
            reader: Mutex::new(ReadSide {
                stream,
                done: false,
            }),
            writer: Mutex::new(writer),
            idle: AtomicUsize::new(0),
            workers: AtomicUsize::new(1),
            holding: Arc::default(),
            ticket,
        }
    }

    /// Serves requests until the client disconnects or the connection is
    /// shut; the calling thread is the first worker.
    pub(crate) fn serve(self: Arc<Self>) {
        worker(self);
    }

    /// Hard disconnect: wakes every thread blocked on the socket.
    fn hang_up(&self) {
        self.ticket.shutdown(Shutdown::Both);
    }

    fn spawn_worker_if_starved(self: &Arc<Self>) {
        if self.idle.load(Ordering::Acquire) != 0 {
            return;
        }
        let n = self.workers.load(Ordering::Acquire);
        if n >= MAX_WORKERS
            || self
                .workers
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        let conn = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name(format!("nbd-conn-{}", self.id))
            .spawn(move || worker(conn));
        if let Err(e) = spawned {
            self.workers.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(conn = self.id, error = %e, "no extra NBD worker thread");
        }
    }

    /// Reads the next request header, and for a write its payload into a
    /// buffer from the budget (after the reply header's room).
    fn read_request(&self, rd: &mut ReadSide) -> Result<Next, ReadError> {
        let activity = self.ticket.activity();
        activity.awaiting_header();
        let mut header = [0u8; REQUEST_LEN];
        rd.stream
            .read_exact(&mut header)
            .map_err(ReadError::Closed)?;
        let req = Request::parse(&header).map_err(|e| ReadError::Protocol(e.to_string()))?;
        let payload = match req.kind {
            CMD_DISC => return Ok(Next::Disconnect),
            CMD_WRITE => {
                if req.length > MAX_PAYLOAD {
                    // The payload cannot be skipped without trusting the
                    // length: answer, then hang up.
                    let _ = self.send(&reply_header(EINVAL, req.handle));
                    return Err(ReadError::Protocol(format!(
                        "write of {} bytes exceeds the {MAX_PAYLOAD}-byte limit",
                        req.length
                    )));
                }
                let mut buffer = self
                    .ticket
                    .budget()
                    .take(req.length as usize, &self.holding);
                activity.awaiting_payload();
                read_payload(&mut rd.stream, buffer.vec(), req.length as usize)
                    .map_err(ReadError::Closed)?;
                Some(buffer)
            }
            _ => None,
        };
        activity.request_read();
        Ok(Next::Request(req, payload))
    }

    /// Sends bytes under the write lock, watched by the reply deadline.
    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let mut w = lock(&self.writer);
        let activity = self.ticket.activity();
        activity.sending();
        let sent = w.write_all(bytes);
        activity.sent();
        sent
    }

    /// Performs one request and replies. An error means the socket failed.
    fn execute(&self, req: Request, payload: Option<Buffer>) -> io::Result<()> {
        let op = match req.kind {
            CMD_READ => Op::Read,
            CMD_WRITE => Op::Write,
            CMD_FLUSH => Op::Flush,
            CMD_TRIM | CMD_WRITE_ZEROES => Op::Zero,
            _ => Op::Other,
        };
        let done = match (req.kind, payload) {
            (CMD_READ, _) => self.read(&req),
            (CMD_WRITE, Some(mut data)) => {
                let end = REPLY_LEN + req.length as usize;
                let error = self.write(&req, &data.vec()[REPLY_LEN..end]);
                super::stats::STATS.request(op, req.length, error);
                self.send(&reply_header(error, req.handle))
            }
            (CMD_FLUSH, _) => self.answer(op, &req, self.flush()),
            (CMD_TRIM | CMD_WRITE_ZEROES, _) => self.answer(op, &req, self.zero(&req)),
            (other, _) => {
                tracing::warn!(
                    export = %self.slot.label(),
                    conn = self.id,
                    command = other,
                    "unknown NBD command"
                );
                self.answer(op, &req, EINVAL)
            }
        };
        self.ticket.activity().request_done();
        done
    }

    /// Counts a request that carries no data back and sends its reply.
    fn answer(&self, op: Op, req: &Request, error: u32) -> io::Result<()> {
        super::stats::STATS.request(op, req.length, error);
        self.send(&reply_header(error, req.handle))
    }

    /// Starts a request after checking its range against the device it
    /// will use.
    fn begin(&self, req: &Request, what: &str) -> Result<InFlight<'_>, u32> {
        let io = self.slot.begin().ok_or(ESHUTDOWN)?;
        let size = io.device.size();
        if !in_range(req.offset, u64::from(req.length), size) {
            tracing::warn!(
                export = %self.slot.label(),
                conn = self.id,
                offset = req.offset,
                length = req.length,
                size,
                "NBD {what} outside the export"
            );
            return Err(EINVAL);
        }
        Ok(io)
    }

    fn io_failed(&self, what: &str, e: &io::Error) -> u32 {
        tracing::warn!(export = %self.slot.label(), conn = self.id, error = %e, "NBD {what} failed");
        errno_of(e)
    }

    /// Durability for FUA: the whole device is flushed after the write.
    fn fua(&self, req: &Request, io: &InFlight<'_>) -> u32 {
        if req.flags & CMD_FLAG_FUA == 0 {
            return 0;
        }
        match io.device.flush() {
            Ok(()) => 0,
            Err(e) => self.io_failed("FUA flush", &e),
        }
    }

    /// READ: the data goes out behind the reply header in one send.
    fn read(&self, req: &Request) -> io::Result<()> {
        if req.length > MAX_PAYLOAD {
            tracing::warn!(conn = self.id, length = req.length, "NBD read too large");
            return self.answer(Op::Read, req, EINVAL);
        }
        let io = match self.begin(req, "read") {
            Ok(io) => io,
            Err(errno) => return self.answer(Op::Read, req, errno),
        };
        let len = req.length as usize;
        let mut buffer = self.ticket.budget().take(len, &self.holding);
        let buf = buffer.vec();
        if buf.len() < REPLY_LEN + len {
            buf.resize(REPLY_LEN + len, 0);
        }
        let error = match io
            .device
            .read_at(&mut buf[REPLY_LEN..REPLY_LEN + len], req.offset)
        {
            Ok(()) => 0,
            Err(e) => self.io_failed("read", &e),
        };
        drop(io);
        super::stats::STATS.request(Op::Read, req.length, error);
        encode_reply(&mut buf[..REPLY_LEN], error, req.handle);
        let data_len = if error == 0 { len } else { 0 };
        self.send(&buf[..REPLY_LEN + data_len])
    }

    fn write(&self, req: &Request, data: &[u8]) -> u32 {
        if self.slot.read_only() {
            return EPERM;
        }
        let io = match self.begin(req, "write") {
            Ok(io) => io,
            Err(errno) => return errno,
        };
        match io.device.write_at(data, req.offset) {
            Ok(()) => self.fua(req, &io),
            Err(e) => self.io_failed("write", &e),
        }
    }

    fn flush(&self) -> u32 {
        let Some(io) = self.slot.begin() else {
            return ESHUTDOWN;
        };
        match io.device.flush() {
            Ok(()) => 0,
            Err(e) => self.io_failed("flush", &e),
        }
    }

    /// TRIM and WRITE_ZEROES: both leave the range reading as zeroes. With
    /// NO_HOLE, WRITE_ZEROES writes real zeroes so the range stays allocated.
    fn zero(&self, req: &Request) -> u32 {
        if self.slot.read_only() {
            return EPERM;
        }
        let (what, no_hole) = if req.kind == CMD_TRIM {
            ("trim", false)
        } else {
            ("write-zeroes", req.flags & CMD_FLAG_NO_HOLE != 0)
        };
        let io = match self.begin(req, what) {
            Ok(io) => io,
            Err(errno) => return errno,
        };
        let len = u64::from(req.length);
        let done = if req.kind == CMD_TRIM {
            io.device.discard(req.offset, len)
        } else if no_hole {
            write_zero_buffers(&io, req.offset, len)
        } else {
            io.device.write_zeroes(req.offset, len)
        };
        match done {
            Ok(()) => self.fua(req, &io),
            Err(e) => self.io_failed(what, &e),
        }
    }
}

fn write_zero_buffers(io: &InFlight<'_>, offset: u64, len: u64) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZERO_CHUNK as u64) as usize;
        io.device.write_at(&ZEROES[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Every worker is gone: nothing else writes any more.
        self.writer
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .finish();
        super::stats::STATS.connection_closed();
        self.slot.detach(self.id);
        tracing::debug!(
            export = %self.slot.label(),
            conn = self.id,
            "NBD connection closed"
        );
    }
}

/// A reply header with no data behind it.
fn reply_header(error: u32, handle: u64) -> [u8; REPLY_LEN] {
    let mut header = [0u8; REPLY_LEN];
    encode_reply(&mut header, error, handle);
    header
}

/// Reads `len` payload bytes into `buf` after the reply header's room. A
/// buffer is made ready (zeroed, when new) at most one chunk ahead of the
/// bytes that arrived, so a payload that never comes fills next to nothing.
fn read_payload(stream: &mut ReadHalf, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    let end = REPLY_LEN + len;
    let mut at = REPLY_LEN;
    while at < end {
        let to = end.min(at + PAYLOAD_CHUNK);
        if buf.len() < to {
            buf.resize(to, 0);
        }
        stream.read_payload_exact(&mut buf[at..to])?;
        at = to;
    }
    Ok(())
}

/// One serving thread: take the read side, read a request, release the
/// read side, execute, reply; until there is nothing more to read.
fn worker(conn: Arc<Conn>) {
    loop {
        let (req, payload) = {
            conn.idle.fetch_add(1, Ordering::AcqRel);
            let mut rd = lock(&conn.reader);
            conn.idle.fetch_sub(1, Ordering::AcqRel);
            if rd.done {
                break;
            }
            match conn.read_request(&mut rd) {
                Ok(Next::Request(req, payload)) => (req, payload),
                Ok(Next::Disconnect) => {
                    rd.done = true;
                    tracing::debug!(conn = conn.id, "NBD client disconnected");
                    break;
                }
                Err(ReadError::Closed(e)) => {
                    rd.done = true;
                    tracing::debug!(conn = conn.id, error = %e, "NBD connection ended");
                    break;
                }
                Err(ReadError::Protocol(why)) => {
                    rd.done = true;
                    tracing::warn!(
                        export = %conn.slot.label(),
                        conn = conn.id,
                        "NBD protocol error, closing: {why}"
                    );
                    conn.hang_up();
                    break;
                }
            }
        };
        conn.spawn_worker_if_starved();
        if let Err(e) = conn.execute(req, payload) {
            tracing::debug!(conn = conn.id, error = %e, "NBD reply failed, closing");
            conn.hang_up();
            break;
        }
    }
    conn.workers.fetch_sub(1, Ordering::AcqRel);
}
