//! Hydration, after Linux dm-clone: a volume lives on a local LUN that fills
//! from a remote (source) LUN while it serves I/O. Reads of regions not yet
//! local go to the source; whole-region writes go local and mark the region;
//! partial writes to a region not yet local copy it first; discards mark
//! without copying; a background worker copies the rest, skipping the
//! source's holes and yielding to attached I/O. The region bitmap is
//! committed after the data it covers is synced, on every flush and at least
//! every second, so a write acknowledged after a FLUSH survives kill -9 and
//! hydration resumes where it stopped, never from zero.

mod manager;
mod regions;

pub use manager::{HydrationError, HydrationStatus, Hydrations, LunRef};

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regions::{HYDRATED, HYDRATING, Regions, UNHYDRATED};

use crate::array::{Extent, Lun};
use crate::block::BlockDevice;

/// Default region size, as dm-clone's: an aligned 4 KiB write covers a
/// whole region, so it only marks it and never waits for a copy. A 16 GiB
/// volume's bitmap is 512 KiB; the background worker copies runs of regions.
pub const DEFAULT_REGION_SIZE: u64 = 4 << 10;

/// Most regions the background worker copies in one read and write.
const RUN_REGIONS: usize = 64;

/// How often the background worker commits the bitmap.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Foreground I/O this recent makes the background worker pause.
const YIELD_WINDOW_MS: u64 = 2;

/// Where a hydration's bitmap is persisted.
pub trait BitmapSink: Send + Sync {
    /// Durably records `bitmap` (bit set = region hydrated). Called only
    /// after the local LUN was synced.
    fn commit(&self, bitmap: &[u8]) -> io::Result<()>;
}

/// A LUN being hydrated from a remote one. Serves as a [`BlockDevice`].
pub struct Hydration {
    local: Arc<Lun>,
    remote: Arc<Lun>,
    regions: Regions,
    /// Allocated ranges of the remote, which never changes during hydration.
    remote_extents: Vec<Extent>,
    sink: Box<dyn BitmapSink>,
    commit_lock: Mutex<()>,
    dirty: AtomicBool,
    epoch: Instant,
    last_io_ms: AtomicU64,
    /// Next region the background worker looks at.
    cursor: AtomicU64,
    /// Background copy limit in bytes per second (0: none).
    bandwidth: AtomicU64,
}

impl std::fmt::Debug for Hydration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hydration")
            .field("local", self.local.address())
            .field("remote", self.remote.address())
            .field("regions", &self.regions.count())
            .field("hydrated", &self.regions.hydrated_count())
            .finish()
    }
}

fn overlaps(extents: &[Extent], start: u64, end: u64) -> bool {
    // Extents are sorted and disjoint: find the first ending after `start`.
    let i = extents.partition_point(|e| e.offset + e.length <= start);
    extents.get(i).is_some_and(|e| e.offset < end)
}

