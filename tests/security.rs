//! Security and resource limits of a real `ferry serve`: what it writes is
//! private to its user, hostile HTTP requests cannot grow its memory, and
//! idle sockets cannot starve it of file descriptors.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{Launch, Server};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A fresh data directory, the store, the token, every directory of the
/// arrays tree and a volume's LUN file are reachable by their owner only.
#[test]
fn a_fresh_data_directory_and_everything_in_it_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::launch(
        &data,
        None,
        &Launch {
            capture_stderr: true,
            ..Launch::default()
        },
    );
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "private", "size_bytes": 1 << 20, "array": "p1"})),
    );
    assert_eq!(status, 201, "{v}");

    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("ferry.redb")), 0o600, "store");
    assert_eq!(mode(&data.join("admin.token")), 0o600, "admin token");
    assert_eq!(mode(&data.join("arrays")), 0o700, "arrays/");
    // Every directory and file below arrays/: array and pool directories,
    // and the LUN the new volume lives in.
    let mut luns = 0;
    let mut stack = vec![data.join("arrays")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                luns += 1;
            }
        }
    }
    assert_eq!(luns, 1, "the volume's LUN file");
    let log = server.log.clone().unwrap();
    server.stop();
    assert!(
        !log.lines().iter().any(|l| l.contains("chmod 700")),
        "a fresh directory is not warned about: {:?}",
        log.lines()
    );
}

/// A data directory that group and others may enter (as older versions
/// created it) is served, with a warning on stderr and in the log.
#[test]
fn an_existing_data_directory_open_to_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::launch(
        &data,
        None,
        &Launch {
            capture_stderr: true,
            ..Launch::default()
        },
    );
    let log = server.log.clone().unwrap();
    let plain = log.wait_for("warning: the data directory", Duration::from_secs(5));
    let plain = plain.expect("no stderr warning about the data directory");
    assert!(
        plain.contains("0755") && plain.contains("chmod 700"),
        "{plain}"
    );
    let traced = log
        .lines()
        .into_iter()
        .find(|l| l.contains("WARN") && l.contains("data directory is open to other users"));
    assert!(traced.is_some(), "no log warning: {:?}", log.lines());
    // Warned about, not changed behind the operator's back.
    assert_eq!(mode(&data), 0o755);
    server.stop();
}

/// Letters from a xorshift generator: names no one has sent before.
struct Letters(u64);

impl Letters {
    fn new() -> Self {
        Self(rand::random::<u64>() | 1)
    }

    fn take(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                char::from(b'A' + (self.0 % 26) as u8)
            })
            .collect()
    }
}

/// Sends one raw request (`Connection: close`) and returns the status and
/// the body.
fn raw_request(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
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

/// Hundreds of requests with 16 KB made-up method names and paths: every
/// one answered with a short error, `/metrics` keeps a bounded set of
/// series with only standard method labels, and no log line grows with
/// what the client sent.
#[test]
fn made_up_methods_and_paths_cannot_grow_metrics_logs_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(
        dir.path(),
        None,
        &Launch {
            capture_stderr: true,
            rust_log: Some("info".into()),
            ..Launch::default()
        },
    );
    let addr = server.http_addr();
    let mut letters = Letters::new();
    let mut statuses = std::collections::BTreeSet::new();
    for i in 0..300 {
        let method = letters.take(16 << 10);
        let path = if i % 2 == 0 {
            "/healthz".to_owned()
        } else {
            format!("/{}", letters.take(8 << 10))
        };
        let (status, body) = raw_request(&addr, &method, &path);
        statuses.insert(status);
        assert!(
            body.len() < 2048,
            "a {} byte error body for a {} byte method",
            body.len(),
            method.len()
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    assert_eq!(
        statuses,
        [404, 405].into_iter().collect(),
        "unknown paths and methods"
    );

    let (status, text) = server.get_text("/metrics");
    assert_eq!(status, 200);
    assert!(text.len() < 64 << 10, "/metrics is {} bytes", text.len());
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ferry_http_requests_total{"))
        .collect();
    assert!(
        !series.is_empty() && series.len() <= 10,
        "{} series: {series:?}",
        series.len()
    );
    let standard = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other",
    ];
    for line in &series {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no method label: {line}"));
        assert!(standard.contains(&method), "{line}");
    }
    assert!(
        series
            .iter()
            .any(|l| l.contains("method=\"other\"") && l.contains("route=\"other\"")),
        "{series:?}"
    );

    let log = server.log.clone().unwrap();
    server.stop();
    let lines = log.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request") && l.contains("405")),
        "the requests were logged: {} lines",
        lines.len()
    );
    let longest = lines.iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 2048, "a {longest} byte log line");
}
