//! Transmission-phase tests over loopback against in-memory devices.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use super::proto::*;
use super::testdev::MemDevice;
use super::{Export, ExportTable, NbdServer};
use crate::block::BlockDevice;

pub(super) struct Client {
    pub(super) s: TcpStream,
    flags: u16,
    size: u64,
}

impl Client {
    pub(super) fn connect(server: &NbdServer, name: &str) -> Client {
        Self::go(server, name).unwrap_or_else(|reply| panic!("GO failed with reply {reply:#x}"))
    }

    /// Opens `name` with `NBD_OPT_GO`; the error reply's type when refused.
    pub(super) fn go(server: &NbdServer, name: &str) -> Result<Client, u32> {
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut greet = [0u8; 18];
        s.read_exact(&mut greet).unwrap();
        assert_eq!(&greet[..8], b"NBDMAGIC");
        let mut out = 3u32.to_be_bytes().to_vec();
        out.extend_from_slice(b"IHAVEOPT");
        out.extend_from_slice(&OPT_GO.to_be_bytes());
        out.extend_from_slice(&(4 + name.len() as u32 + 2).to_be_bytes());
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        s.write_all(&out).unwrap();
        let (mut flags, mut size) = (0, 0);
        loop {
            let mut h = [0u8; 20];
            s.read_exact(&mut h).unwrap();
            let ty = u32::from_be_bytes(h[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
            let mut d = vec![0u8; len];
            s.read_exact(&mut d).unwrap();
            match ty {
                REP_ACK => break,
                REP_INFO if d[..2] == [0, 0] => {
                    size = u64::from_be_bytes(d[2..10].try_into().unwrap());
                    flags = u16::from_be_bytes(d[10..12].try_into().unwrap());
                }
                REP_INFO => {}
                other => return Err(other),
            }
        }
        Ok(Client { s, flags, size })
    }

    pub(super) fn send(
        &mut self,
        kind: u16,
        flags: u16,
        handle: u64,
        offset: u64,
        len: u32,
        data: &[u8],
    ) {
        let req = Request {
            flags,
            kind,
            handle,
            offset,
            length: len,
        };
        let mut b = req.encode().to_vec();
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    /// Reads one simple reply; `read_len` is the payload a successful read
    /// carries.
    pub(super) fn recv(&mut self, read_len: usize) -> (u32, u64, Vec<u8>) {
        let mut h = [0u8; REPLY_LEN];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(&h[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let handle = u64::from_be_bytes(h[8..16].try_into().unwrap());
        let mut d = vec![0u8; if err == 0 { read_len } else { 0 }];
        self.s.read_exact(&mut d).unwrap();
        (err, handle, d)
    }

    pub(super) fn call(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> (u32, Vec<u8>) {
        self.send(kind, flags, 99, offset, len, data);
        let read_len = if kind == CMD_READ { len as usize } else { 0 };
        let (err, handle, d) = self.recv(read_len);
        assert_eq!(handle, 99);
        (err, d)
    }

    pub(super) fn assert_closed(&mut self) {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) | Err(_) => {}
            Ok(_) => panic!("connection still sending"),
        }
    }
}

fn serve(size: usize, read_only: bool) -> (Arc<ExportTable>, Arc<MemDevice>, NbdServer) {
    serve_with(size, read_only, crate::nbd::NbdLimits::default())
}

/// An export `v` of `size` bytes behind a server with `limits`.
pub(super) fn serve_with(
    size: usize,
    read_only: bool,
    limits: crate::nbd::NbdLimits,
) -> (Arc<ExportTable>, Arc<MemDevice>, NbdServer) {
    let table = Arc::new(ExportTable::new());
    let dev = Arc::new(MemDevice::new(size));
    table.add(
        "v",
        Export {
            device: dev.clone(),
            read_only,
        },
    );
    let server = NbdServer::start("127.0.0.1:0".parse().unwrap(), table.clone(), limits).unwrap();
    (table, dev, server)
}

#[test]
fn write_read_flush_fua() {
    let (_t, dev, server) = serve(1 << 20, false);
    let mut c = Client::connect(&server, "v");
    assert_eq!(c.size, 1 << 20);
    assert_ne!(c.flags & TFLAG_SEND_FUA, 0);
    assert_eq!(c.flags & TFLAG_READ_ONLY, 0);
    assert_eq!(c.call(CMD_WRITE, 0, 4096, 3, b"abc").0, 0);
    assert_eq!(c.call(CMD_READ, 0, 4095, 5, &[]), (0, b"\0abc\0".to_vec()));
    assert_eq!(dev.flushes(), 0);
    assert_eq!(c.call(CMD_WRITE, CMD_FLAG_FUA, 0, 1, b"z").0, 0);
    assert_eq!(dev.flushes(), 1);
    assert_eq!(c.call(CMD_FLUSH, 0, 0, 0, &[]).0, 0);
    assert_eq!(dev.flushes(), 2);
    assert_eq!(c.call(CMD_READ, 0, 0, 0, &[]), (0, vec![]));
}

#[test]
fn trim_and_write_zeroes() {
    let (_t, dev, server) = serve(1 << 20, false);
    let mut c = Client::connect(&server, "v");
    assert_eq!(c.call(CMD_WRITE, 0, 0, 8192, &[7u8; 8192]).0, 0);
    assert_eq!(c.call(CMD_TRIM, 0, 0, 1024, &[]).0, 0);
    assert_eq!(
        c.call(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 2048, 1024, &[])
            .0,
        0
    );
    assert_eq!(c.call(CMD_WRITE_ZEROES, CMD_FLAG_FUA, 6144, 2048, &[]).0, 0);
    assert_eq!(dev.flushes(), 1);
    let snap = dev.snapshot();
    assert!(snap[..1024].iter().all(|b| *b == 0));
    assert!(snap[1024..2048].iter().all(|b| *b == 7));
    assert!(snap[2048..3072].iter().all(|b| *b == 0));
    assert!(snap[3072..6144].iter().all(|b| *b == 7));
    assert!(snap[6144..8192].iter().all(|b| *b == 0));
    // Zeroing larger than a single zero buffer.
    assert_eq!(c.call(CMD_WRITE, 0, 0, 4096, &[1u8; 4096]).0, 0);
    let big = (1 << 20) as u32;
    assert_eq!(c.call(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 0, big, &[]).0, 0);
    assert!(dev.snapshot().iter().all(|b| *b == 0));
}

#[test]
fn out_of_range_and_unknown_requests_leave_the_device_alone() {
    let (_t, dev, server) = serve(64 << 10, false);
    let mut c = Client::connect(&server, "v");
    let before = dev.snapshot();
    assert_eq!(c.call(CMD_WRITE, 0, (64 << 10) - 2, 4, b"xxxx").0, EINVAL);
    assert_eq!(c.call(CMD_WRITE, 0, u64::MAX - 1, 4, b"xxxx").0, EINVAL);
    assert_eq!(c.call(CMD_TRIM, 0, 1, u32::MAX, &[]).0, EINVAL);
    assert_eq!(c.call(CMD_WRITE_ZEROES, 0, u64::MAX, 1, &[]).0, EINVAL);
    assert_eq!(c.call(CMD_READ, 0, 64 << 10, 1, &[]).0, EINVAL);
    assert_eq!(c.call(CMD_READ, 0, 0, MAX_PAYLOAD + 1, &[]).0, EINVAL);
    assert_eq!(c.call(42, 0, 0, 0, &[]).0, EINVAL);
    assert_eq!(c.call(7, 0, 0, 512, &[]).0, EINVAL);
    assert_eq!(dev.snapshot(), before);
    assert_eq!(c.call(CMD_READ, 0, 0, 4, &[]), (0, vec![0; 4]));
}

#[test]
fn oversized_write_closes_the_connection_only() {
    let (_t, _dev, server) = serve(64 << 10, false);
    let mut c = Client::connect(&server, "v");
    c.send(CMD_WRITE, 0, 5, 0, MAX_PAYLOAD + 1, &[0u8; 64]);
    assert_eq!(c.recv(0).0, EINVAL);
    c.assert_closed();
    let mut c2 = Client::connect(&server, "v");
    assert_eq!(c2.call(CMD_READ, 0, 0, 4, &[]).0, 0);
}

#[test]
fn read_only_export_refuses_writes() {
    let (_t, dev, server) = serve(4096, true);
    let mut c = Client::connect(&server, "v");
    assert_ne!(c.flags & TFLAG_READ_ONLY, 0);
    assert_eq!(c.call(CMD_WRITE, 0, 0, 2, b"hi").0, EPERM);
    assert_eq!(c.call(CMD_TRIM, 0, 0, 512, &[]).0, EPERM);
    assert_eq!(c.call(CMD_WRITE_ZEROES, 0, 0, 512, &[]).0, EPERM);
    assert_eq!(c.call(CMD_READ, 0, 0, 2, &[]), (0, vec![0, 0]));
    assert!(dev.snapshot().iter().all(|b| *b == 0));
}

#[test]
fn device_errors_become_eio_and_the_connection_stays() {
    let (_t, dev, server) = serve(4096, false);
    let mut c = Client::connect(&server, "v");
    dev.set_failing(true);
    assert_eq!(c.call(CMD_READ, 0, 0, 512, &[]).0, EIO);
    assert_eq!(c.call(CMD_WRITE, 0, 0, 1, b"a").0, EIO);
    assert_eq!(c.call(CMD_FLUSH, 0, 0, 0, &[]).0, EIO);
    dev.set_failing(false);
    assert_eq!(c.call(CMD_WRITE, 0, 0, 1, b"a").0, 0);
    assert_eq!(c.call(CMD_READ, 0, 0, 1, &[]), (0, b"a".to_vec()));
}

#[test]
fn pipelined_requests_all_complete() {
    let (_t, dev, server) = serve(1 << 20, false);
    let mut c = Client::connect(&server, "v");
    let n = 256u64;
    for i in 0..n {
        let data = vec![i as u8; 4096];
        c.send(CMD_WRITE, 0, i, i * 4096, 4096, &data);
    }
    let mut seen = HashSet::new();
    for _ in 0..n {
        let (err, handle, _) = c.recv(0);
        assert_eq!(err, 0);
        assert!(seen.insert(handle));
    }
    let snap = dev.snapshot();
    for i in 0..n as usize {
        assert!(snap[i * 4096..(i + 1) * 4096].iter().all(|b| *b == i as u8));
    }
    for i in 0..n {
        c.send(CMD_READ, 0, 1000 + i, i * 4096, 4096, &[]);
    }
    for _ in 0..n {
        let (err, handle, d) = c.recv(4096);
        assert_eq!(err, 0);
        assert!(d.iter().all(|b| *b == (handle - 1000) as u8));
    }
    c.send(CMD_DISC, 0, 0, 0, 0, &[]);
    c.assert_closed();
}

#[test]
fn remove_flushes_and_closes_connections() {
    let (t, dev, server) = serve(4096, false);
    let mut c = Client::connect(&server, "v");
    assert_eq!(c.call(CMD_WRITE, 0, 0, 1, b"q").0, 0);
    assert!(t.remove("v"));
    assert_eq!(dev.flushes(), 1);
    c.assert_closed();
    assert!(t.names().is_empty());
    // A new client is told the export is unknown.
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greet = [0u8; 18];
    s.read_exact(&mut greet).unwrap();
    let mut out = 3u32.to_be_bytes().to_vec();
    out.extend_from_slice(b"IHAVEOPT");
    out.extend_from_slice(&OPT_GO.to_be_bytes());
    out.extend_from_slice(&7u32.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 1, b'v', 0, 0]);
    s.write_all(&out).unwrap();
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(
        u32::from_be_bytes(h[12..16].try_into().unwrap()),
        REP_ERR_UNKNOWN
    );
}

#[test]
fn replaced_device_serves_later_requests() {
    let (t, old, server) = serve(4096, false);
    let mut c = Client::connect(&server, "v");
    assert_eq!(c.call(CMD_WRITE, 0, 0, 3, b"old").0, 0);
    let new = Arc::new(MemDevice::new(4096));
    new.write_at(b"new", 0).unwrap();
    assert!(t.replace_device("v", new.clone()));
    assert_eq!(c.call(CMD_READ, 0, 0, 3, &[]), (0, b"new".to_vec()));
    assert_eq!(c.call(CMD_WRITE, 0, 3, 1, b"!").0, 0);
    assert_eq!(&new.snapshot()[..4], b"new!");
    assert_eq!(&old.snapshot()[..4], b"old\0");
}

#[test]
fn shutdown_closes_connections_and_the_listener() {
    let (_t, _dev, server) = serve(4096, false);
    let addr = server.local_addr();
    let mut c = Client::connect(&server, "v");
    let started = std::time::Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    c.assert_closed();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn finished_connections_leave_no_trace() {
    let (_t, _dev, server) = serve(4096, false);
    for i in 0..20 {
        let mut c = Client::connect(&server, "v");
        assert_eq!(c.call(CMD_READ, 0, 0, 512, &[]).0, 0);
        if i % 2 == 0 {
            c.send(CMD_DISC, 0, 0, 0, 0, &[]);
        }
        drop(c);
        // Leaves mid-handshake.
        let mut s = TcpStream::connect(server.local_addr()).unwrap();
        s.write_all(&[0, 0, 0]).unwrap();
    }
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while server.open_connections() > 0 {
        assert!(std::time::Instant::now() < until, "connections leaked");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shared_types_cross_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<ExportTable>();
    shared::<NbdServer>();
    shared::<Export>();
}
