//! The volume service: validates requests, drives the drivers through
//! `runtime`, keeps records in `store` and exports attached volumes over
//! `nbd`. The API and the CLI's server side call only this.

mod drivers;
mod error;
mod events;
mod manage;
mod metrics;
mod migration;
mod operator;
mod views;

pub(crate) use views::wire_name;
mod volumes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

pub use drivers::DriverVersionView;
pub use error::{ErrorKind, ServiceError};
pub use events::Event;
pub use migration::{MigrateVolume, MigrationAccepted, MigrationView, Progress};
pub use operator::{ForceDeleted, ResetOutcome, ResetStatus};
pub use views::{
    ArrayPools, ArrayView, AttachVolume, AttachmentView, CreateVolume, DriverView, ManageVolume,
    UpdateVolume, VolumeView,
};

use crate::array::{Array, Arrays};
use crate::config::Config;
use crate::hydrate::Hydrations;
use crate::model::{Attachment, Volume};
use crate::nbd::{ExportTable, NbdServer};
use crate::runtime::{CallError, CallScope, DriverRuntime, RuntimeConfig};
use crate::store::Store;

/// How to start the service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Data directory: the database, the arrays' files, the tokens.
    pub data_dir: PathBuf,
    /// Arrays, zoning, drivers and limits.
    pub config: Config,
    /// Address the NBD server listens on.
    pub nbd_listen: SocketAddr,
}

/// The running volume service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    arrays: Arrays,
    runtime: DriverRuntime,
    exports: Arc<ExportTable>,
    hydrations: Arc<Hydrations>,
    nbd: Mutex<Option<NbdServer>>,
    /// Where and how clients reach the NBD server (for URIs).
    nbd_endpoint: views::NbdEndpoint,
    events: events::EventBus,
    /// Migrations running in this process, by volume id.
    running: Mutex<HashMap<Uuid, RunningMigration>>,
    copy_bandwidth: Option<u64>,
    /// The async runtime background work (migrations) runs on.
    tasks: tokio::runtime::Handle,
    /// Raised when the host begins to stop: long-lived streams end.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Serializes installs, activations and deletions, so the record in
    /// the store and the runtime's active version always name the same
    /// digest.
    registry: Mutex<()>,
    /// Versions of each driver kept after an install (`driver_versions_kept`).
    versions_kept: usize,
    /// Most attachments of one volume (`[volumes] max_attachments_per_volume`).
    max_attachments: u64,
}

/// What the host keeps in memory about a running migration.
struct RunningMigration {
    /// Raised by an abort: stops a host copy at its next chunk.
    cancel: Arc<AtomicBool>,
    /// The last progress reported (driver or copy), done and total bytes.
    progress: Option<(u64, u64)>,
}

