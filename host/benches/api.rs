//! The HTTP API of a real `ferry serve` on loopback: `GET /v1/volumes/{id}`
//! throughput and p99 latency under `wrk`, then 10,000 volumes created
//! through the API, the server's peak memory (VmHWM) and the latency of
//! listing (`GET /v1/volumes`) and showing one volume at that scale.
//!
//! Run: `cargo bench -p ferry --bench api` (FERRY_BENCH_RUNS=N, default 3;
//! FERRY_BENCH_VOLUMES=N volumes, default 10000).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{MIB, Server};

/// Client threads creating the volumes; creates serialize on the store's
/// commits, so more would only queue.
const CREATORS: usize = 4;
/// The longest the creation of all volumes may take.
const CREATE_BUDGET: Duration = Duration::from_secs(420);

/// Runs `wrk` on `path` for `secs`; returns requests a second and p99 in ms.
fn wrk(server: &Server, path: &str, secs: u64) -> (f64, f64) {
    let out = support::run(
        "wrk",
        &[
            "-t2",
            "-c16",
            &format!("-d{secs}s"),
            "--latency",
            "-H",
            &format!("Authorization: Bearer {}", server.token),
            &format!("{}{path}", server.url),
        ],
    );
    assert!(
        !out.contains("Non-2xx"),
        "wrk saw failed requests on {path}:\n{out}"
    );
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{out}"));
    let p99 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| wrk_ms(v.trim()))
        .unwrap_or_else(|| panic!("no 99% latency in wrk output:\n{out}"));
    (rps, p99)
}

/// A wrk duration (`812.00us`, `1.23ms`, `2.00s`) in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// Times `n` sequential GETs of `path`, in ms.
fn timed_gets(server: &Server, paths: &[String]) -> Vec<f64> {
    paths
        .iter()
        .map(|p| {
            let t = Instant::now();
            let (s, v) = server.call("GET", p, None);
            assert_eq!(s, 200, "GET {p}: {v}");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn main() {
    let runs = support::runs(3);
    let volumes: usize = std::env::var("FERRY_BENCH_VOLUMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = support::scratch();
    let server = Server::start(&dir.path().join("data"));

    let first = server.create("api-bench-0", "p1", MIB);
    let show = format!("/v1/volumes/{first}");
    wrk(&server, &show, 1); // warm up
    let mut rps = Vec::new();
    let mut p99 = Vec::new();
    for _ in 0..runs {
        let (r, p) = wrk(&server, &show, 5);
        rps.push(r);
        p99.push(p);
    }
    support::report(
        "http-show-rps",
        "HTTP `GET /v1/volumes/{id}` throughput (wrk, 2 threads, 16 connections, 5 s)",
        "req/s",
        support::summary(&rps),
        None,
    );
    support::report(
        "http-show-p99",
        "HTTP `GET /v1/volumes/{id}` p99 latency under that load",
        "ms",
        support::summary(&p99),
        None,
    );

    // Volumes through the API, as operators would create them.
    let started = Instant::now();
    let created = std::sync::atomic::AtomicUsize::new(1);
    let ids = std::sync::Mutex::new(vec![first]);
    std::thread::scope(|s| {
        for _ in 0..CREATORS {
            s.spawn(|| {
                let agent = server.agent();
                loop {
                    let n = created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= volumes || started.elapsed() > CREATE_BUDGET {
                        return;
                    }
                    let body = serde_json::json!({
                        "name": format!("api-bench-{n}"),
                        "size_bytes": MIB,
                        "array": "p1",
                    });
                    let (st, v) = support::call_with(
                        &agent,
                        &server.url,
                        &server.token,
                        "POST",
                        "/v1/volumes",
                        Some(&body),
                    )
                    .expect("create volume");
                    assert_eq!(st, 201, "create volume {n}: {v}");
                    let id = v["id"].as_str().expect("id").to_owned();
                    ids.lock().expect("ids").push(id);
                }
            });
        }
    });
    let ids = ids.into_inner().expect("ids");
    let create_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        ids.len(),
        volumes,
        "only {} of {volumes} volumes created within {CREATE_BUDGET:?}",
        ids.len()
    );
    eprintln!(
        "api: {volumes} volumes created in {create_secs:.1} s ({:.0}/s)",
        volumes as f64 / create_secs
    );
    let one = |v: f64| support::summary(&[v]);
    support::report(
        "create-10k",
        &format!("create {volumes} volumes through the API ({CREATORS} clients)"),
        "s",
        one(create_secs),
        None,
    );

    let (_, listed) = server.call("GET", "/v1/volumes", None);
    let count = listed["volumes"].as_array().map_or(0, Vec::len);
    assert_eq!(count, volumes, "the list shows every volume");
    let list_ms = timed_gets(&server, &vec!["/v1/volumes".to_owned(); 5 * runs]);
    support::report(
        "list-10k",
        &format!("`GET /v1/volumes` latency at {volumes} volumes"),
        "ms",
        support::summary(&list_ms),
        None,
    );
    // Every 50th volume: spread over the key space, 200 requests.
    let paths: Vec<String> = ids
        .iter()
        .step_by((volumes / 200).max(1))
        .map(|id| format!("/v1/volumes/{id}"))
        .collect();
    let show_ms = timed_gets(&server, &paths);
    support::report(
        "show-10k",
        &format!(
            "`GET /v1/volumes/{{id}}` latency at {volumes} volumes ({} requests)",
            show_ms.len()
        ),
        "ms",
        support::summary(&show_ms),
        None,
    );
    support::report(
        "show-10k-p99",
        &format!("`GET /v1/volumes/{{id}}` p99 latency at {volumes} volumes"),
        "ms",
        one(support::quantile(&show_ms, 0.99)),
        None,
    );
    let (show_rps, _) = wrk(&server, &show, 5);
    support::report(
        "http-show-rps-10k",
        &format!("HTTP `GET /v1/volumes/{{id}}` throughput at {volumes} volumes (wrk)"),
        "req/s",
        one(show_rps),
        None,
    );
    support::report(
        "peak-rss-10k",
        &format!("peak memory (VmHWM) of `ferry serve` with {volumes} volumes"),
        "MiB",
        one(server.peak_rss() as f64 / MIB as f64),
        None,
    );
}
