//! Security and resource limits of a real `ferry serve`: what it writes is
//! private to its user, hostile HTTP requests cannot grow its memory, and
//! idle sockets cannot starve it of file descriptors.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::sockets::{
    closed_within, idle_connections, open_fds, raise_own_nofile_limit, raw_request, timed_health,
};
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

    let (status, text) = server.metrics();
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

/// The issue's attack: thousands of idle sockets against a host started
/// with the usual soft limit of 1,024 descriptors. The host raises its
/// limit and caps HTTP below it, so health checks and volume creation (a
/// LUN file) keep working while the sockets are held.
#[test]
fn idle_sockets_cannot_starve_the_host_of_descriptors() {
    let hard = raise_own_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(
        dir.path(),
        None,
        &Launch {
            nofile_soft_limit: Some(1024),
            ..Launch::default()
        },
    );
    let n = 2000.min(usize::try_from(hard / 2).unwrap_or(2000));
    let held = idle_connections(&server.http_addr(), n);
    let took = timed_health(&server);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "under-siege", "size_bytes": 1 << 20, "array": "p1"})),
    );
    assert_eq!(status, 201, "{v}");
    drop(held);
    server.stop();
}

fn http_config(dir: &Path, http: &str) -> std::path::PathBuf {
    let path = dir.join("ferry.toml");
    let text = format!("[http]\n{http}\n\n[[array]]\nname = \"p1\"\ndriver = \"plain\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// A connection that sends nothing is closed after the header-read
/// timeout; one that began a request head and stalled, after the same time
/// from its first byte; one idle after a response, after the (longer)
/// keep-alive timeout.
#[test]
fn silent_slow_and_idle_connections_are_closed_after_their_timeouts() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let config = http_config(
        dir.path(),
        "header_read_timeout_ms = 800\nkeep_alive_timeout_ms = 2500",
    );
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let addr = server.http_addr();
    let connect = || std::net::TcpStream::connect(&addr).unwrap();

    // Silent from the start.
    let mut silent = connect();
    let started = std::time::Instant::now();
    assert!(!closed_within(&mut silent, Duration::from_millis(500)));
    assert!(closed_within(&mut silent, Duration::from_secs(3)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );

    // One request answered, then idle: the keep-alive timeout, not the
    // header-read one, applies.
    let mut idle = connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\n\r\n")
        .unwrap();
    let answered = std::time::Instant::now();
    assert!(
        !closed_within(&mut idle, Duration::from_millis(1500)),
        "closed before the keep-alive timeout"
    );
    assert!(closed_within(&mut idle, Duration::from_secs(3)));
    let took = answered.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");

    // A later request head that stalls: closed a header-read timeout after
    // its first byte, long before the keep-alive timeout.
    let mut slow = connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: ferry\r\n\r\n")
        .unwrap();
    assert!(!closed_within(&mut slow, Duration::from_millis(200)));
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: fe")
        .unwrap();
    let began = std::time::Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(3)));
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2000),
        "closed after {took:?}"
    );
    server.stop();
}

/// With the connection table full of idle sockets, a new client still gets
/// in: the idlest connection is closed to make room, and the host's
/// descriptors stay within the cap.
#[test]
fn a_full_connection_table_makes_room_by_closing_the_idlest() {
    raise_own_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let config = http_config(
        dir.path(),
        "max_connections = 64\nheader_read_timeout_ms = 60000\nkeep_alive_timeout_ms = 60000",
    );
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let baseline = open_fds(server.pid());
    let mut held = idle_connections(&server.http_addr(), 300);
    let took = timed_health(&server);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    let fds = open_fds(server.pid());
    assert!(
        fds <= baseline + 64 + 8,
        "{fds} descriptors open, {baseline} before 300 connections"
    );
    // The oldest were closed to make room; the newest are still open.
    let closed = held
        .iter_mut()
        .filter_map(|s| closed_within(s, Duration::from_millis(20)).then_some(()))
        .count();
    assert!(closed >= 300 - 64, "{closed} of 300 closed");
    assert!(!closed_within(
        held.last_mut().unwrap(),
        Duration::from_millis(20)
    ));
    server.stop();
}

