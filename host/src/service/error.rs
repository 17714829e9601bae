//! The errors the volume service answers with, each with a stable code that
//! the API sends to clients and the CLI prints.

use uuid::Uuid;

use crate::array::ArrayError;
use crate::runtime::{CallError, RuntimeError};
use crate::store::StoreError;

pub use crate::error_kind::ErrorKind;

/// Why a service call failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No volume with this id.
    #[error("volume {0} not found")]
    VolumeNotFound(Uuid),
    /// No attachment with this id on the volume.
    #[error("attachment {attachment} not found on volume {volume}")]
    AttachmentNotFound {
        /// Volume id.
        volume: Uuid,
        /// Attachment id.
        attachment: Uuid,
    },
    /// No array of this name.
    #[error("array {0:?} not found")]
    ArrayNotFound(String),
    /// The array has no pool of this name.
    #[error("array {array} has no pool {pool:?}")]
    PoolNotFound {
        /// Array name.
        array: String,
        /// Pool asked for.
        pool: String,
    },
    /// The size is zero, not a multiple of 512, or too large.
    #[error("invalid size {0}: must be a positive multiple of 512 bytes")]
    InvalidSize(u64),
    /// The name is empty, too long or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// Some other argument is wrong.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The array cannot hold the volume.
    #[error("not enough space: {0}")]
    NoSpace(String),
    /// The volume has as many attachments as `[volumes]
    /// max_attachments_per_volume` allows.
    #[error(
        "volume {id} has {max} attachments, the most a volume may have \
         ([volumes] max_attachments_per_volume); detach one first"
    )]
    TooManyAttachments {
        /// Volume id.
        id: Uuid,
        /// The configured cap.
        max: u64,
    },
    /// The volume's status forbids the operation.
    #[error("volume {id} is {status}: {reason}")]
    InvalidState {
        /// Volume id.
        id: Uuid,
        /// Its status, as the API shows it.
        status: String,
        /// Why that forbids the operation.
        reason: String,
    },
    /// Another volume manages the LUN already.
    #[error("the LUN {reference:?} is volume {volume} already")]
    AlreadyManaged {
        /// The reference asked for.
        reference: String,
        /// The volume that has it.
        volume: Uuid,
    },
    /// The volume is on that array and pool already.
    #[error("nothing to migrate: {0}")]
    SameLocation(String),
    /// A migration of the volume runs already.
    #[error("volume {0} is migrating already; wait for it to end or abort it")]
    MigrationInProgress(Uuid),
    /// The volume's status does not allow a migration.
    #[error("volume {id} is {status} and cannot be migrated: {reason}")]
    NotMigratable {
        /// Volume id.
        id: Uuid,
        /// Its status.
        status: String,
        /// Why.
        reason: String,
    },
    /// No migration of the volume is running.
    #[error("no migration of volume {0} is running")]
    NoMigrationRunning(Uuid),
    /// The migration can no longer be aborted.
    #[error("the migration of volume {id} cannot be aborted: {reason}")]
    AbortNotPossible {
        /// Volume id.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// An abort came after the point of no return: the volume lives on the
    /// destination and the migration is completing.
    #[error("the migration of volume {id} can no longer be aborted: {reason}")]
    AbortTooLate {
        /// Volume id.
        id: Uuid,
        /// Why.
        reason: String,
    },
    /// A migration started with `lock_volume` runs: requests that would
    /// change the volume's attachments, or abort it, are refused until it
    /// ends.
    #[error(
        "volume {id} is locked by migration {migration} (started with lock_volume): {what} is \
         refused until it ends; reset-status or a forced delete stop it"
    )]
    VolumeLocked {
        /// Volume id.
        id: Uuid,
        /// The locking migration.
        migration: Uuid,
        /// What was refused (`attach`, `detach`, `abort`).
        what: &'static str,
    },
    /// A status an operator may not set by hand (reset-status).
    #[error("invalid status: {0}")]
    InvalidStatus(String),
    /// The status asked for contradicts what the volume is (reset-status).
    #[error("volume {id} cannot be set to {status}: {reason}")]
    InconsistentStatus {
        /// Volume id.
        id: Uuid,
        /// The status asked for.
        status: String,
        /// Why it does not fit.
        reason: String,
    },
    /// The volume's LUN still fills from the migration's source: a reset
    /// would lose the part not copied yet.
    #[error(
        "volume {id} still fills from {source_array}: {done} of {total} bytes are on \
         {array}; wait for it, abort the migration, force the delete, or reset with \
         discard_unhydrated=true to keep only what arrived"
    )]
    HydrationIncomplete {
        /// Volume id.
        id: Uuid,
        /// Where the volume lives.
        array: String,
        /// Where the rest of its data is.
        source_array: String,
        /// Bytes local.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// The migration was told to stop but its runner is still inside a
    /// step (a driver call, a copy pass); the volume stays `migrating`.
    #[error(
        "the migration of volume {0} was told to stop but is still inside a step; ask again \
         in a moment"
    )]
    MigrationStopping(Uuid),
    /// The array's driver is not loaded.
    #[error("driver {0:?} is not loaded")]
    DriverNotLoaded(String),
    /// No driver of this name is installed.
    #[error("driver {0:?} is not installed")]
    DriverNotFound(String),
    /// The driver has no installed version with this digest.
    #[error("driver {name:?} has no installed version {digest}")]
    DriverVersionNotFound {
        /// Driver name.
        name: String,
        /// The digest asked for.
        digest: String,
    },
    /// The version is the driver's active one and cannot be deleted.
    #[error(
        "version {digest} is the active version of driver {name:?}; \
         activate another version before deleting it"
    )]
    DriverVersionActive {
        /// Driver name.
        name: String,
        /// The version.
        digest: String,
    },
    /// A driver call (of a migration, say) runs on the version.
    #[error(
        "{calls} driver call(s) still run on version {digest} of driver {name:?}; \
         retry once they end"
    )]
    DriverVersionInUse {
        /// Driver name.
        name: String,
        /// The version.
        digest: String,
        /// Calls running on it when asked.
        calls: usize,
    },
    /// An uploaded component was refused; the active version is unchanged.
    #[error("driver {name:?} version refused: {source}")]
    DriverRefused {
        /// Driver name.
        name: String,
        /// Why.
        #[source]
        source: RuntimeError,
    },
    /// The driver answered with an error or failed.
    #[error("driver {driver} failed: {source}")]
    Driver {
        /// Driver name.
        driver: String,
        /// What happened.
        #[source]
        source: CallError,
    },
    /// The NBD export an array's driver named cannot be used: not in the
    /// array's `nbd_allow`, unreachable, or refused.
    #[error("array {array}: the NBD export the driver named cannot be used: {message}")]
    RemoteExport {
        /// Array name.
        array: String,
        /// Why (never the export's name).
        message: String,
    },
    /// A file-backed array failed.
    #[error(transparent)]
    Array(#[from] ArrayError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The `[nbd]` TLS settings cannot be used (at start only).
    #[error("invalid config: {0}")]
    NbdTls(#[from] crate::nbd::TlsSetupError),
    /// Something unexpected inside the host.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::VolumeNotFound(_) => "volume_not_found",
            Self::AttachmentNotFound { .. } => "attachment_not_found",
            Self::ArrayNotFound(_) => "array_not_found",
            Self::PoolNotFound { .. } => "pool_not_found",
            Self::InvalidSize(_) => "invalid_size",
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::NoSpace(_) => "no_space",
            Self::InvalidState { .. } => "invalid_state",
            Self::TooManyAttachments { .. } => "too_many_attachments",
            Self::SameLocation(_) => "same_location",
            Self::AlreadyManaged { .. } => "already_managed",
            Self::MigrationInProgress(_) => "migration_in_progress",
            Self::NotMigratable { .. } => "not_migratable",
            Self::NoMigrationRunning(_) => "no_migration_running",
            Self::AbortNotPossible { .. } => "abort_not_possible",
            Self::AbortTooLate { .. } => "abort_too_late",
            Self::VolumeLocked { .. } => "volume_locked",
            Self::InvalidStatus(_) => "invalid_status",
            Self::InconsistentStatus { .. } => "inconsistent_status",
            Self::HydrationIncomplete { .. } => "hydration_incomplete",
            Self::MigrationStopping(_) => "migration_stopping",
            Self::DriverNotLoaded(_) => "driver_not_loaded",
            Self::DriverNotFound(_) => "driver_not_found",
            Self::DriverVersionNotFound { .. } => "driver_version_not_found",
            Self::DriverVersionActive { .. } => "driver_version_active",
            Self::DriverVersionInUse { .. } => "driver_version_in_use",
            Self::DriverRefused { source, .. } => source.code(),
            Self::Driver { source, .. } => source.code(),
            Self::RemoteExport { .. } => "remote_export_unavailable",
            Self::Array(ArrayError::NoSpace { .. }) => "no_space",
            Self::Array(ArrayError::InsufficientSpace { .. }) => "insufficient_space",
            Self::Array(_) => "array_error",
            Self::Store(_) => "store_error",
            Self::NbdTls(_) => "invalid_config",
            Self::Internal(_) => "internal",
        }
    }

    /// The kind of failure, which the API maps to an HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::VolumeNotFound(_)
            | Self::AttachmentNotFound { .. }
            | Self::ArrayNotFound(_)
            | Self::PoolNotFound { .. } => ErrorKind::NotFound,
            Self::InvalidSize(_)
            | Self::InvalidName(_)
            | Self::InvalidArgument(_)
            | Self::SameLocation(_) => ErrorKind::BadRequest,
            Self::MigrationInProgress(_)
            | Self::NotMigratable { .. }
            | Self::NoMigrationRunning(_)
            | Self::AbortNotPossible { .. }
            | Self::AbortTooLate { .. } => ErrorKind::Conflict,
            Self::InvalidStatus(_) => ErrorKind::BadRequest,
            Self::VolumeLocked { .. }
            | Self::InconsistentStatus { .. }
            | Self::HydrationIncomplete { .. } => ErrorKind::Conflict,
            Self::MigrationStopping(_) => ErrorKind::Unavailable,
            Self::NoSpace(_) | Self::Array(ArrayError::NoSpace { .. }) => ErrorKind::Unprocessable,
            Self::InvalidState { .. }
            | Self::TooManyAttachments { .. }
            | Self::AlreadyManaged { .. } => ErrorKind::Conflict,
            Self::Array(ArrayError::InsufficientSpace { .. }) => ErrorKind::InsufficientStorage,
            Self::DriverNotLoaded(_) => ErrorKind::Unavailable,
            Self::DriverNotFound(_) | Self::DriverVersionNotFound { .. } => ErrorKind::NotFound,
            Self::DriverVersionActive { .. } | Self::DriverVersionInUse { .. } => {
                ErrorKind::Conflict
            }
            Self::DriverRefused { source, .. } => match source {
                RuntimeError::TooLarge { .. } => ErrorKind::TooLarge,
                RuntimeError::CompileBusy { .. } => ErrorKind::TooManyRequests,
                RuntimeError::Engine(_) => ErrorKind::Internal,
                RuntimeError::NotPrepared(_) => ErrorKind::NotFound,
                _ => ErrorKind::Unprocessable,
            },
            Self::Driver { source, .. } => source.kind(),
            Self::RemoteExport { .. } => ErrorKind::BadGateway,
            Self::Array(_) | Self::Store(_) | Self::NbdTls(_) | Self::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }
}

impl ServiceError {
    /// Seconds after which the same request may succeed, for an error that
    /// only says "not now" (`Retry-After`).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::DriverRefused {
                source: RuntimeError::CompileBusy { retry_after_secs },
                ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl From<crate::model::TransitionError> for ServiceError {
    /// A move the migration table refuses is a host bug, never a client's.
    fn from(e: crate::model::TransitionError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}
