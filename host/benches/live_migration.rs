//! Live migration of an attached volume, Ferry against QEMU, side by side in
//! one run.
//!
//! Both sides serve a 4 GiB raw volume holding 1 GiB over NBD on loopback
//! and move it, while a server writes to it, to another file on the same
//! file system without the client noticing anything but latency:
//!
//! - Ferry: a real `ferry serve` with two `plain` arrays, `p1` and `p2`; the
//!   volume is created on `p1`, attached (its NBD URI), and moved with
//!   `POST /v1/volumes/{id}/migrate {"array": "p2"}`, followed through
//!   `GET /v1/volumes/{id}/migration` until it ends. The switch is the
//!   `migration` event whose `to` is `switched` (`GET /v1/events`).
//! - QEMU: `qemu-storage-daemon` exports a raw file over NBD; QMP adds a raw
//!   target node, `blockdev-mirror` (`sync: full`, `copy-mode:
//!   write-blocking`, so the mirror converges under any write rate, as a
//!   live move must) copies it, and `job-complete` on `BLOCK_JOB_READY`
//!   pivots the export onto the target; `BLOCK_JOB_COMPLETED` ends it.
//!   The pivot drains the node, so its stall falls inside the window.
//!
//! The client is the same on both sides: fio's nbd engine, 4k random
//! writes at iodepth 16 over the 1 GiB that holds data (so the data moved
//! stays 1 GiB on both sides, however fast each lets the writer go), with
//! every write's completion time and latency logged
//! (`--write_lat_log`, `--log_avg_msec=0`, `--log_unix_epoch=1`). fio's
//! clock, Ferry's event and migration stamps and QEMU's QMP event stamps
//! are all the machine's wall clock in milliseconds (QMP's in
//! microseconds), so one time line holds them all. Both servers acknowledge
//! a write once it is in the page cache (QEMU's `file` driver with its
//! default writeback cache, like the `nbd` bench's qemu-nbd), and every
//! round starts after `sync`, so neither pays for the other's writeback.
//!
//! One fio run a round and side: 2 s of warm-up, 5 s idle (the baseline),
//! then the migration, then 1 s more. What is reported, Ferry as `ferry`,
//! QEMU as `peer`:
//!
//! 1. The switch stall, in ms: (a) the longest completion latency of a
//!    write alive within 1 s of the switch (Ferry's `switched` event; QEMU's
//!    `BLOCK_JOB_COMPLETED`, stamped just after the pivot) when both sides
//!    give that instant in every round, otherwise of any write alive during
//!    the migration window (stricter; the row says which); (b) the longest
//!    time with no write completing that overlaps the migration window
//!    (Ferry: migrate request to `finished_at`; QEMU: `blockdev-mirror` to
//!    `BLOCK_JOB_COMPLETED`).
//! 2. I/O during the migration: IOPS and p99 completion latency over the
//!    migration window divided by the same over the idle baseline, each
//!    side against itself.
//! 3. Time to done: Ferry from the migrate request to the migration's
//!    `finished_at` (status `success`); QEMU from `blockdev-mirror` to
//!    `BLOCK_JOB_READY` plus `job-complete` to `BLOCK_JOB_COMPLETED`.
//!
//! The bench fails, saying so, when Ferry refuses to migrate the attached
//! volume, when a migration ends other than in success, or when fio sees an
//! I/O error.
//!
//! Run: `cargo bench -p ferry --bench live_migration` (FERRY_BENCH_RUNS=N,
//! default 5; FERRY_BENCH_PEER_ONLY=1 measures QEMU alone and prints its
//! figures without `BENCH` rows, which need both sides).

#[path = "support/mod.rs"]
mod support;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{GIB, Server};

/// The volume's size and the data it holds (the region fio writes to).
const VOLUME: u64 = 4 * GIB;
const DATA: u64 = GIB;
/// fio's connection and first writes, left out of every figure.
const WARMUP: Duration = Duration::from_secs(2);
/// The idle baseline, just before the migration starts.
const IDLE: Duration = Duration::from_secs(5);
/// fio runs on after the migration, so a stall at its very end is seen
/// ending (a gap is measured up to the next completion).
const TAIL: Duration = Duration::from_secs(1);
/// How far from the switch a write may be alive to count in (a).
const NEAR_SWITCH_MS: f64 = 1000.0;
/// The longest a migration may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(600);

