//! The database as the driver runtime's state store: driver key-value state
//! survives restarts, and one call's writes land in one transaction.

use crate::runtime::DriverStateStore;
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
}
