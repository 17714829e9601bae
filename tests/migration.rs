//! Migration through a real `ferry serve`: every path of seed 000 on the
//! embedded default arrays, the refusals of seed 003, abort, and kill -9 in
//! the middle of a host copy.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::migrations::{
    allocated, check_pattern, create, lun_path, migrate, wait_end, with_attachment, write_pattern,
};
use support::{Server, qemu_io};

const MIB: u64 = 1 << 20;

/// Each path of seed 000 with the example drivers: the data arrives intact,
/// the source LUN is gone, the destination is no fatter than the source,
/// the list never shows a second volume.
#[test]
fn every_path_moves_the_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    every_path(&server, dir.path());
}

/// The same paths with the example drivers as built against contract
/// 0.1.0, configured over the built-in ones: the host runs them unchanged
/// and says which contract each was built against.
#[test]
fn every_path_moves_the_data_intact_with_0_1_0_components() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = ferry::config::DEFAULT_CONFIG.to_owned();
    for (name, path) in ferry::guests::CONTRACT_0_1_FIXTURES {
        text.push_str(&format!(
            "\n[[driver]]\nname = \"{name}\"\npath = {path:?}\n"
        ));
    }
    let config = dir.path().join("ferry.toml");
    std::fs::write(&config, text).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let (status, drivers) = server.call("GET", "/v1/drivers", None);
    assert_eq!(status, 200, "{drivers}");
    // The three example drivers that existed then are replaced by their
    // 0.1.0 builds; ferry-remote came with 0.2.0.
    for d in drivers["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["name"] != "ferry-remote")
    {
        let active = d["active_digest"].as_str().unwrap();
        let version = d["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["digest"] == active)
            .unwrap();
        assert_eq!(version["contract"], "0.1.0", "{d}");
    }
    // Contract 0.1.0 has no manage-existing: the host answers for it.
    let (status, e) = server.call(
        "POST",
        "/v1/volumes/manage",
        Some(json!({"name": "m", "array": "p1", "reference": "default/x"})),
    );
    assert_eq!(status, 422, "{e}");
    assert_eq!(e["error"]["code"], "driver_unsupported", "{e}");
    every_path(&server, &data);
}

fn every_path(server: &Server, dir: &Path) {
    let cases = [
        ("v1", "v2", "source-driver"),
        ("p1", "t1", "target-driver-async"),
        ("v2", "t1", "host-copy"),
        ("t1", "p1", "host-copy"),
    ];
    for (from, to, path) in cases {
        let id = create(server, &format!("{from}-to-{to}"), from, 256 * MIB);
        with_attachment(server, &id, write_pattern);
        let src_file = lun_path(dir, from, &id);
        let src_alloc = allocated(&src_file);
        assert!(src_alloc > 0, "{}", src_file.display());

        let (status, accepted) = migrate(server, &id, json!({"array": to}));
        assert_eq!(status, 202, "{from}->{to}: {accepted}");
        assert!(accepted["migration_id"].is_string());
        assert!(accepted["message"].as_str().unwrap().contains(to));
        let mut listed_during = 0;
        let (m, seen) = {
            let (_, l) = server.call("GET", "/v1/volumes", None);
            listed_during = listed_during.max(l["volumes"].as_array().unwrap().len());
            wait_end(server, &id, Duration::from_secs(120))
        };
        assert_eq!(m["migration_status"], "success", "{from}->{to}: {m}");
        assert_eq!(m["path"], path, "{from}->{to}: {m}");
        assert_eq!(m["progress"]["percent"], 100.0, "{m}");
        assert!(m["finished_at"].is_string() && m["started_at"].is_string());
        assert!(
            seen.iter()
                .all(|(s, ms)| s == "migrating" || ms == "success"),
            "status must be migrating for the whole migration: {seen:?}"
        );

        let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
        assert_eq!(v["array"], to, "{v}");
        assert_eq!(v["status"], "available", "{v}");
        assert_eq!(v["migration_status"], "success");
        assert!(!src_file.exists(), "{from}->{to}: source LUN still there");
        let dst_alloc = allocated(&lun_path(dir, to, &id));
        assert!(
            dst_alloc <= src_alloc,
            "{from}->{to}: destination allocates {dst_alloc} > source {src_alloc}"
        );
        with_attachment(server, &id, check_pattern);
        let (_, l) = server.call("GET", "/v1/volumes", None);
        let ids: Vec<&str> = l["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.iter().filter(|x| **x == id).count(), 1);
        assert!(listed_during <= ids.len());
    }
}

/// Admission says exactly why a migration won't proceed.
#[test]
fn refusals_are_specific_and_concurrent_requests_race_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "zoning = [[\"a\", \"b\"]]\n\
         [[array]]\nname = \"a\"\ndriver = \"plain\"\n\
         [[array]]\nname = \"b\"\ndriver = \"plain\"\npools = [\"default\", \"gold\"]\n\
         [[array]]\nname = \"tiny\"\ndriver = \"plain\"\ncapacity_bytes = 1048576\n",
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let id = create(&server, "v", "a", 64 * MIB);
    let unknown = "7b0c5a52-8a43-4c1e-9a5e-6c0f2f4d9b11";
    let cases = [
        (unknown, json!({"array": "b"}), 404, "volume_not_found"),
        (id.as_str(), json!({"array": "zz"}), 404, "array_not_found"),
        (
            id.as_str(),
            json!({"array": "b", "pool": "zz"}),
            404,
            "pool_not_found",
        ),
        (id.as_str(), json!({"array": "a"}), 400, "same_location"),
        (id.as_str(), json!({"array": "tiny"}), 422, "no_space"),
        (id.as_str(), json!({"pool": "gold"}), 400, "invalid_body"),
    ];
    for (vol, body, status, code) in cases {
        let (got, answer) = migrate(&server, vol, body.clone());
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    // In error (an operator's reset): not migratable; available again, it is.
    let (got, answer) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/reset-status"),
        Some(json!({"status": "error"})),
    );
    assert_eq!(got, 200, "{answer}");
    let (got, answer) = migrate(&server, &id, json!({"array": "b"}));
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (409, Some("not_migratable")),
        "{answer}"
    );
    let (got, answer) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/reset-status"),
        Some(json!({"status": "available"})),
    );
    assert_eq!(got, 200, "{answer}");
    // Nothing to abort.
    let (got, answer) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (409, Some("no_migration_running"))
    );
    let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
    assert_eq!(m["migration_status"], Value::Null, "never migrated: {m}");

    // Two concurrent requests: exactly one wins.
    let answers: Vec<(u16, Value)> = std::thread::scope(|s| {
        let (server, id) = (&server, id.as_str());
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(move || migrate(server, id, json!({"array": "b", "pool": "gold"}))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut codes: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    codes.sort();
    // The loser sees the winner running, or, when the winner already
    // finished, a volume that lives at the destination now.
    let loser = answers.iter().find(|(s, _)| *s != 202).unwrap();
    match loser.0 {
        409 => assert_eq!(loser.1["error"]["code"], "migration_in_progress"),
        400 => assert_eq!(loser.1["error"]["code"], "same_location"),
        _ => panic!("{answers:?}"),
    }
    assert_eq!(codes[0], 202, "exactly one wins: {answers:?}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["array"].as_str(), v["pool"].as_str()),
        (Some("b"), Some("gold"))
    );
}

fn throttled_config(dir: &Path, bytes_per_sec: u64) -> std::path::PathBuf {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "copy_bandwidth_bytes_per_sec = {bytes_per_sec}\n\
             [[array]]\nname = \"a\"\ndriver = \"plain\"\n\
             [[array]]\nname = \"b\"\ndriver = \"plain\"\n"
        ),
    )
    .unwrap();
    config
}

