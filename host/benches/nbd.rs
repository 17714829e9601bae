//! Ferry's NBD server versus `qemu-nbd` and nbdkit's file plugin, side by
//! side on the same raw LUN file over loopback TCP: fio's nbd engine, 4k
//! random read and write (iodepth 16) and 1M sequential read and write,
//! over a volume holding data. Ferry serves it through a real `ferry serve`
//! attachment, with its connection limits and buffer budget in force; the
//! peers serve the same file while no attachment exists.
//!
//! Every workload runs twice: in plaintext, and over TLS (X.509, a CA and
//! a server certificate made with `openssl`; Ferry with `[nbd] tls = "on"`,
//! qemu-nbd with `--tls-creds`, nbdkit with `--tls=require`), fio reaching
//! each server through an `nbds://` URI.
//!
//! qemu-nbd runs with `--cache=writeback` and nbdkit's file plugin with its
//! default page-cache I/O on 16 threads: like Ferry they acknowledge a
//! write once it is in the page cache and make it durable on FLUSH or FUA
//! (`--cache=none` would add O_DIRECT, a stricter promise Ferry does not
//! make).
//!
//! Beside each 4k workload's IOPS, the server's CPU seconds (its process's
//! user and system time over the fio run, from `/proc/PID/stat`) per
//! million requests fio completed: lower is better.
//!
//! Run: `cargo bench -p ferry --bench nbd` (FERRY_BENCH_RUNS=N, default 3;
//! FERRY_BENCH_SECS=N seconds a fio run, default 4).

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{GIB, MIB, Server};

/// The region fio works on, filled with data before the first run.
const REGION: u64 = GIB;

struct Workload {
    id: &'static str,
    what: &'static str,
    rw: &'static str,
    bs: &'static str,
    iodepth: u32,
    /// Report bandwidth (MiB/s) rather than IOPS.
    bandwidth: bool,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        id: "nbd-randread-4k",
        what: "NBD 4k random read, iodepth 16",
        rw: "randread",
        bs: "4k",
        iodepth: 16,
        bandwidth: false,
    },
    Workload {
        id: "nbd-randwrite-4k",
        what: "NBD 4k random write, iodepth 16",
        rw: "randwrite",
        bs: "4k",
        iodepth: 16,
        bandwidth: false,
    },
    Workload {
        id: "nbd-seqread-1m",
        what: "NBD 1M sequential read, iodepth 16",
        rw: "read",
        bs: "1M",
        iodepth: 16,
        bandwidth: true,
    },
    Workload {
        id: "nbd-seqwrite-1m",
        what: "NBD 1M sequential write, iodepth 16",
        rw: "write",
        bs: "1M",
        iodepth: 16,
        bandwidth: true,
    },
];

/// Plaintext or TLS, and what a TLS client and server need.
struct Mode<'a> {
    /// The server's certificate directory (`ca-cert.pem`,
    /// `server-cert.pem`, `server-key.pem`) and a `HOME` for fio whose
    /// `.pki/libnbd/ca-cert.pem` trusts it; `None` for plaintext.
    tls: Option<(&'a Path, &'a Path)>,
}

impl Mode<'_> {
    /// The row id's infix and the rows' text.
    fn label(&self) -> (&'static str, &'static str) {
        if self.tls.is_some() {
            ("-tls", ", TLS")
        } else {
            ("", "")
        }
    }

    /// `uri` as this mode's clients reach it.
    fn uri(&self, uri: &str) -> String {
        match self.tls {
            Some(_) => uri.replacen("nbd://", "nbds://", 1),
            None => uri.to_owned(),
        }
    }
}

/// One workload's figures from one server.
#[derive(Clone, Default)]
struct Figures {
    /// IOPS or MiB/s, by workload.
    speed: Vec<f64>,
    /// The server's CPU seconds per million requests, by workload.
    cpu: Vec<f64>,
}

/// Runs `w` against the server `pid` serves `uri` from.
fn measure(mode: &Mode, uri: &str, w: &Workload, secs: u64, pid: u32) -> (f64, f64) {
    let home = mode.tls.map(|(_, home)| home);
    let before = support::cpu_seconds(pid);
    let r = support::fio_with_home(home, &mode.uri(uri), w.rw, w.bs, w.iodepth, REGION, secs);
    let cpu = (support::cpu_seconds(pid) - before) / (r.requests.max(1.0) / 1e6);
    let speed = if w.bandwidth {
        r.bw / MIB as f64
    } else {
        r.iops
    };
    (speed, cpu)
}

/// The NBD servers Ferry is measured against.
#[derive(Clone, Copy)]
enum Peer {
    QemuNbd,
    Nbdkit,
}

impl Peer {
    const ALL: [Peer; 2] = [Peer::QemuNbd, Peer::Nbdkit];

