//! The host side of the driver world's imports: block I/O on LUNs scoped to
//! the call's array, the fabric, driver state and context. Every byte moves
//! in native code here; drivers only name what to move.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::Resource;

use super::bindings::ferry::driver::types::{DriverError, Extent, LogLevel, LunAddress};
use super::bindings::ferry::driver::{block, context, fabric, state, types};
use super::call::{CallState, DriverFault, HostFault, MAX_MESSAGE_BYTES, truncate};
use super::state::StateError;
use crate::array::{Array, ArrayError, CopyError, Lun, copy_range_cancellable};
use crate::block::BlockDevice;
use crate::model;

/// Largest read or write through the WIT, in bytes.
pub const MAX_IO_BYTES: usize = 4 << 20;
/// LUNs a call may hold open at once.
const MAX_OPEN_LUNS: usize = 64;
/// Extents `allocated-extents` returns at most in one answer.
const MAX_EXTENTS: usize = 1 << 18;
/// Log lines one call may write.
const MAX_LOG_LINES: u32 = 1000;

/// An open LUN handed to a driver.
pub struct LunHandle {
    lun: Arc<Lun>,
    /// Opened by the driver (and counted against its limit), as opposed to
    /// handed in by the host.
    counted: bool,
    /// Handed in by the host as the call's remote LUN. Only such a LUN may
    /// be the source of a hydration: a driver must not make the host read a
    /// LUN of another array that it was never given.
    remote: bool,
}

impl LunHandle {
    /// The remote LUN the host hands to a migration call as its argument.
    pub(crate) fn remote(lun: Arc<Lun>) -> Self {
        Self {
            lun,
            counted: false,
            remote: true,
        }
    }

    /// The LUN behind the handle.
    pub(super) fn lun(&self) -> &Arc<Lun> {
        &self.lun
    }

    /// Whether the host handed this LUN to the call as its remote LUN.
    pub(super) fn is_remote(&self) -> bool {
        self.remote
    }
}

/// Another array of the same driver, handed to `migrate-volume`.
pub struct PeerArrayHandle {
    array: Arc<Array>,
}

impl PeerArrayHandle {
    pub(crate) fn new(array: Arc<Array>) -> Self {
        Self { array }
    }
}

pub(super) type DResult<T> = wasmtime::Result<Result<T, DriverError>>;

fn array_error(e: ArrayError) -> DriverError {
    let m = e.to_string();
    match e {
        ArrayError::InvalidName { .. }
        | ArrayError::InvalidSize(_)
        | ArrayError::LunExists { .. } => DriverError::InvalidArgument(m),
        ArrayError::NoSuchPool { .. } | ArrayError::NoSuchLun { .. } => DriverError::NotFound(m),
        ArrayError::NoSpace { .. } | ArrayError::InsufficientSpace { .. } => {
            DriverError::NoSpace(m)
        }
        ArrayError::Io { .. } | ArrayError::Configuration { .. } => DriverError::BackendError(m),
    }
}

fn io_error(lun: &Lun, what: &str, e: std::io::Error) -> DriverError {
    let a = lun.address();
    let m = format!(
        "{what} on LUN {}/{} of array {}: {e}",
        a.pool,
        a.name,
        lun.array()
    );
    if e.kind() == std::io::ErrorKind::InvalidInput {
        DriverError::InvalidArgument(m)
    } else {
        DriverError::BackendError(m)
    }
}

fn addr(a: &LunAddress) -> model::LunAddress {
    model::LunAddress {
        pool: a.pool.clone(),
        name: a.name.clone(),
    }
}

fn too_big(what: &str, len: usize) -> DriverError {
    DriverError::InvalidArgument(format!(
        "{what} of {len} bytes is larger than the {MAX_IO_BYTES}-byte limit per call"
    ))
}

impl CallState {
    fn own_array(&self) -> Result<Arc<Array>, DriverError> {
        match &self.scope {
            Some(s) => Ok(s.array.clone()),
            None => Err(DriverError::Unsupported(
                "no array is bound while the driver is being loaded".into(),
            )),
        }
    }

