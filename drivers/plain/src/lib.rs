//! The `plain` example driver: stores each volume as one thin LUN and
//! declines every migration call, so migrations to and from its arrays fall
//! back to the host's own copy.

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, DataPath, Driver, DriverError, Volume, block, layout,
};

/// The driver. Only the life-cycle calls are implemented: the SDK's defaults
/// decline `migrate-volume`, `take-over-remote-lun`,
/// `migrate-volume-target` and `complete-migration-target`.
pub struct Plain;

impl Driver for Plain {
    fn capabilities() -> Capabilities {
        Capabilities {
            sparse: true,
            ..Capabilities::NONE
        }
    }

    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
        let address = layout::new_volume_lun(&volume)?;
        block::ensure_lun(&address, volume.size_bytes)?;
        ferry_sdk::info!("created {} ({} bytes)", address.name, volume.size_bytes);
        Ok(Some(layout::provider_location(&address)))
    }

    fn manage_existing(
        volume: Volume,
        reference: String,
    ) -> Result<ferry_sdk::Managed, DriverError> {
        layout::manage_lun(&volume, &reference)
    }

    fn delete_volume(volume: Volume) -> Result<(), DriverError> {
        let address = layout::volume_lun(&volume)?;
        block::delete_lun_if_present(&address)?;
        ferry_sdk::info!("deleted {}", address.name);
        Ok(())
    }

    fn initialize_connection(
        volume: Volume,
        _connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        Ok(ConnectionInfo {
            data: DataPath::Lun(layout::volume_lun(&volume)?),
            read_only: false,
        })
    }
}

ferry_sdk::export_driver!(Plain);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_offer_nothing_but_thin_luns() {
        let caps = Plain::capabilities();
        assert!(caps.sparse);
        assert!(!caps.take_over && !caps.async_target_migration && !caps.source_migration);
    }
}
