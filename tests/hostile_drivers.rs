//! A hostile driver (loops, bloats, overflows its stack, panics, pokes at
//! other arrays, writes state and traps) fails only its own call, with a
//! clear error, while the runtime and every other driver carry on.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ferry::array::Array;
use ferry::config::{ArrayConfig, DriverLimits};
use ferry::guests;
use ferry::runtime::{
    CallError, CallScope, DriverErrorKind, DriverRuntime, DriverStateStore, MemoryStateStore,
    RuntimeConfig, VolumeRef,
};

const DEADLINE_MS: u64 = 500;
const MEMORY_BYTES: u64 = 32 << 20;
/// State key the `state` misbehaviour writes before it traps.
const STATE_KEY: &str = "misbehave/state";

struct Harness {
    rt: DriverRuntime,
    state: Arc<MemoryStateStore>,
    misbehave: Vec<u8>,
    hostile: CallScope,
    plain: CallScope,
    _dir: tempfile::TempDir,
}

fn array(dir: &Path, name: &str, driver: &str) -> Arc<Array> {
    let cfg = ArrayConfig {
        name: name.into(),
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
    Arc::new(Array::open(dir, &cfg).unwrap())
}

/// One runtime for the whole file; tests take turns so that timings are not
/// skewed by each other's spinning drivers.
fn harness() -> (MutexGuard<'static, ()>, &'static Harness) {
    static TURN: Mutex<()> = Mutex::new(());
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let h = HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(MemoryStateStore::default());
        let rt = DriverRuntime::new(
            RuntimeConfig {
                limits: DriverLimits {
                    deadline_ms: DEADLINE_MS,
                    memory_bytes: MEMORY_BYTES,
                },
                ..RuntimeConfig::default()
            },
            state.clone(),
        )
        .unwrap();
        let misbehave = std::fs::read(guests::MISBEHAVE_PATH).unwrap();
        rt.install("misbehave", &misbehave).unwrap();
        rt.install("plain", guests::PLAIN).unwrap();
        let m1 = array(dir.path(), "m1", "misbehave");
        let p1 = array(dir.path(), "p1", "plain");
        Harness {
            hostile: CallScope::new(m1, vec!["p1".into()]),
            plain: CallScope::new(p1, vec!["m1".into()]),
            rt,
            state,
            misbehave,
            _dir: dir,
        }
    });
    (turn, h)
}

fn volume(name: &str) -> VolumeRef {
    VolumeRef {
        id: uuid::Uuid::new_v4(),
        name: name.into(),
        size_bytes: 1 << 20,
        pool: "default".into(),
        provider_location: None,
    }
}

/// Runs the misbehaviour `name`, returns its error and how long it took.
fn misbehave(h: &Harness, name: &str) -> (CallError, Duration) {
    let started = Instant::now();
    let result = h.rt.create_volume(&h.hostile, &volume(name));
    let took = started.elapsed();
    match result {
        Ok(r) => panic!("misbehaviour {name} succeeded with {r:?}"),
        Err(e) => {
            println!("{name}: {e} [{}] after {took:?}", e.code());
            (e, took)
        }
    }
}

/// The faulty driver still answers normal calls, and so does another.
fn both_drivers_still_serve(h: &Harness) {
    let v = volume("after-a-fault");
    let loc = h.rt.create_volume(&h.hostile, &v).unwrap();
    assert_eq!(loc, Some(format!("default/volume-{}", v.id)));
    let w = volume("neighbour");
    h.rt.create_volume(&h.plain, &w).unwrap();
    assert!(h.rt.capabilities(&h.plain).unwrap().sparse);
}

#[test]
fn a_looping_driver_times_out_at_its_deadline() {
    let (_turn, h) = harness();
    let (err, took) = misbehave(h, "loop");
    assert!(
        matches!(&err, CallError::Timeout { driver, deadline_ms } if driver == "misbehave" && *deadline_ms == DEADLINE_MS),
        "{err:?}"
    );
    assert_eq!(err.code(), "driver_timeout");
    assert!(err.to_string().contains("500 ms"), "{err}");
    assert!(took >= Duration::from_millis(DEADLINE_MS - 20), "{took:?}");
    assert!(took < Duration::from_millis(DEADLINE_MS + 1500), "{took:?}");
    both_drivers_still_serve(h);
}

#[test]
fn a_memory_hungry_driver_runs_out_of_memory() {
    let (_turn, h) = harness();
    let (err, _) = misbehave(h, "grow");
    assert!(
        matches!(&err, CallError::OutOfMemory { limit_bytes, .. } if *limit_bytes == MEMORY_BYTES),
        "{err:?}"
    );
    assert_eq!(err.code(), "driver_out_of_memory");
    both_drivers_still_serve(h);
}

#[test]
fn unbounded_recursion_traps_with_a_stack_overflow() {
    let (_turn, h) = harness();
    let (err, _) = misbehave(h, "recurse");
    assert!(matches!(&err, CallError::Trap { .. }), "{err:?}");
    let text = err.to_string();
    // Depending on where the frames live the recursion exhausts the wasm
    // call stack or runs the shadow stack (in linear memory) out of bounds;
    // either way the trap names the recursing function.
    assert!(
        text.contains("stack overflow") || text.contains("out of bounds memory access"),
        "{text}"
    );
    assert!(text.contains("overflow_stack::descend"), "{text}");
    both_drivers_still_serve(h);
}

