//! Abort during `migrating_attachable` through a real `ferry serve`: the
//! regions written on the destination are copied back to the source while
//! clients keep writing, the volume switches back, and no acknowledged
//! write is lost, also across kill -9 in the middle of the copy-back.

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::volume_model::{BLOCK, Model, Rng, config};
use support::{Server, qemu_io, require_tool, run};

const MIB: u64 = 1 << 20;

/// The whole volume over NBD equals the model, byte for byte.
fn compare(uri: &str, model: &Model, dir: &Path) {
    require_tool("qemu-img", "qemu-utils");
    let image = dir.join("model.img");
    model.write_image(&image);
    let out = run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            image.to_str().unwrap(),
            uri,
        ],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

/// qemu-io commands for `count` random writes of 1 to `max_blocks` whole
/// blocks, recorded in the model, each followed by `pause_ms` of sleep.
fn random_write_cmds(
    model: &mut Model,
    rng: &mut Rng,
    count: usize,
    max_blocks: u64,
    pause_ms: u64,
) -> Vec<String> {
    let blocks = model.blocks.len() as u64;
    let mut cmds = Vec::new();
    for _ in 0..count {
        let n = 1 + rng.next() % max_blocks;
        let first = rng.next() % (blocks - n);
        let byte = (rng.next() % 250) as u8 + 1;
        cmds.push(format!("write -P {byte} {} {}", first * BLOCK, n * BLOCK));
        model.set(first * BLOCK, n * BLOCK, byte);
        if pause_ms > 0 {
            cmds.push(format!("sleep {pause_ms}"));
        }
    }
    cmds.push("flush".into());
    cmds
}

fn io(uri: &str, cmds: &[String]) {
    let refs: Vec<&str> = cmds.iter().map(String::as_str).collect();
    qemu_io(uri, &refs);
}

fn create_with_pattern(server: &Server, size: u64, model: &mut Model) -> String {
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "abort", "size_bytes": size, "array": "p1"})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (_, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "loader"})),
    );
    let uri = a["uri"].as_str().unwrap().to_owned();
    // Four extents of data with holes between them.
    let mut cmds = Vec::new();
    for k in 0..4u64 {
        let off = k * (size / 4);
        let byte = 0x10 + k as u8;
        cmds.push(format!("write -P {byte} {off} {}", 32 * MIB));
        model.set(off, 32 * MIB, byte);
    }
    cmds.push("flush".into());
    io(&uri, &cmds);
    server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{}", a["id"].as_str().unwrap()),
        None,
    );
    id
}

fn migration(server: &Server, id: &str) -> Value {
    server
        .call("GET", &format!("/v1/volumes/{id}/migration"), None)
        .1
}

fn wait_for(server: &Server, id: &str, status: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let m = migration(server, id);
        if m["migration_status"] == status {
            return m;
        }
        assert!(
            !matches!(m["migration_status"].as_str(), Some("error" | "success"))
                && (status == "aborted" || m["migration_status"] != "aborted"),
            "waiting for {status}: {m}"
        );
        assert!(start.elapsed() < limit, "no {status} after {limit:?}: {m}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn migrate_to_t1(server: &Server, id: &str) {
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202, "{body}");
    wait_for(server, id, "migrating_attachable", Duration::from_secs(10));
}

fn attach(server: &Server, id: &str) -> (String, String) {
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "app"})),
    );
    assert_eq!(status, 201, "{a}");
    (
        a["id"].as_str().unwrap().to_owned(),
        a["uri"].as_str().unwrap().to_owned(),
    )
}

fn abort(server: &Server, id: &str) -> Value {
    let (status, body) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert_eq!(status, 202, "{body}");
    body
}

fn volume(server: &Server, id: &str) -> Value {
    server.call("GET", &format!("/v1/volumes/{id}"), None).1
}

