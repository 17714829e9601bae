//! The limits an NBD server enforces on its clients, from the `[nbd]`
//! table of the configuration.

use std::time::Duration;

use crate::config::NbdConfig;

/// Limits of the NBD connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NbdLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Handshakes one client address may have open at once.
    pub max_handshakes_per_client: usize,
    /// Attached connections per export.
    pub max_connections_per_export: usize,
    /// Time for the whole handshake.
    pub handshake_timeout: Duration,
    /// Time to send a write's payload, and to take a reply.
    pub request_timeout: Duration,
    /// Time an attached connection may sit with nothing in flight.
    pub idle_timeout: Option<Duration>,
    /// Bytes all request buffers may hold together.
    pub buffer_budget: usize,
}

impl NbdLimits {
    /// The limits of a configuration's `[nbd]` table.
    pub fn from_config(c: &NbdConfig) -> Self {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Self {
            max_connections: size(c.max_connections),
            max_handshakes_per_client: size(c.max_handshakes_per_client),
            max_connections_per_export: size(c.max_connections_per_export),
            handshake_timeout: Duration::from_millis(c.handshake_timeout_ms),
            request_timeout: Duration::from_millis(c.request_timeout_ms),
            idle_timeout: (c.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(c.idle_timeout_secs)),
            buffer_budget: size(c.buffer_budget_mib.saturating_mul(1 << 20)),
        }
    }
}

impl Default for NbdLimits {
    fn default() -> Self {
        Self::from_config(&NbdConfig::default())
    }
}