/// Abort during a host copy rolls back: the source is intact, the hidden
/// destination is gone, the status is restored.
#[test]
fn abort_rolls_back_a_host_copy() {
    let dir = tempfile::tempdir().unwrap();
    let config = throttled_config(dir.path(), 32 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = create(&server, "big", "a", 256 * MIB);
    with_attachment(&server, &id, |uri| {
        qemu_io(uri, &["write -P 0x44 0 128M", "flush"])
    });
    let (status, _) = migrate(&server, &id, json!({"array": "b"}));
    assert_eq!(status, 202);
    // Wait until the copy has made progress, then abort.
    let start = Instant::now();
    loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if m["progress"]["done_bytes"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(m["path"], "host-copy");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no progress: {m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, answer) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert_eq!(status, 202, "{answer}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "aborted", "{m}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("available"), Some("a"))
    );
    assert!(
        !lun_path(&data, "b", &id).exists(),
        "destination left behind"
    );
    with_attachment(&server, &id, |uri| qemu_io(uri, &["read -P 0x44 0 128M"]));
}

/// kill -9 during a host copy, again and again: after each restart the
/// migration resumes from its checkpoint; in the end it succeeds with the
/// data intact.
#[test]
fn kill_9_during_host_copy_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = throttled_config(dir.path(), 96 * MIB);
    let data = dir.path().join("data");
    let mut server = Server::start(&data, Some(&config));
    let id = create(&server, "crash", "a", 512 * MIB);
    with_attachment(&server, &id, |uri| {
        qemu_io(
            uri,
            &["write -P 0x55 0 192M", "write -P 0x66 300M 64M", "flush"],
        )
    });
    let (status, _) = migrate(&server, &id, json!({"array": "b"}));
    assert_eq!(status, 202);
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut kills = 0;
    let start = Instant::now();
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(400 + rng % 800));
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if matches!(
            m["migration_status"].as_str(),
            Some("success" | "error" | "aborted")
        ) {
            break;
        }
        let dir = server.kill();
        kills += 1;
        server = Server::start(&dir, Some(&config));
        assert!(start.elapsed() < Duration::from_secs(120), "never finished");
    }
    assert!(kills >= 2, "the copy ended before it could be killed twice");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "after {kills} kills: {m}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("available"), Some("b"))
    );
    assert!(!lun_path(&data, "a", &id).exists());
    with_attachment(&server, &id, |uri| {
        qemu_io(
            uri,
            &[
                "read -P 0x55 0 192M",
                "read -P 0 192M 108M",
                "read -P 0x66 300M 64M",
                "read -P 0 364M 148M",
            ],
        )
    });
}

