//! Raw sockets for the resource tests: many idle connections, raw HTTP
//! requests, and checks of what the server closed.

use std::time::Duration;

use super::Server;

/// Raises this test process's open file limit to its hard limit: resource
/// tests hold thousands of sockets.
pub fn raise_own_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit on structs we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// Sends one raw request (`Connection: close`) and returns the status and
/// the body.
pub fn raw_request(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let status_line = String::from_utf8_lossy(&answer[..split]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line: {status_line}"));
    (status, answer[split + 4..].to_vec())
}

/// The number of descriptors `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Opens `n` TCP connections to `addr` that send nothing.
pub fn idle_connections(addr: &str, n: usize) -> Vec<std::net::TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    (0..n)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect()
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
pub fn closed_within(s: &mut std::net::TcpStream, wait: Duration) -> bool {
    use std::io::Read as _;
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // a response: keep reading until the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// `/healthz` over a fresh connection, timed.
pub fn timed_health(server: &Server) -> Duration {
    let started = std::time::Instant::now();
    let (status, body) = raw_request(&server.http_addr(), "GET", "/healthz");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    started.elapsed()
}
