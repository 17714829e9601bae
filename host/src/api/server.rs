//! The HTTP listener: HTTP/1.1 connections up to a cap (when full, a new
//! connection closes the one idle the longest), each closed when it is slow
//! to send a request head or sits idle between requests, and a graceful
//! stop that lets responses in flight finish.
//!
//! The timers are kept here rather than in hyper, because hyper counts its
//! header-read timeout from the end of the previous response, which makes it
//! the keep-alive timeout too; here the two are separate settings.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::response::Response;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::config::HttpConfig;

/// How long a new connection waits for an evicted one to make room.
const EVICT_WAIT: Duration = Duration::from_secs(1);
/// At most one warning about the cap, or about failing accepts, this often.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of descriptors: give them time to free).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Largest request head a connection buffers (hyper's default is about
/// 400 KiB): with thousands of connections sending heads at once, this is
/// what bounds their memory. A larger head is answered 431 and closed.
const MAX_HEAD_BYTES: usize = 64 << 10;
/// The most connections a semaphore permit count can express here.
const MAX_CONNECTIONS: usize = u32::MAX as usize;

/// Limits of the HTTP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to send a whole request head: the first from the opening of the
    /// connection, each later one from its first byte.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open between a response and the next
    /// request's first byte.
    pub keep_alive_timeout: Duration,
}

impl HttpLimits {
    /// The limits of a configuration's `[http]` table.
    pub fn from_config(c: &HttpConfig) -> Self {
        Self {
            max_connections: usize::try_from(c.max_connections).unwrap_or(MAX_CONNECTIONS),
            header_read_timeout: Duration::from_millis(c.header_read_timeout_ms),
            keep_alive_timeout: Duration::from_millis(c.keep_alive_timeout_ms),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves,
/// then stops accepting, lets the requests in flight finish and returns
/// once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, MAX_CONNECTIONS);
    let shared = Arc::new(Shared {
        clock: Clock(Instant::now()),
        limits,
        conns: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(0),
        evicted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        cap_warning: Every::new(),
        accept_warning: Every::new(),
    });
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own timers below; hyper's would need a timer and merge the two.
    http.header_read_timeout(None);
    http.max_buf_size(MAX_HEAD_BYTES);
    let http = Arc::new(http);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    accept_failed(&shared, &e).await;
                    continue;
                }
            },
        };
        // Refused: dropping the stream closes it.
        if let Some(permit) = admit(&shared, &permits).await {
            spawn_connection(
                stream,
                permit,
                shared.clone(),
                app.clone(),
                http.clone(),
                stopped.clone(),
            );
        }
    }
    drop(listener);
    stop.send_replace(true);
    // Each connection holds a permit until it has closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// A permit for a new connection: a free one, or the one an evicted idle
/// connection gives back. `None`: every connection is busy, refuse it.
async fn admit(shared: &Shared, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = permits.clone().try_acquire_owned() {
        return Some(p);
    }
    if shared.evict_idlest() {
        shared.evicted.fetch_add(1, SeqCst);
        shared.warn_cap();
        if let Ok(Ok(p)) = tokio::time::timeout(EVICT_WAIT, permits.clone().acquire_owned()).await {
            return Some(p);
        }
    }
    shared.refused.fetch_add(1, SeqCst);
    shared.warn_cap();
    None
}

async fn accept_failed(shared: &Shared, e: &io::Error) {
    // A client that gave up before we accepted: nothing to report.
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    if shared.accept_warning.due() {
        tracing::warn!(error = %e, "HTTP accept failed; retrying");
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

fn spawn_connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    app: Router,
    http: Arc<hyper::server::conn::http1::Builder>,
    mut stopped: watch::Receiver<bool>,
) {
    let conn = Arc::new(Conn::new(shared.clock.now_ms()));
    let registered = Registered::new(&shared, conn.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let _registered = registered;
        let clock = shared.clock;
        let io = TokioIo::new(Watched {
            stream,
            conn: conn.clone(),
            clock,
        });
        let service = ConnService {
            router: TowerToHyperService::new(app),
            conn: conn.clone(),
            clock,
        };
        let connection = http.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        // Returning drops the connection, which closes the socket.
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            () = conn.expired(clock, &shared.limits) => return,
            () = conn.close.notified() => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
        // Evicted or stopping: an idle connection closes now; one whose
        // request arrived meanwhile closes after its response.
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            _ = connection => {}
            () = conn.expired(clock, &shared.limits) => {}
        }
    });
}

