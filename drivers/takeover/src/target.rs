//! The target side of a migration: moving a taken-over remote LUN's data
//! onto a local LUN.
//!
//! Every move goes through a [`Strategy`]. Today there is only the
//! synchronous copy; the asynchronous one (the volume usable here at once
//! while the host hydrates it from the remote LUN) slots in as another
//! strategy, with `complete-migration-target` polling it to the end.

use ferry_sdk::{Completion, DriverError, Lun, LunAddress, TargetOutcome, Volume, block, layout};

use crate::record::TakeOver;

/// How a move onto this array runs.
enum Strategy {
    /// Copy every byte natively before answering.
    Synchronous,
}

/// The strategy for `volume`. Until the host offers hydration, every move is
/// synchronous.
fn strategy(_volume: &Volume) -> Strategy {
    Strategy::Synchronous
}

/// Answers `migrate-volume-target` for a volume whose remote LUN was taken
/// over.
pub fn migrate(volume: &Volume, remote: &Lun) -> Result<TargetOutcome, DriverError> {
    let record = TakeOver::load(&volume.id)?.ok_or_else(|| {
        DriverError::InvalidArgument(format!(
            "volume {} was not taken over before migrate-volume-target",
            volume.id
        ))
    })?;
    check_remote(volume, &record, remote)?;
    let address = layout::new_volume_lun(volume)?;
    match strategy(volume) {
        Strategy::Synchronous => copy_now(volume, &address, remote),
    }
}

/// Answers one `complete-migration-target` poll.
pub fn poll(volume: &Volume) -> Result<Completion, DriverError> {
    // Synchronous moves finish inside `migrate`, so nothing is ever pending:
    // the poll only tidies a take-over record that a crash left behind.
    TakeOver::forget(&volume.id);
    Ok(Completion::done(volume.size_bytes))
}

/// The remote LUN must still be the one taken over, and hold the volume.
fn check_remote(volume: &Volume, record: &TakeOver, remote: &Lun) -> Result<(), DriverError> {
    let current = TakeOver::of(remote);
    if current != *record {
        return Err(DriverError::InvalidArgument(format!(
            "remote LUN {}/{}/{} is not the one taken over for volume {} ({}/{}/{})",
            current.array,
            current.pool,
            current.name,
            volume.id,
            record.array,
            record.pool,
            record.name
        )));
    }
    if current.size_bytes != volume.size_bytes {
        return Err(DriverError::InvalidArgument(format!(
            "remote LUN holds {} bytes, volume {} has {}",
            current.size_bytes, volume.id, volume.size_bytes
        )));
    }
    Ok(())
}

fn copy_now(
    volume: &Volume,
    address: &LunAddress,
    remote: &Lun,
) -> Result<TargetOutcome, DriverError> {
    let local =
        block::ensure_lun(address, volume.size_bytes).map_err(|e| e.context("create local LUN"))?;
    let copied = local
        .copy_range_from(remote, 0, 0, volume.size_bytes)
        .and_then(|copied| local.flush().map(|()| copied));
    let copied = match copied {
        Ok(copied) => copied,
        Err(e) => {
            // The remote LUN still holds the volume: drop the partial copy so
            // the host's fallback starts from a clean array.
            drop(local);
            if let Err(cleanup) = block::delete_lun(address) {
                ferry_sdk::warn!("left partial copy {}: {}", address.name, cleanup.message());
            }
            return Err(e.context("copy from remote LUN"));
        }
    };
    ferry_sdk::context::report_progress(volume.size_bytes, volume.size_bytes);
    ferry_sdk::info!(
        "moved volume {} into {} ({copied} allocated bytes)",
        volume.id,
        address.name
    );
    TakeOver::forget(&volume.id);
    Ok(TargetOutcome::moved(layout::provider_location(address)))
}
