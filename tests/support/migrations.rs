//! The API steps the migration tests share: create a volume, attach it for
//! the length of a closure, write and check a recognisable pattern, start a
//! migration and follow it to its end, find a LUN's file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Server, qemu_io};

/// One MiB.
pub const MIB: u64 = 1 << 20;

pub fn create(server: &Server, name: &str, array: &str, size: u64) -> String {
    let (status, body) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": name, "size_bytes": size, "array": array})),
    );
    assert_eq!(status, 201, "create {name} on {array}: {body}");
    body["id"].as_str().unwrap().to_owned()
}

pub fn with_attachment<T>(server: &Server, id: &str, f: impl FnOnce(&str) -> T) -> T {
    let (status, a) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "host-a"})),
    );
    assert_eq!(status, 201, "attach {id}: {a}");
    let out = f(a["uri"].as_str().unwrap());
    let (status, _) = server.call(
        "DELETE",
        &format!("/v1/volumes/{id}/attachments/{}", a["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(status, 204);
    out
}

/// Writes a recognisable pattern: three extents with holes between them.
pub fn write_pattern(uri: &str) {
    qemu_io(
        uri,
        &[
            "write -P 0x11 0 4M",
            "write -P 0x22 40M 8M",
            "write -P 0x33 200M 1M",
            "flush",
        ],
    );
}

pub fn check_pattern(uri: &str) {
    qemu_io(
        uri,
        &[
            "read -P 0x11 0 4M",
            "read -P 0 4M 36M",
            "read -P 0x22 40M 8M",
            "read -P 0 48M 152M",
            "read -P 0x33 200M 1M",
            "read -P 0 201M 55M",
        ],
    );
}

pub fn migrate(server: &Server, id: &str, body: Value) -> (u16, Value) {
    server.call("POST", &format!("/v1/volumes/{id}/migrate"), Some(body))
}

/// Polls the status query until the migration ends (after a success, until
/// its source LUN's removal is over too); returns the last view and every
/// status seen on the way (volume, migration).
pub fn wait_end(server: &Server, id: &str, limit: Duration) -> (Value, Vec<(String, String)>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        let (status, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        assert_eq!(status, 200, "{m}");
        let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
        // Both from the one volume record: two reads could straddle the
        // last transition and pair a stale status with a fresh one.
        let pair = (
            v["status"].as_str().unwrap_or("").to_owned(),
            v["migration_status"].as_str().unwrap_or("").to_owned(),
        );
        if seen.last() != Some(&pair) {
            seen.push(pair);
        }
        if matches!(
            m["migration_status"].as_str(),
            Some("success" | "error" | "aborted")
        ) && m["source_removal"] != "pending"
        {
            return (m, seen);
        }
        assert!(start.elapsed() < limit, "migration did not end: {m}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn lun_path(dir: &Path, array: &str, id: &str) -> std::path::PathBuf {
    dir.join("arrays")
        .join(array)
        .join("default")
        .join(format!("volume-{id}"))
}

pub fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Two arrays of the `faulty` test driver, zoned, with a per-call deadline.
pub fn faulty_config(dir: &Path, deadline_ms: u64) -> PathBuf {
    faulty_config_with(dir, deadline_ms, "")
}

/// [`faulty_config`] with more top-level settings (`key = value` lines).
pub fn faulty_config_with(dir: &Path, deadline_ms: u64, settings: &str) -> PathBuf {
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "zoning = [[\"f1\", \"f2\"]]\n\
             {settings}\n\
             [limits]\ndeadline_ms = {deadline_ms}\n\
             [[array]]\nname = \"f1\"\ndriver = \"faulty\"\n\
             [[array]]\nname = \"f2\"\ndriver = \"faulty\"\n\
             [[driver]]\nname = \"faulty\"\npath = {:?}\n",
            ferry::guests::FAULTY_PATH
        ),
    )
    .unwrap();
    config
}

/// A volume on `array` holding 0x5a in its first 8 MiB and 0xa5 at 24 MiB.
pub fn volume_with_data(server: &Server, name: &str, array: &str) -> String {
    let id = create(server, name, array, 32 * MIB);
    with_attachment(server, &id, |uri| {
        qemu_io(
            uri,
            &["write -P 0x5a 0 8M", "write -P 0xa5 24M 1M", "flush"],
        )
    });
    id
}

pub fn check_data(server: &Server, id: &str) {
    with_attachment(server, id, |uri| {
        qemu_io(
            uri,
            &[
                "read -P 0x5a 0 8M",
                "read -P 0 8M 16M",
                "read -P 0xa5 24M 1M",
                "read -P 0 25M 7M",
            ],
        )
    });
}

/// Waits until the migration succeeded and its source LUN's removal is
/// still under way.
pub fn wait_source_removal(server: &Server, id: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if m["source_removal"] == "pending" {
            assert_eq!(m["migration_status"], "success", "{m}");
            return m;
        }
        assert!(
            start.elapsed() < limit,
            "never saw the source removal pending: {m}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the migration's phase is `phase`.
pub fn wait_phase(server: &Server, id: &str, phase: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let (_, m) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
        if m["phase"] == phase {
            return m;
        }
        assert!(start.elapsed() < limit, "never reached {phase}: {m}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