/// Now on the wall clock, in ms since the epoch: the time line fio's log,
/// Ferry's stamps and QMP's events share.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_secs_f64()
        * 1e3
}

/// Lets the writeback of the fill finish before fio starts: on two cores
/// the kernel writing a gigabyte back during the idle baseline would make
/// the baseline, not the migration, the slow part.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
}

/// One write, as fio logged it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// When it completed (wall clock, ms; fio logs whole milliseconds).
    done: f64,
    /// Its completion latency, submission to completion (ms).
    clat: f64,
}

impl Sample {
    fn issued(&self) -> f64 {
        self.done - self.clat
    }
}

/// A time-based fio run in the background, logging every write.
struct Fio {
    child: Option<Child>,
    dir: PathBuf,
    name: String,
}

impl Fio {
    /// 4k random writes at iodepth 16 over the data region of `uri`, until
    /// stopped.
    fn start(uri: &str, dir: &Path, name: &str) -> Fio {
        let prefix = dir.join(name);
        let err = File::create(dir.join(format!("{name}.err"))).expect("fio's stderr file");
        let child = Command::new("fio")
            .args([
                &format!("--name={name}"),
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=16",
                &format!("--size={DATA}"),
                "--time_based",
                // Longer than any round; `stop` ends it with SIGINT, on
                // which fio still writes its logs and report.
                &format!("--runtime={}", LIMIT.as_secs() * 2),
                &format!("--write_lat_log={}", prefix.display()),
                "--log_avg_msec=0",
                "--log_unix_epoch=1",
                "--output-format=json",
                &format!("--output={}.json", prefix.display()),
            ])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("fio (Debian package fio)");
        Fio {
            child: Some(child),
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.err", self.name))).unwrap_or_default()
    }

    /// Stops fio and returns every write it logged, by completion time.
    /// Panics when fio stopped on its own (an I/O error ends the job) or
    /// reports an error.
    fn stop(mut self) -> Vec<Sample> {
        let mut child = self.child.take().expect("fio runs");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "fio stopped by itself ({status}) while the volume was served: {}",
                self.stderr()
            );
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("fio did not stop within 60 s of SIGINT");
                }
            }
        }
        let report = std::fs::read_to_string(self.dir.join(format!("{}.json", self.name)))
            .expect("fio's JSON report");
        // fio writes notes ("connected to NBD server") before the document.
        let doc = report.find('{').map_or("", |i| &report[i..]);
        let v: Value = serde_json::from_str(doc)
            .unwrap_or_else(|e| panic!("fio's JSON report does not parse ({e}): {report}"));
        let error = v["jobs"][0]["error"].as_i64();
        assert_eq!(
            error,
            Some(0),
            "fio reports an I/O error while the volume was served: {}",
            self.stderr()
        );
        let mut samples = read_clat_log(&self.dir, &self.name);
        // Every write fio counted is in the log (at most the queue's depth
        // apart, for writes caught by the stop), or a figure would miss
        // some.
        if let Some(total) = v["jobs"][0]["write"]["total_ios"].as_u64() {
            assert!(
                total.abs_diff(samples.len() as u64) <= 16,
                "fio counted {total} writes but logged {}",
                samples.len()
            );
        }
        samples.sort_by(|a, b| a.done.total_cmp(&b.done));
        samples
    }
}

