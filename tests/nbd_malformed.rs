//! Hostile and broken NBD traffic against the server: bad magic, huge
//! lengths, out-of-range offsets, unknown commands, writes to read-only
//! exports, abrupt disconnects and seeded random garbage. After every case
//! the server must still serve a correct read on a new connection, and the
//! LUN files must not change outside what valid requests wrote.

#[path = "support_nbd.rs"]
mod support_nbd;

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use ferry::array::Lun;
use ferry::block::BlockDevice;
use support_nbd::*;

const LUN_SIZE: u64 = 4 * MIB;

/// The byte every LUN of these tests holds at `offset` before any request.
fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(7) % 251) as u8
}

fn patterned(fx: &Fixture, name: &str) -> Arc<Lun> {
    let lun = fx.create(name, LUN_SIZE);
    let bytes: Vec<u8> = (0..LUN_SIZE).map(pattern).collect();
    lun.write_at(&bytes, 0).unwrap();
    lun
}

/// A server with a writable export `vol`, a read-only export `ro`, and a
/// read-only `canary` used only to check the server is still healthy.
struct Rig {
    fx: Fixture,
    srv: Served,
}

impl Rig {
    fn new() -> Rig {
        let fx = Fixture::new();
        let vol = patterned(&fx, "vol");
        let ro = patterned(&fx, "ro");
        let canary = patterned(&fx, "canary");
        let srv = Served::start(&[
            ("vol", vol, false),
            ("ro", ro, true),
            ("canary", canary, true),
        ]);
        Rig { fx, srv }
    }

    /// A new connection still works and reads the right bytes.
    fn assert_healthy(&self) {
        let mut c = RawClient::connect(self.srv.addr(), "canary");
        assert_eq!(c.size, LUN_SIZE);
        let offset = MIB + 3;
        let (err, data) = c.call(NBD_CMD_READ, 0, offset, 65536, &[]);
        assert_eq!(err, 0);
        let want: Vec<u8> = (offset..offset + 65536).map(pattern).collect();
        assert!(data == want, "canary read returned wrong bytes");
        c.send(NBD_CMD_DISC, 0, 0, 0, 0, &[]);
        expect_closed(&mut c.s);
    }

    /// The LUN file still has its size and, outside `changed`, its pattern.
    fn assert_untouched(&self, name: &str, changed: &[(u64, u64)]) {
        let bytes = file_bytes(&self.fx.path(name));
        assert_eq!(bytes.len() as u64, LUN_SIZE, "{name} changed size");
        for (i, b) in bytes.iter().enumerate() {
            let i = i as u64;
            if changed.iter().any(|(o, l)| i >= *o && i < o + l) {
                continue;
            }
            assert_eq!(*b, pattern(i), "{name} byte {i} changed");
        }
    }

    fn client(&self, export: &str) -> RawClient {
        RawClient::connect(self.srv.addr(), export)
    }
}