/// A failure at any step rolls the migration back automatically: the
/// volume is where it was with its data, its status restored, the
/// destination gone, `migration_status = error` with the reason. A failure
/// after the switch (removing the source) never goes back.
#[test]
fn failure_at_every_step_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "zoning = [[\"f1\", \"f2\"]]\n\
             [limits]\ndeadline_ms = 1000\n\
             [[array]]\nname = \"f1\"\ndriver = \"faulty\"\n\
             [[array]]\nname = \"f2\"\ndriver = \"faulty\"\n\
             [[driver]]\nname = \"faulty\"\npath = {:?}\n",
            ferry::guests::FAULTY_PATH
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let cases = [
        ("fail:migrate-volume@f1", "migrate-volume failed"),
        ("trap:migrate-volume@f1", "crashed"),
        ("loop:migrate-volume@f1", "deadline"),
        ("fail:take-over-remote-lun@f2", "take-over"),
        ("trap:migrate-volume-target@f2", "crashed"),
        (
            "fail:initialize-connection@f2",
            "destination LUN unavailable",
        ),
        ("fail:create-volume@f2", "destination could not be created"),
        ("short:create-volume@f2", "host copy failed"),
    ];
    for (name, reason) in cases {
        let id = create(&server, name, "f1", 8 * MIB);
        with_attachment(&server, &id, |uri| {
            qemu_io(uri, &["write -P 0x77 0 8M", "flush"])
        });
        let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
        assert_eq!(status, 202, "{name}: {body}");
        let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
        assert_eq!(m["migration_status"], "error", "{name}: {m}");
        let err = m["error"].as_str().unwrap_or("");
        assert!(
            err.contains(reason),
            "{name}: error {err:?} should mention {reason:?}"
        );
        let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
        assert_eq!(
            (
                v["status"].as_str(),
                v["array"].as_str(),
                v["migration_status"].as_str()
            ),
            (Some("available"), Some("f1"), Some("error")),
            "{name}: {v}"
        );
        assert!(
            !lun_path(&data, "f2", &id).exists(),
            "{name}: destination left behind"
        );
        with_attachment(&server, &id, |uri| qemu_io(uri, &["read -P 0x77 0 8M"]));
        // The volume can be migrated and deleted again.
        let (status, _) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
        assert_eq!(status, 204, "{name}: volume not deletable after rollback");
    }

    // After the switch a failure to remove the source does not go back.
    let id = create(&server, "fail:delete-volume@f1", "f1", 8 * MIB);
    let (status, _) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202);
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
    // A success carries no error: what went wrong without failing it is a
    // warning.
    assert!(m["error"].is_null(), "{m}");
    assert!(
        m["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("source LUN could not be removed"),
        "{m}"
    );
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(v["array"], "f2");
}

