//! Seed 000's asynchronous migration through a real `ferry serve`: the
//! target array takes over the source LUN, the volume is attachable at once,
//! reads and writes are right while it hydrates and after, and kill -9 at
//! random moments loses no flushed write. Each test runs with the Rust
//! `takeover` driver and with its Python twin, `python-takeover`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::volume_model::{
    Model, Rng, Takeover, attach, config_with, create_with_pattern, io, migration,
    random_write_cmds, verify, wait_for,
};
use support::{Server, require_tool, run};

const MIB: u64 = 1 << 20;

/// `count` random writes of 1 to 4 blocks, then a flush, recorded in the
/// model.
fn random_writes(uri: &str, model: &mut Model, rng: &mut Rng, count: usize) {
    io(uri, &random_write_cmds(model, rng, count, 4, 0));
}

/// The acceptance walk: 4 GiB, attachable within a second, random writes
/// while it hydrates, the model read back during and after, success, the
/// source LUN gone, the volume in use after.
#[test]
fn attachable_at_once_and_correct_during_and_after() {
    attachable_at_once(Takeover::Rust);
}

#[test]
fn python_attachable_at_once_and_correct_during_and_after() {
    attachable_at_once(Takeover::Python);
}

fn attachable_at_once(takeover: Takeover) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), 1024 * MIB, takeover);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 4096 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "async", size, 64 * MIB, &mut model);

    let asked = Instant::now();
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202, "{body}");
    let m = wait_for(&server, &id, "migrating_attachable", Duration::from_secs(5));
    let to_attachable = asked.elapsed();
    assert!(
        to_attachable < Duration::from_secs(1),
        "attachable after {to_attachable:?}"
    );
    assert_eq!(m["path"], "target-driver-async");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (
            v["status"].as_str(),
            v["array"].as_str(),
            v["attachable"].as_bool()
        ),
        (Some("migrating"), Some("t1"), Some(true)),
        "{v}"
    );
    let (_, uri) = attach(&server, &id);
    let mut rng = Rng(0x5eed);
    random_writes(&uri, &mut model, &mut rng, 200);
    let during = migration(&server, &id);
    assert_eq!(
        during["migration_status"], "migrating_attachable",
        "hydration ended too soon to test: {during}"
    );
    verify(&uri, &model, 0, size);
    random_writes(&uri, &mut model, &mut rng, 100);

    let m = wait_for(&server, &id, "success", Duration::from_secs(120));
    assert_eq!(m["progress"]["percent"], 100.0);
    verify(&uri, &model, 0, size);
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("in-use"), Some("t1")),
        "{v}"
    );
    assert!(
        !data.join(format!("arrays/p1/default/volume-{id}")).exists(),
        "source LUN left behind"
    );
}

/// fio with crc32c verification over the whole migration, on one NBD
/// connection that stays open while the migration completes under it.
#[test]
fn fio_verifies_across_the_whole_migration() {
    fio_verifies(Takeover::Rust);
}

#[test]
fn python_fio_verifies_across_the_whole_migration() {
    fio_verifies(Takeover::Python);
}

fn fio_verifies(takeover: Takeover) {
    require_tool("fio", "fio");
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), 256 * MIB, takeover);
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let size = 1024 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "async", size, 64 * MIB, &mut model);
    let (status, _) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202);
    wait_for(&server, &id, "migrating_attachable", Duration::from_secs(5));
    let (_, uri) = attach(&server, &id);
    let out = run(
        "fio",
        &[
            "--name=async-migration",
            "--ioengine=nbd",
            &format!("--uri={uri}"),
            "--rw=randwrite",
            "--bs=4k",
            "--iodepth=16",
            "--size=512M",
            "--offset=256M",
            "--verify=crc32c",
            "--verify_state_save=0",
            "--do_verify=1",
            "--verify_fatal=1",
            "--output-format=terse",
        ],
    );
    assert!(!out.contains("verify: bad"), "{out}");
    let m = wait_for(&server, &id, "success", Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success");
    // The pattern outside fio's range is intact.
    verify(&uri, &model, 0, 256 * MIB);
}

/// kill -9 at random moments of an async migration with flushed writes in
/// between: no flushed write is lost, hydration resumes, the migration ends
/// in success.
#[test]
fn kill_9_loop_loses_no_flushed_write() {
    kill_9_loop(Takeover::Rust);
}

#[test]
fn python_kill_9_loop_loses_no_flushed_write() {
    kill_9_loop(Takeover::Python);
}

fn kill_9_loop(takeover: Takeover) {
    let dir = tempfile::tempdir().unwrap();
    // A Python driver's host takes longer to start (its component is
    // larger), and hydration resumes meanwhile: slower hydration keeps the
    // migration running through every kill.
    let bandwidth = match takeover {
        Takeover::Rust => 64 * MIB,
        Takeover::Python => 24 * MIB,
    };
    let config = config_with(dir.path(), bandwidth, takeover);
    let data = dir.path().join("data");
    let mut server = Server::start(&data, Some(&config));
    let size = 2048 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "async", size, 64 * MIB, &mut model);
    let (status, _) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202);
    wait_for(&server, &id, "migrating_attachable", Duration::from_secs(5));
    let (_, attached_uri) = attach(&server, &id);
    let export = support::export_of(&attached_uri).to_owned();
    let mut rng = Rng(0xc0ffee);
    let mut kills = 0;
    let mut last_done = 0u64;
    while kills < 20 {
        let uri = format!("nbd://{}/{export}", server.nbd);
        random_writes(&uri, &mut model, &mut rng, 10);
        std::thread::sleep(Duration::from_millis(rng.next() % 300));
        let m = migration(&server, &id);
        if m["migration_status"] == "success" {
            break;
        }
        let done = m["progress"]["done_bytes"].as_u64().unwrap_or(0);
        assert!(
            done + 256 * MIB >= last_done,
            "hydration went back: {done} < {last_done}"
        );
        last_done = done;
        let dir = server.kill();
        kills += 1;
        server = Server::start(&dir, Some(&config));
    }
    assert!(
        kills >= 20,
        "the migration ended after {kills} kills; make the volume bigger"
    );
    let m = wait_for(&server, &id, "success", Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success");
    let uri = format!("nbd://{}/{export}", server.nbd);
    verify(&uri, &model, 0, size);
}
