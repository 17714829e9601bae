//! Ferry's persistence: one redb database file in the data directory holding
//! arrays, volumes with their attachments, drivers and their versions,
//! migrations, hydration bitmaps, driver key-value state, a bounded event log
//! and the schema version. Only this module touches redb.
//!
//! Records are stored as JSON so that a field added by a later version does
//! not need a schema step. Every write is one committed, durable transaction.

mod arrays;
mod drivers;
mod error;
mod events;
mod kv;
mod records;
mod tables;
mod volumes;

#[cfg(test)]
mod process_tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use arrays::Zoning;
pub use error::{StoreError, UpdateError};
pub use records::RecordTable;

use tables::{META, META_SCHEMA_VERSION};

/// Schema version this build writes. A file with an older version is
/// upgraded on open; a newer one is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// How many events the log keeps by default; older ones are dropped.
pub const DEFAULT_EVENT_CAPACITY: u64 = crate::config::DEFAULT_EVENT_MAX_COUNT;

/// Most events one append drops (by count and by age together): lowering
/// the limits trims a long backlog over the next appends instead of in one
/// long transaction, so an append's cost stays bounded.
pub const EVENT_TRIM_PER_APPEND: usize = 256;

/// The page cache is a ceiling, not an allocation; the records are small and
/// driver components are read once per load.
const CACHE_BYTES: usize = 64 << 20;

/// Tunables of a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// How many of the newest events the log keeps (at least one).
    pub event_capacity: u64,
    /// Events older than this (by their `at` time) are dropped; `None`
    /// keeps them until the count limit drops them.
    pub event_max_age: Option<std::time::Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            event_capacity: DEFAULT_EVENT_CAPACITY,
            event_max_age: None,
        }
    }
}

/// A handle on the database. Cheap to clone; all clones share one open file.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    event_capacity: u64,
    event_max_age: Option<std::time::Duration>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("event_capacity", &self.event_capacity)
            .field("event_max_age", &self.event_max_age)
            .finish_non_exhaustive()
    }
}

/// One schema upgrade step: turns a database of version `from` into
/// `from + 1`. Steps run inside the transaction that opens the store, so an
/// upgrade either completes or leaves the file as it was.
struct Upgrade {
    from: u32,
    apply: fn(&WriteTransaction) -> Result<(), StoreError>,
}

/// Upgrade steps, one per version bump, in order.
const UPGRADES: &[Upgrade] = &[];

impl Store {
    /// Opens the database at `path`, creating it if absent, with default options.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the database at `path`, creating it if absent.
    ///
    /// A new file gets the current schema version; an older one is upgraded;
    /// a newer one is refused with [`StoreError::SchemaTooNew`].
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let db = open_database(path)?;
        prepare_schema(&db, path, SCHEMA_VERSION, UPGRADES)?;
        Ok(Store {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
            event_capacity: options.event_capacity.max(1),
            event_max_age: options.event_max_age,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    /// Runs `f` in a write transaction and commits it if `f` succeeds; on an
    /// error the transaction is dropped, which aborts it.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    }
}

fn open_database(path: &Path) -> Result<Database, StoreError> {
    // redb would create a missing file with the umask's mode; create it
    // first, private (the store holds every volume's record and the driver
    // state), and let redb initialise the empty file. An existing file is
    // left as it is.
    crate::private_fs::file_options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: e.into(),
        })?;
    // redb trusts a file it believes it closed cleanly and may panic on bytes
    // written by something else; that must surface as an error naming the file.
    let opened = std::panic::catch_unwind(|| {
        redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
    });
    let path = path.to_owned();
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(
            redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch,
        )) => Err(StoreError::InUse { path }),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)))) => {
            Err(StoreError::Corrupt {
                path,
                reason: format!("not a Ferry database, or damaged ({reason})"),
            })
        }
        // redb reports a file that does not start with its magic number as invalid data.
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(StoreError::Corrupt {
                path,
                reason: format!("not a Ferry database ({e})"),
            })
        }
        Ok(Err(redb::DatabaseError::UpgradeRequired(version))) => Err(StoreError::Corrupt {
            path,
            reason: format!("written in storage format {version}, which this Ferry cannot read"),
        }),
        Ok(Err(e)) => Err(StoreError::Open {
            path,
            source: e.into(),
        }),
        Err(_) => Err(StoreError::Corrupt {
            path,
            reason: "not a Ferry database, or damaged (reading it failed)".to_owned(),
        }),
    }
}

