//! Loading a driver version: the checks a component passes before it may
//! run (size, encoding, a bounded compile, the driver world at a compatible
//! version, a first `capabilities` call), and the cache of compiled
//! artifacts that lets a restart skip the compiler; only a component that
//! passed every check gets an artifact cached.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::contract::{Contract, WorldPre};
use super::error::{RuntimeError, chain};
use super::{Inner, Loaded};

/// The interface every driver exports, without its version.
const DRIVER_EXPORT: &str = "ferry:driver/driver";

/// Where compiled artifacts are kept between runs. Implemented by the host's
/// database. Only bytes this host serialized are ever put here, which is
/// what makes loading them back sound.
pub trait ArtifactCache: Send + Sync {
    /// The artifact stored under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores an artifact under `key`.
    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String>;
}

/// Refuses what is not a component before it reaches the compiler, with a
/// specific reason.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RuntimeError::NotWasm(
            "the bytes do not start with the \\0asm header".into(),
        ));
    }
    match bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(RuntimeError::CoreModule),
        _ => Err(RuntimeError::NotAComponent(format!(
            "unknown WebAssembly version/layer {:02x?}",
            &bytes[4..8]
        ))),
    }
}

/// The cache key of a component's artifact for this engine: the engine's
/// settings are part of it, so a host built differently never finds an
/// artifact it cannot run.
fn artifact_key(engine: &Engine, digest: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{digest}.{:016x}", h.finish())
}

/// Parses `major.minor.patch` (pre-release and build suffixes ignored).
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let out = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(out)
}

/// Checks that the component exports the driver interface at a version this
/// host implements, naming what it found otherwise; returns the contract.
fn check_world(engine: &Engine, component: &Component) -> Result<Contract, RuntimeError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    let Some(found) = exports.iter().find_map(|n| {
        n.strip_prefix(DRIVER_EXPORT)
            .and_then(|rest| rest.strip_prefix('@'))
    }) else {
        let listed = if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        };
        return Err(RuntimeError::WrongWorld(format!(
            "it exports {listed}; a driver exports {DRIVER_EXPORT}@{}",
            Contract::supported()
        )));
    };
    parse_version(found)
        .and_then(Contract::for_version)
        .ok_or_else(|| RuntimeError::IncompatibleVersion {
            found: found.to_owned(),
            supported: Contract::supported(),
        })
}

impl Inner {
    /// Compiles `bytes` (or loads this host's own artifact of them), checks
    /// it against the driver world and makes a first `capabilities` call
    /// with no array bound. Only then is a fresh artifact cached: a refused
    /// component leaves nothing behind in the store.
    pub(crate) fn load(
        &self,
        name: &str,
        digest: String,
        bytes: &[u8],
    ) -> Result<Loaded, RuntimeError> {
        let key = artifact_key(&self.engine, &digest);
        let (component, compiled_now) = self.component(&key, &digest, bytes)?;
        let contract = check_world(&self.engine, &component)?;
        let pre = WorldPre::new(&self.linker, &component, contract)
            .map_err(|e| RuntimeError::WrongWorld(chain(&e)))?;
        let caps = self
            .execute(&pre, name, None, |g, s| g.call_capabilities(s))
            .map_err(RuntimeError::SmokeFailed)?;
        if compiled_now {
            self.cache_artifact(&key, &digest, &component);
        }
        Ok(Loaded {
            digest,
            pre,
            contract,
            capabilities: caps.into(),
        })
    }

    /// The compiled component: from the artifact cache when this host
    /// compiled it before (`false`), else from the compiler, one compile at
    /// a time and bounded in time (`true`). A cache that fails is logged and
    /// bypassed, never fatal.
    fn component(
        &self,
        key: &str,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), RuntimeError> {
        if let Some(cache) = self.cfg.artifacts.as_ref() {
            match cache.get(key) {
                Ok(Some(artifact)) => {
                    // SAFETY: the cache holds only artifacts this host
                    // serialized from components it compiled itself, under
                    // a key bound to the engine's settings; wasmtime checks
                    // the artifact's header and engine compatibility again.
                    match unsafe { Component::deserialize(&self.engine, &artifact) } {
                        Ok(c) => return Ok((c, false)),
                        Err(e) => {
                            tracing::warn!(digest, error = %chain(&e), "cached driver artifact unusable; recompiling");
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(digest, error = %e, "driver artifact cache unreadable"),
            }
        }
        let component = self.compile_slot.compile(&self.engine, bytes)?;
        Ok((component, true))
    }

    /// Keeps the artifact of a component that passed every check, so a
    /// restart skips the compiler.
    fn cache_artifact(&self, key: &str, digest: &str, component: &Component) {
        let Some(cache) = self.cfg.artifacts.as_ref() else {
            return;
        };
        match component.serialize() {
            Ok(artifact) => {
                if let Err(e) = cache.put(key, &artifact) {
                    tracing::warn!(digest, error = %e, "cannot cache driver artifact");
                }
            }
            Err(e) => {
                tracing::warn!(digest, error = %chain(&e), "cannot serialize driver artifact")
            }
        }
    }
}

/// Default cap on compiling one component.
pub(crate) const DEFAULT_COMPILE_TIME: Duration = Duration::from_secs(60);
/// Default wait for the compile slot while another component compiles.
pub(crate) const DEFAULT_COMPILE_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_versions_parse_with_suffixes() {
        assert_eq!(parse_version("0.1.0"), Some((0, 1, 0)));
        assert_eq!(parse_version("0.1.7-rc.1"), Some((0, 1, 7)));
        assert_eq!(parse_version("0.1"), None);
        assert_eq!(parse_version("0.1.0.1"), None);
    }
}
