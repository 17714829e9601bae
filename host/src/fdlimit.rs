//! The process's file descriptor budget: the soft `RLIMIT_NOFILE` raised to
//! the hard limit at start, and the share of it HTTP connections may hold,
//! so NBD connections, LUN files and the store always find descriptors.

use std::io;

/// Descriptors kept out of the HTTP connection cap: NBD (two per
/// connection, up to 1,024 connections), LUN files, the store, driver
/// instances, listeners and the runtime's own.
pub const RESERVED: u64 = 4096;
/// The HTTP cap never goes below this, however low the limit: an API that
/// cannot take a handful of connections is no API.
const MIN_HTTP_CONNECTIONS: u64 = 16;

/// Raises the soft limit on open files to the hard limit (Linux starts most
/// processes at 1,024 whatever the hard limit) and returns the soft limit
/// now in force. On failure the old limit stays and is returned.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = get()?;
    let mut target = lim.rlim_max;
    if target == libc::RLIM_INFINITY {
        // The kernel refuses an infinite RLIMIT_NOFILE; its ceiling is
        // fs.nr_open.
        target = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20);
    }
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < target {
        let old = lim.rlim_cur;
        lim.rlim_cur = target;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            let e = io::Error::last_os_error();
            tracing::warn!(error = %e, limit = old, "cannot raise the open file limit");
            return Ok(old);
        }
    }
    Ok(get()?.rlim_cur)
}

fn get() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// The HTTP connections allowed under an open file limit of `nofile`: the
/// configured number, lowered so that [`RESERVED`] descriptors stay free
/// (under a small limit, HTTP gets a quarter of it).
pub fn http_connection_cap(configured: u64, nofile: u64) -> u64 {
    let budget = nofile
        .saturating_sub(RESERVED)
        .max(nofile / 4)
        .max(MIN_HTTP_CONNECTIONS);
    configured.min(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_everything_else() {
        // A generous limit: the configured number.
        assert_eq!(http_connection_cap(4096, 1 << 20), 4096);
        // Not enough for both: HTTP gets what the reserve leaves.
        assert_eq!(http_connection_cap(4096, 6000), 6000 - RESERVED);
        // A small limit: a quarter for HTTP, three quarters for the rest.
        assert_eq!(http_connection_cap(4096, 1024), 256);
        assert_eq!(http_connection_cap(4096, 8), MIN_HTTP_CONNECTIONS);
        assert_eq!(http_connection_cap(10, 1024), 10);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = get().unwrap().rlim_cur;
        let after = raise_nofile_limit().unwrap();
        assert!(after >= before, "{before} -> {after}");
        assert_eq!(get().unwrap().rlim_cur, after);
    }
}
