//! Contract `0.1.0` on this host: its imports answered by the current
//! contract's host functions, and its exports called with the current
//! contract's records. The two differ only where `0.2.0` added something,
//! so every function here is a conversion and a delegation; a `0.1.0`
//! driver reads as one that declares none of the new capabilities.

use wasmtime::component::Resource;

use super::bindings::ferry::driver as now;
use super::bindings::v0_1::ferry::driver as old;
use super::call::CallState;
use super::host_impl::{LunHandle, PeerArrayHandle};

type OldResult<T> = wasmtime::Result<Result<T, old::types::DriverError>>;

/// Converts a current-contract answer of a host function to `0.1.0`.
fn back<T, U>(r: wasmtime::Result<Result<T, now::types::DriverError>>) -> OldResult<U>
where
    T: Into<U>,
{
    r.map(|inner| inner.map(Into::into).map_err(old_error))
}

fn old_error(e: now::types::DriverError) -> old::types::DriverError {
    use now::types::DriverError as N;
    use old::types::DriverError as O;
    match e {
        N::Unsupported(m) => O::Unsupported(m),
        N::InvalidArgument(m) => O::InvalidArgument(m),
        N::NotFound(m) => O::NotFound(m),
        N::NoSpace(m) => O::NoSpace(m),
        N::BackendError(m) => O::BackendError(m),
    }
}

/// A `0.1.0` driver's error, in current terms.
pub(super) fn new_error(e: old::types::DriverError) -> now::types::DriverError {
    use now::types::DriverError as N;
    use old::types::DriverError as O;
    match e {
        O::Unsupported(m) => N::Unsupported(m),
        O::InvalidArgument(m) => N::InvalidArgument(m),
        O::NotFound(m) => N::NotFound(m),
        O::NoSpace(m) => N::NoSpace(m),
        O::BackendError(m) => N::BackendError(m),
    }
}

fn new_address(a: old::types::LunAddress) -> now::types::LunAddress {
    now::types::LunAddress {
        pool: a.pool,
        name: a.name,
    }
}

impl From<now::types::LunAddress> for old::types::LunAddress {
    fn from(a: now::types::LunAddress) -> Self {
        Self {
            pool: a.pool,
            name: a.name,
        }
    }
}

impl From<now::types::Extent> for old::types::Extent {
    fn from(e: now::types::Extent) -> Self {
        Self {
            offset: e.offset,
            length: e.length,
        }
    }
}

impl From<now::hydration::HydrationProgress> for old::hydration::HydrationProgress {
    fn from(p: now::hydration::HydrationProgress) -> Self {
        Self {
            done_bytes: p.done_bytes,
            total_bytes: p.total_bytes,
            complete: p.complete,
        }
    }
}

impl old::types::Host for CallState {}

impl old::block::Host for CallState {
    fn create_lun(
        &mut self,
        address: old::types::LunAddress,
        size_bytes: u64,
    ) -> OldResult<Resource<LunHandle>> {
        back(now::block::Host::create_lun(
            self,
            new_address(address),
            size_bytes,
        ))
    }

    fn open_lun(&mut self, address: old::types::LunAddress) -> OldResult<Resource<LunHandle>> {
        back(now::block::Host::open_lun(self, new_address(address)))
    }

    fn delete_lun(&mut self, address: old::types::LunAddress) -> OldResult<()> {
        back(now::block::Host::delete_lun(self, new_address(address)))
    }

    fn list_luns(&mut self, pool: String) -> OldResult<Vec<String>> {
        back(now::block::Host::list_luns(self, pool))
    }
}