#[test]
fn broken_handshakes_are_refused() {
    let rig = Rig::new();
    let addr = rig.srv.addr();

    // Unknown client flags.
    let mut s = connect_greeted(addr);
    s.write_all(&0xffff_ffffu32.to_be_bytes()).unwrap();
    expect_closed(&mut s);
    rig.assert_healthy();

    // Bad option magic.
    let mut s = connect_greeted(addr);
    let mut bad = 3u32.to_be_bytes().to_vec();
    let mut opt = go_bytes("vol");
    opt[..8].copy_from_slice(b"IHAVEOPX");
    bad.extend_from_slice(&opt);
    s.write_all(&bad).unwrap();
    expect_closed(&mut s);
    rig.assert_healthy();

    // Huge option length: an error reply, then the connection closes.
    let mut s = connect_greeted(addr);
    let mut huge = 3u32.to_be_bytes().to_vec();
    huge.extend_from_slice(b"IHAVEOPT");
    huge.extend_from_slice(&7u32.to_be_bytes());
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    s.write_all(&huge).unwrap();
    let (_, ty, _) = read_option_reply(&mut s);
    assert_ne!(ty & 0x8000_0000, 0, "huge option was not refused");
    expect_closed(&mut s);
    rig.assert_healthy();

    // Unknown export through NBD_OPT_EXPORT_NAME can only be refused by closing.
    let mut s = connect_greeted(addr);
    let mut en = 3u32.to_be_bytes().to_vec();
    en.extend_from_slice(&option_bytes(1, b"no-such-volume"));
    s.write_all(&en).unwrap();
    expect_closed(&mut s);
    rig.assert_healthy();

    // Errors that keep the negotiation going, then a good NBD_OPT_GO.
    let mut s = connect_greeted(addr);
    let mut out = 3u32.to_be_bytes().to_vec();
    out.extend_from_slice(&option_bytes(8, &[])); // structured replies
    out.extend_from_slice(&option_bytes(0xdead, b"??")); // unknown option
    out.extend_from_slice(&option_bytes(3, b"x")); // LIST with data
    out.extend_from_slice(&option_bytes(7, &[0, 0, 0, 200, b'v'])); // short GO
    out.extend_from_slice(&go_bytes("no-such-volume"));
    s.write_all(&out).unwrap();
    for _ in 0..5 {
        let (_, ty, _) = read_option_reply(&mut s);
        assert_ne!(ty & 0x8000_0000, 0, "expected an error reply, got {ty:#x}");
    }
    s.write_all(&go_bytes("vol")).unwrap();
    loop {
        let (_, ty, _) = read_option_reply(&mut s);
        assert_eq!(ty & 0x8000_0000, 0);
        if ty == NBD_REP_ACK {
            break;
        }
    }
    rig.assert_healthy();

    // Clients vanishing at every point of the handshake.
    let full = {
        let mut b = 3u32.to_be_bytes().to_vec();
        b.extend_from_slice(&go_bytes("vol"));
        b
    };
    for cut in [0, 2, 4, 10, 20, full.len() - 1] {
        let mut s = connect_greeted(addr);
        s.write_all(&full[..cut]).unwrap();
        drop(s);
    }
    // And one that leaves before even reading the greeting.
    drop(std::net::TcpStream::connect(addr).unwrap());
    rig.assert_healthy();
    rig.assert_untouched("vol", &[]);
}

#[test]
fn bad_request_magic_closes_the_connection() {
    let rig = Rig::new();
    let mut c = rig.client("vol");
    let mut req = request_bytes(NBD_CMD_WRITE, 0, 1, 0, 4);
    req[0] = 0x26;
    req.extend_from_slice(b"evil");
    c.s.write_all(&req).unwrap();
    expect_closed(&mut c.s);
    rig.assert_healthy();
    rig.assert_untouched("vol", &[]);
}

#[test]
fn huge_lengths_are_refused() {
    let rig = Rig::new();
    let mut c = rig.client("vol");
    assert_eq!(c.call(NBD_CMD_READ, 0, 0, u32::MAX, &[]).0, EINVAL);
    assert_eq!(c.call(NBD_CMD_READ, 0, 0, (32 << 20) + 1, &[]).0, EINVAL);
    assert_eq!(c.call(NBD_CMD_TRIM, 0, 0, u32::MAX, &[]).0, EINVAL);
    assert_eq!(c.call(NBD_CMD_WRITE_ZEROES, 0, 0, u32::MAX, &[]).0, EINVAL);
    // The connection is still in step after those refusals.
    let (err, data) = c.call(NBD_CMD_READ, 0, 100, 4, &[]);
    assert_eq!(err, 0);
    assert_eq!(data, (100..104).map(pattern).collect::<Vec<_>>());
    // A write whose payload cannot be trusted: refused, then closed.
    c.send(NBD_CMD_WRITE, 0, 9, 0, u32::MAX, &[0xff; 4096]);
    let (err, handle, _) = c.recv(0);
    assert_eq!((err, handle), (EINVAL, 9));
    expect_closed(&mut c.s);
    rig.assert_healthy();
    rig.assert_untouched("vol", &[]);
}

