//! Live migration of attached volumes through a real `ferry serve`: the
//! clients' NBD connections stay open through the whole move and the
//! switch (fio verifying every block it wrote, qemu-io checking a pattern
//! on a second attachment), aborts before and after the switch put the
//! volume back with the clients still connected, and kill -9 in a loop
//! loses no flushed write and strands no volume.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::migrations::{faulty_config_with, wait_end, wait_phase};
use support::volume_model::{
    Model, Rng, create_with_pattern, create_with_pattern_on, io, migration, random_write_cmds,
    verify, wait_for,
};
use support::{Server, export_of, qemu_io, require_tool};

const MIB: u64 = 1 << 20;

/// Arrays `p1` and `p2` of the `plain` driver (no driver moves anything,
/// so the host moves attached volumes itself), the background fill paced
/// at `bps`.
fn config(dir: &std::path::Path, bps: u64) -> std::path::PathBuf {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "hydration_bandwidth_bytes_per_sec = {bps}\n\
             [[array]]\nname = \"p1\"\ndriver = \"plain\"\n\
             [[array]]\nname = \"p2\"\ndriver = \"plain\"\n"
        ),
    )
    .unwrap();
    config
}

/// Attaches volume `id` for `server_name`; the attachment's id and URI.
fn attach_as(server: &Server, id: &str, server_name: &str) -> (String, String) {
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({ "server": server_name })),
    );
    assert_eq!(status, 201, "{a}");
    (
        a["id"].as_str().unwrap().to_owned(),
        a["uri"].as_str().unwrap().to_owned(),
    )
}

fn migrate(server: &Server, id: &str, array: &str) {
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({ "array": array })),
    );
    assert_eq!(status, 202, "an in-use volume migrates: {body}");
}

fn volume(server: &Server, id: &str) -> Value {
    server.call("GET", &format!("/v1/volumes/{id}"), None).1
}

/// Asks to abort the volume's migration; the ask must be accepted.
fn ask_abort(server: &Server, id: &str) {
    let (status, body) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert!(status == 202 || status == 200, "{status} {body}");
}

/// Waits for the migration's end and checks that no attachment is
/// switched (whatever switched went back); returns the migration.
fn wait_end_unswitched(server: &Server, id: &str, limit: Duration) -> Value {
    let (m, _) = wait_end(server, id, limit);
    assert_eq!(
        m["switched_attachments"].as_array().map(Vec::len),
        Some(0),
        "{m}"
    );
    m
}

/// The `switched` events of the volume's migrations.
fn switch_events(server: &Server, id: &str) -> Vec<Value> {
    let (status, page) = server.call("GET", "/v1/events?follow=false", None);
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["volume"] == id && e["to"] == "switched")
        .collect()
}

/// One qemu-io process, one NBD connection: `rounds` passes of reading
/// the model's `[from, to)` with a pause between them. It fails on any
/// I/O error or pattern mismatch; qemu-io never reconnects.
fn reader(uri: &str, model: &Model, from: u64, to: u64, rounds: usize) -> std::process::Child {
    let mut args = vec!["-f".to_owned(), "raw".to_owned()];
    for _ in 0..rounds {
        for c in model.reads(from, to) {
            args.push("-c".into());
            args.push(c);
        }
        args.push("-c".into());
        args.push("sleep 200".into());
    }
    args.push(uri.to_owned());
    Command::new("qemu-io")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io")
}

/// Waits for a client that must end well: exit status 0 and none of
/// `bad` in what it printed.
fn client_ok(child: std::process::Child, what: &str, bad: &[&str]) {
    let out = child.wait_with_output().expect("client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {text}");
    assert!(!bad.iter().any(|b| text.contains(b)), "{what}: {text}");
}

fn reader_ok(child: std::process::Child) {
    client_ok(
        child,
        "qemu-io",
        &["Pattern verification failed", "failed:"],
    );
}

