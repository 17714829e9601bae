//! Shared helpers of the NBD integration tests: a file-backed LUN on a
//! temporary array, a server in front of it, a raw protocol client, and a
//! way to run peer tools with a deadline.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::array::{Array, Lun};
use ferry::config::ArrayConfig;
use ferry::model::LunAddress;
use ferry::nbd::{Export, ExportTable, NbdServer};

pub const MIB: u64 = 1 << 20;

/// A temporary array with one pool, holding the LUNs of one test.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub array: Array,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ArrayConfig {
            name: "a1".into(),
            driver: "plain".into(),
            pools: vec!["default".into()],
            capacity_bytes: 1 << 40,
            settings: Default::default(),
            secrets: Default::default(),
            http_allow: Vec::new(),
            http_ca_file: None,
            nbd_allow: Vec::new(),
            lun_files: true,
        };
        let array = Array::open(dir.path(), &cfg).unwrap();
        Fixture { dir, array }
    }

    pub fn addr(name: &str) -> LunAddress {
        LunAddress {
            pool: "default".into(),
            name: name.into(),
        }
    }

    pub fn create(&self, name: &str, size: u64) -> Arc<Lun> {
        Arc::new(self.array.create_lun(&Self::addr(name), size).unwrap())
    }

    pub fn open(&self, name: &str) -> Arc<Lun> {
        Arc::new(self.array.open_lun(&Self::addr(name)).unwrap())
    }

    /// Where the LUN's bytes live on disk.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("a1").join("default").join(name)
    }
}

/// A server on an ephemeral loopback port with its export table.
pub struct Served {
    pub table: Arc<ExportTable>,
    pub server: NbdServer,
}

impl Served {
    pub fn start(exports: &[(&str, Arc<Lun>, bool)]) -> Served {
        let table = Arc::new(ExportTable::new());
        for (name, lun, read_only) in exports {
            table.add(
                name,
                Export {
                    device: lun.clone(),
                    read_only: *read_only,
                },
            );
        }
        let server = NbdServer::start(
            "127.0.0.1:0".parse().unwrap(),
            table.clone(),
            ferry::nbd::NbdLimits::default(),
        )
        .unwrap();
        Served { table, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn uri(&self, export: &str) -> String {
        format!("nbd://{}/{}", self.addr(), export)
    }
}

/// Fails the test, naming the Debian package, when a peer tool is absent.
pub fn require_tool(tool: &str, package: &str) {
    match Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "`{tool}` is needed by this test but could not be run ({e}): \
             install the Debian package `{package}` (apt-get install {package})"
        ),
    }
}

/// Runs a command with a deadline; the test fails if it is exceeded.
pub fn run(cmd: &mut Command, deadline: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let started = Instant::now();
    // Drain the pipes on threads so a chatty tool cannot block on them.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// Runs a command that must succeed; returns its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{shown} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small seeded generator (xorshift64*), so failures replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let w = self.next().to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

// Protocol numbers, written out here independently of the server's own.
pub const NBD_OPT_GO: u32 = 7;
pub const NBD_REP_ACK: u32 = 1;
pub const NBD_REP_INFO: u32 = 3;
pub const NBD_CMD_READ: u16 = 0;
pub const NBD_CMD_WRITE: u16 = 1;
pub const NBD_CMD_DISC: u16 = 2;
pub const NBD_CMD_FLUSH: u16 = 3;
pub const NBD_CMD_TRIM: u16 = 4;
pub const NBD_CMD_WRITE_ZEROES: u16 = 6;
pub const EPERM: u32 = 1;
pub const EINVAL: u32 = 22;

/// A raw NBD client speaking just enough protocol to misbehave precisely.
pub struct RawClient {
    pub s: TcpStream,
    pub size: u64,
    pub flags: u16,
}

/// Connects and reads the 18-byte greeting.
pub fn connect_greeted(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greet = [0u8; 18];
    s.read_exact(&mut greet).unwrap();
    assert_eq!(&greet[..8], b"NBDMAGIC");
    assert_eq!(&greet[8..16], b"IHAVEOPT");
    s
}

pub fn option_bytes(code: u32, data: &[u8]) -> Vec<u8> {
    let mut b = b"IHAVEOPT".to_vec();
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

pub fn go_bytes(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    option_bytes(NBD_OPT_GO, &d)
}

/// Reads one option reply: (option, type, data).
pub fn read_option_reply<S: Read>(s: &mut S) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    s.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], &0x0003_e889_0455_65a9u64.to_be_bytes());
    let opt = u32::from_be_bytes(h[8..12].try_into().unwrap());
    let ty = u32::from_be_bytes(h[12..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap()) as usize;
    let mut d = vec![0u8; len];
    s.read_exact(&mut d).unwrap();
    (opt, ty, d)
}

pub fn request_bytes(kind: u16, flags: u16, handle: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&handle.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&len.to_be_bytes());
    b
}

impl RawClient {
    /// Fixed newstyle handshake with NBD_OPT_GO.
    pub fn connect(addr: SocketAddr, export: &str) -> RawClient {
        let mut s = connect_greeted(addr);
        let mut out = 3u32.to_be_bytes().to_vec();
        out.extend_from_slice(&go_bytes(export));
        s.write_all(&out).unwrap();
        let (mut size, mut flags) = (0, 0);
        loop {
            let (_, ty, d) = read_option_reply(&mut s);
            match ty {
                NBD_REP_ACK => break,
                NBD_REP_INFO if d[..2] == [0, 0] => {
                    size = u64::from_be_bytes(d[2..10].try_into().unwrap());
                    flags = u16::from_be_bytes(d[10..12].try_into().unwrap());
                }
                NBD_REP_INFO => {}
                other => panic!("NBD_OPT_GO for {export:?} answered {other:#x}"),
            }
        }
        RawClient { s, size, flags }
    }

    pub fn send(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, len: u32, data: &[u8]) {
        let mut b = request_bytes(kind, flags, handle, offset, len);
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    /// Reads one simple reply; a successful read carries `read_len` bytes.
    pub fn recv(&mut self, read_len: usize) -> (u32, u64, Vec<u8>) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(&h[..4], &0x6744_6698u32.to_be_bytes(), "reply magic");
        let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let handle = u64::from_be_bytes(h[8..16].try_into().unwrap());
        let mut d = vec![0u8; if err == 0 { read_len } else { 0 }];
        self.s.read_exact(&mut d).unwrap();
        (err, handle, d)
    }

    /// One request, one reply; returns (error, data).
    pub fn call(
        &mut self,
        kind: u16,
        flags: u16,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> (u32, Vec<u8>) {
        self.send(kind, flags, 7, offset, len, data);
        let read_len = if kind == NBD_CMD_READ {
            len as usize
        } else {
            0
        };
        let (err, handle, d) = self.recv(read_len);
        assert_eq!(handle, 7);
        (err, d)
    }
}

/// Reads until the server closes; fails if it keeps the connection open
/// past the socket's read timeout.
pub fn expect_closed(s: &mut TcpStream) {
    let mut sink = [0u8; 64 << 10];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("server kept the connection open: {e}"),
        }
    }
}

/// Bytes of a file.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
