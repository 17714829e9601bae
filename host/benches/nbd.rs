//! Ferry's NBD server versus `qemu-nbd` and nbdkit's file plugin, side by
//! side on the same raw LUN file over loopback TCP: fio's nbd engine, 4k
//! random read and write (iodepth 16) and 1M sequential read and write,
//! over a volume holding data. Ferry serves it through a real `ferry serve`
//! attachment, with its connection limits and buffer budget in force; the
//! peers serve the same file while no attachment exists.
//!
//! qemu-nbd runs with `--cache=writeback` and nbdkit's file plugin with its
//! default page-cache I/O on 16 threads: like Ferry they acknowledge a
//! write once it is in the page cache and make it durable on FLUSH or FUA
//! (`--cache=none` would add O_DIRECT, a stricter promise Ferry does not
//! make).
//!
//! Run: `cargo bench -p ferry --bench nbd` (FERRY_BENCH_RUNS=N, default 3;
//! FERRY_BENCH_SECS=N seconds a fio run, default 4).

#[path = "support/mod.rs"]
mod support;

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

fn measure(uri: &str, w: &Workload, secs: u64) -> f64 {
    let r = support::fio(uri, w.rw, w.bs, w.iodepth, REGION, secs);
    if w.bandwidth {
        r.bw / MIB as f64
    } else {
        r.iops
    }
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

    fn command(self, file: &std::path::Path, port: u16) -> Command {
        let port = port.to_string();
        match self {
            Peer::QemuNbd => {
                let mut c = Command::new("qemu-nbd");
                c.args(["-f", "raw", "--cache=writeback", "--aio=threads"])
                    .args(["-b", "127.0.0.1", "-p", &port])
                    .args(["-x", "bench", "--persistent", "--shared=4"])
                    .arg(file);
                c
            }
            Peer::Nbdkit => {
                let mut c = Command::new("nbdkit");
                c.args(["--foreground", "--exit-with-parent", "--threads=16"])
                    .args(["-i", "127.0.0.1", "-p", &port, "-e", "bench"])
                    .arg("file")
                    .arg(format!("file={}", file.display()));
                c
            }
        }
    }
}

/// Runs every workload against `peer` serving `file`.
fn peer_pass(peer: Peer, file: &std::path::Path, secs: u64, out: &mut [Vec<f64>]) {
    let port = support::free_port();
    let mut child = peer
        .command(file, port)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} (Debian packages qemu-utils, nbdkit): {e}",
                peer.label().1
            )
        });
    support::wait_port(port);
    let uri = format!("nbd://127.0.0.1:{port}/bench");
    for (i, w) in WORKLOADS.iter().enumerate() {
        out[i].push(measure(&uri, w, secs));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

fn ferry_pass(server: &Server, id: &str, secs: u64, out: &mut [Vec<f64>]) {
    let (att, uri) = server.attach(id);
    for (i, w) in WORKLOADS.iter().enumerate() {
        out[i].push(measure(&uri, w, secs));
    }
    server.detach(id, &att);
}

fn main() {
    let runs = support::runs(3);
    let secs: u64 = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = support::scratch();
    let server = Server::start(&dir.path().join("data"));
    let id = server.create("nbd-bench", "p1", 2 * GIB);
    {
        let (att, uri) = server.attach(&id);
        support::fill(&uri, REGION);
        server.detach(&id, &att);
    }
    let file = server.lun_path("p1", &id);
    assert!(file.is_file(), "LUN file {}", file.display());

    let mut ferry = vec![Vec::new(); WORKLOADS.len()];
    let mut peers = [
        vec![Vec::new(); WORKLOADS.len()],
        vec![Vec::new(); WORKLOADS.len()],
    ];
    for run in 0..runs {
        // Rotate who goes first so no one always gets the warmer cache.
        for turn in 0..3 {
            match (run + turn) % 3 {
                0 => ferry_pass(&server, &id, secs, &mut ferry),
                n => {
                    let p = n - 1;
                    peer_pass(Peer::ALL[p], &file, secs, &mut peers[p]);
                }
            }
        }
        eprintln!("nbd: run {} of {runs} done", run + 1);
    }
    for (p, peer) in Peer::ALL.iter().enumerate() {
        let (suffix, name) = peer.label();
        for (i, w) in WORKLOADS.iter().enumerate() {
            let unit = if w.bandwidth { "MiB/s" } else { "IOPS" };
            support::report(
                &format!("{}{suffix}", w.id),
                &format!("{}, vs {name}", w.what),
                unit,
                support::summary(&ferry[i]),
                Some(support::summary(&peers[p][i])),
            );
        }
    }
}
