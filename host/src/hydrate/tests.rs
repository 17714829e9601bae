//! Hydration against a model: every read equals what a plain disk would
//! return, during and after hydration, under concurrency and across a
//! simulated crash.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::*;
use crate::array::Array;
use crate::config::ArrayConfig;
use crate::model::LunAddress;

const MIB: u64 = 1 << 20;

#[derive(Default, Clone)]
struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl BitmapSink for MemorySink {
    fn commit(&self, bitmap: &[u8]) -> io::Result<()> {
        *self.0.lock().unwrap() = bitmap.to_vec();
        Ok(())
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An array with a remote LUN holding a pattern in a few extents and an
/// empty local LUN of the same size.
fn setup(size: u64) -> (tempfile::TempDir, Arc<Lun>, Arc<Lun>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ArrayConfig {
        name: "a".into(),
        driver: "plain".into(),
        pools: vec!["p".into()],
        capacity_bytes: 1 << 40,
        settings: Default::default(),
        secrets: Default::default(),
        http_allow: Vec::new(),
        http_ca_file: None,
        nbd_allow: Vec::new(),
        lun_files: true,
    };
    let a = Array::open(dir.path(), &cfg).unwrap();
    let addr = |n: &str| LunAddress {
        pool: "p".into(),
        name: n.into(),
    };
    let remote = a.create_lun(&addr("remote"), size).unwrap();
    let mut model = vec![0u8; size as usize];
    let mut rng = Rng(7);
    for k in 0..4u64 {
        let off = k * size / 4 + 3 * 4096;
        let len = size / 16;
        for b in &mut model[off as usize..(off + len) as usize] {
            *b = (rng.next() as u8) | 1;
        }
        remote
            .write_at(&model[off as usize..(off + len) as usize], off)
            .unwrap();
    }
    let local = a.create_lun(&addr("local"), size).unwrap();
    (dir, Arc::new(local), Arc::new(remote), model)
}

/// A hydration of `local` from `remote` with the default region size.
fn hydrating(
    local: &Arc<Lun>,
    remote: &Arc<Lun>,
    bitmap: &[u8],
    sink: impl BitmapSink + 'static,
) -> Arc<Hydration> {
    Hydration::new(
        local.clone(),
        remote.clone(),
        DEFAULT_REGION_SIZE,
        bitmap,
        Box::new(sink),
    )
    .unwrap()
}

fn read_all(d: &dyn BlockDevice) -> Vec<u8> {
    let mut v = vec![0u8; d.size() as usize];
    d.read_at(&mut v, 0).unwrap();
    v
}

fn apply(model: &mut [u8], h: &Hydration, rng: &mut Rng) {
    let size = model.len() as u64;
    let op = rng.next() % 10;
    let len = match rng.next() % 3 {
        0 => 512 * (1 + rng.next() % 8),
        1 => DEFAULT_REGION_SIZE,
        _ => 512 * (1 + rng.next() % 600),
    }
    .min(size);
    let off = (rng.next() % (size - len + 1)) / 512 * 512;
    let range = off as usize..(off + len) as usize;
    match op {
        0..=4 => {
            let byte = (rng.next() as u8) | 1;
            let data = vec![byte; len as usize];
            h.write_at(&data, off).unwrap();
            model[range].fill(byte);
        }
        5 => {
            h.discard(off, len).unwrap();
            model[range].fill(0);
        }
        6 => {
            h.write_zeroes(off, len).unwrap();
            model[range].fill(0);
        }
        _ => {
            let mut got = vec![0u8; len as usize];
            h.read_at(&mut got, off).unwrap();
            assert!(
                got == model[range],
                "read at {off}+{len} differs from the model"
            );
        }
    }
}

#[test]
fn reads_come_from_the_source_until_hydrated_and_end_equal() {
    let (_d, local, remote, model) = setup(8 * MIB);
    let h = hydrating(&local, &remote, &[], MemorySink::default());
    assert_eq!(read_all(h.as_ref()), model);
    assert_eq!(h.progress().0, 0);
    while h.hydrate_step(7).unwrap() > 0 {
        assert_eq!(read_all(h.as_ref()), model);
    }
    assert!(h.is_complete());
    h.commit().unwrap();
    assert_eq!(read_all(local.as_ref()), model);
    // Source holes stayed holes.
    assert!(local.allocated_bytes().unwrap() <= 8 * MIB / 4 + 4 * DEFAULT_REGION_SIZE);
}

#[test]
fn foreground_io_interleaved_with_hydration_matches_the_model() {
    for seed in 1..6u64 {
        let (_d, local, remote, mut model) = setup(4 * MIB);
        let h = hydrating(&local, &remote, &[], MemorySink::default());
        let mut rng = Rng(seed * 0x9e37_79b9);
        for step in 0..3000 {
            apply(&mut model, &h, &mut rng);
            if step % 5 == 0 {
                h.hydrate_step(1).unwrap();
            }
        }
        while h.hydrate_step(64).unwrap() > 0 {}
        assert!(h.is_complete());
        assert_eq!(read_all(h.as_ref()), model, "seed {seed}");
        assert_eq!(read_all(local.as_ref()), model, "seed {seed}: local LUN");
    }
}

#[test]
fn concurrent_writers_and_background_worker() {
    let (_d, local, remote, model) = setup(16 * MIB);
    let h = hydrating(&local, &remote, &[], MemorySink::default());
    let stop = AtomicBool::new(false);
    let model = Mutex::new(model);
    std::thread::scope(|s| {
        let _stop_all = StopOnDrop(&[(&stop, true)]);
        let bg = s.spawn(|| h.run_background(&stop));
        // Each writer owns a quarter of the LUN, so the model stays exact.
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let (h, model) = (&h, &model);
                s.spawn(move || {
                    let quarter = 4 * MIB;
                    let mut rng = Rng(t + 11);
                    for _ in 0..400 {
                        let len = 512 * (1 + rng.next() % 300);
                        let off = t * quarter + (rng.next() % (quarter - len)) / 512 * 512;
                        let byte = (rng.next() as u8) | 1;
                        h.write_at(&vec![byte; len as usize], off).unwrap();
                        model.lock().unwrap()[off as usize..(off + len) as usize].fill(byte);
                        let mut got = vec![0u8; len as usize];
                        h.read_at(&mut got, off).unwrap();
                        assert!(got.iter().all(|b| *b == byte));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        while !h.is_complete() {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        bg.join().unwrap().unwrap();
    });
    let model = model.into_inner().unwrap();
    assert_eq!(read_all(h.as_ref()), model);
    assert_eq!(read_all(local.as_ref()), model);
}

#[test]
fn resume_from_the_committed_bitmap_keeps_flushed_writes() {
    let (_d, local, remote, mut model) = setup(4 * MIB);
    let sink = MemorySink::default();
    let h = hydrating(&local, &remote, &[], sink.clone());
    for _ in 0..20 {
        h.hydrate_step(1).unwrap();
    }
    let mut rng = Rng(99);
    for _ in 0..300 {
        apply(&mut model, &h, &mut rng);
    }
    h.flush().unwrap();
    let hydrated_before = h.progress().0;
    assert!(hydrated_before > 0);
    // "Crash": drop the device, start again from the committed bitmap.
    drop(h);
    let bitmap = sink.0.lock().unwrap().clone();
    let h = hydrating(&local, &remote, &bitmap, sink);
    assert_eq!(h.progress().0, hydrated_before, "resumed from zero");
    assert_eq!(read_all(h.as_ref()), model);
    while h.hydrate_step(64).unwrap() > 0 {}
    assert_eq!(read_all(local.as_ref()), model);
}

#[test]
fn mismatched_sizes_and_bad_regions_are_refused() {
    let (d, local, _remote, _) = setup(4 * MIB);
    let cfg = ArrayConfig {
        name: "b".into(),
        driver: "plain".into(),
        pools: vec!["p".into()],
        capacity_bytes: 1 << 40,
        settings: Default::default(),
        secrets: Default::default(),
        http_allow: Vec::new(),
        http_ca_file: None,
        nbd_allow: Vec::new(),
        lun_files: true,
    };
    let b = Array::open(d.path(), &cfg).unwrap();
    let small = b
        .create_lun(
            &LunAddress {
                pool: "p".into(),
                name: "s".into(),
            },
            MIB,
        )
        .unwrap();
    let sink = || Box::new(MemorySink::default());
    assert!(
        Hydration::new(
            local.clone(),
            Arc::new(small),
            DEFAULT_REGION_SIZE,
            &[],
            sink()
        )
        .is_err()
    );
    assert!(Hydration::new(local.clone(), local.clone(), 1000, &[], sink()).is_err());
    let h = Hydration::new(local.clone(), local, DEFAULT_REGION_SIZE, &[], sink()).unwrap();
    assert!(h.write_at(&[1], 4 * MIB).is_err());
    assert!(h.read_at(&mut [0u8; 2], 4 * MIB - 1).is_err());
}

fn read_lun(l: &Lun) -> Vec<u8> {
    let mut v = vec![0u8; l.size() as usize];
    l.read_at(&mut v, 0).unwrap();
    v
}

#[test]
fn writes_are_tracked_and_persisted_with_the_bitmap() {
    let (_d, local, remote, _) = setup(4 * MIB);
    let sink = MemorySink::default();
    let h = hydrating(&local, &remote, &[], sink.clone());
    // Hydration alone writes the local LUN but is no write of the volume.
    for _ in 0..50 {
        h.hydrate_step(4).unwrap();
    }
    let mut buf = vec![0u8; 8192];
    h.read_at(&mut buf, MIB).unwrap();
    assert_eq!(h.written_bytes(), 0);
    h.write_at(&[7u8; 4096], 0).unwrap(); // whole region
    h.write_at(&[7u8; 512], 3 * 4096 + 512).unwrap(); // partial
    h.discard(2 * MIB, 8192).unwrap(); // two regions
    h.write_zeroes(3 * MIB + 100 * 512, 4096).unwrap(); // straddles two
    assert_eq!(h.written_bytes(), 6 * DEFAULT_REGION_SIZE);
    h.flush().unwrap();
    let persisted = sink.0.lock().unwrap().clone();
    let regions = (4 * MIB / DEFAULT_REGION_SIZE) as usize;
    assert_eq!(persisted.len(), 2 * regions.div_ceil(8));
    drop(h);
    let h = hydrating(&local, &remote, &persisted, sink);
    assert_eq!(
        h.written_bytes(),
        6 * DEFAULT_REGION_SIZE,
        "lost across restart"
    );
    h.begin_copy_back();
    assert_eq!(h.copy_back_pending(), 6 * DEFAULT_REGION_SIZE);
}

#[test]
fn a_bitmap_from_before_write_tracking_counts_every_local_region_written() {
    let (_d, local, remote, _) = setup(4 * MIB);
    let regions = (4 * MIB / DEFAULT_REGION_SIZE) as usize;
    let mut legacy = vec![0u8; regions.div_ceil(8)];
    legacy[0] = 0b1011;
    legacy[5] = 0xff;
    let h = hydrating(&local, &remote, &legacy, MemorySink::default());
    assert_eq!(h.progress().0, 11 * DEFAULT_REGION_SIZE);
    assert_eq!(h.written_bytes(), 11 * DEFAULT_REGION_SIZE);
}

#[test]
fn copy_back_makes_the_source_equal_the_volume_then_serves_from_it() {
    for seed in 1..4u64 {
        let (_d, local, remote, mut model) = setup(4 * MIB);
        let h = hydrating(&local, &remote, &[], MemorySink::default());
        let mut rng = Rng(seed * 0x51ed);
        for step in 0..1500 {
            apply(&mut model, &h, &mut rng);
            if step % 7 == 0 {
                h.hydrate_step(3).unwrap();
            }
        }
        h.begin_copy_back();
        let before = h.copy_back_pending();
        assert!(before > 0);
        let copied = h.copy_back_pass(&mut |_| {}).unwrap();
        assert_eq!(copied, before);
        assert_eq!(h.copy_back_pending(), 0);
        // Writes between passes are pending again, and only they.
        for _ in 0..200 {
            apply(&mut model, &h, &mut rng);
        }
        assert!(h.copy_back_pending() <= 200 * 600 * 512 + 200 * DEFAULT_REGION_SIZE);
        let mut switched = false;
        h.copy_back_finish(|| {
            switched = true;
            Ok(())
        })
        .unwrap();
        assert!(switched && h.is_returned());
        assert_eq!(
            read_lun(&remote),
            model,
            "seed {seed}: source after copy-back"
        );
        // From now on every request is the source's.
        for _ in 0..300 {
            apply(&mut model, &h, &mut rng);
        }
        h.flush().unwrap();
        assert_eq!(
            read_lun(&remote),
            model,
            "seed {seed}: writes after the switch"
        );
        assert_eq!(read_all(h.as_ref()), model);
    }
}

#[test]
fn a_failed_switch_keeps_writes_here_and_a_later_one_carries_them() {
    let (_d, local, remote, mut model) = setup(4 * MIB);
    let h = hydrating(&local, &remote, &[], MemorySink::default());
    let mut rng = Rng(4242);
    for _ in 0..500 {
        apply(&mut model, &h, &mut rng);
    }
    h.begin_copy_back();
    let failed = h.copy_back_finish(|| Err(io::Error::other("store down")));
    assert!(failed.is_err());
    assert!(!h.is_returned());
    // Failed: every written region is carried again, and writes still land
    // on the local LUN (the source is not the volume yet).
    assert_eq!(h.copy_back_pending(), h.written_bytes());
    let remote_before = read_lun(&remote);
    h.write_at(&[0xabu8; 4096], 0).unwrap();
    model[..4096].fill(0xab);
    assert_eq!(read_lun(&remote)[..4096], remote_before[..4096]);
    h.copy_back_finish(|| Ok(())).unwrap();
    assert_eq!(read_lun(&remote), model);
}

#[test]
fn copy_back_resumes_from_the_persisted_written_set_after_a_crash() {
    let (_d, local, remote, mut model) = setup(4 * MIB);
    let sink = MemorySink::default();
    let h = hydrating(&local, &remote, &[], sink.clone());
    let mut rng = Rng(77);
    for _ in 0..800 {
        apply(&mut model, &h, &mut rng);
    }
    h.begin_copy_back();
    h.copy_back_pass(&mut |_| {}).unwrap();
    for _ in 0..100 {
        apply(&mut model, &h, &mut rng);
    }
    h.flush().unwrap();
    // "Crash" before the last pass: the remote holds part of the writes.
    drop(h);
    let state = sink.0.lock().unwrap().clone();
    let h = hydrating(&local, &remote, &state, sink);
    assert_eq!(
        read_all(h.as_ref()),
        model,
        "the volume changed across the crash"
    );
    h.begin_copy_back();
    h.copy_back_finish(|| Ok(())).unwrap();
    assert_eq!(read_lun(&remote), model);
}

#[test]
fn copy_back_under_concurrent_writers_loses_no_write() {
    let (_d, local, remote, model) = setup(16 * MIB);
    let h = hydrating(&local, &remote, &[], MemorySink::default());
    let stop = AtomicBool::new(false);
    let writers_stop = AtomicBool::new(false);
    let model = Mutex::new(model);
    std::thread::scope(|s| {
        let _stop_all = StopOnDrop(&[(&stop, true), (&writers_stop, true)]);
        let bg = s.spawn(|| h.run_background(&stop));
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let (h, model, writers_stop) = (&h, &model, &writers_stop);
                s.spawn(move || {
                    // Each writer owns a quarter, so the model stays exact.
                    let quarter = 4 * MIB;
                    let mut rng = Rng(t + 101);
                    let mut n = 0;
                    while !writers_stop.load(Ordering::SeqCst) || n < 300 {
                        let len = 512 * (1 + rng.next() % 300);
                        let off = t * quarter + (rng.next() % (quarter - len)) / 512 * 512;
                        let byte = (rng.next() as u8) | 1;
                        h.write_at(&vec![byte; len as usize], off).unwrap();
                        model.lock().unwrap()[off as usize..(off + len) as usize].fill(byte);
                        n += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        h.begin_copy_back();
        for _ in 0..3 {
            h.copy_back_pass(&mut |_| {}).unwrap();
        }
        h.copy_back_finish(|| Ok(())).unwrap();
        // Writers go on, now onto the source.
        std::thread::sleep(Duration::from_millis(50));
        writers_stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        bg.join().unwrap().unwrap();
    });
    h.flush().unwrap();
    let model = model.into_inner().unwrap();
    assert_eq!(read_lun(&remote), model);
}

#[test]
fn copy_back_keeps_the_source_sparse() {
    let (_d, local, remote, _) = setup(8 * MIB);
    let h = hydrating(&local, &remote, &[], MemorySink::default());
    let before = remote.allocated_bytes().unwrap();
    // Zeroes written over the source's first data extent become a hole.
    let first = 3 * 4096;
    h.write_at(&vec![0u8; (8 * MIB / 16) as usize], first)
        .unwrap();
    h.copy_back_finish(|| Ok(())).unwrap();
    assert!(remote.allocated_bytes().unwrap() < before);
}

#[test]
fn a_held_hydration_cannot_finish_and_a_finished_one_cannot_be_held() {
    let (d, local, remote, _) = setup(MIB);
    let store = crate::store::Store::open(&d.path().join("ferry.redb")).unwrap();
    let hydrations = Hydrations::new(store, None);
    let id = hydrations.start(local.clone(), remote.clone()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !hydrations.status(&id).unwrap().complete {
        assert!(
            std::time::Instant::now() < deadline,
            "hydration never completed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let remote_ref = LunRef {
        array: remote.array().to_owned(),
        lun: remote.address().clone(),
    };
    let (held, device) = hydrations.copy_back(&remote_ref).unwrap();
    assert_eq!(held, id);
    assert!(matches!(
        hydrations.finish(&id),
        Err(HydrationError::CopyingBack(_))
    ));
    // Still served, still tracking writes.
    device.write_at(&[1u8; 512], 0).unwrap();
    assert_eq!(device.written_bytes(), DEFAULT_REGION_SIZE);
    hydrations.release_copy_back(&id);
    hydrations.finish(&id).unwrap();
    assert!(matches!(
        hydrations.copy_back(&remote_ref),
        Err(HydrationError::NotFound(_))
    ));
}

/// Keeps every bitmap committed, in order.
#[derive(Default, Clone)]
struct RecordingSink(Arc<Mutex<Vec<Vec<u8>>>>);

impl BitmapSink for RecordingSink {
    fn commit(&self, bitmap: &[u8]) -> io::Result<()> {
        self.0.lock().unwrap().push(bitmap.to_vec());
        Ok(())
    }
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits[i / 8] & (1 << (i % 8)) != 0
}

/// Sets each flag to its value when dropped, also while unwinding.
struct StopOnDrop<'a>(&'a [(&'a AtomicBool, bool)]);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        for (flag, value) in self.0 {
            flag.store(*value, Ordering::SeqCst);
        }
    }
}

#[test]
fn under_load_commits_record_only_synced_spans_and_leave_writes_to_flush() {
    let size = 256 * MIB;
    let (_d, local, remote, _) = setup(size);
    let sink = RecordingSink::default();
    let h = hydrating(&local, &remote, &[], sink.clone());
    // Paced so that in the time given the worker stays in `setup`'s first
    // extent (16 MiB of data from 12 KiB on), far below the writes.
    h.set_bandwidth(Some(4 * MIB));
    let count = (size / DEFAULT_REGION_SIZE) as usize;
    let half = count.div_ceil(8);
    // Regions of the upper half holding source data (`setup`'s third and
    // fourth extents): a write to one is durable only once synced.
    let data_upper: Vec<usize> = [2u64, 3]
        .iter()
        .flat_map(|k| {
            let first = ((k * size / 4 + 3 * 4096) / DEFAULT_REGION_SIZE) as usize;
            first..first + (size / 16 / DEFAULT_REGION_SIZE) as usize
        })
        .collect();
    let stop = AtomicBool::new(false);
    let writing = AtomicBool::new(true);
    std::thread::scope(|s| {
        // A failed assertion below must still stop both threads, or the
        // scope would wait for them forever and hide the failure.
        let _stop_all = StopOnDrop(&[(&writing, false), (&stop, true)]);
        // The writer starts first, so the worker finds the volume busy.
        let writer = s.spawn(|| {
            let mut rng = Rng(5);
            while writing.load(Ordering::SeqCst) {
                let region = data_upper[(rng.next() % data_upper.len() as u64) as usize];
                h.write_at(&[3u8; 4096], region as u64 * DEFAULT_REGION_SIZE)
                    .unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        let bg = s.spawn(|| h.run_background(&stop));
        std::thread::sleep(Duration::from_millis(2500));
        let busy_commits = sink.0.lock().unwrap().clone();
        writing.store(false, Ordering::SeqCst);
        writer.join().unwrap();
        // Under load it still commits once a second, but only the spans it
        // synced: a region the writer made local holds data that is
        // synced by a FLUSH alone (or the worker's span), so no commit may
        // record it yet.
        assert!(
            busy_commits.len() >= 2,
            "{} commits in 2.5 s under load",
            busy_commits.len()
        );
        let last = busy_commits.last().unwrap();
        assert!(
            (0..count / 2).any(|i| bit(&last[..half], i)),
            "the worker's progress was not committed"
        );
        for c in &busy_commits {
            assert!(
                !data_upper.iter().any(|&i| bit(&c[..half], i)),
                "a commit under load recorded an unflushed write as local"
            );
        }
        assert!(
            data_upper.iter().any(|&i| bit(&last[half..], i)),
            "the written set was not committed"
        );
        // A FLUSH records them.
        h.flush().unwrap();
        let flushed = sink.0.lock().unwrap().last().unwrap().clone();
        assert!(data_upper.iter().any(|&i| bit(&flushed[..half], i)));
        // Quiet again: the worker goes on and commits every second.
        let before = sink.0.lock().unwrap().len();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            sink.0.lock().unwrap().len() > before,
            "no commit once quiet"
        );
        stop.store(true, Ordering::Relaxed);
        bg.join().unwrap().unwrap();
    });
}

#[test]
fn a_progress_commit_keeps_durable_copies_and_leaves_unflushed_writes_to_the_source() {
    let size = 8 * MIB;
    let (_d, local, remote, model) = setup(size);
    let sink = MemorySink::default();
    let h = hydrating(&local, &remote, &[], sink.clone());
    let count = (size / DEFAULT_REGION_SIZE) as usize;
    let half = count.div_ceil(8);
    // The worker copies regions 0..64 durably; a foreground write makes
    // region 600 (source data: `setup`'s second extent) local without a
    // FLUSH.
    assert_eq!(h.hydrate_step_with(64, true).unwrap(), 64);
    let target = 600usize;
    h.write_at(&[9u8; 4096], target as u64 * DEFAULT_REGION_SIZE)
        .unwrap();
    h.commit_progress().unwrap();
    let bitmap = sink.0.lock().unwrap().clone();
    assert!((0..64).all(|i| bit(&bitmap[..half], i)));
    assert!(!bit(&bitmap[..half], target), "an unflushed write recorded");
    assert!(bit(&bitmap[half..], target), "the write was not tracked");
    // Copied without `durable`: a full commit records it, a progress one not.
    h.hydrate_step_with(64, false).unwrap();
    h.commit_progress().unwrap();
    let bitmap = sink.0.lock().unwrap().clone();
    assert!(!bit(&bitmap[..half], 64));
    // A crash here: the restarted volume reads region 600 as the source
    // has it (the unflushed write may be lost, never turned into garbage).
    let after_crash = hydrating(&local, &remote, &bitmap, MemorySink::default());
    assert_eq!(read_all(after_crash.as_ref()), model);
    // A FLUSH makes the write durable and records it; later progress
    // commits keep it.
    h.flush().unwrap();
    h.write_at(&[1u8; 4096], 1100 * DEFAULT_REGION_SIZE)
        .unwrap();
    h.commit_progress().unwrap();
    let bitmap = sink.0.lock().unwrap().clone();
    assert!(bit(&bitmap[..half], target) && bit(&bitmap[..half], 64));
    assert!(!bit(&bitmap[..half], 1100));
}

#[test]
fn a_synced_span_takes_the_writes_before_it_and_a_hole_needs_no_sync() {
    let size = 8 * MIB;
    let (_d, local, remote, mut model) = setup(size);
    let sink = MemorySink::default();
    let h = hydrating(&local, &remote, &[], sink.clone());
    let count = (size / DEFAULT_REGION_SIZE) as usize;
    let half = count.div_ceil(8);
    // Region 520 holds source data, region 1000 none (`setup`'s extents).
    let (data, hole) = (520usize, 1000usize);
    for (i, byte) in [(data, 5u8), (hole, 6u8)] {
        let at = i as u64 * DEFAULT_REGION_SIZE;
        h.write_at(&[byte; 4096], at).unwrap();
        model[at as usize..at as usize + 4096].fill(byte);
    }
    h.commit_progress().unwrap();
    let bitmap = sink.0.lock().unwrap().clone();
    assert!(
        bit(&bitmap[..half], hole),
        "a written hole waits for a sync"
    );
    assert!(!bit(&bitmap[..half], data), "an unsynced write recorded");
    // Not every region with data is durable: ending now takes a full sync.
    assert!(!h.source_data_durable());
    // The worker's durable pass syncs span by span, the write to region
    // 520 with its span: then every region with data is durable, a
    // progress commit records the write, and ending needs no sync.
    while h.hydrate_step_with(SPAN_REGIONS, true).unwrap() > 0 {}
    assert!(h.is_complete() && h.source_data_durable());
    h.commit_progress().unwrap();
    let bitmap = sink.0.lock().unwrap().clone();
    assert!((0..count).all(|i| bit(&bitmap[..half], i)));
    assert!(!h.commit_to_end().unwrap(), "ending synced the whole LUN");
    assert_eq!(read_all(h.as_ref()), model);
    // What the commit recorded reads back the same after a crash.
    let after_crash = hydrating(&local, &remote, &bitmap, MemorySink::default());
    assert_eq!(read_all(after_crash.as_ref()), model);
}

#[test]
fn a_quiet_copy_left_unsynced_by_load_ends_with_a_full_sync() {
    let size = 8 * MIB;
    let (_d, local, remote, model) = setup(size);
    let h = hydrating(&local, &remote, &[], MemorySink::default());
    // Copied while quiet: complete but not durable, so ending syncs.
    while h.hydrate_step(SPAN_REGIONS).unwrap() > 0 {}
    assert!(h.is_complete() && !h.source_data_durable());
    assert!(h.commit_to_end().unwrap(), "ending skipped the sync");
    assert!(h.source_data_durable());
    assert_eq!(read_all(h.as_ref()), model);
}
