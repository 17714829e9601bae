//! Tests of the `hydration` import: asynchronous target migrations with the
//! takeover driver, and the scoping of every hydration call to the call's
//! own array and the remote LUN the host handed it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Resource;

use super::bindings::ferry::driver::types::{DriverError, LunAddress as WitAddress};
use super::bindings::ferry::driver::{block, fabric, hydration as wit};
use super::call::{CallState, Scope};
use super::host_impl::{LunHandle, PeerArrayHandle};
use super::state::StateOverlay;
use super::tests::{array, example, lun_of, runtime_with, volume};
use super::*;
use crate::block::BlockDevice;
use crate::hydrate::HydrationError;
use crate::model::LunAddress;
use crate::store::Store;

const MIB: u64 = 1 << 20;

/// Arrays `t1` and `t2` (takeover) and `p1` (plain, the source), a runtime
/// with hydrations.
struct Env {
    rt: DriverRuntime,
    state: Arc<MemoryStateStore>,
    hydrations: Arc<Hydrations>,
    t1: Arc<Array>,
    t2: Arc<Array>,
    p1: Arc<Array>,
    _dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.hydrations.stop_all();
    }
}

fn env(bandwidth: Option<u64>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("ferry.redb")).unwrap();
    let hydrations = Arc::new(Hydrations::new(store, bandwidth));
    let state = Arc::new(MemoryStateStore::default());
    let rt = DriverRuntime::new(
        RuntimeConfig {
            hydrations: Some(hydrations.clone()),
            ..RuntimeConfig::default()
        },
        state.clone(),
    )
    .unwrap();
    rt.install("takeover", example("takeover")).unwrap();
    let arrays = dir.path().join("arrays");
    Env {
        rt,
        state,
        hydrations,
        t1: array(&arrays, "t1", "takeover", 1 << 30),
        t2: array(&arrays, "t2", "takeover", 1 << 30),
        p1: array(&arrays, "p1", "plain", 1 << 30),
        _dir: dir,
    }
}

fn scope(a: &Arc<Array>) -> CallScope {
    CallScope::new(a.clone(), vec!["p1".into()])
}

fn source() -> Source {
    Source {
        array: "p1".into(),
        pool: "default".into(),
        driver: "plain".into(),
    }
}

/// A remote LUN on `p1` for `v`: a pattern in two places, holes elsewhere.
fn remote_for(e: &Env, v: &VolumeRef) -> Arc<Lun> {
    let remote = Arc::new(e.p1.create_lun(&lun_of(v), v.size_bytes).unwrap());
    remote.write_at(&[0x5a; 8192], MIB).unwrap();
    remote.write_at(&[0xc3; 4096], v.size_bytes - 4096).unwrap();
    remote
}

fn hydration_id(e: &Env, v: &VolumeRef) -> Option<String> {
    e.state
        .get("takeover", &format!("hydration/{}", v.id))
        .unwrap()
        .map(|b| String::from_utf8(b).unwrap())
}

/// Takes `remote` over on `a` and starts the async migration.
fn start_async(e: &Env, a: &Arc<Array>, v: &VolumeRef, remote: &Arc<Lun>) -> TargetOutcome {
    let s = scope(a);
    e.rt.take_over_remote_lun(&s, v, remote.clone()).unwrap();
    e.rt.migrate_volume_target(&s, v, &source(), remote.clone())
        .unwrap()
}

