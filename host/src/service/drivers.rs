//! The driver registry: loading drivers at start (the built-in example
//! drivers, the components the config names, and whatever version an
//! operator activated last), installing uploaded versions, activating one
//! (hot swap), and deleting versions, by request or by the retention
//! setting after an install.

use sha2::{Digest, Sha256};

use super::{Service, ServiceError};
use crate::config::Config;
use crate::model::{DriverRecord, DriverVersion, now_rfc3339};
use crate::runtime::DriverRuntime;
use crate::store::Store;

/// Installs every driver the host knows. For each name, the version recorded
/// as active in the store wins (an operator may have activated another
/// version); otherwise the built-in or configured component is installed and
/// recorded.
pub(super) fn load_all(
    store: &Store,
    runtime: &DriverRuntime,
    config: &Config,
) -> Result<(), ServiceError> {
    let mut sources: Vec<(String, Vec<u8>)> = crate::guests::EXAMPLE_DRIVERS
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
        .collect();
    for d in &config.drivers {
        let bytes = std::fs::read(&d.path).map_err(|e| {
            ServiceError::InvalidArgument(format!(
                "driver {} component {}: {e}",
                d.name,
                d.path.display()
            ))
        })?;
        sources.retain(|(n, _)| n != &d.name);
        sources.push((d.name.clone(), bytes));
    }
    for (name, bytes) in sources {
        let digest = hex::encode(Sha256::digest(&bytes));
        let record = store.driver(&name)?;
        let active = match &record {
            Some(r) if r.active_digest != digest => store.driver_blob(&r.active_digest)?,
            _ => None,
        };
        let chosen = active.unwrap_or(bytes);
        let installed = runtime
            .install(&name, &chosen)
            .map_err(|e| ServiceError::Internal(format!("driver {name} failed to load: {e}")))?;
        store.put_driver_blob(&installed.digest, &chosen)?;
        let mut record = record.unwrap_or_else(|| DriverRecord {
            name: name.clone(),
            active_digest: installed.digest.clone(),
            versions: Vec::new(),
        });
        if !record.versions.iter().any(|v| v.digest == installed.digest) {
            record.versions.push(DriverVersion {
                digest: installed.digest.clone(),
                installed_at: now_rfc3339(),
                contract: Some(installed.contract.to_string()),
            });
        }
        record.active_digest = installed.digest;
        store.put_driver(&record)?;
        tracing::info!(driver = %name, digest = %record.active_digest, "driver loaded");
    }
    Ok(())
}

/// What an install or activation did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DriverVersionView {
    /// Driver name.
    pub name: String,
    /// Lowercase hex SHA-256 of the component bytes.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub digest: String,
    /// Whether this version is now the active one.
    pub active: bool,
    /// Whether this call added the version (false: it was installed before).
    pub created: bool,
    /// What the version answered to `capabilities`.
    pub capabilities: crate::runtime::Capabilities,
    /// When the version was first installed (RFC 3339).
    #[schema(format = DateTime)]
    pub installed_at: String,
}

impl Service {
    /// Largest driver component accepted for installation, in bytes.
    pub fn max_component_bytes(&self) -> usize {
        self.inner.runtime.max_component_bytes()
    }

    /// Installs `bytes` as a version of driver `name`: validated, compiled
    /// (or loaded from this host's artifact cache), smoke-called, stored
    /// durably, and, if `activate`, made the version every new call uses.
    /// A refused component changes nothing.
    pub async fn install_driver(
        &self,
        name: String,
        bytes: Vec<u8>,
        activate: bool,
    ) -> Result<DriverVersionView, ServiceError> {
        crate::array::validate_name(&name)
            .map_err(|e| ServiceError::InvalidName(format!("driver name: {e}")))?;
        let svc = self.clone();
        self.blocking(move || svc.install_driver_blocking(&name, &bytes, activate))
            .await
    }

    /// Makes the installed version `digest` of `name` the active one (a roll
    /// back or forward). New calls, the next poll of a running migration
    /// included, use it; calls in flight finish on the version they began
    /// with.
    pub async fn activate_driver(
        &self,
        name: String,
        digest: String,
    ) -> Result<DriverVersionView, ServiceError> {
        let svc = self.clone();
        self.blocking(move || svc.activate_driver_blocking(&name, &digest))
            .await
    }

