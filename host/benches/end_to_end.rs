//! Whole migrations as a user waits for them, through a real `ferry serve`,
//! against `qemu-img convert` of the same LUN file, side by side in one run.
//!
//! Each round creates a 4 GiB volume, writes 1 GiB to it over NBD
//! (`qemu-io`, then a flush), detaches it, and hard-links its LUN file into
//! the scratch directory, so `qemu-img` reads the very inode (and extents)
//! Ferry migrates even after Ferry's cleanup has removed the LUN's name.
//! Then, in an order that alternates from round to round so neither side
//! always runs second:
//!
//! - Ferry: `POST /v1/volumes/{id}/migrate`, then `GET
//!   /v1/volumes/{id}/migration` until `success`, when the volume is usable
//!   on its destination (the source LUN's removal follows, off the user's
//!   wait). Reported are the wall time the client saw, and the migration's
//!   own `finished_at` minus `started_at` (what the server journaled;
//!   millisecond stamps).
//! - qemu-img: `qemu-img convert -f raw -O raw <LUN file> <target>` and an
//!   fsync of the target, so its copy is as durable as Ferry's at `success`
//!   (Ferry syncs its destination before it reports the copy done).
//!
//! Three routes, each with its rounds (the async one on a server of its
//! own):
//!
//! - host copy: the embedded default arrays, `v2` (vendor-copy) to `p1`
//!   (plain) with `force_host_copy: true`: the host's native copy.
//! - source driver's own move: the embedded default arrays, `v1` to `v2`,
//!   both `vendor-copy`, whose driver moves the volume itself (through
//!   the host's block functions) and deletes its source.
//! - async target path: `support::zoned_config`, `p1` (plain) to `t1`
//!   (takeover, declaring take-over): the volume is attachable on the
//!   destination at once (`migrating_attachable`) and hydrates in the
//!   background until `success`. Reported are request to
//!   `migrating_attachable` and request to `success`, each against the
//!   qemu-img copy of that round.
//!
//! The page cache is put in the same state before every measured run, on
//! both sides: `sync(2)`, then `3` written to `/proc/sys/vm/drop_caches`,
//! so both read their source cold and start with nothing dirty (this works
//! as root on the machines the suite runs on). Dropping the cache also
//! evicts what each side runs on (Ferry's binary, drivers and database,
//! qemu-img's binary), so both pay for reading those back too, as after a
//! cold start; a warm figure of the copy alone is the `host_copy` bench's.
//! Where the write is refused (no root, a read-only `/proc/sys`), the
//! source file is instead read through once after the `sync`, so both start
//! with it fully cached; the output's first line and every row's text say
//! which was done.
//!
//! CPU: Ferry's is the `ferry serve` process's utime + stime (every
//! thread's, from `/proc/PID/stat`, 10 ms ticks) from before the request to
//! after `success`, so it includes answering the client's status polls
//! (every 10 ms, about 100 cheap requests a second; every 1 ms until
//! `migrating_attachable`, to time that instant closely). qemu-img's is its
//! own rusage, from `wait4`. Both are divided by the GiB of data the volume
//! holds (1 GiB: the data moved, not the 4 GiB size). The kernel's
//! writeback threads are charged to neither.
//!
//! Rows (`BENCH` lines, Ferry as `ferry`, qemu-img as `peer`):
//! `e2e-host-copy-success`, `e2e-host-copy-journal`, `e2e-host-copy-cpu`,
//! the same three of `e2e-source-driver`, `e2e-async-attachable`, `e2e-async-success`, `e2e-async-journal`,
//! `e2e-async-cpu`; all but the CPU rows are held to a ratio of at most 1.
//!
//! Run: `cargo bench -p ferry --bench end_to_end` (FERRY_BENCH_RUNS=N
//! rounds a route, default 5; FERRY_BENCH_DIR for the scratch directory).

mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{GIB, Server, fill, report, rfc3339_ms, runs, scratch, summary, zoned_config};

