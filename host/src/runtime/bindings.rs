//! Host bindings of the driver world, generated from `wit/driver.wit`. The
//! only place the WIT is turned into Rust; everything else uses these types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "driver-world",
    imports: { default: trappable },
    with: {
        "ferry:driver/block.lun": super::host_impl::LunHandle,
        "ferry:driver/fabric.peer-array": super::host_impl::PeerArrayHandle,
    },
});