impl old::block::HostLun for CallState {
    fn array(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<String> {
        now::block::HostLun::array(self, r)
    }

    fn address(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<old::types::LunAddress> {
        now::block::HostLun::address(self, r).map(Into::into)
    }

    fn size(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<u64> {
        now::block::HostLun::size(self, r)
    }

    fn read(&mut self, r: Resource<LunHandle>, offset: u64, length: u32) -> OldResult<Vec<u8>> {
        back(now::block::HostLun::read(self, r, offset, length))
    }

    fn write(&mut self, r: Resource<LunHandle>, offset: u64, data: Vec<u8>) -> OldResult<()> {
        back(now::block::HostLun::write(self, r, offset, data))
    }

    fn write_zeroes(&mut self, r: Resource<LunHandle>, offset: u64, length: u64) -> OldResult<()> {
        back(now::block::HostLun::write_zeroes(self, r, offset, length))
    }

    fn discard(&mut self, r: Resource<LunHandle>, offset: u64, length: u64) -> OldResult<()> {
        back(now::block::HostLun::discard(self, r, offset, length))
    }

    fn flush(&mut self, r: Resource<LunHandle>) -> OldResult<()> {
        back(now::block::HostLun::flush(self, r))
    }

    fn allocated_extents(
        &mut self,
        r: Resource<LunHandle>,
        offset: u64,
        length: u64,
    ) -> OldResult<Vec<old::types::Extent>> {
        now::block::HostLun::allocated_extents(self, r, offset, length).map(|inner| {
            inner
                .map(|v| v.into_iter().map(Into::into).collect())
                .map_err(old_error)
        })
    }

    fn copy_range_from(
        &mut self,
        r: Resource<LunHandle>,
        source: Resource<LunHandle>,
        source_offset: u64,
        offset: u64,
        length: u64,
    ) -> OldResult<u64> {
        back(now::block::HostLun::copy_range_from(
            self,
            r,
            source,
            source_offset,
            offset,
            length,
        ))
    }

    fn drop(&mut self, r: Resource<LunHandle>) -> wasmtime::Result<()> {
        now::block::HostLun::drop(self, r)
    }
}

impl old::fabric::Host for CallState {
    fn local_array(&mut self) -> wasmtime::Result<String> {
        now::fabric::Host::local_array(self)
    }

    fn local_pools(&mut self) -> wasmtime::Result<Vec<String>> {
        now::fabric::Host::local_pools(self)
    }

    fn zoned_arrays(&mut self) -> wasmtime::Result<Vec<String>> {
        now::fabric::Host::zoned_arrays(self)
    }
}

impl old::fabric::HostPeerArray for CallState {
    fn name(&mut self, r: Resource<PeerArrayHandle>) -> wasmtime::Result<String> {
        now::fabric::HostPeerArray::name(self, r)
    }

    fn create_lun(
        &mut self,
        r: Resource<PeerArrayHandle>,
        address: old::types::LunAddress,
        size_bytes: u64,
    ) -> OldResult<Resource<LunHandle>> {
        back(now::fabric::HostPeerArray::create_lun(
            self,
            r,
            new_address(address),
            size_bytes,
        ))
    }

    fn open_lun(
        &mut self,
        r: Resource<PeerArrayHandle>,
        address: old::types::LunAddress,
    ) -> OldResult<Resource<LunHandle>> {
        back(now::fabric::HostPeerArray::open_lun(
            self,
            r,
            new_address(address),
        ))
    }

    fn delete_lun(
        &mut self,
        r: Resource<PeerArrayHandle>,
        address: old::types::LunAddress,
    ) -> OldResult<()> {
        back(now::fabric::HostPeerArray::delete_lun(
            self,
            r,
            new_address(address),
        ))
    }

    fn drop(&mut self, r: Resource<PeerArrayHandle>) -> wasmtime::Result<()> {
        now::fabric::HostPeerArray::drop(self, r)
    }
}

impl old::hydration::Host for CallState {
    fn start(
        &mut self,
        local: Resource<LunHandle>,
        remote: Resource<LunHandle>,
    ) -> OldResult<String> {
        back(now::hydration::Host::start(self, local, remote))
    }

    fn progress(&mut self, id: String) -> OldResult<old::hydration::HydrationProgress> {
        back(now::hydration::Host::progress(self, id))
    }

    fn finish(&mut self, id: String) -> OldResult<()> {
        back(now::hydration::Host::finish(self, id))
    }

    fn abandon(&mut self, id: String) -> OldResult<()> {
        back(now::hydration::Host::abandon(self, id))
    }
}

impl old::state::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        now::state::Host::get(self, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        now::state::Host::set(self, key, value)
    }

    fn remove(&mut self, key: String) -> wasmtime::Result<()> {
        now::state::Host::remove(self, key)
    }

    fn keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        now::state::Host::keys(self, prefix)
    }
}

impl old::context::Host for CallState {
    fn log(&mut self, level: old::types::LogLevel, message: String) -> wasmtime::Result<()> {
        use now::types::LogLevel as N;
        use old::types::LogLevel as O;
        let level = match level {
            O::Debug => N::Debug,
            O::Info => N::Info,
            O::Warn => N::Warn,
            O::Error => N::Error,
        };
        now::context::Host::log(self, level, message)
    }

    fn report_progress(&mut self, done_bytes: u64, total_bytes: u64) -> wasmtime::Result<()> {
        now::context::Host::report_progress(self, done_bytes, total_bytes)
    }

    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        now::context::Host::now_ms(self)
    }
}

// The export side: the current contract's records going in, `0.1.0`'s
// coming back.

pub(super) fn volume(v: &now::types::Volume) -> old::types::Volume {
    old::types::Volume {
        id: v.id.clone(),
        name: v.name.clone(),
        size_bytes: v.size_bytes,
        pool: v.pool.clone(),
        provider_location: v.provider_location.clone(),
    }
}

pub(super) fn connector(c: &now::types::Connector) -> old::types::Connector {
    match c {
        now::types::Connector::Server(s) => old::types::Connector::Server(s.clone()),
        now::types::Connector::Array(a) => old::types::Connector::Array(a.clone()),
    }
}

pub(super) fn destination(d: &now::types::Destination) -> old::types::Destination {
    old::types::Destination {
        array: d.array.clone(),
        pool: d.pool.clone(),
        driver: d.driver.clone(),
    }
}

pub(super) fn source(s: &now::types::Source) -> old::types::Source {
    old::types::Source {
        array: s.array.clone(),
        pool: s.pool.clone(),
        driver: s.driver.clone(),
    }
}

pub(super) fn capabilities(c: old::types::Capabilities) -> now::types::Capabilities {
    now::types::Capabilities {
        take_over: c.take_over,
        async_target_migration: c.async_target_migration,
        source_migration: c.source_migration,
        sparse: c.sparse,
        live_move: false,
    }
}

pub(super) fn connection_info(c: old::types::ConnectionInfo) -> now::types::ConnectionInfo {
    now::types::ConnectionInfo {
        data: now::types::DataPath::Lun(new_address(c.lun)),
        read_only: c.read_only,
    }
}

pub(super) fn migrate_outcome(o: old::types::MigrateOutcome) -> now::types::MigrateOutcome {
    now::types::MigrateOutcome {
        moved: o.moved,
        model_update: o.model_update,
    }
}

pub(super) fn target_outcome(o: old::types::TargetOutcome) -> now::types::TargetOutcome {
    now::types::TargetOutcome {
        moved: o.moved,
        is_async: o.is_async,
        model_update: o.model_update,
    }
}

pub(super) fn completion(c: old::types::Completion) -> now::types::Completion {
    now::types::Completion {
        done: c.done,
        done_bytes: c.done_bytes,
        total_bytes: c.total_bytes,
    }
}
