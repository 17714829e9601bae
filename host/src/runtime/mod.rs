//! The sandboxed driver runtime (design sections 2 and 5): one wasmtime
//! engine; driver components validated against the `driver-world` WIT and
//! compiled once per SHA-256 digest; a fresh, pre-instantiated store per call
//! with a deadline (epoch interruption), memory and table limits, and no WASI
//! files, sockets or environment. A trapping, looping or memory-hungry
//! driver fails only its own call.

mod bindings;
mod call;
mod compile;
mod contract;
mod contract_v0_1;
mod engine;
mod error;
mod host_impl;
mod hydration;
mod load;
mod metrics;
mod outbound_http;
mod settings;
mod state;
mod store_backing;
mod types;
mod wasi;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hydration;
#[cfg(test)]
mod tests_registry;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Store, UpdateDeadline};

use self::bindings::ferry::driver::types as wit;
use self::call::{CallState, Scope};
use self::contract::{Exports, WorldPre};
use self::engine::Slots;
use self::error::{answer, chain, check_model_update};
use self::host_impl::{LunHandle, PeerArrayHandle};
use self::state::StateOverlay;
use crate::array::{Array, Lun, validate_name};
use crate::config::DriverLimits;
use crate::hydrate::Hydrations;
use crate::model::DataPath;

pub use self::compile::CompileStats;
pub use self::contract::Contract;
pub use self::engine::AllocatorKind;
pub use self::error::{CallError, MAX_MODEL_UPDATE_BYTES, RuntimeError};
pub use self::host_impl::MAX_IO_BYTES;
pub use self::load::ArtifactCache;
pub use self::metrics::{DriverCallStats, LATENCY_BUCKETS_SECONDS};
pub use self::state::{DriverStateStore, MAX_KEY_BYTES, MAX_VALUE_BYTES, MemoryStateStore};
pub use self::types::{
    Capabilities, Completion, ConnectionInfo, Connector, Destination, DriverErrorKind, Managed,
    MigrateOutcome, Source, TargetOutcome, VolumeRef,
};

/// Receives progress reports (`done`, `total` bytes) of a running call. It
/// runs on the calling thread while the driver waits, so it must be quick.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How the runtime is set up.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Deadline and memory limit of every call, unless `driver_limits`
    /// names the driver.
    pub limits: DriverLimits,
    /// Limits of particular drivers, by name.
    pub driver_limits: HashMap<String, DriverLimits>,
    /// Largest component accepted by [`DriverRuntime::install`].
    pub max_component_bytes: usize,
    /// Longest a component may take to compile before it is refused.
    pub max_compile_time: Duration,
    /// Longest a component waits for the compile slot (one compile at a
    /// time) before it is refused as busy.
    pub max_compile_wait: Duration,
    /// Where compiled artifacts are kept between runs; without it every
    /// start compiles again.
    pub artifacts: Option<Arc<dyn ArtifactCache>>,
    /// The hydrations drivers start through the `hydration` import. Without
    /// it every hydration call answers `unsupported`.
    pub hydrations: Option<Arc<Hydrations>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            limits: DriverLimits::default(),
            driver_limits: HashMap::new(),
            max_component_bytes: 64 << 20,
            max_compile_time: load::DEFAULT_COMPILE_TIME,
            max_compile_wait: load::DEFAULT_COMPILE_WAIT,
            artifacts: None,
            hydrations: None,
        }
    }
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("limits", &self.limits)
            .field("driver_limits", &self.driver_limits)
            .field("max_component_bytes", &self.max_component_bytes)
            .field("max_compile_time", &self.max_compile_time)
            .field("max_compile_wait", &self.max_compile_wait)
            .field("artifacts", &self.artifacts.is_some())
            .field("hydrations", &self.hydrations.is_some())
            .finish()
    }
}

