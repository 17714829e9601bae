//! What the driver keeps in state about a taken-over remote LUN, so the
//! calls that follow `take-over-remote-lun` (each in a fresh instance) know
//! which LUN they were handed and can check it is still the same one.

use ferry_sdk::{DriverError, Lun, state};

/// State key prefix of take-over records: `takeover/<volume id>`.
const PREFIX: &str = "takeover/";

/// A remote LUN this array took over for a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOver {
    /// Array that owns the remote LUN.
    pub array: String,
    /// Pool of the remote LUN on that array.
    pub pool: String,
    /// Name of the remote LUN.
    pub name: String,
    /// Size of the remote LUN in bytes.
    pub size_bytes: u64,
}

impl TakeOver {
    /// Describes the remote LUN `remote`.
    pub fn of(remote: &Lun) -> TakeOver {
        let address = remote.address();
        TakeOver {
            array: remote.array(),
            pool: address.pool,
            name: address.name,
            size_bytes: remote.size(),
        }
    }

    /// The record kept for `volume_id`, if any.
    pub fn load(volume_id: &str) -> Result<Option<TakeOver>, DriverError> {
        state::get_string(&key(volume_id))?
            .map(|text| TakeOver::decode(&text))
            .transpose()
    }

    /// Keeps this record for `volume_id`, replacing any earlier one.
    pub fn store(&self, volume_id: &str) -> Result<(), DriverError> {
        state::set_string(&key(volume_id), &self.encode())
    }

    /// Forgets the record of `volume_id`; forgetting none succeeds.
    pub fn forget(volume_id: &str) {
        state::remove(&key(volume_id))
    }

    /// One `field=value` line per field; values never hold newlines because
    /// array, pool and LUN names are single path components.
    fn encode(&self) -> String {
        format!(
            "array={}\npool={}\nname={}\nsize={}\n",
            self.array, self.pool, self.name, self.size_bytes
        )
    }

    fn decode(text: &str) -> Result<TakeOver, DriverError> {
        let corrupt = |why: &str| DriverError::BackendError(format!("take-over record {why}"));
        let (mut array, mut pool, mut name, mut size) = (None, None, None, None);
        for line in text.lines() {
            let (field, value) = line
                .split_once('=')
                .ok_or_else(|| corrupt("has a line without '='"))?;
            let slot = match field {
                "array" => &mut array,
                "pool" => &mut pool,
                "name" => &mut name,
                "size" => &mut size,
                _ => return Err(corrupt("has an unknown field")),
            };
            *slot = Some(value.to_owned());
        }
        let size_bytes = size
            .ok_or_else(|| corrupt("lacks the size"))?
            .parse()
            .map_err(|_| corrupt("has a size that is not a number"))?;
        Ok(TakeOver {
            array: array.ok_or_else(|| corrupt("lacks the array"))?,
            pool: pool.ok_or_else(|| corrupt("lacks the pool"))?,
            name: name.ok_or_else(|| corrupt("lacks the LUN name"))?,
            size_bytes,
        })
    }
}

fn key(volume_id: &str) -> String {
    format!("{PREFIX}{volume_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let record = TakeOver {
            array: "p1".into(),
            pool: "default".into(),
            name: "volume-42".into(),
            size_bytes: 1 << 30,
        };
        assert_eq!(TakeOver::decode(&record.encode()).unwrap(), record);
    }

    #[test]
    fn refuses_corrupt_records() {
        for text in [
            "",
            "array=a",
            "array=a\npool=b\nname=c\nsize=x",
            "junk",
            "x=1",
        ] {
            assert!(TakeOver::decode(text).is_err(), "{text:?}");
        }
    }
}
