//! Host bindings of the driver worlds, generated from `wit/`: the current
//! contract (`wit/driver.wit`) and the frozen `0.1.0` one (`wit/0.1.0/`),
//! whose components keep working. The only place the WIT is turned into
//! Rust; everything else uses these types (the `0.1.0` ones only through
//! `contract_v0_1`).

pub use self::current::*;

/// `ferry:driver@0.2.0`, the contract new drivers target.
/// Its `wasi:http` import is wasmtime's own implementation, linked by
/// `contract` with the host's policy hooks.
mod current {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "driver-world",
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "ferry:driver/block.lun": crate::runtime::host_impl::LunHandle,
            "ferry:driver/fabric.peer-array": crate::runtime::host_impl::PeerArrayHandle,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// `ferry:driver@0.1.0`. Its LUN and peer-array resources are the same host
/// objects as the current contract's, so one call table serves both.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "driver-world",
        imports: { default: trappable },
        with: {
            "ferry:driver/block.lun": crate::runtime::host_impl::LunHandle,
            "ferry:driver/fabric.peer-array": crate::runtime::host_impl::PeerArrayHandle,
        },
    });
}
