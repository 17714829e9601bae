//! The host's NBD client against real servers: qemu-nbd serving a file,
//! nbdkit with its error filter as a source of transient and lasting EIO,
//! and a server killed and restarted under a running copy.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support_nbd.rs"]
mod support_nbd;

use ferry::block::BlockDevice;
use ferry::remote_nbd::{RemoteDevice, RemoteOptions};
use support_nbd::require_tool;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
fn wait_port(port: u16) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    addr
}

/// A server child that is killed when the test ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qemu_nbd(file: &Path, port: u16) -> Peer {
    require_tool("qemu-nbd", "qemu-utils");
    let child = Command::new("qemu-nbd")
        .args(["-f", "raw", "--cache=writeback", "-b", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "-x",
            "x",
            "--persistent",
            "--shared=8",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-nbd");
    Peer(child)
}

fn opts() -> RemoteOptions {
    RemoteOptions {
        connections: 4,
        request_timeout: Duration::from_secs(10),
        retry_for: Duration::from_secs(15),
    }
}

#[test]
fn reads_and_writes_reach_a_file_that_qemu_nbd_serves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.raw");
    std::fs::write(&file, vec![0u8; 8 << 20]).unwrap();
    let port = free_port();
    let _peer = qemu_nbd(&file, port);
    let remote = RemoteDevice::connect(wait_port(port), "x", opts()).unwrap();
    assert_eq!(remote.size(), 8 << 20);

    let data: Vec<u8> = (0..(5 << 20)).map(|i| (i * 7 % 253) as u8).collect();
    remote.write_at(&data, 1 << 20).unwrap();
    remote.write_zeroes(2 << 20, 4096).unwrap();
    remote.flush().unwrap();
    let on_disk = std::fs::read(&file).unwrap();
    assert!(on_disk[1 << 20..2 << 20] == data[..1 << 20]);
    assert!(on_disk[2 << 20..(2 << 20) + 4096].iter().all(|&b| b == 0));
    assert!(on_disk[(2 << 20) + 4096..6 << 20] == data[(1 << 20) + 4096..]);

    let mut back = vec![0u8; 4096];
    remote.read_at(&mut back, (6 << 20) - 4096).unwrap();
    assert!(back == data[data.len() - 4096..]);
}

#[test]
fn nbdkit_errors_are_retried_while_transient_and_returned_when_lasting() {
    require_tool("nbdkit", "nbdkit");
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("fail-now");
    let port = free_port();
    let child = Command::new("nbdkit")
        .args(["--foreground", "--exit-with-parent", "-i", "127.0.0.1"])
        .args([
            "-p",
            &port.to_string(),
            "--filter=error",
            "memory",
            "size=4M",
        ])
        .args(["error=EIO", "error-rate=100%"])
        .arg(format!("error-file={}", trigger.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("nbdkit");
    let _peer = Peer(child);
    let remote = RemoteDevice::connect(wait_port(port), "", opts()).unwrap();
    remote.write_at(b"steady", 0).unwrap();

    std::fs::write(&trigger, b"").unwrap();
    let heal = {
        let trigger = trigger.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            std::fs::remove_file(trigger).unwrap();
        })
    };
    let mut buf = [0u8; 6];
    remote.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"steady");
    heal.join().unwrap();

    std::fs::write(&trigger, b"").unwrap();
    let e = remote.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
}

#[test]
fn a_server_killed_and_restarted_mid_copy_loses_nothing_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lun.raw");
    std::fs::write(&file, vec![0u8; 16 << 20]).unwrap();
    let port = free_port();
    let mut peer = qemu_nbd(&file, port);
    let remote = RemoteDevice::connect(wait_port(port), "x", opts()).unwrap();

    let block = |i: u64| vec![(i as u8).wrapping_mul(13) | 1; 1 << 20];
    for i in 0..8 {
        remote.write_at(&block(i), i << 20).unwrap();
    }
    remote.flush().unwrap();
    // Acknowledged, not yet flushed when the server dies.
    for i in 8..12 {
        remote.write_at(&block(i), i << 20).unwrap();
    }
    // kill -9 the server, then bring it back on the same port while the
    // next writes are being retried.
    let _ = peer.0.kill();
    let _ = peer.0.wait();
    let restart = {
        let file = file.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            qemu_nbd(&file, port)
        })
    };
    for i in 12..16 {
        remote.write_at(&block(i), i << 20).unwrap();
    }
    let _peer = restart.join().unwrap();
    // Writes acknowledged before the break are not vouched for...
    let e = remote.flush().unwrap_err();
    assert!(e.to_string().contains("may have lost"), "{e}");
    // ...and once written again they are.
    for i in 8..12 {
        remote.write_at(&block(i), i << 20).unwrap();
    }
    remote.flush().unwrap();
    let on_disk = std::fs::read(&file).unwrap();
    for i in 0..16u64 {
        let at = (i << 20) as usize;
        assert!(on_disk[at..at + (1 << 20)] == block(i)[..], "block {i}");
    }
}
