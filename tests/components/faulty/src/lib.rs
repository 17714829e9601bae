//! A driver that fails on purpose, for the host's migration rollback tests.
//! It behaves like `plain` (one sparse LUN per volume, every migration path
//! declined, so the host copies) except where the volume's name asks it to
//! fail. A name is a list of `MODE:CALL[@ARRAY]` words separated by spaces:
//!
//! - `MODE` is `fail` (answer `backend-error`), `trap` (panic), `loop` (spin
//!   until the host's deadline), or `short` (for `create-volume`: make the
//!   LUN 512 bytes too small, so a copy into it fails);
//! - for `migrate-volume` (to another array of this driver) `MODE` may also
//!   move the volume as `vendor-copy` does (copy, flush, delete the source)
//!   and then: `move` answer `moved`; `move-trap` panic; `move-loop` spin
//!   past the deadline; `linger` spin 1.5 s, then answer `moved`; or `slow`
//!   copy in 16 pieces with 100 ms between them, then answer `moved`. A
//!   repeated call that finds the source gone and the copy whole answers
//!   `moved`, as an idempotent driver must;
//! - for `migrate-volume-target`: `sync` copy the remote LUN into a local
//!   one, take 1 s more, and answer a synchronous move; `async` answer an
//!   asynchronous move this driver never declared;
//! - for `delete-volume`: `slow` take 1.5 s, then delete;
//! - `CALL` is the WIT export's name (`create-volume`, `migrate-volume`, ...);
//! - `@ARRAY` limits the fault to calls working for that array.
//!
//! For example `fail:create-volume@f2` creates the volume on `f1` but fails
//! to create a migration's destination on `f2`.

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, DataPath, Destination, Driver, DriverError, Lun,
    MigrateOutcome, PeerArray, Source, TargetOutcome, Volume, block, fabric, layout,
};

/// The driver.
pub struct Faulty;

/// What the volume's name asks `call` to do on this array.
fn fault(volume: &Volume, call: &str) -> Option<&'static str> {
    let here = fabric::local_array();
    volume.name.split_whitespace().find_map(|word| {
        let (mode, target) = word.split_once(':')?;
        let (name, array) = match target.split_once('@') {
            Some((n, a)) => (n, Some(a)),
            None => (target, None),
        };
        if name != call || array.is_some_and(|a| a != here) {
            return None;
        }
        match mode {
            "fail" => Some("fail"),
            "trap" => Some("trap"),
            "loop" => Some("loop"),
            "short" => Some("short"),
            "move" => Some("move"),
            "move-trap" => Some("move-trap"),
            "move-loop" => Some("move-loop"),
            "linger" => Some("linger"),
            "slow" => Some("slow"),
            "sync" => Some("sync"),
            "async" => Some("async"),
            _ => None,
        }
    })
}

/// Fails as asked; returns normally when no fault applies (or for `short`,
/// which the caller handles).
fn misbehave(volume: &Volume, call: &str) -> Result<Option<&'static str>, DriverError> {
    match fault(volume, call) {
        Some("fail") => Err(DriverError::BackendError(format!(
            "{call} failed on purpose for volume {}",
            volume.id
        ))),
        Some("trap") => panic!("{call} trapped on purpose for volume {}", volume.id),
        Some("loop") => spin_forever(),
        other => Ok(other),
    }
}

