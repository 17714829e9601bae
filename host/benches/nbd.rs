//! Ferry's NBD server versus `qemu-nbd`, side by side on the same raw LUN
//! file over loopback TCP: fio's nbd engine, 4k random read and write
//! (iodepth 16) and 1M sequential read and write, over a volume holding
//! data. Ferry serves it through a real `ferry serve` attachment; qemu-nbd
//! serves the same file while no attachment exists.
//!
//! qemu-nbd runs with `--cache=writeback`: like Ferry it acknowledges a
//! write once it is in the page cache and makes it durable on FLUSH or FUA
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

/// Runs every workload against `qemu-nbd` serving `file`.
fn peer_pass(file: &std::path::Path, secs: u64, out: &mut [Vec<f64>]) {
    let port = support::free_port();
    let mut child = Command::new("qemu-nbd")
        .args(["-f", "raw", "--cache=writeback", "--aio=threads"])
        .args(["-b", "127.0.0.1", "-p", &port.to_string()])
        .args(["-x", "bench", "--persistent", "--shared=4"])
        .arg(file)
        .stdout(Stdio::null())
        .spawn()
        .expect("qemu-nbd (Debian package qemu-utils)");
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
    let mut peer = vec![Vec::new(); WORKLOADS.len()];
    for run in 0..runs {
        // Alternate who goes first so neither always gets the warmer cache.
        if run % 2 == 0 {
            ferry_pass(&server, &id, secs, &mut ferry);
            peer_pass(&file, secs, &mut peer);
        } else {
            peer_pass(&file, secs, &mut peer);
            ferry_pass(&server, &id, secs, &mut ferry);
        }
        eprintln!("nbd: run {} of {runs} done", run + 1);
    }
    for (i, w) in WORKLOADS.iter().enumerate() {
        let unit = if w.bandwidth { "MiB/s" } else { "IOPS" };
        support::report(
            w.id,
            w.what,
            unit,
            support::summary(&ferry[i]),
            Some(support::summary(&peer[i])),
        );
    }
}