/// Volume size and the data written to it.
const SIZE: u64 = 4 * GIB;
const DATA: u64 = GIB;
/// Status polls while waiting for `success`: often enough that the
/// client's time is within 10 ms of the server's, rarely enough that
/// answering them is a small part of Ferry's CPU figure.
const POLL: Duration = Duration::from_millis(10);
/// Status polls until `migrating_attachable`, which comes within tens of
/// milliseconds.
const POLL_ATTACHABLE: Duration = Duration::from_millis(1);
/// Longest a migration may take before the bench gives up on it.
const TIMEOUT: Duration = Duration::from_secs(300);

/// One way of migrating a volume.
struct Route {
    /// Prefix of the route's row ids.
    id: &'static str,
    /// What the rows say it is.
    label: &'static str,
    source: &'static str,
    destination: &'static str,
    force_host_copy: bool,
    /// The `path` the migration must take, so a route that silently takes
    /// another way fails rather than measures the wrong thing.
    path: &'static str,
    /// Whether the volume becomes attachable before `success`.
    attachable_first: bool,
}

const HOST_COPY: Route = Route {
    id: "e2e-host-copy",
    label: "host copy migration `v2` → `p1` (`force_host_copy`)",
    source: "v2",
    destination: "p1",
    force_host_copy: true,
    path: "host-copy",
    attachable_first: false,
};

const SOURCE_DRIVER: Route = Route {
    id: "e2e-source-driver",
    label: "source driver's own move `v1` → `v2` (vendor-copy)",
    source: "v1",
    destination: "v2",
    force_host_copy: false,
    path: "source-driver",
    attachable_first: false,
};

const ASYNC: Route = Route {
    id: "e2e-async",
    label: "async target path `p1` → `t1` (take-over)",
    source: "p1",
    destination: "t1",
    force_host_copy: false,
    path: "target-driver-async",
    attachable_first: true,
};

/// How the page cache is put in one state before every run.
#[derive(Clone, Copy, PartialEq)]
enum Cache {
    /// Synced and dropped: both sides read their source from the disk.
    Dropped,
    /// Synced, then the source read through: both read it from memory.
    Warmed,
}

impl Cache {
    /// Drops the caches once to learn whether this machine lets us.
    fn detect() -> Cache {
        match drop_caches() {
            Ok(()) => Cache::Dropped,
            Err(e) => {
                println!("cannot drop the page cache ({e}): the source is cached before each run");
                Cache::Warmed
            }
        }
    }

    fn words(self) -> &'static str {
        match self {
            Cache::Dropped => "page cache synced and dropped before each run",
            Cache::Warmed => "page cache synced and the source cached before each run",
        }
    }

    /// Puts the cache in this state, with `source` the file both sides read.
    fn settle(self, source: &Path) {
        // SAFETY: sync(2) takes nothing and cannot fail.
        unsafe { libc::sync() };
        match self {
            Cache::Dropped => drop_caches().expect("dropping the page cache worked before"),
            Cache::Warmed => {
                let mut f = File::open(source).expect("the source LUN file");
                std::io::copy(&mut f, &mut std::io::sink()).expect("reading the source");
            }
        }
    }
}

fn drop_caches() -> std::io::Result<()> {
    std::fs::write("/proc/sys/vm/drop_caches", "3")
}

/// What one Ferry migration measured.
struct FerryRun {
    /// Request to `success` on the client's clock, ms.
    wall: f64,
    /// `finished_at` minus `started_at`, ms.
    journal: f64,
    /// Request to `migrating_attachable` on the client's clock, ms.
    attachable: Option<f64>,
    /// CPU seconds of `ferry serve`.
    cpu: f64,
}