#[test]
fn a_panic_traps_and_the_panic_message_is_reported() {
    let (_turn, h) = harness();
    let (err, _) = misbehave(h, "panic");
    assert!(matches!(&err, CallError::Trap { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("panicked"), "{text}");
    assert!(text.contains("asked for a panic"), "{text}");
    both_drivers_still_serve(h);
}

#[test]
fn a_driver_cannot_reach_other_arrays() {
    let (_turn, h) = harness();
    let before = h.plain.array.list_luns("default").unwrap();
    let (err, _) = misbehave(h, "escape");
    match &err {
        CallError::Driver {
            kind: DriverErrorKind::BackendError,
            message,
        } => assert!(message.starts_with("escape blocked"), "{message}"),
        other => panic!("escape was not blocked: {other:?}"),
    }
    assert_eq!(h.plain.array.list_luns("default").unwrap(), before);
    both_drivers_still_serve(h);
}

#[test]
fn a_driver_cannot_reach_host_files_the_network_or_the_environment() {
    let (_turn, h) = harness();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (err, _) = misbehave(h, &format!("outside:{port}"));
    match &err {
        CallError::Driver {
            kind: DriverErrorKind::BackendError,
            message,
        } => {
            assert!(message.starts_with("outside blocked"), "{message}");
            for what in [
                "files (read /etc/passwd)",
                "files (create ./escape)",
                "environment",
                "network (tcp connect)",
                "network (udp bind)",
                "network (name lookup)",
            ] {
                assert!(message.contains(what), "{what} not tried: {message}");
            }
        }
        other => panic!("the driver reached outside: {other:?}"),
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the driver connected to the host's loopback listener"
    );
    both_drivers_still_serve(h);
}

#[test]
fn state_written_by_a_trapping_call_is_dropped() {
    let (_turn, h) = harness();
    let (err, _) = misbehave(h, "state");
    assert!(matches!(&err, CallError::Trap { .. }), "{err:?}");
    assert_eq!(h.state.get("misbehave", STATE_KEY).unwrap(), None);
    assert!(h.state.keys("misbehave", "").unwrap().is_empty());
    both_drivers_still_serve(h);
}

#[test]
fn a_looping_driver_does_not_hold_up_other_drivers() {
    let (_turn, h) = harness();
    std::thread::scope(|s| {
        let looping = s.spawn(|| {
            let started = Instant::now();
            let r = h.rt.create_volume(&h.hostile, &volume("loop"));
            (r, started.elapsed())
        });
        // Let the loop start spinning first.
        std::thread::sleep(Duration::from_millis(50));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut slowest = Duration::ZERO;
                    let started = Instant::now();
                    for _ in 0..50 {
                        let t = Instant::now();
                        h.rt.capabilities(&h.plain).unwrap();
                        slowest = slowest.max(t.elapsed());
                    }
                    (started.elapsed(), slowest)
                })
            })
            .collect();
        for w in workers {
            let (total, slowest) = w.join().unwrap();
            println!("50 calls beside a spinning driver: {total:?}, slowest {slowest:?}");
            assert!(total < Duration::from_millis(DEADLINE_MS), "{total:?}");
            assert!(slowest < Duration::from_millis(250), "{slowest:?}");
        }
        let (r, took) = looping.join().unwrap();
        assert!(matches!(r, Err(CallError::Timeout { .. })), "{r:?}");
        assert!(took >= Duration::from_millis(DEADLINE_MS - 20), "{took:?}");
    });
}

#[test]
fn a_hot_swap_leaves_calls_in_flight_on_their_version() {
    let (_turn, h) = harness();
    let old = h.rt.active_digest("misbehave").unwrap();
    std::thread::scope(|s| {
        let looping = s.spawn(|| h.rt.create_volume(&h.hostile, &volume("loop")));
        std::thread::sleep(Duration::from_millis(100));
        // `plain` takes over the name: new calls get it at once.
        let new = h.rt.install("misbehave", guests::PLAIN).unwrap();
        assert_ne!(new.digest, old);
        let v = volume("loop");
        assert!(h.rt.create_volume(&h.hostile, &v).is_ok());
        // The call in flight still runs the old version to its deadline.
        let r = looping.join().unwrap();
        assert!(matches!(r, Err(CallError::Timeout { .. })), "{r:?}");
    });
    let back = h.rt.install("misbehave", &h.misbehave).unwrap();
    assert_eq!(back.digest, old);
}

#[test]
fn a_no_op_call_is_cheap() {
    let (_turn, h) = harness();
    for _ in 0..50 {
        h.rt.capabilities(&h.plain).unwrap();
    }
    let mut times: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            h.rt.capabilities(&h.plain).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "capabilities call over 1000 calls: median {:?}, p90 {:?}, p99 {:?} (allocator {:?})",
        times[500],
        times[900],
        times[990],
        h.rt.allocator()
    );
}

/// Set in the child process of [`a_small_address_space_falls_back_cleanly`].
const SMALL_VM_ENV: &str = "FERRY_TEST_SMALL_ADDRESS_SPACE";

#[test]
fn a_small_address_space_falls_back_cleanly() {
    if std::env::var_os(SMALL_VM_ENV).is_some() {
        // In the child, under `ulimit -v`: the big pool cannot be reserved,
        // yet drivers run and misbehaving ones are still contained.
        let (_turn, h) = harness();
        assert_ne!(h.rt.allocator(), ferry::runtime::AllocatorKind::Pooling);
        let (err, _) = misbehave(h, "loop");
        assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
        let (err, _) = misbehave(h, "grow");
        assert!(matches!(err, CallError::OutOfMemory { .. }), "{err:?}");
        both_drivers_still_serve(h);
        println!("small address space: allocator {:?}", h.rt.allocator());
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 3000000 && exec \"$0\" --exact a_small_address_space_falls_back_cleanly --nocapture")
        .arg(&exe)
        .env(SMALL_VM_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("small address space: allocator"),
        "{stdout}"
    );
    for line in stdout.lines().filter(|l| l.contains("allocator")) {
        println!("{line}");
    }
}
