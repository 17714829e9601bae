//! The `takeover` example driver: takes over LUNs of zoned arrays and moves
//! volumes onto its own array as the migration target, asynchronously: the
//! volume is usable here at once while the host hydrates it from the remote
//! LUN. As a source it declines.

mod hydrating;
mod record;
mod target;

use ferry_sdk::{
    Capabilities, Completion, ConnectionInfo, Connector, DataPath, Driver, DriverError, Lun,
    Source, TargetOutcome, Volume, block, layout,
};

use record::TakeOver;

/// The driver.
pub struct Takeover;

impl Driver for Takeover {
    fn capabilities() -> Capabilities {
        Capabilities {
            take_over: true,
            async_target_migration: true,
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
        target::delete(&volume)
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

    fn take_over_remote_lun(volume: Volume, remote: &Lun) -> Result<(), DriverError> {
        // Names the local LUN up front so a bad id fails here, not mid-move.
        layout::new_volume_lun(&volume)?;
        let record = TakeOver::of(remote);
        if record.size_bytes != volume.size_bytes {
            return Err(DriverError::InvalidArgument(format!(
                "remote LUN {}/{} holds {} bytes, volume {} has {}",
                record.pool, record.name, record.size_bytes, volume.id, volume.size_bytes
            )));
        }
        record.store(&volume.id)?;
        ferry_sdk::info!(
            "took over {}/{}/{} for volume {}",
            record.array,
            record.pool,
            record.name,
            volume.id
        );
        Ok(())
    }

    fn migrate_volume_target(
        volume: Volume,
        _source: Source,
        remote: &Lun,
    ) -> Result<TargetOutcome, DriverError> {
        target::migrate(&volume, remote)
    }

    fn complete_migration_target(
        volume: Volume,
        _source: Source,
        _remote: &Lun,
    ) -> Result<Completion, DriverError> {
        target::poll(&volume)
    }
}

ferry_sdk::export_driver!(Takeover);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_offer_take_over_and_async_target() {
        let caps = Takeover::capabilities();
        assert!(caps.take_over && caps.async_target_migration && caps.sparse);
        assert!(!caps.source_migration);
    }
}