    /// Runs host I/O whose time is credited back to the call's deadline.
    fn timed<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let started = Instant::now();
        let out = f(self);
        self.credit(started.elapsed());
        out
    }

    /// The error that data-creating host functions answer once the
    /// operation this call serves was aborted.
    fn refuse_if_cancelled(&self) -> Result<(), DriverError> {
        if self.cancelled() {
            Err(DriverError::BackendError(
                "the operation this call serves was aborted by an operator; \
                 clean up and return"
                    .into(),
            ))
        } else {
            Ok(())
        }
    }

    fn lun(&self, r: &Resource<LunHandle>) -> wasmtime::Result<Arc<Lun>> {
        Ok(self.table.get(r)?.lun.clone())
    }

    fn hand_out(&mut self, lun: Lun) -> DResult<Resource<LunHandle>> {
        if self.open_luns >= MAX_OPEN_LUNS {
            return Ok(Err(DriverError::BackendError(format!(
                "a call may hold at most {MAX_OPEN_LUNS} LUNs open; drop some first"
            ))));
        }
        let r = self.table.push(LunHandle {
            lun: Arc::new(lun),
            counted: true,
            remote: false,
        })?;
        self.open_luns += 1;
        Ok(Ok(r))
    }

    fn create_on(
        &mut self,
        array: &Array,
        a: &LunAddress,
        size: u64,
    ) -> DResult<Resource<LunHandle>> {
        if let Err(e) = self.refuse_if_cancelled() {
            return Ok(Err(e));
        }
        match self.timed(|_| array.create_lun(&addr(a), size)) {
            Ok(lun) => self.hand_out(lun),
            Err(e) => Ok(Err(array_error(e))),
        }
    }

    fn open_on(&mut self, array: &Array, a: &LunAddress) -> DResult<Resource<LunHandle>> {
        match array.open_lun(&addr(a)) {
            Ok(lun) => self.hand_out(lun),
            Err(e) => Ok(Err(array_error(e))),
        }
    }
}

impl types::Host for CallState {}

impl block::Host for CallState {
    fn create_lun(&mut self, address: LunAddress, size_bytes: u64) -> DResult<Resource<LunHandle>> {
        let array = match self.own_array() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        self.create_on(&array, &address, size_bytes)
    }

    fn open_lun(&mut self, address: LunAddress) -> DResult<Resource<LunHandle>> {
        let array = match self.own_array() {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        self.open_on(&array, &address)
    }

    fn delete_lun(&mut self, address: LunAddress) -> DResult<()> {
        Ok(self.timed(|s| {
            s.own_array()
                .and_then(|a| a.delete_lun(&addr(&address)).map_err(array_error))
        }))
    }

    fn list_luns(&mut self, pool: String) -> DResult<Vec<String>> {
        Ok(self
            .own_array()
            .and_then(|a| a.list_luns(&pool).map_err(array_error)))
    }
}

impl block::HostLun for CallState {
    fn array(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<String> {
        Ok(self.lun(&r)?.array().to_owned())
    }

    fn address(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<LunAddress> {
        Ok(self.lun(&r)?.address().into())
    }

    fn size(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<u64> {
        Ok(self.lun(&r)?.size())
    }

    fn read(&mut self, r: Resource<LunHandle>, offset: u64, length: u32) -> DResult<Vec<u8>> {
        let lun = self.lun(&r)?;
        let len = length as usize;
        if len > MAX_IO_BYTES {
            return Ok(Err(too_big("read", len)));
        }
        let mut buf = vec![0u8; len];
        Ok(self.timed(|_| {
            lun.read_at(&mut buf, offset)
                .map(|()| buf)
                .map_err(|e| io_error(&lun, "read", e))
        }))
    }

    fn write(&mut self, r: Resource<LunHandle>, offset: u64, data: Vec<u8>) -> DResult<()> {
        let lun = self.lun(&r)?;
        if data.len() > MAX_IO_BYTES {
            return Ok(Err(too_big("write", data.len())));
        }
        if let Err(e) = self.refuse_if_cancelled() {
            return Ok(Err(e));
        }
        Ok(self.timed(|_| {
            lun.write_at(&data, offset)
                .map_err(|e| io_error(&lun, "write", e))
        }))
    }

    fn write_zeroes(&mut self, r: Resource<LunHandle>, offset: u64, length: u64) -> DResult<()> {
        let lun = self.lun(&r)?;
        if let Err(e) = self.refuse_if_cancelled() {
            return Ok(Err(e));
        }
        Ok(self.timed(|_| {
            lun.write_zeroes(offset, length)
                .map_err(|e| io_error(&lun, "write-zeroes", e))
        }))
    }

    fn discard(&mut self, r: Resource<LunHandle>, offset: u64, length: u64) -> DResult<()> {
        let lun = self.lun(&r)?;
        Ok(self.timed(|_| {
            lun.discard(offset, length)
                .map_err(|e| io_error(&lun, "discard", e))
        }))
    }

    fn flush(&mut self, r: Resource<LunHandle>) -> DResult<()> {
        let lun = self.lun(&r)?;
        Ok(self.timed(|_| BlockDevice::flush(&*lun).map_err(|e| io_error(&lun, "flush", e))))
    }

    fn allocated_extents(
        &mut self,
        r: Resource<LunHandle>,
        offset: u64,
        length: u64,
    ) -> DResult<Vec<Extent>> {
        let lun = self.lun(&r)?;
        let found = match self.timed(|_| lun.allocated_extents(offset, length)) {
            Ok(x) => x,
            Err(e) => return Ok(Err(io_error(&lun, "allocated-extents", e))),
        };
        if found.len() > MAX_EXTENTS {
            return Ok(Err(DriverError::InvalidArgument(format!(
                "the range holds {} extents, more than the {MAX_EXTENTS} one answer carries; \
                 ask for a smaller range",
                found.len()
            ))));
        }
        Ok(Ok(found
            .into_iter()
            .map(|x| Extent {
                offset: x.offset,
                length: x.length,
            })
            .collect()))
    }

    fn copy_range_from(
        &mut self,
        r: Resource<LunHandle>,
        source: Resource<LunHandle>,
        source_offset: u64,
        offset: u64,
        length: u64,
    ) -> DResult<u64> {
        let dst = self.lun(&r)?;
        let src = self.lun(&source)?;
        let same = src.array() == dst.array() && src.address() == dst.address();
        let overlap = source_offset < offset.saturating_add(length)
            && offset < source_offset.saturating_add(length);
        if same && overlap && length > 0 {
            return Ok(Err(DriverError::InvalidArgument(
                "copy-range-from: source and target ranges overlap on the same LUN".into(),
            )));
        }
        if let Err(e) = self.refuse_if_cancelled() {
            return Ok(Err(e));
        }
        let cancel = self.scope.as_ref().and_then(|s| s.cancel.clone());
        Ok(self.timed(|_| {
            copy_range_cancellable(&src, source_offset, &dst, offset, length, cancel.as_deref())
                .map_err(|e| match e {
                    CopyError::Cancelled => DriverError::BackendError(
                        "copy-range-from stopped: the operation this call serves was aborted \
                         by an operator; clean up and return"
                            .into(),
                    ),
                    CopyError::Io(e) => io_error(&dst, "copy-range-from", e),
                    other => DriverError::BackendError(format!("copy-range-from: {other}")),
                })
        }))
    }

    fn drop(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<()> {
        if self.table.delete(r)?.counted {
            self.open_luns = self.open_luns.saturating_sub(1);
        }
        Ok(())
    }
}

impl fabric::Host for CallState {
    fn local_array(&mut self) -> wasmtime::Result<String> {
        Ok(self.array_name().to_owned())
    }

    fn local_pools(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .scope
            .as_ref()
            .map(|s| s.array.pools().to_vec())
            .unwrap_or_default())
    }

    fn zoned_arrays(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .scope
            .as_ref()
            .map(|s| s.zoned_with.clone())
            .unwrap_or_default())
    }
}

impl fabric::HostPeerArray for CallState {
    fn name(&mut self, r: Resource<PeerArrayHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&r)?.array.name().to_owned())
    }

