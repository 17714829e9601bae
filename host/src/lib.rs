//! Ferry moves block volumes between storage arrays of different vendors and
//! keeps them usable while they move. See `ARCHITECTURE.md` at the root for
//! the map of this crate.

pub mod api;
pub mod array;
pub mod block;
pub mod cli;
pub mod config;
pub mod conformance;
pub mod display_text;
pub mod error_kind;
pub mod fdlimit;
pub mod guests;
pub mod hydrate;
pub mod model;
pub mod nbd;
pub mod outbound;
pub mod private_fs;
pub mod prometheus;
pub mod remote_nbd;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod store;
