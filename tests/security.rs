//! Security and resource limits of a real `ferry serve`: what it writes is
//! private to its user, hostile HTTP requests cannot grow its memory, and
//! idle sockets cannot starve it of file descriptors.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{Launch, Server};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A fresh data directory, the store, the token, every directory of the
/// arrays tree and a volume's LUN file are reachable by their owner only.
#[test]
fn a_fresh_data_directory_and_everything_in_it_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::launch(
        &data,
        None,
        &Launch {
            capture_stderr: true,
            ..Launch::default()
        },
    );
    let (status, v) = server.call(
        "POST",
        "/v1/volumes",
        Some(json!({"name": "private", "size_bytes": 1 << 20, "array": "p1"})),
    );
    assert_eq!(status, 201, "{v}");

    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("ferry.redb")), 0o600, "store");
    assert_eq!(mode(&data.join("admin.token")), 0o600, "admin token");
    assert_eq!(mode(&data.join("arrays")), 0o700, "arrays/");
    // Every directory and file below arrays/: array and pool directories,
    // and the LUN the new volume lives in.
    let mut luns = 0;
    let mut stack = vec![data.join("arrays")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                luns += 1;
            }
        }
    }
    assert_eq!(luns, 1, "the volume's LUN file");
    let log = server.log.clone().unwrap();
    server.stop();
    assert!(
        !log.lines().iter().any(|l| l.contains("chmod 700")),
        "a fresh directory is not warned about: {:?}",
        log.lines()
    );
}

/// A data directory that group and others may enter (as older versions
/// created it) is served, with a warning on stderr and in the log.
#[test]
fn an_existing_data_directory_open_to_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::launch(
        &data,
        None,
        &Launch {
            capture_stderr: true,
            ..Launch::default()
        },
    );
    let log = server.log.clone().unwrap();
    let plain = log.wait_for("warning: the data directory", Duration::from_secs(5));
    let plain = plain.expect("no stderr warning about the data directory");
    assert!(
        plain.contains("0755") && plain.contains("chmod 700"),
        "{plain}"
    );
    let traced = log
        .lines()
        .into_iter()
        .find(|l| l.contains("WARN") && l.contains("data directory is open to other users"));
    assert!(traced.is_some(), "no log warning: {:?}", log.lines());
    // Warned about, not changed behind the operator's back.
    assert_eq!(mode(&data), 0o755);
    server.stop();
}
