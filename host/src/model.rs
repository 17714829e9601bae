//! Domain records: what Ferry knows about volumes, attachments and drivers.
//!
//! These are the persisted shapes (the store serializes them) and the shapes
//! the service hands to the API. Wire views that differ live in `api`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a LUN lives on an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LunAddress {
    /// Pool name on the array.
    pub pool: String,
    /// LUN name in the pool.
    pub name: String,
}

/// Life-cycle status of a volume (seed 003: `migrating` for a whole migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeStatus {
    /// The driver is creating the volume's storage.
    Creating,
    /// Ready and not attached.
    Available,
    /// Attached to at least one server.
    InUse,
    /// The driver is deleting the volume's storage.
    Deleting,
    /// A migration runs.
    Migrating,
    /// The last life-cycle call failed; the volume can still be deleted.
    Error,
}

/// Status of the last migration of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    /// Admitted; nothing moved yet.
    Starting,
    /// Data moves; the volume is not attachable.
    Migrating,
    /// The volume lives on the destination and is attachable while data flows.
    MigratingAttachable,
    /// Data moved; cleaning up.
    Completing,
    /// Finished; the volume lives on the destination.
    Success,
    /// Failed; the volume is back where it was.
    Error,
    /// Stopped by an operator; the volume is back where it was.
    Aborted,
}

/// Access mode of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Read and write.
    #[default]
    Rw,
    /// Read only.
    Ro,
}

/// A volume connected to a server through an NBD export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Attachment id; also the NBD export name.
    pub id: Uuid,
    /// The server's name, as the client gave it.
    pub server: String,
    /// Access mode.
    pub mode: AttachMode,
    /// The LUN the driver exposed for this attachment.
    pub lun: LunAddress,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// A volume, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// UUID; never changes, also across migrations.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Size in bytes, a positive multiple of 512.
    pub size_bytes: u64,
    /// Life-cycle status.
    pub status: VolumeStatus,
    /// Status of the last migration; `None` if never migrated.
    pub migration_status: Option<MigrationStatus>,
    /// Array the volume lives on.
    pub array: String,
    /// Pool on that array.
    pub pool: String,
    /// The driver's model update.
    pub provider_location: Option<String>,
    /// Servers the volume is attached to.
    pub attachments: Vec<Attachment>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The last migration of this volume, kept inside the volume record so
    /// that every transition is one atomic update of one record.
    #[serde(default)]
    pub migration: Option<Migration>,
}

/// Which way a migration moves the data (seed 000's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPath {
    /// The source driver moved it by its own means.
    SourceDriver,
    /// The target driver took over the source LUN and moved it.
    TargetDriver,
    /// The target driver took over the source LUN; data flows while the
    /// volume is already attachable on the target.
    TargetDriverAsync,
    /// The host copied it to a hidden destination LUN.
    HostCopy,
}

/// Where a volume lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Array name.
    pub array: String,
    /// Pool name.
    pub pool: String,
    /// The driver's model update there, if any.
    pub provider_location: Option<String>,
}

/// The step a migration is at: the journal that crash recovery reads. Each
/// step is persisted before its side effect starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Admitted; nothing done yet.
    Admitted,
    /// The source driver's `migrate-volume` runs.
    SourceDriver,
    /// The source exposes its LUN; the target takes it over and migrates.
    TargetDriver,
    /// The target driver creates the hidden destination for a host copy.
    HostCopyPrepare,
    /// The host copies; `checkpoint` says how far it got durably.
    HostCopy,
    /// Async target path: the volume lives on the destination and is
    /// attachable while it hydrates; the host polls the target driver.
    Hydrating,
    /// Abort of the async target path: the regions written on the
    /// destination since the switch are copied back to the source while the
    /// volume still serves from the destination; then it switches back.
    CopyingBack,
    /// The volume lives on the destination; the source is being removed.
    CleanupSource,
    /// Undoing: the destination is being removed.
    RollingBack,
    /// Over (success, error or aborted).
    Finished,
}

/// One migration of a volume: path, phase, progress, outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Migration id.
    pub id: Uuid,
    /// Where the volume was when the migration started.
    pub source: Placement,
    /// Where it goes (`provider_location` set once the destination exists).
    pub destination: Placement,
    /// The volume's status before the migration, restored after.
    pub original_status: VolumeStatus,
    /// Skip the driver paths.
    pub force_host_copy: bool,
    /// Refuse other operations while migrating (always true today: a
    /// migrating volume is locked; kept for the API's sake).
    pub lock_volume: bool,
    /// Journal step.
    pub phase: MigrationPhase,
    /// The path taken, once known.
    pub path: Option<MigrationPath>,
    /// Status as the API shows it.
    pub status: MigrationStatus,
    /// Bytes moved so far.
    pub done_bytes: u64,
    /// Bytes to move in all.
    pub total_bytes: u64,
    /// Host copy: offset below which the destination is complete and synced.
    pub checkpoint: u64,
    /// An operator asked to abort.
    pub abort_requested: bool,
    /// The source LUN the source driver exposed to the destination array
    /// (target paths), handed again to every `complete-migration-target`.
    #[serde(default)]
    pub remote: Option<LunAddress>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When it was admitted (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
}

/// One installed version of a driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverVersion {
    /// Lowercase hex SHA-256 of the component bytes.
    pub digest: String,
    /// When it was installed (RFC 3339).
    pub installed_at: String,
}

/// A driver by name: its versions and the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverRecord {
    /// Driver name, as arrays refer to it.
    pub name: String,
    /// Digest of the version new calls use.
    pub active_digest: String,
    /// Every installed version, oldest first.
    pub versions: Vec<DriverVersion>,
}

/// Current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
