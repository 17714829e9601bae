//! Host copy versus `qemu-img convert`, side by side in one run: a 4 GiB
//! sparse volume holding 1 GiB of data, copied by Ferry's native copy
//! (`array::copy_lun`, the migration host-copy path) and by qemu-img
//! (raw to raw, its default zero detection) from the same file. Prints the
//! median, min and max of several alternating runs and the ratio.
//!
//! Run: `cargo bench -p ferry --bench host_copy` (FERRY_BENCH_RUNS=N to
//! change the number of runs).

use std::io::Write;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ferry::array::{Array, CopyOptions, copy_lun};
use ferry::block::BlockDevice;
use ferry::config::ArrayConfig;
use ferry::model::LunAddress;

const GIB: u64 = 1 << 30;
const SIZE: u64 = 4 * GIB;
/// Data extents: 16 of 64 MiB, spread over the volume.
const EXTENTS: u64 = 16;
const EXTENT: u64 = 64 << 20;

fn addr(name: &str) -> LunAddress {
    LunAddress {
        pool: "default".into(),
        name: name.into(),
    }
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let runs: usize = std::env::var("FERRY_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir_in(
        std::env::var_os("FERRY_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into),
    )
    .expect("temp dir");
    let cfg = ArrayConfig {
        name: "bench".into(),
        driver: "plain".into(),
        pools: vec!["default".into()],
        capacity_bytes: 64 * GIB,
        settings: Default::default(),
        secrets: Default::default(),
        http_allow: Vec::new(),
        http_ca_file: None,
        nbd_allow: Vec::new(),
        lun_files: true,
    };
    let array = Array::open(dir.path(), &cfg).expect("array");
    let src = array.create_lun(&addr("src"), SIZE).expect("src");
    // Non-zero, non-repeating data so no tool can shortcut it.
    let mut chunk = vec![0u8; EXTENT as usize];
    let mut x = 0x9e3779b97f4a7c15u64;
    for (i, b) in chunk.iter_mut().enumerate() {
        if i % 8 == 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        *b = (x >> ((i % 8) * 8)) as u8 | 1;
    }
    for i in 0..EXTENTS {
        src.write_at(&chunk, i * (SIZE / EXTENTS)).expect("fill");
    }
    src.flush().expect("flush");
    let src_path = dir.path().join("bench/default/src");
    let qemu_dst = dir.path().join("qemu-dst.raw");

    let mut ferry_times = Vec::new();
    let mut qemu_times = Vec::new();
    for run in 0..runs {
        // Alternate who goes first so neither always gets the warmer cache.
        for first in [run % 2 == 0, run % 2 != 0] {
            if first {
                let _ = array.delete_lun(&addr("dst"));
                let dst = array.create_lun(&addr("dst"), SIZE).expect("dst");
                let t = Instant::now();
                copy_lun(
                    &src,
                    &dst,
                    CopyOptions::default(),
                    &AtomicBool::new(false),
                    |_| Ok(()),
                )
                .expect("copy");
                ferry_times.push(t.elapsed());
                assert!(dst.allocated_bytes().unwrap() <= src.allocated_bytes().unwrap());
            } else {
                let _ = std::fs::remove_file(&qemu_dst);
                let t = Instant::now();
                let status = Command::new("qemu-img")
                    .args(["convert", "-f", "raw", "-O", "raw"])
                    .arg(&src_path)
                    .arg(&qemu_dst)
                    .status()
                    .expect("qemu-img (Debian package qemu-utils) must be installed");
                // qemu-img flushes when it closes the output; sync makes the
                // comparison with Ferry's durable copy fair.
                let f = std::fs::File::open(&qemu_dst).expect("qemu output");
                f.sync_all().expect("sync");
                qemu_times.push(t.elapsed());
                assert!(status.success(), "qemu-img convert failed");
            }
        }
    }
    let (fm, fmin, fmax) = stats(ferry_times);
    let (qm, qmin, qmax) = stats(qemu_times);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "host copy, 4 GiB volume with 1 GiB of data, {runs} runs (median [min..max])"
    );
    let _ = writeln!(
        out,
        "  ferry copy_lun      {fm:>10.3?} [{fmin:.3?}..{fmax:.3?}]"
    );
    let _ = writeln!(
        out,
        "  qemu-img convert    {qm:>10.3?} [{qmin:.3?}..{qmax:.3?}]"
    );
    let _ = writeln!(
        out,
        "  ratio ferry/qemu-img {:.2}",
        fm.as_secs_f64() / qm.as_secs_f64()
    );
}
