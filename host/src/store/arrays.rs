//! The array configuration the host last ran with, so that a restart with a
//! changed configuration can be checked against the volumes that exist.

use serde::{Deserialize, Serialize};

use super::tables::{ARRAYS, ARRAYS_KEY};
use super::{Store, StoreError, decode, encode};
use crate::config::ArrayConfig;

/// Pairs of array names connected over the fabric, as in the configuration.
pub type Zoning = Vec<[String; 2]>;

#[derive(Serialize, Deserialize)]
struct ArraysRecord {
    arrays: Vec<ArrayConfig>,
    zoning: Zoning,
}

impl Store {
    /// Replaces the stored array configuration.
    pub fn put_arrays(
        &self,
        arrays: &[ArrayConfig],
        zoning: &[[String; 2]],
    ) -> Result<(), StoreError> {
        let bytes = encode(&ArraysRecord {
            arrays: arrays.to_vec(),
            zoning: zoning.to_vec(),
        })?;
        self.write(|txn| {
            txn.open_table(ARRAYS)?
                .insert(ARRAYS_KEY, bytes.as_slice())?;
            Ok(())
        })
    }

    /// The stored array configuration and zoning; `None` before the first
    /// [`put_arrays`](Self::put_arrays).
    pub fn arrays(&self) -> Result<Option<(Vec<ArrayConfig>, Zoning)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(ARRAYS)?;
            let Some(found) = table.get(ARRAYS_KEY)? else {
                return Ok(None);
            };
            let record: ArraysRecord = decode("arrays", ARRAYS_KEY, found.value())?;
            Ok(Some((record.arrays, record.zoning)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn arrays_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let config = Config::embedded_default();
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.arrays().unwrap(), None);
            s.put_arrays(&config.arrays[..1], &[]).unwrap();
            s.put_arrays(&config.arrays, &config.zoning).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let (arrays, zoning) = s.arrays().unwrap().unwrap();
        assert_eq!(arrays, config.arrays);
        assert_eq!(zoning, config.zoning);
        assert_eq!(arrays.len(), 4);
    }
}