impl Drop for Fio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// fio's completion-latency log, `<name>_clat.<job>.log`: lines of `time
/// (ms, here since the epoch), latency (ns), direction, block size,
/// offset`.
fn read_clat_log(dir: &Path, name: &str) -> Vec<Sample> {
    let stem = format!("{name}_clat.");
    let path = std::fs::read_dir(dir)
        .expect("scratch dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&stem) && n.ends_with(".log"))
        })
        .unwrap_or_else(|| panic!("fio wrote no {stem}*.log in {}", dir.display()));
    let file = File::open(&path).expect("fio's latency log");
    let mut samples = Vec::new();
    let mut bad = 0usize;
    for line in BufReader::new(file).lines() {
        let line = line.expect("reading fio's latency log");
        let mut fields = line.split(',').map(str::trim);
        let time = fields.next().and_then(|t| t.parse::<u64>().ok());
        let clat = fields.next().and_then(|t| t.parse::<u64>().ok());
        match (time, clat) {
            (Some(t), Some(ns)) => samples.push(Sample {
                done: t as f64,
                clat: ns as f64 / 1e6,
            }),
            _ => bad += 1,
        }
    }
    assert!(
        !samples.is_empty() && bad <= samples.len() / 1000,
        "{}: {} entries, {bad} lines that are not `time, latency, ...`",
        path.display(),
        samples.len()
    );
    samples
}

/// IOPS and p99 completion latency (ms) of the writes completed in
/// `[from, to)`.
fn rate(samples: &[Sample], from: f64, to: f64) -> Option<(f64, f64)> {
    let lat: Vec<f64> = samples
        .iter()
        .filter(|s| s.done >= from && s.done < to)
        .map(|s| s.clat)
        .collect();
    if lat.is_empty() || to <= from {
        return None;
    }
    Some((
        lat.len() as f64 * 1e3 / (to - from),
        support::quantile(&lat, 0.99),
    ))
}

/// The longest completion latency of a write alive at some time in
/// `[from, to]`: one stalled across the switch counts even if it completes
/// long after.
fn longest_latency(samples: &[Sample], from: f64, to: f64) -> f64 {
    samples
        .iter()
        .filter(|s| s.done >= from && s.issued() <= to)
        .map(|s| s.clat)
        .fold(0.0, f64::max)
}

/// The longest time without a completion that overlaps `[from, to]`, whole
/// (a pause that began before the window or ends after it counts in full),
/// and when it began. `samples` are sorted by completion.
fn longest_gap(samples: &[Sample], from: f64, to: f64) -> (f64, f64) {
    let mut longest: (f64, f64) = (0.0, from);
    let mut consider = |len: f64, at: f64| {
        if len > longest.0 {
            longest = (len, at);
        }
    };
    for pair in samples.windows(2) {
        let (a, b) = (pair[0].done, pair[1].done);
        if a < to && b > from {
            consider(b - a, a);
        }
    }
    // fio not yet writing at the window's start, or gone quiet before its
    // end: the silence up to the edge.
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        consider(first.done - from, from);
        consider(to - last.done, last.done);
    }
    longest
}

/// What one round measured on one side.
#[derive(Debug, Clone, Copy)]
struct Measured {
    idle_iops: f64,
    idle_p99: f64,
    live_iops: f64,
    live_p99: f64,
    /// (a) over the whole migration window.
    lat_window: f64,
    /// (a) within `NEAR_SWITCH_MS` of the switch, when its time is known.
    lat_switch: Option<f64>,
    /// (b), and when it began, ms after the migration started.
    gap: f64,
    gap_after: f64,
    /// The switch, ms after the migration started.
    switch_after: Option<f64>,
    /// Time to done (s).
    done: f64,
    /// The migration window (ms).
    window: f64,
}

/// The figures of one round from fio's log: idle baseline `idle`, migration
/// window `window` (wall clock ms), the switch's time if known.
fn analyse(
    side: &str,
    samples: &[Sample],
    idle: (f64, f64),
    window: (f64, f64),
    switch: Option<f64>,
    done: f64,
) -> Measured {
    let (idle_iops, idle_p99) = rate(samples, idle.0, idle.1)
        .unwrap_or_else(|| panic!("{side}: fio logged no write in the idle baseline"));
    let lat_window = longest_latency(samples, window.0, window.1);
    // A migration too short to hold a completion: its rate is nil and its
    // p99 no better than its worst write.
    let (live_iops, live_p99) = rate(samples, window.0, window.1).unwrap_or((0.0, lat_window));
    let (gap, gap_at) = longest_gap(samples, window.0, window.1);
    Measured {
        idle_iops,
        idle_p99,
        live_iops,
        live_p99,
        lat_window,
        lat_switch: switch
            .map(|t| longest_latency(samples, t - NEAR_SWITCH_MS, t + NEAR_SWITCH_MS)),
        gap,
        gap_after: gap_at - window.0,
        switch_after: switch.map(|t| t - window.0),
        done,
        window: window.1 - window.0,
    }
}