/// Runs a peer tool; its success and its combined output.
fn tool(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// An NBD export opens only with the secret name the attaching client
/// received: listing reveals nothing, the attachment id (or any guess) is
/// refused, the secret works with every real client, a read-only
/// attachment stays read-only, and a reader token never sees a URI.
#[test]
fn nbd_exports_open_only_with_their_secret_name() {
    for (t, p) in [
        ("qemu-io", "qemu-utils"),
        ("nbdinfo", "libnbd-bin"),
        ("nbdcopy", "libnbd-bin"),
        ("fio", "fio"),
    ] {
        support::require_tool(t, p);
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    const READER: &str = "reader-token-for-nbd-0123456789";
    std::fs::write(data.join("reader.token"), format!("{READER}\n")).unwrap();
    let server = Server::start(&data, None);
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "secret", "size_bytes": 64u64 << 20, "array": "p1"})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let attach = |mode: &str| {
        let (status, a) = server.call(
            "POST",
            &format!("/v1/volumes/{id}/attachments"),
            Some(json!({"server": format!("host-{mode}"), "mode": mode})),
        );
        assert_eq!(status, 201, "{a}");
        a
    };
    let rw = attach("rw");
    let ro = attach("ro");
    let rw_uri = rw["uri"].as_str().unwrap().to_owned();
    let ro_uri = ro["uri"].as_str().unwrap().to_owned();
    let secret = support::export_of(&rw_uri).to_owned();
    assert!(secret.len() >= 43, "a guessable export name: {secret}");
    assert_ne!(secret, rw["id"].as_str().unwrap());

    // Listing reveals nothing.
    let (ok, list) = tool(
        "nbdinfo",
        &["--list", "--json", &format!("nbd://{}", server.nbd)],
    );
    assert!(ok, "{list}");
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["exports"], json!([]), "{list}");
    // The attachment id, the volume id and the empty name open nothing.
    for name in [rw["id"].as_str().unwrap(), id.as_str(), ""] {
        let uri = format!("nbd://{}/{name}", server.nbd);
        let (ok, out) = tool("qemu-io", &["-f", "raw", "-c", "write -P 0x5a 0 4k", &uri]);
        assert!(
            !ok || out.contains("Could not open") || out.contains("failed"),
            "{name}: {out}"
        );
        let (ok, _) = tool("nbdinfo", &[&uri]);
        assert!(!ok, "{name:?} opened an export");
    }

    // The secret works with every client.
    let (ok, out) = tool(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x5a 0 1M",
            "-c",
            "flush",
            &rw_uri,
        ],
    );
    assert!(ok && !out.contains("failed"), "{out}");
    let copy = dir.path().join("copy.raw");
    let (ok, out) = tool("nbdcopy", &[&rw_uri, copy.to_str().unwrap()]);
    assert!(ok, "{out}");
    let bytes = std::fs::read(&copy).unwrap();
    assert!(bytes[..1 << 20].iter().all(|b| *b == 0x5a));
    let (ok, out) = tool(
        "fio",
        &[
            "--name=secret",
            "--ioengine=nbd",
            &format!("--uri={rw_uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=8M",
            "--offset=16M",
            "--verify=crc32c",
            "--verify_state_save=0",
            "--do_verify=1",
        ],
    );
    assert!(ok, "{out}");
    // The read-only attachment's own secret reads, never writes.
    let (ok, out) = tool(
        "qemu-io",
        &["-r", "-f", "raw", "-c", "read -P 0x5a 0 1M", &ro_uri],
    );
    assert!(ok && !out.contains("failed"), "{out}");
    let (ok, out) = tool(
        "qemu-io",
        &["-f", "raw", "-c", "write -P 0x11 0 4k", &ro_uri],
    );
    assert!(
        !ok || out.contains("failed") || out.contains("read-only"),
        "{out}"
    );

    // A reader token sees the attachments but no URI.
    for path in [format!("/v1/volumes/{id}"), "/v1/volumes".to_owned()] {
        let (status, body) = server.request("GET", &path, None, Some(READER)).unwrap();
        assert_eq!(status, 200, "{body}");
        let text = body.to_string();
        assert!(
            !text.contains(&secret),
            "{path} shows the secret to a reader"
        );
        assert!(text.contains(rw["id"].as_str().unwrap()), "{text}");
    }
    // The admin still does.
    let (_, body) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert!(body.to_string().contains(&secret));
}