/// Polls `complete-migration-target` until done; returns the polls made.
fn poll_to_done(e: &Env, a: &Arc<Array>, v: &VolumeRef, remote: &Arc<Lun>) -> u32 {
    let s = scope(a);
    let started = Instant::now();
    let mut polls = 0;
    loop {
        let c =
            e.rt.complete_migration_target(&s, v, &source(), remote.clone())
                .unwrap();
        polls += 1;
        assert_eq!(c.total_bytes, v.size_bytes);
        assert!(c.done_bytes <= c.total_bytes);
        if c.done {
            return polls;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the hydration never completed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read(a: &Array, addr: &LunAddress, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    a.open_lun(addr).unwrap().read_at(&mut buf, offset).unwrap();
    buf
}

#[test]
fn async_target_migration_hydrates_and_later_calls_finish_it() {
    let e = env(Some(32 * MIB));
    let v = volume("async", 16 * MIB);
    let remote = remote_for(&e, &v);
    // A LUN left under the volume's name by an attempt that never answered:
    // its bytes where the remote has a hole must not survive.
    let stale = e.t1.create_lun(&lun_of(&v), v.size_bytes).unwrap();
    stale.write_at(&[0xee; 4096], 4 * MIB).unwrap();
    drop(stale);

    let out = start_async(&e, &e.t1, &v, &remote);
    assert!(out.moved && out.is_async, "{out:?}");
    assert_eq!(out.model_update, Some(format!("default/volume-{}", v.id)));
    let id = hydration_id(&e, &v).expect("the hydration id was not kept in state");
    assert_eq!(id, format!("t1/default/volume-{}", v.id));
    let device = e.hydrations.device("t1", &lun_of(&v)).unwrap();
    // The volume reads right at once, through the hydrating device.
    let mut buf = vec![0u8; 8192];
    device.read_at(&mut buf, MIB).unwrap();
    assert_eq!(buf, vec![0x5a; 8192]);

    // Repeating the call (a host crash before it saw the answer) finds the
    // same hydration.
    let again =
        e.rt.migrate_volume_target(&scope(&e.t1), &v, &source(), remote.clone())
            .unwrap();
    assert!(again.is_async);
    assert_eq!(hydration_id(&e, &v), Some(id.clone()));

    // Later calls, each a fresh instance, follow the hydration to its end.
    let polls = poll_to_done(&e, &e.t1, &v, &remote);
    // At 32 MiB/s the 16 MiB take half a second: polls see it running.
    assert!(polls > 1, "{polls} polls");
    // Finishing is recorded: asking again answers complete.
    assert!(matches!(e.hydrations.status(&id), Ok(s) if s.complete));
    assert!(e.state.keys("takeover", "").unwrap().is_empty());
    assert!(e.hydrations.device("t1", &lun_of(&v)).is_none());
    assert_eq!(read(&e.t1, &lun_of(&v), MIB, 8192), vec![0x5a; 8192]);
    assert_eq!(
        read(&e.t1, &lun_of(&v), v.size_bytes - 4096, 4096),
        vec![0xc3; 4096]
    );
    assert_eq!(read(&e.t1, &lun_of(&v), 4 * MIB, 4096), vec![0; 4096]);

    // A poll after the end answers done again.
    let c =
        e.rt.complete_migration_target(&scope(&e.t1), &v, &source(), remote)
            .unwrap();
    assert!(c.done);
}

#[test]
fn a_poll_of_a_running_hydration_reports_progress() {
    let e = env(Some(MIB));
    let v = volume("slow", 16 * MIB);
    let remote = remote_for(&e, &v);
    assert!(start_async(&e, &e.t1, &v, &remote).is_async);
    let c =
        e.rt.complete_migration_target(&scope(&e.t1), &v, &source(), remote.clone())
            .unwrap();
    assert!(!c.done, "{c:?}");
    assert!(c.done_bytes < c.total_bytes, "{c:?}");
    assert_eq!(c.total_bytes, 16 * MIB);
}

#[test]
fn deleting_a_hydrating_volume_abandons_its_hydration() {
    let e = env(Some(MIB));
    let v = volume("doomed", 16 * MIB);
    let remote = remote_for(&e, &v);
    assert!(start_async(&e, &e.t1, &v, &remote).is_async);
    let id = hydration_id(&e, &v).unwrap();
    assert!(!e.hydrations.status(&id).unwrap().complete);

    e.rt.delete_volume(&scope(&e.t1), &v).unwrap();
    assert!(matches!(
        e.hydrations.status(&id),
        Err(HydrationError::NotFound(_))
    ));
    assert!(!e.t1.lun_exists(&lun_of(&v)).unwrap());
    assert!(e.state.keys("takeover", "").unwrap().is_empty());
    // The source is untouched.
    let mut buf = [0u8; 8192];
    remote.read_at(&mut buf, MIB).unwrap();
    assert_eq!(buf, [0x5a; 8192]);
    e.rt.delete_volume(&scope(&e.t1), &v).unwrap();
}

#[test]
fn a_driver_cannot_touch_the_hydration_of_another_array() {
    let e = env(Some(MIB));
    // A hydration of t2 ...
    let theirs = volume("theirs", 16 * MIB);
    let remote = remote_for(&e, &theirs);
    assert!(start_async(&e, &e.t2, &theirs, &remote).is_async);
    let their_id = hydration_id(&e, &theirs).unwrap();
    assert!(their_id.starts_with("t2/"), "{their_id}");
    // ... named in the state of a volume of t1, as a driver might.
    let mine = volume("mine", 16 * MIB);
    let key = format!("hydration/{}", mine.id);
    e.state
        .commit("takeover", vec![(key, Some(their_id.clone().into_bytes()))])
        .unwrap();

    let err =
        e.rt.complete_migration_target(&scope(&e.t1), &mine, &source(), remote.clone())
            .unwrap_err();
    assert_eq!(err.code(), "driver_backend_error", "{err}");
    assert!(
        err.to_string().contains("does not belong to array t1"),
        "{err}"
    );
    let err = e.rt.delete_volume(&scope(&e.t1), &mine).unwrap_err();
    assert_eq!(err.code(), "driver_invalid_argument", "{err}");
    assert!(
        err.to_string().contains("does not belong to array t1"),
        "{err}"
    );
    // t2's hydration runs on, untouched.
    assert!(e.hydrations.status(&their_id).is_ok());
    assert!(e.hydrations.device("t2", &lun_of(&theirs)).is_some());
}

#[test]
fn without_a_hydration_service_the_takeover_driver_copies_at_once() {
    let rt = runtime_with(Arc::new(MemoryStateStore::default()));
    rt.install("takeover", example("takeover")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let t1 = array(dir.path(), "t1", "takeover", 1 << 30);
    let p1 = array(dir.path(), "p1", "plain", 1 << 30);
    let v = volume("sync", 4 * MIB);
    let remote = Arc::new(p1.create_lun(&lun_of(&v), v.size_bytes).unwrap());
    remote.write_at(&[0x77; 4096], MIB).unwrap();
    let s = scope(&t1);
    rt.take_over_remote_lun(&s, &v, remote.clone()).unwrap();
    let out = rt.migrate_volume_target(&s, &v, &source(), remote).unwrap();
    assert!(out.moved && !out.is_async, "{out:?}");
    assert_eq!(read(&t1, &lun_of(&v), MIB, 4096), vec![0x77; 4096]);
}

/// A call's store data bound to `array`, as `execute` builds it.
fn call_state(array: &Arc<Array>, hydrations: Option<Arc<Hydrations>>) -> CallState {
    let scope = Scope {
        array: array.clone(),
        zoned_with: vec![],
        progress: None,
        cancel: None,
        hydrations,
    };
    let overlay = StateOverlay::new("takeover".into(), Arc::new(MemoryStateStore::default()));
    CallState::new(
        "takeover".into(),
        Some(scope),
        overlay,
        Instant::now() + Duration::from_secs(60),
        64 << 20,
    )
}

fn wit_address(a: &LunAddress) -> WitAddress {
    WitAddress {
        pool: a.pool.clone(),
        name: a.name.clone(),
    }
}

fn again(r: &Resource<LunHandle>) -> Resource<LunHandle> {
    Resource::new_borrow(r.rep())
}

fn refused(r: wasmtime::Result<Result<String, DriverError>>) -> String {
    match r.unwrap() {
        Err(DriverError::InvalidArgument(m)) => m,
        other => panic!("not refused as invalid-argument: {other:?}"),
    }
}

#[test]
fn start_takes_only_an_own_local_lun_and_the_handed_remote() {
    let e = env(None);
    let v = volume("scoped", MIB);
    let handed = Arc::new(e.p1.create_lun(&lun_of(&v), MIB).unwrap());
    let local_addr = lun_of(&v);
    e.t1.create_lun(&local_addr, MIB).unwrap();
    let other_local = LunAddress {
        pool: "default".into(),
        name: "other".into(),
    };
    e.t1.create_lun(&other_local, MIB).unwrap();
    e.t2.create_lun(&local_addr, MIB).unwrap();

    let mut st = call_state(&e.t1, Some(e.hydrations.clone()));
    let remote = st.table.push(LunHandle::remote(handed)).unwrap();
    let local = block::Host::open_lun(&mut st, wit_address(&local_addr))
        .unwrap()
        .unwrap();
    let own_other = block::Host::open_lun(&mut st, wit_address(&other_local))
        .unwrap()
        .unwrap();
    let peer = st.table.push(PeerArrayHandle::new(e.t2.clone())).unwrap();
    let peer_lun = fabric::HostPeerArray::open_lun(
        &mut st,
        Resource::new_borrow(peer.rep()),
        wit_address(&local_addr),
    )
    .unwrap()
    .unwrap();

    // A LUN of its own array is not a remote the host handed the call.
    let m = refused(wit::Host::start(&mut st, again(&local), again(&own_other)));
    assert!(
        m.contains("remote must be the remote LUN the host handed this call"),
        "{m}"
    );
    // Nor is a LUN it opened on a peer array.
    let m = refused(wit::Host::start(&mut st, again(&local), again(&peer_lun)));
    assert!(m.contains("remote must be"), "{m}");
    // The handed remote cannot be hydrated into, nor a LUN of another array.
    let m = refused(wit::Host::start(&mut st, again(&remote), again(&remote)));
    assert!(m.contains("local must be a LUN of array t1"), "{m}");
    let m = refused(wit::Host::start(&mut st, again(&peer_lun), again(&remote)));
    assert!(m.contains("local must be a LUN of array t1"), "{m}");
    assert!(e.hydrations.device("t2", &local_addr).is_none());
    assert!(e.hydrations.device("t1", &other_local).is_none());

    // The one pair that is allowed.
    let id = wit::Host::start(&mut st, again(&local), again(&remote))
        .unwrap()
        .unwrap();
    assert_eq!(id, format!("t1/default/{}", local_addr.name));
    assert!(e.hydrations.device("t1", &local_addr).is_some());
}

#[test]
fn ids_of_other_arrays_are_refused() {
    let e = env(None);
    let v = volume("named", MIB);
    let handed = Arc::new(e.p1.create_lun(&lun_of(&v), MIB).unwrap());
    let t2_local = e.t2.create_lun(&lun_of(&v), MIB).unwrap();
    let their_id = e.hydrations.start(Arc::new(t2_local), handed).unwrap();
    assert!(their_id.starts_with("t2/"));

    let mut st = call_state(&e.t1, Some(e.hydrations.clone()));
    let names = [
        their_id.clone(),
        "t2".into(),
        "t1".into(),
        "t1/".into(),
        String::new(),
        "/t1/default/x".into(),
        "t10/default/x".into(),
    ];
    for id in names {
        let invalid = |r: Result<(), DriverError>| matches!(r, Err(DriverError::InvalidArgument(m)) if m.contains("does not belong to array t1"));
        assert!(
            matches!(
                wit::Host::progress(&mut st, id.clone()).unwrap(),
                Err(DriverError::InvalidArgument(m)) if m.contains("does not belong to array t1")
            ),
            "progress {id:?}"
        );
        assert!(
            invalid(wit::Host::finish(&mut st, id.clone()).unwrap()),
            "finish {id:?}"
        );
        assert!(
            invalid(wit::Host::abandon(&mut st, id.clone()).unwrap()),
            "abandon {id:?}"
        );
    }
    assert!(
        e.hydrations.status(&their_id).is_ok(),
        "t2's hydration was touched"
    );

    // Ids of the own array reach the host's hydrations.
    let missing = "t1/default/missing".to_owned();
    assert!(matches!(
        wit::Host::progress(&mut st, missing.clone()).unwrap(),
        Err(DriverError::NotFound(_))
    ));
    assert!(matches!(
        wit::Host::finish(&mut st, missing.clone()).unwrap(),
        Err(DriverError::NotFound(_))
    ));
    assert!(wit::Host::abandon(&mut st, missing).unwrap().is_ok());
}

#[test]
fn without_a_hydration_service_every_call_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let t1 = array(dir.path(), "t1", "takeover", 1 << 30);
    let p1 = array(dir.path(), "p1", "plain", 1 << 30);
    let addr = LunAddress {
        pool: "default".into(),
        name: "x".into(),
    };
    let handed = Arc::new(p1.create_lun(&addr, MIB).unwrap());
    t1.create_lun(&addr, MIB).unwrap();
    let mut st = call_state(&t1, None);
    let remote = st.table.push(LunHandle::remote(handed)).unwrap();
    let local = block::Host::open_lun(&mut st, wit_address(&addr))
        .unwrap()
        .unwrap();
    let unsupported = |m: &str| m == super::hydration::NO_SERVICE;
    assert!(matches!(
        wit::Host::start(&mut st, local, remote).unwrap(),
        Err(DriverError::Unsupported(m)) if unsupported(&m)
    ));
    let id = "t1/default/x".to_owned();
    assert!(matches!(
        wit::Host::progress(&mut st, id.clone()).unwrap(),
        Err(DriverError::Unsupported(m)) if unsupported(&m)
    ));
    assert!(matches!(
        wit::Host::finish(&mut st, id.clone()).unwrap(),
        Err(DriverError::Unsupported(m)) if unsupported(&m)
    ));
    assert!(matches!(
        wit::Host::abandon(&mut st, id).unwrap(),
        Err(DriverError::Unsupported(m)) if unsupported(&m)
    ));
}
