//! Migration under abort, driver faults and broken promises, through a real
//! `ferry serve`: an accepted abort always takes effect; a driver that
//! moves the data and then traps or overruns its deadline never costs the
//! volume its only copy; a driver is held to the capabilities it declared;
//! progress and status say what is true.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::migrations::{
    MIB, check_data, create, faulty_config, lun_path, migrate, volume_with_data, wait_end,
    wait_phase, with_attachment,
};
use support::{Server, qemu_io};

/// The reasons of volume `id`'s events, once one contains `last` (or
/// after 10 s): an event is emitted right after the record it reports.
fn event_reasons_until(server: &Server, id: &str, last: &str) -> Vec<String> {
    let start = Instant::now();
    loop {
        let (_, events) = server.call("GET", "/v1/events?limit=1000", None);
        let reasons: Vec<String> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["volume"] == id)
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect();
        if reasons.iter().any(|r| r.contains(last)) || start.elapsed() > Duration::from_secs(10) {
            return reasons;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn volume(server: &Server, id: &str) -> Value {
    let (status, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

fn abort(server: &Server, id: &str) -> (u16, Value) {
    server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None)
}

/// Ends `aborted` with the volume back on `array`, available, its data
/// whole, nothing left on `other`.
fn assert_back(server: &Server, data: &Path, id: &str, array: &str, other: &str) {
    let (m, _) = wait_end(server, id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "aborted", "{m}");
    let v = volume(server, id);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("available"), Some(array)),
        "{v}"
    );
    assert!(lun_path(data, array, id).exists(), "no LUN on {array}");
    assert!(!lun_path(data, other, id).exists(), "LUN left on {other}");
    check_data(server, id);
}

/// An abort during the source driver's own copy stops the copy through the
/// host functions it uses: the driver cleans up, the migration rolls back.
#[test]
fn abort_during_a_source_drivers_copy_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 5000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = volume_with_data(&server, "slow:migrate-volume@f1", "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    wait_phase(&server, &id, "source_driver", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let (status, m) = abort(&server, &id);
    assert_eq!(status, 202, "{m}");
    // Visible at once: the abort is under way.
    assert_eq!(m["migration_status"], "aborting", "{m}");
    assert_eq!(m["abort_requested"], true, "{m}");
    // Asking again answers the same.
    let (status, again) = abort(&server, &id);
    assert_eq!(status, 202, "{again}");
    assert_back(&server, &data, &id, "f1", "f2");
}

/// An abort that comes after the source driver finished its move (its
/// source LUN is gone) is honoured by bringing the volume back.
#[test]
fn abort_after_the_source_driver_moved_brings_the_volume_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 5000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = volume_with_data(&server, "linger:migrate-volume@f1", "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    // The driver moves at once, then lingers 1.5 s before it answers.
    let start = Instant::now();
    while lun_path(&data, "f1", &id).exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "never moved");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, m) = abort(&server, &id);
    assert_eq!(status, 202, "{m}");
    let (_, seen) = wait_end(&server, &id, Duration::from_secs(60));
    assert_back(&server, &data, &id, "f1", "f2");
    assert!(
        seen.iter().all(|(_, ms)| ms != "success"),
        "an ignored abort: {seen:?}"
    );
    let reasons = event_reasons_until(&server, &id, "bringing the volume back");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("bringing the volume back")),
        "{reasons:?}"
    );
}

/// A driver that moves the data and then traps, or loops past its
/// deadline, leaves the outcome unknown: the host asks again (drivers are
/// idempotent) and learns the move is done. The data is never deleted.
#[test]
fn a_driver_that_moves_then_traps_or_overruns_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 1000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    for name in ["move-trap:migrate-volume@f1", "move-loop:migrate-volume@f1"] {
        let id = volume_with_data(&server, name, "f1");
        let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
        assert_eq!(status, 202, "{name}: {body}");
        let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
        assert_eq!(m["migration_status"], "success", "{name}: {m}");
        assert_eq!(m["path"], "source-driver", "{name}: {m}");
        let v = volume(&server, &id);
        assert_eq!(v["array"], "f2", "{name}: {v}");
        assert!(!lun_path(&data, "f1", &id).exists(), "{name}");
        check_data(&server, &id);
    }
}

/// Seed 003's worst case, as seen on a busy host: an abort, then the source
/// driver finishes its move and overruns its deadline. The host learns the
/// move is done by asking again, and honours the abort by bringing the
/// volume back: nothing is lost, nothing ignored.
#[test]
fn an_abort_and_an_overrun_after_the_move_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 1000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = volume_with_data(&server, "move-loop:migrate-volume@f1", "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    std::thread::sleep(Duration::from_millis(50));
    let (status, m) = abort(&server, &id);
    assert_eq!(status, 202, "{m}");
    assert_back(&server, &data, &id, "f1", "f2");
}