/// What one call may reach: the driver to run and the array it works for.
#[derive(Clone)]
pub struct CallScope {
    /// Name of the driver to call.
    pub driver: String,
    /// The array the call works for; the only array whose LUNs it can name.
    pub array: Arc<Array>,
    /// Arrays zoned with `array`.
    pub zoned_with: Vec<String>,
    /// Receives the driver's `report-progress` calls.
    pub progress: Option<ProgressFn>,
    /// Raised when the operation the call serves is aborted: from then on
    /// the host functions that create or write data fail with
    /// `backend-error`, so a driver in the middle of a long native copy
    /// stops, cleans up and returns instead of finishing the move.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl CallScope {
    /// A scope for `array`'s own driver, without progress reporting.
    pub fn new(array: Arc<Array>, zoned_with: Vec<String>) -> Self {
        Self {
            driver: array.driver().to_owned(),
            array,
            zoned_with,
            progress: None,
            cancel: None,
        }
    }
}

impl std::fmt::Debug for CallScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallScope")
            .field("driver", &self.driver)
            .field("array", &self.array.name())
            .field("zoned_with", &self.zoned_with)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel.is_some())
            .finish()
    }
}

/// A driver version that passed validation and is now active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledDriver {
    /// Lowercase hex SHA-256 of the component bytes.
    pub digest: String,
    /// What it answered to `capabilities`.
    pub capabilities: Capabilities,
    /// The contract it was built against.
    pub contract: Contract,
}

/// Runs driver components. Cheap to clone; every clone shares the engine,
/// the compiled components and the active versions.
#[derive(Clone)]
pub struct DriverRuntime {
    inner: Arc<Inner>,
}

/// A validated, compiled driver version, ready to instantiate.
struct Loaded {
    digest: String,
    pre: WorldPre,
    contract: Contract,
    capabilities: Capabilities,
}

struct Inner {
    engine: Engine,
    allocator: AllocatorKind,
    linker: wasmtime::component::Linker<CallState>,
    cfg: RuntimeConfig,
    state: Arc<dyn DriverStateStore>,
    metrics: metrics::CallMetrics,
    /// Every version compiled so far, by digest.
    compiled: Mutex<HashMap<String, Arc<Loaded>>>,
    /// The active version of each driver name.
    active: RwLock<HashMap<String, Arc<Loaded>>>,
    slots: Slots,
    /// The one compile at a time.
    compile_slot: Arc<compile::CompileSlot>,
    _ticker: engine::Ticker,
}

impl std::fmt::Debug for DriverRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let active = self.inner.active.read().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<_> = active.keys().collect();
        names.sort();
        f.debug_struct("DriverRuntime")
            .field("allocator", &self.inner.allocator)
            .field("active", &names)
            .finish()
    }
}

