//! Loading drivers at start: the built-in example drivers, the components
//! the config names, and whatever version an operator activated last.

use sha2::{Digest, Sha256};

use super::ServiceError;
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
            });
        }
        record.active_digest = installed.digest;
        store.put_driver(&record)?;
        tracing::info!(driver = %name, digest = %record.active_digest, "driver loaded");
    }
    Ok(())
}
