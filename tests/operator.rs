//! The operator's way out through a real `ferry serve`: reset-status gets a
//! volume out of a migration stuck for good (its source LUN lost), after
//! which it migrates and deletes like any other; a forced delete removes a
//! migrating volume from both arrays and disconnects its NBD clients, also
//! with its migration inside a driver call, which a reset waits out too;
//! `lock_volume` refuses attach.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::volume_model::{Model, attach, config, create_with_pattern, migration, wait_for};
use support::{Server, qemu_io, require_tool};

const MIB: u64 = 1 << 20;

fn volume(server: &Server, id: &str) -> (u16, Value) {
    server.call("GET", &format!("/v1/volumes/{id}"), None)
}

fn migrate(server: &Server, id: &str, body: Value) -> (u16, Value) {
    server.call("POST", &format!("/v1/volumes/{id}/migrate"), Some(body))
}

fn reset(server: &Server, id: &str, body: Value) -> (u16, Value) {
    server.call(
        "POST",
        &format!("/v1/volumes/{id}/reset-status"),
        Some(body),
    )
}

/// Every LUN file of volume `id` on any array and pool.
fn lun_files(data: &Path, id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(arrays) = std::fs::read_dir(data.join("arrays")) else {
        return out;
    };
    for array in arrays.flatten() {
        for pool in std::fs::read_dir(array.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for lun in std::fs::read_dir(pool.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if lun.file_name().to_string_lossy().contains(id) {
                    out.push(lun.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Reads the whole volume over `uri` and checks it against the model.
fn verify(uri: &str, model: &Model) {
    let cmds = model.reads(0, model.blocks.len() as u64 * support::volume_model::BLOCK);
    for chunk in cmds.chunks(200) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        qemu_io(uri, &refs);
    }
}

fn detach(server: &Server, id: &str, attachment: &str) {
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{attachment}"),
        None,
    );
    assert_eq!(status, 204, "{body}");
}

/// The last event of a volume at `GET /v1/events`.
fn last_event(server: &Server, id: &str) -> Value {
    let (_, page) = server.call("GET", "/v1/events?after=0&follow=false", None);
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["volume"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// An async p1 -> t1 migration whose source LUN is lost after the switch:
/// every completion poll fails, so it would stay `migrating` for ever, and
/// delete and migrate are refused. Reset-status is refused while the
/// volume's LUN still fills (nothing changes), goes through once the fill
/// is complete, and stops the migration for good; the volume then keeps
/// its data, migrates back to p1 and deletes without a trace.
#[test]
fn a_stuck_migration_is_reset_then_migrated_and_deleted() {
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    // 16 MiB scanned at 2 MiB/s: the fill takes about 8 s.
    let config = config(dir.path(), 2 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 16 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "stuck", size, MIB, &mut model);

    let (status, body) = migrate(&server, &id, json!({"array": "t1"}));
    assert_eq!(status, 202, "{body}");
    wait_for(
        &server,
        &id,
        "migrating_attachable",
        Duration::from_secs(10),
    );
    // The source array loses the LUN. The fill goes on through the handle
    // it holds, but every completion poll now fails.
    std::fs::remove_file(data.join(format!("arrays/p1/default/volume-{id}"))).unwrap();
    let start = Instant::now();
    let m = loop {
        let m = migration(&server, &id);
        if m["error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable"))
        {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let migration_id = m["migration_id"].as_str().unwrap().to_owned();

    // Stuck: a plain delete and a new migration are refused.
    let (status, body) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("invalid_state"))
    );
    assert!(
        body["error"]["message"].as_str().unwrap().contains("force"),
        "{body}"
    );
    let (status, body) = migrate(&server, &id, json!({"array": "p1"}));
    assert_eq!(status, 409, "{body}");

    // The LUN on t1 still fills: a reset would lose data, so it is refused
    // and the migration goes on untouched.
    let (status, body) = reset(&server, &id, json!({"status": "available"}));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("hydration_incomplete")),
        "{body}"
    );
    let (_, v) = volume(&server, &id);
    assert_eq!(
        (v["status"].as_str(), v["migration_status"].as_str()),
        (Some("migrating"), Some("migrating_attachable")),
        "{v}"
    );

    // Once every byte is on t1 the same reset goes through.
    let start = Instant::now();
    let outcome = loop {
        let (status, body) = reset(&server, &id, json!({"status": "available"}));
        if status == 200 {
            break body;
        }
        assert_eq!(body["error"]["code"], "hydration_incomplete", "{body}");
        assert!(start.elapsed() < Duration::from_secs(60), "{body}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(outcome["stopped_migration"], migration_id.as_str());
    let v = &outcome["volume"];
    assert_eq!(
        (
            v["status"].as_str(),
            v["array"].as_str(),
            v["migration_status"].as_str()
        ),
        (Some("available"), Some("t1"), Some("error")),
        "{outcome}"
    );
    let notes = outcome["notes"].to_string();
    assert!(notes.contains("fill was ended"), "{notes}");
    assert!(notes.contains("p1/default"), "{notes}");
    let m = migration(&server, &id);
    assert_eq!(
        (m["migration_status"].as_str(), m["phase"].as_str()),
        (Some("error"), Some("finished")),
        "{m}"
    );
    assert!(
        m["error"].as_str().unwrap().contains("by an operator"),
        "{m}"
    );
    let event = last_event(&server, &id);
    assert_eq!(
        (&event["from"], &event["to"]),
        (&json!("migrating"), &json!("available"))
    );

    // The runner is gone: nothing moves the record any more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(migration(&server, &id), m);

    // The data is whole on t1.
    let (attachment, uri) = attach(&server, &id);
    verify(&uri, &model);
    detach(&server, &id, &attachment);

    // It migrates again, back to p1, with its data.
    let (status, body) = migrate(&server, &id, json!({"array": "p1"}));
    assert_eq!(status, 202, "{body}");
    wait_for(&server, &id, "success", Duration::from_secs(120));
    let (attachment, uri) = attach(&server, &id);
    verify(&uri, &model);
    detach(&server, &id, &attachment);

    let (status, body) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(lun_files(&data, &id), Vec::<PathBuf>::new());
}

/// A forced delete (from the CLI) of a volume migrating p1 -> t1 with a
/// server attached: the record and the LUNs on both arrays are gone, the
/// NBD export stops serving, the last event says so, and a restart brings
/// nothing back.
#[test]
fn a_forced_delete_removes_a_migrating_volume_everywhere() {
    require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 32 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "doomed", size, MIB, &mut model);
    let (status, body) = migrate(&server, &id, json!({"array": "t1"}));
    assert_eq!(status, 202, "{body}");
    wait_for(
        &server,
        &id,
        "migrating_attachable",
        Duration::from_secs(10),
    );
    let (_, uri) = attach(&server, &id);
    qemu_io(&uri, &["write -P 0x5a 0 1M", "flush", "read -P 0x5a 0 1M"]);
    let files = lun_files(&data, &id);
    assert_eq!(files.len(), 2, "{files:?}");

    let out = server.cli(&["volume", "delete", &id, "--force"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("deleted volume {id}")), "{stdout}");
    assert!(
        stdout.contains("t1/default") && stdout.contains("p1/default"),
        "{stdout}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");

    let (status, body) = volume(&server, &id);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("volume_not_found"))
    );
    assert_eq!(lun_files(&data, &id), Vec::<PathBuf>::new());
    let read = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read 0 4k", &uri])
        .output()
        .unwrap();
    assert!(
        !read.status.success() || String::from_utf8_lossy(&read.stdout).contains("failed"),
        "the export still serves: {}",
        String::from_utf8_lossy(&read.stdout)
    );
    let event = last_event(&server, &id);
    assert_eq!(event["to"], "deleted", "{event}");
    assert!(
        event["reason"].as_str().unwrap().contains("force-deleted"),
        "{event}"
    );

    let server = server.restart();
    let (status, _) = volume(&server, &id);
    assert_eq!(status, 404);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lun_files(&data, &id), Vec::<PathBuf>::new());
}

/// Arrays `f1` and `f2` of the faulty test driver, zoned, driver calls
/// limited to 2 s.
fn faulty_config(dir: &Path) -> PathBuf {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "zoning = [[\"f1\", \"f2\"]]\n\
             [limits]\ndeadline_ms = 2000\n\
             [[array]]\nname = \"f1\"\ndriver = \"faulty\"\n\
             [[array]]\nname = \"f2\"\ndriver = \"faulty\"\n\
             [[driver]]\nname = \"faulty\"\npath = {:?}\n",
            ferry::guests::FAULTY_PATH
        ),
    )
    .unwrap();
    config
}