#[test]
fn out_of_range_requests_never_touch_the_lun() {
    let rig = Rig::new();
    let mut c = rig.client("vol");
    let end = LUN_SIZE;
    let cases: &[(u16, u64, u32)] = &[
        (NBD_CMD_WRITE, end - 2, 4),
        (NBD_CMD_WRITE, end, 1),
        (NBD_CMD_WRITE, u64::MAX - 1, 4),
        (NBD_CMD_WRITE, 1 << 63, 16),
        (NBD_CMD_WRITE_ZEROES, end - 512, 1024),
        (NBD_CMD_WRITE_ZEROES, u64::MAX, 1),
        (NBD_CMD_TRIM, end - 1, 2),
        (NBD_CMD_TRIM, u64::MAX - 10, 4096),
        (NBD_CMD_READ, end, 1),
        (NBD_CMD_READ, u64::MAX, 4096),
    ];
    for &(kind, offset, len) in cases {
        let payload = if kind == NBD_CMD_WRITE {
            vec![0xee; len as usize]
        } else {
            vec![]
        };
        let (err, _) = c.call(kind, 0, offset, len, &payload);
        assert_eq!(err, EINVAL, "command {kind} at {offset}+{len}");
    }
    rig.assert_untouched("vol", &[]);
    // The very last bytes are writable.
    assert_eq!(c.call(NBD_CMD_WRITE, 1, end - 4, 4, b"LAST").0, 0);
    rig.assert_untouched("vol", &[(end - 4, 4)]);
    let bytes = file_bytes(&rig.fx.path("vol"));
    assert_eq!(&bytes[(end - 4) as usize..], b"LAST");
    rig.assert_healthy();
}

#[test]
fn unknown_commands_get_einval() {
    let rig = Rig::new();
    let mut c = rig.client("vol");
    for kind in [5u16, 7, 8, 9, 100, 0x7fff, 0xffff] {
        assert_eq!(c.call(kind, 0, 0, 512, &[]).0, EINVAL, "command {kind}");
    }
    assert_eq!(c.call(NBD_CMD_FLUSH, 0, 0, 0, &[]).0, 0);
    let (err, data) = c.call(NBD_CMD_READ, 0, 0, 8, &[]);
    assert_eq!(err, 0);
    assert_eq!(data, (0..8).map(pattern).collect::<Vec<_>>());
    rig.assert_healthy();
    rig.assert_untouched("vol", &[]);
}

#[test]
fn read_only_export_refuses_every_write() {
    let rig = Rig::new();
    let mut c = rig.client("ro");
    assert_ne!(c.flags & 2, 0, "read-only flag missing");
    assert_eq!(c.call(NBD_CMD_WRITE, 0, 0, 4, b"nope").0, EPERM);
    assert_eq!(c.call(NBD_CMD_WRITE, 1, 4096, 4, b"nope").0, EPERM);
    assert_eq!(c.call(NBD_CMD_TRIM, 0, 0, 65536, &[]).0, EPERM);
    assert_eq!(c.call(NBD_CMD_WRITE_ZEROES, 0, 0, 65536, &[]).0, EPERM);
    let (err, data) = c.call(NBD_CMD_READ, 0, 0, 4, &[]);
    assert_eq!(err, 0);
    assert_eq!(data, (0..4).map(pattern).collect::<Vec<_>>());
    rig.assert_healthy();
    rig.assert_untouched("ro", &[]);
}