fn print_round(side: &str, round: usize, m: &Measured) {
    let near = m
        .lat_switch
        .map_or("-".to_owned(), |l| format!("{l:.1} ms"));
    let switch = m
        .switch_after
        .map_or("unknown".to_owned(), |s| format!("+{s:.0} ms"));
    println!(
        "  {side:<5} round {round}: idle {:>6.0} IOPS p99 {:>5.2} ms | migrating {:>6.0} IOPS p99 {:>5.2} ms | \
         longest latency {near} near the switch, {:.1} ms in the window | longest gap {:.0} ms \
         from +{:.0} ms | switch {switch} | done {:.2} s (window {:.0} ms)",
        m.idle_iops,
        m.idle_p99,
        m.live_iops,
        m.live_p99,
        m.lat_window,
        m.gap,
        m.gap_after,
        m.done,
        m.window
    );
}

/// A `ferry serve` with two `plain` arrays: with no zoning between them,
/// moving the volume is the host's own work.
fn start_ferry(dir: &Path) -> Server {
    let config = dir.join("ferry.toml");
    // Capacities the scratch file system holds: no warning at start.
    std::fs::write(
        &config,
        "[[array]]\nname = \"p1\"\ndriver = \"plain\"\ncapacity_bytes = 17179869184\n\n\
         [[array]]\nname = \"p2\"\ndriver = \"plain\"\ncapacity_bytes = 17179869184\n",
    )
    .expect("config");
    Server::start_with(&dir.join("data"), Some(&config))
}

/// An RFC 3339 time as ms since the epoch.
fn rfc3339_ms(v: &Value) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(v.as_str()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1e3)
}

/// Polls the migration until it ends; its last view and when the poll saw
/// the end. Slow polls: the API's work competes with the I/O on two cores,
/// and the end's exact time is the record's `finished_at`.
fn wait_end(server: &Server, id: &str) -> (Value, f64) {
    let started = Instant::now();
    loop {
        let (status, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        assert_eq!(status, 200, "migration status of {id}: {m}");
        if matches!(
            m["migration_status"].as_str(),
            Some("success" | "error" | "aborted")
        ) {
            return (m, now_ms());
        }
        assert!(
            started.elapsed() < LIMIT,
            "Ferry's migration did not end within {LIMIT:?}: {m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The time of the migration's `switched` event, if Ferry reported one.
fn switch_time(server: &Server, id: &str, migration: Option<&str>) -> Option<f64> {
    let mut after = 0u64;
    loop {
        let (status, page) = server.call(
            "GET",
            &format!("/v1/events?follow=false&after={after}&limit=1000"),
            None,
        );
        assert_eq!(status, 200, "events: {page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            let ours = match migration {
                Some(m) => e["migration"].as_str() == Some(m),
                None => e["volume"].as_str() == Some(id),
            };
            if ours && e["kind"] == "migration" && e["to"] == "switched" {
                return rfc3339_ms(&e["at"]);
            }
        }
        match events.last().and_then(|e| e["seq"].as_u64()) {
            Some(seq) if events.len() == 1000 => after = seq,
            _ => return None,
        }
    }
}

/// One round on Ferry: a fresh volume on `p1`, attached, filled, written to
/// by fio while it moves to `p2`.
fn ferry_round(server: &Server, dir: &Path, round: usize) -> Measured {
    let id = server.create(&format!("live-{round}"), "p1", VOLUME);
    let (att, uri) = server.attach(&id);
    support::fill(&uri, DATA);
    settle();
    let fio = Fio::start(&uri, dir, &format!("ferry-{round}"));
    std::thread::sleep(WARMUP);
    let idle_from = now_ms();
    std::thread::sleep(IDLE);
    let request = now_ms();
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "p2"})),
    );
    if status != 202 {
        // What fio logged while the volume was idle still shows the client
        // side works; then the reason.
        let samples = fio.stop();
        let (iops, p99) = rate(&samples, idle_from, request).unwrap_or((0.0, 0.0));
        println!("  ferry round {round}: idle {iops:.0} IOPS p99 {p99:.2} ms (then refused)");
        panic!(
            "Ferry refused to migrate the attached volume {id} ({status} {}): {}; \
             this bench needs live migration of in-use volumes",
            body["error"]["code"].as_str().unwrap_or("?"),
            body["error"]["message"]
                .as_str()
                .map_or(body.to_string(), str::to_owned)
        );
    }
    let migration = body["migration_id"].as_str().map(str::to_owned);
    let (view, seen) = wait_end(server, &id);
    assert_eq!(
        view["migration_status"], "success",
        "Ferry's live migration did not succeed: {view}"
    );
    // The record's own stamp; the poll's when it cannot be read.
    let end = rfc3339_ms(&view["finished_at"])
        .filter(|t| *t >= request && *t <= seen)
        .unwrap_or(seen);
    std::thread::sleep(TAIL);
    let samples = fio.stop();
    let switch = switch_time(server, &id, migration.as_deref());
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        v["array"], "p2",
        "the volume is not on p2 after success: {v}"
    );
    server.detach(&id, &att);
    let (s, v) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert!(s < 300, "delete {id}: {v}");
    for f in ["clat", "lat", "slat"] {
        let _ = std::fs::remove_file(dir.join(format!("ferry-{round}_{f}.1.log")));
    }
    analyse(
        "Ferry",
        &samples,
        (idle_from, request),
        (request, end),
        switch,
        (end - request) / 1e3,
    )
}

