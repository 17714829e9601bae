//! One driver call: the data its store holds (scope, limits, deadline, state
//! overlay, WASI context) and how a failed call is turned into a
//! [`CallError`] an operator can read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Trap, WasmBacktrace};
use wasmtime_wasi::{I32Exit, WasiCtx};

use super::CallError;
use super::state::StateOverlay;
use super::wasi::{Console, wasi_ctx};
use crate::array::Array;

/// Resources (LUNs, WASI handles, ...) one call may hold at once.
const MAX_RESOURCES: usize = 4096;
/// Longest driver-supplied text (errors, log lines) passed on, in bytes.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
/// Time spent in the host's native I/O (copies, flushes, deletes, zeroing,
/// hydration) that does not count against the deadline: the host, not the
/// driver, spent it, at disk speed, and a deadline that a busy disk can
/// blow would stop a driver between two steps it meant to do together
/// (copy, then delete the source). A driver cannot stretch a call forever
/// this way: the allowance is per call.
const MAX_COPY_ALLOWANCE: Duration = Duration::from_secs(30 * 60);

/// What a call may touch besides its own memory.
pub(crate) struct Scope {
    pub(crate) array: Arc<Array>,
    pub(crate) zoned_with: Vec<String>,
    pub(crate) progress: Option<super::ProgressFn>,
    /// Raised when the operation the call serves is aborted.
    pub(crate) cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// The host's hydrations, when it runs any.
    pub(crate) hydrations: Option<Arc<crate::hydrate::Hydrations>>,
}

/// Everything a call's store holds. Dropped with the store after the call.
pub(crate) struct CallState {
    pub(crate) driver: String,
    /// `None` while a component is being loaded (the smoke call).
    pub(crate) scope: Option<Scope>,
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(crate) outbound: super::outbound_http::OutboundHooks,
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
        let outbound = super::outbound_http::OutboundHooks::new(
            scope.as_ref().map(|s| s.array.clone()),
            deadline,
            &driver,
        );
        Self {
            driver,
            scope,
            table,
            wasi: wasi_ctx(&console),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            outbound,
            limiter: CallLimiter::new(memory_limit),
            state,
            deadline,
            copy_allowance: MAX_COPY_ALLOWANCE,
            console,
            open_luns: 0,
            log_lines: 0,
        }
    }

    /// Whether the operation this call serves was aborted.
    pub(crate) fn cancelled(&self) -> bool {
        self.scope
            .as_ref()
            .and_then(|s| s.cancel.as_ref())
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// `text` with the secrets of the call's array replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.scope {
            Some(s) => s.array.secrets().redact(text),
            None => text.to_owned(),
        }
    }

    /// Name of the array the call works for ("" while loading).
    pub(crate) fn array_name(&self) -> &str {
        self.scope.as_ref().map_or("", |s| s.array.name())
    }

    /// Moves the deadline back by time spent in the host's native I/O,
    /// within the call's allowance.
    pub(crate) fn credit(&mut self, spent: Duration) {
        let credit = spent.min(self.copy_allowance);
        self.copy_allowance -= credit;
        self.deadline += credit;
    }
}

/// Memory and table limits of one call; remembers whether the driver ran
/// into its memory limit so a trap that follows is reported as such.
pub(crate) struct CallLimiter {
    memory_limit: usize,
    pub(crate) memory_denied: bool,
    /// The largest linear memory granted in this call, for the metrics.
    pub(crate) peak_bytes: usize,
}

impl CallLimiter {
    fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            memory_denied: false,
            peak_bytes: 0,
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
        if allowed {
            self.peak_bytes = self.peak_bytes.max(desired);
        } else {
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
        message.push_str(&format!(" in function {}", readable_symbol(func)));
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

/// `a::b::c` for a legacy-mangled Rust symbol (`_ZN1a1b1c17h<hash>E`), so an
/// operator can read where a driver trapped; anything else as it is.
fn readable_symbol(sym: &str) -> String {
    let demangled = (|| {
        let mut rest = sym.strip_prefix("_ZN")?;
        let mut parts = Vec::new();
        while !rest.starts_with('E') {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let len: usize = rest[..digits].parse().ok()?;
            let part = rest.get(digits..digits + len)?;
            rest = &rest[digits + len..];
            let is_hash = part.len() == 17
                && part.starts_with('h')
                && part[1..].bytes().all(|b| b.is_ascii_hexdigit());
            if !is_hash {
                parts.push(part);
            }
        }
        (!parts.is_empty()).then(|| parts.join("::"))
    })();
    demangled.unwrap_or_else(|| sym.to_owned())
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
    fn rust_symbols_are_made_readable() {
        assert_eq!(
            readable_symbol("_ZN4misb7hostile7descend17h9300dce00c9096a0E.llvm.65"),
            "misb::hostile::descend"
        );
        assert_eq!(readable_symbol("abort"), "abort");
        assert_eq!(readable_symbol("_ZN99x"), "_ZN99x");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 3), "abc");
        let t = truncate("ééé", 3);
        assert!(t.starts_with('é') && t.contains("4 bytes cut"), "{t}");
    }
}
