//! Table layout of the database file. Names are part of the on-disk format:
//! renaming one needs a schema upgrade step.

use redb::{TableDefinition, WriteTransaction};

use super::StoreError;

/// Small counters and markers, by name.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Key in [`META`] of the schema version.
pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
/// Key in [`META`] of the next event sequence number; survives trimming.
pub(super) const META_NEXT_EVENT_SEQ: &str = "next_event_seq";

/// Volumes (with their attachments) as JSON, by hyphenated id.
pub(super) const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");
/// The array configuration the host last ran with, as JSON, under [`ARRAYS_KEY`].
pub(super) const ARRAYS: TableDefinition<&str, &[u8]> = TableDefinition::new("arrays");
/// The one key of [`ARRAYS`].
pub(super) const ARRAYS_KEY: &str = "current";
/// Driver records as JSON, by driver name.
pub(super) const DRIVERS: TableDefinition<&str, &[u8]> = TableDefinition::new("drivers");
/// Driver component bytes, by digest.
pub(super) const DRIVER_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("driver_blobs");
/// Compiled driver artifacts this host produced, by digest and engine
/// settings (see `runtime::ArtifactCache`).
pub(super) const DRIVER_ARTIFACTS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("driver_artifacts");
/// Events as JSON, by sequence number.
pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Key-value state of drivers, by (driver name, key).
pub(super) const DRIVER_KV: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("driver_kv");
/// Migrations and their journal, by key.
pub(super) const MIGRATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("migrations");
/// Hydration bitmaps, by key.
pub(super) const HYDRATION: TableDefinition<&str, &[u8]> = TableDefinition::new("hydration");

/// Creates every table that does not exist yet, so that read transactions
/// can open any of them without a "does not exist" case.
pub(super) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(META)?;
    txn.open_table(VOLUMES)?;
    txn.open_table(ARRAYS)?;
    txn.open_table(DRIVERS)?;
    txn.open_table(DRIVER_BLOBS)?;
    txn.open_table(DRIVER_ARTIFACTS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(DRIVER_KV)?;
    txn.open_table(MIGRATIONS)?;
    txn.open_table(HYDRATION)?;
    Ok(())
}