/// Milliseconds since the server started, for timestamps kept in atomics.
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ms(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// What the listener shares with its connections.
struct Shared {
    clock: Clock,
    limits: HttpLimits,
    /// Every open connection, for eviction.
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    /// Connections evicted and refused since the last warning.
    evicted: AtomicU64,
    refused: AtomicU64,
    cap_warning: Every,
    accept_warning: Every,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Asks the idle connection that waited longest to close: one that has
    /// not begun a request before one that has. False if all are busy.
    fn evict_idlest(&self) -> bool {
        let conns = lock(&self.conns);
        let victim = conns
            .values()
            .filter(|c| c.busy.load(SeqCst) == 0 && !c.evicted.load(SeqCst))
            .min_by_key(|c| (c.head_since.load(SeqCst) != 0, c.idle_since.load(SeqCst)));
        match victim {
            Some(c) => {
                c.evicted.store(true, SeqCst);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn warn_cap(&self) {
        if self.cap_warning.due() {
            tracing::warn!(
                max_connections = self.limits.max_connections,
                evicted = self.evicted.swap(0, SeqCst),
                refused = self.refused.swap(0, SeqCst),
                "HTTP connection cap reached: idle connections closed, new ones refused while \
                 all were busy"
            );
        }
    }
}

/// A rate limit for one kind of warning.
struct Every(Mutex<Option<Instant>>);

impl Every {
    fn new() -> Self {
        Self(Mutex::new(None))
    }

    /// True at most once per [`WARN_EVERY`].
    fn due(&self) -> bool {
        let mut last = lock(&self.0);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// A connection's place in [`Shared::conns`]; dropping it takes it out.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Registered {
    fn new(shared: &Arc<Shared>, conn: Arc<Conn>) -> Self {
        let id = shared.next_id.fetch_add(1, SeqCst);
        lock(&shared.conns).insert(id, conn);
        Self {
            shared: shared.clone(),
            id,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
    }
}

/// The state of one connection its timers and the eviction look at.
struct Conn {
    /// Requests whose response has not been sent whole yet.
    busy: AtomicUsize,
    /// Requests received so far.
    requests: AtomicU64,
    /// When the connection last became idle: its opening, or the end of a
    /// response (ms of [`Clock`]).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived, ms of
    /// [`Clock`] plus one; 0 while none has.
    head_since: AtomicU64,
    /// Chosen to make room; closing.
    evicted: AtomicBool,
    /// Woken when the timers must be looked at again (the connection went
    /// idle, or a request began to arrive).
    changed: Notify,
    /// Woken to close an evicted connection.
    close: Notify,
}

impl Conn {
    fn new(now_ms: u64) -> Self {
        Self {
            busy: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(now_ms),
            head_since: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            changed: Notify::new(),
            close: Notify::new(),
        }
    }

    /// When an idle connection is closed: a first request's head is due a
    /// header-read timeout after the opening, a later one's after its first
    /// byte; before that byte, the keep-alive timeout runs.
    fn deadline(&self, clock: Clock, limits: &HttpLimits) -> Instant {
        let head = self.head_since.load(SeqCst);
        if self.requests.load(SeqCst) == 0 {
            clock.at(self.idle_since.load(SeqCst)) + limits.header_read_timeout
        } else if head != 0 {
            clock.at(head - 1) + limits.header_read_timeout
        } else {
            clock.at(self.idle_since.load(SeqCst)) + limits.keep_alive_timeout
        }
    }

    /// Resolves when the connection has been idle past its deadline. A busy
    /// connection (a request being answered) never expires: handlers have
    /// their own limits.
    async fn expired(&self, clock: Clock, limits: &HttpLimits) {
        loop {
            // `notify_one` keeps a wake-up for a waiter that comes later, so
            // a change between this check and the wait is not lost.
            if self.busy.load(SeqCst) > 0 {
                self.changed.notified().await;
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep_until(self.deadline(clock, limits)) => {
                    if self.busy.load(SeqCst) == 0
                        && Instant::now() >= self.deadline(clock, limits)
                    {
                        return;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }

    /// Bytes arrived from the client.
    fn bytes_arrived(&self, clock: Clock) {
        if self.busy.load(SeqCst) == 0 && self.head_since.load(SeqCst) == 0 {
            self.head_since.store(clock.now_ms() + 1, SeqCst);
            // Later requests: the header-read timeout replaces the
            // keep-alive one.
            if self.requests.load(SeqCst) > 0 {
                self.changed.notify_one();
            }
        }
    }
}

/// Marks a connection busy from the moment a request head is parsed until
/// its response has been sent whole (or abandoned).
struct Busy {
    conn: Arc<Conn>,
    clock: Clock,
}

impl Busy {
    fn begin(conn: Arc<Conn>, clock: Clock) -> Self {
        conn.requests.fetch_add(1, SeqCst);
        conn.head_since.store(0, SeqCst);
        conn.busy.fetch_add(1, SeqCst);
        Self { conn, clock }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.conn.idle_since.store(self.clock.now_ms(), SeqCst);
        if self.conn.busy.fetch_sub(1, SeqCst) == 1 {
            self.conn.changed.notify_one();
        }
    }
}

/// The router as one connection's hyper service: marks the connection busy
/// while a request is answered.
struct ConnService {
    router: TowerToHyperService<Router>,
    conn: Arc<Conn>,
    clock: Clock,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let busy = Busy::begin(self.conn.clone(), self.clock);
        let answer = self.router.call(req);
        Box::pin(async move {
            let res = answer.await?;
            // The response body keeps the connection busy until hyper has
            // sent it whole and dropped it.
            Ok(res.map(|body| Body::new(BusyBody { body, _busy: busy })))
        })
    }
}

/// A response body that holds its connection's [`Busy`] mark.
struct BusyBody {
    body: Body,
    _busy: Busy,
}

impl HttpBody for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket, noting when request bytes arrive.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
    clock: Clock,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.bytes_arrived(this.clock);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
