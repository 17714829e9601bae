//! The database as the runtime's backing: driver key-value state survives
//! restarts with one call's writes in one transaction, and compiled
//! artifacts are cached across restarts. The runtime defines what it needs
//! (its traits); the store stays unaware of the runtime.

use super::{ArtifactCache, DriverStateStore};
use crate::store::Store;

impl DriverStateStore for Store {
    fn get(&self, driver: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.kv_get(driver, key).map_err(|e| e.to_string())
    }

    fn keys(&self, driver: &str, prefix: &str) -> Result<Vec<String>, String> {
        self.kv_keys(driver, prefix).map_err(|e| e.to_string())
    }

    fn commit(&self, driver: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), String> {
        self.kv_commit(driver, writes).map_err(|e| e.to_string())
    }
}

impl ArtifactCache for Store {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.artifact(key).map_err(|e| e.to_string())
    }

    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String> {
        self.put_artifact(key, artifact).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn runtime_sees_persistent_state_through_the_trait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        {
            let state: Arc<dyn DriverStateStore> = Arc::new(Store::open(&path).unwrap());
            state
                .commit(
                    "takeover",
                    vec![
                        ("job/1".into(), Some(b"copying".to_vec())),
                        ("job/2".into(), Some(b"done".to_vec())),
                    ],
                )
                .unwrap();
            state
                .commit("takeover", vec![("job/2".into(), None)])
                .unwrap();
        }
        let state: Arc<dyn DriverStateStore> = Arc::new(Store::open(&path).unwrap());
        assert_eq!(
            state.get("takeover", "job/1").unwrap(),
            Some(b"copying".to_vec())
        );
        assert_eq!(state.get("takeover", "job/2").unwrap(), None);
        assert_eq!(state.keys("takeover", "job/").unwrap(), vec!["job/1"]);
        assert!(state.keys("plain", "").unwrap().is_empty());
    }

    #[test]
    fn artifacts_round_trip_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache: Arc<dyn ArtifactCache> =
            Arc::new(Store::open(&dir.path().join("ferry.redb")).unwrap());
        assert_eq!(cache.get("k").unwrap(), None);
        cache.put("k", b"compiled").unwrap();
        assert_eq!(cache.get("k").unwrap(), Some(b"compiled".to_vec()));
    }
}
