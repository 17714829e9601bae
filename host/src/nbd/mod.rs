//! The NBD server that serves attached volumes: fixed newstyle handshake
//! (`OPT_GO`, `OPT_INFO`, `OPT_LIST`, `OPT_ABORT`, `OPT_EXPORT_NAME`,
//! `OPT_STARTTLS` when `[nbd] tls` is on or required), simple replies, and
//! READ, WRITE, FLUSH, TRIM, WRITE_ZEROES with FUA, DISC.
//!
//! Only exports in the [`ExportTable`] can be opened; removing one drains,
//! flushes and closes its connections. [`NbdLimits`] bound what a client
//! can hold: connections, time for each step, memory for buffers. Peer input never panics the server
//! and never reaches a device outside the export's range.

mod budget;
mod conn;
mod export;
mod handshake;
mod limits;
mod pause;
pub(crate) mod proto;
mod server;
mod stats;
#[cfg(test)]
pub(crate) mod testdev;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;
mod tls;
mod transport;
mod watch;

pub use export::{Export, ExportTable};
pub use limits::NbdLimits;
pub use pause::{PauseError, Paused};
pub use server::NbdServer;
pub use stats::{NbdSnapshot, NbdStats, STATS};
pub use tls::{NbdTls, TlsSetupError};
