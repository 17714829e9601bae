//! `ferry driver check`, the driver conformance kit, run as a vendor runs
//! it: the real binary on a component file. The example drivers pass; the
//! careless test component fails exactly the checks it breaks; what is no
//! component is refused with exit status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn ferry_check(file: &Path, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["driver", "check"]).arg(file);
    if json {
        cmd.arg("--json");
    }
    // The kit needs no server, token or data directory.
    cmd.env_remove("FERRY_TOKEN")
        .env_remove("FERRY_URL")
        .env("RUST_LOG", "off");
    cmd.output().expect("run ferry")
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `(name, status, reason)` of every check.
fn checks(v: &Value) -> Vec<(String, String, String)> {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("name"), s("status"), s("reason"))
        })
        .collect()
}

fn check<'a>(all: &'a [(String, String, String)], name: &str) -> (&'a str, &'a str) {
    all.iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, r)| (s.as_str(), r.as_str()))
        .unwrap_or_else(|| panic!("no check {name} in {all:?}"))
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write component");
    path
}

fn example(name: &str) -> &'static [u8] {
    ferry::guests::EXAMPLE_DRIVERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no example driver {name}"))
}

/// Runs the kit on an example driver and returns its checks, asserting
/// that it passed.
fn passes(name: &str) -> Vec<(String, String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), &format!("{name}.wasm"), example(name));
    passes_file(name, &file)
}

fn passes_file(name: &str, file: &Path) -> Vec<(String, String, String)> {
    let out = ferry_check(file, true);
    let v = report(&out);
    let all = checks(&v);
    assert_eq!(out.status.code(), Some(0), "{name}: {all:#?}");
    assert_eq!(v["passed"], true);
    assert_eq!(all.len(), 8, "{all:?}");
    for (check, status, reason) in &all {
        assert!(
            status == "pass" || status == "skip",
            "{name}: {check} {status}: {reason}"
        );
    }
    for always in [
        "loads",
        "life-cycle",
        "idempotent-retries",
        "errors-not-traps",
        "within-limits",
    ] {
        assert_eq!(check(&all, always).0, "pass", "{name}: {always}");
    }
    all
}

#[test]
fn the_takeover_driver_passes_and_its_async_move_keeps_the_data() {
    let all = passes("takeover");
    let (status, reason) = check(&all, "migration-data");
    assert_eq!(status, "pass");
    assert!(reason.contains("asynchronously with its data"), "{reason}");
    // It lacks source migration, so migrate-volume must have declined.
    let (status, reason) = check(&all, "declines-unsupported");
    assert_eq!(status, "pass");
    assert!(reason.contains("migrate-volume declines"), "{reason}");
}

#[test]
fn the_vendor_copy_driver_passes_and_its_move_to_a_peer_keeps_the_data() {
    let all = passes("vendor-copy");
    let (status, reason) = check(&all, "migration-data");
    assert_eq!(status, "pass");
    assert!(
        reason.contains("moved the volume to peer array"),
        "{reason}"
    );
    let (status, reason) = check(&all, "declines-unsupported");
    assert_eq!(status, "pass");
    assert!(
        reason.contains("take-over-remote-lun and migrate-volume-target decline"),
        "{reason}"
    );
}

/// The example drivers as built against contract 0.1.0 still pass every
/// check on this host, with the same migrations, and are named as such.
#[test]
fn the_0_1_0_example_components_pass_unchanged() {
    for (name, path) in ferry::guests::CONTRACT_0_1_FIXTURES {
        let all = passes_file(name, Path::new(path));
        let (_, loads) = check(&all, "loads");
        assert!(loads.contains("ferry:driver@0.1.0"), "{name}: {loads}");
        assert!(!loads.contains("live-move"), "{name}: {loads}");
        let expected = if name == "plain" { "skip" } else { "pass" };
        assert_eq!(check(&all, "migration-data").0, expected, "{name}: {all:?}");
        // Contract 0.1.0 has no manage-existing: the host answers unsupported.
        assert_eq!(check(&all, "manage-existing").0, "skip", "{name}: {all:?}");
    }
    // The current build of the same drivers targets 0.2.0.
    let all = passes("vendor-copy");
    let (_, loads) = check(&all, "loads");
    assert!(loads.contains("ferry:driver@0.2.0"), "{loads}");
}

#[test]
fn the_plain_driver_passes_and_has_no_migration_to_check() {
    let all = passes("plain");
    assert_eq!(check(&all, "migration-data").0, "skip");
    assert_eq!(check(&all, "declines-unsupported").0, "pass");
    let (status, reason) = check(&all, "manage-existing");
    assert_eq!(status, "pass", "{reason}");
    assert!(reason.contains("without a copy"), "{reason}");
}

#[test]
fn drivers_that_misbehave_only_on_request_pass() {
    // `misbehave` and `faulty` break only for volume names the kit never
    // uses: the kit must not see faults that are not there.
    for path in [ferry::guests::MISBEHAVE_PATH, ferry::guests::FAULTY_PATH] {
        let out = ferry_check(Path::new(path), true);
        let all = checks(&report(&out));
        assert_eq!(out.status.code(), Some(0), "{path}: {all:#?}");
    }
}