/// The migration events of volume `id`, oldest first.
fn migration_events(server: &Server, id: &str) -> Vec<Value> {
    let (status, page) = server.call("GET", "/v1/events?after=0&follow=false&limit=1000", None);
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["volume"] == id && e["kind"] == "migration")
        .cloned()
        .collect()
}

fn lun(data: &Path, array: &str, id: &str) -> PathBuf {
    data.join(format!("arrays/{array}/default/volume-{id}"))
}

/// The walk: writes during `migrating_attachable`, an abort while a client
/// keeps writing on one open connection, `aborted`, the volume back on
/// `p1` holding the pattern and every write, the destination LUN gone, and
/// a second migration that succeeds.
#[test]
fn abort_copies_back_every_write_while_clients_keep_writing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 32 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, size, &mut model);
    migrate_to_t1(&server, &id);
    let (attachment, uri) = attach(&server, &id);
    let mut rng = Rng(0xab07);
    io(&uri, &random_write_cmds(&mut model, &mut rng, 300, 8, 0));
    assert_eq!(
        migration(&server, &id)["migration_status"],
        "migrating_attachable",
        "hydration ended too soon to test"
    );

    // One connection writes before, during and after the copy-back.
    let during = random_write_cmds(&mut model, &mut rng, 250, 4, 40);
    let (tx, rx) = mpsc::channel();
    let writer = {
        let uri = uri.clone();
        std::thread::spawn(move || {
            io(&uri, &during);
            let _ = tx.send(Instant::now());
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let answer = abort(&server, &id);
    assert_eq!(answer["phase"], "copying_back", "{answer}");
    assert_eq!(answer["migration_status"], "migrating_attachable");
    // A second abort while copying back is refused, clearly.
    let (status, again) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("abort_not_possible")),
        "{again}"
    );
    let m = wait_for(&server, &id, "aborted", Duration::from_secs(60));
    let aborted_at = Instant::now();
    let writer_done = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    writer.join().unwrap();
    assert!(
        writer_done > aborted_at,
        "the client stopped writing before the switch back; nothing was tested"
    );
    assert!(
        aborted_at - asked > Duration::from_millis(300),
        "the copy-back took {:?}: too fast to have run under writes",
        aborted_at - asked
    );
    assert_eq!(m["error"], Value::Null, "{m}");
    assert!(m["finished_at"].is_string());
    let v = volume(&server, &id);
    assert_eq!(
        (
            v["status"].as_str(),
            v["array"].as_str(),
            v["migration_status"].as_str()
        ),
        (Some("in-use"), Some("p1"), Some("aborted")),
        "{v}"
    );
    // The open export now serves the source: read back over the same URI.
    compare(&uri, &model, dir.path());
    assert!(
        !lun(&data, "t1", &id).exists(),
        "destination LUN left behind"
    );
    let events = migration_events(&server, &id);
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("copying the writes made on t1 back to p1")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("serves from p1 again")),
        "{reasons:?}"
    );
    assert_eq!(events.last().unwrap()["to"], "aborted", "{events:?}");

    // Writes after the abort land on p1 and survive a restart.
    io(&uri, &random_write_cmds(&mut model, &mut rng, 50, 4, 0));
    let server = server.restart();
    let uri = format!("nbd://{}/{attachment}", server.nbd);
    compare(&uri, &model, dir.path());

    // And the volume migrates again, to the end.
    server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{attachment}"),
        None,
    );
    migrate_to_t1(&server, &id);
    let (_, uri) = attach(&server, &id);
    io(&uri, &random_write_cmds(&mut model, &mut rng, 50, 4, 0));
    wait_for(&server, &id, "success", Duration::from_secs(120));
    compare(&uri, &model, dir.path());
    assert!(!lun(&data, "p1", &id).exists(), "source LUN left behind");
}

