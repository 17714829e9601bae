//! Scale: 50 concurrent migrations on one real `ferry serve`, half on the
//! async target path (`p1` -> `t1`), half on the host-copy path (`t1` ->
//! `p1`), small volumes holding some data. Every migration must end in
//! `success`, none may stay stuck; reports the time until all ended and how
//! many were refused, failed or stuck (the line carries the counts so the
//! table shows a shortfall instead of losing the row).
//!
//! Run: `cargo bench -p ferry --bench scale` (FERRY_BENCH_RUNS=N, default 3).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{MIB, Server};

const MIGRATIONS: usize = 50;
const SIZE: u64 = 64 * MIB;
const DATA: u64 = 8 * MIB;
/// After this, a migration that has not ended counts as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(300);

fn main() {
    let runs = support::runs(3);
    let dir = support::scratch();
    let server = Server::start(&dir.path().join("data"));
    let mut times = Vec::new();
    let (mut success, mut refused, mut failed, mut stuck) = (0usize, 0usize, 0usize, 0usize);
    let mut reasons = std::collections::BTreeSet::new();
    for run in 0..runs {
        // Even volumes go p1 -> t1 (async), odd ones t1 -> p1 (host copy).
        let vols: Vec<(String, &str)> = (0..MIGRATIONS)
            .map(|i| {
                let (from, to) = if i % 2 == 0 {
                    ("p1", "t1")
                } else {
                    ("t1", "p1")
                };
                let id = server.create(&format!("scale-{run}-{i}"), from, SIZE);
                let (att, uri) = server.attach(&id);
                support::fill(&uri, DATA);
                server.detach(&id, &att);
                (id, to)
            })
            .collect();

        let t = Instant::now();
        let mut pending = Vec::new();
        for (id, to) in &vols {
            let (s, v) = server.call(
                "POST",
                &format!("/v1/volumes/{id}/migrate"),
                Some(json!({"array": to})),
            );
            if s == 202 {
                pending.push(id.as_str());
            } else {
                eprintln!("scale: migrate {id} to {to} refused ({s}): {v}");
                refused += 1;
                reasons.insert(format!(
                    "{s} {}",
                    v["error"]["code"].as_str().unwrap_or("?")
                ));
            }
        }
        let mut paths = std::collections::BTreeMap::<String, usize>::new();
        while !pending.is_empty() && t.elapsed() < STUCK_AFTER {
            let mut still = Vec::new();
            for id in pending {
                let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
                match m["migration_status"].as_str() {
                    Some("success") => {
                        let path = m["path"].as_str().unwrap_or("?").to_owned();
                        *paths.entry(path).or_default() += 1;
                        success += 1;
                    }
                    Some("error") => {
                        eprintln!("scale: migration of {id} failed: {m}");
                        failed += 1;
                    }
                    _ => still.push(id),
                }
            }
            pending = still;
            std::thread::sleep(Duration::from_millis(20));
        }
        let secs = t.elapsed().as_secs_f64();
        stuck += pending.len();
        eprintln!(
            "scale: run {}: {MIGRATIONS} migrations ended in {secs:.2} s, paths {paths:?}, {} still running",
            run + 1,
            pending.len()
        );
        times.push(secs);
        for (id, _) in &vols {
            let (s, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
            if !(s == 200 && v["status"] == "available") {
                eprintln!("scale: {id} after migrating: {v}");
            }
            server.call("DELETE", &format!("/v1/volumes/{id}"), None);
        }
    }
    let reasons: Vec<String> = reasons.into_iter().collect();
    let mut what = format!(
        "{MIGRATIONS} concurrent migrations (64 MiB volumes, 8 MiB data; half p1->t1 async, half t1->p1 host copy): time until all ended; {success} of {} `success`",
        MIGRATIONS * runs
    );
    if refused + failed + stuck > 0 {
        what.push_str(&format!(
            ", {refused} refused at admission ({}), {failed} failed, {stuck} stuck",
            reasons.join(", ")
        ));
    }
    support::report("scale-50", &what, "s", support::summary(&times), None);
    println!(
        "BENCH-COUNTS scale-50 success={success} refused={refused} failed={failed} stuck={stuck}"
    );
}