    /// Deletes the installed version `digest` of `name`: its component, its
    /// compiled artifacts and its place in the record. Refused for the
    /// active version and for one a driver call (of a migration, say) still
    /// runs on.
    pub async fn delete_driver_version(
        &self,
        name: String,
        digest: String,
    ) -> Result<(), ServiceError> {
        crate::array::validate_name(&name)
            .map_err(|e| ServiceError::InvalidName(format!("driver name: {e}")))?;
        let svc = self.clone();
        self.blocking(move || svc.delete_driver_version_blocking(&name, &digest))
            .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ServiceError::Internal(format!("driver registry task failed: {e}")))?
    }

    fn install_driver_blocking(
        &self,
        name: &str,
        bytes: &[u8],
        activate: bool,
    ) -> Result<DriverVersionView, ServiceError> {
        let inner = &self.inner;
        let refused = |source| ServiceError::DriverRefused {
            name: name.to_owned(),
            source,
        };
        // Compiling happens outside the registry lock: a slow upload must
        // not hold up an activation.
        let prepared = inner.runtime.prepare(name, bytes).map_err(refused)?;
        let _registry = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
        // A deletion of the same digest may have come in between and
        // dropped the compiled version: load it again (from scratch, as its
        // artifact went too).
        if !inner.runtime.is_prepared(&prepared.digest) {
            inner.runtime.prepare(name, bytes).map_err(refused)?;
        }
        inner.store.put_driver_blob(&prepared.digest, bytes)?;
        let previous = inner.store.driver(name)?;
        let old_active = previous.as_ref().map(|r| r.active_digest.clone());
        let mut record = previous.unwrap_or_else(|| DriverRecord {
            name: name.to_owned(),
            active_digest: prepared.digest.clone(),
            versions: Vec::new(),
        });
        let created = !record.versions.iter().any(|v| v.digest == prepared.digest);
        if created {
            record.versions.push(DriverVersion {
                digest: prepared.digest.clone(),
                installed_at: now_rfc3339(),
                contract: Some(prepared.contract.to_string()),
            });
        }
        // A new name has nothing else to run: its first version is active.
        let activate = activate || old_active.is_none();
        if activate {
            record.active_digest = prepared.digest.clone();
        }
        // Persist before the switch: a crash in between restarts on the
        // version the record names, which is the one about to be active.
        inner.store.put_driver(&record)?;
        if created {
            inner
                .events
                .emit_driver(name, None, prepared.digest.clone(), "installed".to_owned());
        }
        if activate && old_active.as_deref() != Some(prepared.digest.as_str()) {
            inner
                .runtime
                .activate(name, &prepared.digest)
                .map_err(refused)?;
            inner.events.emit_driver(
                name,
                old_active.clone(),
                prepared.digest.clone(),
                "activated".to_owned(),
            );
        }
        tracing::info!(driver = %name, digest = %prepared.digest, created, activate, "driver version installed");
        if created {
            self.prune(name, &prepared.digest);
        }
        Ok(version_view(
            &record,
            &prepared.digest,
            created,
            prepared.capabilities,
        ))
    }

    fn activate_driver_blocking(
        &self,
        name: &str,
        digest: &str,
    ) -> Result<DriverVersionView, ServiceError> {
        let inner = &self.inner;
        let digest = digest.to_ascii_lowercase();
        let _registry = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = self.driver_holding(name, &digest)?;
        // Versions installed before a restart are compiled again on first
        // use (from the artifact cache, so without the compiler).
        if !inner.runtime.is_prepared(&digest) {
            let bytes = inner.store.driver_blob(&digest)?.ok_or_else(|| {
                ServiceError::Internal(format!("the component of version {digest} is missing"))
            })?;
            inner
                .runtime
                .prepare(name, &bytes)
                .map_err(|source| ServiceError::DriverRefused {
                    name: name.to_owned(),
                    source,
                })?;
        }
        let old = std::mem::replace(&mut record.active_digest, digest.clone());
        inner.store.put_driver(&record)?;
        let active = inner.runtime.activate(name, &digest).map_err(|source| {
            ServiceError::DriverRefused {
                name: name.to_owned(),
                source,
            }
        })?;
        if old != digest {
            inner
                .events
                .emit_driver(name, Some(old), digest.clone(), "activated".to_owned());
        }
        Ok(version_view(&record, &digest, false, active.capabilities))
    }
}

