//! The listening side: accepts connections, runs each handshake on its own
//! thread, keeps every socket in a registry so shutdown can close them all,
//! and runs the reaper that closes connections overrunning a limit.
//!
//! Admission never locks a client out for long: a new connection closes
//! the oldest handshake of its address when that address has too many, and
//! the oldest handshake of all when the server is full; only attached
//! connections (which hold an export's secret name) are never displaced.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::budget::BufferBudget;
use super::conn::Conn;
use super::export::ExportTable;
use super::handshake::{HandshakeError, Negotiated, Outcome, Session, haggle, negotiate};
use super::limits::NbdLimits;
use super::tls::NbdTls;
use super::transport::{self, ReadHalf, WriteHalf};
use super::watch::{Activity, Clock};

/// How long shutdown waits for connection threads to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer of a connection; larger payloads bypass it.
const READ_BUFFER: usize = 256 << 10;
/// Connections the kernel may queue before the server accepts them.
const ACCEPT_QUEUE: libc::c_int = 1024;
/// How often the reaper looks at every connection.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// Shortest time between two warnings about refused or closed connections.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// TCP keep-alive: probes start after this much silence...
const KEEPALIVE_IDLE_SECS: libc::c_int = 60;
/// ...are sent this often...
const KEEPALIVE_INTERVAL_SECS: libc::c_int = 10;
/// ...and this many unanswered ones close the connection.
const KEEPALIVE_PROBES: libc::c_int = 6;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A registered connection.
struct Entry {
    stream: TcpStream,
    peer: IpAddr,
    activity: Arc<Activity>,
}

/// State shared by the accept thread, the reaper, the connections and the
/// handle.
struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, Entry>>,
    emptied: Condvar,
    limits: NbdLimits,
    tls: NbdTls,
    clock: Clock,
    budget: Arc<BufferBudget>,
    /// Connections closed to make room or for overrunning, since the last
    /// warning; and when that warning was.
    closed_unwarned: Mutex<(u64, Option<Instant>)>,
}

impl Shared {
    /// Counts a connection closed by a limit; warns at most every
    /// `WARN_EVERY` so a flood cannot flood the log.
    fn note_closed(&self, why: &str) {
        let mut w = lock(&self.closed_unwarned);
        w.0 += 1;
        let due = w.1.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(
                connections = w.0,
                last_reason = why,
                "NBD connections closed by the server's limits"
            );
            *w = (0, Some(Instant::now()));
        }
    }

    /// Closes a registered connection now; its thread finishes on its own.
    fn close(conns: &mut HashMap<u64, Entry>, id: u64) {
        if let Some(e) = conns.remove(&id) {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
    }
}

/// A connection's place in the server registry. Dropping it closes the
/// socket and frees the place.
pub(crate) struct Ticket {
    id: u64,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
}

impl Ticket {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn shutdown(&self, how: Shutdown) {
        if let Some(e) = lock(&self.shared.connections).get(&self.id) {
            let _ = e.stream.shutdown(how);
        }
    }

    /// What the reaper watches of this connection.
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The request buffers' budget of the server.
    pub(crate) fn budget(&self) -> &Arc<BufferBudget> {
        &self.shared.budget
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut conns = lock(&self.shared.connections);
        if let Some(e) = conns.remove(&self.id) {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
        if conns.is_empty() {
            self.shared.emptied.notify_all();
        }
    }
}

/// An NBD server serving the exports of one [`ExportTable`].
pub struct NbdServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: Option<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
}

impl NbdServer {
    /// Binds `listen` and starts accepting plaintext connections on a
    /// thread of its own.
    pub fn start(
        listen: SocketAddr,
        exports: Arc<ExportTable>,
        limits: NbdLimits,
    ) -> io::Result<NbdServer> {
        Self::start_with_tls(listen, exports, limits, NbdTls::off())
    }

