//! The WebAssembly components built from this repository by `build.rs`: the
//! example drivers, embedded in the binary, and the paths of the test
//! components.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
