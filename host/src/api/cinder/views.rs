//! A volume, an attachment, a pool and a volume type as Cinder shows them,
//! made from Ferry's own views.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::location::{self, VolumeType};
use crate::model::{MigrationStatus, VolumeStatus};
use crate::service::{ArrayPools, ArrayView, VolumeView};

const GIB: u64 = 1 << 30;

/// Whole GiB, rounded up: Cinder sizes are integers.
pub fn gib(bytes: u64) -> u64 {
    bytes.div_ceil(GIB)
}

/// Bytes of `gib` GiB, if that fits.
pub fn bytes_of(gib: u64) -> Option<u64> {
    gib.checked_mul(GIB)
}

/// A link to a resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    /// `self`.
    rel: &'static str,
    /// Its path.
    href: String,
}

/// A volume in a plain list.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolumeSummary {
    /// UUID.
    id: Uuid,
    /// Display name.
    name: String,
    /// Its address.
    links: Vec<Link>,
}

/// A server's use of a volume.
#[derive(Debug, Serialize, ToSchema)]
pub struct CinderAttachment {
    /// The attachment's id.
    id: Uuid,
    /// The same id, under Cinder's other name for it.
    attachment_id: Uuid,
    /// The volume.
    volume_id: Uuid,
    /// The server, as it named itself (the connector's `host`).
    server_id: String,
    /// The same server's host name.
    host_name: String,
    /// Device path on the server; Ferry does not know it.
    #[schema(required = true)]
    device: Option<String>,
    /// When it was attached; not recorded.
    #[schema(required = true)]
    attached_at: Option<String>,
}

/// A volume as Cinder shows it in `show` and `detail`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CinderVolume {
    /// UUID; it stays the same across migrations.
    id: Uuid,
    /// Display name.
    name: String,
    /// Free text, or null.
    #[schema(required = true)]
    description: Option<String>,
    /// Size in GiB, rounded up.
    size: u64,
    /// Life-cycle status; `migrating` while a migration runs (design).
    status: VolumeStatus,
    /// The last migration's status, or null.
    #[schema(required = true)]
    migration_status: Option<MigrationStatus>,
    /// The same, under Cinder's admin attribute.
    #[serde(rename = "os-vol-mig-status-attr:migstat")]
    #[schema(required = true)]
    migstat: Option<MigrationStatus>,
    /// Never set: a volume keeps its id when it moves.
    #[serde(rename = "os-vol-mig-status-attr:name_id")]
    #[schema(required = true)]
    name_id: Option<Uuid>,
    /// Where it lives: `HOST@ARRAY#POOL`.
    #[serde(rename = "os-vol-host-attr:host")]
    host: String,
    /// The project in the request's path.
    #[serde(rename = "os-vol-tenant-attr:tenant_id")]
    tenant_id: String,
    /// The type naming where it lives.
    volume_type: String,
    /// That type's id.
    volume_type_id: Uuid,
    /// Always `nova`.
    availability_zone: &'static str,
    /// Servers using it.
    attachments: Vec<CinderAttachment>,
    /// `"false"`: Ferry does not boot servers.
    bootable: &'static str,
    /// False.
    encrypted: bool,
    /// True: a Ferry volume takes several attachments.
    multiattach: bool,
    /// Always empty.
    metadata: BTreeMap<String, String>,
    /// Creation time.
    created_at: String,
    /// Not tracked.
    #[schema(required = true)]
    updated_at: Option<String>,
    /// Not tracked.
    #[schema(required = true)]
    user_id: Option<String>,
    /// Ferry makes no snapshots.
    #[schema(required = true)]
    snapshot_id: Option<Uuid>,
    /// Ferry does not clone.
    #[schema(required = true)]
    source_volid: Option<Uuid>,
    /// No replication.
    #[schema(required = true)]
    replication_status: Option<String>,
    /// No groups.
    #[schema(required = true)]
    consistencygroup_id: Option<Uuid>,
    /// No groups.
    #[schema(required = true)]
    group_id: Option<Uuid>,
    /// Not given.
    #[schema(required = true)]
    provider_id: Option<String>,
    /// Not given.
    #[schema(required = true)]
    service_uuid: Option<String>,
    /// False: each attachment is its own NBD export.
    shared_targets: bool,
    /// Not clustered.
    #[schema(required = true)]
    cluster_name: Option<String>,
    /// True.
    consumes_quota: bool,
    /// Its address.
    links: Vec<Link>,
}

/// What every view of a request needs: the project in its path, the host
/// name, and the arrays (for type names).
pub struct Context<'a> {
    /// The project in the path.
    pub project: &'a str,
    /// `[cinder] host`.
    pub host: &'a str,
    /// The arrays.
    pub arrays: &'a [ArrayPools],
}

