//! Crash consistency of migrations: `ferry serve` is killed with SIGKILL
//! once in each phase of the state machine, three rounds a phase, and
//! restarted on the same data directory. After each restart the migration
//! ends by itself (no volume stuck), the volume's data is whole on the side
//! the volume says it is on, and nothing of it is left on the other side.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::migrations::{
    MIB, check_data, faulty_config, faulty_config_with, lun_path, migrate, volume_with_data,
    wait_end, wait_phase, wait_source_removal,
};
use support::volume_model::{self, Model, attach, create_with_pattern, io, wait_for};
use support::{Server, qemu_io};

const ROUNDS: usize = 3;

/// How a round ends: the final migration status and where the volume is.
struct Expect {
    status: &'static str,
    on: &'static str,
    off: &'static str,
}

/// One round on the faulty arrays: a volume named `name` on `f1` migrates
/// to `f2`; the host is killed once the migration is in `phase` (after
/// `abort` when asked), restarted, and the end is checked.
fn faulty_round(config: &Path, name: &str, phase: &str, abort: bool, expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(config));
    let id = volume_with_data(&server, name, "f1");
    let (status, body) = migrate(&server, &id, json!({"array": "f2"}));
    assert_eq!(status, 202, "{name}: {body}");
    if abort {
        wait_phase(&server, &id, "source_driver", Duration::from_secs(10));
        // The linger driver moves at once and answers 1.5 s later.
        std::thread::sleep(Duration::from_millis(300));
        let (status, m) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
        assert_eq!(status, 202, "{m}");
    }
    if phase == SOURCE_REMOVAL {
        wait_source_removal(&server, &id, Duration::from_secs(30));
    } else {
        wait_phase(&server, &id, phase, Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(100));
    let data = server.kill();
    let server = Server::start(&data, Some(config));
    let (m, _) = wait_end(&server, &id, Duration::from_secs(90));
    assert_eq!(m["migration_status"], expect.status, "{phase}: {m}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["array"].as_str(), v["status"].as_str()),
        (Some(expect.on), Some("available")),
        "{phase}: {v}"
    );
    assert!(lun_path(&data, expect.on, &id).exists(), "{phase}: no LUN");
    assert!(
        !lun_path(&data, expect.off, &id).exists(),
        "{phase}: a LUN is left on {}",
        expect.off
    );
    check_data(&server, &id);
    drop(dir);
}

fn rounds(config: impl Fn(&Path) -> PathBuf, name: &str, phase: &str, abort: bool, expect: Expect) {
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        eprintln!("{phase}: round {round}");
        faulty_round(
            &config,
            name,
            phase,
            abort,
            Expect {
                status: expect.status,
                on: expect.on,
                off: expect.off,
            },
        );
    }
}

const MOVED: Expect = Expect {
    status: "success",
    on: "f2",
    off: "f1",
};

const BACK: Expect = Expect {
    status: "error",
    on: "f1",
    off: "f2",
};

#[test]
fn kill_9_in_the_source_drivers_move() {
    rounds(
        |d| faulty_config(d, 5000),
        "slow:migrate-volume@f1",
        "source_driver",
        false,
        MOVED,
    );
}

#[test]
fn kill_9_in_the_target_drivers_move() {
    rounds(
        |d| faulty_config(d, 5000),
        "sync:migrate-volume-target@f2",
        "target_driver",
        false,
        MOVED,
    );
}

#[test]
fn kill_9_in_the_host_copy() {
    rounds(
        |d| faulty_config_with(d, 5000, "copy_bandwidth_bytes_per_sec = 4194304"),
        "plain-faulty",
        "host_copy",
        false,
        MOVED,
    );
}

/// Not a phase: the migration succeeded and its source LUN's removal (a
/// slow one here) is under way.
const SOURCE_REMOVAL: &str = "source removal";

#[test]
fn kill_9_while_the_source_is_removed() {
    rounds(
        |d| faulty_config(d, 5000),
        "slow:delete-volume@f1",
        SOURCE_REMOVAL,
        false,
        MOVED,
    );
}

#[test]
fn kill_9_while_rolling_back() {
    rounds(
        |d| faulty_config(d, 5000),
        "short:create-volume@f2 slow:delete-volume@f2",
        "rolling_back",
        false,
        BACK,
    );
}

#[test]
fn kill_9_while_bringing_a_moved_volume_back() {
    rounds(
        |d| faulty_config_with(d, 5000, "copy_bandwidth_bytes_per_sec = 4194304"),
        "linger:migrate-volume@f1",
        "returning",
        true,
        Expect {
            status: "aborted",
            on: "f1",
            off: "f2",
        },
    );
}

/// The async path (`p1` -> `t1`), killed while hydrating and, after an
/// abort, while copying the destination's writes back.
fn async_round(abort: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = volume_model::config(dir.path(), 4 * MIB);
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config));
    let size = 32 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "crash", size, 2 * MIB, &mut model);
    let (status, body) = migrate(&server, &id, json!({"array": "t1"}));
    assert_eq!(status, 202, "{body}");
    wait_for(
        &server,
        &id,
        "migrating_attachable",
        Duration::from_secs(10),
    );
    let (_, uri) = attach(&server, &id);
    let mut cmds = Vec::new();
    for k in 0..12u64 {
        let off = k * 2 * MIB + MIB;
        let byte = 0x40 + k as u8;
        cmds.push(format!("write -P {byte} {off} {MIB}"));
        model.set(off, MIB, byte);
    }
    cmds.push("flush".into());
    io(&uri, &cmds);
    let phase = if abort {
        let (status, m) = server.call("POST", &format!("/v1/volumes/{id}/migration/abort"), None);
        assert_eq!(status, 202, "{m}");
        "copying_back"
    } else {
        "hydrating"
    };
    wait_phase(&server, &id, phase, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let data = server.kill();
    let server = Server::start(&data, Some(&config));
    let (m, _) = wait_end(&server, &id, Duration::from_secs(90));
    let (status, on, off) = if abort {
        ("aborted", "p1", "t1")
    } else {
        ("success", "t1", "p1")
    };
    assert_eq!(m["migration_status"], status, "{phase}: {m}");
    let (_, v): (u16, Value) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(
        (v["array"].as_str(), v["status"].as_str()),
        (Some(on), Some("in-use")),
        "{phase}: {v}"
    );
    assert!(
        !lun_path(&data, off, &id).exists(),
        "{phase}: LUN left on {off}"
    );
    let uri = format!("nbd://{}/{}", server.nbd, support::export_of(&uri));
    let reads = model.reads(0, size);
    let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
    qemu_io(&uri, &reads);
}

#[test]
fn kill_9_while_hydrating() {
    for _ in 0..ROUNDS {
        async_round(false);
    }
}

#[test]
fn kill_9_while_copying_back() {
    for _ in 0..ROUNDS {
        async_round(true);
    }
}
