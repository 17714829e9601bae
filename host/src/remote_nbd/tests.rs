//! The client against Ferry's own NBD server on loopback: data round trips,
//! many threads at once, reconnects, durability, refusals.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::{RemoteDevice, RemoteError, RemoteOptions};
use crate::block::BlockDevice;
use crate::nbd::testdev::MemDevice;
use crate::nbd::{Export, ExportTable, NbdLimits, NbdServer};

fn serve(size: usize, read_only: bool) -> (Arc<ExportTable>, Arc<MemDevice>, NbdServer) {
    let table = Arc::new(ExportTable::new());
    let dev = Arc::new(MemDevice::new(size));
    table.add(
        "x",
        Export {
            device: dev.clone(),
            read_only,
        },
    );
    let server = NbdServer::start(
        "127.0.0.1:0".parse().unwrap(),
        table.clone(),
        NbdLimits::default(),
    )
    .unwrap();
    (table, dev, server)
}

fn quick() -> RemoteOptions {
    RemoteOptions {
        connections: 4,
        request_timeout: Duration::from_secs(5),
        retry_for: Duration::from_secs(5),
    }
}

#[test]
fn data_round_trips_over_several_connections() {
    let (_t, dev, server) = serve(16 << 20, false);
    let remote = RemoteDevice::connect(server.local_addr(), "x", quick()).unwrap();
    let info = remote.info();
    assert_eq!(info.size, 16 << 20);
    assert!(!info.read_only);
    assert!(info.multi_conn, "Ferry's server allows multi-conn");

    // Larger than one request: split and put back together.
    let data: Vec<u8> = (0..(9 << 20)).map(|i| (i % 251) as u8).collect();
    remote.write_at(&data, 4096).unwrap();
    let mut back = vec![0u8; data.len()];
    remote.read_at(&mut back, 4096).unwrap();
    assert!(back == data);
    assert!(dev.snapshot()[4096..4096 + data.len()] == data[..]);

    remote.write_zeroes(4096, 1 << 20).unwrap();
    remote.discard(8 << 20, 4096).unwrap();
    let snap = dev.snapshot();
    assert!(snap[4096..4096 + (1 << 20)].iter().all(|&b| b == 0));
    assert!(snap[8 << 20..(8 << 20) + 4096].iter().all(|&b| b == 0));
    let flushes = dev.flushes();
    remote.flush().unwrap();
    assert_eq!(dev.flushes(), flushes + 1);
    // Nothing written since: the flush has nothing to ask of the server.
    remote.flush().unwrap();
    assert_eq!(dev.flushes(), flushes + 1);

    let mut past = [0u8; 2];
    let e = remote.read_at(&mut past, (16 << 20) - 1).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn many_threads_share_the_connections() {
    let (_t, dev, server) = serve(8 << 20, false);
    let remote = Arc::new(RemoteDevice::connect(server.local_addr(), "x", quick()).unwrap());
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let remote = Arc::clone(&remote);
            s.spawn(move || {
                for i in 0..64u64 {
                    let at = (u64::from(t) * 64 + i) * 16384;
                    let block = vec![t.wrapping_mul(31).wrapping_add(i as u8); 16384];
                    remote.write_at(&block, at).unwrap();
                    let mut back = vec![0u8; 16384];
                    remote.read_at(&mut back, at).unwrap();
                    assert_eq!(back, block);
                }
            });
        }
    });
    assert!(
        remote.open_connections() > 1,
        "requests spread over connections"
    );
    let snap = dev.snapshot();
    assert_eq!(snap[16384 * 65], 31u8.wrapping_add(1));
}

#[test]
fn a_lost_connection_is_replaced_and_unflushed_writes_are_not_vouched_for() {
    let (table, dev, server) = serve(1 << 20, false);
    let remote = RemoteDevice::connect(server.local_addr(), "x", quick()).unwrap();
    remote.write_at(b"before", 0).unwrap();
    remote.flush().unwrap();
    remote.write_at(b"unflushed", 100).unwrap();

    // The export goes away (every connection closed) and comes back.
    table.remove("x");
    let back = {
        let table = Arc::clone(&table);
        let dev = Arc::clone(&dev);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            table.add(
                "x",
                Export {
                    device: dev,
                    read_only: false,
                },
            );
        })
    };
    let mut buf = [0u8; 6];
    remote.read_at(&mut buf, 0).unwrap();
    assert_eq!(
        &buf, b"before",
        "the read waited for the export and came back"
    );
    back.join().unwrap();

    let e = remote.flush().unwrap_err();
    assert!(e.to_string().contains("may have lost"), "{e}");
    // Reported once: later writes flush as usual.
    remote.write_at(b"after", 200).unwrap();
    remote.flush().unwrap();
}

#[test]
fn a_server_that_stays_away_fails_the_request_in_time() {
    let (table, _dev, server) = serve(1 << 20, false);
    let remote = RemoteDevice::connect(
        server.local_addr(),
        "x",
        RemoteOptions {
            retry_for: Duration::from_millis(500),
            ..quick()
        },
    )
    .unwrap();
    table.remove("x");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    assert!(remote.read_at(&mut buf, 0).is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn transient_eio_is_retried_and_lasting_eio_returned() {
    let (_t, dev, server) = serve(1 << 20, false);
    let remote = RemoteDevice::connect(server.local_addr(), "x", quick()).unwrap();
    dev.set_failing(true);
    let healer = {
        let dev = Arc::clone(&dev);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(120));
            dev.set_failing(false);
        })
    };
    let mut buf = [0u8; 4];
    remote.read_at(&mut buf, 0).unwrap();
    healer.join().unwrap();
    dev.set_failing(true);
    let e = remote.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

#[test]
fn refusals_are_clear() {
    let (_t, _dev, server) = serve(4096, true);
    let remote = RemoteDevice::connect(server.local_addr(), "x", quick()).unwrap();
    assert!(remote.info().read_only);
    let e = remote.write_at(b"no", 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    match RemoteDevice::connect(server.local_addr(), "nope", quick()) {
        Err(RemoteError::Refused { .. }) => {}
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("an unknown export opened"),
    }
}
