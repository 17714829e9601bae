//! Drivers: their records (versions, active digest) by name, the component
//! bytes of every version by digest, and the compiled artifacts the runtime
//! caches.

use redb::ReadableTable;

use super::tables::{DRIVER_ARTIFACTS, DRIVER_BLOBS, DRIVERS};
use super::{Store, StoreError, decode, encode};
use crate::model::DriverRecord;

const KIND: &str = "driver";

impl Store {
    /// Stores component bytes under their digest. Content-addressed: a digest
    /// already present is left as it is.
    pub fn put_driver_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut table = txn.open_table(DRIVER_BLOBS)?;
            if table.get(digest)?.is_none() {
                table.insert(digest, bytes)?;
            }
            Ok(())
        })
    }

    /// The component bytes stored under `digest`, if any.
    pub fn driver_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVER_BLOBS)?;
            Ok(table.get(digest)?.map(|g| g.value().to_vec()))
        })
    }

    /// Writes a driver record, replacing the one with the same name.
    pub fn put_driver(&self, d: &DriverRecord) -> Result<(), StoreError> {
        let bytes = encode(d)?;
        self.write(|txn| {
            txn.open_table(DRIVERS)?
                .insert(d.name.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// The driver record of this name, if any.
    pub fn driver(&self, name: &str) -> Result<Option<DriverRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVERS)?;
            let found = table.get(name)?;
            found.map(|g| decode(KIND, name, g.value())).transpose()
        })
    }

    /// Every driver record, by name.
    pub fn list_drivers(&self) -> Result<Vec<DriverRecord>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVERS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.push(decode(KIND, k.value(), v.value())?);
            }
            Ok(out)
        })
    }
}

impl Store {
    /// Removes version `digest` from the record of driver `name` and, when
    /// no driver lists that digest any more (blobs are shared by content),
    /// its component bytes and its compiled artifacts under every engine
    /// setting, all in one transaction. Answers whether the bytes went. The
    /// caller has checked that the version is not the active one.
    pub fn delete_driver_version(&self, name: &str, digest: &str) -> Result<bool, StoreError> {
        self.write(|txn| {
            let mut drivers = txn.open_table(DRIVERS)?;
            let found = drivers.get(name)?.map(|g| g.value().to_vec());
            if let Some(bytes) = found {
                let mut record: DriverRecord = decode(KIND, name, &bytes)?;
                record.versions.retain(|v| v.digest != digest);
                drivers.insert(name, encode(&record)?.as_slice())?;
            }
            for entry in drivers.iter()? {
                let (k, v) = entry?;
                let record: DriverRecord = decode(KIND, k.value(), v.value())?;
                if record.active_digest == digest
                    || record.versions.iter().any(|v| v.digest == digest)
                {
                    return Ok(false);
                }
            }
            txn.open_table(DRIVER_BLOBS)?.remove(digest)?;
            // Artifact keys are `DIGEST.ENGINEHASH`.
            let prefix = format!("{digest}.");
            txn.open_table(DRIVER_ARTIFACTS)?
                .retain_in(prefix.as_str().., |k, _| !k.starts_with(&prefix))?;
            Ok(true)
        })
    }

    /// The digests of every stored component.
    pub fn driver_blob_digests(&self) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVER_BLOBS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                out.push(entry?.0.value().to_owned());
            }
            Ok(out)
        })
    }

    /// The keys of every cached artifact (`DIGEST.ENGINEHASH`).
    pub fn artifact_keys(&self) -> Result<Vec<String>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVER_ARTIFACTS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                out.push(entry?.0.value().to_owned());
            }
            Ok(out)
        })
    }

    /// The compiled artifact stored under `key`, if any.
    pub fn artifact(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(DRIVER_ARTIFACTS)?;
            Ok(table.get(key)?.map(|g| g.value().to_vec()))
        })
    }

    /// Stores a compiled artifact under `key`.
    pub fn put_artifact(&self, key: &str, artifact: &[u8]) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(DRIVER_ARTIFACTS)?.insert(key, artifact)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DriverVersion;

    fn record(name: &str, digests: &[&str]) -> DriverRecord {
        DriverRecord {
            name: name.into(),
            active_digest: digests.last().unwrap().to_string(),
            versions: digests
                .iter()
                .map(|d| DriverVersion {
                    digest: d.to_string(),
                    installed_at: "2024-01-01T00:00:00.000Z".into(),
                    contract: None,
                })
                .collect(),
        }
    }

    #[test]
    fn blobs_are_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.redb")).unwrap();
        assert_eq!(s.driver_blob("aa").unwrap(), None);
        // Large enough to span many pages.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        s.put_driver_blob("aa", &big).unwrap();
        s.put_driver_blob("aa", &big).unwrap();
        s.put_driver_blob("bb", b"\0asm").unwrap();
        assert_eq!(s.driver_blob("aa").unwrap().unwrap(), big);
        assert_eq!(s.driver_blob("bb").unwrap().unwrap(), b"\0asm");
    }

    #[test]
    fn driver_records_round_trip_sorted_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.driver("plain").unwrap(), None);
            s.put_driver(&record("takeover", &["d1"])).unwrap();
            s.put_driver(&record("plain", &["d2"])).unwrap();
            s.put_driver(&record("takeover", &["d1", "d3"])).unwrap();
            s.put_driver_blob("d3", b"component").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.driver("takeover").unwrap(),
            Some(record("takeover", &["d1", "d3"]))
        );
        let names: Vec<String> = s
            .list_drivers()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["plain", "takeover"]);
        assert_eq!(s.driver_blob("d3").unwrap().unwrap(), b"component");
    }

    #[test]
    fn deleting_a_version_keeps_bytes_another_driver_lists() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.redb")).unwrap();
        s.put_driver(&record("a", &["d1", "d2", "d3"])).unwrap();
        s.put_driver(&record("b", &["d1", "d4"])).unwrap();
        for d in ["d1", "d2", "d3", "d4"] {
            s.put_driver_blob(d, d.as_bytes()).unwrap();
            s.put_artifact(&format!("{d}.00ff"), b"code").unwrap();
            s.put_artifact(&format!("{d}.11ee"), b"code").unwrap();
        }
        // Another digest that shares the prefix without the dot stays.
        s.put_artifact("d20.00ff", b"code").unwrap();

        assert!(s.delete_driver_version("a", "d2").unwrap());
        assert_eq!(s.driver("a").unwrap(), Some(record("a", &["d1", "d3"])));
        assert_eq!(s.driver_blob("d2").unwrap(), None);
        assert_eq!(
            s.artifact_keys().unwrap(),
            [
                "d1.00ff", "d1.11ee", "d20.00ff", "d3.00ff", "d3.11ee", "d4.00ff", "d4.11ee"
            ]
        );

        // d1 is still a version of b: only a's record changes.
        assert!(!s.delete_driver_version("a", "d1").unwrap());
        assert_eq!(s.driver("a").unwrap(), Some(record("a", &["d3"])));
        assert_eq!(s.driver_blob("d1").unwrap().unwrap(), b"d1");
        assert!(s.artifact("d1.00ff").unwrap().is_some());
        assert!(s.delete_driver_version("b", "d1").unwrap());
        assert_eq!(s.driver_blob_digests().unwrap(), ["d3", "d4"]);
    }
}
