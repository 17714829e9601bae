//! The server's limits over loopback: handshake deadline, admission under
//! a flood, per-export cap, request deadlines and the buffer budget.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::NbdLimits;
use super::proto::*;
use super::tests::{Client, serve_with};
use crate::block::BlockDevice;

fn limits() -> NbdLimits {
    NbdLimits::default()
}

/// Connects and reads the greeting, sending nothing.
fn silent(server: &super::NbdServer) -> TcpStream {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greet = [0u8; 18];
    s.read_exact(&mut greet).unwrap();
    s
}

/// Whether the server closed `s`, waiting up to `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
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

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_handshake_has_one_deadline_for_all_of_it() {
    let (_t, _dev, server) = serve_with(
        4096,
        false,
        NbdLimits {
            handshake_timeout: Duration::from_millis(300),
            ..limits()
        },
    );
    let mut s = silent(&server);
    // A byte every 100 ms keeps any per-read timeout happy; the whole
    // handshake still has to end in time.
    let started = Instant::now();
    let mut closed = false;
    for b in 3u32.to_be_bytes().iter().chain(b"IHAVEOPT") {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    closed = closed || closed_within(&mut s, Duration::from_secs(2));
    assert!(closed, "a slow handshake was not cut off");
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_until("the registry empties", || server.open_connections() == 0);
}

#[test]
fn a_flood_of_handshakes_from_one_address_cannot_lock_out_a_client() {
    let (_t, _dev, server) = serve_with(
        1 << 20,
        false,
        NbdLimits {
            max_handshakes_per_client: 4,
            max_connections: 8,
            ..limits()
        },
    );
    let mut flood: Vec<TcpStream> = (0..20).map(|_| silent(&server)).collect();
    let mut c = Client::connect(&server, "v");
    assert_eq!(c.call(CMD_WRITE, 0, 0, 3, b"abc").0, 0);
    assert_eq!(c.call(CMD_READ, 0, 0, 3, &[]), (0, b"abc".to_vec()));
    assert!(
        server.open_connections() <= 5,
        "at most 4 handshakes beside the attached client, saw {}",
        server.open_connections()
    );
    assert!(
        closed_within(&mut flood[0], Duration::from_secs(2)),
        "the oldest handshake was closed to make room"
    );
}

#[test]
fn a_full_server_closes_handshakes_never_attached_clients() {
    let (_t, _dev, server) = serve_with(
        1 << 20,
        false,
        NbdLimits {
            max_connections: 3,
            ..limits()
        },
    );
    let mut a = Client::connect(&server, "v");
    let mut b = Client::connect(&server, "v");
    let _flood: Vec<TcpStream> = (0..5).map(|_| silent(&server)).collect();
    let mut c = Client::connect(&server, "v");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.call(CMD_READ, 0, 0, 1, &[]).0, 0);
    }
    // Three attached: a fourth connection finds no room.
    let mut d = TcpStream::connect(server.local_addr()).unwrap();
    assert!(closed_within(&mut d, Duration::from_secs(2)));
    assert_eq!(a.call(CMD_READ, 0, 0, 1, &[]).0, 0);
}

#[test]
fn an_export_takes_at_most_its_connections() {
    let (_t, _dev, server) = serve_with(
        4096,
        false,
        NbdLimits {
            max_connections_per_export: 2,
            ..limits()
        },
    );
    let a = Client::connect(&server, "v");
    let _b = Client::connect(&server, "v");
    assert_eq!(Client::go(&server, "v").err(), Some(REP_ERR_POLICY));
    drop(a);
    wait_until("a place frees up", || Client::go(&server, "v").is_ok());
}

#[test]
fn a_stalled_payload_or_unread_reply_is_cut_off() {
    let (_t, dev, server) = serve_with(
        32 << 20,
        false,
        NbdLimits {
            request_timeout: Duration::from_millis(300),
            ..limits()
        },
    );
    // Half a 1 MiB write, then silence.
    let mut c = Client::connect(&server, "v");
    c.send(CMD_WRITE, 0, 1, 0, 1 << 20, &vec![0x5a; 512 << 10]);
    assert!(closed_within(&mut c.s, Duration::from_secs(3)));
    assert_eq!(dev.snapshot()[0], 0, "nothing of the half write landed");

    // Reads whose replies the client never takes.
    let mut c = Client::connect(&server, "v");
    for h in 0..8 {
        c.send(CMD_READ, 0, h, 0, 32 << 20, &[]);
    }
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    wait_until("the stuck connection is closed", || {
        server.open_connections() == 0
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    // What is left is kept for reuse: a quarter of the budget at most.
    let kept = NbdLimits::default().buffer_budget / 4;
    wait_until("the buffers go back", || server.buffer_bytes() <= kept);
}

#[test]
fn request_buffers_stay_within_the_budget_and_requests_wait() {
    let budget = 64 << 20;
    let (_t, dev, server) = serve_with(
        32 << 20,
        false,
        NbdLimits {
            buffer_budget: budget,
            ..limits()
        },
    );
    dev.write_at(&[7u8; 4096], (32 << 20) - 4096).unwrap();
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(&server, "v")).collect();
    for c in &mut clients {
        for h in 0..4 {
            c.send(CMD_READ, 0, h, 0, 32 << 20, &[]);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.buffer_bytes() <= budget,
        "{} bytes of buffers over a {budget}-byte budget",
        server.buffer_bytes()
    );
    // Every request is answered once the clients read: they waited.
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut handles = Vec::new();
                for _ in 0..4 {
                    let (err, handle, data) = c.recv(32 << 20);
                    assert_eq!(err, 0);
                    assert_eq!(data[data.len() - 1], 7);
                    handles.push(handle);
                }
                handles.sort_unstable();
                handles
            })
        })
        .collect();
    for r in readers {
        assert_eq!(r.join().unwrap(), [0, 1, 2, 3]);
    }
    assert!(server.buffer_bytes() <= budget);
}

#[test]
fn an_idle_timeout_closes_idle_connections_only() {
    let (_t, _dev, server) = serve_with(
        4096,
        false,
        NbdLimits {
            idle_timeout: Some(Duration::from_millis(400)),
            ..limits()
        },
    );
    let mut idle = Client::connect(&server, "v");
    let mut busy = Client::connect(&server, "v");
    assert_eq!(idle.call(CMD_READ, 0, 0, 1, &[]).0, 0);
    for _ in 0..12 {
        assert_eq!(busy.call(CMD_READ, 0, 0, 1, &[]).0, 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed_within(&mut idle.s, Duration::from_secs(2)));
    assert_eq!(busy.call(CMD_READ, 0, 0, 1, &[]).0, 0);
    let _ = idle.s.write_all(&[0]);
}
