//! Tests that need a second process. The test binary runs itself again with
//! an environment variable naming the child's role; without it the child
//! tests return at once.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use uuid::Uuid;

use super::{RecordTable, Store, StoreError, StoreOptions};
use crate::model::{Volume, VolumeStatus};

const ROLE_ENV: &str = "FERRY_STORE_TEST_ROLE";
const PATH_ENV: &str = "FERRY_STORE_TEST_PATH";
const ROUND_ENV: &str = "FERRY_STORE_TEST_ROUND";
const READY: &str = "FERRY-CHILD-READY";
const KV_DRIVER: &str = "crash";
const KV_GROUP: usize = 3;
// Large enough that the crash test never trims, so every event can be checked.
const OPTIONS: StoreOptions = StoreOptions {
    event_capacity: 10_000_000,
    event_max_age: None,
};

fn spawn_child(test: &str, role: &str, path: &Path, round: u64) -> Child {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(PATH_ENV, path)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The role this process was started for, with the database path and round.
fn child_role() -> Option<(String, String, u64)> {
    let role = std::env::var(ROLE_ENV).ok()?;
    let path = std::env::var(PATH_ENV).ok()?;
    let round = std::env::var(ROUND_ENV).ok()?.parse().ok()?;
    Some((role, path, round))
}

fn volume_of(round: u64, i: u64) -> Volume {
    Volume {
        id: Uuid::from_u128((u128::from(round) << 64) | u128::from(i)),
        name: format!("crash-{round}-{i}"),
        description: None,
        size_bytes: 512 * (i + 1),
        status: VolumeStatus::Available,
        migration_status: None,
        array: "t1".into(),
        pool: "default".into(),
        provider_location: Some("x".repeat((i % 200) as usize)),
        attachments: vec![],
        created_at: format!("2024-01-01T00:00:00.{i:09}Z"),
        migration: None,
    }
}

fn record_key(round: u64, i: u64) -> String {
    format!("r{round}-{i:08}")
}

fn record_of(round: u64, i: u64) -> serde_json::Value {
    json!({"round": round, "i": i, "pad": "p".repeat((i % 300) as usize)})
}

fn kv_key(round: u64, i: u64, part: usize) -> String {
    format!("r{round}/{i:08}/{part}")
}

/// Child of `killed_writer_leaves_a_consistent_store`: writes in four steps
/// per item, each its own transaction, until killed.
#[test]
fn child_crash_writer() {
    let Some((role, path, round)) = child_role() else {
        return;
    };
    assert_eq!(role, "writer");
    let s = Store::open_with(Path::new(&path), OPTIONS).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        s.put_volume(&volume_of(round, i)).unwrap();
        let rec = serde_json::to_vec(&record_of(round, i)).unwrap();
        s.put_record(RecordTable::Migrations, &record_key(round, i), &rec)
            .unwrap();
        let batch = (0..KV_GROUP)
            .map(|p| (kv_key(round, i, p), Some(vec![p as u8; 100 + p])))
            .collect();
        s.kv_commit(KV_DRIVER, batch).unwrap();
        s.append_event(&json!({"round": round, "i": i})).unwrap();
        if i == 0 {
            println!("{READY}");
        }
        if Instant::now() > deadline {
            break;
        }
    }
}

/// What one round left behind, checked for consistency.
struct RoundState {
    volumes: u64,
    records: u64,
    kv_groups: u64,
    events: u64,
}

fn check_round(s: &Store, round: u64) -> RoundState {
    let vols: Vec<Volume> = s
        .list_volumes()
        .unwrap()
        .into_iter()
        .filter(|v| (v.id.as_u128() >> 64) as u64 == round)
        .collect();
    for (i, v) in vols.iter().enumerate() {
        assert_eq!(*v, volume_of(round, i as u64), "round {round}");
    }
    let volumes = vols.len() as u64;

    let prefix = format!("r{round}-");
    let recs: Vec<(String, Vec<u8>)> = s
        .records(RecordTable::Migrations)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    for (i, (k, v)) in recs.iter().enumerate() {
        assert_eq!(*k, record_key(round, i as u64));
        let parsed: serde_json::Value = serde_json::from_slice(v).unwrap();
        assert_eq!(parsed, record_of(round, i as u64));
    }
    let records = recs.len() as u64;

    let keys = s.kv_keys(KV_DRIVER, &format!("r{round}/")).unwrap();
    assert_eq!(keys.len() % KV_GROUP, 0, "half a batch: {keys:?}");
    let kv_groups = (keys.len() / KV_GROUP) as u64;
    for i in 0..kv_groups {
        for p in 0..KV_GROUP {
            let k = kv_key(round, i, p);
            assert_eq!(keys[i as usize * KV_GROUP + p], k);
            assert_eq!(
                s.kv_get(KV_DRIVER, &k).unwrap(),
                Some(vec![p as u8; 100 + p])
            );
        }
    }

    let mut last_seq = 0;
    let mut events = 0;
    for (seq, ev) in s.events_after(0, usize::MAX).unwrap() {
        assert!(seq > last_seq);
        last_seq = seq;
        if ev["round"] == json!(round) {
            assert_eq!(ev, json!({"round": round, "i": events}));
            events += 1;
        }
    }

    // Steps run in order, each committed before the next starts, so a kill
    // leaves every step's count equal, or the earlier ones one ahead.
    assert!(
        volumes >= records && records >= kv_groups && kv_groups >= events && events + 1 >= volumes,
        "round {round}: volumes {volumes}, records {records}, kv {kv_groups}, events {events}"
    );
    RoundState {
        volumes,
        records,
        kv_groups,
        events,
    }
}

#[test]
fn killed_writer_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let mut done: Vec<RoundState> = Vec::new();
    for round in 0..4u64 {
        let mut child = spawn_child("child_crash_writer", "writer", &path, round);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next() {
                // libtest prints the test's name on the same line first.
                Some(Ok(line)) if line.contains(READY) => break,
                Some(Ok(_)) => {}
                other => panic!("child ended before it was ready: {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(rand::random_range(1..150)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

        let s = Store::open_with(&path, OPTIONS).unwrap();
        let state = check_round(&s, round);
        assert!(state.volumes >= 1 && state.events >= 1);
        // Earlier rounds are exactly as they were.
        for (r, before) in done.iter().enumerate() {
            let now = check_round(&s, r as u64);
            assert_eq!(
                (now.volumes, now.records, now.kv_groups, now.events),
                (
                    before.volumes,
                    before.records,
                    before.kv_groups,
                    before.events
                )
            );
        }
        // The store is writable and sequence numbers keep increasing.
        let last = s.events_after(0, usize::MAX).unwrap().last().unwrap().0;
        assert!(s.append_event(&json!({"after": round})).unwrap() > last);
        done.push(state);
    }
}

/// Child of `second_process_is_told_the_store_is_in_use`.
#[test]
fn child_open_probe() {
    let Some((role, path, _)) = child_role() else {
        return;
    };
    assert_eq!(role, "probe");
    match Store::open(Path::new(&path)) {
        Err(e @ StoreError::InUse { .. }) => println!("PROBE-ERROR {e}"),
        other => println!("PROBE-UNEXPECTED {other:?}"),
    }
}

#[test]
fn second_process_is_told_the_store_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let held = Store::open(&path).unwrap();
    let child = spawn_child("child_open_probe", "probe", &path, 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("PROBE-").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no probe line in {stdout}"));
    assert!(line.starts_with("PROBE-ERROR"), "{line}");
    assert!(line.contains("in use by another Ferry process"), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
    drop(held);
}