/// Every state change is an event: kept in the log (paged as JSON) and
/// streamed as server-sent events, resumable with Last-Event-ID; the
/// stream ends when the host stops.
#[test]
fn events_record_and_stream_every_change() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    // A live SSE client from the start.
    let mut sse = std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    write!(
        sse,
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        server.token
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let id = create(&server, "evented", "t1", 16 * MIB);
    let (status, _) = migrate(&server, &id, json!({"array": "p1"}));
    assert_eq!(status, 202);
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success");

    let (status, page) = server.call("GET", "/v1/events?after=0&follow=false", None);
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["volume"] == id.as_str())
        .collect();
    let changes: Vec<(String, String)> = mine
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("volume", "migrating"),
        ("migration", "starting"),
        ("migration", "migrating"),
        ("migration", "success"),
        ("volume", "available"),
    ] {
        assert!(
            changes.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} missing from {changes:?}"
        );
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for e in &mine {
        assert!(e["at"].is_string(), "{e}");
    }
    // Every event of the migration names it; the volume's own life cycle
    // (its creation) came before and names none.
    for e in mine.iter().filter(|e| e["kind"] == "migration") {
        assert!(e["migration"].is_string(), "{e}");
    }

    // The live stream saw the migration succeed.
    let mut reader = BufReader::new(sse.try_clone().unwrap());
    let mut line = String::new();
    let mut saw_success = false;
    while !saw_success {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended early"
        );
        saw_success =
            line.starts_with("data:") && line.contains("\"success\"") && line.contains(&id);
    }
    // Resume after the first event: the replay starts right after it.
    let first = seqs[0];
    let (status, page) = server.call(
        "GET",
        &format!("/v1/events?after={first}&follow=false&limit=1"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(page["events"][0]["seq"].as_u64(), Some(seqs[1]));

    // Stopping the host ends the stream promptly.
    let started = Instant::now();
    server.stop();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream held the shutdown"
    );
}