/// A QMP connection: commands and their answers, events kept as they come.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "QMP socket {}: {e}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let writer = stream.try_clone().expect("QMP socket");
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
        };
        let greeting = qmp.read(Instant::now() + Duration::from_secs(20));
        assert!(
            greeting.get("QMP").is_some(),
            "not a QMP greeting: {greeting}"
        );
        qmp.execute("qmp_capabilities", json!({}))
            .unwrap_or_else(|e| panic!("qmp_capabilities: {e}"));
        qmp
    }

    /// The next message; panics past `deadline`.
    fn read(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "QMP: no message in time");
        self.reader
            .get_ref()
            .set_read_timeout(Some(left))
            .expect("QMP read timeout");
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("QMP: qemu-storage-daemon closed its monitor"),
            Ok(_) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("QMP sent something not JSON ({e}): {line}")),
            Err(e) => panic!("QMP: no message in time ({e})"),
        }
    }

    /// Runs a command; its `return`, or its error's description.
    fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, String> {
        let mut msg = json!({"execute": command, "arguments": arguments}).to_string();
        msg.push('\n');
        self.writer
            .write_all(msg.as_bytes())
            .unwrap_or_else(|e| panic!("QMP {command}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.read(deadline);
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(e.to_string());
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }

    /// The first event called `name` not yet taken, waiting up to `limit`.
    fn wait_event(&mut self, name: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i);
            }
            let v = self.read(deadline);
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}

/// A QMP event's stamp (qemu's wall clock) in ms since the epoch.
fn event_ms(e: &Value) -> f64 {
    let t = &e["timestamp"];
    match (t["seconds"].as_f64(), t["microseconds"].as_f64()) {
        (Some(s), Some(us)) => s * 1e3 + us / 1e3,
        _ => panic!("QMP event without a timestamp: {e}"),
    }
}

/// A `qemu-storage-daemon` exporting a raw file over NBD on a loopback
/// port, with its QMP monitor on a unix socket; stopped when dropped.
struct Qsd {
    qmp: Qmp,
    port: u16,
    _daemon: Stopper,
}