#[test]
fn the_careless_driver_fails_exactly_the_checks_it_breaks() {
    let path = Path::new(ferry::guests::CARELESS_PATH);
    let out = ferry_check(path, true);
    let v = report(&out);
    let all = checks(&v);
    assert_eq!(out.status.code(), Some(1), "{all:#?}");
    assert_eq!(v["passed"], false);
    let statuses: Vec<(&str, &str)> = all
        .iter()
        .map(|(n, s, _)| (n.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("loads", "pass"),
            ("life-cycle", "pass"),
            ("idempotent-retries", "fail"),
            ("declines-unsupported", "fail"),
            ("migration-data", "fail"),
            ("manage-existing", "skip"),
            ("errors-not-traps", "fail"),
            ("within-limits", "fail"),
        ]
    );
    let reason = |name| check(&all, name).1;
    // Second create wiped the volume; second delete trapped.
    assert!(reason("idempotent-retries").contains("a second create-volume lost data"));
    assert!(reason("idempotent-retries").contains("read as zeroes"));
    assert!(
        reason("idempotent-retries")
            .contains("a second delete-volume (of a deleted volume) trapped")
    );
    // It claims no take-over, yet traps and loops instead of declining.
    assert!(reason("declines-unsupported").contains("take-over-remote-lun trapped"));
    assert!(
        reason("declines-unsupported")
            .contains("migrate-volume-target ran past its 5000 ms deadline")
    );
    // Its move to a peer lost the data.
    assert!(reason("migration-data").contains("migrate-volume answered moved=true but on check-b"));
    assert!(reason("errors-not-traps").contains("delete-volume of an unknown volume trapped"));
    // Every fault named, with the check that made the call.
    let limits = reason("within-limits");
    for named in [
        "delete-volume (idempotent-retries) trapped",
        "take-over-remote-lun (declines-unsupported) trapped",
        "migrate-volume-target (declines-unsupported) ran past the deadline",
        "delete-volume (errors-not-traps) trapped",
    ] {
        assert!(limits.contains(named), "{named:?} not in {limits:?}");
    }

    // The table says the same to a person.
    let out = ferry_check(path, false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("idempotent-retries    fail ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("life-cycle            pass ")),
        "{text}"
    );
    assert!(text.contains(": 2 passed, 5 failed, 1 skipped"), "{text}");
}

#[test]
fn what_is_no_component_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write_file(
        dir.path(),
        "garbage.wasm",
        b"#!/bin/sh\necho not a driver\n",
    );
    let out = ferry_check(&garbage, false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not WebAssembly"), "{err}");
    assert!(err.contains("(not_wasm)"), "{err}");
    assert!(out.stdout.is_empty());

    let core = write_file(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let out = ferry_check(&core, true);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("core WebAssembly module"), "{err}");
    assert_eq!(report(&out)["error"]["code"], "core_module");

    let out = ferry_check(&dir.path().join("missing.wasm"), false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn the_limits_given_on_the_command_line_are_the_ones_checked() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write_file(dir.path(), "plain.wasm", example("plain"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["driver", "check"])
            .arg(&plain)
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .expect("run ferry")
    };
    let out = run(&[
        "--deadline-ms",
        "250",
        "--memory-bytes",
        "8388608",
        "--json",
    ]);
    let all = checks(&report(&out));
    assert_eq!(out.status.code(), Some(0), "{all:#?}");
    let (status, reason) = check(&all, "within-limits");
    assert_eq!(status, "pass");
    assert!(reason.contains("250 ms and 8 MiB"), "{reason}");
    // A memory limit below what the component declares refuses it outright.
    let out = run(&["--memory-bytes", "1048576"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeds the limit"), "{err}");
    // Limits out of range are usage errors, before anything runs.
    for bad in [["--deadline-ms", "0"], ["--memory-bytes", "5368709120"]] {
        let out = run(&bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_careless_python_driver_fails_the_same_checks_for_the_same_reasons() {
    let python = ferry::guests::PYTHON_CARELESS_PATH.expect(
        "the Python components were not built: componentize-py (from PyPI) was missing when \
         the host was built; run cargo xtask install-peers",
    );
    let verdicts = |path: &Path| {
        let out = ferry_check(path, true);
        assert_eq!(out.status.code(), Some(1));
        checks(&report(&out))
    };
    let rust = verdicts(Path::new(ferry::guests::CARELESS_PATH));
    let py = verdicts(Path::new(python));
    let statuses = |all: &[(String, String, String)]| -> Vec<(String, String)> {
        all.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect()
    };
    assert_eq!(statuses(&py), statuses(&rust), "{py:#?}");
    let reason = |name| check(&py, name).1;
    for (name, words) in [
        ("idempotent-retries", "a second create-volume lost data"),
        (
            "idempotent-retries",
            "a second delete-volume (of a deleted volume) trapped",
        ),
        ("declines-unsupported", "take-over-remote-lun trapped"),
        (
            "declines-unsupported",
            "migrate-volume-target ran past its 5000 ms deadline",
        ),
        (
            "migration-data",
            "migrate-volume answered moved=true but on check-b",
        ),
        (
            "errors-not-traps",
            "delete-volume of an unknown volume trapped",
        ),
        (
            "within-limits",
            "delete-volume (idempotent-retries) trapped",
        ),
    ] {
        assert!(
            reason(name).contains(words),
            "{name}: {words:?} not in {:?}",
            reason(name)
        );
    }
}
