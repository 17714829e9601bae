//! Key-value state of drivers, namespaced by driver name. A driver's batch
//! of writes is applied in one transaction: all of it or none of it.

use std::ops::Bound;

use super::tables::DRIVER_KV;
use super::{Store, StoreError};

impl Store {
    /// The value of `key` in `driver`'s state, if any.
    pub fn kv_get(&self, driver: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVER_KV)?;
            Ok(table.get((driver, key))?.map(|g| g.value().to_vec()))
        })
    }

    /// Keys of `driver`'s state that start with `prefix`, in byte order.
    pub fn kv_keys(&self, driver: &str, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVER_KV)?;
            let mut out = Vec::new();
            // Tuples order by driver, then key, so the matching keys are one
            // contiguous run starting at (driver, prefix).
            for entry in table
                .range::<(&str, &str)>((Bound::Included((driver, prefix)), Bound::Unbounded))?
            {
                let (k, _) = entry?;
                let (d, key) = k.value();
                if d != driver || !key.starts_with(prefix) {
                    break;
                }
                out.push(key.to_owned());
            }
            Ok(out)
        })
    }

    /// Applies `writes` to `driver`'s state in one transaction; `None` removes the key.
    pub fn kv_commit(
        &self,
        driver: &str,
        writes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(DRIVER_KV)?;
            for (key, value) in &writes {
                match value {
                    Some(v) => {
                        table.insert((driver, key.as_str()), v.as_slice())?;
                    }
                    None => {
                        table.remove((driver, key.as_str()))?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: &[u8]) -> (String, Option<Vec<u8>>) {
        (k.to_owned(), Some(v.to_vec()))
    }

    #[test]
    fn kv_round_trip_prefix_and_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        {
            let s = Store::open(&path).unwrap();
            s.kv_commit(
                "takeover",
                vec![
                    set("lun/b", b"2"),
                    set("lun/a", b"1"),
                    set("lun", b"bare"),
                    set("lum/x", b"x"),
                    set("map/1", b"m"),
                    set("", b"empty key"),
                ],
            )
            .unwrap();
            s.kv_commit("takeover2", vec![set("lun/z", b"other driver")])
                .unwrap();
            s.kv_commit("plain", vec![set("lun/a", b"plain")]).unwrap();
            s.kv_commit("takeover", vec![("lun/b".into(), None), set("lun/c", b"3")])
                .unwrap();
            // Removing an absent key is fine; an empty batch writes nothing.
            s.kv_commit("takeover", vec![("nope".into(), None)])
                .unwrap();
            s.kv_commit("takeover", vec![]).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.kv_get("takeover", "lun/a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.kv_get("takeover", "lun/b").unwrap(), None);
        assert_eq!(s.kv_get("plain", "lun/a").unwrap(), Some(b"plain".to_vec()));
        assert_eq!(
            s.kv_get("takeover", "").unwrap(),
            Some(b"empty key".to_vec())
        );
        assert_eq!(
            s.kv_keys("takeover", "lun/").unwrap(),
            vec!["lun/a", "lun/c"]
        );
        assert_eq!(
            s.kv_keys("takeover", "lun").unwrap(),
            vec!["lun", "lun/a", "lun/c"]
        );
        assert_eq!(
            s.kv_keys("takeover", "").unwrap(),
            vec!["", "lum/x", "lun", "lun/a", "lun/c", "map/1"]
        );
        assert_eq!(s.kv_keys("takeover2", "").unwrap(), vec!["lun/z"]);
        assert!(s.kv_keys("absent", "").unwrap().is_empty());
        assert!(s.kv_keys("takeover", "zzz").unwrap().is_empty());
    }
}