/// Checks the schema version, upgrades an older file and creates missing
/// tables, all in one transaction.
fn prepare_schema(
    db: &Database,
    path: &Path,
    target: u32,
    steps: &[Upgrade],
) -> Result<(), StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let txn = db.begin_write()?;
    let mut has_meta = false;
    let mut has_other = false;
    for table in txn.list_tables()? {
        if table.name() == META.name() {
            has_meta = true;
        } else {
            has_other = true;
        }
    }
    let found = if has_meta {
        let meta = txn.open_table(META)?;
        let found = meta.get(META_SCHEMA_VERSION)?.map(|g| g.value());
        match found {
            Some(v) => Some(u32::try_from(v).unwrap_or(u32::MAX)),
            None => return Err(corrupt("not a Ferry database (no schema version)")),
        }
    } else if has_other {
        return Err(corrupt("not a Ferry database (no schema version)"));
    } else {
        None
    };
    match found {
        None => {}
        Some(0) => return Err(corrupt("invalid schema version 0")),
        Some(v) if v > target => {
            return Err(StoreError::SchemaTooNew {
                found: v,
                supported: target,
            });
        }
        Some(v) => {
            for version in v..target {
                let step = steps
                    .iter()
                    .find(|s| s.from == version)
                    .ok_or_else(|| corrupt(&format!("no upgrade from schema version {version}")))?;
                (step.apply)(&txn)?;
            }
        }
    }
    txn.open_table(META)?
        .insert(META_SCHEMA_VERSION, u64::from(target))?;
    tables::create_all(&txn)?;
    txn.commit()?;
    Ok(())
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        table,
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_version(path: &Path) -> u64 {
        let db = Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        meta.get(META_SCHEMA_VERSION).unwrap().unwrap().value()
    }

    fn set_meta_version(path: &Path, v: u64) {
        let db = Database::open(path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(META_SCHEMA_VERSION, v)
            .unwrap();
        txn.commit().unwrap();
    }

    #[test]
    fn new_file_gets_current_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        drop(Store::open(&path).unwrap());
        assert_eq!(meta_version(&path), u64::from(SCHEMA_VERSION));
        // Reopening an up-to-date file changes nothing.
        drop(Store::open(&path).unwrap());
        assert_eq!(meta_version(&path), u64::from(SCHEMA_VERSION));
    }

    #[test]
    fn newer_schema_is_refused_with_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        drop(Store::open(&path).unwrap());
        set_meta_version(&path, u64::from(SCHEMA_VERSION) + 1);
        let err = Store::open(&path).unwrap_err();
        match &err {
            StoreError::SchemaTooNew { found, supported } => {
                assert_eq!(*found, SCHEMA_VERSION + 1);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("newer than this Ferry supports"), "{msg}");
        // The refusal does not touch the file.
        assert_eq!(meta_version(&path), u64::from(SCHEMA_VERSION) + 1);
    }

    #[test]
    fn older_schema_runs_upgrade_steps_in_order() {
        const MARKS: TableDefinition<u64, u64> = TableDefinition::new("upgrade_marks");
        fn mark(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
            let mut t = txn.open_table(MARKS)?;
            let n = t.len()?;
            t.insert(n, from)?;
            Ok(())
        }
        let steps = [
            Upgrade {
                from: 2,
                apply: |txn| mark(txn, 2),
            },
            Upgrade {
                from: 1,
                apply: |txn| mark(txn, 1),
            },
        ];
        use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        drop(Store::open(&path).unwrap());
        let db = Database::open(&path).unwrap();
        prepare_schema(&db, &path, 3, &steps).unwrap();
        {
            let txn = db.begin_read().unwrap();
            let marks = txn.open_table(MARKS).unwrap();
            let order: Vec<u64> = marks
                .iter()
                .unwrap()
                .map(|r| r.unwrap().1.value())
                .collect();
            assert_eq!(order, vec![1, 2]);
            let meta = txn.open_table(META).unwrap();
            assert_eq!(meta.get(META_SCHEMA_VERSION).unwrap().unwrap().value(), 3);
            assert_eq!(marks.len().unwrap(), 2);
        }
        // A missing step leaves the file untouched and says which version.
        let err = prepare_schema(&db, &path, 5, &steps).unwrap_err();
        assert!(
            err.to_string().contains("no upgrade from schema version 3"),
            "{err}"
        );
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get(META_SCHEMA_VERSION).unwrap().unwrap().value(), 3);
    }

    #[test]
    fn garbage_file_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("short.redb", b"this is not a database\n".to_vec()),
            ("long.redb", vec![0x5a; 64 * 1024]),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let err = Store::open(&path).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("not a Ferry database"), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            // The file is left as it was.
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }

    #[test]
    fn foreign_redb_database_is_refused() {
        use redb::TableDefinition;
        const OTHER: TableDefinition<&str, &str> = TableDefinition::new("something_else");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(OTHER).unwrap().insert("k", "v").unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("not a Ferry database"), "{err}");
    }

    #[test]
    fn missing_directory_is_an_open_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("ferry.redb");
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("absent"), "{err}");
    }

    #[test]
    fn second_open_in_this_process_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let first = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
        drop(first);
        // Once the holder is gone the file opens again.
        Store::open(&path).unwrap();
    }

    #[test]
    fn a_new_database_file_is_private_to_its_user() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        drop(Store::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn clones_share_one_database() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(&dir.path().join("ferry.redb")).unwrap();
        let b = a.clone();
        a.put_record(RecordTable::Migrations, "k", b"v").unwrap();
        assert_eq!(
            b.record(RecordTable::Migrations, "k").unwrap(),
            Some(b"v".to_vec())
        );
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Store>();
    }
}
