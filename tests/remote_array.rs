//! A second `ferry serve` as the first external array: host A manages an
//! array of host B through the `ferry-remote` driver (B's HTTP API with B's
//! admin token from a secret file, B's NBD exports for the data) and moves
//! volumes onto it and back with its own copy; clients of A read and write
//! the volume while it lives on B, through A's NBD server. Two real
//! processes on loopback, qemu-io as the client.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Server;
use support::migrations::{
    MIB, check_pattern, create, migrate, wait_end, with_attachment, write_pattern,
};
use support::remote::{on_b, two_hosts};

fn volume(server: &Server, id: &str) -> Value {
    let (status, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn a_volume_moves_to_another_host_and_back_with_its_data() {
    support::require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path(), true);
    let far = a.array("far");
    assert_eq!(
        far["nbd_allow"],
        json!([format!("nbd://{}", b.nbd)]),
        "{far}"
    );
    assert_eq!(far["secrets"], json!(["token"]), "{far}");
    // Its storage is B's: no local file system is measured for it.
    assert_eq!(far["lun_files"], false, "{far}");
    assert_eq!(far["filesystem_free_bytes"], Value::Null, "{far}");

    let id = create(&a, "travels", "local", 256 * MIB);
    with_attachment(&a, &id, write_pattern);

    // Onto B: the host copy writes through B's NBD export.
    let (status, answer) = migrate(&a, &id, json!({"array": "far"}));
    assert_eq!(status, 202, "{answer}");
    let (m, _) = wait_end(&a, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success", "{m}");
    assert_eq!(m["path"], "host-copy", "{m}");
    let v = volume(&a, &id);
    assert_eq!(v["array"], "far", "{v}");
    assert_eq!(a.array("far")["used_bytes"], 256 * MIB);
    let remote = on_b(&b, &id).expect("B holds the volume");
    assert_eq!(remote["size_bytes"], 256 * MIB, "{remote}");
    // The host copy's exposure on B ended with the copy.
    assert_eq!(remote["attachments"], json!([]), "{remote}");

    // B's own export holds the bytes; A's clients reach them through A.
    let remote_id = remote["id"].as_str().unwrap().to_owned();
    with_attachment(&b, &remote_id, check_pattern);
    with_attachment(&a, &id, |uri| {
        assert!(uri.contains(&a.nbd), "A serves its own address: {uri}");
        check_pattern(uri);
        support::qemu_io(uri, &["write -P 0x44 100M 2M", "flush"]);
    });
    assert_eq!(on_b(&b, &id).unwrap()["attachments"], json!([]));

    // And back: the copy reads B's export.
    let (status, answer) = migrate(&a, &id, json!({"array": "local"}));
    assert_eq!(status, 202, "{answer}");
    let (m, _) = wait_end(&a, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "success", "{m}");
    assert_eq!(volume(&a, &id)["array"], "local");
    with_attachment(&a, &id, |uri| {
        check_pattern_with_write(uri);
    });
    assert!(on_b(&b, &id).is_none(), "the source on B is removed");
}

/// The pattern with the 0x44 write made while the volume lived on B.
fn check_pattern_with_write(uri: &str) {
    support::qemu_io(
        uri,
        &[
            "read -P 0x11 0 4M",
            "read -P 0x22 40M 8M",
            "read -P 0 48M 52M",
            "read -P 0x44 100M 2M",
            "read -P 0 102M 98M",
            "read -P 0x33 200M 1M",
        ],
    );
}

#[test]
fn an_export_off_the_arrays_nbd_allow_is_never_connected_to() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path(), false);
    // Creating needs only HTTP, which is allowed.
    let id = create(&a, "fenced", "far", 16 * MIB);
    assert!(on_b(&b, &id).is_some());
    let (status, body) = a.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "s1"})),
    );
    assert!(status >= 400, "{status} {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nbd_allow"), "{message}");
    // The message names the server, never the export's secret name.
    assert!(message.contains(&b.nbd), "{message}");
    assert!(!message.contains(&id), "{message}");
    assert_eq!(volume(&a, &id)["attachments"], json!([]));
    // The exposure the driver made on B before the refusal is gone too.
    assert_eq!(on_b(&b, &id).unwrap()["attachments"], json!([]));
    assert_eq!(a.call("GET", "/healthz", None).0, 200);
    // Deleting on A deletes on B, exposures included.
    let (status, _) = a.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 204);
    assert!(on_b(&b, &id).is_none());
}

/// Cinder's manage existing across hosts: a volume B made on its own
/// becomes A's volume without a copy, serves B's bytes through A, and
/// unmanaging gives it back to B untouched.
#[test]
fn a_volume_of_the_remote_host_is_managed_and_given_back() {
    support::require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(dir.path(), true);
    let legacy = create(&b, "legacy", "p1", 32 * MIB);
    with_attachment(&b, &legacy, |uri| {
        support::qemu_io(uri, &["write -P 0x6b 1M 2M", "flush"]);
    });
    // Neither an unknown name nor an unknown id is taken.
    for reference in ["nothing-here", "00000000-0000-0000-0000-000000000000"] {
        let (status, body) = a.call(
            "POST",
            "/v1/volumes/manage",
            Some(json!({"name": "x", "array": "far", "reference": reference})),
        );
        assert_eq!(status, 404, "{body}");
    }
    let (status, managed) = a.call(
        "POST",
        "/v1/volumes/manage",
        Some(json!({"name": "imported", "array": "far", "reference": "legacy"})),
    );
    assert_eq!(status, 201, "{managed}");
    assert_eq!(managed["size_bytes"], 32 * MIB, "{managed}");
    let id = managed["id"].as_str().unwrap().to_owned();
    with_attachment(&a, &id, |uri| {
        support::qemu_io(uri, &["read -P 0x6b 1M 2M", "read -P 0 3M 29M"]);
    });
    let (status, body) = a.call("POST", &format!("/v1/volumes/{id}/unmanage"), None);
    assert!(status < 300, "{status} {body}");
    assert_eq!(a.call("GET", &format!("/v1/volumes/{id}"), None).0, 404);
    let (_, back) = b.call("GET", &format!("/v1/volumes/{legacy}"), None);
    assert_eq!(back["status"], "available", "{back}");
    assert_eq!(back["attachments"], json!([]), "{back}");
    with_attachment(&b, &legacy, |uri| {
        support::qemu_io(uri, &["read -P 0x6b 1M 2M"]);
    });
}

/// An attached volume on the remote array cannot move yet (the live path
/// needs LUNs the host holds): the migration ends `error` with the reason,
/// and the volume stays where it was, attached and whole.
#[test]
fn an_attached_volume_on_the_remote_array_stays_put_with_a_reason() {
    support::require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = two_hosts(dir.path(), true);
    let id = create(&a, "busy", "far", 16 * MIB);
    with_attachment(&a, &id, |uri| {
        support::qemu_io(uri, &["write -P 0x19 0 1M", "flush"]);
        let (status, answer) = migrate(&a, &id, json!({"array": "local"}));
        assert_eq!(status, 202, "{answer}");
        let (m, _) = wait_end(&a, &id, Duration::from_secs(60));
        assert_eq!(m["migration_status"], "error", "{m}");
        let error = m["error"].as_str().unwrap_or_default();
        assert!(error.contains("needs a LUN the host holds"), "{error}");
        let v = volume(&a, &id);
        assert_eq!(
            (v["array"].as_str(), v["status"].as_str()),
            (Some("far"), Some("in-use")),
            "{v}"
        );
        support::qemu_io(uri, &["read -P 0x19 0 1M", "write -P 0x1a 1M 1M", "flush"]);
    });
}
