//! One driver call: the data its store holds (scope, limits, deadline, state
//! overlay, WASI context), the linker every call shares, and how a failed call
//! is turned into a [`CallError`] an operator can read.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, StoreContextMut, Trap, WasmBacktrace};
use wasmtime_wasi::p2::bindings::sync::io::poll as wasi_poll;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult, subscribe};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::CallError;
use super::bindings::DriverWorld;
use super::state::StateOverlay;
use crate::array::Array;

/// Resources (LUNs, WASI handles, ...) one call may hold at once.
const MAX_RESOURCES: usize = 4096;
/// Bytes of guest stdout/stderr kept per call.
const CONSOLE_BYTES: usize = 8 << 10;
/// Most random bytes one WASI call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;
/// Longest driver-supplied text (errors, log lines) passed on, in bytes.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// Time spent in native copies that does not count against the deadline:
/// a copy moves bytes at disk speed and is not the driver's doing, but a
/// driver cannot stretch a call forever by copying in a loop.
const MAX_COPY_ALLOWANCE: Duration = Duration::from_secs(30 * 60);

/// The versions of the WASI interfaces whose blocking calls the runtime
/// bounds by the call's deadline (those the linked WASI provides).
const WASI_MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
const WASI_POLL: &str = "wasi:io/poll@0.2.12";

/// What a call may touch besides its own memory.
pub(crate) struct Scope {
    pub(crate) array: Arc<Array>,
    pub(crate) zoned_with: Vec<String>,
    pub(crate) progress: Option<super::ProgressFn>,
}

/// Everything a call's store holds. Dropped with the store after the call.
pub(crate) struct CallState {
    pub(crate) driver: String,
    /// `None` while a component is being loaded (the smoke call).
    pub(crate) scope: Option<Scope>,
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) limiter: CallLimiter,
    pub(crate) state: StateOverlay,
    pub(crate) deadline: Instant,
    pub(crate) copy_allowance: Duration,
    pub(crate) console: Console,
    pub(crate) open_luns: usize,
    pub(crate) log_lines: u32,
}

impl CallState {
    pub(crate) fn new(
        driver: String,
        scope: Option<Scope>,
        state: StateOverlay,
        deadline: Instant,
        memory_limit: usize,
    ) -> Self {
        let console = Console::default();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            driver,
            scope,
            table,
            wasi: wasi_ctx(&console),
            limiter: CallLimiter::new(memory_limit),
            state,
            deadline,
            copy_allowance: MAX_COPY_ALLOWANCE,
            console,
            open_luns: 0,
            log_lines: 0,
        }
    }

    /// Name of the array the call works for ("" while loading).
    pub(crate) fn array_name(&self) -> &str {
        self.scope.as_ref().map_or("", |s| s.array.name())
    }

    /// Moves the deadline back by time spent in a native copy, within the
    /// call's allowance.
    pub(crate) fn credit(&mut self, spent: Duration) {
        let credit = spent.min(self.copy_allowance);
        self.copy_allowance -= credit;
        self.deadline += credit;
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A WASI context with nothing in it: no files, no environment, no
/// arguments, no network; stdout and stderr go to the call's console.
fn wasi_ctx(console: &Console) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.stdout(console.clone())
        .stderr(console.clone())
        .monotonic_clock(HostClock)
        // Random bytes are allocated in the host, outside the memory limit.
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }));
    b.build()
}

/// Memory and table limits of one call; remembers whether the driver ran
/// into its memory limit so a trap that follows is reported as such.
pub(crate) struct CallLimiter {
    memory_limit: usize,
    pub(crate) memory_denied: bool,
}

impl CallLimiter {
    fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            memory_denied: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_limit && maximum.is_none_or(|m| desired <= m);
        if !allowed {
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_denied = true;
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= super::engine::MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        super::engine::MAX_CORE_INSTANCES as usize
    }

    fn tables(&self) -> usize {
        super::engine::MAX_TABLES as usize
    }

    fn memories(&self) -> usize {
        super::engine::MAX_MEMORIES as usize
    }
}

/// Guest stdout and stderr of one call, kept up to [`CONSOLE_BYTES`]; the
/// rest is dropped silently so a chatty driver never fails on a print.
#[derive(Clone, Default)]
pub(crate) struct Console(Arc<Mutex<Vec<u8>>>);