impl DriverRuntime {
    /// Sets up the engine (pooling allocator where the address space allows)
    /// and its epoch ticker. No driver is loaded yet.
    pub fn new(cfg: RuntimeConfig, state: Arc<dyn DriverStateStore>) -> Result<Self, RuntimeError> {
        let engine::Built {
            engine,
            allocator,
            slots,
        } = engine::build(&engine_limits(&cfg)).map_err(RuntimeError::Engine)?;
        let linker = wasi::linker(&engine).map_err(|e| RuntimeError::Engine(chain(&e)))?;
        let ticker = engine::Ticker::start(&engine).map_err(RuntimeError::Engine)?;
        tracing::debug!(allocator = ?allocator, slots, "driver runtime ready");
        let compile_slot = compile::CompileSlot::new(cfg.max_compile_time, cfg.max_compile_wait);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                allocator,
                linker,
                cfg,
                state,
                metrics: metrics::CallMetrics::default(),
                compiled: Mutex::new(HashMap::new()),
                active: RwLock::new(HashMap::new()),
                slots: Slots::new(slots),
                compile_slot,
                _ticker: ticker,
            }),
        })
    }

    /// Which allocator the engine ended up with.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// Validates `bytes` as a driver component, compiles it (once per
    /// digest), makes a first `capabilities` call and then makes it the
    /// active version of `name`. Calls already running finish on the version
    /// they started with. On any failure the active version is unchanged.
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<InstalledDriver, RuntimeError> {
        let prepared = self.prepare(name, bytes)?;
        self.activate(name, &prepared.digest)?;
        Ok(prepared)
    }

    /// Validates and compiles `bytes` as a version of `name` without making
    /// it active; [`Self::activate`] then switches to it instantly.
    pub fn prepare(&self, name: &str, bytes: &[u8]) -> Result<InstalledDriver, RuntimeError> {
        let max = self.inner.cfg.max_component_bytes;
        if bytes.len() > max {
            return Err(RuntimeError::TooLarge {
                size: bytes.len(),
                max,
            });
        }
        load::check_header(bytes)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let cached = lock(&self.inner.compiled).get(&digest).cloned();
        let loaded = match cached {
            Some(l) => l,
            None => {
                let fresh = Arc::new(self.inner.load(name, digest.clone(), bytes)?);
                lock(&self.inner.compiled)
                    .entry(digest.clone())
                    .or_insert(fresh)
                    .clone()
            }
        };
        Ok(InstalledDriver {
            digest,
            capabilities: loaded.capabilities,
            contract: loaded.contract,
        })
    }

    /// Largest component [`Self::prepare`] accepts, in bytes.
    pub fn max_component_bytes(&self) -> usize {
        self.inner.cfg.max_component_bytes
    }

    /// Whether a version with this digest is compiled and ready.
    pub fn is_prepared(&self, digest: &str) -> bool {
        lock(&self.inner.compiled).contains_key(digest)
    }

    /// Makes the prepared version `digest` the active version of `name`:
    /// one pointer swap under a write lock. Calls in flight keep the version
    /// they started with; every call that starts afterwards gets this one.
    pub fn activate(&self, name: &str, digest: &str) -> Result<InstalledDriver, RuntimeError> {
        let loaded = lock(&self.inner.compiled)
            .get(digest)
            .cloned()
            .ok_or_else(|| RuntimeError::NotPrepared(digest.to_owned()))?;
        let (capabilities, contract) = (loaded.capabilities, loaded.contract);
        self.inner
            .active
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), loaded);
        tracing::info!(driver = %name, digest = %digest, "driver version activated");
        Ok(InstalledDriver {
            digest: digest.to_owned(),
            capabilities,
            contract,
        })
    }

    /// Call statistics of every driver that has been called, by name.
    pub fn call_stats(&self) -> std::collections::BTreeMap<String, DriverCallStats> {
        self.inner.metrics.snapshot()
    }

    /// What the compile slot has done: compiles, timeouts, refusals as
    /// busy, the abandoned compile still running and the CPU spent.
    pub fn compile_stats(&self) -> CompileStats {
        self.inner.compile_slot.stats()
    }

    /// How many calls run on version `digest` right now. Each call holds
    /// its version's `Arc` for its whole run; the registry's own references
    /// (the compiled map and every name it is active for) do not count.
    pub fn calls_running_on(&self, digest: &str) -> usize {
        let compiled = lock(&self.inner.compiled);
        let Some(loaded) = compiled.get(digest) else {
            // Not loaded since the host started: nothing can run on it.
            return 0;
        };
        let active = self.inner.active.read().unwrap_or_else(|p| p.into_inner());
        let registry = 1 + active.values().filter(|l| Arc::ptr_eq(l, loaded)).count();
        Arc::strong_count(loaded).saturating_sub(registry)
    }

    /// Drops the compiled version `digest` (its component was deleted), so
    /// its code no longer takes memory. Does nothing, and answers false,
    /// while a call runs on it or a driver has it active.
    pub fn forget(&self, digest: &str) -> bool {
        let mut compiled = lock(&self.inner.compiled);
        let Some(loaded) = compiled.get(digest) else {
            return true;
        };
        let active = self.inner.active.read().unwrap_or_else(|p| p.into_inner());
        if active.values().any(|l| Arc::ptr_eq(l, loaded)) || Arc::strong_count(loaded) > 1 {
            return false;
        }
        drop(active);
        compiled.remove(digest);
        true
    }

    /// Digest of the active version of `name`.
    pub fn active_digest(&self, name: &str) -> Option<String> {
        self.inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| l.digest.clone())
    }

    /// What the active version of `name` declared when it was loaded (its
    /// first `capabilities` call); the host holds the driver to it.
    pub fn active_capabilities(&self, name: &str) -> Option<Capabilities> {
        self.inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| l.capabilities)
    }

    /// What the driver supports.
    pub fn capabilities(&self, scope: &CallScope) -> Result<Capabilities, CallError> {
        self.run(scope, |g, s| g.call_capabilities(s))
            .map(Capabilities::from)
    }

    /// Creates the storage of `vol`; returns the driver's model update.
    pub fn create_volume(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
    ) -> Result<Option<String>, CallError> {
        let v = wit::Volume::from(vol);
        let update = self.ask(scope, |g, s| g.call_create_volume(s, &v))?;
        check_model_update(update, scope.array.secrets())
    }

    /// Deletes the storage of `vol`.
    pub fn delete_volume(&self, scope: &CallScope, vol: &VolumeRef) -> Result<(), CallError> {
        let v = wit::Volume::from(vol);
        self.ask(scope, |g, s| g.call_delete_volume(s, &v))
    }

    /// Asks which LUN of the scope's array to expose to `connector`.
    pub fn initialize_connection(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        connector: &Connector,
    ) -> Result<ConnectionInfo, CallError> {
        let v = wit::Volume::from(vol);
        let c = wit::Connector::from(connector);
        let info = self.ask(scope, |g, s| g.call_initialize_connection(s, &v, &c))?;
        let (data, usable) = match info.data {
            wit::DataPath::Lun(lun) => {
                let lun = crate::model::LunAddress::from(lun);
                let usable = usable_lun(scope, &lun);
                (DataPath::Lun(lun), usable)
            }
            wit::DataPath::Nbd(export) => {
                let usable = crate::outbound::NbdUri::parse(&export.uri)
                    .and_then(|u| scope.array.nbd_allow().check(&u));
                let data = DataPath::Nbd {
                    nbd_uri: export.uri,
                };
                (data, usable)
            }
        };
        if let Err(why) = usable {
            let what = match data {
                DataPath::Lun(_) => "LUN address",
                DataPath::Nbd { .. } => "NBD export",
            };
            return Err(CallError::contract(scope.array.secrets().redact(&format!(
                "driver {} answered initialize-connection with an unusable {what} on array {}: {why}",
                scope.driver,
                scope.array.name()
            ))));
        }
        Ok(ConnectionInfo {
            data,
            read_only: info.read_only,
        })
    }

    /// Makes the existing LUN `reference` names the storage of `vol`
    /// (whose size is 0 until the driver answers it).
    pub fn manage_existing(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        reference: &str,
    ) -> Result<Managed, CallError> {
        let v = wit::Volume::from(vol);
        let m = self.ask(scope, |g, s| g.call_manage_existing(s, &v, reference))?;
        if m.size_bytes == 0 || !m.size_bytes.is_multiple_of(512) {
            return Err(CallError::contract(format!(
                "driver {} answered manage-existing with a size of {} bytes, not a positive \
                 multiple of 512",
                scope.driver, m.size_bytes
            )));
        }
        Ok(Managed {
            size_bytes: m.size_bytes,
            model_update: check_model_update(m.model_update, scope.array.secrets())?,
        })
    }

    /// The host forgets `vol`; its storage stays on the array.
    pub fn unmanage(&self, scope: &CallScope, vol: &VolumeRef) -> Result<(), CallError> {
        let v = wit::Volume::from(vol);
        self.ask(scope, |g, s| g.call_unmanage(s, &v))
    }

    /// Ends an exposure made by [`Self::initialize_connection`].
    pub fn terminate_connection(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        connector: &Connector,
    ) -> Result<(), CallError> {
        let v = wit::Volume::from(vol);
        let c = wit::Connector::from(connector);
        self.ask(scope, |g, s| g.call_terminate_connection(s, &v, &c))
    }

    /// Source side of a migration. `peer` is the destination array when the
    /// same driver manages it; the driver may then create and open LUNs
    /// there (and nowhere else besides its own array).
    pub fn migrate_volume(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        dest: &Destination,
        peer: Option<Arc<Array>>,
    ) -> Result<MigrateOutcome, CallError> {
        if let Some(p) = &peer
            && (p.driver() != scope.driver || p.name() == scope.array.name())
        {
            return Err(CallError::Driver {
                kind: DriverErrorKind::InvalidArgument,
                message: format!(
                    "array {} (driver {}) cannot be a peer of array {} (driver {})",
                    p.name(),
                    p.driver(),
                    scope.array.name(),
                    scope.driver
                ),
            });
        }
        let v = wit::Volume::from(vol);
        let d = wit::Destination::from(dest);
        let out = self.ask(scope, |g, s| {
            let peer = match peer {
                Some(a) => Some(s.data_mut().table.push(PeerArrayHandle::new(a))?),
                None => None,
            };
            g.call_migrate_volume(s, &v, &d, peer)
        })?;
        Ok(MigrateOutcome {
            moved: out.moved,
            model_update: check_model_update(out.model_update, scope.array.secrets())?,
        })
    }

    /// Target side: take over `remote`, a LUN of a zoned array.
    pub fn take_over_remote_lun(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        remote: Arc<Lun>,
    ) -> Result<(), CallError> {
        let v = wit::Volume::from(vol);
        self.ask(scope, |g, s| {
            let r = s.data_mut().table.push(LunHandle::remote(remote))?;
            g.call_take_over_remote_lun(s, &v, r)
        })
    }

    /// Target side, after a take-over: move `vol` from `source`.
    pub fn migrate_volume_target(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        source: &Source,
        remote: Arc<Lun>,
    ) -> Result<TargetOutcome, CallError> {
        let v = wit::Volume::from(vol);
        let src = wit::Source::from(source);
        let out = self.ask(scope, |g, s| {
            let r = s.data_mut().table.push(LunHandle::remote(remote))?;
            g.call_migrate_volume_target(s, &v, &src, r)
        })?;
        Ok(TargetOutcome {
            moved: out.moved,
            is_async: out.is_async,
            model_update: check_model_update(out.model_update, scope.array.secrets())?,
        })
    }

    /// Target side: one poll of an asynchronous migration.
    pub fn complete_migration_target(
        &self,
        scope: &CallScope,
        vol: &VolumeRef,
        source: &Source,
        remote: Arc<Lun>,
    ) -> Result<Completion, CallError> {
        let v = wit::Volume::from(vol);
        let src = wit::Source::from(source);
        let c = self.ask(scope, |g, s| {
            let r = s.data_mut().table.push(LunHandle::remote(remote))?;
            g.call_complete_migration_target(s, &v, &src, r)
        })?;
        Ok(Completion {
            done: c.done,
            done_bytes: c.done_bytes,
            total_bytes: c.total_bytes,
        })
    }

    /// Runs a call that answers `result<T, driver-error>`; the driver's
    /// error becomes [`CallError::Driver`], with the array's secrets
    /// redacted like every other message of the call.
    fn ask<T>(
        &self,
        scope: &CallScope,
        f: impl FnOnce(&Exports, &mut Store<CallState>) -> wasmtime::Result<Result<T, wit::DriverError>>,
    ) -> Result<T, CallError> {
        answer(self.run(scope, f)?).map_err(|e| e.redacted(scope.array.secrets()))
    }

    fn run<R>(
        &self,
        scope: &CallScope,
        f: impl FnOnce(&Exports, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let loaded = self
            .inner
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&scope.driver)
            .cloned()
            .ok_or_else(|| CallError::NotLoaded(scope.driver.clone()))?;
        let s = Scope {
            array: scope.array.clone(),
            zoned_with: scope.zoned_with.clone(),
            progress: scope.progress.clone(),
            cancel: scope.cancel.clone(),
            hydrations: self.inner.cfg.hydrations.clone(),
        };
        self.inner.execute(&loaded.pre, &scope.driver, Some(s), f)
    }
}

