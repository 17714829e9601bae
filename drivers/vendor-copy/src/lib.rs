//! The `vendor-copy` example driver: as the source of a migration to another
//! array it also manages, it moves the volume with its own native copy and
//! never needs the host to copy. As the target it declines.

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, DataPath, Destination, Driver, DriverError,
    MigrateOutcome, PeerArray, Volume, block, fabric, layout,
};

/// The driver.
pub struct VendorCopy;

impl Driver for VendorCopy {
    fn capabilities() -> Capabilities {
        // No live-move: the move copies the data, and an attached volume's
        // I/O would be held for the whole copy (seconds per GiB); the
        // host's own live move pauses it for milliseconds.
        Capabilities {
            source_migration: true,
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

    fn migrate_volume(
        volume: Volume,
        destination: Destination,
        peer: Option<&PeerArray>,
    ) -> Result<MigrateOutcome, DriverError> {
        // Without a peer the destination belongs to another vendor: nothing
        // of ours runs there, so let the host pick the next path.
        let Some(peer) = peer else {
            return Ok(MigrateOutcome::DECLINED);
        };
        copy_to_peer(&volume, &destination, peer)
    }
}

/// Moves `volume` onto `peer`'s `destination.pool` with the array's native
/// copy, then deletes the source LUN.
///
/// Safe to repeat after a crash at any point: the destination LUN is reused
/// when it exists with the right size, and a source that is already gone
/// means an earlier attempt finished the copy before deleting it.
fn copy_to_peer(
    volume: &Volume,
    destination: &Destination,
    peer: &PeerArray,
) -> Result<MigrateOutcome, DriverError> {
    let source_address = layout::volume_lun(volume)?;
    let target_volume = Volume {
        pool: destination.pool.clone(),
        provider_location: None,
        ..volume.clone()
    };
    let target_address = layout::new_volume_lun(&target_volume)?;
    let location = layout::provider_location(&target_address);

    let source = match block::open_lun(&source_address) {
        Ok(lun) => lun,
        Err(DriverError::NotFound(_)) => {
            return finish_after_lost_source(volume, peer, &target_address, location);
        }
        Err(e) => return Err(e.context("open source LUN")),
    };
    if source.size() != volume.size_bytes {
        return Err(DriverError::BackendError(format!(
            "source LUN {} holds {} bytes, the volume {}",
            source_address.name,
            source.size(),
            volume.size_bytes
        )));
    }

    let target = fabric::ensure_peer_lun(peer, &target_address, volume.size_bytes)
        .map_err(|e| e.context("create destination LUN"))?;
    let copied = match copy_durably(&source, &target, volume.size_bytes) {
        Ok(copied) => copied,
        Err(e) => {
            // The source still holds the volume: drop the partial copy so a
            // failed move leaves nothing behind on the peer.
            drop(target);
            if let Err(cleanup) = peer.delete_lun(&target_address) {
                ferry_sdk::warn!("left partial copy {location}: {}", cleanup.message());
            }
            return Err(e);
        }
    };
    ferry_sdk::context::report_progress(volume.size_bytes, volume.size_bytes);
    ferry_sdk::info!(
        "copied {} to {} on {} ({copied} allocated bytes)",
        source_address.name,
        location,
        peer.name()
    );

    // Only once the copy is durable does the source go: until then a crash
    // leaves the volume whole where it was.
    drop(source);
    block::delete_lun_if_present(&source_address).map_err(|e| e.context("delete source LUN"))?;
    Ok(MigrateOutcome::moved(location))
}

/// Copies `length` bytes natively and makes them durable; returns the bytes
/// that were allocated in the source.
fn copy_durably(
    source: &ferry_sdk::Lun,
    target: &ferry_sdk::Lun,
    length: u64,
) -> Result<u64, DriverError> {
    let copied = target
        .copy_range_from(source, 0, 0, length)
        .map_err(|e| e.context("copy to destination LUN"))?;
    target
        .flush()
        .map_err(|e| e.context("flush destination LUN"))?;
    Ok(copied)
}

/// The source LUN is gone. That is a finished earlier attempt only when the
/// destination LUN exists with the volume's size; anything else means the
/// data is lost and must not be reported as moved.
fn finish_after_lost_source(
    volume: &Volume,
    peer: &PeerArray,
    target_address: &ferry_sdk::LunAddress,
    location: String,
) -> Result<MigrateOutcome, DriverError> {
    match peer.open_lun(target_address) {
        Ok(target) if target.size() == volume.size_bytes => {
            ferry_sdk::warn!(
                "source of {} already gone: resuming a finished move",
                volume.id
            );
            Ok(MigrateOutcome::moved(location))
        }
        _ => Err(DriverError::NotFound(format!(
            "volume {} has no LUN on the source array",
            volume.id
        ))),
    }
}

ferry_sdk::export_driver!(VendorCopy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_offer_source_migration_only() {
        let caps = VendorCopy::capabilities();
        assert!(caps.source_migration && caps.sparse && !caps.live_move);
        assert!(!caps.take_over && !caps.async_target_migration);
    }

    #[test]
    fn declines_without_a_peer() {
        let volume = Volume {
            id: "v".into(),
            name: "n".into(),
            size_bytes: 512,
            pool: "default".into(),
            provider_location: None,
        };
        let destination = Destination {
            array: "other".into(),
            pool: "default".into(),
            driver: "plain".into(),
        };
        let outcome = VendorCopy::migrate_volume(volume, destination, None).unwrap();
        assert!(!outcome.moved);
    }
}
