//! One connection to a remote export. Requests go out under a write lock
//! and may be many at once; one reader thread matches each reply to its
//! waiting caller by handle. Any fault of the connection (socket error, a
//! reply that breaks the protocol, a request unanswered past its deadline)
//! breaks it for every caller at once, so that they retry on a new one.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::RemoteError;
use super::handshake::{ExportInfo, open};
use crate::nbd::proto::{CMD_DISC, REPLY_LEN, Request, SIMPLE_REPLY_MAGIC, be32, be64};

/// Longest a connect and handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The answer to one request: the server's error (0 for success) and, for
/// a successful read, its data.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) error: u32,
    pub(crate) data: Vec<u8>,
}

/// Read buffers that callers gave back, reused for later replies: a fresh
/// multi-megabyte buffer per read costs a page fault per page.
#[derive(Debug, Default)]
pub(crate) struct Spares(Mutex<Vec<Vec<u8>>>);

/// Spare buffers kept at most.
const MAX_SPARES: usize = 32;

impl Spares {
    /// A buffer of `len` bytes, for the reader to overwrite whole: a spare
    /// keeps its old bytes rather than be zeroed again.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut data = lock(&self.0).pop().unwrap_or_default();
        if data.len() >= len {
            data.truncate(len);
        } else {
            data.resize(len, 0);
        }
        data
    }

    /// Gives a buffer back.
    pub(crate) fn give(&self, data: Vec<u8>) {
        let mut spares = lock(&self.0);
        if spares.len() < MAX_SPARES {
            spares.push(data);
        }
    }
}

/// Why a request has no answer: the connection broke.
#[derive(Debug, Clone)]
pub(crate) struct Broken(pub(crate) String);

/// A request waiting for its reply.
struct Call {
    /// Bytes of data a successful reply carries.
    expect: usize,
    outcome: Mutex<Option<Result<Reply, Broken>>>,
    done: Condvar,
}

impl Call {
    fn complete(&self, outcome: Result<Reply, Broken>) {
        *lock(&self.outcome) = Some(outcome);
        self.done.notify_all();
    }
}

#[derive(Default)]
struct Pending {
    calls: HashMap<u64, Arc<Call>>,
    broken: Option<Broken>,
}

/// An open connection with its reader thread.
pub(crate) struct Connection {
    pub(crate) info: ExportInfo,
    socket: TcpStream,
    writer: Mutex<TcpStream>,
    pending: Mutex<Pending>,
    next_handle: AtomicU64,
    /// The device's count of broken connections, raised when this breaks.
    breaks: Arc<AtomicU64>,
    /// The device's spare read buffers.
    spares: Arc<Spares>,
}

impl Connection {
    /// Connects to `addr`, opens `export` and starts the reader thread.
    /// `breaks` counts this connection if it ever breaks.
    pub(crate) fn open(
        addr: SocketAddr,
        export: &str,
        breaks: Arc<AtomicU64>,
        spares: Arc<Spares>,
    ) -> Result<Arc<Self>, RemoteError> {
        let mut socket = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        socket.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        let info = open(&mut socket, export)?;
        // Replies may be long in coming (the caller times them); a write
        // that cannot go out breaks the connection.
        socket.set_read_timeout(None)?;
        let conn = Arc::new(Self {
            info,
            writer: Mutex::new(socket.try_clone()?),
            socket: socket.try_clone()?,
            pending: Mutex::new(Pending::default()),
            next_handle: AtomicU64::new(1),
            breaks,
            spares,
        });
        let reader = BufReader::with_capacity(256 << 10, socket);
        let shared = Arc::clone(&conn);
        thread::Builder::new()
            .name("nbd-client".into())
            .spawn(move || shared.read_replies(reader))?;
        Ok(conn)
    }

    /// Whether the connection broke.
    pub(crate) fn is_broken(&self) -> bool {
        lock(&self.pending).broken.is_some()
    }

    /// Sends one request and waits for its reply, at most `timeout`.
    /// `read_len` is the data a successful reply carries (reads only).
    pub(crate) fn call(
        &self,
        req: Request,
        payload: &[u8],
        read_len: usize,
        timeout: Duration,
    ) -> Result<Reply, Broken> {
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let call = Arc::new(Call {
            expect: read_len,
            outcome: Mutex::new(None),
            done: Condvar::new(),
        });
        {
            let mut pending = lock(&self.pending);
            if let Some(b) = &pending.broken {
                return Err(b.clone());
            }
            pending.calls.insert(handle, Arc::clone(&call));
        }
        let header = Request { handle, ..req }.encode();
        let sent = {
            let mut w = lock(&self.writer);
            w.write_all(&header).and_then(|()| w.write_all(payload))
        };
        if let Err(e) = sent {
            self.break_with(format!("sending a request failed: {e}"));
        }
        let deadline = Instant::now() + timeout;
        let mut outcome = lock(&call.outcome);
        loop {
            if let Some(done) = outcome.take() {
                return done;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(outcome);
                self.break_with(format!("no reply within {} ms", timeout.as_millis()));
                return Err(Broken(format!(
                    "no reply within {} ms",
                    timeout.as_millis()
                )));
            }
            outcome = call
                .done
                .wait_timeout(outcome, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Says goodbye (`NBD_CMD_DISC`) and closes the socket.
    pub(crate) fn close(&self) {
        let disc = Request {
            flags: 0,
            kind: CMD_DISC,
            handle: 0,
            offset: 0,
            length: 0,
        }
        .encode();
        let _ = lock(&self.writer).write_all(&disc);
        lock(&self.pending).broken = Some(Broken("closed".into()));
        self.break_with("closed".into());
    }

    /// Marks the connection broken, fails every waiting call and shuts the
    /// socket, which ends the reader thread.
    fn break_with(&self, why: String) {
        let calls = {
            let mut pending = lock(&self.pending);
            if pending.broken.is_none() {
                pending.broken = Some(Broken(why.clone()));
                self.breaks.fetch_add(1, Ordering::SeqCst);
            }
            std::mem::take(&mut pending.calls)
        };
        let _ = self.socket.shutdown(Shutdown::Both);
        for call in calls.into_values() {
            call.complete(Err(Broken(why.clone())));
        }
    }

    fn read_replies(&self, mut reader: BufReader<TcpStream>) {
        let why = loop {
            let mut header = [0u8; REPLY_LEN];
            if let Err(e) = reader.read_exact(&mut header) {
                break format!("reading a reply failed: {e}");
            }
            let magic = be32(&header, 0);
            if magic != SIMPLE_REPLY_MAGIC {
                break format!("a reply with magic {magic:#x}");
            }
            let error = be32(&header, 4);
            let handle = be64(&header, 8);
            let Some(call) = lock(&self.pending).calls.remove(&handle) else {
                break format!("a reply to unknown request {handle}");
            };
            let mut data = Vec::new();
            if error == 0 && call.expect > 0 {
                data = self.spares.take(call.expect);
                if let Err(e) = reader.read_exact(&mut data) {
                    call.complete(Err(Broken(format!("reading reply data failed: {e}"))));
                    break format!("reading reply data failed: {e}");
                }
            }
            call.complete(Ok(Reply { error, data }));
        };
        self.break_with(why);
    }
}

/// A socket error as the connection's error.
impl From<io::Error> for Broken {
    fn from(e: io::Error) -> Self {
        Broken(e.to_string())
    }
}