impl Qsd {
    fn start(dir: &Path, src: &Path, round: usize) -> Qsd {
        let port = support::free_port();
        let sock = dir.join(format!("qmp-{round}.sock"));
        // Option values separate on commas; a path holding one would be
        // read as more options.
        assert!(
            !src.to_string_lossy().contains(',') && !sock.to_string_lossy().contains(','),
            "the scratch dir's path holds a comma: {}",
            dir.display()
        );
        let log = File::create(dir.join(format!("qsd-{round}.log"))).expect("qsd log");
        let child = Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "file,node-name=src-file,filename={}",
                src.display()
            ))
            .args(["--blockdev", "raw,node-name=src,file=src-file"])
            .arg("--nbd-server")
            .arg(format!(
                "addr.type=inet,addr.host=127.0.0.1,addr.port={port}"
            ))
            .args([
                "--export",
                "type=nbd,id=exp0,node-name=src,name=bench,writable=on",
            ])
            .arg("--chardev")
            .arg(format!(
                "socket,id=mon0,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["--monitor", "chardev=mon0"])
            .stdout(log.try_clone().expect("qsd log"))
            .stderr(log)
            .spawn()
            .expect("qemu-storage-daemon (Debian package qemu-utils)");
        // Owned before anything can fail, so the daemon is stopped then too.
        let daemon = Stopper(Some(child));
        let qmp = Qmp::connect(&sock);
        support::wait_port(port);
        Qsd {
            qmp,
            port,
            _daemon: daemon,
        }
    }

    fn uri(&self) -> String {
        format!("nbd://127.0.0.1:{}/bench", self.port)
    }
}

/// Stops a child: SIGTERM, then SIGKILL if it lingers.
struct Stopper(Option<Child>);

impl Drop for Stopper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One round on QEMU: a fresh 4 GiB raw file, filled through the export,
/// written to by fio while `blockdev-mirror` moves it to another.
fn qemu_round(dir: &Path, round: usize) -> Measured {
    let src = dir.join(format!("qemu-{round}-src.raw"));
    let dst = dir.join(format!("qemu-{round}-dst.raw"));
    for f in [&src, &dst] {
        // Sparse, like Ferry's LUN files; the target must be the source's
        // size.
        File::create(f)
            .and_then(|file| file.set_len(VOLUME))
            .expect("raw file");
    }
    let mut qsd = Qsd::start(dir, &src, round);
    let uri = qsd.uri();
    support::fill(&uri, DATA);
    settle();
    let fio = Fio::start(&uri, dir, &format!("qemu-{round}"));
    std::thread::sleep(WARMUP);
    let idle_from = now_ms();
    std::thread::sleep(IDLE);
    // Opening the target is set-up, like Ferry's knowledge of its arrays.
    qsd.qmp
        .execute(
            "blockdev-add",
            json!({"driver": "raw", "node-name": "dst",
                   "file": {"driver": "file", "filename": dst}}),
        )
        .unwrap_or_else(|e| panic!("blockdev-add of the target: {e}"));
    let start = now_ms();
    qsd.qmp
        .execute(
            "blockdev-mirror",
            json!({"job-id": "live", "device": "src", "target": "dst",
                   "sync": "full", "copy-mode": "write-blocking"}),
        )
        .unwrap_or_else(|e| panic!("blockdev-mirror: {e}"));
    let ready = event_ms(&qsd.qmp.wait_event("BLOCK_JOB_READY", LIMIT));
    let complete = now_ms();
    qsd.qmp
        .execute("job-complete", json!({"id": "live"}))
        .unwrap_or_else(|e| panic!("job-complete: {e}"));
    let completed = qsd.qmp.wait_event("BLOCK_JOB_COMPLETED", LIMIT);
    assert!(
        completed["data"].get("error").is_none(),
        "QEMU's mirror failed: {completed}"
    );
    let end = event_ms(&completed);
    println!(
        "  qemu  round {round}: BLOCK_JOB_READY +{:.0} ms, job-complete to BLOCK_JOB_COMPLETED {:.1} ms",
        ready - start,
        end - complete
    );
    std::thread::sleep(TAIL);
    let samples = fio.stop();
    drop(qsd);
    for f in [&src, &dst] {
        let _ = std::fs::remove_file(f);
    }
    for f in ["clat", "lat", "slat"] {
        let _ = std::fs::remove_file(dir.join(format!("qemu-{round}_{f}.1.log")));
    }
    analyse(
        "QEMU",
        &samples,
        (idle_from, start),
        (start, end),
        // The pivot runs between the job's `pending` and this event, so
        // the event's stamp is the switch, give or take the event's own
        // emission.
        Some(end),
        ((ready - start) + (end - complete)) / 1e3,
    )
}

