//! Which contract a driver component was built against, and one way to
//! call it whatever the version: the rest of the host speaks the current
//! contract's records, and a `0.1.0` component's calls go through
//! `contract_v0_1`'s conversions.

use wasmtime::Store;
use wasmtime::component::{Component, Linker, Resource};

use super::bindings::ferry::driver::types as wit;
use super::bindings::{DriverWorld, DriverWorldPre, v0_1};
use super::call::CallState;
use super::contract_v0_1 as c01;
use super::host_impl::{LunHandle, PeerArrayHandle};

/// A version of the driver contract this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `ferry:driver@0.1.x`.
    V0_1,
    /// `ferry:driver@0.2.x`, the current one.
    V0_2,
}

impl Contract {
    /// The versions this host serves, newest first.
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    /// The contract a component built against `version` gets, by semver
    /// (for 0.x the minor must match; patch releases only add docs).
    pub fn for_version(version: (u64, u64, u64)) -> Option<Self> {
        match version {
            (0, 1, _) => Some(Self::V0_1),
            (0, 2, _) => Some(Self::V0_2),
            _ => None,
        }
    }

    /// The package version, as the WIT spells it.
    pub fn version(self) -> &'static str {
        match self {
            Self::V0_1 => "0.1.0",
            Self::V0_2 => "0.2.0",
        }
    }

    /// `0.1.x or 0.2.x`, for errors.
    pub fn supported() -> String {
        Self::ALL
            .iter()
            .rev()
            .map(|c| match c.version().rsplit_once('.') {
                Some((minor, _)) => format!("{minor}.x"),
                None => c.version().to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}

/// Adds every served contract's imports to `linker`; their instance names
/// carry the version, so they sit side by side.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use super::bindings::ferry::driver as now;
    use wasmtime::component::HasSelf;
    // The current world's own interfaces one by one: its wasi:http import
    // is wasmtime's, added below with the policy hooks of `CallState`.
    now::types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    now::block::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    now::fabric::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    now::hydration::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    now::state::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    now::config::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    now::context::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
    v0_1::DriverWorld::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}

/// A component linked and ready to instantiate, per contract.
pub(super) enum WorldPre {
    Current(DriverWorldPre<CallState>),
    V0_1(v0_1::DriverWorldPre<CallState>),
}

impl WorldPre {
    /// Links `component`, built against `contract`.
    pub(super) fn new(
        linker: &Linker<CallState>,
        component: &Component,
        contract: Contract,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match contract {
            Contract::V0_2 => Self::Current(DriverWorldPre::new(pre)?),
            Contract::V0_1 => Self::V0_1(v0_1::DriverWorldPre::new(pre)?),
        })
    }

    pub(super) fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Exports> {
        Ok(match self {
            Self::Current(p) => Exports::Current(p.instantiate(store)?),
            Self::V0_1(p) => Exports::V0_1(p.instantiate(store)?),
        })
    }
}

/// A driver instance's exports, called in the current contract's terms.
pub(super) enum Exports {
    Current(DriverWorld),
    V0_1(v0_1::DriverWorld),
}

type Answer<T> = wasmtime::Result<Result<T, wit::DriverError>>;

fn up<T, U>(
    r: wasmtime::Result<Result<T, v0_1::ferry::driver::types::DriverError>>,
    f: impl FnOnce(T) -> U,
) -> Answer<U> {
    r.map(|inner| inner.map(f).map_err(c01::new_error))
}