/// kill -9 in the middle of the copy-back, three times, with writes in
/// between: every restart resumes the copy-back (never reports the abort
/// done early), and the end holds every flushed write.
#[test]
fn kill_9_during_copy_back_resumes_it_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 16 * MIB);
    let data = dir.path().join("data");
    let mut server = Server::start(&data, Some(&config));
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, size, &mut model);
    migrate_to_t1(&server, &id);
    let (attachment, uri) = attach(&server, &id);
    let mut rng = Rng(0xdead);
    // About 48 MiB written: three seconds of copy-back at 16 MiB/s.
    let mut cmds = Vec::new();
    for k in 0..48u64 {
        let off = (rng.next() % (size / MIB)) * MIB;
        let byte = (k % 250) as u8 + 1;
        cmds.push(format!("write -P {byte} {off} {MIB}"));
        model.set(off, MIB, byte);
    }
    cmds.push("flush".into());
    io(&uri, &cmds);
    abort(&server, &id);
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let m = migration(&server, &id);
        assert_eq!(
            (m["migration_status"].as_str(), m["phase"].as_str()),
            (Some("migrating_attachable"), Some("copying_back")),
            "round {round}: the copy-back ended before the kill: {m}"
        );
        let dir = server.kill();
        server = Server::start(&dir, Some(&config));
        let m = migration(&server, &id);
        assert_eq!(
            (m["migration_status"].as_str(), m["phase"].as_str()),
            (Some("migrating_attachable"), Some("copying_back")),
            "round {round}: after restart: {m}"
        );
        let v = volume(&server, &id);
        assert_eq!(
            v["array"], "t1",
            "switched back before the copy-back ended: {v}"
        );
        // The resumed copy-back runs under writes too.
        let uri = format!("nbd://{}/{attachment}", server.nbd);
        io(&uri, &random_write_cmds(&mut model, &mut rng, 20, 4, 0));
    }
    wait_for(&server, &id, "aborted", Duration::from_secs(60));
    let v = volume(&server, &id);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("in-use"), Some("p1")),
        "{v}"
    );
    let uri = format!("nbd://{}/{attachment}", server.nbd);
    compare(&uri, &model, dir.path());
    assert!(
        !lun(&data, "t1", &id).exists(),
        "destination LUN left behind"
    );
}

/// The source LUN disappears during the abort: the copy-back fails, says so
/// in the migration's error and in events, retries with a pause, and
/// finishes once the LUN is back, with nothing lost.
#[test]
fn a_failing_copy_back_retries_visibly_then_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 32 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, size, &mut model);
    migrate_to_t1(&server, &id);
    let (_, uri) = attach(&server, &id);
    let mut rng = Rng(0xfa11);
    io(&uri, &random_write_cmds(&mut model, &mut rng, 100, 4, 0));
    let source = lun(&data, "p1", &id);
    let away = dir.path().join("source-away");
    std::fs::rename(&source, &away).unwrap();
    abort(&server, &id);
    let start = Instant::now();
    let m = loop {
        let m = migration(&server, &id);
        if m["error"].as_str().is_some_and(|e| e.contains("attempt 2")) {
            break m;
        }
        assert_eq!(m["migration_status"], "migrating_attachable", "{m}");
        assert!(start.elapsed() < Duration::from_secs(20), "no retry: {m}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        m["error"]
            .as_str()
            .unwrap()
            .contains("source LUN is unreachable"),
        "{m}"
    );
    assert_eq!(m["phase"], "copying_back");
    let retries = migration_events(&server, &id)
        .iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("copying back to the source failed"))
        })
        .count();
    assert!(retries >= 2, "retries not in the event log");
    // Writes go on meanwhile, on the destination.
    io(&uri, &random_write_cmds(&mut model, &mut rng, 20, 4, 0));
    std::fs::rename(&away, &source).unwrap();
    let m = wait_for(&server, &id, "aborted", Duration::from_secs(60));
    assert_eq!(m["error"], Value::Null, "{m}");
    assert_eq!(volume(&server, &id)["array"], "p1");
    compare(&uri, &model, dir.path());
}