/// One figure of a round, as a row reports it.
type Metric = fn(&Measured) -> f64;

fn summary_of(ms: &[Measured], f: Metric) -> support::Summary {
    support::summary(&ms.iter().map(f).collect::<Vec<_>>())
}

fn main() {
    support::require_tool("fio", "fio");
    support::require_tool("qemu-io", "qemu-utils");
    support::require_tool("qemu-storage-daemon", "qemu-utils");
    let runs = support::runs(5);
    let peer_only = std::env::var_os("FERRY_BENCH_PEER_ONLY").is_some();
    let dir = support::scratch();
    let server = (!peer_only).then(|| start_ferry(dir.path()));
    println!(
        "live migration of an attached 4 GiB volume holding 1 GiB under 4k random writes \
         (fio nbd engine, iodepth 16), {runs} rounds:"
    );
    let (mut ferry, mut qemu) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        // Who goes first alternates, so neither always meets the other's
        // leftovers; Ferry first in round 1, so a refusal ends the bench
        // before QEMU's run is spent.
        let order: [bool; 2] = if round % 2 == 1 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ferry in order {
            match (is_ferry, &server) {
                (true, Some(server)) => {
                    let m = ferry_round(server, dir.path(), round);
                    print_round("ferry", round, &m);
                    ferry.push(m);
                }
                (true, None) => {}
                (false, _) => {
                    let m = qemu_round(dir.path(), round);
                    print_round("qemu", round, &m);
                    qemu.push(m);
                }
            }
        }
        eprintln!("live_migration: round {round} of {runs} done");
    }
    // (a) near the switch only when every round of both sides knows it;
    // otherwise both over their whole window, so the two stay comparable.
    let near = ferry.iter().chain(&qemu).all(|m| m.lat_switch.is_some());
    let (lat, scope): (Metric, &str) = if near {
        (
            |m| m.lat_switch.unwrap_or(m.lat_window),
            "of a write alive within 1 s of the switch (Ferry's `switched` event, \
             QEMU's BLOCK_JOB_COMPLETED)",
        )
    } else {
        (
            |m| m.lat_window,
            "of a write alive during the migration (Ferry gave no `switched` time)",
        )
    };
    let load = "attached 4 GiB volume holding 1 GiB under 4k random writes (fio, iodepth 16)";
    let rows: [(&str, String, &str, Metric); 5] = [
        (
            "live-stall-latency",
            format!("live migration, {load}: longest write latency {scope}"),
            "ms",
            lat,
        ),
        (
            "live-stall-gap",
            format!("live migration, {load}: longest time with no write completing"),
            "ms",
            |m| m.gap,
        ),
        (
            "live-iops-ratio",
            "live migration: write IOPS migrating / idle, same volume and fio run".into(),
            "×",
            |m| m.live_iops / m.idle_iops,
        ),
        (
            "live-p99-ratio",
            "live migration: write p99 latency migrating / idle, same volume and fio run".into(),
            "×",
            |m| m.live_p99 / m.idle_p99,
        ),
        (
            "live-done-4g",
            format!(
                "live migration, {load}: time to done (QEMU: mirror to READY plus \
                 job-complete to COMPLETED)"
            ),
            "s",
            |m| m.done,
        ),
    ];
    if peer_only {
        for (id, what, unit, f) in rows {
            let q = summary_of(&qemu, f);
            println!(
                "  qemu {id}: median {:.3} {unit} (min {:.3}, max {:.3}) | {what}",
                q.median, q.min, q.max
            );
        }
        println!("  (FERRY_BENCH_PEER_ONLY: no BENCH rows without Ferry's side)");
        return;
    }
    let peer = "vs qemu-storage-daemon `blockdev-mirror` (write-blocking) + `job-complete`";
    for (id, what, unit, f) in rows {
        support::report(
            id,
            &format!("{what}, {peer}"),
            unit,
            summary_of(&ferry, f),
            Some(summary_of(&qemu, f)),
        );
    }
}
