//! A remote array (a second `ferry serve`, reached through the
//! `ferry-remote` driver) against libnbd's tools and fio straight at its
//! exports, side by side in one run:
//!
//! - `remote-copy-from`: a migration from the remote array to a local one
//!   (POST to `success`: the host copy reads the remote export) against
//!   `nbdcopy` of the same export to a local file (synced);
//! - `remote-copy-to`: the way back (the host copy writes the remote
//!   export) against `nbdcopy` of a local file to an export of the remote;
//! - `remote-randread-4k`, `remote-randwrite-4k`: fio's nbd engine (iodepth
//!   16) on the volume through the first host's NBD server, which proxies
//!   to the remote export, against fio straight at that export.
//!
//! The volume is 4 GiB holding 1 GiB of data in 16 extents. Run:
//! `cargo bench -p ferry --bench remote_array` (FERRY_BENCH_RUNS=N,
//! default 3; FERRY_BENCH_SECS=N seconds a fio run, default 4).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{GIB, Server};

const SIZE: u64 = 4 * GIB;
const EXTENTS: u64 = 16;

fn config_of_a(dir: &Path, b: &Server) -> PathBuf {
    let path = dir.join("a.toml");
    std::fs::write(
        &path,
        format!(
            "[[array]]\nname = \"local\"\ndriver = \"plain\"\n\
             [[array]]\nname = \"far\"\ndriver = \"ferry-remote\"\nlun_files = false\n\
             http_allow = [\"{url}\"]\nnbd_allow = [\"nbd://{nbd}\"]\n\
             settings = {{ endpoint = \"{url}\", array = \"p1\" }}\n\
             secrets = {{ token = {{ file = {token:?} }} }}\n",
            url = b.url,
            nbd = b.nbd,
            token = b.data_dir.join("admin.token"),
        ),
    )
    .expect("config");
    path
}

