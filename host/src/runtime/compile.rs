//! The host's one compile slot: components compile one at a time, on a
//! worker thread bounded in time for its caller. Cranelift cannot be
//! interrupted, so a compile that overruns is abandoned by its caller but
//! keeps the slot until it really ends; the CPU it burns is thus bounded to
//! one core (the engine compiles serially) and accounted in [`CompileStats`].

use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::{RuntimeError, chain};

/// What the compile slot has done since the host started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompileStats {
    /// Compiles that produced a component in time.
    pub compiled: u64,
    /// Compiles the compiler refused (malformed components).
    pub failed: u64,
    /// Compiles whose caller gave up at the time limit (`compile_timeout`).
    pub timeouts: u64,
    /// Requests refused because the slot stayed taken past the wait limit
    /// (`compile_busy`).
    pub busy: u64,
    /// Abandoned compiles still running: 0 or 1, as there is one slot.
    pub abandoned_running: u64,
    /// CPU time of every compile that ended, in seconds.
    pub cpu_seconds: f64,
    /// CPU time of the compiles that were abandoned, from their start to
    /// their real end, in seconds.
    pub abandoned_cpu_seconds: f64,
}

/// The compile that holds the slot.
struct Holder {
    /// Tells this compile from the next one, which may take the slot the
    /// moment this one frees it.
    id: u64,
    started: Instant,
    /// Its caller gave up on it; it runs on for nobody.
    abandoned: bool,
}

#[derive(Default)]
struct SlotState {
    holder: Option<Holder>,
    next_id: u64,
    stats: CompileStats,
}

/// One compile at a time per runtime (and so per host). Shared with the
/// worker thread, which frees the slot when the compiler returns.
pub(crate) struct CompileSlot {
    state: Mutex<SlotState>,
    freed: Condvar,
    /// How long a caller waits for its compile before it answers
    /// `compile_timeout`.
    limit: Duration,
    /// How long a caller waits for the slot before it answers
    /// `compile_busy`.
    wait: Duration,
}

/// The slot, taken; freed when dropped (also when the compiler panics).
struct Permit {
    slot: Arc<CompileSlot>,
    id: u64,
    /// CPU time the compile used, once it ended.
    cpu: Option<Duration>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slot.release(self.id, self.cpu);
    }
}

impl CompileSlot {
    pub(crate) fn new(limit: Duration, wait: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState::default()),
            freed: Condvar::new(),
            limit,
            wait,
        })
    }

    /// What the slot has done so far.
    pub(crate) fn stats(&self) -> CompileStats {
        let s = lock(&self.state);
        let mut stats = s.stats.clone();
        stats.abandoned_running = u64::from(s.holder.as_ref().is_some_and(|h| h.abandoned));
        stats
    }

    /// Compiles `bytes` once the slot is free: waits for it up to the wait
    /// limit, then for the compiler up to the time limit.
    pub(crate) fn compile(
        self: &Arc<Self>,
        engine: &Engine,
        bytes: &[u8],
    ) -> Result<Component, RuntimeError> {
        let mut permit = self.acquire()?;
        let id = permit.id;
        let engine = engine.clone();
        let owned = bytes.to_vec();
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("driver-compile".into())
            .spawn(move || {
                let cpu_before = thread_cpu_time();
                let result = Component::new(&engine, &owned);
                permit.cpu = Some(thread_cpu_time().saturating_sub(cpu_before));
                // Free the slot before answering: a caller that got its
                // answer may start the next compile at once.
                drop(permit);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            // The closure, and the permit in it, was dropped: the slot is
            // free again.
            return Err(RuntimeError::Engine(format!(
                "cannot start a compile thread: {e}"
            )));
        }
        // `None`: the compile thread ended without an answer (a panic).
        let answer = match rx.recv_timeout(self.limit) {
            Ok(r) => Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => match self.abandon(id) {
                // The compiler ended between the timeout and the lock: its
                // answer is in the channel.
                None => rx.recv().ok(),
                Some(e) => return Err(e),
            },
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        };
        let mut s = lock(&self.state);
        match answer {
            Some(Ok(c)) => {
                s.stats.compiled += 1;
                Ok(c)
            }
            Some(Err(e)) => {
                s.stats.failed += 1;
                Err(RuntimeError::Compile(chain(&e)))
            }
            None => {
                s.stats.failed += 1;
                Err(RuntimeError::Compile(
                    "the compiler stopped without an answer".into(),
                ))
            }
        }
    }

    /// Takes the slot, waiting up to the wait limit for the compile that
    /// holds it.
    fn acquire(self: &Arc<Self>) -> Result<Permit, RuntimeError> {
        let until = Instant::now() + self.wait;
        let mut s = lock(&self.state);
        while let Some(holder) = &s.holder {
            let now = Instant::now();
            if now >= until {
                let retry_after = if holder.abandoned {
                    // How long an abandoned compile still runs is unknown;
                    // the time limit is the scale of a compile.
                    self.limit
                } else {
                    (holder.started + self.limit).saturating_duration_since(now)
                };
                s.stats.busy += 1;
                return Err(RuntimeError::CompileBusy {
                    retry_after_secs: whole_seconds(retry_after),
                });
            }
            s = self
                .freed
                .wait_timeout(s, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let id = s.next_id;
        s.next_id += 1;
        s.holder = Some(Holder {
            id,
            started: Instant::now(),
            abandoned: false,
        });
        Ok(Permit {
            slot: self.clone(),
            id,
            cpu: None,
        })
    }

    /// The caller stops waiting for compile `id`. `None` when it has just
    /// ended after all.
    fn abandon(&self, id: u64) -> Option<RuntimeError> {
        let mut s = lock(&self.state);
        let holder = s.holder.as_mut().filter(|h| h.id == id)?;
        holder.abandoned = true;
        s.stats.timeouts += 1;
        let limit_ms = u64::try_from(self.limit.as_millis()).unwrap_or(u64::MAX);
        tracing::warn!(
            limit_ms,
            "a driver compile overran its time limit; it keeps the compile slot until it ends"
        );
        Some(RuntimeError::CompileTimeout { limit_ms })
    }

    /// Frees the slot compile `id` holds; `cpu` is what it used, when it
    /// ended.
    fn release(&self, id: u64, cpu: Option<Duration>) {
        let mut s = lock(&self.state);
        if s.holder.as_ref().is_some_and(|h| h.id == id)
            && let Some(holder) = s.holder.take()
        {
            let cpu = cpu.unwrap_or_default().as_secs_f64();
            s.stats.cpu_seconds += cpu;
            if holder.abandoned {
                s.stats.abandoned_cpu_seconds += cpu;
                tracing::info!(
                    cpu_seconds = cpu,
                    "an abandoned driver compile ended; the compile slot is free"
                );
            }
        }
        drop(s);
        self.freed.notify_all();
    }
}

/// `d` in whole seconds, rounded up, at least one (for `Retry-After`).
fn whole_seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).clamp(1, u128::from(u64::MAX)) as u64
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1000)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(60)), 60);
    }

    #[test]
    fn the_thread_cpu_clock_advances_with_work() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        let until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(thread_cpu_time() > before);
    }
}
