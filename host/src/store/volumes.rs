//! Volumes, with their attachments inside, keyed by hyphenated id.

use redb::ReadableTable;
use uuid::Uuid;

use super::tables::VOLUMES;
use super::{Store, StoreError, UpdateError, decode, encode};
use crate::model::Volume;

const KIND: &str = "volume";

fn key(id: Uuid) -> String {
    id.hyphenated().to_string()
}

impl Store {
    /// Writes a volume, replacing any record with the same id.
    pub fn put_volume(&self, v: &Volume) -> Result<(), StoreError> {
        let bytes = encode(v)?;
        self.write(|txn| {
            txn.open_table(VOLUMES)?
                .insert(key(v.id).as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Writes a new volume; fails with [`StoreError::Conflict`] if its id exists.
    pub fn insert_volume(&self, v: &Volume) -> Result<(), StoreError> {
        let bytes = encode(v)?;
        let k = key(v.id);
        self.write(|txn| {
            let mut table = txn.open_table(VOLUMES)?;
            if table.get(k.as_str())?.is_some() {
                return Err(StoreError::Conflict { kind: KIND, key: k });
            }
            table.insert(k.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// The volume with this id, if any.
    pub fn get_volume(&self, id: Uuid) -> Result<Option<Volume>, StoreError> {
        let k = key(id);
        self.read(|txn| {
            let table = txn.open_table(VOLUMES)?;
            let found = table.get(k.as_str())?;
            found.map(|g| decode(KIND, &k, g.value())).transpose()
        })
    }

    /// Every volume, oldest first (by creation time, then id).
    pub fn list_volumes(&self) -> Result<Vec<Volume>, StoreError> {
        let mut out: Vec<Volume> = self.read(|txn| {
            let table = txn.open_table(VOLUMES)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.push(decode(KIND, k.value(), v.value())?);
            }
            Ok(out)
        })?;
        // RFC 3339 timestamps of one format sort as text.
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Removes a volume; tells whether it existed.
    pub fn delete_volume(&self, id: Uuid) -> Result<bool, StoreError> {
        self.write(|txn| Ok(txn.open_table(VOLUMES)?.remove(key(id).as_str())?.is_some()))
    }

    /// Removes a volume if `check` accepts it as it is, in one write
    /// transaction; `check`'s refusal comes back as
    /// [`UpdateError::Refused`] with nothing removed.
    pub fn remove_volume_if<E, F>(&self, id: Uuid, check: F) -> Result<Volume, UpdateError<E>>
    where
        F: FnOnce(&Volume) -> Result<(), E>,
    {
        let k = key(id);
        let txn = self.db.begin_write().map_err(UpdateError::store)?;
        let removed = {
            let mut table = txn.open_table(VOLUMES).map_err(UpdateError::store)?;
            let volume: Volume = match table.get(k.as_str()).map_err(UpdateError::store)? {
                Some(current) => decode(KIND, &k, current.value())?,
                None => return Err(UpdateError::NotFound),
            };
            check(&volume).map_err(UpdateError::Refused)?;
            table.remove(k.as_str()).map_err(UpdateError::store)?;
            volume
        };
        txn.commit().map_err(UpdateError::store)?;
        Ok(removed)
    }

    /// Reads, changes and writes a volume in one write transaction.
    ///
    /// `f` sees the current record and may change it, or refuse with an
    /// error that is handed back as [`UpdateError::Refused`] with nothing
    /// written. Write transactions are serialized, so of two callers racing to
    /// move a volume out of a status, exactly one sees the old status. The
    /// record is written back under `id` whatever `f` does to `v.id`.
    pub fn update_volume<E, F>(&self, id: Uuid, f: F) -> Result<Volume, UpdateError<E>>
    where
        F: FnOnce(&mut Volume) -> Result<(), E>,
    {
        let k = key(id);
        let txn = self.db.begin_write().map_err(UpdateError::store)?;
        let updated = {
            let mut table = txn.open_table(VOLUMES).map_err(UpdateError::store)?;
            let mut volume: Volume = match table.get(k.as_str()).map_err(UpdateError::store)? {
                Some(current) => decode(KIND, &k, current.value())?,
                None => return Err(UpdateError::NotFound),
            };
            f(&mut volume).map_err(UpdateError::Refused)?;
            let bytes = encode(&volume)?;
            table
                .insert(k.as_str(), bytes.as_slice())
                .map_err(UpdateError::store)?;
            volume
        };
        txn.commit().map_err(UpdateError::store)?;
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::model::{
        AttachMode, Attachment, DataPath, LunAddress, Migration, MigrationPath, MigrationPhase,
        MigrationStatus, Placement, VolumeStatus,
    };

    fn volume(n: u128, created_at: &str) -> Volume {
        Volume {
            id: Uuid::from_u128(n),
            name: format!("vol-{n}"),
            description: None,
            size_bytes: 512 * (n as u64 + 1),
            status: VolumeStatus::Available,
            migration_status: None,
            array: "t1".into(),
            pool: "default".into(),
            provider_location: Some(format!("lun-{n}")),
            attachments: vec![],
            created_at: created_at.into(),
            migration: None,
        }
    }

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("ferry.redb")).unwrap()
    }

    #[test]
    fn round_trip_with_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let mut v = volume(7, "2024-01-01T00:00:00.000Z");
        v.status = VolumeStatus::InUse;
        v.migration_status = Some(MigrationStatus::MigratingAttachable);
        v.attachments.push(Attachment {
            id: Uuid::from_u128(99),
            export: Some("secret-99".into()),
            server: "db-1".into(),
            mode: AttachMode::Ro,
            lun: DataPath::Lun(LunAddress {
                pool: "default".into(),
                name: "exp-99".into(),
            }),
            created_at: "2024-01-02T00:00:00.000Z".into(),
        });
        v.attachments.push(Attachment {
            id: Uuid::from_u128(100),
            export: Some("secret-100".into()),
            server: "db-2".into(),
            mode: AttachMode::Rw,
            lun: DataPath::Nbd {
                nbd_uri: "nbd://192.0.2.1:10809/x".into(),
            },
            created_at: "2024-01-02T00:00:00.000Z".into(),
        });
        v.migration = Some(Migration {
            id: Uuid::from_u128(1000),
            source: Placement {
                array: "p1".into(),
                pool: "default".into(),
                provider_location: Some("src".into()),
            },
            destination: Placement {
                array: "t1".into(),
                pool: "default".into(),
                provider_location: None,
            },
            original_status: VolumeStatus::InUse,
            force_host_copy: false,
            lock_volume: true,
            phase: MigrationPhase::HostCopy,
            path: Some(MigrationPath::HostCopy),
            status: MigrationStatus::Migrating,
            done_bytes: 4096,
            total_bytes: 8192,
            checkpoint: 4096,
            abort_requested: false,
            remote: None,
            hydrating: None,
            switched: Vec::new(),
            taken_over_attached: false,
            error: None,
            warnings: vec![],
            attempts: 0,
            source_removal: None,
            started_at: "2024-01-02T00:00:00.000Z".into(),
            finished_at: None,
        });
        s.put_volume(&v).unwrap();
        assert_eq!(s.get_volume(v.id).unwrap(), Some(v.clone()));
        assert_eq!(s.get_volume(Uuid::from_u128(8)).unwrap(), None);

        v.name = "renamed".into();
        s.put_volume(&v).unwrap();
        assert_eq!(s.get_volume(v.id).unwrap().unwrap().name, "renamed");
        assert_eq!(s.list_volumes().unwrap().len(), 1);

        assert!(s.delete_volume(v.id).unwrap());
        assert!(!s.delete_volume(v.id).unwrap());
        assert_eq!(s.get_volume(v.id).unwrap(), None);
    }

    /// Attachments recorded before NBD exports existed hold a bare LUN
    /// address; they still read, as a LUN.
    #[test]
    fn an_attachments_bare_lun_address_reads_as_a_lun() {
        let old = r#"{"id":"00000000-0000-0000-0000-000000000063","server":"s","mode":"rw",
            "lun":{"pool":"default","name":"volume-1"},"created_at":"2024-01-02T00:00:00.000Z"}"#;
        let a: Attachment = serde_json::from_str(old).unwrap();
        assert_eq!(
            a.lun,
            DataPath::Lun(LunAddress {
                pool: "default".into(),
                name: "volume-1".into()
            })
        );
    }

    #[test]
    fn insert_refuses_existing_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let v = volume(1, "2024-01-01T00:00:00.000Z");
        s.insert_volume(&v).unwrap();
        let mut other = v.clone();
        other.name = "other".into();
        let err = s.insert_volume(&other).unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        assert!(err.to_string().contains(&v.id.to_string()), "{err}");
        assert_eq!(s.get_volume(v.id).unwrap().unwrap().name, "vol-1");
    }

    #[test]
    fn list_sorted_by_creation_then_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        s.put_volume(&volume(5, "2024-01-03T00:00:00.000Z"))
            .unwrap();
        s.put_volume(&volume(9, "2024-01-01T00:00:00.000Z"))
            .unwrap();
        s.put_volume(&volume(2, "2024-01-02T00:00:00.000Z"))
            .unwrap();
        s.put_volume(&volume(1, "2024-01-02T00:00:00.000Z"))
            .unwrap();
        let ids: Vec<u128> = s
            .list_volumes()
            .unwrap()
            .iter()
            .map(|v| v.id.as_u128())
            .collect();
        assert_eq!(ids, vec![9, 1, 2, 5]);
    }

    #[test]
    fn update_applies_refuses_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let v = volume(3, "2024-01-01T00:00:00.000Z");
        s.put_volume(&v).unwrap();

        let updated = s
            .update_volume(v.id, |v| {
                v.status = VolumeStatus::Deleting;
                Ok::<_, String>(())
            })
            .unwrap();
        assert_eq!(updated.status, VolumeStatus::Deleting);
        assert_eq!(
            s.get_volume(v.id).unwrap().unwrap().status,
            VolumeStatus::Deleting
        );

        let err = s
            .update_volume(v.id, |v| {
                v.name = "never written".into();
                Err("busy")
            })
            .unwrap_err();
        assert!(matches!(err, UpdateError::Refused("busy")), "{err:?}");
        assert_eq!(s.get_volume(v.id).unwrap().unwrap().name, "vol-3");

        let err = s
            .update_volume(Uuid::from_u128(4), |_| Ok::<_, String>(()))
            .unwrap_err();
        assert!(matches!(err, UpdateError::NotFound), "{err:?}");
    }

    #[test]
    fn racing_updates_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        for round in 0..5u128 {
            let v = volume(100 + round, "2024-01-01T00:00:00.000Z");
            s.put_volume(&v).unwrap();
            let barrier = Arc::new(Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let s = s.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        s.update_volume(v.id, |v| {
                            if v.status != VolumeStatus::Available {
                                return Err(v.status);
                            }
                            // Widen the window between read and write.
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            v.status = VolumeStatus::Migrating;
                            v.migration_status = Some(MigrationStatus::Starting);
                            Ok(())
                        })
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let wins = results.iter().filter(|r| r.is_ok()).count();
            let refused = results
                .iter()
                .filter(|r| matches!(r, Err(UpdateError::Refused(VolumeStatus::Migrating))))
                .count();
            assert_eq!((wins, refused), (1, 7), "{results:?}");
            assert_eq!(
                s.get_volume(v.id).unwrap().unwrap().status,
                VolumeStatus::Migrating
            );
        }
    }

    #[test]
    fn volumes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let vs: Vec<Volume> = (0..20)
            .map(|n| volume(n, &format!("2024-01-01T00:00:{n:02}.000Z")))
            .collect();
        {
            let s = Store::open(&path).unwrap();
            for v in &vs {
                s.insert_volume(v).unwrap();
            }
            s.delete_volume(vs[4].id).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let mut expected = vs.clone();
        expected.remove(4);
        assert_eq!(s.list_volumes().unwrap(), expected);
    }

    #[test]
    fn unreadable_record_names_table_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir);
        let id = Uuid::from_u128(11);
        s.write(|txn| {
            txn.open_table(VOLUMES)?
                .insert(key(id).as_str(), b"{not json".as_slice())?;
            Ok(())
        })
        .unwrap();
        let err = s.get_volume(id).unwrap_err();
        assert!(matches!(err, StoreError::Decode { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("volume") && msg.contains(&id.to_string()),
            "{msg}"
        );
        assert!(s.list_volumes().is_err());
    }
}
