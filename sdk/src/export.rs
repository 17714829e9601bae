//! The [`Driver`] trait a vendor implements and the glue that exports it as
//! the component's `driver` interface.

use core::marker::PhantomData;

use crate::bindings::exports::ferry::driver::driver::Guest;
use crate::{
    Capabilities, Completion, ConnectionInfo, Connector, Destination, DriverError, Lun, Managed,
    MigrateOutcome, PeerArray, Source, TargetOutcome, Volume,
};

/// The calls a driver answers, one function per export of the WIT `driver`
/// interface.
///
/// Functions take no `self`: the host instantiates the component for every
/// call, so a driver is a unit struct and keeps what must last in
/// [`state`](crate::state). Every call must be idempotent: the host retries
/// after a crash or a timeout, and a call that finds its work done succeeds.
///
/// The migration calls have defaults that decline, so a driver that only
/// manages volumes implements the life-cycle calls and lets the host copy.
pub trait Driver {
    /// What this driver supports. Asked once when the component is loaded.
    fn capabilities() -> Capabilities;

    /// Creates the storage for `volume` in `volume.pool` and returns the
    /// model update (`provider-location`) the host stores with the volume.
    /// Creating a volume that already exists with the right size succeeds.
    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError>;

    /// Deletes the storage of `volume`. Deleting a missing volume succeeds.
    fn delete_volume(volume: Volume) -> Result<(), DriverError>;

    /// Exposes `volume` to `connector`: returns the LUN the host serves.
    fn initialize_connection(
        volume: Volume,
        connector: Connector,
    ) -> Result<ConnectionInfo, DriverError>;

    /// Ends an exposure made by [`Driver::initialize_connection`].
    ///
    /// The default does nothing: the host serves the LUN itself, so most
    /// arrays have nothing to undo.
    fn terminate_connection(volume: Volume, connector: Connector) -> Result<(), DriverError> {
        let _ = (volume, connector);
        Ok(())
    }

    /// Makes the existing LUN `reference` names the storage of `volume`,
    /// without copying; `volume.size_bytes` is 0 until this answers the
    /// size. [`layout::manage_lun`](crate::layout::manage_lun) does it for
    /// the one-LUN-per-volume layout.
    ///
    /// The default answers `unsupported`.
    fn manage_existing(volume: Volume, reference: String) -> Result<Managed, DriverError> {
        let _ = (volume, reference);
        Err(DriverError::Unsupported(
            "this driver does not manage existing LUNs".into(),
        ))
    }

    /// The host forgets `volume` and leaves its storage on the array.
    ///
    /// The default does nothing: the data stays where it is.
    fn unmanage(volume: Volume) -> Result<(), DriverError> {
        let _ = volume;
        Ok(())
    }

    /// Source side: moves `volume` to `destination` by the driver's own
    /// means. `peer` is set when this driver also manages the destination
    /// array. When moved, the source LUN must be gone. An attached volume
    /// comes here only when [`Driver::capabilities`] declares `live_move`;
    /// its I/O is then held still for the whole call, so such a move must
    /// take a moment.
    ///
    /// The default declines ([`MigrateOutcome::DECLINED`]).
    fn migrate_volume(
        volume: Volume,
        destination: Destination,
        peer: Option<&PeerArray>,
    ) -> Result<MigrateOutcome, DriverError> {
        let _ = (volume, destination, peer);
        Ok(MigrateOutcome::DECLINED)
    }

    /// Target side: takes over the source array's LUN `remote` as a remote
    /// LUN this array reads and writes.
    ///
    /// The default answers [`DriverError::Unsupported`].
    fn take_over_remote_lun(volume: Volume, remote: &Lun) -> Result<(), DriverError> {
        let _ = (volume, remote);
        Err(DriverError::Unsupported(
            "this driver does not take over remote LUNs".into(),
        ))
    }

    /// Target side, after [`Driver::take_over_remote_lun`]: moves `volume`
    /// from `source` onto this array, synchronously or asynchronously.
    ///
    /// The default declines ([`TargetOutcome::DECLINED`]).
    fn migrate_volume_target(
        volume: Volume,
        source: Source,
        remote: &Lun,
    ) -> Result<TargetOutcome, DriverError> {
        let _ = (volume, source, remote);
        Ok(TargetOutcome::DECLINED)
    }

