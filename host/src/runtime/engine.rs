//! The one WebAssembly engine of a runtime: its configuration (component
//! model, epoch interruption, pooling allocator with a fallback for small
//! address spaces) and the ticker thread that drives call deadlines.

use std::sync::{Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::DriverLimits;

/// Period of the epoch ticker: the resolution of call deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Driver instances that may be alive at once with the pooling allocator.
/// Calls beyond this wait for a slot rather than fail.
const POOL_SLOTS: u32 = 256;
/// A smaller pool for address spaces too small for [`POOL_SLOTS`].
const SMALL_POOL_SLOTS: u32 = 32;

/// Table elements one driver instance may grow its tables to.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 64 << 10;

/// Stack a driver may use, in bytes; deeper recursion traps.
const MAX_WASM_STACK: usize = 1 << 20;

/// Bytes of a slot's memory and tables reset in place rather than unmapped
/// when its instance ends.
const KEEP_RESIDENT: usize = 16 << 20;

/// Core instances, memories and tables in one driver component. Rust drivers
/// built for `wasm32-wasip2` use a handful of core instances, one memory and
/// a few tables; the slack is for other toolchains.
pub(crate) const MAX_CORE_INSTANCES: u32 = 32;
pub(crate) const MAX_MEMORIES: u32 = 4;
pub(crate) const MAX_TABLES: u32 = 32;

/// How instance memory is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Pooling allocator with large reservations: no bounds checks.
    Pooling,
    /// Pooling allocator with reservations sized to the memory limit, for
    /// hosts whose address space is too small for the first.
    PoolingCompact,
    /// Plain allocation per instance: the last resort.
    OnDemand,
}

/// The engine and how many instances may be alive at once.
pub(crate) struct Built {
    pub(crate) engine: Engine,
    pub(crate) allocator: AllocatorKind,
    pub(crate) slots: u32,
}

/// Builds the engine, trying the fastest configuration first and smaller
/// reservations after it, so a host with a small address space (`ulimit -v`)
/// still runs drivers.
pub(crate) fn build(limits: &DriverLimits) -> Result<Built, String> {
    let memory = memory_limit_bytes(limits);
    let mut failures = Vec::new();
    for (kind, slots) in [
        (AllocatorKind::Pooling, POOL_SLOTS),
        (AllocatorKind::PoolingCompact, POOL_SLOTS),
        (AllocatorKind::PoolingCompact, SMALL_POOL_SLOTS),
        // On demand, concurrency is bounded only by the calling threads.
        (AllocatorKind::OnDemand, POOL_SLOTS),
    ] {
        match Engine::new(&config(kind, slots, memory)) {
            Ok(engine) => {
                if !failures.is_empty() {
                    tracing::warn!(
                        allocator = ?kind,
                        earlier = %failures.join("; "),
                        "driver engine fell back to a smaller allocator"
                    );
                }
                return Ok(Built {
                    engine,
                    allocator: kind,
                    slots,
                });
            }
            Err(e) => failures.push(format!("{kind:?} with {slots} slots: {e}")),
        }
    }
    Err(failures.join("; "))
}

/// The memory limit rounded up to whole WebAssembly pages.
pub(crate) fn memory_limit_bytes(limits: &DriverLimits) -> usize {
    const PAGE: u64 = 64 << 10;
    let rounded = limits.memory_bytes.div_ceil(PAGE).saturating_mul(PAGE);
    usize::try_from(rounded).unwrap_or(usize::MAX)
}

fn config(kind: AllocatorKind, slots: u32, memory: usize) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    // Drivers are synchronous; the concurrency machinery only adds cost.
    c.concurrency_support(false);
    c.max_wasm_stack(MAX_WASM_STACK);
    // A compile runs on its caller's thread alone: one compile at a time
    // then means one core at most, also for a compile whose caller gave up
    // on it (Cranelift cannot be stopped), and its CPU time is measurable.
    c.parallel_compilation(false);
    match kind {
        AllocatorKind::Pooling => {
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(slots, memory)));
        }
        AllocatorKind::PoolingCompact => {
            compact_memory(&mut c, memory);
            c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(slots, memory)));
        }
        AllocatorKind::OnDemand => {
            compact_memory(&mut c, memory);
            c.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        }
    }
    c
}

/// Reserves only what the limit allows, at the cost of bounds checks.
fn compact_memory(c: &mut Config, memory: usize) {
    c.memory_reservation(memory as u64);
    c.memory_guard_size(64 << 10);
    c.memory_reservation_for_growth(0);
}

fn pool(n: u32, memory: usize) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(n)
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 8)
        .total_stacks(n)
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .max_memories_per_component(MAX_MEMORIES)
        .max_tables_per_component(MAX_TABLES)
        .max_tables_per_module(MAX_TABLES)
        .table_elements(MAX_TABLE_ELEMENTS)
        .max_memory_size(memory)
        // A slot is reset for its next instance by rewriting only the pages
        // the last one dirtied (found with PAGEMAP_SCAN where the kernel has
        // it) instead of unmapping them: the next call takes no page fault
        // for them. Every instance still starts from the module's image; an
        // interpreter-sized driver (Python) dirties hundreds of pages a call.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    p
}

/// Advances the engine's epoch every [`TICK`] until dropped.
pub(crate) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> Result<Self, String> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-epoch".into())
            .spawn(move || {
                // Any message or a dropped sender ends the thread.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker thread: {e}"))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Epoch ticks that cover `d` (at least one).
pub(crate) fn ticks(d: Duration) -> u64 {
    let t = d.as_nanos().div_ceil(TICK.as_nanos());
    u64::try_from(t).unwrap_or(u64::MAX).max(1)
}

/// Counts live instances so that calls beyond the pool's size wait for a
/// free slot instead of failing.
pub(crate) struct Slots {
    live: Mutex<u32>,
    freed: Condvar,
    max: u32,
}

pub(crate) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            live: Mutex::new(0),
            freed: Condvar::new(),
            max,
        }
    }

    pub(crate) fn take(&self) -> Slot<'_> {
        let mut live = lock(&self.live);
        while *live >= self.max {
            live = self.freed.wait(live).unwrap_or_else(|p| p.into_inner());
        }
        *live += 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.live) -= 1;
        self.0.freed.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