impl Context<'_> {
    fn links(&self, id: Uuid) -> Vec<Link> {
        vec![Link {
            rel: "self",
            href: format!("/v3/{}/volumes/{id}", self.project),
        }]
    }

    /// A volume in a plain list.
    pub fn summary(&self, v: &VolumeView) -> VolumeSummary {
        VolumeSummary {
            id: v.id,
            name: v.name.clone(),
            links: self.links(v.id),
        }
    }

    /// A volume as `show` and `detail` give it.
    pub fn volume(&self, v: &VolumeView) -> CinderVolume {
        let volume_type = location::type_name(self.arrays, &v.array, &v.pool);
        CinderVolume {
            id: v.id,
            name: v.name.clone(),
            description: v.description.clone(),
            size: gib(v.size_bytes),
            status: v.status,
            migration_status: v.migration_status,
            migstat: v.migration_status,
            name_id: None,
            host: location::pool_name(self.host, &v.array, &v.pool),
            tenant_id: self.project.to_owned(),
            volume_type_id: location::type_id(&volume_type),
            volume_type,
            availability_zone: "nova",
            attachments: v
                .attachments
                .iter()
                .map(|a| CinderAttachment {
                    id: a.id,
                    attachment_id: a.id,
                    volume_id: v.id,
                    server_id: a.server.clone(),
                    host_name: a.server.clone(),
                    device: None,
                    attached_at: None,
                })
                .collect(),
            bootable: "false",
            encrypted: false,
            multiattach: true,
            metadata: BTreeMap::new(),
            created_at: v.created_at.clone(),
            updated_at: None,
            user_id: None,
            snapshot_id: None,
            source_volid: None,
            replication_status: None,
            consistencygroup_id: None,
            group_id: None,
            provider_id: None,
            service_uuid: None,
            shared_targets: false,
            cluster_name: None,
            consumes_quota: true,
            links: self.links(v.id),
        }
    }
}

/// A volume type as Cinder shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CinderType {
    /// Stable id, derived from the name.
    id: Uuid,
    /// `ARRAY` or `ARRAY#POOL`.
    name: String,
    /// Where its volumes live, in words.
    description: String,
    /// True.
    is_public: bool,
    /// True.
    #[serde(rename = "os-volume-type-access:is_public")]
    access_is_public: bool,
    /// `volume_backend_name` (the array) and `pool_name`.
    extra_specs: BTreeMap<String, String>,
    /// None.
    #[schema(required = true)]
    qos_specs_id: Option<Uuid>,
}

impl From<VolumeType> for CinderType {
    fn from(t: VolumeType) -> Self {
        Self {
            id: t.id,
            description: format!("array {}, pool {}", t.location.array, t.location.pool),
            name: t.name,
            is_public: true,
            access_is_public: true,
            extra_specs: BTreeMap::from([
                ("volume_backend_name".to_owned(), t.location.array),
                ("pool_name".to_owned(), t.location.pool),
            ]),
            qos_specs_id: None,
        }
    }
}

/// A pool as `get_pools` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CinderPool {
    /// `HOST@ARRAY#POOL`.
    name: String,
    /// With `detail=true`: what the array offers.
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<PoolCapabilities>,
}

/// A pool's capabilities. Capacity is the array's: its pools share it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PoolCapabilities {
    /// The pool.
    pool_name: String,
    /// The array.
    volume_backend_name: String,
    /// The array's driver.
    vendor_name: String,
    /// `nbd`.
    storage_protocol: &'static str,
    /// The array's capacity, GiB.
    total_capacity_gb: f64,
    /// What is not provisioned yet, GiB.
    free_capacity_gb: f64,
    /// What is provisioned, GiB.
    allocated_capacity_gb: f64,
    /// 0.
    reserved_percentage: u32,
    /// True: LUNs are sparse.
    thin_provisioning_support: bool,
    /// Always `ferry`.
    driver_version: &'static str,
    /// The volume type whose volumes live in this pool.
    volume_type: String,
}

fn gib_f(bytes: u64) -> f64 {
    // Two decimals, as Cinder's drivers report.
    (bytes as f64 / GIB as f64 * 100.0).round() / 100.0
}

/// Every pool of `arrays`, with capabilities when `detail`.
pub fn pools(host: &str, arrays: &[ArrayView], detail: bool) -> Vec<CinderPool> {
    let layout: Vec<ArrayPools> = arrays
        .iter()
        .map(|a| ArrayPools {
            name: a.name.clone(),
            pools: a.pools.clone(),
        })
        .collect();
    let mut out = Vec::new();
    for a in arrays {
        for pool in &a.pools {
            out.push(CinderPool {
                name: location::pool_name(host, &a.name, pool),
                capabilities: detail.then(|| PoolCapabilities {
                    pool_name: pool.clone(),
                    volume_backend_name: a.name.clone(),
                    vendor_name: a.driver.clone(),
                    storage_protocol: "nbd",
                    total_capacity_gb: gib_f(a.capacity_bytes),
                    free_capacity_gb: gib_f(a.capacity_bytes.saturating_sub(a.used_bytes)),
                    allocated_capacity_gb: gib_f(a.used_bytes),
                    reserved_percentage: 0,
                    thin_provisioning_support: true,
                    driver_version: "ferry",
                    volume_type: location::type_name(&layout, &a.name, pool),
                }),
            });
        }
    }
    out
}
