//! No client, with or without a credential, can exhaust the host: NBD
//! handshakes have one deadline and cannot crowd out a real client, request
//! buffers stay within their budget, and thousands of idle NBD and HTTP
//! connections leave a real client and `/healthz` served. Each test starts
//! its own `ferry serve` on loopback.

mod support;
#[path = "support_nbd.rs"]
mod support_nbd;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::migrations::{create, with_attachment};
use support::sockets::{
    closed_within, idle_connections, open_fds, raise_own_nofile_limit, timed_health,
};
use support::{Server, export_of, qemu_io};
use support_nbd::RawClient;

/// A configuration with one plain array and the given `[nbd]` settings.
fn nbd_config(dir: &Path, nbd: &str) -> std::path::PathBuf {
    let path = dir.join("ferry.toml");
    let text = format!("[nbd]\n{nbd}\n\n[[array]]\nname = \"p1\"\ndriver = \"plain\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

/// The resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib << 10
}

fn nbd_addr(server: &Server) -> SocketAddr {
    server.nbd.parse().unwrap()
}

/// 500 connections that never say a word and one that sends a byte every
/// 300 ms: a real client still attaches at once, and the server closes
/// every one of them when the whole-handshake deadline passes.
#[test]
fn silent_and_slow_nbd_handshakes_cannot_lock_out_a_real_client() {
    raise_own_nofile_limit();
    let dir = tempfile::tempdir().unwrap();
    let config = nbd_config(dir.path(), "handshake_timeout_ms = 1000");
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = create(&server, "besieged", "p1", 16 << 20);
    let mut silent = idle_connections(&server.nbd, 500);
    let mut slow = TcpStream::connect(nbd_addr(&server)).unwrap();
    let dripper = std::thread::spawn({
        let mut slow = slow.try_clone().unwrap();
        move || {
            use std::io::Write as _;
            for b in 3u32
                .to_be_bytes()
                .iter()
                .chain(b"IHAVEOPT".iter())
                .cycle()
                .take(40)
            {
                if slow.write_all(&[*b]).is_err() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            false
        }
    });
    let started = Instant::now();
    with_attachment(&server, &id, |uri| {
        qemu_io(uri, &["write -P 0x5a 0 64k", "read -P 0x5a 0 64k"]);
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the real client waited {:?}",
        started.elapsed()
    );
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "the slow handshake stayed open"
    );
    assert!(
        dripper.join().unwrap(),
        "the server read the drip to its end"
    );
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(3)),
            "silent connection {i} stayed open"
        );
    }
    server.stop();
}

/// Connections holding unread 32 MiB read replies and half-sent 32 MiB
/// writes: the host's memory grows by the buffer budget at most, a real
/// client's requests wait for room instead of failing, and the stalled
/// connections are closed at the request deadline.
#[test]
fn unread_replies_and_half_sent_writes_stay_within_the_buffer_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = nbd_config(
        dir.path(),
        "buffer_budget_mib = 128\nrequest_timeout_ms = 3000",
    );
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = create(&server, "hoarded", "p1", 64 << 20);
    with_attachment(&server, &id, |uri| {
        qemu_io(uri, &["write -P 0x33 0 64M"]);
        let export = export_of(uri);
        let before = rss(server.pid());
        let fds_before = open_fds(server.pid());
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut c = RawClient::connect(nbd_addr(&server), export);
            for h in 0..8 {
                c.send(0, 0, h, 0, 32 << 20, &[]);
            }
            stalled.push(c);
        }
        for _ in 0..4 {
            let mut c = RawClient::connect(nbd_addr(&server), export);
            let mut header = support_nbd::request_bytes(1, 0, 1, 0, 32 << 20);
            header.extend_from_slice(&vec![0x77; 1 << 20]);
            use std::io::Write as _;
            c.s.write_all(&header).unwrap();
            stalled.push(c);
        }
        std::thread::sleep(Duration::from_millis(1500));
        let grown = rss(server.pid()).saturating_sub(before);
        eprintln!("RSS grew by {} MiB with 8 stalled connections", grown >> 20);
        assert!(
            grown < (128 + 48) << 20,
            "RSS grew by {} MiB past a 128 MiB buffer budget",
            grown >> 20
        );
        // A real client is served: its read waited for room, not refused.
        let started = Instant::now();
        qemu_io(uri, &["read -P 0x33 0 1M"]);
        assert!(started.elapsed() < Duration::from_secs(15));
        // Reading the replies here would un-stall them: count the host's
        // descriptors instead, until the stalled sockets are gone.
        let deadline = Instant::now() + Duration::from_secs(15);
        while open_fds(server.pid()) > fds_before {
            assert!(
                Instant::now() < deadline,
                "stalled connections stayed open: {} descriptors, {fds_before} before",
                open_fds(server.pid())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(stalled);
        // The half-sent writes changed nothing.
        qemu_io(uri, &["read -P 0x33 0 2M"]);
    });
    server.stop();
}

/// The acceptance: 2,000 idle NBD and 2,000 idle HTTP connections
/// held open while a real client attaches, writes and reads a volume and
/// `/healthz` answers within a second. The host stays under 256 MiB of
/// resident memory throughout.
#[test]
fn thousands_of_idle_connections_leave_a_real_client_served() {
    const RSS_BUDGET: u64 = 256 << 20;
    let hard = raise_own_nofile_limit();
    let n = 2000.min(usize::try_from(hard / 3).unwrap_or(2000));
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None);
    let id = create(&server, "crowded", "p1", 64 << 20);
    let started = Instant::now();
    let held_nbd = idle_connections(&server.nbd, n);
    let held_http = idle_connections(&server.http_addr(), n);
    eprintln!(
        "{n} + {n} idle connections opened in {:?}",
        started.elapsed()
    );
    let took = timed_health(&server);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    with_attachment(&server, &id, |uri| {
        qemu_io(uri, &["write -P 0xa5 1M 4M", "read -P 0xa5 1M 4M"]);
    });
    let took = timed_health(&server);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    let used = rss(server.pid());
    eprintln!("RSS {} MiB with {n} + {n} idle connections", used >> 20);
    assert!(used < RSS_BUDGET, "RSS {} MiB", used >> 20);
    drop(held_nbd);
    drop(held_http);
    server.stop();
}
