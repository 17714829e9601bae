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
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::fio_log::{Fio, Sample, longest_gap, longest_latency, rate};
use support::qmp::{Qsd, event_ms};
use support::{GIB, Server, rfc3339_ms};

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
/// fio's own time limit, longer than any round: `Fio::stop` ends it first.
const FIO_RUNTIME: Duration = Duration::from_secs(LIMIT.as_secs() * 2);

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
    let fio = Fio::start(&uri, dir, &format!("ferry-{round}"), DATA, FIO_RUNTIME);
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
    let fio = Fio::start(&uri, dir, &format!("qemu-{round}"), DATA, FIO_RUNTIME);
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
