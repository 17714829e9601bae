//! Operator-facing behaviour through a real `ferry serve`: `lock_volume`
//! refuses attach while the migration runs.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Server;
use support::volume_model::{Model, attach, config, create_with_pattern, migration, wait_for};

const MIB: u64 = 1 << 20;

fn volume(server: &Server, id: &str) -> (u16, Value) {
    server.call("GET", &format!("/v1/volumes/{id}"), None)
}

fn detach(server: &Server, id: &str, attachment: &str) {
    let (status, body) = server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{attachment}"),
        None,
    );
    assert_eq!(status, 204, "{body}");
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