impl Service {
    /// Opens the store and the arrays, loads the drivers, starts the NBD
    /// server, restores the exports of attached volumes and resumes
    /// interrupted migrations. Blocking; must run inside a tokio runtime
    /// (e.g. in `spawn_blocking`), which runs the background work.
    pub fn start(opts: ServiceOptions) -> Result<Service, ServiceError> {
        let tasks = tokio::runtime::Handle::try_current().map_err(|_| {
            ServiceError::Internal("Service::start must run inside a tokio runtime".into())
        })?;
        let io = |what: &str, e: std::io::Error| {
            ServiceError::Internal(format!("{what} {}: {e}", opts.data_dir.display()))
        };
        // Checked before anything is opened: a bad certificate or key stops
        // the start naming the setting.
        let nbd_tls = crate::nbd::NbdTls::from_config(&opts.config.nbd)?;
        crate::private_fs::warn_if_open_to_others(&opts.data_dir, "data directory");
        crate::private_fs::create_dir_all(&opts.data_dir).map_err(|e| io("cannot create", e))?;
        let store = Store::open_with(
            &opts.data_dir.join("ferry.redb"),
            crate::store::StoreOptions {
                event_capacity: opts.config.events.max_count,
                event_max_age: Some(std::time::Duration::from_secs(
                    opts.config.events.max_age_secs,
                )),
            },
        )?;
        check_config_keeps_volumes(&store, &opts.config)?;
        store.put_arrays(&opts.config.arrays, &opts.config.zoning)?;
        let arrays = Arrays::open(&opts.data_dir.join("arrays"), &opts.config)?;
        warn_of_filesystem_shortfalls(&arrays);
        let hydrations = Arc::new(Hydrations::new(
            store.clone(),
            opts.config.hydration_bandwidth_bytes_per_sec,
        ));
        hydrations
            .resume_all(&arrays)
            .map_err(|e| ServiceError::Internal(format!("cannot resume hydrations: {e}")))?;
        let runtime = DriverRuntime::new(
            RuntimeConfig {
                limits: opts.config.limits,
                driver_limits: opts.config.driver_limits.clone().into_iter().collect(),
                max_component_bytes: usize::try_from(opts.config.max_component_bytes)
                    .unwrap_or(usize::MAX),
                max_compile_time: std::time::Duration::from_millis(opts.config.max_compile_ms),
                max_compile_wait: std::time::Duration::from_millis(opts.config.max_compile_wait_ms),
                artifacts: Some(Arc::new(store.clone())),
                hydrations: Some(hydrations.clone()),
            },
            Arc::new(store.clone()),
        )
        .map_err(|e| ServiceError::Internal(format!("driver runtime: {e}")))?;
        drivers::load_all(&store, &runtime, &opts.config)?;

        let exports = Arc::new(ExportTable::new());
        let nbd_tls_mode = nbd_tls.mode();
        let nbd = NbdServer::start_with_tls(
            opts.nbd_listen,
            exports.clone(),
            crate::nbd::NbdLimits::from_config(&opts.config.nbd),
            nbd_tls,
        )
        .map_err(|e| {
            ServiceError::Internal(format!("cannot listen for NBD on {}: {e}", opts.nbd_listen))
        })?;
        let mut nbd_addr = nbd.local_addr();
        if nbd_addr.ip().is_unspecified() {
            nbd_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let nbd_endpoint = views::NbdEndpoint {
            addr: nbd_addr,
            tls: nbd_tls_mode,
        };
        let store_for_events = store.clone();
        let service = Service {
            inner: Arc::new(Inner {
                store,
                arrays,
                runtime,
                exports,
                hydrations,
                nbd: Mutex::new(Some(nbd)),
                nbd_endpoint,
                events: events::EventBus::new(store_for_events),
                running: Mutex::new(HashMap::new()),
                copy_bandwidth: opts.config.copy_bandwidth_bytes_per_sec,
                tasks,
                stopping: tokio::sync::watch::channel(false).0,
                registry: Mutex::new(()),
                versions_kept: usize::try_from(opts.config.driver_versions_kept)
                    .unwrap_or(usize::MAX),
                max_attachments: opts.config.volumes.max_attachments_per_volume,
            }),
        };
        service.recover()?;
        service.recover_migrations()?;
        Ok(service)
    }

    /// Where the NBD server listens (as put in attachment URIs).
    pub fn nbd_addr(&self) -> SocketAddr {
        self.inner.nbd_endpoint.addr
    }

    /// Whether the NBD server offers or requires TLS (`[nbd] tls`).
    pub fn nbd_tls(&self) -> crate::config::NbdTlsMode {
        self.inner.nbd_endpoint.tls
    }

    /// Tells long-lived streams (the event stream) to end: the host stops.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// Resolves to true once the host begins to stop.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// Stops the NBD server after flushing every export.
    pub fn shutdown(&self) {
        for name in self.inner.exports.names() {
            self.inner.exports.remove(&name);
        }
        let server = self
            .inner
            .nbd
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(server) = server {
            server.shutdown();
        }
        self.inner.hydrations.stop_all();
    }

    /// Bytes provisioned on `array`: its LUN files' sizes, or for an array
    /// whose storage lives elsewhere the sizes of the volumes on it.
    pub(crate) fn provisioned(&self, array: &Array) -> Result<u64, ServiceError> {
        if array.lun_files() {
            return Ok(array.used_bytes()?);
        }
        Ok(self
            .inner
            .store
            .list_volumes()?
            .iter()
            .filter(|v| v.array == array.name())
            .map(|v| v.size_bytes)
            .sum())
    }

    /// Every array's name and pools, in the configuration's order: what
    /// naming a location needs, without measuring anything.
    pub fn array_pools(&self) -> Vec<ArrayPools> {
        self.inner
            .arrays
            .iter()
            .map(|a| ArrayPools {
                name: a.name().to_owned(),
                pools: a.pools().to_vec(),
            })
            .collect()
    }

    /// Every array with its capacity use and the space of the file system
    /// beneath it.
    pub fn arrays(&self) -> Result<Vec<ArrayView>, ServiceError> {
        let mut out = Vec::new();
        for a in self.inner.arrays.iter() {
            // A file system that cannot be measured shows as null, not as
            // a failed listing.
            let fs = a
                .lun_files()
                .then(|| a.filesystem_space())
                .transpose()
                .inspect_err(|e| tracing::warn!(array = a.name(), error = %e, "cannot measure the file system"))
                .ok()
                .flatten();
            out.push(ArrayView {
                name: a.name().to_owned(),
                driver: a.driver().to_owned(),
                pools: a.pools().to_vec(),
                zoned_with: self.inner.arrays.zoned_with(a.name()),
                capacity_bytes: a.capacity_bytes(),
                used_bytes: self.provisioned(a)?,
                filesystem_free_bytes: fs.map(|f| f.free_bytes),
                filesystem_total_bytes: fs.map(|f| f.total_bytes),
                http_allow: a
                    .outbound()
                    .origins()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                nbd_allow: a.nbd_allow().entries(),
                lun_files: a.lun_files(),
                settings: a.settings().clone(),
                secrets: a.secrets().names(),
            });
        }
        Ok(out)
    }

    /// Events after `seq` (oldest first, at most `limit`).
    pub fn events_since(&self, seq: u64, limit: usize) -> Result<Vec<Event>, ServiceError> {
        Ok(self.inner.events.since(seq, limit)?)
    }

    /// A receiver of the events emitted from now on.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Every driver with its versions.
    pub fn drivers(&self) -> Result<Vec<DriverView>, ServiceError> {
        Ok(self
            .inner
            .store
            .list_drivers()?
            .into_iter()
            .map(|d| DriverView {
                name: d.name,
                active_digest: d.active_digest,
                versions: d.versions,
            })
            .collect())
    }

    fn array(&self, name: &str) -> Result<&Arc<Array>, ServiceError> {
        self.inner
            .arrays
            .get(name)
            .ok_or_else(|| ServiceError::ArrayNotFound(name.to_owned()))
    }

    fn scope(&self, array: &Arc<Array>) -> Result<CallScope, ServiceError> {
        if self.inner.runtime.active_digest(array.driver()).is_none() {
            return Err(ServiceError::DriverNotLoaded(array.driver().to_owned()));
        }
        Ok(CallScope {
            driver: array.driver().to_owned(),
            array: array.clone(),
            zoned_with: self.inner.arrays.zoned_with(array.name()),
            progress: None,
            cancel: None,
        })
    }

    /// Runs a blocking driver call off the async runtime.
    async fn call<T, F>(&self, driver: &str, f: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&DriverRuntime) -> Result<T, CallError> + Send + 'static,
    {
        let runtime = self.inner.runtime.clone();
        let joined = tokio::task::spawn_blocking(move || f(&runtime)).await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(ServiceError::Driver {
                driver: driver.to_owned(),
                source,
            }),
            Err(e) => Err(ServiceError::Internal(format!(
                "driver call task failed: {e}"
            ))),
        }
    }