    /// Target side, after an asynchronous [`Driver::migrate_volume_target`]:
    /// one short, re-entrant poll that reports progress and, once every byte
    /// is local, cleans up and answers done. It must resume from what it kept
    /// in [`state`](crate::state), never start over.
    ///
    /// The default answers [`DriverError::Unsupported`]: a driver that never
    /// answers `is-async: true` is never polled.
    fn complete_migration_target(
        volume: Volume,
        source: Source,
        remote: &Lun,
    ) -> Result<Completion, DriverError> {
        let _ = (volume, source, remote);
        Err(DriverError::Unsupported(
            "this driver does not run asynchronous migrations".into(),
        ))
    }
}

/// Adapts a [`Driver`] to the generated export trait. Named only by
/// [`export_driver!`](crate::export_driver).
#[doc(hidden)]
pub struct Export<T>(PhantomData<T>);

impl<T: Driver> Guest for Export<T> {
    fn capabilities() -> Capabilities {
        T::capabilities()
    }

    fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
        T::create_volume(volume)
    }

    fn delete_volume(volume: Volume) -> Result<(), DriverError> {
        T::delete_volume(volume)
    }

    fn initialize_connection(
        volume: Volume,
        connector: Connector,
    ) -> Result<ConnectionInfo, DriverError> {
        T::initialize_connection(volume, connector)
    }

    fn terminate_connection(volume: Volume, connector: Connector) -> Result<(), DriverError> {
        T::terminate_connection(volume, connector)
    }

    fn manage_existing(volume: Volume, reference: String) -> Result<Managed, DriverError> {
        T::manage_existing(volume, reference)
    }

    fn unmanage(volume: Volume) -> Result<(), DriverError> {
        T::unmanage(volume)
    }

    fn migrate_volume(
        volume: Volume,
        destination: Destination,
        peer: Option<&PeerArray>,
    ) -> Result<MigrateOutcome, DriverError> {
        T::migrate_volume(volume, destination, peer)
    }

    fn take_over_remote_lun(volume: Volume, remote: &Lun) -> Result<(), DriverError> {
        T::take_over_remote_lun(volume, remote)
    }

    fn migrate_volume_target(
        volume: Volume,
        source: Source,
        remote: &Lun,
    ) -> Result<TargetOutcome, DriverError> {
        T::migrate_volume_target(volume, source, remote)
    }

    fn complete_migration_target(
        volume: Volume,
        source: Source,
        remote: &Lun,
    ) -> Result<Completion, DriverError> {
        T::complete_migration_target(volume, source, remote)
    }
}

/// Exports a [`Driver`] implementation as the component's `driver`
/// interface. Use it once, in the driver crate's root:
///
/// ```
/// # use ferry_sdk::*;
/// struct MyDriver;
/// # impl Driver for MyDriver {
/// #     fn capabilities() -> Capabilities { Capabilities::NONE }
/// #     fn create_volume(_: Volume) -> Result<Option<String>, DriverError> { Ok(None) }
/// #     fn delete_volume(_: Volume) -> Result<(), DriverError> { Ok(()) }
/// #     fn initialize_connection(_: Volume, _: Connector) -> Result<ConnectionInfo, DriverError> {
/// #         Err(DriverError::Unsupported("example".into()))
/// #     }
/// # }
/// ferry_sdk::export_driver!(MyDriver);
/// ```
///
/// The crate must be a `cdylib` built for `wasm32-wasip2`. Natively the
/// macro only checks that the type implements [`Driver`], so the driver
/// crate still builds, tests and lints on the host.
#[macro_export]
macro_rules! export_driver {
    ($driver:ty) => {
        // The component exports exist only in WebAssembly: their symbol names
        // (`ferry:driver/driver@0.1.0#...`) do not survive a native linker.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type FerryDriverExport = $crate::Export<$driver>;
            $crate::bindings::__export_driver_world!(
                FerryDriverExport with_types_in $crate::bindings
            );
        };
        // Natively, still insist that the type is a driver.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() = || {
            fn is_driver<T: $crate::Driver>() {}
            is_driver::<$driver>();
        };
    };
}
