//! The listening side: accepts connections, runs each handshake on its own
//! thread, keeps every socket in a registry so shutdown can close them all.

use std::collections::HashMap;
use std::io::{self, BufReader};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::export::ExportTable;
use super::handshake::{HandshakeError, negotiate};

/// A client must finish each handshake read within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 1024;
/// How long shutdown waits for connection threads to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer of a connection; larger payloads bypass it.
const READ_BUFFER: usize = 256 << 10;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by the accept thread, the connections and the handle.
struct Shared {
    stopping: AtomicBool,
    next_id: AtomicU64,
    connections: Mutex<HashMap<u64, TcpStream>>,
    emptied: Condvar,
}

/// A connection's place in the server registry. Dropping it closes the
/// socket and frees the place.
pub(crate) struct Ticket {
    id: u64,
    shared: Arc<Shared>,
}

impl Ticket {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn shutdown(&self, how: Shutdown) {
        if let Some(s) = lock(&self.shared.connections).get(&self.id) {
            let _ = s.shutdown(how);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut conns = lock(&self.shared.connections);
        if let Some(s) = conns.remove(&self.id) {
            let _ = s.shutdown(Shutdown::Both);
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
}

impl NbdServer {
    /// Binds `listen` and starts accepting on a thread of its own.
    pub fn start(listen: SocketAddr, exports: Arc<ExportTable>) -> io::Result<NbdServer> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            emptied: Condvar::new(),
        });
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
        let mut conns = lock(&self.shared.connections);
        for s in conns.values() {
            let _ = s.shutdown(Shutdown::Both);
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

fn admit(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>, exports: &Arc<ExportTable>) {
    let Ok(registered) = stream.try_clone() else {
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut conns = lock(&shared.connections);
        if conns.len() >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "too many NBD connections, refusing one");
            return;
        }
        conns.insert(id, registered);
    }
    let ticket = Ticket {
        id,
        shared: Arc::clone(shared),
    };
    let exports = Arc::clone(exports);
    let spawned = thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || run_connection(stream, peer, ticket, &exports));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start an NBD connection thread");
    }
}

fn run_connection(stream: TcpStream, peer: SocketAddr, ticket: Ticket, exports: &ExportTable) {
    let id = ticket.id();
    tracing::debug!(conn = id, %peer, "NBD connection opened");
    let prepared = stream
        .set_nodelay(true)
        .and_then(|()| stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let read_half = match prepared {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(conn = id, error = %e, "NBD connection unusable");
            return;
        }
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, read_half);
    let mut writer = &stream;
    let chosen = match negotiate(&mut reader, &mut writer, exports) {
        Ok(Some(chosen)) => chosen,
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
    // Clients may idle for as long as they like once attached.
    let registered = stream
        .set_read_timeout(None)
        .and_then(|()| stream.try_clone());
    let Ok(registered) = registered else {
        return;
    };
    if !chosen.slot.attach(id, registered) {
        tracing::debug!(conn = id, "NBD export went away during the handshake");
        return;
    }
    tracing::debug!(
        conn = id,
        export = chosen.slot.name(),
        flags = chosen.flags,
        "NBD transmission started"
    );
    Arc::new(Conn::new(chosen.slot, reader, stream, ticket)).serve();
}