#[test]
fn abrupt_disconnects() {
    let rig = Rig::new();

    // Mid request header.
    let mut c = rig.client("vol");
    c.s.write_all(&request_bytes(NBD_CMD_WRITE, 0, 1, 0, 4096)[..10])
        .unwrap();
    drop(c);
    rig.assert_healthy();

    // Mid write payload: nothing of it may land.
    let mut c = rig.client("vol");
    let mut req = request_bytes(NBD_CMD_WRITE, 0, 1, MIB, 65536);
    req.extend_from_slice(&[0xaa; 1000]);
    c.s.write_all(&req).unwrap();
    drop(c);
    rig.assert_healthy();
    rig.assert_untouched("vol", &[]);

    // Many requests pipelined, then gone without reading a reply.
    let mut c = rig.client("vol");
    let mut burst = Vec::new();
    for i in 0..64u64 {
        burst.extend_from_slice(&request_bytes(NBD_CMD_READ, 0, i, i * 65536, 65536));
    }
    c.s.write_all(&burst).unwrap();
    drop(c);
    rig.assert_healthy();

    // Half-closed: the client stops sending mid-payload but keeps reading.
    let mut c = rig.client("vol");
    let mut req = request_bytes(NBD_CMD_WRITE, 0, 1, 2 * MIB, 8192);
    req.extend_from_slice(&[0xbb; 100]);
    c.s.write_all(&req).unwrap();
    c.s.shutdown(Shutdown::Write).unwrap();
    expect_closed(&mut c.s);
    rig.assert_healthy();
    rig.assert_untouched("vol", &[]);
}

/// Bytes that look enough like NBD to get past the first checks.
fn fuzz_requests(rng: &mut Rng, out: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(6) {
        let kind = match rng.below(10) {
            0..=6 => rng.below(8) as u16,
            _ => rng.next() as u16,
        };
        let offset = match rng.below(4) {
            0 => rng.next(),
            1 => LUN_SIZE - rng.below(8192),
            _ => rng.below(LUN_SIZE),
        };
        let len = match rng.below(6) {
            0 => rng.next() as u32,
            1 => 0,
            _ => rng.below(16384) as u32,
        };
        let flags = if rng.below(3) == 0 {
            rng.next() as u16
        } else {
            0
        };
        out.extend_from_slice(&request_bytes(kind, flags, rng.next(), offset, len));
        if kind == NBD_CMD_WRITE && len <= 16384 && rng.below(4) != 0 {
            let start = out.len();
            out.resize(start + len as usize, 0);
            rng.fill(&mut out[start..]);
        }
        if rng.below(5) == 0 {
            let start = out.len();
            out.resize(start + rng.below(64) as usize, 0);
            rng.fill(&mut out[start..]);
        }
    }
}

#[test]
fn seeded_random_garbage() {
    let rig = Rig::new();
    let addr = rig.srv.addr();
    let mut rng = Rng::new(0xf3_44_ba_d0);
    let iterations = 1000;
    for i in 0..iterations {
        let mut bytes = Vec::new();
        let mode = rng.below(4);
        let target = if rng.below(2) == 0 { "ro" } else { "vol" };
        let mut s = if mode <= 1 {
            let s = connect_greeted(addr);
            if mode == 1 {
                // Valid client flags, then garbage options.
                bytes.extend_from_slice(&3u32.to_be_bytes());
                if rng.below(2) == 0 {
                    bytes.extend_from_slice(b"IHAVEOPT");
                }
            }
            let start = bytes.len();
            bytes.resize(start + rng.below(512) as usize, 0);
            rng.fill(&mut bytes[start..]);
            s
        } else {
            let c = RawClient::connect(addr, target);
            if mode == 2 {
                bytes.resize(rng.below(1024) as usize, 0);
                rng.fill(&mut bytes);
            } else {
                fuzz_requests(&mut rng, &mut bytes);
            }
            c.s
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may close early and reset the rest of the send.
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(Shutdown::Write);
        expect_closed(&mut s);
        if i % 25 == 24 {
            rig.assert_healthy();
            rig.assert_untouched("ro", &[]);
        }
    }
    rig.assert_healthy();
    rig.assert_untouched("ro", &[]);
    rig.assert_untouched("canary", &[]);
    assert_eq!(
        std::fs::metadata(rig.fx.path("vol")).unwrap().len(),
        LUN_SIZE,
        "writable LUN changed size"
    );
}
