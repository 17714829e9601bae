//! A driver that fails on purpose, for the host's migration rollback tests.
//! It behaves like `plain` (one sparse LUN per volume, every migration path
//! declined, so the host copies) except where the volume's name asks it to
//! fail. A name is a list of `MODE:CALL[@ARRAY]` words separated by spaces:
//!
//! - `MODE` is `fail` (answer `backend-error`), `trap` (panic), `loop` (spin
//!   until the host's deadline), or `short` (for `create-volume`: make the
//!   LUN 512 bytes too small, so a copy into it fails);
//! - `CALL` is the WIT export's name (`create-volume`, `migrate-volume`, ...);
//! - `@ARRAY` limits the fault to calls working for that array.
//!
//! For example `fail:create-volume@f2` creates the volume on `f1` but fails
//! to create a migration's destination on `f2`.

use ferry_sdk::{
    Capabilities, ConnectionInfo, Connector, Destination, Driver, DriverError, Lun, MigrateOutcome,
    PeerArray, Source, TargetOutcome, Volume, block, fabric, layout,
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
        Some("loop") => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        other => Ok(other),
    }
}

impl Driver for Faulty {
    fn capabilities() -> Capabilities {
        Capabilities {
            take_over: true,
            source_migration: true,
            sparse: true,
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
        misbehave(&volume, "delete-volume")?;
        block::delete_lun_if_present(&layout::volume_lun(&volume)?)
    }

    fn initialize_connection(
        volume: Volume,
        _connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        misbehave(&volume, "initialize-connection")?;
        Ok(ConnectionInfo {
            lun: layout::volume_lun(&volume)?,
            read_only: false,
        })
    }

    fn terminate_connection(volume: Volume, _connector: Connector) -> Result<(), DriverError> {
        misbehave(&volume, "terminate-connection")?;
        Ok(())
    }

    fn migrate_volume(
        volume: Volume,
        _destination: Destination,
        _peer: Option<&PeerArray>,
    ) -> Result<MigrateOutcome, DriverError> {
        misbehave(&volume, "migrate-volume")?;
        Ok(MigrateOutcome::DECLINED)
    }

    fn take_over_remote_lun(volume: Volume, _remote: &Lun) -> Result<(), DriverError> {
        misbehave(&volume, "take-over-remote-lun")?;
        Ok(())
    }

    fn migrate_volume_target(
        volume: Volume,
        _source: Source,
        _remote: &Lun,
    ) -> Result<TargetOutcome, DriverError> {
        misbehave(&volume, "migrate-volume-target")?;
        Ok(TargetOutcome::DECLINED)
    }
}

ferry_sdk::export_driver!(Faulty);