impl Service {
    /// The record of driver `name`, which must hold version `digest`
    /// (lowercase). Called under the registry lock.
    fn driver_holding(&self, name: &str, digest: &str) -> Result<DriverRecord, ServiceError> {
        let record = self
            .inner
            .store
            .driver(name)?
            .ok_or_else(|| ServiceError::DriverNotFound(name.to_owned()))?;
        if !record.versions.iter().any(|v| v.digest == digest) {
            return Err(ServiceError::DriverVersionNotFound {
                name: name.to_owned(),
                digest: digest.to_owned(),
            });
        }
        Ok(record)
    }

    fn delete_driver_version_blocking(&self, name: &str, digest: &str) -> Result<(), ServiceError> {
        let inner = &self.inner;
        let digest = digest.to_ascii_lowercase();
        let _registry = inner.registry.lock().unwrap_or_else(|p| p.into_inner());
        let record = self.driver_holding(name, &digest)?;
        self.remove_version(&record, &digest)?;
        inner
            .events
            .emit_driver(name, None, digest.clone(), "deleted".to_owned());
        tracing::info!(driver = %name, digest = %digest, "driver version deleted");
        Ok(())
    }

    /// Deletes version `digest` from `record`: refused for the active
    /// version and while a call runs on it. The component and its
    /// artifacts go with it unless another driver lists the same bytes.
    /// Runs under the registry lock, so the version cannot become active
    /// meanwhile, and a call can only start on an active version.
    fn remove_version(&self, record: &DriverRecord, digest: &str) -> Result<(), ServiceError> {
        let inner = &self.inner;
        if record.active_digest == digest {
            return Err(ServiceError::DriverVersionActive {
                name: record.name.clone(),
                digest: digest.to_owned(),
            });
        }
        let calls = inner.runtime.calls_running_on(digest);
        if calls > 0 {
            return Err(ServiceError::DriverVersionInUse {
                name: record.name.clone(),
                digest: digest.to_owned(),
                calls,
            });
        }
        let bytes_gone = inner.store.delete_driver_version(&record.name, digest)?;
        if bytes_gone && !inner.runtime.forget(digest) {
            // Cannot happen under the registry lock; the compiled code then
            // only stays in memory until the host stops.
            tracing::warn!(driver = %record.name, digest, "a deleted driver version is still loaded");
        }
        Ok(())
    }

    /// The retention setting: deletes the oldest versions of `name` beyond
    /// `driver_versions_kept`, never the active one, `installed` (the
    /// version this install added) or one a call runs on (it goes at a later
    /// install). A failure is logged; the install stands.
    fn prune(&self, name: &str, installed: &str) {
        let inner = &self.inner;
        let record = match inner.store.driver(name) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(driver = %name, error = %e, "cannot read the driver record to prune old versions");
                return;
            }
        };
        let mut excess = record.versions.len().saturating_sub(inner.versions_kept);
        let oldest_first: Vec<String> = record
            .versions
            .iter()
            .map(|v| v.digest.clone())
            .filter(|d| *d != record.active_digest && d != installed)
            .collect();
        for digest in oldest_first {
            if excess == 0 {
                break;
            }
            match self.remove_version(&record, &digest) {
                Ok(()) => {
                    excess -= 1;
                    inner
                        .events
                        .emit_driver(name, None, digest.clone(), "pruned".to_owned());
                    tracing::info!(driver = %name, digest = %digest, "old driver version pruned");
                }
                Err(ServiceError::DriverVersionInUse { .. }) => {
                    tracing::debug!(driver = %name, digest = %digest, "old driver version in use; pruned later");
                }
                Err(e) => {
                    tracing::warn!(driver = %name, digest = %digest, error = %e, "cannot prune an old driver version");
                    return;
                }
            }
        }
    }
}

fn version_view(
    record: &DriverRecord,
    digest: &str,
    created: bool,
    capabilities: crate::runtime::Capabilities,
) -> DriverVersionView {
    DriverVersionView {
        name: record.name.clone(),
        digest: digest.to_owned(),
        active: record.active_digest == digest,
        created,
        capabilities,
        installed_at: record
            .versions
            .iter()
            .find(|v| v.digest == digest)
            .map(|v| v.installed_at.clone())
            .unwrap_or_default(),
    }
}
