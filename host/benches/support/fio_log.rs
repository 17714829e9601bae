//! fio's per-write latency log: a background fio run that logs every
//! write's completion time and latency, the log read back, and the figures
//! over a window of it (IOPS, p99, the longest latency of a write alive in
//! it, the longest time with no write completing).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One write, as fio logged it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it completed (wall clock, ms; fio logs whole milliseconds).
    pub done: f64,
    /// Its completion latency, submission to completion (ms).
    pub clat: f64,
}

impl Sample {
    pub fn issued(&self) -> f64 {
        self.done - self.clat
    }
}

/// A time-based fio run in the background, logging every write.
pub struct Fio {
    child: Option<Child>,
    dir: PathBuf,
    name: String,
}

impl Fio {
    /// 4k random writes at iodepth 16 over the first `size` bytes of `uri`,
    /// for `runtime` or until stopped; its files are `dir/name*`.
    pub fn start(uri: &str, dir: &Path, name: &str, size: u64, runtime: Duration) -> Fio {
        let prefix = dir.join(name);
        let err = File::create(dir.join(format!("{name}.err"))).expect("fio's stderr file");
        let child = Command::new("fio")
            .args([
                &format!("--name={name}"),
                "--ioengine=nbd",
                &format!("--uri={uri}"),
                "--rw=randwrite",
                "--bs=4k",
                "--iodepth=16",
                &format!("--size={size}"),
                "--time_based",
                // `stop` ends it with SIGINT, on which fio still writes its
                // logs and report.
                &format!("--runtime={}", runtime.as_secs()),
                &format!("--write_lat_log={}", prefix.display()),
                "--log_avg_msec=0",
                "--log_unix_epoch=1",
                "--output-format=json",
                &format!("--output={}.json", prefix.display()),
            ])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("fio (Debian package fio)");
        Fio {
            child: Some(child),
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.err", self.name))).unwrap_or_default()
    }

    /// Stops fio and returns every write it logged, by completion time.
    /// Panics when fio stopped on its own (an I/O error ends the job) or
    /// reports an error.
    pub fn stop(mut self) -> Vec<Sample> {
        let mut child = self.child.take().expect("fio runs");
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "fio stopped by itself ({status}) while the volume was served: {}",
                self.stderr()
            );
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("fio did not stop within 60 s of SIGINT");
                }
            }
        }
        let report = std::fs::read_to_string(self.dir.join(format!("{}.json", self.name)))
            .expect("fio's JSON report");
        // fio writes notes ("connected to NBD server") before the document.
        let doc = report.find('{').map_or("", |i| &report[i..]);
        let v: Value = serde_json::from_str(doc)
            .unwrap_or_else(|e| panic!("fio's JSON report does not parse ({e}): {report}"));
        let error = v["jobs"][0]["error"].as_i64();
        assert_eq!(
            error,
            Some(0),
            "fio reports an I/O error while the volume was served: {}",
            self.stderr()
        );
        let mut samples = read_clat_log(&self.dir, &self.name);
        // Every write fio counted is in the log (at most the queue's depth
        // apart, for writes caught by the stop), or a figure would miss
        // some.
        if let Some(total) = v["jobs"][0]["write"]["total_ios"].as_u64() {
            assert!(
                total.abs_diff(samples.len() as u64) <= 16,
                "fio counted {total} writes but logged {}",
                samples.len()
            );
        }
        samples.sort_by(|a, b| a.done.total_cmp(&b.done));
        samples
    }
}

impl Drop for Fio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// fio's completion-latency log, `<name>_clat.<job>.log`: lines of `time
/// (ms, here since the epoch), latency (ns), direction, block size,
/// offset`.
fn read_clat_log(dir: &Path, name: &str) -> Vec<Sample> {
    let stem = format!("{name}_clat.");
    let path = std::fs::read_dir(dir)
        .expect("scratch dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&stem) && n.ends_with(".log"))
        })
        .unwrap_or_else(|| panic!("fio wrote no {stem}*.log in {}", dir.display()));
    let file = File::open(&path).expect("fio's latency log");
    let mut samples = Vec::new();
    let mut bad = 0usize;
    for line in BufReader::new(file).lines() {
        let line = line.expect("reading fio's latency log");
        let mut fields = line.split(',').map(str::trim);
        let time = fields.next().and_then(|t| t.parse::<u64>().ok());
        let clat = fields.next().and_then(|t| t.parse::<u64>().ok());
        match (time, clat) {
            (Some(t), Some(ns)) => samples.push(Sample {
                done: t as f64,
                clat: ns as f64 / 1e6,
            }),
            _ => bad += 1,
        }
    }
    assert!(
        !samples.is_empty() && bad <= samples.len() / 1000,
        "{}: {} entries, {bad} lines that are not `time, latency, ...`",
        path.display(),
        samples.len()
    );
    samples
}

/// IOPS and p99 completion latency (ms) of the writes completed in
/// `[from, to)`.
pub fn rate(samples: &[Sample], from: f64, to: f64) -> Option<(f64, f64)> {
    let lat: Vec<f64> = samples
        .iter()
        .filter(|s| s.done >= from && s.done < to)
        .map(|s| s.clat)
        .collect();
    if lat.is_empty() || to <= from {
        return None;
    }
    Some((
        lat.len() as f64 * 1e3 / (to - from),
        super::quantile(&lat, 0.99),
    ))
}

/// The longest completion latency of a write alive at some time in
/// `[from, to]`: one stalled across the switch counts even if it completes
/// long after.
pub fn longest_latency(samples: &[Sample], from: f64, to: f64) -> f64 {
    samples
        .iter()
        .filter(|s| s.done >= from && s.issued() <= to)
        .map(|s| s.clat)
        .fold(0.0, f64::max)
}

/// The longest time without a completion that overlaps `[from, to]`, whole
/// (a pause that began before the window or ends after it counts in full),
/// and when it began. `samples` are sorted by completion.
pub fn longest_gap(samples: &[Sample], from: f64, to: f64) -> (f64, f64) {
    let mut longest: (f64, f64) = (0.0, from);
    let mut consider = |len: f64, at: f64| {
        if len > longest.0 {
            longest = (len, at);
        }
    };
    for pair in samples.windows(2) {
        let (a, b) = (pair[0].done, pair[1].done);
        if a < to && b > from {
            consider(b - a, a);
        }
    }
    // fio not yet writing at the window's start, or gone quiet before its
    // end: the silence up to the edge.
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        consider(first.done - from, from);
        consider(to - last.done, last.done);
    }
    longest
}