impl Hydration {
    /// Starts (or resumes, with a persisted `bitmap`) hydrating `local` from
    /// `remote`. The two must have the same size.
    pub fn new(
        local: Arc<Lun>,
        remote: Arc<Lun>,
        region_size: u64,
        bitmap: &[u8],
        sink: Box<dyn BitmapSink>,
    ) -> io::Result<Arc<Self>> {
        if local.size() != remote.size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "local LUN is {} bytes but the remote is {}",
                    local.size(),
                    remote.size()
                ),
            ));
        }
        if region_size == 0 || !region_size.is_multiple_of(512) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "region size must be a positive multiple of 512",
            ));
        }
        let remote_extents = remote.allocated_extents(0, remote.size())?;
        Ok(Arc::new(Self {
            regions: Regions::new(local.size(), region_size, bitmap),
            local,
            remote,
            remote_extents,
            sink,
            commit_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
            epoch: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            bandwidth: AtomicU64::new(0),
        }))
    }

    /// Limits the background copy to `limit` bytes per second.
    pub fn set_bandwidth(&self, limit: Option<u64>) {
        self.bandwidth.store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    /// The local LUN (what the volume is once hydration completes).
    pub fn local(&self) -> &Arc<Lun> {
        &self.local
    }

    /// Bytes hydrated so far and in all.
    pub fn progress(&self) -> (u64, u64) {
        let size = self.local.size();
        let done = (self.regions.hydrated_count() * self.regions.region_size()).min(size);
        (done, size)
    }

    /// Whether every region is local.
    pub fn is_complete(&self) -> bool {
        self.regions.is_complete()
    }

    /// Syncs the local LUN, then persists the bitmap if it changed.
    pub fn commit(&self) -> io::Result<()> {
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        self.local.flush()?;
        if dirty {
            // Taken after the sync: every region it marks has its data on disk.
            if let Err(e) = self.sink.commit(&self.regions.bitmap()) {
                self.dirty.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_io_ms.store(now, Ordering::Relaxed);
    }

    fn foreground_busy(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_io_ms.load(Ordering::Relaxed)) < YIELD_WINDOW_MS
    }

    /// Copies region `i` from the remote; the caller holds its stripe lock
    /// or has marked it hydrating. Source holes and zero data are skipped:
    /// the local LUN is sparse, so they read as zeroes already.
    fn copy_region(&self, i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let (start, end) = self.regions.bounds(i);
        if !overlaps(&self.remote_extents, start, end) {
            return Ok(());
        }
        buf.resize((end - start) as usize, 0);
        self.remote.read_at(buf, start)?;
        if buf.iter().any(|b| *b != 0) {
            self.local.write_at(buf, start)?;
        }
        Ok(())
    }

    /// Hydrates up to `max` regions from the cursor on, in runs of up to
    /// `RUN_REGIONS` consecutive cold regions copied with one read and one
    /// write; returns how many regions it looked at (0 when done).
    pub fn hydrate_step(&self, max: usize) -> io::Result<usize> {
        let count = self.regions.count();
        let mut buf = Vec::new();
        let mut looked = 0;
        while looked < max {
            let first = self.cursor.load(Ordering::Relaxed) as usize;
            if first >= count {
                break;
            }
            // Claim a run of cold regions; stop at the first one that is not.
            let mut end = first;
            while end < count && end - first < RUN_REGIONS {
                let _g = self.regions.lock_settled(end);
                if self.regions.state(end) != UNHYDRATED {
                    break;
                }
                self.regions.set(end, HYDRATING);
                end += 1;
            }
            if end == first {
                // Already local (a foreground write made it so): skip it.
                self.cursor.store(first as u64 + 1, Ordering::Relaxed);
                looked += 1;
                continue;
            }
            self.cursor.store(end as u64, Ordering::Relaxed);
            looked += end - first;
            let copied = self.copy_run(first, end, &mut buf);
            for i in first..end {
                let _g = self.regions.lock_settled_hydrating(i);
                self.regions
                    .set(i, if copied.is_ok() { HYDRATED } else { UNHYDRATED });
            }
            if let Err(e) = copied {
                // Come back to this run on the next attempt.
                self.cursor.fetch_min(first as u64, Ordering::Relaxed);
                return Err(e);
            }
            self.dirty.store(true, Ordering::Release);
        }
        Ok(looked)
    }

    /// Copies regions `[first, end)` from the remote in one read and write.
    fn copy_run(&self, first: usize, end: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        let start = self.regions.bounds(first).0;
        let stop = self.regions.bounds(end - 1).1;
        if !overlaps(&self.remote_extents, start, stop) {
            return Ok(());
        }
        buf.resize((stop - start) as usize, 0);
        self.remote.read_at(buf, start)?;
        // Write only the regions holding data, coalesced, so the local LUN
        // allocates no more than the source.
        let region = self.regions.region_size() as usize;
        let mut i = 0;
        while i < buf.len() {
            if buf[i..(i + region).min(buf.len())].iter().all(|b| *b == 0) {
                i += region;
                continue;
            }
            let mut j = i + region;
            while j < buf.len() && buf[j..(j + region).min(buf.len())].iter().any(|b| *b != 0) {
                j += region;
            }
            let j = j.min(buf.len());
            self.local.write_at(&buf[i..j], start + i as u64)?;
            i = j;
        }
        Ok(())
    }

    /// Allocates the local LUN where the source holds data, so writes during
    /// hydration overwrite allocated blocks instead of allocating one by one.
    /// The local LUN ends up allocating what the source does, no more.
    pub fn preallocate(&self) -> io::Result<()> {
        for e in &self.remote_extents {
            self.local.preallocate(e.offset, e.length)?;
        }
        Ok(())
    }

    /// The background worker: hydrates everything, yielding to foreground
    /// I/O, committing the bitmap every second; after completion it keeps
    /// committing until `stop` is raised (foreground writes still mark).
    pub fn run_background(&self, stop: &AtomicBool) -> io::Result<()> {
        let mut last_commit = Instant::now();
        let began = Instant::now();
        let first_region = self.cursor.load(Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            let limit = self.bandwidth.load(Ordering::Relaxed);
            if limit > 0 {
                let scanned = self
                    .cursor
                    .load(Ordering::Relaxed)
                    .saturating_sub(first_region)
                    * self.regions.region_size();
                let due = Duration::from_secs_f64(scanned as f64 / limit as f64);
                if began.elapsed() < due {
                    std::thread::sleep((due - began.elapsed()).min(Duration::from_millis(20)));
                    continue;
                }
            }
            let done = self.cursor.load(Ordering::Relaxed) as usize >= self.regions.count();
            if done {
                std::thread::sleep(Duration::from_millis(50));
            } else if self.foreground_busy() {
                std::thread::sleep(Duration::from_millis(1));
            } else {
                self.hydrate_step(RUN_REGIONS * 4)?;
            }
            if last_commit.elapsed() >= COMMIT_INTERVAL
                || (done && self.dirty.load(Ordering::Acquire))
            {
                self.commit()?;
                last_commit = Instant::now();
            }
        }
        self.commit()
    }

    /// Makes region `i` local before a partial write or discard; the caller
    /// holds its stripe lock.
    fn ensure_local(&self, i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        if self.regions.state(i) == UNHYDRATED {
            self.copy_region(i, buf)?;
            self.regions.set(i, HYDRATED);
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Applies `op` to `[offset, offset+len)` region by region: regions the
    /// range covers whole are marked without copying, partly covered ones
    /// are made local first.
    fn modify(
        &self,
        offset: u64,
        len: u64,
        mut op: impl FnMut(u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        self.local.check_range(offset, len)?;
        self.touch();
        let span = self.regions.span(offset, len);
        if span.clone().all(|i| self.regions.state(i) == HYDRATED) {
            return op(offset, len);
        }
        let end = offset + len;
        let mut buf = Vec::new();
        for i in span {
            let (rs, re) = self.regions.bounds(i);
            let (s, e) = (rs.max(offset), re.min(end));
            if self.regions.state(i) == HYDRATED {
                op(s, e - s)?;
                continue;
            }
            let _g = self.regions.lock_settled(i);
            if self.regions.state(i) != HYDRATED {
                if s > rs || e < re {
                    self.ensure_local(i, &mut buf)?;
                    op(s, e - s)?;
                } else {
                    op(s, e - s)?;
                    self.regions.set(i, HYDRATED);
                    self.dirty.store(true, Ordering::Release);
                }
            } else {
                op(s, e - s)?;
            }
        }
        Ok(())
    }
}

impl BlockDevice for Hydration {
    fn size(&self) -> u64 {
        self.local.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.local.check_range(offset, buf.len() as u64)?;
        self.touch();
        let span = self.regions.span(offset, buf.len() as u64);
        if span.clone().all(|i| self.regions.state(i) == HYDRATED) {
            return self.local.read_at(buf, offset);
        }
        // Runs of regions with the same source are read in one call. A
        // region hydrating right now still reads from the source, whose data
        // it is copying.
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        let mut i = span.start;
        while i < span.end {
            let local = self.regions.state(i) == HYDRATED;
            let mut j = i + 1;
            while j < span.end && (self.regions.state(j) == HYDRATED) == local {
                j += 1;
            }
            let run_end = self.regions.bounds(j - 1).1.min(end);
            let part = &mut buf[(pos - offset) as usize..(run_end - offset) as usize];
            if local {
                self.local.read_at(part, pos)?;
            } else {
                self.remote.read_at(part, pos)?;
            }
            pos = run_end;
            i = j;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.modify(offset, buf.len() as u64, |s, l| {
            let from = (s - offset) as usize;
            self.local.write_at(&buf[from..from + l as usize], s)
        })
    }

    fn flush(&self) -> io::Result<()> {
        self.commit()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        self.modify(offset, len, |s, l| self.local.write_zeroes(s, l))
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.modify(offset, len, |s, l| self.local.discard(s, l))
    }
}

#[cfg(test)]
mod tests;
