//! Driver call overhead: a no-op driver call (`capabilities` of the `plain`
//! example driver) through `ferry::runtime::DriverRuntime`, in process, with
//! the pooling allocator. Each call gets a fresh, limited store, so this is
//! the fixed price of every driver call the host makes. No peer: the target
//! is absolute (under 50 µs). Then the same call of `python-plain`, its
//! Python twin (an interpreter in the component), beside the Rust figure
//! (target: under 1 ms).
//!
//! Run: `cargo bench -p ferry --bench driver_call` (FERRY_BENCH_RUNS=N
//! batches, default 5).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry::array::Array;
use ferry::config::ArrayConfig;
use ferry::runtime::{
    AllocatorKind, ArtifactCache, CallScope, DriverRuntime, MemoryStateStore, RuntimeConfig,
};

/// Calls per batch; each batch gives one median and one p99.
const CALLS: usize = 5_000;
/// Calls per batch of the Python driver, whose calls are slower.
const PYTHON_CALLS: usize = 1_000;
const WARMUP: usize = 500;

fn main() {
    let runs = support::runs(5);
    let dir = support::scratch();
    let rt = DriverRuntime::new(
        RuntimeConfig::default(),
        Arc::new(MemoryStateStore::default()),
    )
    .expect("driver runtime");
    assert!(
        matches!(
            rt.allocator(),
            AllocatorKind::Pooling | AllocatorKind::PoolingCompact
        ),
        "the engine fell back to {:?}; this bench measures the pooling allocator",
        rt.allocator()
    );
    eprintln!("driver_call: allocator {:?}", rt.allocator());
    rt.install("plain", ferry::guests::PLAIN)
        .expect("install plain");
    let (medians, p99s) = measure(&rt, &scope_for(dir.path(), "plain"), runs, CALLS);
    support::report(
        "driver-call-median",
        &format!("no-op driver call (`capabilities`), median of {CALLS} calls"),
        "µs",
        support::summary(&medians),
        None,
    );
    support::report(
        "driver-call-p99",
        &format!("no-op driver call (`capabilities`), p99 of {CALLS} calls"),
        "µs",
        support::summary(&p99s),
        None,
    );

    // The same call answered by the Python twin of `plain`, beside it.
    let Some(path) = ferry::guests::PYTHON_PLAIN_PATH else {
        eprintln!("driver_call: componentize-py was missing at build time; no Python rows");
        return;
    };
    let bytes = std::fs::read(path).expect("read the Python component");
    install_and_restart(
        &[("rust", ferry::guests::PLAIN), ("python", &bytes)],
        runs.min(3),
    );
    rt.install("python-plain", &bytes)
        .expect("install python-plain");
    let (py_medians, py_p99s) = measure(
        &rt,
        &scope_for(dir.path(), "python-plain"),
        runs,
        PYTHON_CALLS,
    );
    support::report(
        "driver-call-python-median",
        &format!(
            "no-op driver call (`capabilities`), median of {PYTHON_CALLS} calls, Python driver; \
             peer: the Rust driver"
        ),
        "µs",
        support::summary(&py_medians),
        Some(support::summary(&medians)),
    );
    support::report(
        "driver-call-python-p99",
        &format!(
            "no-op driver call (`capabilities`), p99 of {PYTHON_CALLS} calls, Python driver; \
             peer: the Rust driver"
        ),
        "µs",
        support::summary(&py_p99s),
        Some(support::summary(&p99s)),
    );
}

/// An artifact cache in memory: what a host's database keeps between runs.
#[derive(Default)]
struct MemoryArtifacts(Mutex<HashMap<String, Vec<u8>>>);

impl ArtifactCache for MemoryArtifacts {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.lock().map_err(|e| e.to_string())?.get(key).cloned())
    }

    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|e| e.to_string())?
            .insert(key.to_owned(), artifact.to_vec());
        Ok(())
    }
}

/// Install time (validate, compile, first call) of each component on a
/// fresh runtime, and restart time (the same install on a new runtime that
/// finds the artifact in its cache), `runs` times each; the Python rows
/// have the Rust ones as their peer.
fn install_and_restart(components: &[(&str, &[u8])], runs: usize) {
    let mut install = HashMap::new();
    let mut restart = HashMap::new();
    for (language, bytes) in components {
        for _ in 0..runs {
            let cache: Arc<MemoryArtifacts> = Arc::default();
            let runtime = || {
                let cfg = RuntimeConfig {
                    artifacts: Some(cache.clone()),
                    ..RuntimeConfig::default()
                };
                DriverRuntime::new(cfg, Arc::new(MemoryStateStore::default())).expect("runtime")
            };
            let cold = runtime();
            let t = Instant::now();
            cold.install("d", bytes).expect("install");
            install
                .entry(*language)
                .or_insert_with(Vec::new)
                .push(t.elapsed().as_secs_f64() * 1e3);
            drop(cold);
            let warm = runtime();
            let t = Instant::now();
            warm.install("d", bytes).expect("install from the cache");
            restart
                .entry(*language)
                .or_insert_with(Vec::new)
                .push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    for (id, what, figures) in [
        (
            "driver-install-python",
            "install (validate, compile, first call)",
            &install,
        ),
        (
            "driver-restart-python",
            "restart: install from the cached artifact",
            &restart,
        ),
    ] {
        let (Some(python), Some(rust)) = (figures.get("python"), figures.get("rust")) else {
            continue;
        };
        support::report(
            id,
            &format!(
                "{what}, Python driver ({} MiB); peer: the Rust driver",
                components[1].1.len() >> 20
            ),
            "ms",
            support::summary(python),
            Some(support::summary(rust)),
        );
    }
}

/// A call scope on a fresh array of `driver` under `dir`.
fn scope_for(dir: &std::path::Path, driver: &str) -> CallScope {
    let cfg = ArrayConfig {
        name: format!("a-{driver}"),
        driver: driver.into(),
        pools: vec!["default".into()],
        capacity_bytes: 1 << 30,
        settings: Default::default(),
        secrets: Default::default(),
        http_allow: Vec::new(),
        http_ca_file: None,
        nbd_allow: Vec::new(),
        lun_files: true,
    };
    let array = Arc::new(Array::open(dir, &cfg).expect("array"));
    CallScope::new(array, Vec::new())
}

/// Medians and p99s, in µs, of `runs` batches of `calls` calls, after a
/// warm-up.
fn measure(
    rt: &DriverRuntime,
    scope: &CallScope,
    runs: usize,
    calls: usize,
) -> (Vec<f64>, Vec<f64>) {
    for _ in 0..WARMUP.min(calls) {
        rt.capabilities(scope).expect("capabilities");
    }
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..runs {
        let mut us = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            rt.capabilities(scope).expect("capabilities");
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        medians.push(support::quantile(&us, 0.5));
        p99s.push(support::quantile(&us, 0.99));
    }
    (medians, p99s)
}
