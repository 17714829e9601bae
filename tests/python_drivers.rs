//! Drivers written in Python: the `python-plain` example, componentized by
//! componentize-py with the Python SDK (`sdk/python`), passes the
//! conformance kit, serves and migrates volumes as a driver of its own
//! arrays, and replaces its Rust twin on a running host.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::Server;
use support::migrations::{check_data, migrate, volume_with_data, wait_end};

/// The Python example's component, built by `host/build.rs`.
fn python_plain() -> &'static str {
    ferry::guests::PYTHON_PLAIN_PATH.expect(
        "the Python example driver was not built: componentize-py (from PyPI) was missing \
         when the host was built; run cargo xtask install-peers, then build again",
    )
}

/// `ferry driver check` on `path`, which must pass with `summary` and
/// each of `passing` passed.
fn check(path: &str, summary: &str, passing: &[&str]) {
    let out = Command::new(support::ferry_bin())
        .args(["driver", "check", path])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    assert!(text.contains(summary), "{text}");
    for check in passing {
        let row = text
            .lines()
            .find(|l| l.starts_with(check))
            .unwrap_or_default();
        assert!(row.contains(" pass "), "{check}: {text}");
    }
}

#[test]
fn ferry_driver_check_passes_the_python_examples() {
    check(
        python_plain(),
        "7 passed, 0 failed, 1 skipped",
        &[
            "life-cycle",
            "idempotent-retries",
            "manage-existing",
            "errors-not-traps",
        ],
    );
    // The takeover port moves a volume asynchronously with its data.
    let takeover = ferry::guests::PYTHON_TAKEOVER_PATH.expect("built with python-plain");
    check(
        takeover,
        "8 passed, 0 failed, 0 skipped",
        &["migration-data", "within-limits"],
    );
}

#[test]
fn a_python_driver_serves_volumes_and_both_migration_directions() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            r#"
zoning = [["t1", "py1"]]

[[driver]]
name = "python-plain"
path = "{}"

[[array]]
name = "py1"
driver = "python-plain"

[[array]]
name = "t1"
driver = "takeover"
"#,
            python_plain()
        ),
    )
    .unwrap();
    let server = Server::start(&dir.path().join("data"), Some(&config));
    let (_, drivers) = server.call("GET", "/v1/drivers", None);
    assert!(drivers.to_string().contains("python-plain"), "{drivers}");

    // Created, written and read through the Python driver's LUN.
    let id = volume_with_data(&server, "py-vol", "py1");
    check_data(&server, &id);
    // To the takeover array (its driver takes the Python driver's LUN
    // over), and back by the host's copy (the Python driver declines).
    for to in ["t1", "py1"] {
        let (status, body) = migrate(&server, &id, json!({"array": to}));
        assert_eq!(status, 202, "{body}");
        let (m, _) = wait_end(&server, &id, Duration::from_secs(120));
        assert_eq!(m["migration_status"], "success", "{m}");
        let (_, v) = server.call("GET", &format!("/v1/volumes/{id}"), None);
        assert_eq!(v["array"], to);
        check_data(&server, &id);
    }
    let (status, _) = server.call("DELETE", &format!("/v1/volumes/{id}"), None);
    assert_eq!(status, 204);
}

#[test]
fn a_rust_driver_is_replaced_by_its_python_twin_on_a_running_host() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), None);
    // A volume made by the Rust `plain` driver...
    let id = volume_with_data(&server, "before", "p1");
    let bytes = std::fs::read(python_plain()).unwrap();
    assert!(
        bytes.len() > 10 << 20,
        "a Python component is large: {}",
        bytes.len()
    );
    // ...stays readable after the Python component is installed over it
    // (uploaded like any driver, at its size, with the default limits).
    let (status, version) = server.send_bytes("PUT", "/v1/drivers/plain", &bytes);
    assert_eq!(status, 201, "{version}");
    let (_, drivers) = server.call("GET", "/v1/drivers", None);
    let plain = drivers["drivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "plain")
        .unwrap();
    assert_eq!(plain["active_digest"], version["digest"]);
    check_data(&server, &id);
    // New volumes are the Python driver's from the start, and both go away.
    let fresh = volume_with_data(&server, "after", "p1");
    check_data(&server, &fresh);
    for v in [&id, &fresh] {
        let (status, _) = server.call("DELETE", &format!("/v1/volumes/{v}"), None);
        assert_eq!(status, 204);
    }
}

