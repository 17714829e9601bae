//! Write Ferry storage array drivers in Rust.
//!
//! A Ferry driver is a WebAssembly component that targets the
//! `ferry:driver/driver-world` world (the `wit/` directory of the Ferry
//! repository). This crate generates the bindings for that world and wraps
//! them so a vendor writes plain Rust:
//!
//! - implement [`Driver`] for a unit struct: the life-cycle calls are
//!   required, every migration call has a default that declines, so a minimal
//!   driver only answers [`Driver::capabilities`], [`Driver::create_volume`],
//!   [`Driver::delete_volume`] and [`Driver::initialize_connection`];
//! - register it with [`export_driver!`];
//! - reach the host through [`block`] (LUNs of the driver's array),
//!   [`fabric`] (arrays and zoning), [`hydration`] (asynchronous target
//!   migrations), [`state`] (key-value state that outlives a call),
//!   [`config`] (the array's settings and secrets), [`http`] (the array's
//!   management endpoint) and [`context`]
//!   (logging, progress and a clock, also as the [`info!`]-style macros).
//!
//! The host instantiates the component afresh for every call: keep nothing in
//! statics between calls, put it in [`state`]. Return errors as
//! [`DriverError`], never panic: a panic traps, which fails the call and is
//! reported as a driver fault.
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` file
//! in `target/wasm32-wasip2/release/` is the component to install.
//!
//! # Example
//!
//! A driver that stores each volume as one LUN and declines every migration,
//! so the host copies the data itself:
//!
//! ```
//! use ferry_sdk::{
//!     Capabilities, ConnectionInfo, Connector, DataPath, Driver, DriverError, Volume, block,
//!     layout,
//! };
//!
//! struct Minimal;
//!
//! impl Driver for Minimal {
//!     fn capabilities() -> Capabilities {
//!         Capabilities { sparse: true, ..Capabilities::NONE }
//!     }
//!
//!     fn create_volume(volume: Volume) -> Result<Option<String>, DriverError> {
//!         let address = layout::new_volume_lun(&volume)?;
//!         block::ensure_lun(&address, volume.size_bytes)?;
//!         Ok(Some(layout::provider_location(&address)))
//!     }
//!
//!     fn delete_volume(volume: Volume) -> Result<(), DriverError> {
//!         block::delete_lun(&layout::volume_lun(&volume)?)
//!     }
//!
//!     fn initialize_connection(
//!         volume: Volume,
//!         _connector: Connector,
//!     ) -> Result<ConnectionInfo, DriverError> {
//!         let lun = layout::volume_lun(&volume)?;
//!         Ok(ConnectionInfo { data: DataPath::Lun(lun), read_only: false })
//!     }
//! }
//!
//! ferry_sdk::export_driver!(Minimal);
//!
//! // Everything that does not call the host also runs natively, in tests.
//! assert!(Minimal::capabilities().sparse);
//! let volume = Volume {
//!     id: "0b7c".into(),
//!     name: "db".into(),
//!     size_bytes: 1 << 20,
//!     pool: "default".into(),
//!     provider_location: None,
//! };
//! let address = layout::new_volume_lun(&volume).unwrap();
//! assert_eq!(layout::provider_location(&address), "default/volume-0b7c");
//! ```
#![deny(missing_docs)]

pub mod block;
pub mod config;
pub mod context;
mod export;
pub mod fabric;
pub mod http;
pub mod hydration;
pub mod layout;
mod outcome;
pub mod state;

/// The bindings generated from the WIT world. Use the re-exports at the crate
/// root instead; this module is public only for [`export_driver!`].
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "driver-world",
        pub_export_macro: true,
        export_macro_name: "__export_driver_world",
        default_bindings_module: "ferry_sdk::bindings",
        additional_derives: [PartialEq, Eq],
        // wasi:http and what it uses come from the `wasip2` crate, so a
        // driver may also use that crate's types directly.
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });
}

pub use bindings::ferry::driver::block::Lun;
pub use bindings::ferry::driver::fabric::PeerArray;
pub use bindings::ferry::driver::hydration::HydrationProgress;
pub use bindings::ferry::driver::types::{
    Capabilities, Completion, ConnectionInfo, Connector, DataPath, Destination, DriverError,
    Extent, LogLevel, LunAddress, Managed, MigrateOutcome, NbdExport, Source, TargetOutcome,
    Volume,
};
pub use export::Driver;
#[doc(hidden)]
pub use export::Export;