/// The CLI admits a migration, waits for it with a progress line, and exits
/// by the result; a refusal prints the server's reason and exits non-zero.
#[test]
fn cli_migrates_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let id = create(&server, "cli-migrated", "v2", 32 * MIB);
    let out = server.cli(&["volume", "migrate", &id, "--to", "t1", "--wait"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted"));
    assert!(
        err.contains("success") && err.contains("host-copy"),
        "{err}"
    );
    let out = server.cli(&["--json", "volume", "migration", &id]);
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["migration_status"], "success");
    // The source LUN goes right after the success; the text says so.
    wait_end(&server, &id, Duration::from_secs(30));
    let out = server.cli(&["volume", "migration", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("removal:    source LUN removed\n"), "{text}");
    let out = server.cli(&["volume", "migrate", &id, "--to", "t1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("same_location"));
    let out = server.cli(&["volume", "abort-migration", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_migration_running"));
}

/// A move between two pools of one array: the plain driver declines, the
/// host copies into the other pool.
#[test]
fn a_move_between_pools_of_one_array() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "[[array]]\nname = \"a\"\ndriver = \"plain\"\npools = [\"default\", \"gold\"]\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = create(&server, "pools", "a", 256 * MIB);
    with_attachment(&server, &id, write_pattern);
    let (status, body) = migrate(&server, &id, json!({"array": "a", "pool": "gold"}));
    assert_eq!(status, 202, "{body}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["array"].as_str(), v["pool"].as_str()),
        (Some("a"), Some("gold")),
        "{v}"
    );
    let gold = data.join("arrays/a/gold").join(format!("volume-{id}"));
    assert!(gold.exists() && !lun_path(&data, "a", &id).exists());
    with_attachment(&server, &id, check_pattern);
}

/// In `completing` the volume lives on the destination and its source is
/// being removed: an abort is refused with `abort_too_late`, and the
/// migration succeeds.
#[test]
fn the_source_is_removed_after_the_success_and_nothing_new_starts_before() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::migrations::faulty_config(dir.path(), 5000);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = create(&server, "slow:delete-volume@f1", "f1", 8 * MIB);
    let (status, _) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202);
    // The volume is usable on f2 while its source LUN (a slow driver's)
    // is still being removed.
    let m = support::migrations::wait_source_removal(&server, &id, Duration::from_secs(30));
    assert!(m["finished_at"].is_string(), "{m}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("available"), Some("f2")),
        "{v}"
    );
    with_attachment(&server, &id, |uri| qemu_io(uri, &["write -P 0x3c 0 1M"]));
    // It ended: there is nothing to abort, and a new migration waits for
    // the removal.
    let (status, body) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert_eq!(status, 409, "{body}");
    let (status, body) = migrate(&server, &id, json!({"array": "f1"}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("migration_in_progress")),
        "{body}"
    );
    let (m, _) = wait_end(&server, &id, Duration::from_secs(30));
    assert_eq!(
        (m["migration_status"].as_str(), m["source_removal"].as_str()),
        (Some("success"), Some("done")),
        "{m}"
    );
    assert!(
        !lun_path(&data, "f1", &id).exists(),
        "source LUN left behind"
    );
    let (status, body) = migrate(&server, &id, json!({"array": "f1"}));
    assert_eq!(status, 202, "{body}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(30));
    assert_eq!(m["migration_status"], "success", "{m}");
    with_attachment(&server, &id, |uri| qemu_io(uri, &["read -P 0x3c 0 1M"]));
}

/// While `migrating` (a host copy) the volume cannot be attached; the
/// refusal changes nothing.
#[test]
fn attach_is_refused_while_migrating() {
    let dir = tempfile::tempdir().unwrap();
    let config = throttled_config(dir.path(), 8 * MIB);
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let id = create(&server, "busy", "a", 256 * MIB);
    with_attachment(&server, &id, write_pattern);
    let (status, _) = migrate(&server, &id, json!({"array": "b"}));
    assert_eq!(status, 202);
    support::migrations::wait_phase(&server, &id, "host_copy", Duration::from_secs(10));
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "late"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invalid_state")),
        "{body}"
    );
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(v["attachments"], json!([]), "{v}");
    assert_eq!(v["status"], "migrating", "{v}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success", "{m}");
}

/// An array whose driver is not installed: a migration to it is refused at
/// admission with `driver_not_loaded` and changes nothing; once a driver of
/// that name is uploaded, the same request is admitted.
#[test]
fn a_migration_to_an_array_without_its_driver_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        "[[array]]\nname = \"a\"\ndriver = \"plain\"\n\
         [[array]]\nname = \"x\"\ndriver = \"acme\"\n",
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let id = create(&server, "v", "a", 8 * MIB);
    let (status, body) = migrate(&server, &id, json!({"array": "x"}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("driver_not_loaded")),
        "{body}"
    );
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["status"].as_str(), v["migration_status"].as_str()),
        (Some("available"), None),
        "{v}"
    );
    let plain = ferry::guests::EXAMPLE_DRIVERS
        .iter()
        .find(|(n, _)| *n == "plain")
        .unwrap()
        .1;
    let (status, body) = server.send_bytes("PUT", "/v1/drivers/acme", plain);
    assert_eq!(status, 201, "{body}");
    let (status, body) = migrate(&server, &id, json!({"array": "x"}));
    assert_eq!(status, 202, "{body}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
}

/// After the switch a failing completion is retried, never undone: the
/// error and the attempt count are in the status query, the volume stays
/// `migrating_attachable`, and once the cause is gone the migration ends.
#[test]
fn completion_retries_after_the_switch_stay_visible() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::volume_model::config(dir.path(), 2 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = create(&server, "retry", "p1", 32 * MIB);
    with_attachment(&server, &id, |uri| {
        qemu_io(uri, &["write -P 0x5a 0 16M", "flush"])
    });
    let (status, _) = migrate(&server, &id, json!({"array": "t1"}));
    assert_eq!(status, 202);
    support::volume_model::wait_for(
        &server,
        &id,
        "migrating_attachable",
        Duration::from_secs(10),
    );
    let source = lun_path(&data, "p1", &id);
    let away = dir.path().join("away");
    std::fs::rename(&source, &away).unwrap();
    let start = Instant::now();
    let m = loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if m["attempts"].as_u64().unwrap_or(0) >= 2 {
            break m;
        }
        assert_eq!(m["migration_status"], "migrating_attachable", "{m}");
        assert!(start.elapsed() < Duration::from_secs(20), "no retries: {m}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        m["error"].as_str().unwrap_or("").contains("retrying"),
        "{m}"
    );
    std::fs::rename(&away, &source).unwrap();
    let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success", "{m}");
    assert!(m["error"].is_null() && m["attempts"] == 0, "{m}");
    with_attachment(&server, &id, |uri| {
        qemu_io(uri, &["read -P 0x5a 0 16M", "read -P 0 16M 16M"])
    });
}
