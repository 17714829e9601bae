//! Driver-scoped key-value state: the store the host persists it in, and the
//! per-call overlay that buffers a call's writes so that a trap or a timeout
//! leaves nothing half-written (the `state` interface of the WIT).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Longest key a driver may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value a driver may store under one key, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Most distinct keys one call may write or remove.
const MAX_WRITES_PER_CALL: usize = 4096;
/// Most value bytes one call may buffer before it returns.
const MAX_BUFFERED_BYTES: usize = 16 << 20;

/// Where driver state lives between calls. Implemented by the host's
/// database; [`MemoryStateStore`] serves tests and embedded use.
pub trait DriverStateStore: Send + Sync {
    /// The value under `key` of `driver`, if any.
    fn get(&self, driver: &str, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Keys of `driver` that start with `prefix`, sorted.
    fn keys(&self, driver: &str, prefix: &str) -> Result<Vec<String>, String>;
    /// Applies the writes of one call atomically: `Some` sets, `None` removes.
    fn commit(&self, driver: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), String>;
}

/// Driver state kept in memory only.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    drivers: Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
}

impl MemoryStateStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<String, Vec<u8>>>> {
        // The map stays consistent even if a holder panicked: every update is
        // a single insert or remove.
        self.drivers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl DriverStateStore for MemoryStateStore {
    fn get(&self, driver: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.lock().get(driver).and_then(|m| m.get(key)).cloned())
    }

    fn keys(&self, driver: &str, prefix: &str) -> Result<Vec<String>, String> {
        let map = self.lock();
        let Some(m) = map.get(driver) else {
            return Ok(Vec::new());
        };
        Ok(m.range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn commit(&self, driver: &str, writes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), String> {
        let mut map = self.lock();
        let m = map.entry(driver.to_owned()).or_default();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    m.insert(k, v);
                }
                None => {
                    m.remove(&k);
                }
            }
        }
        Ok(())
    }
}

/// Why a state operation of a driver was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    /// The driver broke a documented limit; it gets the message back.
    #[error("{0}")]
    Refused(String),
    /// The host's store failed.
    #[error("the host's state store failed: {0}")]
    Store(String),
}

/// The state one call sees: the persisted state with the call's own writes
/// on top. Nothing reaches the store until [`StateOverlay::take_writes`].
pub(crate) struct StateOverlay {
    driver: String,
    store: Arc<dyn DriverStateStore>,
    writes: BTreeMap<String, Option<Vec<u8>>>,
    buffered_bytes: usize,
}

impl StateOverlay {
    pub(crate) fn new(driver: String, store: Arc<dyn DriverStateStore>) -> Self {
        Self {
            driver,
            store,
            writes: BTreeMap::new(),
            buffered_bytes: 0,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        self.store.get(&self.driver, key).map_err(StateError::Store)
    }

    pub(crate) fn keys(&self, prefix: &str) -> Result<Vec<String>, StateError> {
        let mut keys: std::collections::BTreeSet<String> = self
            .store
            .keys(&self.driver, prefix)
            .map_err(StateError::Store)?
            .into_iter()
            .collect();
        for (k, v) in self.writes.range(prefix.to_owned()..) {
            if !k.starts_with(prefix) {
                break;
            }
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    pub(crate) fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), StateError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StateError::Refused(format!(
                "value of {} bytes for key {key:?} is larger than the {MAX_VALUE_BYTES}-byte limit",
                value.len()
            )));
        }
        self.record(key, Some(value))
    }

    pub(crate) fn remove(&mut self, key: String) -> Result<(), StateError> {
        check_key(&key)?;
        self.record(key, None)
    }

    fn record(&mut self, key: String, value: Option<Vec<u8>>) -> Result<(), StateError> {
        let new_len = value.as_ref().map_or(0, Vec::len);
        let old_len = match self.writes.get(&key) {
            Some(old) => old.as_ref().map_or(0, Vec::len),
            None if self.writes.len() >= MAX_WRITES_PER_CALL => {
                return Err(StateError::Refused(format!(
                    "one call may write at most {MAX_WRITES_PER_CALL} keys"
                )));
            }
            None => 0,
        };
        let total = self.buffered_bytes - old_len + new_len;
        if total > MAX_BUFFERED_BYTES {
            return Err(StateError::Refused(format!(
                "one call may write at most {MAX_BUFFERED_BYTES} bytes of state"
            )));
        }
        self.buffered_bytes = total;
        self.writes.insert(key, value);
        Ok(())
    }

    /// Commits the buffered writes (a call that returned normally).
    pub(crate) fn commit(&mut self) -> Result<(), String> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.writes).into_iter().collect();
        self.buffered_bytes = 0;
        self.store.commit(&self.driver, writes)
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(StateError::Refused(format!(
            "state keys must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(store: &Arc<MemoryStateStore>) -> StateOverlay {
        StateOverlay::new("d".into(), store.clone())
    }

    #[test]
    fn writes_are_visible_to_the_call_and_reach_the_store_only_on_commit() {
        let store = Arc::new(MemoryStateStore::default());
        store
            .commit("d", vec![("a/1".into(), Some(b"old".to_vec()))])
            .unwrap();
        store
            .commit("other", vec![("a/9".into(), Some(b"x".to_vec()))])
            .unwrap();
        let mut o = overlay(&store);
        o.set("a/2".into(), b"two".to_vec()).unwrap();
        o.remove("a/1".into()).unwrap();
        assert_eq!(o.get("a/1").unwrap(), None);
        assert_eq!(o.get("a/2").unwrap(), Some(b"two".to_vec()));
        assert_eq!(o.keys("a/").unwrap(), vec!["a/2".to_owned()]);
        assert_eq!(store.get("d", "a/1").unwrap(), Some(b"old".to_vec()));
        assert_eq!(store.get("d", "a/2").unwrap(), None);
        o.commit().unwrap();
        assert_eq!(store.get("d", "a/1").unwrap(), None);
        assert_eq!(store.keys("d", "a/").unwrap(), vec!["a/2".to_owned()]);
        assert_eq!(store.keys("other", "").unwrap(), vec!["a/9".to_owned()]);
    }

    #[test]
    fn dropped_overlay_leaves_the_store_untouched() {
        let store = Arc::new(MemoryStateStore::default());
        let mut o = overlay(&store);
        o.set("k".into(), b"v".to_vec()).unwrap();
        drop(o);
        assert_eq!(store.get("d", "k").unwrap(), None);
    }

    #[test]
    fn limits_are_enforced() {
        let store = Arc::new(MemoryStateStore::default());
        let mut o = overlay(&store);
        assert!(o.set(String::new(), vec![]).is_err());
        assert!(o.set("k".repeat(MAX_KEY_BYTES + 1), vec![]).is_err());
        assert!(o.set("k".into(), vec![0; MAX_VALUE_BYTES + 1]).is_err());
        o.set("k".into(), vec![0; MAX_VALUE_BYTES]).unwrap();
        // Rewriting one key does not add to the budget.
        for _ in 0..1000 {
            o.set("k".into(), vec![0; MAX_VALUE_BYTES]).unwrap();
        }
        let mut refused = false;
        for i in 0..MAX_WRITES_PER_CALL {
            if o.set(format!("k{i}"), vec![0; MAX_VALUE_BYTES]).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "the per-call byte budget was not enforced");
    }
}