/// fio writing 4k blocks with crc32c checksums into `[offset, offset +
/// 64M)` over and over (each loop verifies what it wrote), on one
/// connection.
fn fio_writer(uri: &str, offset_mib: u64, loops: u32) -> std::process::Child {
    Command::new("fio")
        .args([
            "--name=live",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--size=64M",
            &format!("--offset={offset_mib}M"),
            &format!("--loops={loops}"),
            "--verify=crc32c",
            "--verify_state_save=0",
            "--do_verify=1",
            "--verify_fatal=1",
            "--output-format=terse",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fio")
}

fn fio_ok(child: std::process::Child) {
    client_ok(child, "fio", &["verify: bad", "error="]);
}

/// A writer (fio, verifying) and a reader (qemu-io, on a second
/// attachment) keep one connection each through the whole move of a
/// volume from `p1` to `to` by `path`; both attachments switch together;
/// every byte matches after.
fn two_clients_across_a_move(config: &std::path::Path, to: &str, path: &str) {
    require_tool("fio", "fio");
    require_tool("qemu-io", "qemu-utils");
    let dir = config.parent().unwrap();
    let data = dir.join("data");
    let server = Server::start(&data, Some(config));
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "live", size, 32 * MIB, &mut model);
    let (writer_att, writer_uri) = attach_as(&server, &id, "app");
    let (reader_att, reader_uri) = attach_as(&server, &id, "backup");
    assert_eq!(volume(&server, &id)["status"], "in-use");

    let mut fio = fio_writer(&writer_uri, 192, 6);
    // The reader checks the first two extents; fio writes between them.
    let mut reading = reader(&reader_uri, &model, 0, 160 * MIB, 12);
    std::thread::sleep(Duration::from_millis(300));
    migrate(&server, &id, to);
    let m = wait_for(
        &server,
        &id,
        "migrating_attachable",
        Duration::from_secs(20),
    );
    assert_eq!(m["path"], path, "{m}");
    // Both clients were at work across the switch.
    assert!(
        fio.try_wait().unwrap().is_none(),
        "fio ended before the switch"
    );
    assert!(
        reading.try_wait().unwrap().is_none(),
        "the reader ended before the switch"
    );
    let mut switched: Vec<String> = m["switched_attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    switched.sort();
    let mut both = vec![writer_att.clone(), reader_att.clone()];
    both.sort();
    assert_eq!(switched, both, "both attachments switch together: {m}");
    let (end, seen) = wait_end(&server, &id, Duration::from_secs(120));
    assert_eq!(end["migration_status"], "success", "{end}");
    assert!(
        seen.iter()
            .all(|(status, _)| status == "migrating" || status == "in-use"),
        "{seen:?}"
    );
    fio_ok(fio);
    reader_ok(reading);

    let v = volume(&server, &id);
    assert_eq!(v["array"], to);
    assert_eq!(v["status"], "in-use");
    let events = switch_events(&server, &id);
    let mut evented: Vec<String> = events
        .iter()
        .map(|e| e["attachment"].as_str().unwrap().to_owned())
        .collect();
    evented.sort();
    assert_eq!(evented, both, "one switch event per attachment: {events:?}");
    assert!(
        !data.join(format!("arrays/p1/default/volume-{id}")).exists(),
        "source LUN left behind"
    );
    // What neither client wrote is the pattern, on the same export names.
    verify(&reader_uri, &model, 0, 192 * MIB);
    verify(&writer_uri, &model, 256 * MIB, size);
}

/// The host's live path: no driver moves the volume (two `plain` arrays).
#[test]
fn the_host_moves_an_attached_volume_live_and_both_clients_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    two_clients_across_a_move(&config(dir.path(), 96 * MIB), "p2", "host-live");
}

/// The target driver's async path: the take-over array hydrates, and the
/// attachments switch to it as soon as it answers.
#[test]
fn the_target_drivers_async_move_switches_attached_clients() {
    let dir = tempfile::tempdir().unwrap();
    two_clients_across_a_move(
        &support::volume_model::config(dir.path(), 96 * MIB),
        "t1",
        "target-driver-async",
    );
}

/// Arrays `f1`, `f2` of the `faulty` test driver (which declares live-move
/// and moves a volume named `move:migrate-volume` as `vendor-copy` does),
/// `v1`, `v2` of `vendor-copy` (which does not declare it) and `w1`, `w2`
/// of `vendor-copy` as built against contract 0.1.0 (which cannot).
fn driver_move_config(dir: &std::path::Path) -> std::path::PathBuf {
    let (_, old) = ferry::guests::CONTRACT_0_1_FIXTURES
        .iter()
        .find(|(n, _)| *n == "vendor-copy")
        .unwrap();
    let config = dir.join("ferry.toml");
    let mut text = String::new();
    for (array, driver) in [
        ("f1", "faulty"),
        ("f2", "faulty"),
        ("v1", "vendor-copy"),
        ("v2", "vendor-copy"),
        ("w1", "vendor-copy-0-1"),
        ("w2", "vendor-copy-0-1"),
    ] {
        text.push_str(&format!(
            "[[array]]\nname = \"{array}\"\ndriver = \"{driver}\"\n"
        ));
    }
    text.push_str(&format!(
        "[[driver]]\nname = \"vendor-copy-0-1\"\npath = {old:?}\n\
         [[driver]]\nname = \"faulty\"\npath = {:?}\n",
        ferry::guests::FAULTY_PATH
    ));
    std::fs::write(&config, text).unwrap();
    config
}

/// A writer (fio) and a reader (qemu-io) on two attachments of a volume on
/// `from` keep their connections while it moves to `to`; returns the
/// migration as it ended. Every byte matches after.
fn clients_across_a_driver_move(server: &Server, name: &str, from: &str, to: &str) -> Value {
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern_on(server, from, name, size, 32 * MIB, &mut model);
    let (writer_att, writer_uri) = attach_as(server, &id, "app");
    let (reader_att, reader_uri) = attach_as(server, &id, "backup");
    let mut fio = fio_writer(&writer_uri, 192, 4);
    let mut reading = reader(&reader_uri, &model, 0, 160 * MIB, 8);
    std::thread::sleep(Duration::from_millis(300));
    migrate(server, &id, to);
    let (end, seen) = wait_end(server, &id, Duration::from_secs(120));
    assert_eq!(end["migration_status"], "success", "{end}");
    assert!(
        seen.iter()
            .all(|(status, _)| status == "migrating" || status == "in-use"),
        "{seen:?}"
    );
    let m = migration(server, &id);
    let mut switched: Vec<String> = m["switched_attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    switched.sort();
    let mut both = vec![writer_att, reader_att];
    both.sort();
    assert_eq!(switched, both, "both attachments switch together: {m}");
    assert!(
        fio.try_wait().unwrap().is_none() || reading.try_wait().unwrap().is_none(),
        "the clients ended before the move did"
    );
    fio_ok(fio);
    reader_ok(reading);
    let v = volume(server, &id);
    assert_eq!(v["array"], to, "{v}");
    assert_eq!(v["status"], "in-use", "{v}");
    assert_eq!(switch_events(server, &id).len(), 2);
    verify(&reader_uri, &model, 0, 192 * MIB);
    verify(&writer_uri, &model, 256 * MIB, size);
    m
}

/// A source driver that declares live-move moves an attached volume by its
/// own means, with the exports held for its call; one that does not, or
/// built against contract 0.1.0 (which cannot declare it), is skipped and
/// the host moves the volume instead.
#[test]
fn the_source_drivers_live_move_switches_attached_clients_and_others_are_skipped() {
    require_tool("fio", "fio");
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let config = driver_move_config(dir.path());
    let server = Server::start(&dir.path().join("data"), Some(&config));

    let m = clients_across_a_driver_move(&server, "move:migrate-volume", "f1", "f2");
    assert_eq!(m["path"], "source-driver", "{m}");
    assert!(m["warnings"].as_array().is_none_or(|w| w.is_empty()), "{m}");

    let m = clients_across_a_driver_move(&server, "moved", "v1", "v2");
    assert_eq!(m["path"], "host-live", "{m}");

    let m = clients_across_a_driver_move(&server, "moved", "w1", "w2");
    assert_eq!(m["path"], "host-live", "{m}");
    let (_, page) = server.call("GET", "/v1/events?follow=false", None);
    let skipped = page["events"].as_array().unwrap().iter().any(|e| {
        e["migration"] == m["migration_id"]
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("does not declare live-move"))
    });
    assert!(
        skipped,
        "no event says why the 0.1.0 driver's move was skipped: {page}"
    );
}

/// An abort while a live-move driver's call holds the exports: the driver
/// stops (its copy fails), the exports go on serving the source, the
/// client's connection stays and every byte is where it was.
#[test]
fn an_abort_during_a_held_source_move_keeps_the_volume_on_the_source() {
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let config = driver_move_config(dir.path());
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let size = 256 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern_on(
        &server,
        "f1",
        "slow:migrate-volume",
        size,
        16 * MIB,
        &mut model,
    );
    let (_, uri) = attach_as(&server, &id, "app");
    let reading = reader(&uri, &model, 0, size, 6);
    migrate(&server, &id, "f2");
    wait_phase(&server, &id, "source_driver", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    ask_abort(&server, &id);
    let m = wait_end_unswitched(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "aborted", "{m}");
    reader_ok(reading);
    let v = volume(&server, &id);
    assert_eq!(
        (v["array"].as_str(), v["status"].as_str()),
        (Some("f1"), Some("in-use")),
        "{v}"
    );
    verify(&uri, &model, 0, size);
}

/// Kill -9 at random points of source-driver live moves back and forth
/// (before, during and after the held call, whose source LUN the driver
/// deletes): after every restart the export serves the volume again, from
/// whichever array holds it, and no flushed write is lost.
#[test]
fn kill_9_loop_during_source_driver_live_moves_loses_no_flushed_write() {
    let dir = tempfile::tempdir().unwrap();
    let config = driver_move_config(dir.path());
    let m = kill_9_loop(&config, "move:migrate-volume", ("f1", "f2"), 10, 600);
    assert_eq!(m["path"], "source-driver", "{m}");
}

/// Abort after the switch: the destination's writes are copied back and
/// the attachments switch back to the source, connections still open.
#[test]
fn abort_after_the_switch_switches_back_with_connections_open() {
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 16 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "live-abort", size, 64 * MIB, &mut model);
    let (_, uri) = attach_as(&server, &id, "app");
    let mut rng = Rng(0x5eed);
    // One connection for the whole test: writes before, during and after
    // the switch and the switch back, then a read of everything.
    let mut cmds = random_write_cmds(&mut model, &mut rng, 40, 4, 25);
    let before = model.clone();
    let mut later = model.clone();
    let more = random_write_cmds(&mut later, &mut rng, 40, 4, 60);
    cmds.extend(more);
    cmds.extend(later.reads(0, size));
    let args: Vec<String> = cmds
        .iter()
        .flat_map(|c| ["-c".to_owned(), c.clone()])
        .collect();
    let client = Command::new("qemu-io")
        .args(["-f", "raw"])
        .args(&args)
        .arg(&uri)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io");
    drop(before);
    migrate(&server, &id, "p2");
    wait_for(
        &server,
        &id,
        "migrating_attachable",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_millis(1500));
    ask_abort(&server, &id);
    let end = wait_end_unswitched(&server, &id, Duration::from_secs(120));
    assert_eq!(end["migration_status"], "aborted", "{end}");
    reader_ok(client);
    let v = volume(&server, &id);
    assert_eq!(v["array"], "p1");
    assert_eq!(v["status"], "in-use");
    verify(&uri, &later, 0, size);
    assert!(
        !data.join(format!("arrays/p2/default/volume-{id}")).exists(),
        "destination LUN left behind"
    );
}

/// Before the switch (the destination's creation fails, or an abort
/// arrives while it runs): nothing switches, the volume stays on the
/// source, in use, with its connection open and its data whole.
#[test]
fn a_failure_or_abort_before_the_switch_keeps_the_volume_on_the_source() {
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config_with(dir.path(), 1500, "");
    let server = Server::start(&dir.path().join("data"), Some(&config));
    for (name, abort, end) in [
        ("fail:create-volume@f2", false, "error"),
        ("loop:create-volume@f2", true, "aborted"),
    ] {
        let (status, v) = server.call(
            "POST",
            "/v1/volumes",
            Some(json!({"name": name, "size_bytes": 64 * MIB, "array": "f1"})),
        );
        assert_eq!(status, 201, "{v}");
        let id = v["id"].as_str().unwrap().to_owned();
        let (_, uri) = attach_as(&server, &id, "app");
        qemu_io(&uri, &["write -P 0x3c 0 4M", "flush"]);
        // A client connected across the whole attempt.
        let client = Command::new("qemu-io")
            .args(["-f", "raw"])
            .args(["-c", "read -P 0x3c 0 4M", "-c", "sleep 2500"])
            .args(["-c", "write -P 0x4d 4M 1M", "-c", "flush"])
            .args(["-c", "read -P 0x3c 0 4M", "-c", "read -P 0x4d 4M 1M"])
            .arg(&uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-io");
        migrate(&server, &id, "f2");
        if abort {
            wait_phase(&server, &id, "host_copy_prepare", Duration::from_secs(10));
            ask_abort(&server, &id);
        }
        let m = wait_end_unswitched(&server, &id, Duration::from_secs(60));
        assert_eq!(m["migration_status"], end, "{name}: {m}");
        reader_ok(client);
        let v = volume(&server, &id);
        assert_eq!(v["array"], "f1", "{name}");
        assert_eq!(v["status"], "in-use", "{name}");
        qemu_io(&uri, &["read -P 0x3c 0 4M", "read -P 0x4d 4M 1M"]);
    }
}

/// kill -9 at random moments while an attached volume moves back and
/// forth live (to the take-over array `t1` by its async path, back to `p1`
/// by the host's), a client writing and flushing between kills: after
/// each restart the same export serves every flushed write, and no
/// migration is left stuck.
#[test]
fn kill_9_loop_during_live_migrations_loses_no_flushed_write() {
    let dir = tempfile::tempdir().unwrap();
    // About two seconds a move, so kills land before, in and after the
    // switch, while hydrating and while cleaning up.
    let config = support::volume_model::config(dir.path(), 256 * MIB);
    kill_9_loop(&config, "live-kill", ("p1", "t1"), 12, 1500);
}

/// A volume `name` on `arrays.0`, attached and written to, moved back and forth
/// between `arrays` while the server is killed `rounds` times at random
/// points up to `max_pause_ms` into each round. At the end the last move
/// succeeds, the export serves the volume again and no flushed write is
/// lost; returns the last migration.
fn kill_9_loop(
    config: &std::path::Path,
    name: &str,
    arrays: (&str, &str),
    rounds: usize,
    max_pause_ms: u64,
) -> Value {
    require_tool("qemu-io", "qemu-utils");
    let data = config.parent().unwrap().join("data");
    let mut server = Server::start(&data, Some(config));
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern_on(&server, arrays.0, name, size, 32 * MIB, &mut model);
    let (_, uri) = attach_as(&server, &id, "app");
    let export = export_of(&uri).to_owned();
    let mut rng = Rng(0xfeed);
    let mut started = 0;
    for _ in 0..rounds {
        let uri = format!("nbd://{}/{export}", server.nbd);
        io(&uri, &random_write_cmds(&mut model, &mut rng, 8, 4, 0));
        let m = migration(&server, &id);
        // A success whose source LUN is still being removed admits no
        // new migration yet.
        let running = matches!(
            m["migration_status"].as_str(),
            Some("starting" | "migrating" | "migrating_attachable" | "completing" | "aborting")
        ) || m["source_removal"] == "pending";
        if !running {
            let to = if volume(&server, &id)["array"] == arrays.0 {
                arrays.1
            } else {
                arrays.0
            };
            migrate(&server, &id, to);
            started += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.next() % max_pause_ms));
        let dir = server.kill();
        server = Server::start(&dir, Some(config));
    }
    assert!(started >= 3, "only {started} migrations started");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success", "{m}");
    let v = volume(&server, &id);
    assert_eq!(v["status"], "in-use", "{v}");
    let uri = format!("nbd://{}/{export}", server.nbd);
    verify(&uri, &model, 0, size);
    m
}

/// `ferry volume migrate --wait` on an attached volume: the same progress
/// and end as for a detached one, the path `host-live`, and `volume
/// migration` names the switched attachment.
#[test]
fn the_cli_migrates_an_attached_volume_and_waits() {
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 1024 * MIB);
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let mut model = Model::new(64 * MIB);
    let id = create_with_pattern(&server, "cli-live", 64 * MIB, 4 * MIB, &mut model);
    let (att, uri) = attach_as(&server, &id, "app");
    let out = server.cli(&["volume", "migrate", &id, "--to", "p2", "--wait"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("success") && err.contains("host-live"),
        "{err}"
    );
    let out = server.cli(&["--json", "volume", "migration", &id]);
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["migration_status"], "success");
    assert_eq!(m["switched_attachments"], json!([att]));
    let out = server.cli(&["volume", "migration", &id]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("switched:   1 attachment\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    verify(&uri, &model, 0, 64 * MIB);
}
