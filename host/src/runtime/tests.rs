//! Unit tests of the runtime with the example driver components.

use std::path::Path;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::*;
use crate::block::BlockDevice;
use crate::config::ArrayConfig;
use crate::error_kind::ErrorKind;
use crate::guests;
use crate::model::LunAddress;

pub(super) fn runtime_with(state: Arc<MemoryStateStore>) -> DriverRuntime {
    DriverRuntime::new(RuntimeConfig::default(), state).unwrap()
}

fn runtime() -> DriverRuntime {
    runtime_with(Arc::new(MemoryStateStore::default()))
}

pub(super) fn array(dir: &Path, name: &str, driver: &str, capacity: u64) -> Arc<Array> {
    let cfg = ArrayConfig {
        name: name.into(),
        driver: driver.into(),
        pools: vec!["default".into()],
        capacity_bytes: capacity,
        settings: Default::default(),
        secrets: Default::default(),
        http_allow: Vec::new(),
        http_ca_file: None,
        nbd_allow: Vec::new(),
        lun_files: true,
    };
    Arc::new(Array::open(dir, &cfg).unwrap())
}

pub(super) fn volume(name: &str, size: u64) -> VolumeRef {
    VolumeRef {
        id: uuid::Uuid::new_v4(),
        name: name.into(),
        size_bytes: size,
        pool: "default".into(),
        provider_location: None,
    }
}

pub(super) fn lun_of(v: &VolumeRef) -> LunAddress {
    LunAddress {
        pool: v.pool.clone(),
        name: format!("volume-{}", v.id),
    }
}

pub(super) fn example(name: &str) -> &'static [u8] {
    guests::EXAMPLE_DRIVERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no example driver {name}"))
}

#[test]
fn garbage_and_core_modules_are_refused_with_specific_errors() {
    let rt = runtime();
    let garbage = rt.install("x", b"hello world, not wasm").unwrap_err();
    assert_eq!(garbage.code(), "not_wasm", "{garbage}");
    let core = rt.install("x", b"\0asm\x01\0\0\0").unwrap_err();
    assert_eq!(core.code(), "core_module");
    assert!(
        core.to_string().contains("core WebAssembly module"),
        "{core}"
    );
    let truncated = rt.install("x", b"\0asm\x0d\0\x01\0\x07\xff").unwrap_err();
    assert_eq!(truncated.code(), "compile_failed", "{truncated}");
    assert_eq!(rt.active_digest("x"), None);
}

#[test]
fn a_component_of_another_world_is_refused_and_the_old_version_stays() {
    let rt = runtime();
    let plain = rt.install("x", guests::PLAIN).unwrap();
    // The smallest valid component: it exports nothing, so it cannot be a
    // driver.
    let err = rt.install("x", b"\0asm\x0d\0\x01\0").unwrap_err();
    assert_eq!(err.code(), "wrong_world", "{err}");
    assert!(err.to_string().contains("driver-world"), "{err}");
    assert_eq!(rt.active_digest("x"), Some(plain.digest));
}

#[test]
fn oversized_components_are_refused_before_parsing() {
    let rt = DriverRuntime::new(
        RuntimeConfig {
            max_component_bytes: 16,
            ..RuntimeConfig::default()
        },
        Arc::new(MemoryStateStore::default()),
    )
    .unwrap();
    let err = rt.install("x", &[0u8; 17]).unwrap_err();
    assert_eq!(err.code(), "component_too_large");
}

#[test]
fn example_drivers_install_once_per_digest_and_answer_capabilities() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    assert!(!guests::EXAMPLE_DRIVERS.is_empty());
    for (name, bytes) in guests::EXAMPLE_DRIVERS {
        let installed = rt.install(name, bytes).unwrap();
        assert_eq!(installed.digest, hex::encode(Sha256::digest(bytes)));
        assert_eq!(rt.active_digest(name), Some(installed.digest.clone()));
        let caps = installed.capabilities;
        match *name {
            "plain" => assert_eq!(
                caps,
                Capabilities {
                    sparse: true,
                    ..Capabilities::default()
                }
            ),
            "takeover" => assert!(caps.take_over && caps.async_target_migration),
            "vendor-copy" => assert!(caps.source_migration && !caps.take_over),
            "ferry-remote" => assert_eq!(
                caps,
                Capabilities {
                    sparse: true,
                    ..Capabilities::default()
                }
            ),
            other => panic!("unexpected example driver {other}"),
        }
        let a = array(dir.path(), &format!("a-{name}"), name, 1 << 30);
        assert_eq!(rt.capabilities(&CallScope::new(a, vec![])).unwrap(), caps);
    }
    let compiled = lock(&rt.inner.compiled).len();
    // The same bytes again, under another name: no second compilation.
    let again = rt.install("plain-again", guests::PLAIN).unwrap();
    assert_eq!(lock(&rt.inner.compiled).len(), compiled);
    assert_eq!(Some(again.digest), rt.active_digest("plain"));
}