/// A volume `name` on `f1` migrating to `f2`, its runner inside the source
/// driver's `migrate-volume` call.
fn migrating_in_a_driver_call(server: &Server, name: &str) -> String {
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": name, "size_bytes": 8 * MIB, "array": "f1"})),
    );
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let (status, body) = migrate(server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{body}");
    let start = Instant::now();
    while migration(server, &id)["phase"] != "source_driver" {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    id
}

/// A reset while the migration is inside a driver call: the reset waits
/// for the call to end and for the runner to leave, so nothing the runner
/// does afterwards undoes it; the volume is then available where it was,
/// and deletes cleanly.
#[test]
fn a_reset_waits_out_a_driver_call() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path());
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = migrating_in_a_driver_call(&server, "loop:migrate-volume@f1");

    let out = server.cli(&["volume", "reset-status", &id, "--status", "available"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stopped migration"), "{stdout}");
    let (_, v) = volume(&server, &id);
    assert_eq!(
        (
            v["status"].as_str(),
            v["array"].as_str(),
            v["migration_status"].as_str()
        ),
        (Some("available"), Some("f1"), Some("error")),
        "{v}"
    );
    let m = migration(&server, &id);
    assert_eq!(m["phase"], "finished", "{m}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(volume(&server, &id).1, v);

    let (status, body) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 204, "{body}");
    assert_eq!(lun_files(&data, &id), Vec::<PathBuf>::new());
}

/// A forced delete while the migration is inside a driver call (the source
/// driver spins until its deadline): the delete waits for the call, removes
/// the volume, and reports the LUN it could not delete; the runner does not
/// bring the volume or a LUN back afterwards.
#[test]
fn a_forced_delete_waits_out_a_driver_call_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let config = faulty_config(dir.path());
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let id = migrating_in_a_driver_call(&server, "loop:migrate-volume@f1 fail:delete-volume@f2");

    let (status, body) = server.call("DELETE", &format!("/v1/volumes/{id}?force=true"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted_on"], json!(["f1/default"]), "{body}");
    assert!(body["stopped_migration"].is_string(), "{body}");
    let warnings = body["warnings"].to_string();
    assert!(
        warnings.contains("f2/default") && warnings.contains("left behind"),
        "{warnings}"
    );

    // The call ended by its deadline; the runner then found no volume.
    std::thread::sleep(Duration::from_secs(3));
    let (status, _) = volume(&server, &id);
    assert_eq!(status, 404);
    assert_eq!(lun_files(&data, &id), Vec::<PathBuf>::new());
    let (_, list) = server.call("GET", "/v1/volumes", None);
    assert_eq!(list["volumes"], json!([]));
}

/// `--lock-volume`: while the migration runs, attach is refused with
/// `volume_locked`; without it the same attach is allowed.
#[test]
fn lock_volume_refuses_attach_while_the_migration_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), MIB);
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let size = 32 * MIB;

    let mut model = Model::new(size);
    let locked = create_with_pattern(&server, "locked", size, MIB, &mut model);
    let out = server.cli(&["volume", "migrate", &locked, "--to", "t1", "--lock-volume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        &server,
        &locked,
        "migrating_attachable",
        Duration::from_secs(10),
    );
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{locked}/attachments"),
        Some(json!({"server": "app"})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("volume_locked")),
        "{body}"
    );
    let (_, v) = volume(&server, &locked);
    assert_eq!(v["attachments"], json!([]), "{v}");
    assert_eq!(
        migration(&server, &locked)["migration_status"],
        "migrating_attachable"
    );

    let mut model = Model::new(size);
    let open = create_with_pattern(&server, "open", size, MIB, &mut model);
    let out = server.cli(&["volume", "migrate", &open, "--to", "t1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        &server,
        &open,
        "migrating_attachable",
        Duration::from_secs(10),
    );
    let (attachment, _) = attach(&server, &open);
    detach(&server, &open, &attachment);
}
