//! A careless driver for the conformance kit's tests. Unlike `misbehave` and
//! `faulty` it needs no special volume names: it breaks the contract on
//! ordinary input, in these places and nowhere else.
//!
//! | call                    | what it does wrong                                        |
//! | ----------------------- | --------------------------------------------------------- |
//! | `create-volume`         | a retry deletes the existing LUN and makes a new, empty one |
//! | `delete-volume`         | panics (traps) when the volume's LUN is missing            |
//! | `migrate-volume`        | claims the move to a peer but never copies the data       |
//! | `take-over-remote-lun`  | panics although it claims no take-over                    |
//! | `migrate-volume-target` | spins until the host's deadline stops it                  |
//!
//! The life cycle of a fresh volume (create, expose, terminate, delete) works,
//! so the kit must tell exactly these faults apart.

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, DataPath, Destination, Driver, DriverError, Lun,
    MigrateOutcome, PeerArray, Source, TargetOutcome, Volume, block, layout,
};

/// The driver.
pub struct Careless;

impl Driver for Careless {
    fn capabilities() -> Capabilities {
        Capabilities {
            source_migration: true,
            sparse: true,
            ..Capabilities::NONE
        }
    }

    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
        let address = layout::new_volume_lun(&volume)?;
        // The fault: "start clean" instead of reusing what a first attempt
        // made, which throws away data written since.
        block::delete_lun(&address)?;
        block::create_lun(&address, volume.size_bytes)?;
        Ok(Some(layout::provider_location(&address)))
    }

    fn delete_volume(volume: Volume) -> Result<(), DriverError> {
        let address = layout::volume_lun(&volume)?;
        // The fault: assumes the LUN is there instead of treating a missing
        // one as already deleted.
        let lun = block::open_lun(&address).expect("the volume's LUN exists");
        drop(lun);
        block::delete_lun(&address)
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

    fn migrate_volume(
        volume: Volume,
        destination: Destination,
        peer: Option<&PeerArray>,
    ) -> Result<MigrateOutcome, DriverError> {
        let Some(peer) = peer else {
            return Ok(MigrateOutcome::DECLINED);
        };
        let source = layout::volume_lun(&volume)?;
        let target = Volume {
            pool: destination.pool,
            provider_location: None,
            ..volume.clone()
        };
        let address = layout::new_volume_lun(&target)?;
        // The fault: an empty LUN on the peer stands in for the copy.
        peer.create_lun(&address, volume.size_bytes)?;
        block::delete_lun(&source)?;
        Ok(MigrateOutcome::moved(layout::provider_location(&address)))
    }

    fn take_over_remote_lun(volume: Volume, _remote: &Lun) -> Result<(), DriverError> {
        panic!("take-over of volume {} is not implemented", volume.id)
    }

    fn migrate_volume_target(
        _volume: Volume,
        _source: Source,
        _remote: &Lun,
    ) -> Result<TargetOutcome, DriverError> {
        let mut n = 0u64;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

ferry_sdk::export_driver!(Careless);