impl Exports {
    pub(super) fn call_capabilities(
        &self,
        s: &mut Store<CallState>,
    ) -> wasmtime::Result<wit::Capabilities> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_capabilities(s),
            Self::V0_1(w) => w
                .ferry_driver_driver()
                .call_capabilities(s)
                .map(c01::capabilities),
        }
    }

    pub(super) fn call_create_volume(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
    ) -> Answer<Option<String>> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_create_volume(s, v),
            Self::V0_1(w) => up(
                w.ferry_driver_driver()
                    .call_create_volume(s, &c01::volume(v)),
                |u| u,
            ),
        }
    }

    pub(super) fn call_delete_volume(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
    ) -> Answer<()> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_delete_volume(s, v),
            Self::V0_1(w) => up(
                w.ferry_driver_driver()
                    .call_delete_volume(s, &c01::volume(v)),
                |u| u,
            ),
        }
    }

    pub(super) fn call_initialize_connection(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        c: &wit::Connector,
    ) -> Answer<wit::ConnectionInfo> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_initialize_connection(s, v, c),
            Self::V0_1(w) => up(
                w.ferry_driver_driver().call_initialize_connection(
                    s,
                    &c01::volume(v),
                    &c01::connector(c),
                ),
                c01::connection_info,
            ),
        }
    }

    pub(super) fn call_terminate_connection(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        c: &wit::Connector,
    ) -> Answer<()> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_terminate_connection(s, v, c),
            Self::V0_1(w) => up(
                w.ferry_driver_driver().call_terminate_connection(
                    s,
                    &c01::volume(v),
                    &c01::connector(c),
                ),
                |u| u,
            ),
        }
    }

    pub(super) fn call_manage_existing(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        reference: &str,
    ) -> Answer<wit::Managed> {
        match self {
            Self::Current(w) => w
                .ferry_driver_driver()
                .call_manage_existing(s, v, reference),
            // Contract 0.1.0 has no such call.
            Self::V0_1(_) => Ok(Err(wit::DriverError::Unsupported(
                "this driver was built against contract 0.1.0, which has no manage-existing".into(),
            ))),
        }
    }

    pub(super) fn call_unmanage(&self, s: &mut Store<CallState>, v: &wit::Volume) -> Answer<()> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_unmanage(s, v),
            // Nothing to undo: a 0.1.0 driver never managed anything.
            Self::V0_1(_) => Ok(Ok(())),
        }
    }

    pub(super) fn call_migrate_volume(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        d: &wit::Destination,
        peer: Option<Resource<PeerArrayHandle>>,
    ) -> Answer<wit::MigrateOutcome> {
        match self {
            Self::Current(w) => w.ferry_driver_driver().call_migrate_volume(s, v, d, peer),
            Self::V0_1(w) => up(
                w.ferry_driver_driver().call_migrate_volume(
                    s,
                    &c01::volume(v),
                    &c01::destination(d),
                    peer,
                ),
                c01::migrate_outcome,
            ),
        }
    }

    pub(super) fn call_take_over_remote_lun(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        remote: Resource<LunHandle>,
    ) -> Answer<()> {
        match self {
            Self::Current(w) => w
                .ferry_driver_driver()
                .call_take_over_remote_lun(s, v, remote),
            Self::V0_1(w) => up(
                w.ferry_driver_driver()
                    .call_take_over_remote_lun(s, &c01::volume(v), remote),
                |u| u,
            ),
        }
    }

    pub(super) fn call_migrate_volume_target(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        src: &wit::Source,
        remote: Resource<LunHandle>,
    ) -> Answer<wit::TargetOutcome> {
        match self {
            Self::Current(w) => w
                .ferry_driver_driver()
                .call_migrate_volume_target(s, v, src, remote),
            Self::V0_1(w) => up(
                w.ferry_driver_driver().call_migrate_volume_target(
                    s,
                    &c01::volume(v),
                    &c01::source(src),
                    remote,
                ),
                c01::target_outcome,
            ),
        }
    }

    pub(super) fn call_complete_migration_target(
        &self,
        s: &mut Store<CallState>,
        v: &wit::Volume,
        src: &wit::Source,
        remote: Resource<LunHandle>,
    ) -> Answer<wit::Completion> {
        match self {
            Self::Current(w) => w
                .ferry_driver_driver()
                .call_complete_migration_target(s, v, src, remote),
            Self::V0_1(w) => up(
                w.ferry_driver_driver().call_complete_migration_target(
                    s,
                    &c01::volume(v),
                    &c01::source(src),
                    remote,
                ),
                c01::completion,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_semver_for_zero_major() {
        assert_eq!(Contract::for_version((0, 1, 0)), Some(Contract::V0_1));
        assert_eq!(Contract::for_version((0, 1, 9)), Some(Contract::V0_1));
        assert_eq!(Contract::for_version((0, 2, 3)), Some(Contract::V0_2));
        assert_eq!(Contract::for_version((0, 3, 0)), None);
        assert_eq!(Contract::for_version((1, 2, 0)), None);
        assert_eq!(Contract::supported(), "0.1.x or 0.2.x");
    }
}
