//! Scale: 50 concurrent migrations on one real `ferry serve`, half on the
//! async target path (`p1` -> `t1`), half on the host-copy path (`t1` ->
//! `p1`), small volumes holding some data. Every migration must end in
//! `success`, none may stay stuck; reports the time until all ended.
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
        for (id, to) in &vols {
            let (s, v) = server.call(
                "POST",
                &format!("/v1/volumes/{id}/migrate"),
                Some(json!({"array": to})),
            );
            assert_eq!(s, 202, "migrate {id} to {to}: {v}");
        }
        let mut pending: Vec<&(String, &str)> = vols.iter().collect();
        let mut paths = std::collections::BTreeMap::<String, usize>::new();
        while !pending.is_empty() {
            assert!(
                t.elapsed() < STUCK_AFTER,
                "{} migrations stuck after {STUCK_AFTER:?}",
                pending.len()
            );
            let mut still = Vec::new();
            for v in pending {
                let (_, m) = server.call("GET", &format!("/v1/volumes/{}/migration", v.0), None);
                match m["migration_status"].as_str() {
                    Some("success") => {
                        let path = m["path"].as_str().unwrap_or("?").to_owned();
                        *paths.entry(path).or_default() += 1;
                    }
                    Some("error") => panic!("migration of {} failed: {m}", v.0),
                    _ => still.push(v),
                }
            }
            pending = still;
            std::thread::sleep(Duration::from_millis(20));
        }
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "scale: run {}: {MIGRATIONS} migrations in {secs:.2} s, paths {paths:?}",
            run + 1
        );
        assert_eq!(paths.values().sum::<usize>(), MIGRATIONS);
        times.push(secs);
        for (id, _) in &vols {
            let (s, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
            assert!(
                s == 200 && v["status"] == "available",
                "{id} after migrating: {v}"
            );
            server.call("DELETE", &format!("/v1/volumes/{id}"), None);
        }
    }
    support::report(
        "scale-50",
        &format!(
            "{MIGRATIONS} concurrent migrations (64 MiB volumes, 8 MiB data; half p1->t1 async, half t1->p1 host copy), all `success`: time to finish all"
        ),
        "s",
        support::summary(&times),
        None,
    );
}
