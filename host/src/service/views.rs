//! What the service returns to its callers: volumes, attachments, arrays.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{AttachMode, MigrationStatus, VolumeStatus};

/// A request to create a volume.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "db1", "size_bytes": 1_048_576, "array": "t1"}))]
pub struct CreateVolume {
    /// Display name.
    #[schema(min_length = 1)]
    pub name: String,
    /// Size in bytes.
    #[schema(minimum = 512, multiple_of = 512)]
    pub size_bytes: u64,
    /// Array to create it on.
    pub array: String,
    /// Pool (the array's first pool when absent).
    #[serde(default)]
    pub pool: Option<String>,
    /// Free text kept with the volume (at most 255 bytes).
    #[serde(default)]
    #[schema(max_length = 255)]
    pub description: Option<String>,
}

/// A change of a volume's name or description; an absent field stays as
/// it is.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVolume {
    /// New display name.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub name: Option<String>,
    /// New description; empty removes it.
    #[serde(default)]
    #[schema(max_length = 255)]
    pub description: Option<String>,
}

/// A request to make an existing LUN a volume, without copying.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "legacy-db", "array": "p1", "reference": "default/legacy-db"}))]
pub struct ManageVolume {
    /// Display name of the new volume.
    #[schema(min_length = 1)]
    pub name: String,
    /// The array the LUN lives on.
    pub array: String,
    /// Pool (the array's first pool when absent); the driver may read a
    /// reference without a pool as one in it.
    #[serde(default)]
    pub pool: Option<String>,
    /// The LUN, in the array driver's terms (the example drivers take
    /// `<pool>/<lun name>` or `<lun name>`).
    #[schema(min_length = 1, max_length = 1024)]
    pub reference: String,
}

/// A request to attach a volume.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"server": "web1", "mode": "rw"}))]
pub struct AttachVolume {
    /// The server's name.
    #[schema(min_length = 1)]
    pub server: String,
    /// Access mode (rw when absent).
    #[serde(default)]
    pub mode: Option<AttachMode>,
}

/// An attachment as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttachmentView {
    /// Attachment id.
    pub id: Uuid,
    /// The server's name.
    pub server: String,
    /// Access mode.
    pub mode: AttachMode,
    /// `nbd://host:port/EXPORT` (`nbds://` when the NBD server requires
    /// TLS); the export name in it is the credential
    /// that opens the export. Null for reader tokens: they never receive a
    /// credential that writes.
    #[schema(required = true)]
    pub uri: Option<String>,
}

impl VolumeView {
    /// The view for a reader token: no attachment URI (each holds the
    /// credential that opens the export).
    pub fn for_reader(mut self) -> Self {
        for a in &mut self.attachments {
            a.uri = None;
        }
        self
    }
}

/// A volume as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeView {
    /// UUID.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Free text kept with the volume, null when none was given.
    #[schema(required = true)]
    pub description: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Life-cycle status.
    pub status: VolumeStatus,
    /// Status of the last migration, null if never migrated.
    #[schema(required = true)]
    pub migration_status: Option<MigrationStatus>,
    /// Whether a server may attach it now.
    pub attachable: bool,
    /// Array it lives on.
    pub array: String,
    /// Pool it lives in.
    pub pool: String,
    /// Attachments.
    pub attachments: Vec<AttachmentView>,
    /// Creation time (RFC 3339).
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// An array's name and pools: where volumes can live, without the
/// capacity figures [`ArrayView`] measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayPools {
    /// The array.
    pub name: String,
    /// Its pools, the first one the default.
    pub pools: Vec<String>,
}

/// An array as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArrayView {
    /// Array name.
    pub name: String,
    /// Driver name.
    pub driver: String,
    /// Pool names.
    pub pools: Vec<String>,
    /// Arrays zoned with it.
    pub zoned_with: Vec<String>,
    /// Capacity in bytes.
    pub capacity_bytes: u64,
    /// Provisioned bytes.
    pub used_bytes: u64,
    /// Bytes still free on the file system holding the array's LUN files
    /// (what an unprivileged writer may use); null when it cannot be read.
    #[schema(required = true)]
    pub filesystem_free_bytes: Option<u64>,
    /// Size of that file system; null when it cannot be read.
    #[schema(required = true)]
    pub filesystem_total_bytes: Option<u64>,
    /// The origins its driver may reach over HTTP (`http_allow`).
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// The NBD servers its driver may name in a connection (`nbd_allow`).
    #[serde(default)]
    pub nbd_allow: Vec<String>,
    /// Whether its LUNs are files in the host's data directory; false for
    /// an array whose storage lives elsewhere (its file system fields are
    /// then null, and `used_bytes` sums the volumes on it).
    #[serde(default)]
    pub lun_files: bool,
    /// The settings its driver reads.
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    /// The names of the secrets its driver reads; never their text.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// A driver as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriverView {
    /// Driver name.
    pub name: String,
    /// Digest new calls use.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub active_digest: String,
    /// Installed versions.
    pub versions: Vec<crate::model::DriverVersion>,
}

/// The name a status or phase has on the wire (its serde name), as events
/// and messages spell it.
pub(crate) fn wire_name<T: Serialize + std::fmt::Debug>(value: T) -> String {
    serde_json::to_value(&value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{value:?}"))
}

/// Where clients reach the NBD server, and whether it requires TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NbdEndpoint {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) tls: crate::config::NbdTlsMode,
}

impl NbdEndpoint {
    /// The URI of an export: `nbds://` when the server requires TLS (the
    /// scheme clients such as libnbd read as "use TLS"), `nbd://` when
    /// plaintext is allowed.
    pub(crate) fn uri(self, export: &str) -> String {
        let scheme = if self.tls == crate::config::NbdTlsMode::Required {
            "nbds"
        } else {
            "nbd"
        };
        format!("{scheme}://{}/{export}", self.addr)
    }
}

pub(crate) fn attachment_view(a: &crate::model::Attachment, nbd: NbdEndpoint) -> AttachmentView {
    AttachmentView {
        id: a.id,
        server: a.server.clone(),
        mode: a.mode,
        uri: Some(nbd.uri(&a.export_name())),
    }
}

/// Whether a volume in this state may be attached: ready, or migrating on
/// the async path where the destination already serves it.
pub(crate) fn attachable(v: &crate::model::Volume) -> bool {
    match v.status {
        VolumeStatus::Available | VolumeStatus::InUse => true,
        VolumeStatus::Migrating => v.migration_status == Some(MigrationStatus::MigratingAttachable),
        _ => false,
    }
}

pub(crate) fn volume_view(v: &crate::model::Volume, nbd: NbdEndpoint) -> VolumeView {
    VolumeView {
        id: v.id,
        name: v.name.clone(),
        description: v.description.clone(),
        size_bytes: v.size_bytes,
        status: v.status,
        migration_status: v.migration_status,
        attachable: attachable(v),
        array: v.array.clone(),
        pool: v.pool.clone(),
        attachments: v
            .attachments
            .iter()
            .map(|a| attachment_view(a, nbd))
            .collect(),
        created_at: v.created_at.clone(),
    }
}