impl Console {
    fn append(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = CONSOLE_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub(crate) fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl wasmtime_wasi::cli::IsTerminal for Console {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Console {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Written synchronously: the default adapter hops through a task per
/// write, which costs a driver that prints a lot most of its deadline.
impl OutputStream for Console {
    // `axum::body::Bytes` is the `bytes` crate's type, which the WASI stream
    // trait takes.
    fn write(&mut self, bytes: axum::body::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CONSOLE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Console {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Console {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The monotonic clock drivers see, measured from a process-wide origin so
/// that `subscribe-instant` can be mapped back to an [`Instant`].
struct HostClock;

fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl wasmtime_wasi::HostMonotonicClock for HostClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        u64::try_from(clock_origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A sleep that ends at the requested time or at the call's deadline,
/// whichever comes first: epoch interruption cannot reach a thread blocked
/// in the host, so a driver must never block past its deadline.
struct Sleep {
    until: Instant,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(self.until)).await;
    }
}

fn sleep_until(
    mut cx: StoreContextMut<'_, CallState>,
    wake: Option<Instant>,
) -> wasmtime::Result<(Resource<DynPollable>,)> {
    let st = cx.data_mut();
    let until = wake.map_or(st.deadline, |w| w.min(st.deadline));
    let sleep = st.table.push(Sleep { until })?;
    Ok((subscribe(&mut st.table, sleep)?,))
}

/// After a blocking WASI call: a driver woken by its deadline stops there
/// rather than carrying on as if its sleep had completed.
fn check_deadline(st: &CallState) -> wasmtime::Result<()> {
    if Instant::now() >= st.deadline {
        return Err(wasmtime::Error::new(Trap::Interrupt));
    }
    Ok(())
}

/// The linker every call of this engine uses: WASI (empty, see
/// [`wasi_ctx`]) with deadline-bounded sleeps, and the driver world.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    linker.allow_shadowing(true);
    {
        let mut clock = linker.instance(WASI_MONOTONIC_CLOCK)?;
        clock.func_wrap("subscribe-duration", |cx, (nanos,): (u64,)| {
            sleep_until(cx, Instant::now().checked_add(Duration::from_nanos(nanos)))
        })?;
        clock.func_wrap("subscribe-instant", |cx, (when,): (u64,)| {
            sleep_until(cx, clock_origin().checked_add(Duration::from_nanos(when)))
        })?;
    }
    {
        let mut poll = linker.instance(WASI_POLL)?;
        poll.func_wrap(
            "poll",
            |mut cx: StoreContextMut<'_, CallState>, (list,): (Vec<Resource<DynPollable>>,)| {
                let st = cx.data_mut();
                let ready = wasi_poll::Host::poll(&mut st.table, list)?;
                check_deadline(st)?;
                Ok((ready,))
            },
        )?;
        poll.func_wrap(
            "[method]pollable.block",
            |mut cx: StoreContextMut<'_, CallState>, (p,): (Resource<DynPollable>,)| {
                let st = cx.data_mut();
                wasi_poll::HostPollable::block(&mut st.table, p)?;
                check_deadline(st)
            },
        )?;
    }
    linker.allow_shadowing(false);
    DriverWorld::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(
        &mut linker,
        |s| s,
    )?;
    Ok(linker)
}

/// A failure of the host itself inside a host function; the call fails
/// with a backend error rather than being blamed on the driver.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HostFault(pub(crate) String);

/// A driver broke the contract in a way the WIT gives no error for; the call
/// fails as a trap.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DriverFault(pub(crate) String);

/// Turns the error of a failed call into what the caller is told.
pub(crate) fn classify(err: &wasmtime::Error, st: &CallState, deadline_ms: u64) -> CallError {
    let driver = st.driver.clone();
    if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return CallError::Timeout {
            driver,
            deadline_ms,
        };
    }
    if st.limiter.memory_denied {
        return CallError::OutOfMemory {
            driver,
            limit_bytes: st.limiter.memory_limit as u64,
        };
    }
    if let Some(f) = err.downcast_ref::<HostFault>() {
        return CallError::Driver {
            kind: super::DriverErrorKind::BackendError,
            message: f.0.clone(),
        };
    }
    let mut message = if let Some(exit) = err.downcast_ref::<I32Exit>() {
        format!("the driver called exit({})", exit.0)
    } else if let Some(f) = err.downcast_ref::<DriverFault>() {
        f.0.clone()
    } else if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::StackOverflow => "stack overflow (call stack exhausted)".to_owned(),
            other => other.to_string(),
        }
    } else {
        format!("{err}")
    };
    if let Some(func) = err
        .downcast_ref::<WasmBacktrace>()
        .and_then(|bt| bt.frames().iter().find_map(|f| f.func_name()))
    {
        message.push_str(&format!(" in function {func}"));
    }
    if let Some(panic) = panic_note(&st.console.text()) {
        message.push_str(&format!("; the driver panicked: {panic}"));
    }
    CallError::Trap { driver, message }
}

/// The panic report a Rust driver printed before it aborted, if any.
fn panic_note(console: &str) -> Option<String> {
    let start = console.find("panicked at")?;
    let line_start = console[..start].rfind('\n').map_or(0, |i| i + 1);
    let report = console[line_start..]
        .lines()
        .take_while(|l| !l.starts_with("note:"))
        .collect::<Vec<_>>()
        .join(" ");
    Some(truncate(report.trim(), MAX_MESSAGE_BYTES / 4))
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_reports_are_extracted() {
        let console = "hello\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(
            panic_note(console).unwrap(),
            "thread '<unnamed>' panicked at src/lib.rs:10:5: boom"
        );
        assert!(panic_note("all fine\n").is_none());
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        let t = truncate("ééé", 3);
        assert!(t.starts_with('é') && t.contains("4 bytes cut"), "{t}");
    }
}
