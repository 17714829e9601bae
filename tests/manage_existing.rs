//! Manage existing (Cinder's `manage_existing`) through a real `ferry
//! serve`: a LUN put on an array by hand becomes a volume without a copy,
//! serves its data, migrates like any volume; unmanage forgets a volume and
//! leaves its LUN, data and all; every wrong reference gets its own error.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::migrations::{migrate, wait_end};
use support::{Server, qemu_io};

const MIB: u64 = 1 << 20;

/// A sparse LUN file of `size` bytes in pool `default` of `array`, holding
/// 0x5a in its first MiB and 0x6b in the MiB at 32 MiB, as an operator's
/// copy of a disk would be.
fn lun_file(data: &Path, array: &str, name: &str, size: u64) -> PathBuf {
    use std::os::unix::fs::FileExt as _;
    let path = data.join("arrays").join(array).join("default").join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(&vec![0x5a; MIB as usize], 0).unwrap();
    f.write_all_at(&vec![0x6b; MIB as usize], 32 * MIB).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn manage(server: &Server, name: &str, array: &str, reference: &str) -> (u16, Value) {
    server.call(
        "POST",
        "/v1/volumes/manage",
        Some(json!({"name": name, "array": array, "reference": reference})),
    )
}

/// Attaches `id`, runs `commands` with qemu-io, detaches.
fn through_nbd(server: &Server, id: &str, commands: &[&str]) {
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "checker"})),
    );
    assert_eq!(status, 201, "{a}");
    qemu_io(a["uri"].as_str().unwrap(), commands);
    let (status, _) = server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{}", a["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 204);
}

const PATTERN: [&str; 3] = [
    "read -P 0x5a 0 1M",
    "read -P 0 1M 31M",
    "read -P 0x6b 32M 1M",
];

#[test]
fn an_existing_lun_becomes_a_volume_without_a_copy_and_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let file = lun_file(dir.path(), "p1", "legacy-db", 64 * MIB);

    let (status, v) = manage(&server, "legacy", "p1", "default/legacy-db");
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["size_bytes"], 64 * MIB);
    assert_eq!(v["status"], "available");
    let id = v["id"].as_str().unwrap().to_owned();
    through_nbd(&server, &id, &PATTERN);
    // Nothing was copied: the volume is that very file.
    assert!(file.exists());

    // The same LUN twice is refused, naming the volume that has it.
    let (status, e) = manage(&server, "again", "p1", "legacy-db");
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "already_managed");
    assert!(e["error"]["message"].as_str().unwrap().contains(&id), "{e}");

    // It migrates like any volume; the file it was goes with the source.
    let (status, accepted) = migrate(&server, &id, json!({"array": "v1"}));
    assert_eq!(status, 202, "{accepted}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(60));
    assert_eq!(m["migration_status"], "success", "{m}");
    through_nbd(&server, &id, &PATTERN);
    assert!(
        !file.exists(),
        "the managed LUN stays behind after the move"
    );
}

#[test]
fn unmanage_forgets_the_volume_and_keeps_its_lun() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let file = lun_file(dir.path(), "v1", "keep-me", 48 * MIB);
    let before = std::fs::read(&file).unwrap();
    let (status, v) = manage(&server, "kept", "v1", "keep-me");
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    through_nbd(&server, &id, &["write -P 0x77 40M 4k", "flush"]);

    let out = server.cli(&["volume", "unmanage", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("its LUN stays"));
    assert_eq!(
        server.call("GET", &format!("/v1/volumes/{id}"), None).0,
        404
    );
    let after = std::fs::read(&file).unwrap();
    assert_eq!(after.len(), before.len());
    let at = (40 * MIB) as usize;
    assert!(after[at..at + 4096].iter().all(|b| *b == 0x77));
    assert_eq!(after[..at], before[..at]);
    // Managed again, it is the same data.
    let out = server.cli(&[
        "--json",
        "volume",
        "manage",
        "kept-again",
        "--array",
        "v1",
        "--reference",
        "default/keep-me",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    through_nbd(&server, v["id"].as_str().unwrap(), &["read -P 0x77 40M 4k"]);
}

#[test]
fn wrong_references_are_refused_each_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    lun_file(dir.path(), "p1", "odd-size", 64 * MIB + 100);
    let (status, created) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "ferrys-own", "size_bytes": MIB, "array": "p1"})),
    );
    assert_eq!(status, 201, "{created}");
    let own = format!("default/volume-{}", created["id"].as_str().unwrap());
    let cases: [(&str, &str, u16, &str); 6] = [
        ("p1", "no-such-lun", 404, "driver_not_found"),
        ("p1", "odd-size", 400, "driver_invalid_argument"),
        ("p1", own.as_str(), 400, "driver_invalid_argument"),
        ("p1", "../../etc/passwd", 400, "driver_invalid_argument"),
        ("nowhere", "x", 404, "array_not_found"),
        ("p1", "", 400, "invalid_argument"),
    ];
    for (array, reference, status, code) in cases {
        let (got, e) = manage(&server, "bad", array, reference);
        assert_eq!(got, status, "{reference}: {e}");
        assert_eq!(e["error"]["code"], code, "{reference}: {e}");
    }
    // Nothing was recorded by any of them.
    let (_, list) = server.call("GET", "/v1/volumes", None);
    assert_eq!(list["volumes"].as_array().unwrap().len(), 1, "{list}");
}