    /// Like [`NbdServer::start`], offering or requiring TLS as `tls` says.
    pub fn start_with_tls(
        listen: SocketAddr,
        exports: Arc<ExportTable>,
        limits: NbdLimits,
        tls: NbdTls,
    ) -> io::Result<NbdServer> {
        let listener = TcpListener::bind(listen)?;
        // A deeper accept queue than std's default, so that a burst of
        // connections (a flood, or many clients starting at once) waits in
        // the queue instead of having its SYNs dropped and retried a second
        // later. SAFETY: listen(2) on the descriptor `listener` owns; calling
        // it again on a listening socket only changes the queue's length.
        if unsafe { libc::listen(listener.as_raw_fd(), ACCEPT_QUEUE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            emptied: Condvar::new(),
            limits,
            tls,
            clock: Clock::new(),
            budget: BufferBudget::new(limits.buffer_budget),
            closed_unwarned: Mutex::new((0, None)),
        });
        let reaper = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("nbd-reaper".into())
                .spawn(move || reap_loop(&shared))?
        };
        let accepting = listener.try_clone()?;
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("nbd-accept".into())
                .spawn(move || accept_loop(accepting, shared, exports))?
        };
        tracing::info!(%addr, "NBD server listening");
        Ok(NbdServer {
            addr,
            shared,
            listener,
            acceptor: Some(acceptor),
            reaper: Some(reaper),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every connection and waits (bounded) for
    /// their threads to finish. Dropping the server does the same.
    pub fn shutdown(self) {}

    /// Connections currently registered (handshaking or attached).
    #[cfg(test)]
    pub(crate) fn open_connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }

    /// Bytes of request buffers in existence, lent or kept.
    #[cfg(test)]
    pub(crate) fn buffer_bytes(&self) -> usize {
        self.shared.budget.in_use()
    }

    fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) only takes the descriptor, which `self.listener`
        // keeps open; on Linux it wakes the thread blocked in accept().
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        let _ = acceptor.join();
        if let Some(reaper) = self.reaper.take() {
            reaper.thread().unpark();
            let _ = reaper.join();
        }
        let mut conns = lock(&self.shared.connections);
        for e in conns.values() {
            let _ = e.stream.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !conns.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    connections = conns.len(),
                    "NBD server stopped with connections still finishing"
                );
                break;
            }
            conns = self
                .shared
                .emptied
                .wait_timeout(conns, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        tracing::info!(addr = %self.addr, "NBD server stopped");
    }
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, exports: Arc<ExportTable>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, &shared, &exports),
            Err(e) => {
                tracing::warn!(error = %e, "NBD accept failed");
                // Out of descriptors or similar: give the system a moment.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Closes connections past a deadline, a few times a second.
fn reap_loop(shared: &Shared) {
    while !shared.stopping.load(Ordering::SeqCst) {
        thread::park_timeout(REAP_EVERY);
        let now = shared.clock.now();
        let mut conns = lock(&shared.connections);
        let overrun: Vec<_> = conns
            .iter()
            .filter_map(|(&id, e)| e.activity.overrun(now, &shared.limits).map(|o| (id, o)))
            .collect();
        for (id, why) in overrun {
            tracing::debug!(conn = id, "closing NBD connection: {}", why.describe());
            Shared::close(&mut conns, id);
            shared.note_closed(why.describe());
        }
    }
}

/// Makes room for a connection from `peer`: closes the oldest handshake of
/// that address when it has too many, then the oldest of all when the
/// server is full. False when the server is full of attached connections.
fn make_room(shared: &Shared, conns: &mut HashMap<u64, Entry>, peer: IpAddr) -> bool {
    let limits = &shared.limits;
    let oldest_handshake = |conns: &HashMap<u64, Entry>, only: Option<IpAddr>| {
        let handshakes = conns
            .iter()
            .filter(|(_, e)| e.activity.is_handshaking() && only.is_none_or(|ip| e.peer == ip));
        let count = handshakes.clone().count();
        let oldest = handshakes
            .min_by_key(|(id, e)| (e.activity.since(), **id))
            .map(|(id, _)| *id);
        (count, oldest)
    };
    let (of_peer, oldest) = oldest_handshake(conns, Some(peer));
    if of_peer >= limits.max_handshakes_per_client
        && let Some(id) = oldest
    {
        Shared::close(conns, id);
        shared.note_closed("too many handshakes from one address");
    }
    if conns.len() >= limits.max_connections {
        match oldest_handshake(conns, None).1 {
            Some(id) => {
                Shared::close(conns, id);
                shared.note_closed("connection limit reached");
            }
            None => return false,
        }
    }
    true
}

fn admit(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, exports: &Arc<ExportTable>) {
    let Ok(registered) = stream.try_clone() else {
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let activity = Arc::new(Activity::handshaking(shared.clock));
    {
        let mut conns = lock(&shared.connections);
        if !make_room(shared, &mut conns, peer.ip()) {
            shared.note_closed("connection limit reached, every connection attached");
            return;
        }
        conns.insert(
            id,
            Entry {
                stream: registered,
                peer: peer.ip(),
                activity: Arc::clone(&activity),
            },
        );
    }
    let ticket = Ticket {
        id,
        shared: Arc::clone(shared),
        activity,
    };
    let exports = Arc::clone(exports);
    let spawned = thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || run_connection(stream, peer, ticket, &exports));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start an NBD connection thread");
    }
}

