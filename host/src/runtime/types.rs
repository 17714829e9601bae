//! The records the volume service exchanges with drivers, in host terms, and
//! their conversion to and from the WIT types of `bindings`.

use serde::{Deserialize, Serialize};

use super::bindings::ferry::driver::types as wit;
use crate::model::{DataPath, LunAddress};

/// A volume as a driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRef {
    /// UUID; never changes.
    pub id: uuid::Uuid,
    /// Display name.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Pool of the driver's array.
    pub pool: String,
    /// The driver's last model update.
    pub provider_location: Option<String>,
}

/// Who a LUN is exposed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connector {
    /// A server attached over NBD.
    Server(String),
    /// Another array over the fabric.
    Array(String),
}

/// Where the data of an exposed volume is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A LUN of the driver's array or an NBD export it serves.
    pub data: DataPath,
    /// True when the connector must not write.
    pub read_only: bool,
}

impl ConnectionInfo {
    /// The LUN, for the paths that need one the host holds (take-over,
    /// hydration, the live switch, the conformance kit's checks).
    pub fn host_lun(&self) -> Result<&LunAddress, NotHostLun> {
        self.data
            .lun()
            .ok_or_else(|| NotHostLun(self.data.to_string()))
    }
}

/// A path that needs a LUN the host holds met a driver that exposed an
/// NBD export.
#[derive(Debug, thiserror::Error)]
#[error("the driver exposed {0}, and this path needs a LUN the host holds")]
pub struct NotHostLun(String);

/// What a driver supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Capabilities {
    /// Can take over a zoned array's LUN.
    pub take_over: bool,
    /// `migrate-volume-target` may answer asynchronously.
    pub async_target_migration: bool,
    /// Can migrate as the source.
    pub source_migration: bool,
    /// LUNs are thin.
    pub sparse: bool,
    /// `migrate-volume` may move an attached volume, its I/O held still.
    #[serde(default)]
    pub live_move: bool,
}

impl Capabilities {
    /// What is declared, as the WIT names it (`take-over, sparse`), or
    /// `none`.
    pub fn describe(&self) -> String {
        let named = [
            (self.take_over, "take-over"),
            (self.async_target_migration, "async-target-migration"),
            (self.source_migration, "source-migration"),
            (self.live_move, "live-move"),
            (self.sparse, "sparse"),
        ];
        let on: Vec<&str> = named.iter().filter(|(s, _)| *s).map(|(_, n)| *n).collect();
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join(", ")
        }
    }
}

/// The destination of a migration, for the source driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Destination array.
    pub array: String,
    /// Destination pool.
    pub pool: String,
    /// Driver of the destination array.
    pub driver: String,
}

/// The source of a migration, for the target driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Source array.
    pub array: String,
    /// Pool on the source array.
    pub pool: String,
    /// Driver of the source array.
    pub driver: String,
}

/// Answer of `manage-existing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// The LUN's size: the volume's.
    pub size_bytes: u64,
    /// Provider location to store with the volume.
    pub model_update: Option<String>,
}

/// Answer of `migrate-volume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOutcome {
    /// The driver moved the volume.
    pub moved: bool,
    /// New provider location on the destination.
    pub model_update: Option<String>,
}

/// Answer of `migrate-volume-target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetOutcome {
    /// The target driver moved (or is moving) the volume.
    pub moved: bool,
    /// Data still flows; poll `complete-migration-target`.
    pub is_async: bool,
    /// New provider location on the target.
    pub model_update: Option<String>,
}

/// One poll of an asynchronous target migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The migration is complete and cleaned up.
    pub done: bool,
    /// Bytes moved so far.
    pub done_bytes: u64,
    /// Bytes to move in all.
    pub total_bytes: u64,
}

/// The class of an error a driver returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverErrorKind {
    /// The driver does not support the request.
    Unsupported,
    /// An argument is malformed or out of range.
    InvalidArgument,
    /// Something the call names does not exist.
    NotFound,
    /// The array has no room.
    NoSpace,
    /// The array failed.
    BackendError,
}

impl DriverErrorKind {
    /// Stable snake_case code, as the API reports it.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unsupported => "driver_unsupported",
            Self::InvalidArgument => "driver_invalid_argument",
            Self::NotFound => "driver_not_found",
            Self::NoSpace => "driver_no_space",
            Self::BackendError => "driver_backend_error",
        }
    }
}

impl std::fmt::Display for DriverErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unsupported => "unsupported",
            Self::InvalidArgument => "invalid argument",
            Self::NotFound => "not found",
            Self::NoSpace => "no space",
            Self::BackendError => "backend error",
        })
    }
}

impl From<&VolumeRef> for wit::Volume {
    fn from(v: &VolumeRef) -> Self {
        Self {
            id: v.id.to_string(),
            name: v.name.clone(),
            size_bytes: v.size_bytes,
            pool: v.pool.clone(),
            provider_location: v.provider_location.clone(),
        }
    }
}

impl From<&Connector> for wit::Connector {
    fn from(c: &Connector) -> Self {
        match c {
            Connector::Server(s) => Self::Server(s.clone()),
            Connector::Array(a) => Self::Array(a.clone()),
        }
    }
}

impl From<&Destination> for wit::Destination {
    fn from(d: &Destination) -> Self {
        Self {
            array: d.array.clone(),
            pool: d.pool.clone(),
            driver: d.driver.clone(),
        }
    }
}

impl From<&Source> for wit::Source {
    fn from(s: &Source) -> Self {
        Self {
            array: s.array.clone(),
            pool: s.pool.clone(),
            driver: s.driver.clone(),
        }
    }
}

impl From<wit::Capabilities> for Capabilities {
    fn from(c: wit::Capabilities) -> Self {
        Self {
            take_over: c.take_over,
            async_target_migration: c.async_target_migration,
            source_migration: c.source_migration,
            sparse: c.sparse,
            live_move: c.live_move,
        }
    }
}

impl From<&LunAddress> for wit::LunAddress {
    fn from(a: &LunAddress) -> Self {
        Self {
            pool: a.pool.clone(),
            name: a.name.clone(),
        }
    }
}

impl From<wit::LunAddress> for LunAddress {
    fn from(a: wit::LunAddress) -> Self {
        Self {
            pool: a.pool,
            name: a.name,
        }
    }
}

/// Splits a WIT driver error into its kind and message.
pub(crate) fn split_driver_error(e: wit::DriverError) -> (DriverErrorKind, String) {
    match e {
        wit::DriverError::Unsupported(m) => (DriverErrorKind::Unsupported, m),
        wit::DriverError::InvalidArgument(m) => (DriverErrorKind::InvalidArgument, m),
        wit::DriverError::NotFound(m) => (DriverErrorKind::NotFound, m),
        wit::DriverError::NoSpace(m) => (DriverErrorKind::NoSpace, m),
        wit::DriverError::BackendError(m) => (DriverErrorKind::BackendError, m),
    }
}
