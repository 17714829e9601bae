//! Unit tests of what the registry relies on in the runtime: the artifact
//! cache (a second host loads without the compiler and refuses a corrupt
//! artifact by recompiling), prepare without activation, per-driver limits
//! and call statistics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tests::{array, runtime_with, volume};
use super::*;
use crate::guests;

/// An artifact cache in memory that counts its traffic.
#[derive(Default)]
struct CountingCache {
    items: Mutex<HashMap<String, Vec<u8>>>,
    gets: Mutex<(u32, u32)>,
    puts: Mutex<u32>,
}

impl ArtifactCache for CountingCache {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let found = lock(&self.items).get(key).cloned();
        let mut g = lock(&self.gets);
        if found.is_some() {
            g.0 += 1;
        } else {
            g.1 += 1;
        }
        Ok(found)
    }

    fn put(&self, key: &str, artifact: &[u8]) -> Result<(), String> {
        *lock(&self.puts) += 1;
        lock(&self.items).insert(key.to_owned(), artifact.to_vec());
        Ok(())
    }
}

fn runtime_with_cache(cache: Arc<CountingCache>) -> DriverRuntime {
    DriverRuntime::new(
        RuntimeConfig {
            artifacts: Some(cache),
            ..RuntimeConfig::default()
        },
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap()
}

#[test]
fn a_second_host_loads_the_cached_artifact_instead_of_compiling() {
    let cache = Arc::new(CountingCache::default());
    let first = runtime_with_cache(cache.clone());
    let installed = first.install("plain", guests::PLAIN).unwrap();
    assert_eq!(*lock(&cache.puts), 1);
    assert_eq!(*lock(&cache.gets), (0, 1), "one miss, then a compile");

    let second = runtime_with_cache(cache.clone());
    let again = second.install("plain", guests::PLAIN).unwrap();
    assert_eq!(again, installed);
    assert_eq!(*lock(&cache.gets), (1, 1), "the second host hit the cache");
    assert_eq!(*lock(&cache.puts), 1, "and compiled nothing");
    let dir = tempfile::tempdir().unwrap();
    let scope = CallScope::new(array(dir.path(), "p1", "plain", 1 << 30), vec![]);
    second.create_volume(&scope, &volume("v", 1 << 20)).unwrap();

    // A damaged artifact is not trusted: the host compiles again.
    for v in lock(&cache.items).values_mut() {
        let mid = v.len() / 2;
        v.truncate(mid);
    }
    let third = runtime_with_cache(cache.clone());
    third.install("plain", guests::PLAIN).unwrap();
    assert_eq!(*lock(&cache.puts), 2);
}

#[test]
fn prepare_does_not_activate_and_activate_needs_a_prepared_digest() {
    let rt = DriverRuntime::new(
        RuntimeConfig::default(),
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    let plain = rt.install("x", guests::PLAIN).unwrap();
    let takeover = rt.prepare("x", guests::TAKEOVER).unwrap();
    assert!(rt.is_prepared(&takeover.digest));
    assert_eq!(rt.active_digest("x"), Some(plain.digest.clone()));
    let err = rt.activate("x", &"0".repeat(64)).unwrap_err();
    assert_eq!(err.code(), "driver_version_not_found");
    assert_eq!(rt.active_digest("x"), Some(plain.digest));
    rt.activate("x", &takeover.digest).unwrap();
    assert_eq!(rt.active_digest("x"), Some(takeover.digest));
}

#[test]
fn per_driver_limits_replace_the_defaults_and_calls_are_counted() {
    let misbehave = std::fs::read(guests::MISBEHAVE_PATH).unwrap();
    let rt = DriverRuntime::new(
        RuntimeConfig {
            driver_limits: HashMap::from([(
                "quick".to_owned(),
                crate::config::DriverLimits {
                    deadline_ms: 200,
                    memory_bytes: 16 << 20,
                },
            )]),
            ..RuntimeConfig::default()
        },
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    rt.install("quick", &misbehave).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scope = CallScope::new(array(dir.path(), "q1", "quick", 1 << 30), vec![]);
    let started = Instant::now();
    let err = rt
        .create_volume(&scope, &volume("loop", 1 << 20))
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            CallError::Timeout {
                deadline_ms: 200,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(3),
        "took {took:?}: the 5 s default applied"
    );
    let err = rt
        .create_volume(&scope, &volume("grow", 1 << 20))
        .unwrap_err();
    assert!(
        matches!(err, CallError::OutOfMemory { limit_bytes, .. } if limit_bytes == 16 << 20),
        "{err}"
    );
    rt.create_volume(&scope, &volume("fine", 1 << 20)).unwrap();

    let stats = rt.call_stats();
    let q = &stats["quick"];
    // The smoke call at install, the loop, the bloat and the normal call.
    assert_eq!(q.calls, 4);
    assert_eq!(
        (q.timeouts, q.out_of_memory, q.traps, q.errors),
        (1, 1, 0, 0)
    );
    assert!(q.memory_high_water_bytes > 0 && q.memory_high_water_bytes <= 16 << 20);
    assert_eq!(q.latency_buckets.iter().sum::<u64>(), 4);
}

#[test]
fn a_compile_over_the_time_cap_is_refused_and_changes_nothing() {
    let rt = DriverRuntime::new(
        RuntimeConfig {
            // Far below what any real component takes to compile.
            max_compile_time: Duration::from_millis(1),
            ..RuntimeConfig::default()
        },
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    let err = rt.install("x", guests::PLAIN).unwrap_err();
    assert_eq!(err.code(), "compile_timeout", "{err}");
    assert!(err.to_string().contains("longer than 1 ms"), "{err}");
    assert_eq!(rt.active_digest("x"), None);
}

#[test]
fn a_refused_component_leaves_no_artifact_behind() {
    let cache = Arc::new(CountingCache::default());
    let rt = runtime_with_cache(cache.clone());
    let trap = std::fs::read(guests::TRAP_CAPABILITIES_PATH).unwrap();
    let err = rt.install("x", &trap).unwrap_err();
    assert_eq!(err.code(), "smoke_call_failed", "{err}");
    let err = rt.install("x", b"\0asm\x0d\0\x01\0").unwrap_err();
    assert_eq!(err.code(), "wrong_world", "{err}");
    assert_eq!(*lock(&cache.puts), 0, "a refused component was cached");
    assert!(lock(&cache.items).is_empty());
    // An accepted one is cached once it passed every check.
    rt.install("x", guests::PLAIN).unwrap();
    assert_eq!(*lock(&cache.puts), 1);
}

#[test]
fn an_abandoned_compile_holds_the_one_slot_until_it_ends() {
    let rt = DriverRuntime::new(
        RuntimeConfig {
            max_compile_time: Duration::from_millis(1),
            max_compile_wait: Duration::ZERO,
            ..RuntimeConfig::default()
        },
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    let err = rt.install("x", guests::TAKEOVER).unwrap_err();
    assert_eq!(err.code(), "compile_timeout", "{err}");
    // Compiling takes far longer than the few microseconds to here.
    let err = rt.install("y", guests::PLAIN).unwrap_err();
    assert!(
        matches!(err, RuntimeError::CompileBusy { retry_after_secs } if retry_after_secs >= 1),
        "{err}"
    );
    let stats = rt.compile_stats();
    assert_eq!(
        (stats.timeouts, stats.busy, stats.abandoned_running),
        (1, 1, 1)
    );
    let until = Instant::now() + Duration::from_secs(60);
    while rt.compile_stats().abandoned_running == 1 {
        assert!(Instant::now() < until, "the abandoned compile never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = rt.compile_stats();
    assert!(stats.abandoned_cpu_seconds > 0.0, "{stats:?}");
    assert_eq!(stats.cpu_seconds, stats.abandoned_cpu_seconds);
    // The slot is free again: the next compile runs (and overruns) itself.
    let err = rt.install("y", guests::PLAIN).unwrap_err();
    assert_eq!(err.code(), "compile_timeout", "{err}");
}

#[test]
fn compiles_wait_their_turn_within_the_wait_limit() {
    let rt = DriverRuntime::new(
        RuntimeConfig::default(),
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    let threads: Vec<_> = [guests::PLAIN, guests::TAKEOVER, guests::VENDOR_COPY]
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let rt = rt.clone();
            std::thread::spawn(move || rt.install(&format!("d{i}"), bytes))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    let stats = rt.compile_stats();
    assert_eq!((stats.compiled, stats.busy, stats.timeouts), (3, 0, 0));
}

#[test]
fn a_version_a_call_runs_on_is_counted_and_not_forgotten() {
    let misbehave = std::fs::read(guests::MISBEHAVE_PATH).unwrap();
    let rt = DriverRuntime::new(
        RuntimeConfig {
            driver_limits: HashMap::from([(
                "m".to_owned(),
                crate::config::DriverLimits {
                    deadline_ms: 500,
                    memory_bytes: 16 << 20,
                },
            )]),
            ..RuntimeConfig::default()
        },
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    let old = rt.install("m", &misbehave).unwrap().digest;
    assert_eq!(rt.calls_running_on(&old), 0, "active is not running");
    let dir = tempfile::tempdir().unwrap();
    let scope = CallScope::new(array(dir.path(), "m1", "m", 1 << 30), vec![]);
    let call = {
        let rt = rt.clone();
        std::thread::spawn(move || rt.create_volume(&scope, &volume("loop", 1 << 20)))
    };
    let until = Instant::now() + Duration::from_secs(5);
    while rt.calls_running_on(&old) == 0 {
        assert!(Instant::now() < until, "the call never started");
        std::thread::yield_now();
    }
    // Swapped away while the call runs: the call keeps its version.
    let new = rt.install("m", guests::PLAIN).unwrap().digest;
    assert_eq!(rt.calls_running_on(&old), 1);
    assert!(!rt.forget(&old));
    assert!(rt.is_prepared(&old));
    assert!(
        call.join().unwrap().is_err(),
        "the loop ran into its deadline"
    );
    assert_eq!(rt.calls_running_on(&old), 0);
    assert!(rt.forget(&old));
    assert!(!rt.is_prepared(&old));
    // The active version is never forgotten.
    assert!(!rt.forget(&new));
    assert!(rt.is_prepared(&new));
}

#[test]
fn every_call_starts_from_the_components_own_image() {
    // The pooling allocator resets a slot's dirtied pages in place for the
    // next instance; whatever a call left in memory must be gone.
    let misbehave = std::fs::read(guests::MISBEHAVE_PATH).unwrap();
    let rt = runtime_with(Arc::new(MemoryStateStore::default()));
    rt.install("m", &misbehave).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scope = CallScope::new(array(dir.path(), "m1", "m", 1 << 30), vec![]);
    for _ in 0..20 {
        let answer = rt
            .create_volume(&scope, &volume("remember", 1 << 20))
            .unwrap();
        assert_eq!(answer.as_deref(), Some("calls:1 heap:none"));
    }
}
