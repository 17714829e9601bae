//! The WASI a driver sees: nothing to reach (no files, environment,
//! arguments or network), a console that keeps what it prints, and sleeps
//! and polls bounded by the call's deadline. Also the linker every call of
//! an engine shares.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource};
use wasmtime::{Engine, StoreContextMut, Trap};
use wasmtime_wasi::p2::bindings::sync::io::poll as wasi_poll;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamResult, subscribe};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::call::CallState;

/// Bytes of guest stdout/stderr kept per call.
const CONSOLE_BYTES: usize = 8 << 10;
/// Most random bytes one WASI call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The versions of the WASI interfaces whose blocking calls the runtime
/// bounds by the call's deadline (those the linked WASI provides).
const WASI_MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";
const WASI_POLL: &str = "wasi:io/poll@0.2.12";

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
pub(crate) fn wasi_ctx(console: &Console) -> WasiCtx {
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
    super::contract::add_to_linker(&mut linker)?;
    Ok(linker)
}