#[test]
fn plain_volume_round_trip_on_a_file_backed_array() {
    let rt = runtime();
    rt.install("plain", guests::PLAIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "p1", "plain", 1 << 30);
    let scope = CallScope::new(a.clone(), vec!["t1".into()]);
    let mut v = volume("data", 8 << 20);

    let location = rt.create_volume(&scope, &v).unwrap();
    assert_eq!(location, Some(format!("default/volume-{}", v.id)));
    let lun = a.open_lun(&lun_of(&v)).unwrap();
    assert_eq!(lun.size(), 8 << 20);
    v.provider_location = location;
    // Creating again is idempotent.
    rt.create_volume(&scope, &v).unwrap();

    let server = Connector::Server("srv".into());
    let info = rt.initialize_connection(&scope, &v, &server).unwrap();
    assert_eq!(info.data, crate::model::DataPath::Lun(lun_of(&v)));
    assert!(!info.read_only);
    rt.terminate_connection(&scope, &v, &server).unwrap();

    rt.delete_volume(&scope, &v).unwrap();
    assert!(!a.lun_exists(&lun_of(&v)).unwrap());
    rt.delete_volume(&scope, &v).unwrap();
}

#[test]
fn array_errors_reach_the_caller_as_driver_errors() {
    let rt = runtime();
    rt.install("plain", guests::PLAIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "p1", "plain", 1 << 20);
    let scope = CallScope::new(a, vec![]);

    let err = rt
        .create_volume(&scope, &volume("big", 2 << 20))
        .unwrap_err();
    assert_eq!(err.code(), "driver_no_space", "{err}");
    assert_eq!(err.kind(), ErrorKind::Unprocessable);

    let mut elsewhere = volume("gold", 512);
    elsewhere.pool = "gold".into();
    let err = rt.create_volume(&scope, &elsewhere).unwrap_err();
    assert_eq!(err.code(), "driver_not_found", "{err}");
    assert!(err.to_string().contains("gold"), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn calls_to_unknown_drivers_fail_as_not_loaded() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "p1", "nope", 1 << 20);
    let err = rt.capabilities(&CallScope::new(a, vec![])).unwrap_err();
    assert!(
        matches!(&err, CallError::NotLoaded(d) if d == "nope"),
        "{err}"
    );
    assert_eq!(err.code(), "driver_not_loaded");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[test]
fn vendor_copy_moves_a_volume_to_its_peer_natively() {
    let rt = runtime();
    rt.install("vendor-copy", example("vendor-copy")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v1 = array(dir.path(), "v1", "vendor-copy", 1 << 30);
    let v2 = array(dir.path(), "v2", "vendor-copy", 1 << 30);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let mut scope = CallScope::new(v1.clone(), vec![]);
    scope.progress = Some(Arc::new(move |d, t| lock(&sink).push((d, t))));

    let mut v = volume("moving", 16 << 20);
    v.provider_location = rt.create_volume(&scope, &v).unwrap();
    v1.open_lun(&lun_of(&v))
        .unwrap()
        .write_at(&[0xab; 4096], 5 << 20)
        .unwrap();

    let dest = Destination {
        array: "v2".into(),
        pool: "default".into(),
        driver: "vendor-copy".into(),
    };
    let out = rt
        .migrate_volume(&scope, &v, &dest, Some(v2.clone()))
        .unwrap();
    assert!(out.moved);
    assert_eq!(out.model_update, Some(format!("default/volume-{}", v.id)));
    assert!(!v1.lun_exists(&lun_of(&v)).unwrap());
    let mut buf = [0u8; 4096];
    v2.open_lun(&lun_of(&v))
        .unwrap()
        .read_at(&mut buf, 5 << 20)
        .unwrap();
    assert_eq!(buf, [0xab; 4096]);
    assert_eq!(lock(&reports).last(), Some(&(16 << 20, 16 << 20)));

    // Without a peer the driver declines.
    let mut w = volume("stays", 512);
    w.provider_location = rt.create_volume(&scope, &w).unwrap();
    let out = rt.migrate_volume(&scope, &w, &dest, None).unwrap();
    assert!(!out.moved);
}

#[test]
fn a_peer_of_another_driver_is_never_handed_out() {
    let rt = runtime();
    rt.install("vendor-copy", example("vendor-copy")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let v1 = array(dir.path(), "v1", "vendor-copy", 1 << 30);
    let p1 = array(dir.path(), "p1", "plain", 1 << 30);
    let scope = CallScope::new(v1.clone(), vec![]);
    let v = volume("x", 512);
    let dest = Destination {
        array: "p1".into(),
        pool: "default".into(),
        driver: "plain".into(),
    };
    let err = rt.migrate_volume(&scope, &v, &dest, Some(p1)).unwrap_err();
    assert_eq!(err.code(), "driver_invalid_argument", "{err}");
    let err = rt
        .migrate_volume(&scope, &v, &dest, Some(v1.clone()))
        .unwrap_err();
    assert_eq!(err.code(), "driver_invalid_argument", "{err}");
}

#[test]
fn takeover_moves_a_remote_lun_and_commits_its_state() {
    let state = Arc::new(MemoryStateStore::default());
    let rt = runtime_with(state.clone());
    rt.install("takeover", example("takeover")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t1 = array(dir.path(), "t1", "takeover", 1 << 30);
    let p1 = array(dir.path(), "p1", "plain", 1 << 30);
    let scope = CallScope::new(t1.clone(), vec!["p1".into()]);

    let v = volume("remote", 8 << 20);
    let remote = Arc::new(p1.create_lun(&lun_of(&v), 8 << 20).unwrap());
    remote.write_at(&[0x5a; 8192], 1 << 20).unwrap();
    assert!(state.keys("takeover", "").unwrap().is_empty());

    rt.take_over_remote_lun(&scope, &v, remote.clone()).unwrap();
    assert!(
        !state.keys("takeover", "").unwrap().is_empty(),
        "the take-over record was not committed"
    );

    let source = Source {
        array: "p1".into(),
        pool: "default".into(),
        driver: "plain".into(),
    };
    let out = rt
        .migrate_volume_target(&scope, &v, &source, remote.clone())
        .unwrap();
    assert!(out.moved);
    let mut polls = 0;
    if out.is_async {
        loop {
            let c = rt
                .complete_migration_target(&scope, &v, &source, remote.clone())
                .unwrap();
            assert!(c.done_bytes <= c.total_bytes);
            polls += 1;
            if c.done {
                break;
            }
            assert!(polls < 10_000, "the migration never completed");
        }
    }
    let mut buf = [0u8; 8192];
    t1.open_lun(&lun_of(&v))
        .unwrap()
        .read_at(&mut buf, 1 << 20)
        .unwrap();
    assert_eq!(buf, [0x5a; 8192]);
}

#[test]
fn hot_swap_changes_the_answer_of_the_next_call() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let a = array(dir.path(), "x1", "x", 1 << 30);
    let scope = CallScope::new(a, vec![]);
    let first = rt.install("x", guests::PLAIN).unwrap();
    assert!(!rt.capabilities(&scope).unwrap().take_over);
    let second = rt.install("x", guests::TAKEOVER).unwrap();
    assert_ne!(first.digest, second.digest);
    assert!(rt.capabilities(&scope).unwrap().take_over);
    // Rolling back reuses the compiled version.
    let back = rt.install("x", guests::PLAIN).unwrap();
    assert_eq!(back.digest, first.digest);
    assert!(!rt.capabilities(&scope).unwrap().take_over);
}

#[test]
fn error_codes_and_kinds_are_stable() {
    let d = |kind| CallError::Driver {
        kind,
        message: "m".into(),
    };
    let cases = [
        (
            d(DriverErrorKind::Unsupported),
            "driver_unsupported",
            ErrorKind::Unprocessable,
        ),
        (
            d(DriverErrorKind::InvalidArgument),
            "driver_invalid_argument",
            ErrorKind::BadRequest,
        ),
        (
            d(DriverErrorKind::NotFound),
            "driver_not_found",
            ErrorKind::NotFound,
        ),
        (
            d(DriverErrorKind::NoSpace),
            "driver_no_space",
            ErrorKind::Unprocessable,
        ),
        (
            d(DriverErrorKind::BackendError),
            "driver_backend_error",
            ErrorKind::BadGateway,
        ),
        (
            CallError::Trap {
                driver: "d".into(),
                message: "m".into(),
            },
            "driver_trap",
            ErrorKind::BadGateway,
        ),
        (
            CallError::Timeout {
                driver: "d".into(),
                deadline_ms: 5,
            },
            "driver_timeout",
            ErrorKind::BadGateway,
        ),
        (
            CallError::OutOfMemory {
                driver: "d".into(),
                limit_bytes: 5,
            },
            "driver_out_of_memory",
            ErrorKind::BadGateway,
        ),
        (
            CallError::NotLoaded("d".into()),
            "driver_not_loaded",
            ErrorKind::Unavailable,
        ),
    ];
    for (err, code, kind) in cases {
        assert_eq!(err.code(), code);
        assert_eq!(err.kind(), kind, "{code}");
    }
}
