//! A driver that targets the right world but traps in `capabilities`, the
//! host's smoke call: the registry must refuse it and keep the version that
//! was active.

use ferry_sdk::{Capabilities, ConnectionInfo, Connector, Driver, DriverError, Volume};

/// The driver.
pub struct TrapCapabilities;

impl Driver for TrapCapabilities {
    fn capabilities() -> Capabilities {
        panic!("capabilities traps on purpose")
    }

    fn create_volume(_volume: Volume) -> Result<Option<String>, DriverError> {
        Err(DriverError::Unsupported("this driver only traps".into()))
    }

    fn delete_volume(_volume: Volume) -> Result<(), DriverError> {
        Err(DriverError::Unsupported("this driver only traps".into()))
    }

    fn initialize_connection(
        _volume: Volume,
        _connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        Err(DriverError::Unsupported("this driver only traps".into()))
    }
}

ferry_sdk::export_driver!(TrapCapabilities);
