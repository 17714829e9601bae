//! The NBD server that serves attached volumes: fixed newstyle handshake
//! (`OPT_GO`, `OPT_INFO`, `OPT_LIST`, `OPT_ABORT`, `OPT_EXPORT_NAME`), simple
//! replies, and READ, WRITE, FLUSH, TRIM, WRITE_ZEROES with FUA, DISC.
//!
//! Only exports in the [`ExportTable`] can be opened; removing one drains,
//! flushes and closes its connections. Peer input never panics the server
//! and never reaches a device outside the export's range.

mod conn;
mod export;
mod handshake;
mod proto;
mod server;
mod stats;
#[cfg(test)]
mod testdev;
#[cfg(test)]
mod tests;

pub use export::{Export, ExportTable};
pub use server::NbdServer;
pub use stats::{NbdSnapshot, NbdStats, STATS};
