//! Generic keyed byte records for later modules: migrations with their
//! journal, and hydration bitmaps. The owner of each kind chooses the encoding.

use redb::{ReadableTable, TableDefinition};

use super::tables::{HYDRATION, MIGRATIONS};
use super::{Store, StoreError};

/// Which kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordTable {
    /// Migrations and their journal.
    Migrations,
    /// Hydration bitmaps.
    Hydration,
}

impl RecordTable {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            RecordTable::Migrations => MIGRATIONS,
            RecordTable::Hydration => HYDRATION,
        }
    }
}

impl Store {
    /// Writes a record, replacing the one with the same key.
    pub fn put_record(
        &self,
        table: RecordTable,
        key: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(table.definition())?.insert(key, value)?;
            Ok(())
        })
    }

    /// The record under `key`, if any.
    pub fn record(&self, table: RecordTable, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(table.definition())?;
            Ok(t.get(key)?.map(|g| g.value().to_vec()))
        })
    }

    /// Removes the record under `key`; removing an absent key is not an error.
    pub fn delete_record(&self, table: RecordTable, key: &str) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(table.definition())?.remove(key)?;
            Ok(())
        })
    }

    /// Every record of a kind, by key.
    pub fn records(&self, table: RecordTable) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|txn| {
            let t = txn.open_table(table.definition())?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (k, v) = entry?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_per_table_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.record(RecordTable::Migrations, "m1").unwrap(), None);
            s.put_record(RecordTable::Migrations, "m2", b"{\"b\":2}")
                .unwrap();
            s.put_record(RecordTable::Migrations, "m1", b"{\"a\":1}")
                .unwrap();
            s.put_record(RecordTable::Migrations, "m3", b"gone")
                .unwrap();
            s.delete_record(RecordTable::Migrations, "m3").unwrap();
            s.delete_record(RecordTable::Migrations, "absent").unwrap();
            s.put_record(RecordTable::Hydration, "m1", &[0xff, 0x00, 0x01])
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.records(RecordTable::Migrations).unwrap(),
            vec![
                ("m1".to_owned(), b"{\"a\":1}".to_vec()),
                ("m2".to_owned(), b"{\"b\":2}".to_vec()),
            ]
        );
        // Same key, other table: independent.
        assert_eq!(
            s.record(RecordTable::Hydration, "m1").unwrap(),
            Some(vec![0xff, 0x00, 0x01])
        );
        assert_eq!(s.records(RecordTable::Hydration).unwrap().len(), 1);
    }
}
