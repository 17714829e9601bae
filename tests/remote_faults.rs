//! Faults of a remote array's side, met by the host copy that reads its NBD
//! export: `nbdkit` with its `error` and `delay` filters as the array's
//! export (transient EIO is retried, permanent EIO fails the migration
//! visibly and leaves the volume where it was, a slow export only slows the
//! copy), and a second `ferry serve` killed with SIGKILL mid-copy, five
//! times, without a byte lost or a volume left stuck.

mod support;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Server;
use support::migrations::{MIB, create, migrate, wait_end, with_attachment};
use support::remote::config_of_a;

const SIZE: u64 = 64 * MIB;

/// An `nbdkit` serving `image` through `filter` on a loopback port.
struct Nbdkit {
    child: Child,
    port: u16,
}

impl Nbdkit {
    fn start(image: &Path, filter: &str, params: &[&str]) -> Nbdkit {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("nbdkit")
            .args(["-f", "--exit-with-parent", "-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg(format!("--filter={filter}"))
            .arg("file")
            .arg(format!("file={}", image.display()))
            .args(params)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn nbdkit");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nbdkit did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nbdkit { child, port }
    }
}

impl Drop for Nbdkit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of the source image: three patterned extents and holes.
fn image_bytes() -> Vec<u8> {
    let mut b = vec![0u8; usize::try_from(SIZE).unwrap()];
    for (at, len, byte) in [(0, 4, 0x11u8), (20, 8, 0x22), (63, 1, 0x33)] {
        let at = usize::try_from(at * MIB).unwrap();
        b[at..at + usize::try_from(len * MIB).unwrap()].fill(byte);
    }
    b
}

fn lun_bytes(dir: &Path, array: &str, id: &str) -> Vec<u8> {
    std::fs::read(support::migrations::lun_path(dir, array, id)).unwrap()
}

#[test]
fn nbdkit_faults_of_a_remote_export_are_retried_or_fail_visibly() {
    support::require_tool("nbdkit", "nbdkit");
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("source.img");
    std::fs::write(&image, image_bytes()).unwrap();
    let flaky = Nbdkit::start(&image, "error", &["error=EIO", "error-pread-rate=10%"]);
    let broken = Nbdkit::start(&image, "error", &["error=EIO", "error-pread-rate=100%"]);
    let slow = Nbdkit::start(&image, "delay", &["rdelay=20ms"]);
    let mut config = String::from("[[array]]\nname = \"local\"\ndriver = \"plain\"\n");
    for (name, kit) in [("flaky", &flaky), ("broken", &broken), ("slow", &slow)] {
        config += &format!(
            "[[array]]\nname = \"{name}\"\ndriver = \"misbehave\"\n\
             nbd_allow = [\"nbd://127.0.0.1:{p}\"]\n\
             settings = {{ nbd_uri = \"nbd://127.0.0.1:{p}/\" }}\n",
            p = kit.port
        );
    }
    config += &format!(
        "[[driver]]\nname = \"misbehave\"\npath = {:?}\n",
        ferry::guests::MISBEHAVE_PATH
    );
    let config_path = dir.path().join("ferry.toml");
    std::fs::write(&config_path, config).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, Some(&config_path));
    let expected = image_bytes();

    for array in ["flaky", "slow"] {
        let id = create(&server, array, array, SIZE);
        let (status, answer) = migrate(&server, &id, json!({"array": "local"}));
        assert_eq!(status, 202, "{answer}");
        let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
        assert_eq!(m["migration_status"], "success", "{array}: {m}");
        assert!(
            lun_bytes(&data, "local", &id) == expected,
            "{array}: the copy differs from the export"
        );
    }

    let id = create(&server, "broken", "broken", SIZE);
    let (status, answer) = migrate(&server, &id, json!({"array": "local"}));
    assert_eq!(status, 202, "{answer}");
    let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
    assert_eq!(m["migration_status"], "error", "{m}");
    let error = m["error"].as_str().unwrap_or_default();
    assert!(error.contains("host copy failed"), "{error}");
    let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
    assert_eq!(v["array"], "broken", "{v}");
    assert_eq!(v["status"], "available", "{v}");
    assert!(
        !support::migrations::lun_path(&data, "local", &id).exists(),
        "the rollback removes the partial destination"
    );
    assert_eq!(server.call("GET", "/healthz", None).0, 200);
}

fn done_bytes(server: &Server, id: &str) -> u64 {
    let (_, m): (u16, Value) = server.call("GET", &format!("/v1/volumes/{id}/migration"), None);
    m["progress"]["done_bytes"].as_u64().unwrap_or(0)
}

#[test]
fn kill_9_of_the_remote_host_during_copies_from_it_loses_nothing() {
    support::require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let mut b = Server::start(&dir.path().join("b"), None);
    let a = Server::start(
        &dir.path().join("a"),
        Some(&config_of_a(
            dir.path(),
            &b,
            "copy_bandwidth_bytes_per_sec = 67108864\n",
            true,
        )),
    );
    let id = create(&a, "survivor", "far", 256 * MIB);
    with_attachment(&a, &id, |uri| {
        support::qemu_io(
            uri,
            &[
                "write -P 0x5a 0 8M",
                "write -P 0xa5 128M 8M",
                "write -P 0x3c 255M 1M",
                "flush",
            ],
        )
    });
    for round in 0..5 {
        // From B (killed mid-copy) to the local array.
        let (status, answer) = migrate(&a, &id, json!({"array": "local"}));
        assert_eq!(status, 202, "round {round}: {answer}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut done = 0;
        while done == 0 {
            assert!(
                Instant::now() < deadline,
                "round {round}: the copy never started"
            );
            std::thread::sleep(Duration::from_millis(10));
            done = done_bytes(&a, &id);
        }
        // Killed while the copy still has most of the volume to read.
        assert!(
            done < 200 * MIB,
            "round {round}: {done} bytes copied already"
        );
        b = b.kill_and_relaunch();
        let (m, _) = wait_end(&a, &id, Duration::from_secs(180));
        assert_eq!(m["migration_status"], "success", "round {round}: {m}");
        with_attachment(&a, &id, check);
        // Back onto B for the next round.
        let (status, answer) = migrate(&a, &id, json!({"array": "far"}));
        assert_eq!(status, 202, "round {round}: {answer}");
        let (m, _) = wait_end(&a, &id, Duration::from_secs(180));
        assert_eq!(m["migration_status"], "success", "round {round}: {m}");
    }
    with_attachment(&a, &id, check);
    // Only the one volume on B: no copy of an earlier round left behind.
    let (_, list) = b.call("GET", "/v1/volumes", None);
    assert_eq!(list["volumes"].as_array().unwrap().len(), 1, "{list}");
}

fn check(uri: &str) {
    support::qemu_io(
        uri,
        &[
            "read -P 0x5a 0 8M",
            "read -P 0 8M 120M",
            "read -P 0xa5 128M 8M",
            "read -P 0 136M 119M",
            "read -P 0x3c 255M 1M",
        ],
    );
}

/// Host A restarts while B, which holds an attached volume, is down: A
/// serves the attachment again, under its old export name, once B is back.
#[test]
fn an_attachment_on_a_remote_array_returns_when_its_host_does() {
    support::require_tool("qemu-io", "qemu-utils");
    let dir = tempfile::tempdir().unwrap();
    let b = Server::start(&dir.path().join("b"), None);
    let a = Server::start(
        &dir.path().join("a"),
        Some(&config_of_a(dir.path(), &b, "", true)),
    );
    let id = create(&a, "kept", "far", 16 * MIB);
    let (status, att) = a.call(
        "POST",
        &format!("/v1/volumes/{id}/attachments"),
        Some(json!({"server": "db"})),
    );
    assert_eq!(status, 201, "{att}");
    let export = support::export_of(att["uri"].as_str().unwrap()).to_owned();
    support::qemu_io(
        att["uri"].as_str().unwrap(),
        &["write -P 0x77 0 1M", "flush"],
    );

    let addresses = Some((b.http_addr(), b.nbd.clone()));
    let b_dir = b.kill();
    let a = a.restart();
    // A is up without B; its attachment waits for B.
    assert_eq!(a.call("GET", "/healthz", None).0, 200);
    let b = Server::launch(
        &b_dir,
        None,
        &support::Launch {
            addresses,
            ..support::Launch::default()
        },
    );
    let uri = format!("nbd://{}/{export}", a.nbd);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("qemu-io")
            .args(["-f", "raw", "-c", "read -P 0x77 0 1M", &uri])
            .output()
            .unwrap();
        if out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("fail") {
            break;
        }
        assert!(Instant::now() < deadline, "the export never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(b);
}