    fn create_lun(
        &mut self,
        r: Resource<PeerArrayHandle>,
        address: LunAddress,
        size_bytes: u64,
    ) -> DResult<Resource<LunHandle>> {
        let array = self.table.get(&r)?.array.clone();
        self.create_on(&array, &address, size_bytes)
    }

    fn open_lun(
        &mut self,
        r: Resource<PeerArrayHandle>,
        address: LunAddress,
    ) -> DResult<Resource<LunHandle>> {
        let array = self.table.get(&r)?.array.clone();
        self.open_on(&array, &address)
    }

    fn delete_lun(&mut self, r: Resource<PeerArrayHandle>, address: LunAddress) -> DResult<()> {
        let array = self.table.get(&r)?.array.clone();
        Ok(self.timed(|_| array.delete_lun(&addr(&address)).map_err(array_error)))
    }

    fn drop(&mut self, r: Resource<PeerArrayHandle>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

fn state_fault(e: StateError) -> wasmtime::Error {
    match e {
        StateError::Refused(m) => wasmtime::Error::new(DriverFault(m)),
        StateError::Store(m) => wasmtime::Error::new(HostFault(m)),
    }
}

impl state::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.state.get(&key).map_err(state_fault)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        match self.state.set(key, value) {
            Ok(()) => Ok(Ok(())),
            Err(StateError::Refused(m)) => Ok(Err(m)),
            Err(e) => Err(state_fault(e)),
        }
    }

    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        self.state.remove(key).map_err(state_fault)
    }

    fn keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        self.state.keys(&prefix).map_err(state_fault)
    }
}

impl context::Host for CallState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(
                    driver = %self.driver,
                    array = %self.array_name(),
                    "driver wrote more than {MAX_LOG_LINES} log lines in one call; dropping the rest"
                );
            }
            return Ok(());
        }
        let msg = truncate(&self.redact(&message), MAX_MESSAGE_BYTES);
        let (driver, array) = (&self.driver, self.array_name());
        match level {
            LogLevel::Debug => tracing::debug!(driver = %driver, array = %array, "{msg}"),
            LogLevel::Info => tracing::info!(driver = %driver, array = %array, "{msg}"),
            LogLevel::Warn => tracing::warn!(driver = %driver, array = %array, "{msg}"),
            LogLevel::Error => tracing::error!(driver = %driver, array = %array, "{msg}"),
        }
        Ok(())
    }

    fn report_progress(&mut self, done_bytes: u64, total_bytes: u64) -> wasmtime::Result<()> {
        if let Some(p) = self.scope.as_ref().and_then(|s| s.progress.as_ref()) {
            p(done_bytes, total_bytes);
        }
        Ok(())
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}
