//! Unit tests of the kit: its verdicts on the example drivers and on the
//! careless test component, and the limits check on its own.

use super::*;
use crate::guests;

fn options() -> CheckOptions {
    CheckOptions {
        // Short, so the careless driver's endless loop ends soon.
        limits: DriverLimits {
            deadline_ms: 1_000,
            ..DriverLimits::default()
        },
        scratch_parent: None,
    }
}

fn statuses(r: &Report) -> Vec<(&'static str, Status)> {
    r.checks
        .iter()
        .map(|c| (c.name.as_str(), c.status))
        .collect()
}

fn reason(r: &Report, name: CheckName) -> &str {
    r.check(name).map_or("", |c| c.reason.as_str())
}

#[test]
fn the_plain_driver_passes_and_skips_only_what_it_does_not_claim() {
    let r = check_component(guests::PLAIN, &options()).unwrap();
    assert!(r.passed(), "{r:#?}");
    assert_eq!(r.checks.len(), CheckName::ALL.len());
    assert_eq!(
        r.check(CheckName::MigrationData).map(|c| c.status),
        Some(Status::Skip)
    );
    assert!(reason(&r, CheckName::Loads).contains("capabilities: sparse"));
    assert!(!r.calls.is_empty() && r.calls.iter().all(|c| !c.is_fault()));
    assert_eq!(r.digest.len(), 64);
}

#[test]
fn the_careless_driver_fails_exactly_what_it_breaks() {
    let r = check_file(Path::new(guests::CARELESS_PATH), &options()).unwrap();
    assert_eq!(
        statuses(&r),
        [
            ("loads", Status::Pass),
            ("life-cycle", Status::Pass),
            ("idempotent-retries", Status::Fail),
            ("declines-unsupported", Status::Fail),
            ("migration-data", Status::Fail),
            ("manage-existing", Status::Skip),
            ("errors-not-traps", Status::Fail),
            ("within-limits", Status::Fail),
        ],
        "{r:#?}"
    );
    let retries = reason(&r, CheckName::IdempotentRetries);
    assert!(
        retries.contains("second create-volume lost data"),
        "{retries}"
    );
    assert!(retries.contains("second delete-volume"), "{retries}");
    let declines = reason(&r, CheckName::DeclinesUnsupported);
    assert!(
        declines.contains("take-over-remote-lun trapped"),
        "{declines}"
    );
    assert!(
        declines.contains("migrate-volume-target ran past"),
        "{declines}"
    );
    let data = reason(&r, CheckName::MigrationData);
    assert!(
        data.contains("migrate-volume answered moved=true but on check-b"),
        "{data}"
    );
    let errors = reason(&r, CheckName::ErrorsNotTraps);
    assert!(
        errors.contains("delete-volume of an unknown volume trapped"),
        "{errors}"
    );
    let limits = reason(&r, CheckName::WithinLimits);
    assert!(
        limits.contains("migrate-volume-target (declines-unsupported) ran past the deadline"),
        "{limits}"
    );
    assert!(
        limits.contains("delete-volume (errors-not-traps) trapped"),
        "{limits}"
    );
}

#[test]
fn bytes_that_are_no_component_are_refused_with_the_runtimes_reason() {
    let e = check_component(b"not wasm at all", &options()).unwrap_err();
    assert_eq!(e.code(), "not_wasm");
    let e = check_component(b"\0asm\x01\0\0\0", &options()).unwrap_err();
    assert_eq!(e.code(), "core_module");
    assert!(e.to_string().contains("core WebAssembly module"), "{e}");
    let e = check_file(Path::new("/nonexistent/driver.wasm"), &options()).unwrap_err();
    assert_eq!(e.code(), "unreadable");
}

#[test]
fn a_component_of_another_world_fails_loads_and_skips_the_rest() {
    // The smallest valid component: it exports nothing.
    let r = check_component(b"\0asm\x0d\0\x01\0", &options()).unwrap();
    assert!(!r.passed());
    assert_eq!(r.checks[0].status, Status::Fail);
    assert!(r.checks[0].reason.contains("driver-world"), "{r:#?}");
    assert!(r.checks[1..].iter().all(|c| c.status == Status::Skip));
}

#[test]
fn the_limits_check_names_every_fault_and_the_slowest_call() {
    let call = |call, check, elapsed_ms, outcome| CallRecord {
        call,
        check,
        elapsed_ms,
        outcome,
    };
    let mut r = Report {
        digest: String::new(),
        capabilities: None,
        deadline_ms: 5_000,
        memory_limit_bytes: 64 << 20,
        checks: Vec::new(),
        calls: vec![
            call("create-volume", CheckName::LifeCycle, 7, CallOutcome::Ok),
            call(
                "delete-volume",
                CheckName::ErrorsNotTraps,
                2,
                CallOutcome::Error {
                    code: "driver_not_found".into(),
                },
            ),
        ],
    };
    let ok = within_limits(&r, Some(3 << 20));
    assert_eq!(ok.status, Status::Pass);
    assert!(ok.reason.contains("2 calls"), "{}", ok.reason);
    assert!(ok.reason.contains("peak memory 3.0 MiB"), "{}", ok.reason);
    assert!(
        ok.reason
            .contains("slowest: create-volume (life-cycle) 7 ms"),
        "{}",
        ok.reason
    );

    r.calls.push(call(
        "migrate-volume",
        CheckName::MigrationData,
        40,
        CallOutcome::Fault {
            code: "driver_out_of_memory".into(),
            message: "x".into(),
        },
    ));
    let bad = within_limits(&r, Some(3 << 20));
    assert_eq!(bad.status, Status::Fail);
    assert_eq!(
        bad.reason,
        "migrate-volume (migration-data) ran out of memory"
    );
}