/// The example `vendor-copy` driver moves `v1`->`v2` in one call; an abort
/// 50 ms after the request always takes effect (its copy is stopped, or its
/// finished move brought back).
#[test]
fn an_abort_of_a_vendor_copy_move_always_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, None);
    let id = create(&server, "vc", "v1", 256 * MIB);
    with_attachment(&server, &id, |uri| {
        qemu_io(
            uri,
            &[
                "write -P 0x5a 0 8M",
                "write -P 0xa5 24M 1M",
                "write -P 0x3c 100M 64M",
                "flush",
            ],
        )
    });
    let (status, body) = migrate(&server, &id, json!({"array": "v2"}));
    assert_eq!(status, 202, "{body}");
    std::thread::sleep(Duration::from_millis(50));
    let (status, m) = abort(&server, &id);
    // Refused only when the whole migration already ended.
    if status == 409 {
        assert_eq!(m["error"]["code"], "no_migration_running", "{m}");
        return;
    }
    assert_eq!(status, 202, "{m}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "aborted", "{m}");
    let v = volume(&server, &id);
    assert_eq!(v["array"], "v1", "{v}");
    assert!(!lun_path(&data, "v2", &id).exists());
    with_attachment(&server, &id, |uri| {
        qemu_io(
            uri,
            &[
                "read -P 0x5a 0 8M",
                "read -P 0xa5 24M 1M",
                "read -P 0x3c 100M 64M",
            ],
        )
    });
}

/// A target driver that answers an asynchronous move it never declared is
/// not believed: its move is discarded and the host copies, saying why.
#[test]
fn an_undeclared_async_answer_fails_over_to_a_host_copy() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 5000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = volume_with_data(&server, "async:migrate-volume-target@f2", "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    let (m, seen) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
    assert_eq!(m["path"], "host-copy", "{m}");
    assert!(
        m["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("without declaring async-target-migration"),
        "{m}"
    );
    assert!(
        seen.iter().all(|(_, ms)| ms != "migrating_attachable"),
        "{seen:?}"
    );
    // Every path decision reaches the event log with its reason (the last
    // event follows the record it reports: wait for it).
    let reasons = event_reasons_until(&server, &id, "migration complete");
    for decision in [
        "the source driver declined",
        "the target array takes over the LUN",
        "without declaring async-target-migration",
        "destination created; copying",
        "migration complete",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(decision)),
            "no event says {decision:?}: {reasons:?}"
        );
    }
    check_data(&server, &id);
}

/// The synchronous target path: the target driver copies the taken-over LUN
/// itself; the host removes the source.
#[test]
fn the_synchronous_target_path_moves_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 5000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = volume_with_data(&server, "sync:migrate-volume-target@f2", "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
    assert_eq!(m["path"], "target-driver", "{m}");
    assert!(!lun_path(&data, "f1", &id).exists());
    check_data(&server, &id);
}

/// A volume never migrated has no migration: every field null, no 100 %.
/// A finished one has its error only when it failed, and a progress whose
/// total never changed.
#[test]
fn progress_and_status_say_what_is_true() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, None);
    let id = create(&server, "fresh", "p1", 64 * MIB);
    let (status, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
    assert_eq!(status, 200, "{m}");
    assert!(m["migration_status"].is_null(), "{m}");
    assert!(m["progress"].is_null(), "{m}");
    assert!(m["error"].is_null(), "{m}");

    // A host copy (p1 -> v2, not zoned): poll it; the total is the volume's
    // size throughout and the done bytes never go back.
    with_attachment(&server, &id, |uri| {
        qemu_io(
            uri,
            &["write -P 0x11 0 16M", "write -P 0x22 40M 16M", "flush"],
        )
    });
    let (status, _) = migrate(&server, &id, json!({"array": "v2"}));
    assert_eq!(status, 202);
    let mut last = 0;
    loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        let p = &m["progress"];
        assert_eq!(p["total_bytes"], 64 * MIB, "{m}");
        let done = p["done_bytes"].as_u64().unwrap();
        assert!(done >= last, "progress went back: {last} -> {done}");
        last = done;
        if m["migration_status"] == "success" {
            assert!(m["error"].is_null(), "{m}");
            assert_eq!(p["percent"], 100.0, "{m}");
            break;
        }
        assert_ne!(m["migration_status"], "error", "{m}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `force_host_copy` skips both drivers' paths even where they would move
/// the volume themselves.
#[test]
fn force_host_copy_skips_the_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, None);
    let id = create(&server, "forced", "v1", 32 * MIB);
    with_attachment(&server, &id, |uri| {
        qemu_io(
            uri,
            &["write -P 0x5a 0 8M", "write -P 0xa5 24M 1M", "flush"],
        )
    });
    let (status, body) = migrate(
        &server,
        &id,
        json!({"array": "v2", "force_host_copy": true}),
    );
    assert_eq!(status, 202, "{body}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(
        (m["migration_status"].as_str(), m["path"].as_str()),
        (Some("success"), Some("host-copy")),
        "{m}"
    );
    check_data(&server, &id);
}

/// A migration started with `lock_volume` refuses an abort (`volume_locked`)
/// and changes nothing; `?force=true` aborts it all the same.
#[test]
fn a_locked_migration_refuses_an_abort_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path(), 5000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = volume_with_data(&server, "slow:migrate-volume@f1", "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2", "lock_volume": true}));
    assert_eq!(status, 202, "{body}");
    wait_phase(&server, &id, "source_driver", Duration::from_secs(10));
    let (status, body) = abort(&server, &id);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("volume_locked")),
        "{body}"
    );
    let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
    assert_eq!(
        (m["abort_requested"].as_bool(), m["lock_volume"].as_bool()),
        (Some(false), Some(true)),
        "{m}"
    );
    let (status, m) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migration/abort?force=true"),
        None,
    );
    assert_eq!(status, 202, "{m}");
    assert_back(&server, &data, &id, "f1", "f2");
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migration/abort?force=maybe"),
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query")),
        "{body}"
    );
}
