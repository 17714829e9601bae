//! Abort during `migrating_attachable` through a real `ferry serve`: the
//! regions written on the destination are copied back to the source while
//! clients keep writing, the volume switches back, and no acknowledged
//! write is lost, also across kill -9 in the middle of the copy-back.

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::volume_model::{
    Model, Rng, attach, config, create_with_pattern, io, migration, random_write_cmds, wait_for,
};
use support::{Server, require_tool, run};

const MIB: u64 = 1 << 20;

/// Size of the tests' volume.
const VOLUME: u64 = 512 * MIB;

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

fn migrate_to_t1(server: &Server, id: &str) {
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202, "{body}");
    wait_for(server, id, "migrating_attachable", Duration::from_secs(10));
}

/// A server whose volume (`VOLUME` bytes) holds the pattern, is `migrating_attachable`
/// to `t1` (hydration and copy-back paced at `bps`) and attached.
struct Attached {
    dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
    server: Server,
    model: Model,
    id: String,
    attachment: String,
    uri: String,
}

fn migrating_attached(bps: u64) -> Attached {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), bps);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let mut model = Model::new(VOLUME);
    let id = create_with_pattern(&server, "abort", VOLUME, 32 * MIB, &mut model);
    migrate_to_t1(&server, &id);
    let (attachment, uri) = attach(&server, &id);
    Attached {
        dir,
        config,
        data,
        server,
        model,
        id,
        attachment,
        uri,
    }
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
    let Attached {
        dir,
        data,
        server,
        mut model,
        id,
        attachment,
        uri,
        ..
    } = migrating_attached(32 * MIB);
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
    // The copy-back is its own state, visible to every client.
    assert_eq!(answer["migration_status"], "aborting");
    assert_eq!(volume(&server, &id)["migration_status"], "aborting");
    // A second abort while copying back answers like the first.
    let (status, again) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
    assert_eq!(
        (status, again["migration_status"].as_str()),
        (202, Some("aborting")),
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
    let uri = format!("nbd://{}/{}", server.nbd, support::export_of(&uri));
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
    let Attached {
        dir,
        config,
        data,
        mut server,
        mut model,
        id,
        attachment: _,
        uri,
    } = migrating_attached(16 * MIB);
    let mut rng = Rng(0xdead);
    // About 48 MiB written: three seconds of copy-back at 16 MiB/s.
    let mut cmds = Vec::new();
    for k in 0..48u64 {
        let off = (rng.next() % (VOLUME / MIB)) * MIB;
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
            (Some("aborting"), Some("copying_back")),
            "round {round}: the copy-back ended before the kill: {m}"
        );
        let dir = server.kill();
        server = Server::start(&dir, Some(&config));
        let m = migration(&server, &id);
        assert_eq!(
            (m["migration_status"].as_str(), m["phase"].as_str()),
            (Some("aborting"), Some("copying_back")),
            "round {round}: after restart: {m}"
        );
        let v = volume(&server, &id);
        assert_eq!(
            v["array"], "t1",
            "switched back before the copy-back ended: {v}"
        );
        // The resumed copy-back runs under writes too.
        let uri = format!("nbd://{}/{}", server.nbd, support::export_of(&uri));
        io(&uri, &random_write_cmds(&mut model, &mut rng, 20, 4, 0));
    }
    wait_for(&server, &id, "aborted", Duration::from_secs(60));
    let v = volume(&server, &id);
    assert_eq!(
        (v["status"].as_str(), v["array"].as_str()),
        (Some("in-use"), Some("p1")),
        "{v}"
    );
    let uri = format!("nbd://{}/{}", server.nbd, support::export_of(&uri));
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
    let Attached {
        dir,
        data,
        server,
        mut model,
        id,
        uri,
        ..
    } = migrating_attached(32 * MIB);
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
        assert_eq!(m["migration_status"], "aborting", "{m}");
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