impl Inner {
    /// Runs one call in a fresh store. State writes are committed when the
    /// call returns (with the driver's `ok` or `err`) and scope is set;
    /// on a trap, timeout or memory blow-up the store and its writes are
    /// dropped.
    fn execute<R>(
        &self,
        pre: &WorldPre,
        driver: &str,
        scope: Option<Scope>,
        f: impl FnOnce(&Exports, &mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let _slot = self.slots.take();
        let limits = self.limits_for(driver);
        let deadline_ms = limits.deadline_ms;
        let started = Instant::now();
        let deadline = started
            .checked_add(Duration::from_millis(deadline_ms))
            .unwrap_or(started + Duration::from_secs(365 * 86_400));
        let commit = scope.is_some();
        let overlay = StateOverlay::new(driver.to_owned(), self.state.clone());
        let data = CallState::new(
            driver.to_owned(),
            scope,
            overlay,
            deadline,
            engine::memory_limit_bytes(&limits),
        );
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(engine::ticks(deadline - started));
        store.epoch_deadline_callback(|cx| {
            let now = Instant::now();
            let deadline = cx.data().deadline;
            Ok(if now >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(engine::ticks(deadline - now))
            })
        });
        let result = pre
            .instantiate(&mut store)
            .and_then(|exports| f(&exports, &mut store));
        // A trap's message may quote the driver's panic, and with it a
        // secret: redacted before anything logs it.
        let result = result.map_err(|e| {
            let e = call::classify(&e, store.data(), deadline_ms);
            match &store.data().scope {
                Some(s) => e.redacted(s.array.secrets()),
                None => e,
            }
        });
        let outcome = match &result {
            Ok(_) => metrics::Outcome::Returned {
                driver_error: false,
            },
            Err(e) => metrics::Outcome::of_error(e),
        };
        self.metrics.record(
            driver,
            outcome,
            started.elapsed(),
            store.data().limiter.peak_bytes,
        );
        match result {
            Ok(r) => {
                let data = store.data_mut();
                if commit {
                    data.state.commit().map_err(|m| {
                        CallError::contract(format!(
                            "the host could not save the state written by driver {driver}: {m}"
                        ))
                    })?;
                }
                let console = data.redact(&data.console.text());
                if !console.is_empty() {
                    tracing::debug!(driver = %driver, output = %console, "driver console output");
                }
                Ok(r)
            }
            Err(err) => {
                let array = store.data().array_name();
                let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                // A driver's own error is an answer; a fault is news for
                // the operator.
                if matches!(err, CallError::Driver { .. }) {
                    tracing::debug!(driver = %driver, array = %array, elapsed_ms, error = %err, "driver call failed");
                } else {
                    tracing::warn!(driver = %driver, array = %array, elapsed_ms, error = %err, "driver call failed");
                }
                Err(err)
            }
        }
    }
}

impl Inner {
    /// The limits of `driver`'s calls.
    fn limits_for(&self, driver: &str) -> DriverLimits {
        self.cfg
            .driver_limits
            .get(driver)
            .copied()
            .unwrap_or(self.cfg.limits)
    }
}

/// Whether a LUN address a driver answered names a pool of its array.
fn usable_lun(scope: &CallScope, lun: &crate::model::LunAddress) -> Result<(), String> {
    validate_name(&lun.pool)
        .and_then(|()| validate_name(&lun.name))
        .map_err(|e| e.to_string())?;
    if scope.array.pools().contains(&lun.pool) {
        Ok(())
    } else {
        Err(format!(
            "array {} has no pool {:?}",
            scope.array.name(),
            lun.pool
        ))
    }
}

/// The largest memory any driver may use sizes the engine's memory slots.
fn engine_limits(cfg: &RuntimeConfig) -> DriverLimits {
    let memory_bytes = cfg
        .driver_limits
        .values()
        .map(|l| l.memory_bytes)
        .fold(cfg.limits.memory_bytes, u64::max);
    DriverLimits {
        memory_bytes,
        ..cfg.limits
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