/// Copies the tree at `from` to `to`, leaving out `__pycache__`.
fn copy_tree(from: &str, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(path.to_str().unwrap(), &to.join(entry.file_name()));
            }
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_python_guide_leads_from_an_empty_directory_to_a_served_volume() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    // 1. The tool.
    support::require_tool("componentize-py", "componentize-py (from PyPI)");
    // 2. app.py, started from the example.
    std::fs::create_dir(work.join("my-driver")).unwrap();
    std::fs::copy(
        format!("{repo}/drivers/python-plain/app.py"),
        work.join("my-driver/app.py"),
    )
    .unwrap();
    // 3. The component, with the contract and the SDK on the paths, run
    // as the guide writes it: from a directory holding `wit` and
    // `sdk/python` (copies here, so the checkout stays as it is).
    copy_tree(&format!("{repo}/wit"), &work.join("wit"));
    copy_tree(&format!("{repo}/sdk/python"), &work.join("sdk/python"));
    support::run_in(
        work,
        "componentize-py",
        &[
            "--wit-path",
            "wit",
            "--world",
            "driver-world",
            "componentize",
            "app",
            "--python-path",
            "my-driver",
            "--python-path",
            "sdk/python",
            "--output",
            "my-driver.wasm",
        ],
    );
    // 4. The contract's checks.
    let report = support::run_in(
        work,
        support::ferry_bin(),
        &["driver", "check", "my-driver.wasm"],
    );
    assert!(report.contains(", 0 failed"), "{report}");
    // 5. Named in the configuration with an array that uses it...
    let config = work.join("ferry.toml");
    std::fs::write(
        &config,
        "[[driver]]\nname = \"my-driver\"\npath = \"my-driver.wasm\"\n\n\
         [[array]]\nname = \"mine\"\ndriver = \"my-driver\"\n",
    )
    .unwrap();
    let server = Server::launch(
        &work.join("ferry-data"),
        Some(&config),
        &support::Launch {
            current_dir: Some(work.to_owned()),
            ..Default::default()
        },
    );
    let id = volume_with_data(&server, "first", "mine");
    check_data(&server, &id);
    // ...and a version put onto the running host, as the guide shows.
    let url = format!("{}/v1/drivers/my-driver", server.url);
    let token = format!("Authorization: Bearer {}", server.token);
    let answer = support::run_in(
        work,
        "curl",
        &[
            "-sS",
            "-X",
            "PUT",
            "--data-binary",
            "@my-driver.wasm",
            "-H",
            &token,
            &url,
        ],
    );
    assert!(answer.contains("\"name\":\"my-driver\""), "{answer}");
    check_data(&server, &id);
}

#[test]
fn a_hydration_started_by_the_rust_takeover_is_finished_by_its_python_twin() {
    use support::volume_model::{
        Model, attach, config_with, create_with_pattern, migration, verify, wait_for,
    };
    const MIB: u64 = 1 << 20;
    let python = ferry::guests::PYTHON_TAKEOVER_PATH.expect("built with python-plain");
    let dir = tempfile::tempdir().unwrap();
    // Slow enough that the swap lands while the volume still hydrates.
    let config = config_with(dir.path(), 8 * MIB, support::volume_model::Takeover::Rust);
    let server = Server::start(&dir.path().join("data"), Some(&config));
    // The Python component is installed beside the Rust one, not active:
    // its compile takes seconds, the swap itself none.
    let bytes = std::fs::read(python).unwrap();
    let (status, version) = server.send_bytes("PUT", "/v1/drivers/takeover?activate=false", &bytes);
    assert_eq!(status, 201, "{version}");
    assert_eq!(version["capabilities"]["async_target_migration"], true);
    let size = 512 * MIB;
    let mut model = Model::new(size);
    let id = create_with_pattern(&server, "swap", size, 64 * MIB, &mut model);
    let (status, body) = server.call(
        "POST",
        &format!("/v1/volumes/{id}/migrate"),
        Some(json!({"array": "t1"})),
    );
    assert_eq!(status, 202, "{body}");
    wait_for(&server, &id, "migrating_attachable", Duration::from_secs(5));
    let (_, uri) = attach(&server, &id);
    // The polls that follow run in Python, on the state the Rust driver
    // kept.
    let (status, active) = server.call(
        "POST",
        "/v1/drivers/takeover/activate",
        Some(json!({"digest": version["digest"]})),
    );
    assert_eq!(status, 200, "{active}");
    let during = migration(&server, &id);
    assert_eq!(
        during["migration_status"], "migrating_attachable",
        "the hydration ended before the swap: {during}"
    );
    let m = wait_for(&server, &id, "success", Duration::from_secs(120));
    assert_eq!(m["progress"]["percent"], 100.0, "{m}");
    verify(&uri, &model, 0, size);
}