    /// Points the export of every attachment of `v` at the attachment's LUN
    /// on `array` (when a hydration ends, or a copy-back switches back).
    /// Open connections stay; requests in flight finish on the old device.
    fn serve_attachments_from(&self, v: &Volume, array: &str) {
        let Ok(array) = self.array(array) else {
            return;
        };
        for a in &v.attachments {
            match self.data_device(array, &a.lun) {
                Ok(device) => {
                    self.inner.exports.replace_device(&a.export_name(), device);
                }
                Err(e) => {
                    tracing::error!(volume = %v.id, attachment = %a.id, error = %e, "cannot serve the attachment's LUN")
                }
            }
        }
    }

    fn view(&self, v: &Volume) -> VolumeView {
        views::volume_view(v, self.inner.nbd_endpoint)
    }

    fn attachment_view(&self, a: &Attachment) -> AttachmentView {
        views::attachment_view(a, self.inner.nbd_endpoint)
    }
}

/// Warns, once, of the arrays whose configured capacity the file system
/// beneath cannot give them (its free space plus what the array's LUN files
/// occupy already): their volumes would fail with ENOSPC before the array
/// is full. Creates are still refused one by one when they cannot fit now.
fn warn_of_filesystem_shortfalls(arrays: &Arrays) {
    let mut short = Vec::new();
    let mut free = None;
    for a in arrays.iter() {
        match a.filesystem_shortfall() {
            Ok(None) => {}
            Ok(Some(s)) => {
                short.push(format!("{} ({} bytes)", a.name(), s.capacity_bytes));
                free = Some(s.filesystem.free_bytes.min(free.unwrap_or(u64::MAX)));
            }
            Err(e) => {
                tracing::warn!(array = a.name(), error = %e, "cannot measure the file system")
            }
        }
    }
    if let Some(free) = free {
        tracing::warn!(
            arrays = short.join(", "),
            filesystem_free_bytes = free,
            "array capacity exceeds the free space of the file system beneath (plus what \
             its LUNs occupy): volumes may fail with ENOSPC before the array is full, and \
             creates that cannot fit now are refused; lower capacity_bytes or free space"
        );
    }
}

/// Refuses a configuration that drops an array still holding volumes: the
/// volumes would become unreachable.
fn check_config_keeps_volumes(store: &Store, config: &Config) -> Result<(), ServiceError> {
    for v in store.list_volumes()? {
        if !config.arrays.iter().any(|a| a.name == v.array) {
            return Err(ServiceError::InvalidArgument(format!(
                "the configuration has no array {:?}, but volume {} lives there; \
                 add the array back or delete the volume first",
                v.array, v.id
            )));
        }
    }
    Ok(())
}
