//! The target side of a migration: moving a taken-over remote LUN's data
//! onto a local LUN.
//!
//! The move is asynchronous: the local LUN hydrates from the remote one in
//! the host while it already serves the volume, and
//! `complete-migration-target` polls it to the end. On a host that runs no
//! hydrations the move falls back to a synchronous native copy. Every step
//! may be repeated after a crash: what a call needs to go on is in state.

use ferry_sdk::{
    Completion, DriverError, Lun, LunAddress, TargetOutcome, Volume, block, hydration, layout,
};

use crate::hydrating;
use crate::record::TakeOver;

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
    let location = layout::provider_location(&address);
    let recorded = hydrating::load(&volume.id)?;
    let local = match &recorded {
        // Answered once already, and the volume may be in use here since:
        // keep its LUN, and never fall back to a copy over it.
        Some(id) => live_lun(id, &address, volume.size_bytes)?,
        None => empty_lun(&address, volume.size_bytes, remote)?,
    };
    // Starting again finds the hydration an earlier call started.
    let id = match hydration::start(&local, remote) {
        Ok(id) => id,
        Err(DriverError::Unsupported(why)) if recorded.is_none() => {
            drop(local);
            ferry_sdk::info!(
                "no hydration here ({why}); copying volume {} now",
                volume.id
            );
            return copy_now(volume, &address, remote);
        }
        Err(e) => return Err(e.context("start hydration")),
    };
    hydrating::store(&volume.id, &id)?;
    ferry_sdk::info!(
        "volume {} is usable in {} while hydration {id} runs",
        volume.id,
        address.name
    );
    Ok(TargetOutcome::moving_async(location))
}

/// The local LUN of a hydration that was already started.
fn live_lun(id: &str, address: &LunAddress, size_bytes: u64) -> Result<Lun, DriverError> {
    match block::open_lun(address) {
        Ok(lun) => {
            check_size(address, &lun, size_bytes)?;
            Ok(lun)
        }
        Err(DriverError::NotFound(_)) => {
            // The LUN went away under its hydration: stop that before a new
            // LUN of the same name is hydrated from scratch.
            hydration::abandon(id).map_err(|e| e.context("abandon the hydration"))?;
            block::create_lun(address, size_bytes)
        }
        Err(e) => Err(e),
    }
}

/// A new, empty local LUN. A LUN found under the name was left by an
/// attempt that never answered; a hydration skips the remote's holes, so
/// bytes left there would survive it. Any hydration the host still runs on
/// that LUN is stopped before the LUN goes.
fn empty_lun(address: &LunAddress, size_bytes: u64, remote: &Lun) -> Result<Lun, DriverError> {
    match block::open_lun(address) {
        Ok(stale) => {
            // Only a LUN of the remote's size can be hydrating from it;
            // starting again names that hydration, if there is one.
            if stale.size() == remote.size() {
                match hydration::start(&stale, remote) {
                    Ok(id) => hydration::abandon(&id)
                        .map_err(|e| e.context("abandon the hydration of a stale LUN"))?,
                    Err(DriverError::Unsupported(_)) => {}
                    Err(e) => return Err(e.context("find the hydration of a stale LUN")),
                }
            }
            drop(stale);
            block::delete_lun_if_present(address)?;
            ferry_sdk::info!("dropped {} left by an earlier attempt", address.name);
        }
        Err(DriverError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    block::create_lun(address, size_bytes).map_err(|e| e.context("create local LUN"))
}

/// Answers one `complete-migration-target` poll.
pub fn poll(volume: &Volume) -> Result<Completion, DriverError> {
    let Some(id) = hydrating::load(&volume.id)? else {
        // Nothing runs: a synchronous move, or a poll repeated after the
        // hydration finished. Tidy a take-over record a crash left behind.
        TakeOver::forget(&volume.id);
        return Ok(Completion::done(volume.size_bytes));
    };
    let p = hydration::progress(&id).map_err(|e| retry_later(e, "hydration progress"))?;
    ferry_sdk::context::report_progress(p.done_bytes, p.total_bytes);
    if !p.complete {
        return Ok(Completion::running(p.done_bytes, p.total_bytes));
    }
    // Finishing again succeeds, so a poll repeated after a crash that lost
    // this call's state ends the same way.
    hydration::finish(&id).map_err(|e| retry_later(e, "finish the hydration"))?;
    hydrating::forget(&volume.id);
    TakeOver::forget(&volume.id);
    ferry_sdk::info!("volume {} is all local; hydration {id} ended", volume.id);
    Ok(Completion::done(p.total_bytes))
}

/// Answers `delete-volume` for the local LUN: a hydration still running on
/// it is abandoned first.
pub fn delete(volume: &Volume) -> Result<(), DriverError> {
    let address = layout::volume_lun(volume)?;
    if let Some(id) = hydrating::load(&volume.id)? {
        hydration::abandon(&id).map_err(|e| e.context("abandon the hydration"))?;
        ferry_sdk::info!("abandoned hydration {id} of volume {}", volume.id);
    }
    block::delete_lun_if_present(&address)?;
    hydrating::forget(&volume.id);
    TakeOver::forget(&volume.id);
    ferry_sdk::info!("deleted {}", address.name);
    Ok(())
}

/// A failed poll is the host's to retry: whatever the failure, it is a
/// backend error.
fn retry_later(e: DriverError, what: &str) -> DriverError {
    DriverError::BackendError(format!("{what}: {}", e.message()))
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

fn check_size(address: &LunAddress, lun: &Lun, size_bytes: u64) -> Result<(), DriverError> {
    let size = lun.size();
    if size == size_bytes {
        Ok(())
    } else {
        Err(DriverError::InvalidArgument(format!(
            "LUN {}/{} holds {size} bytes, not {size_bytes}",
            address.pool, address.name
        )))
    }
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