fn spin_forever() -> ! {
    let mut n = 0u64;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Busy-waits `ms` milliseconds of the host's clock (driver time: it counts
/// against the call's deadline).
fn spin(ms: u64) {
    let until = ferry_sdk::context::now_ms() + ms;
    while ferry_sdk::context::now_ms() < until {
        std::hint::spin_loop();
    }
}

/// Moves `volume` onto `peer` the way `mode` says (see the crate docs).
fn move_to_peer(
    volume: &Volume,
    destination: &Destination,
    peer: &PeerArray,
    mode: &str,
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
            // A repeat after an earlier call moved it.
            return match peer.open_lun(&target_address) {
                Ok(t) if t.size() == volume.size_bytes => Ok(MigrateOutcome::moved(location)),
                _ => Err(DriverError::NotFound(format!(
                    "volume {} is on neither array",
                    volume.id
                ))),
            };
        }
        Err(e) => return Err(e),
    };
    let target = fabric::ensure_peer_lun(peer, &target_address, volume.size_bytes)?;
    let pieces = if mode == "slow" { 16 } else { 1 };
    let piece = volume.size_bytes.div_ceil(pieces);
    let mut offset = 0;
    while offset < volume.size_bytes {
        let len = piece.min(volume.size_bytes - offset);
        if let Err(e) = target.copy_range_from(&source, offset, offset, len) {
            drop(target);
            let _ = peer.delete_lun(&target_address);
            return Err(e);
        }
        offset += len;
        ferry_sdk::context::report_progress(offset, volume.size_bytes);
        if mode == "slow" {
            spin(100);
        }
    }
    target.flush()?;
    drop(source);
    block::delete_lun_if_present(&source_address)?;
    match mode {
        "move-trap" => panic!("trapped on purpose after moving volume {}", volume.id),
        "move-loop" => spin_forever(),
        "linger" => spin(1500),
        _ => {}
    }
    Ok(MigrateOutcome::moved(location))
}

impl Driver for Faulty {
    fn capabilities() -> Capabilities {
        // live-move so that the host's hold around a source driver's move
        // of an attached volume can be tested (`move:migrate-volume`).
        Capabilities {
            take_over: true,
            source_migration: true,
            sparse: true,
            live_move: true,
            ..Capabilities::NONE
        }
    }

    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
        let short = misbehave(&volume, "create-volume")? == Some("short");
        let address = layout::new_volume_lun(&volume)?;
        let size = if short {
            volume.size_bytes.saturating_sub(512).max(512)
        } else {
            volume.size_bytes
        };
        block::ensure_lun(&address, size)?;
        Ok(Some(layout::provider_location(&address)))
    }

    fn delete_volume(volume: Volume) -> Result<(), DriverError> {
        if misbehave(&volume, "delete-volume")? == Some("slow") {
            spin(1500);
        }
        block::delete_lun_if_present(&layout::volume_lun(&volume)?)
    }

    fn initialize_connection(
        volume: Volume,
        _connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        misbehave(&volume, "initialize-connection")?;
        Ok(ConnectionInfo {
            data: DataPath::Lun(layout::volume_lun(&volume)?),
            read_only: false,
        })
    }

    fn terminate_connection(volume: Volume, _connector: Connector) -> Result<(), DriverError> {
        misbehave(&volume, "terminate-connection")?;
        Ok(())
    }

    fn migrate_volume(
        volume: Volume,
        destination: Destination,
        peer: Option<&PeerArray>,
    ) -> Result<MigrateOutcome, DriverError> {
        match (misbehave(&volume, "migrate-volume")?, peer) {
            (Some(mode @ ("move" | "move-trap" | "move-loop" | "linger" | "slow")), Some(peer)) => {
                move_to_peer(&volume, &destination, peer, mode)
            }
            _ => Ok(MigrateOutcome::DECLINED),
        }
    }

    fn take_over_remote_lun(volume: Volume, _remote: &Lun) -> Result<(), DriverError> {
        misbehave(&volume, "take-over-remote-lun")?;
        Ok(())
    }

    fn migrate_volume_target(
        volume: Volume,
        _source: Source,
        remote: &Lun,
    ) -> Result<TargetOutcome, DriverError> {
        let mode = misbehave(&volume, "migrate-volume-target")?;
        let address = layout::new_volume_lun(&volume)?;
        let location = layout::provider_location(&address);
        match mode {
            Some("sync") => {
                let local = block::ensure_lun(&address, volume.size_bytes)?;
                local.copy_range_from(remote, 0, 0, volume.size_bytes)?;
                local.flush()?;
                spin(1000);
                Ok(TargetOutcome::moved(location))
            }
            Some("async") => {
                block::ensure_lun(&address, volume.size_bytes)?;
                Ok(TargetOutcome::moving_async(location))
            }
            _ => Ok(TargetOutcome::DECLINED),
        }
    }
}

ferry_sdk::export_driver!(Faulty);