    /// The suffix of its rows' ids and its name in their text.
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Peer::QemuNbd => ("", "qemu-nbd"),
            Peer::Nbdkit => ("-nbdkit", "nbdkit file plugin"),
        }
    }

    fn command(self, file: &Path, port: u16, mode: &Mode) -> Command {
        let port = port.to_string();
        match self {
            Peer::QemuNbd => {
                let mut c = Command::new("qemu-nbd");
                c.args(["-f", "raw", "--cache=writeback", "--aio=threads"])
                    .args(["-b", "127.0.0.1", "-p", &port])
                    .args(["-x", "bench", "--persistent", "--shared=4"]);
                if let Some((certs, _)) = mode.tls {
                    c.arg("--object")
                        .arg(format!(
                            "tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir={}",
                            certs.display()
                        ))
                        .args(["--tls-creds", "tls0"]);
                }
                c.arg(file);
                c
            }
            Peer::Nbdkit => {
                let mut c = Command::new("nbdkit");
                c.args(["--foreground", "--exit-with-parent", "--threads=16"])
                    .args(["-i", "127.0.0.1", "-p", &port, "-e", "bench"]);
                if let Some((certs, _)) = mode.tls {
                    c.arg("--tls=require")
                        .arg(format!("--tls-certificates={}", certs.display()));
                }
                c.arg("file").arg(format!("file={}", file.display()));
                c
            }
        }
    }
}

/// Runs every workload against `peer` serving `file`.
/// A peer server, stopped (SIGTERM, then waited for) when dropped, also
/// when a measurement panics.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn peer_pass(peer: Peer, mode: &Mode, file: &Path, secs: u64, out: &mut [Figures]) {
    let port = support::free_port();
    let child = peer
        .command(file, port, mode)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} (Debian packages qemu-utils, nbdkit): {e}",
                peer.label().1
            )
        });
    let pid = child.id();
    let _running = Running(child);
    support::wait_port(port);
    let uri = format!("nbd://127.0.0.1:{port}/bench");
    run_workloads(mode, &uri, secs, pid, out);
}

fn ferry_pass(server: &Server, mode: &Mode, id: &str, secs: u64, out: &mut [Figures]) {
    let (att, uri) = server.attach(id);
    run_workloads(mode, &uri, secs, server.pid(), out);
    server.detach(id, &att);
}

fn run_workloads(mode: &Mode, uri: &str, secs: u64, pid: u32, out: &mut [Figures]) {
    for (i, w) in WORKLOADS.iter().enumerate() {
        let (speed, cpu) = measure(mode, uri, w, secs, pid);
        out[i].speed.push(speed);
        out[i].cpu.push(cpu);
    }
}

fn main() {
    let runs = support::runs(3);
    let secs: u64 = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = support::scratch();
    let pki = support::tls::make_pki(dir.path(), "bench");
    let certs = pki.cert.parent().expect("certificate directory").to_owned();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".pki/libnbd")).expect("fio's HOME");
    std::fs::copy(
        pki.client_dir.join("ca-cert.pem"),
        home.join(".pki/libnbd/ca-cert.pem"),
    )
    .expect("CA for fio");
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[nbd]\ntls = \"on\"\ntls_cert = {:?}\ntls_key = {:?}\n\n\
             [[array]]\nname = \"p1\"\ndriver = \"plain\"\n",
            pki.cert, pki.key
        ),
    )
    .expect("config");
    let server = Server::start_with(&dir.path().join("data"), Some(&config));
    let id = server.create("nbd-bench", "p1", 2 * GIB);
    {
        let (att, uri) = server.attach(&id);
        support::fill(&uri, REGION);
        server.detach(&id, &att);
    }
    let file = server.lun_path("p1", &id);
    assert!(file.is_file(), "LUN file {}", file.display());

    for mode in [
        Mode { tls: None },
        Mode {
            tls: Some((&certs, &home)),
        },
    ] {
        let mut ferry = vec![Figures::default(); WORKLOADS.len()];
        let mut peers = [
            vec![Figures::default(); WORKLOADS.len()],
            vec![Figures::default(); WORKLOADS.len()],
        ];
        for run in 0..runs {
            // Rotate who goes first so no one always gets the warmer cache.
            for turn in 0..3 {
                match (run + turn) % 3 {
                    0 => ferry_pass(&server, &mode, &id, secs, &mut ferry),
                    n => {
                        let p = n - 1;
                        peer_pass(Peer::ALL[p], &mode, &file, secs, &mut peers[p]);
                    }
                }
            }
            eprintln!("nbd{}: run {} of {runs} done", mode.label().0, run + 1);
        }
        let (infix, text) = mode.label();
        for (p, peer) in Peer::ALL.iter().enumerate() {
            let (suffix, name) = peer.label();
            for (i, w) in WORKLOADS.iter().enumerate() {
                let unit = if w.bandwidth { "MiB/s" } else { "IOPS" };
                let id = w.id.replacen("nbd-", &format!("nbd{infix}-"), 1);
                support::report(
                    &format!("{id}{suffix}"),
                    &format!("{}{text}, vs {name}", w.what),
                    unit,
                    support::summary(&ferry[i].speed),
                    Some(support::summary(&peers[p][i].speed)),
                );
            }
            // What a request costs the server: on two cores the CPU is
            // what the client and the server share.
            for (i, w) in WORKLOADS.iter().enumerate().filter(|(_, w)| !w.bandwidth) {
                let id = w.id.replacen("nbd-", &format!("cpu-nbd{infix}-"), 1);
                support::report(
                    &format!("{id}{suffix}"),
                    &format!(
                        "NBD server CPU seconds per million requests, {}{text}, vs {name}",
                        w.what.trim_start_matches("NBD ")
                    ),
                    "s",
                    support::summary(&ferry[i].cpu),
                    Some(support::summary(&peers[p][i].cpu)),
                );
            }
        }
    }
}
