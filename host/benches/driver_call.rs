//! Driver call overhead: a no-op driver call (`capabilities` of the `plain`
//! example driver) through `ferry::runtime::DriverRuntime`, in process, with
//! the pooling allocator. Each call gets a fresh, limited store, so this is
//! the fixed price of every driver call the host makes. No peer: the target
//! is absolute (under 50 µs).
//!
//! Run: `cargo bench -p ferry --bench driver_call` (FERRY_BENCH_RUNS=N
//! batches, default 5).

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use ferry::array::Array;
use ferry::config::ArrayConfig;
use ferry::runtime::{AllocatorKind, CallScope, DriverRuntime, MemoryStateStore, RuntimeConfig};

/// Calls per batch; each batch gives one median and one p99.
const CALLS: usize = 5_000;
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
    let cfg = ArrayConfig {
        name: "p1".into(),
        driver: "plain".into(),
        pools: vec!["default".into()],
        capacity_bytes: 1 << 30,
        settings: Default::default(),
        secrets: Default::default(),
        http_allow: Vec::new(),
        http_ca_file: None,
        nbd_allow: Vec::new(),
        lun_files: true,
    };
    let array = Arc::new(Array::open(dir.path(), &cfg).expect("array"));
    let scope = CallScope::new(array, Vec::new());
    for _ in 0..WARMUP {
        rt.capabilities(&scope).expect("capabilities");
    }
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    for _ in 0..runs {
        let mut us = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let t = Instant::now();
            rt.capabilities(&scope).expect("capabilities");
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        medians.push(support::quantile(&us, 0.5));
        p99s.push(support::quantile(&us, 0.99));
    }
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
}