/// What one qemu-img copy measured.
struct PeerRun {
    /// Start of `qemu-img convert` to the end of the target's fsync, ms.
    wall: f64,
    /// CPU seconds of qemu-img.
    cpu: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Migrates `id` as `route` says and follows it to `success`.
fn migrate(server: &Server, id: &str, route: &Route) -> FerryRun {
    let cpu = server.cpu_seconds();
    let t = Instant::now();
    let (s, v) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": route.destination, "force_host_copy": route.force_host_copy})),
    );
    assert_eq!(s, 202, "migrate {id}: {v}");
    let mut attachable = None;
    let view = loop {
        let (s, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        assert_eq!(s, 200, "migration of {id}: {m}");
        match m["migration_status"].as_str() {
            Some("success") => break m,
            Some("migrating_attachable") if attachable.is_none() => {
                attachable = Some(ms(t.elapsed()));
            }
            Some(end @ ("error" | "aborted")) => panic!("migration of {id} ended {end}: {m}"),
            _ => {}
        }
        assert!(
            t.elapsed() < TIMEOUT,
            "migration of {id} still running: {m}"
        );
        let waiting_for_attachable = route.attachable_first && attachable.is_none();
        std::thread::sleep(if waiting_for_attachable {
            POLL_ATTACHABLE
        } else {
            POLL
        });
    };
    let wall = ms(t.elapsed());
    let cpu = server.cpu_seconds() - cpu;
    assert_eq!(
        view["path"].as_str(),
        Some(route.path),
        "migration of {id} took another path: {view}"
    );
    assert!(
        !route.attachable_first || attachable.is_some(),
        "migration of {id} never showed `migrating_attachable`: {view}"
    );
    let stamp = |k: &str| rfc3339_ms(&view[k]).unwrap_or_else(|| panic!("{k} in {view}"));
    FerryRun {
        wall,
        journal: stamp("finished_at") - stamp("started_at"),
        attachable,
        cpu,
    }
}

/// `qemu-img convert` of `source` into a new `target`, then its fsync.
fn qemu_img(source: &Path, target: &Path) -> PeerRun {
    let _ = std::fs::remove_file(target);
    let t = Instant::now();
    let child = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(source)
        .arg(target)
        .spawn()
        .expect("qemu-img (Debian package qemu-utils; `cargo xtask bench` installs it)");
    let cpu = wait_with_cpu(child);
    File::open(target)
        .expect("qemu-img's target")
        .sync_all()
        .expect("fsync of qemu-img's target");
    PeerRun {
        wall: ms(t.elapsed()),
        cpu,
    }
}

/// Waits for a child that must succeed; its CPU seconds (user + system).
fn wait_with_cpu(child: Child) -> f64 {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is a plain C struct, valid all zero.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, writing into two locals that
        // outlive the call; the child is reaped here, and its `Child` is
        // never waited on again (dropping a `Child` does not wait).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "wait4: {e}");
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "qemu-img convert failed (wait status {status:#x})"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A volume of `SIZE` on `array` holding `DATA` written over NBD, detached.
fn volume_with_data(server: &Server, name: &str, array: &str) -> String {
    let id = server.create(name, array, SIZE);
    let (att, uri) = server.attach(&id);
    fill(&uri, DATA);
    server.detach(&id, &att);
    id
}

/// Every round's figures of one route.
#[derive(Default)]
struct Samples {
    ferry_wall: Vec<f64>,
    ferry_journal: Vec<f64>,
    ferry_attachable: Vec<f64>,
    ferry_cpu: Vec<f64>,
    peer_wall: Vec<f64>,
    peer_cpu: Vec<f64>,
}

fn rounds(server: &Server, scratch: &Path, route: &Route, n: usize, cache: Cache) -> Samples {
    let mut s = Samples::default();
    let link = scratch.join("source.raw");
    let target = scratch.join("qemu-target.raw");
    for round in 0..n {
        let id = volume_with_data(server, &format!("{}-{round}", route.id), route.source);
        let _ = std::fs::remove_file(&link);
        std::fs::hard_link(server.lun_path(route.source, &id), &link)
            .expect("a hard link to the volume's LUN file");
        let ferry_first = round % 2 == 0;
        let mut line = String::new();
        for ferry in [ferry_first, !ferry_first] {
            cache.settle(&link);
            if ferry {
                let r = migrate(server, &id, route);
                line.push_str(&format!(" ferry {:.0} ms", r.wall));
                if let Some(a) = r.attachable {
                    line.push_str(&format!(" (attachable {a:.0} ms)"));
                    s.ferry_attachable.push(a);
                }
                line.push_str(&format!(
                    ", journal {:.0} ms, {:.2} CPU s;",
                    r.journal, r.cpu
                ));
                s.ferry_wall.push(r.wall);
                s.ferry_journal.push(r.journal);
                s.ferry_cpu.push(r.cpu / (DATA as f64 / GIB as f64));
            } else {
                let r = qemu_img(&link, &target);
                line.push_str(&format!(" qemu-img {:.0} ms, {:.2} CPU s;", r.wall, r.cpu));
                s.peer_wall.push(r.wall);
                s.peer_cpu.push(r.cpu / (DATA as f64 / GIB as f64));
            }
        }
        println!("  {} round {}:{line}", route.id, round + 1);
        let (st, v) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
        assert!(st < 300, "delete {id}: {v}");
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_file(&target);
    }
    s
}

/// The route's rows: request to `migrating_attachable` (when it has one),
/// request to `success`, the journal's own times, and CPU per GiB.
fn report_route(route: &Route, s: &Samples, cache: Cache) {
    let what = |measured: &str| {
        format!(
            "{}, {measured}; {} GiB volume holding {} GiB, {}",
            route.label,
            SIZE / GIB,
            DATA / GIB,
            cache.words()
        )
    };
    let qemu = "vs `qemu-img convert` + fsync";
    let peer = Some(summary(&s.peer_wall));
    if route.attachable_first {
        let attachable = summary(&s.ferry_attachable);
        let measured = format!("request to `migrating_attachable` {qemu}");
        report(
            &format!("{}-attachable", route.id),
            &what(&measured),
            "ms",
            attachable,
            peer,
        );
    }
    for (row, samples, measured) in [
        (
            "success",
            &s.ferry_wall,
            "request to `success` as the client saw it",
        ),
        (
            "journal",
            &s.ferry_journal,
            "the migration's `started_at` to `finished_at`",
        ),
    ] {
        let measured = format!("{measured} {qemu}");
        report(
            &format!("{}-{row}", route.id),
            &what(&measured),
            "ms",
            summary(samples),
            peer,
        );
    }
    report(
        &format!("{}-cpu", route.id),
        &what("CPU seconds per GiB of data, `ferry serve` vs `qemu-img convert`"),
        "s/GiB",
        summary(&s.ferry_cpu),
        Some(summary(&s.peer_cpu)),
    );
}

fn main() {
    let n = runs(5);
    let dir = scratch();
    let cache = Cache::detect();
    println!(
        "whole migrations, {} GiB volume holding {} GiB, vs qemu-img convert + fsync, {n} rounds a route, {}",
        SIZE / GIB,
        DATA / GIB,
        cache.words()
    );
    // One server a route, each stopped before the next starts so neither
    // competes with the other's measurements.
    let (samples, source_driver) = {
        let server = Server::start(&dir.path().join("default"));
        (
            rounds(&server, dir.path(), &HOST_COPY, n, cache),
            rounds(&server, dir.path(), &SOURCE_DRIVER, n, cache),
        )
    };
    report_route(&HOST_COPY, &samples, cache);
    report_route(&SOURCE_DRIVER, &source_driver, cache);
    let samples = {
        let zoned = dir.path().join("zoned");
        std::fs::create_dir_all(&zoned).expect("a directory for the zoned server");
        let server = Server::start_with(&zoned.join("data"), Some(&zoned_config(&zoned)));
        rounds(&server, dir.path(), &ASYNC, n, cache)
    };
    report_route(&ASYNC, &samples, cache);
}