/// The id of B's volume that holds A's volume `id`.
fn on_b(b: &Server, id: &str) -> String {
    let (_, list) = b.call("GET", "/v1/volumes", None);
    list["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == format!("ferry-{id}"))
        .and_then(|v| v["id"].as_str())
        .expect("B holds the volume")
        .to_owned()
}

/// Migrates `id` to `array`; the time from the request to `success`.
fn migrate(a: &Server, id: &str, array: &str) -> Duration {
    let t = Instant::now();
    let (s, v) = a.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": array})),
    );
    assert_eq!(s, 202, "{v}");
    loop {
        let (_, m): (u16, Value) = a.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        match m["migration_status"].as_str() {
            Some("success") => break,
            Some("error" | "aborted") => panic!("migration to {array} failed: {m}"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let elapsed = t.elapsed();
    // The source's removal finishes before the next run.
    loop {
        let (_, m): (u16, Value) = a.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if m["source_removal"] != "pending" {
            return elapsed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nbdcopy's time, the copy durable like the host's: `--flush` for an
/// export, a sync of the file otherwise.
fn nbdcopy(from: &str, to: &str) -> Duration {
    let t = Instant::now();
    if to.starts_with("nbd") {
        support::run("nbdcopy", &["--flush", from, to]);
    } else {
        support::run("nbdcopy", &[from, to]);
        std::fs::File::open(to)
            .and_then(|f| f.sync_all())
            .expect("sync the copy");
    }
    t.elapsed()
}

fn secs(d: &[Duration]) -> Vec<f64> {
    d.iter().map(Duration::as_secs_f64).collect()
}

fn main() {
    support::require_tool("nbdcopy", "libnbd-bin");
    support::require_tool("fio", "fio");
    support::require_tool("qemu-io", "qemu-utils");
    let runs = support::runs(3);
    let fio_secs: u64 = std::env::var("FERRY_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let dir = support::scratch();
    let b = Server::start(&dir.path().join("b"));
    let a = Server::start_with(&dir.path().join("a"), Some(&config_of_a(dir.path(), &b)));

    let id = a.create("bench", "local", SIZE);
    let (att, uri) = a.attach(&id);
    let mut args = vec!["-f", "raw"];
    let writes: Vec<String> = (0..EXTENTS)
        .map(|i| format!("write -P {} {} 64M", 0x10 + i, i * (SIZE / EXTENTS)))
        .collect();
    for w in &writes {
        args.extend(["-c", w.as_str()]);
    }
    args.extend(["-c", "flush", uri.as_str()]);
    support::run("qemu-io", &args);
    a.detach(&id, &att);

    let (mut to_ferry, mut to_peer, mut from_ferry, mut from_peer) =
        (vec![], vec![], vec![], vec![]);
    let local_copy = dir.path().join("peer.raw");
    let local_copy = local_copy.to_str().expect("path");
    // The peer's export to write into: a volume of B of the same size.
    let peer_dst = b.create("peer-dst", "p1", SIZE);
    let (_, peer_dst_uri) = b.attach(&peer_dst);
    // The file nbdcopy sends: the local LUN's bytes, kept apart (the LUN
    // itself moves away with the volume).
    let peer_src = dir.path().join("peer-src.raw");
    let lun = a.lun_path("local", &id);
    support::run(
        "cp",
        &[
            "--sparse=always",
            lun.to_str().expect("path"),
            peer_src.to_str().expect("path"),
        ],
    );
    let peer_src = peer_src.to_str().expect("path");
    for _ in 0..runs {
        to_ferry.push(migrate(&a, &id, "far"));
        to_peer.push(nbdcopy(peer_src, &peer_dst_uri));
        let remote = on_b(&b, &id);
        let (batt, buri) = b.attach(&remote);
        let _ = std::fs::remove_file(local_copy);
        from_peer.push(nbdcopy(&buri, local_copy));
        b.detach(&remote, &batt);
        from_ferry.push(migrate(&a, &id, "local"));
    }
    let what = "4 GiB volume with 1 GiB of data";
    support::report(
        "remote-copy-to",
        &format!(
            "migration to the remote array, {what}; peer: nbdcopy of the file to a remote export"
        ),
        "s",
        support::summary(&secs(&to_ferry)),
        Some(support::summary(&secs(&to_peer))),
    );
    support::report(
        "remote-copy-from",
        &format!(
            "migration from the remote array, {what}; peer: nbdcopy of the remote export to a file"
        ),
        "s",
        support::summary(&secs(&from_ferry)),
        Some(support::summary(&secs(&from_peer))),
    );

    // The volume on the remote array, reached through A and straight.
    migrate(&a, &id, "far");
    let (_, proxied) = a.attach(&id);
    let remote = on_b(&b, &id);
    let (_, direct) = b.attach(&remote);
    // CPU seconds per million requests: both hosts' for the proxied path,
    // the remote's alone for the direct one.
    let cpu = || a.cpu_seconds() + b.cpu_seconds();
    for (rw, label) in [("randread", "read"), ("randwrite", "write")] {
        let (mut ferry, mut peer) = (vec![], vec![]);
        let (mut ferry_cpu, mut peer_cpu) = (vec![], vec![]);
        for _ in 0..runs {
            let before = cpu();
            let r = support::fio(&proxied, rw, "4k", 16, GIB, fio_secs);
            ferry.push(r.iops);
            ferry_cpu.push((cpu() - before) / (r.requests.max(1.0) / 1e6));
            let before = cpu();
            let r = support::fio(&direct, rw, "4k", 16, GIB, fio_secs);
            peer.push(r.iops);
            peer_cpu.push((cpu() - before) / (r.requests.max(1.0) / 1e6));
        }
        support::report(
            &format!("cpu-remote-{rw}-4k"),
            &format!(
                "CPU seconds per million 4k random {label}s: both hosts through the proxy; \
                 peer: the remote host alone, fio straight at its export"
            ),
            "s",
            support::summary(&ferry_cpu),
            Some(support::summary(&peer_cpu)),
        );
        support::report(
            &format!("remote-{rw}-4k"),
            &format!(
                "4k random {label} IOPS (iodepth 16) of a volume on the remote array through \
                 this host's NBD server; peer: fio straight at the remote export"
            ),
            "IOPS",
            support::summary(&ferry),
            Some(support::summary(&peer)),
        );
    }
}