/// Turns on TCP keep-alive so that a peer that vanished (host gone, cable
/// cut) does not hold its connection for ever.
fn keep_alive(stream: &TcpStream) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let options = [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_SECS),
        (
            libc::IPPROTO_TCP,
            libc::TCP_KEEPINTVL,
            KEEPALIVE_INTERVAL_SECS,
        ),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES),
    ];
    for (level, name, value) in options {
        // SAFETY: `fd` is an open socket owned by `stream`; the option value
        // is a c_int that outlives the call, passed with its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the handshake, switching to TLS when the client asks for it.
/// `Ok(None)` means the client aborted politely.
fn handshake(
    stream: TcpStream,
    tls: &NbdTls,
    exports: &ExportTable,
    per_export: usize,
    activity: Arc<Activity>,
) -> Result<Option<(Negotiated, ReadHalf, WriteHalf)>, HandshakeError> {
    let mut session = Session::watched(tls.mode(), per_export, activity);
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream.try_clone()?);
    let mut writer = &stream;
    match negotiate(&mut reader, &mut writer, exports, &mut session)? {
        Outcome::Chosen(chosen) => Ok(Some((
            chosen,
            ReadHalf::Plain(reader),
            WriteHalf::Plain(stream),
        ))),
        Outcome::Aborted => Ok(None),
        Outcome::StartTls => {
            if !reader.buffer().is_empty() {
                return Err(HandshakeError::StartTlsPipelined);
            }
            // `haggle` acknowledges STARTTLS only when TLS is configured.
            let config = tls
                .server_config()
                .ok_or_else(|| HandshakeError::Tls(io::Error::other("TLS is not configured")))?;
            let (mut reader, mut writer) =
                transport::accept(stream, config).map_err(HandshakeError::Tls)?;
            match haggle(&mut reader, &mut writer, exports, &mut session)? {
                Outcome::Chosen(chosen) => Ok(Some((chosen, reader, writer))),
                Outcome::Aborted => Ok(None),
                // `haggle` refuses a second STARTTLS; never ends with one.
                Outcome::StartTls => {
                    Err(HandshakeError::Tls(io::Error::other("STARTTLS inside TLS")))
                }
            }
        }
    }
}

fn run_connection(stream: TcpStream, peer: SocketAddr, ticket: Ticket, exports: &ExportTable) {
    let id = ticket.id();
    tracing::debug!(conn = id, %peer, "NBD connection opened");
    let prepared = stream
        .set_nodelay(true)
        .and_then(|()| keep_alive(&stream))
        .and_then(|()| stream.try_clone());
    // The export's own handle on the socket, to close it when withdrawn.
    let registered = match prepared {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(conn = id, error = %e, "NBD connection unusable");
            return;
        }
    };
    let shared = &ticket.shared;
    let per_export = shared.limits.max_connections_per_export;
    let activity = Arc::clone(&ticket.activity);
    let (chosen, reader, writer) =
        match handshake(stream, &shared.tls, exports, per_export, activity) {
            Ok(Some(negotiated)) => negotiated,
            Ok(None) => {
                tracing::debug!(conn = id, "NBD client aborted the handshake");
                return;
            }
            Err(e) if e.is_disconnect() => {
                tracing::debug!(conn = id, error = %e, "NBD client left during the handshake");
                return;
            }
            Err(e @ HandshakeError::Io(_)) => {
                tracing::debug!(conn = id, error = %e, "NBD handshake ended");
                return;
            }
            Err(e) => {
                tracing::warn!(conn = id, %peer, error = %e, "NBD handshake refused");
                return;
            }
        };
    if !chosen.slot.attach(id, registered, chosen.place) {
        tracing::debug!(conn = id, "NBD export went away during the handshake");
        return;
    }
    tracing::debug!(
        conn = id,
        export = chosen.slot.name(),
        flags = chosen.flags,
        tls = matches!(reader, ReadHalf::Tls(_)),
        "NBD transmission started"
    );
    Arc::new(Conn::new(chosen.slot, reader, writer, ticket)).serve();
}
