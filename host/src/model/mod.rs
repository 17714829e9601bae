//! Domain records: what Ferry knows about volumes, attachments and drivers.
//!
//! These are the persisted shapes (the store serializes them) and the shapes
//! the service hands to the API. Wire views that differ live in `api`.

mod migration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use migration::{
    Migration, MigrationEnd, MigrationPath, MigrationPhase, MigrationStatus, Placement,
    SourceRemoval, TransitionError,
};

/// Where a LUN lives on an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LunAddress {
    /// Pool name on the array.
    pub pool: String,
    /// LUN name in the pool.
    pub name: String,
}

/// Where the host finds an exposed volume's data: a LUN of a host-held
/// array, or an export the array serves over NBD (`nbd://host:port/name`).
/// Stored untagged so that attachments recorded before NBD exports existed,
/// a bare LUN address, still read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataPath {
    /// A LUN the host holds.
    Lun(LunAddress),
    /// An NBD export of the array.
    Nbd {
        /// The export's `nbd://` URI, as the driver named it.
        nbd_uri: String,
    },
}

impl DataPath {
    /// The LUN, for the paths that need one the host holds.
    pub fn lun(&self) -> Option<&LunAddress> {
        match self {
            DataPath::Lun(l) => Some(l),
            DataPath::Nbd { .. } => None,
        }
    }
}

impl std::fmt::Display for DataPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataPath::Lun(l) => write!(f, "LUN {}/{}", l.pool, l.name),
            DataPath::Nbd { nbd_uri } => {
                write!(f, "NBD export {}", crate::outbound::redact_uri(nbd_uri))
            }
        }
    }
}

/// Life-cycle status of a volume (seed 003: `migrating` for a whole migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Access mode of an attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
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
    /// Attachment id.
    pub id: Uuid,
    /// The NBD export name: a secret that only the attaching client
    /// receives, and the credential that opens the export. Attachments made
    /// before export names were secret have none and keep their id as
    /// their export name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
    /// The server's name, as the client gave it.
    pub server: String,
    /// Access mode.
    pub mode: AttachMode,
    /// Where the driver exposed this attachment's data.
    pub lun: DataPath,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

impl Attachment {
    /// The name its NBD export is published under.
    pub fn export_name(&self) -> String {
        self.export.clone().unwrap_or_else(|| self.id.to_string())
    }
}

/// A new secret export name: 256 random bits, URL-safe, so it can stand in
/// an `nbd://host:port/NAME` URI as it is.
pub fn new_export_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A volume, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// UUID; never changes, also across migrations.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Free text an operator keeps with the volume; absent in records
    /// written before hosts kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
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

/// One installed version of a driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriverVersion {
    /// Lowercase hex SHA-256 of the component bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub digest: String,
    /// When it was installed (RFC 3339).
    #[schema(format = DateTime)]
    pub installed_at: String,
    /// The contract version the component was built against (`0.1.0` or
    /// `0.2.0`); absent for versions installed before hosts recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
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

impl Volume {
    /// A new volume being created (or managed) on `array`/`pool`, with a
    /// fresh id and no storage known yet.
    pub fn creating(name: String, size_bytes: u64, array: String, pool: String) -> Self {
        Self {
            id: Uuid::new_v4(),
            name,
            description: None,
            size_bytes,
            status: VolumeStatus::Creating,
            migration_status: None,
            array,
            pool,
            provider_location: None,
            attachments: Vec::new(),
            created_at: now_rfc3339(),
            migration: None,
        }
    }
}

/// Checks an array, pool or LUN name: 1 to 128 characters of
/// `[A-Za-z0-9._-]`, not starting with a dot, so a name can never leave its
/// directory. The error says which rule it breaks.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 128 {
        return Err("must be 1 to 128 characters");
    }
    if name.starts_with('.') {
        return Err("must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Current time as RFC 3339 with milliseconds, UTC.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
