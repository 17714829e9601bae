//! The WebAssembly components built from this repository by `build.rs`: the
//! example drivers, embedded in the binary, and the paths of the test
//! components; and the example drivers as built against contract `0.1.0`,
//! kept as test fixtures.

/// The three example drivers as they were built against `ferry:driver@0.1.0`
/// (name, path): the host must keep running them unchanged.
pub const CONTRACT_0_1_FIXTURES: [(&str, &str); 3] = [
    (
        "takeover",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/contract-0.1.0/takeover.wasm"
        ),
    ),
    (
        "vendor-copy",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/contract-0.1.0/vendor-copy.wasm"
        ),
    ),
    (
        "plain",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/contract-0.1.0/plain.wasm"
        ),
    ),
];

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
