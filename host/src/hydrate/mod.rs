//! Hydration, after Linux dm-clone: a volume lives on a local LUN that fills
//! from a remote (source) LUN while it serves I/O. Reads of regions not yet
//! local go to the source; whole-region writes go local and mark the region;
//! partial writes to a region not yet local copy it first; discards mark
//! without copying; a background worker copies the rest, skipping the
//! source's holes and yielding to attached I/O. The region bitmap is
//! committed after the data it covers is synced, on every flush and every
//! second, so a write acknowledged after a FLUSH survives kill -9 and
//! hydration resumes where it stopped, never from zero. Under load the
//! once-a-second commit leaves the volume's unflushed writes alone: it
//! records only the spans the worker synced itself, range by range (see
//! [`Hydration::commit_progress`]). Once every region holding source data
//! is durable so, the hydration ends without a sync of the whole LUN, the
//! one step that stalled a loaded volume's writes for hundreds of ms.
//!
//! Every region written on the local LUN is also marked written, and that
//! set is persisted with the bitmap: an abort copies those regions back to the
//! source in passes while I/O goes on, then in a last pass with writes
//! held, after which the device serves everything from the source.

mod gate;
mod manager;
mod region_set;
mod regions;

pub use manager::{HydrationError, HydrationStatus, Hydrations, LunRef};

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gate::Gate;
use region_set::RegionSet;
use regions::{HYDRATED, HYDRATING, Regions, UNHYDRATED};

use crate::array::{Extent, Lun};
use crate::block::BlockDevice;

/// Default region size, as dm-clone's: an aligned 4 KiB write covers a
/// whole region, so it only marks it and never waits for a copy. A 16 GiB
/// volume's bitmap is 512 KiB; the background worker copies runs of regions.
pub const DEFAULT_REGION_SIZE: u64 = 4 << 10;

/// Most regions the background worker copies in one read (a span): 1 MiB.
/// Under load each span ends with a sync of its range, whose cost is
/// mostly the disk's cache flush, so a span is large enough for the copy
/// to go at disk speed in the time it takes.
const SPAN_REGIONS: usize = 256;

/// How often the background worker commits the bitmap.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

/// Foreground I/O this recent (in microseconds) counts as load: the worker
/// then writes its copies durably one by one and commits only those
/// (a progress commit) instead of syncing the whole local LUN. Longer than
/// the copy's yield window, so a request stream with short gaps (a client
/// between two batches, a thread not scheduled for a few milliseconds)
/// does not get a sync in every gap.
const COMMIT_QUIET_US: u64 = 250_000;

/// Foreground I/O this recent (in microseconds) makes the background
/// worker yield. Measured in microseconds: with milliseconds, a request
/// 1 ms ago could read as 2 ms old, and the worker copied between requests.
const YIELD_WINDOW_US: u64 = 5_000;

/// While attached I/O keeps the worker yielding, it still copies a run at
/// least this often, so hydration ends under any load.
const TRICKLE_INTERVAL: Duration = Duration::from_millis(50);

/// Under attached I/O the worker rests this many times as long as its last
/// span took before the next one (within `TRICKLE_INTERVAL`): it copies
/// half of the time, however fast the disk. A fixed run per interval
/// left the copy at 5 MB/s on any disk, so a loaded 1 GiB volume took a
/// minute and a half to move.
const TRICKLE_REST_FACTOR: u32 = 1;

/// Serving: reads and writes as hydration wants them.
const SERVING: u8 = 0;
/// An abort copies the written regions back; background hydration pauses.
const COPYING_BACK: u8 = 1;
/// Copied back and switched: every request goes to the remote (source).
const RETURNED: u8 = 2;

/// Where a hydration's bitmap is persisted.
pub trait BitmapSink: Send + Sync {
    /// Durably records `bitmap`: the hydrated bitmap (bit set = region
    /// local) followed by the written bitmap of the same length (bit set =
    /// region written since the hydration began). Called only after the
    /// local LUN was synced; hand it back to [`Hydration::new`] as is.
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
    /// The bitmaps changed since the last full commit.
    dirty: AtomicBool,
    /// Hydrated regions whose local data is known durable: what the last
    /// full commit synced, the spans the worker synced since (each with
    /// the writes that had made regions of it local), and regions without
    /// source data, which hold nothing a crash could lose. Once it covers
    /// every region holding source data, the hydration ends without a
    /// sync of the whole LUN.
    durable: RegionSet,
    /// `durable` was seen to cover every region holding source data.
    source_durable: AtomicBool,
    /// `durable` or `written` changed since the last commit of either kind.
    progress_dirty: AtomicBool,
    epoch: Instant,
    last_io_us: AtomicU64,
    /// Next region the background worker looks at.
    cursor: AtomicU64,
    /// Background copy limit in bytes per second (0: none).
    bandwidth: AtomicU64,
    /// Bytes the background copy has read from the remote: what the limit
    /// paces. Holes and regions already local cost nothing, so a resumed
    /// hydration goes straight to where it stopped.
    fetched: AtomicU64,
    /// Written regions a copy-back pass has yet to carry to the source
    /// (filled from the regions marked written, the ones whose local data
    /// may differ from the source, when a copy-back begins; kept up by
    /// writes while it runs).
    pending: RegionSet,
    /// The remote may hold writes acknowledged but not yet synced (a live
    /// switch made this the served device without waiting for a sync):
    /// the next FLUSH syncs the remote too, as its caller expects of every
    /// write acknowledged before it.
    remote_unsynced: AtomicBool,
    /// Held while a FLUSH syncs the remote for `remote_unsynced`.
    remote_sync: Mutex<()>,
    /// `SERVING`, `COPYING_BACK` or `RETURNED`.
    mode: std::sync::atomic::AtomicU8,
    /// Held for the last pass of a copy-back and the switch.
    gate: Gate,
}

impl std::fmt::Debug for Hydration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hydration")
            .field("local", self.local.address())
            .field("remote", self.remote.address())
            .field("regions", &self.regions.count())
            .field("hydrated", &self.regions.hydrated_count())
            .field("written", &self.regions.written_count())
            .field("mode", &self.mode.load(Ordering::Relaxed))
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
        let count = local.size().div_ceil(region_size) as usize;
        let half = count.div_ceil(8);
        let (hydrated, written) = if bitmap.len() == 2 * half {
            bitmap.split_at(half)
        } else {
            // A bitmap without a written half was committed before writes
            // were tracked: any local region may have been written.
            (bitmap, bitmap)
        };
        let pending = RegionSet::new(count, &[]);
        // What was committed was synced first.
        let durable = RegionSet::new(count, hydrated);
        Ok(Arc::new(Self {
            regions: Regions::new(local.size(), region_size, hydrated, written),
            pending,
            mode: std::sync::atomic::AtomicU8::new(SERVING),
            gate: Gate::default(),
            local,
            remote,
            remote_extents,
            sink,
            commit_lock: Mutex::new(()),
            dirty: AtomicBool::new(false),
            durable,
            source_durable: AtomicBool::new(false),
            progress_dirty: AtomicBool::new(false),
            epoch: Instant::now(),
            last_io_us: AtomicU64::new(0),
            cursor: AtomicU64::new(0),
            bandwidth: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            remote_unsynced: AtomicBool::new(false),
            remote_sync: Mutex::new(()),
        }))
    }

    /// Records that the remote may hold acknowledged writes not yet
    /// synced: the next FLUSH through this device syncs it first.
    pub fn remote_may_be_unsynced(&self) {
        self.remote_unsynced.store(true, Ordering::Release);
    }

    /// Limits the background copy to `limit` bytes per second.
    pub fn set_bandwidth(&self, limit: Option<u64>) {
        self.bandwidth.store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    /// The local LUN (what the volume is once hydration completes).
    pub fn local(&self) -> &Arc<Lun> {
        &self.local
    }

    /// The remote LUN (the source the local one fills from).
    pub fn remote(&self) -> &Arc<Lun> {
        &self.remote
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

    /// Whether the hydration can end now at little cost: every region is
    /// local, and either durable too or the volume quiet (its full sync
    /// then finds little to write). Under load the worker makes the rest
    /// durable span by span first.
    pub fn is_ready_to_end(&self) -> bool {
        self.is_complete()
            && (!self.foreground_within(COMMIT_QUIET_US) || self.source_data_durable())
    }

    /// Syncs the local LUN, then persists the bitmaps if they changed.
    pub fn commit(&self) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == RETURNED {
            // The volume lives on the source again: nothing here to keep.
            return Ok(());
        }
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        // Taken before the sync: a region is marked only after its data was
        // written, so every region this state marks has its data on disk
        // once the sync returns. (Taken after, a mark racing the sync could
        // be persisted ahead of its data.)
        let state = dirty.then(|| self.regions.bitmaps());
        if let Err(e) = self.local.flush() {
            if dirty {
                self.dirty.store(true, Ordering::Release);
            }
            return Err(e);
        }
        if let Some(state) = state {
            if let Err(e) = self.sink.commit(&state) {
                self.dirty.store(true, Ordering::Release);
                return Err(e);
            }
            let half = self.regions.count().div_ceil(8);
            self.durable.union_bytes(&state[..half]);
        }
        Ok(())
    }

    /// Commits progress without syncing the local LUN: the durable regions
    /// (see `durable`) and the written set. A sync of the local LUN would
    /// write back every write the volume's user made and has not flushed;
    /// under load, once a second, that cost a fifth of the volume's write
    /// IOPS. Those writes become durable at the user's own FLUSH, which
    /// makes a full commit.
    fn commit_progress(&self) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == RETURNED {
            return Ok(());
        }
        let _guard = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.progress_dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let mut state = self.durable.to_bytes();
        state.extend_from_slice(&self.regions.written_bitmap());
        self.sink.commit(&state).inspect_err(|_| {
            self.progress_dirty.store(true, Ordering::Release);
        })
    }

    /// Records that regions `span` were written; called after the data is.
    fn mark_written(&self, span: std::ops::Range<usize>) {
        for i in span {
            if self.regions.mark_written(i) {
                self.dirty.store(true, Ordering::Release);
                self.progress_dirty.store(true, Ordering::Release);
            }
            // Checked after the mark: `begin_copy_back` switches the mode
            // before it copies the written set into the pending one, so a
            // mark either makes that copy or sees the mode and adds itself.
            // Serving, the pending set is not needed, and its atomic
            // read-modify-write on a cold cache line per write is saved.
            if self.mode.load(Ordering::SeqCst) != SERVING {
                self.pending.insert_ordered(i);
            }
        }
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.last_io_us.store(now, Ordering::Relaxed);
    }

    fn foreground_busy(&self) -> bool {
        self.foreground_within(YIELD_WINDOW_US)
    }

    /// Whether foreground I/O came in the last `us` microseconds.
    fn foreground_within(&self, us: u64) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        now.saturating_sub(self.last_io_us.load(Ordering::Relaxed)) < us
    }

    /// Copies region `i` from the remote; the caller holds its stripe lock.
    /// Source holes and zero data are skipped: the local LUN is sparse, so
    /// they read as zeroes already.
    fn copy_region(&self, i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        if !self.has_source_data(i) {
            return Ok(());
        }
        let (start, end) = self.regions.bounds(i);
        buf.resize((end - start) as usize, 0);
        self.remote.read_at(buf, start)?;
        if buf.iter().any(|b| *b != 0) {
            self.local.write_at(buf, start)?;
        }
        Ok(())
    }

    /// Whether every region holding source data is durable locally: then
    /// the hydration can end without syncing the local LUN, since a crash
    /// leaves each region reading the source's data or a later write.
    /// Asked by every status poll and worker pass near the end, it walks
    /// the regions only until the answer is yes, which stays yes: `durable`
    /// only grows.
    fn source_data_durable(&self) -> bool {
        if self.source_durable.load(Ordering::Acquire) {
            return true;
        }
        let all = self.remote_extents.iter().all(|e| {
            self.regions
                .span(e.offset, e.length)
                .all(|i| self.durable.contains(i))
        });
        if all {
            self.source_durable.store(true, Ordering::Release);
        }
        all
    }

    /// The commit that ends a hydration (or its worker): a progress commit
    /// when every region holding source data is durable already (the
    /// volume's unflushed writes stay unflushed, as its user left them);
    /// otherwise a full one. Under load a full commit's sync writes back at
    /// once every write the user has not flushed, and stalled every write
    /// to the LUN for 100 to 500 ms.
    /// Returns whether it synced the LUN.
    pub fn commit_to_end(&self) -> io::Result<bool> {
        if self.mode.load(Ordering::SeqCst) == SERVING && self.source_data_durable() {
            return self.commit_progress().map(|()| false);
        }
        self.commit().map(|()| true)
    }

    /// Hydrates up to `max` regions from the cursor on, a span of up to
    /// `SPAN_REGIONS` regions at a time: the span's cold regions are read
    /// from the remote in one read and written in runs; returns how many
    /// regions it looked at (0 when done).
    pub fn hydrate_step(&self, max: usize) -> io::Result<usize> {
        self.hydrate_step_with(max, false)
    }

    /// [`Hydration::hydrate_step`]; with `durable`, each span ends with a
    /// sync of its range, after which its regions count as durable (the
    /// ones it copied and the ones writes had made local), and a progress
    /// commit records them.
    fn hydrate_step_with(&self, max: usize, durable: bool) -> io::Result<usize> {
        let count = self.regions.count();
        let mut buf = Vec::new();
        let mut looked = 0;
        while looked < max {
            let first = self.cursor.load(Ordering::Relaxed) as usize;
            if first >= count {
                break;
            }
            let end = (first + SPAN_REGIONS.min(max - looked)).min(count);
            self.cursor.store(end as u64, Ordering::Relaxed);
            looked += end - first;
            if let Err(e) = self.hydrate_span(first, end, &mut buf, durable) {
                // Come back to this span on the next attempt.
                self.cursor.fetch_min(first as u64, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(looked)
    }

    /// Whether region `i`'s range holds source data.
    fn has_source_data(&self, i: usize) -> bool {
        let (s, e) = self.regions.bounds(i);
        overlaps(&self.remote_extents, s, e)
    }

    /// Copies the cold regions of `[first, end)` (see `hydrate_step_with`).
    fn hydrate_span(
        &self,
        first: usize,
        end: usize,
        buf: &mut Vec<u8>,
        durable: bool,
    ) -> io::Result<()> {
        let mut claimed = Vec::new();
        for i in first..end {
            let _g = self.regions.lock_settled(i);
            if self.regions.state(i) == UNHYDRATED {
                self.regions.set(i, HYDRATING);
                claimed.push(i);
            }
        }
        // The rest of the span is local, each region marked only after its
        // write: a sync from here on covers those writes.
        let earlier: Vec<usize> = (first..end)
            .filter(|&i| self.regions.state(i) == HYDRATED && !self.durable.contains(i))
            .collect();
        let copied = self.copy_claimed(&claimed, buf);
        // Settled before the sync: a write to a region now finds it local
        // and need not wait, and whether the sync takes that write or the
        // copy, the region holds data a crash may leave it with.
        for &i in &claimed {
            let _g = self.regions.lock_settled_hydrating(i);
            self.regions
                .set(i, if copied.is_ok() { HYDRATED } else { UNHYDRATED });
        }
        let wrote = copied?;
        let synced = if durable && (wrote || earlier.iter().any(|&i| self.has_source_data(i))) {
            let start = self.regions.bounds(first).0;
            let stop = self.regions.bounds(end - 1).1;
            self.local.sync_range(start, stop - start)
        } else {
            Ok(())
        };
        if !claimed.is_empty() {
            self.dirty.store(true, Ordering::Release);
        }
        // Synced, the whole span is durable; otherwise only the regions
        // without source data, which wrote nothing to lose.
        let span_synced = durable && synced.is_ok();
        let mut added = false;
        for &i in claimed.iter().chain(&earlier) {
            if span_synced || !self.has_source_data(i) {
                added |= self.durable.insert(i);
            }
        }
        if added {
            self.progress_dirty.store(true, Ordering::Release);
        }
        synced
    }

    /// Copies the `claimed` regions (ascending) from the remote in one read
    /// and as few writes as runs of them hold data; returns whether it
    /// wrote anything.
    fn copy_claimed(&self, claimed: &[usize], buf: &mut Vec<u8>) -> io::Result<bool> {
        let (Some(&lo), Some(&hi)) = (claimed.first(), claimed.last()) else {
            return Ok(false);
        };
        let start = self.regions.bounds(lo).0;
        let stop = self.regions.bounds(hi).1;
        if !overlaps(&self.remote_extents, start, stop) {
            return Ok(false);
        }
        buf.resize((stop - start) as usize, 0);
        self.remote.read_at(buf, start)?;
        self.fetched.fetch_add(stop - start, Ordering::Relaxed);
        // Write only claimed regions holding data, consecutive ones in one
        // write, so the local LUN allocates no more than the source.
        let slice = |i: usize| {
            let (s, e) = self.regions.bounds(i);
            (s - start) as usize..(e - start) as usize
        };
        let mut wrote = false;
        let mut k = 0;
        while k < claimed.len() {
            if buf[slice(claimed[k])].iter().all(|b| *b == 0) {
                k += 1;
                continue;
            }
            let mut j = k + 1;
            while j < claimed.len()
                && claimed[j] == claimed[j - 1] + 1
                && buf[slice(claimed[j])].iter().any(|b| *b != 0)
            {
                j += 1;
            }
            let range = slice(claimed[k]).start..slice(claimed[j - 1]).end;
            self.local
                .write_at(&buf[range.clone()], start + range.start as u64)?;
            wrote = true;
            k = j;
        }
        Ok(wrote)
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
        let mut next_trickle = Instant::now();
        let began = Instant::now();
        let fetched_before = self.fetched.load(Ordering::Relaxed);
        while !stop.load(Ordering::Relaxed) {
            if self.mode.load(Ordering::SeqCst) != SERVING {
                // A copy-back runs (or ran): hydrating now would only spend
                // bandwidth on a LUN about to go. Writes still need commits.
                std::thread::sleep(Duration::from_millis(50));
                if last_commit.elapsed() >= COMMIT_INTERVAL {
                    self.commit()?;
                    last_commit = Instant::now();
                }
                continue;
            }
            let limit = self.bandwidth.load(Ordering::Relaxed);
            if limit > 0 {
                let fetched = self
                    .fetched
                    .load(Ordering::Relaxed)
                    .saturating_sub(fetched_before);
                let due = Duration::from_secs_f64(fetched as f64 / limit as f64);
                if began.elapsed() < due {
                    std::thread::sleep((due - began.elapsed()).min(Duration::from_millis(20)));
                    continue;
                }
            }
            let mut done = self.cursor.load(Ordering::Relaxed) as usize >= self.regions.count();
            // Under load the next commit is a progress commit, which
            // records only what was written durably.
            let busy = self.foreground_within(COMMIT_QUIET_US);
            if done && busy && !self.source_data_durable() {
                // Spans copied while quiet were left to a full commit that
                // load then put off: go over them again, syncing span by
                // span, so the hydration can end without a full sync.
                self.cursor.store(0, Ordering::Relaxed);
                done = false;
            }
            if done {
                std::thread::sleep(Duration::from_millis(50));
            } else if !self.foreground_busy() {
                self.hydrate_step_with(SPAN_REGIONS * 4, busy)?;
                next_trickle = Instant::now() + TRICKLE_INTERVAL;
            } else if Instant::now() >= next_trickle {
                let step = Instant::now();
                self.hydrate_step_with(SPAN_REGIONS, busy)?;
                let rest = step.elapsed() * TRICKLE_REST_FACTOR;
                next_trickle = Instant::now() + rest.min(TRICKLE_INTERVAL);
            } else {
                std::thread::sleep(Duration::from_millis(2));
            }
            if busy {
                if last_commit.elapsed() >= COMMIT_INTERVAL {
                    self.commit_progress()?;
                    last_commit = Instant::now();
                }
            } else if last_commit.elapsed() >= COMMIT_INTERVAL
                || (done && self.dirty.load(Ordering::Acquire))
            {
                self.commit()?;
                last_commit = Instant::now();
            }
        }
        self.commit_to_end().map(|_| ())
    }

    /// Makes region `i` local before a partial write or discard; the caller
    /// holds its stripe lock.
    fn ensure_local(&self, i: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        if self.regions.state(i) == UNHYDRATED {
            self.copy_region(i, buf)?;
            self.regions.set(i, HYDRATED);
            self.dirty.store(true, Ordering::Release);
            self.mark_durable_if_empty(i);
        }
        Ok(())
    }

    /// Counts region `i`, just made local, as durable when the source holds
    /// no data there: nothing was copied that a crash could lose, and the
    /// region reads as zeroes or as a later write. A region with data waits
    /// for a sync (a span's, a full commit's).
    fn mark_durable_if_empty(&self, i: usize) {
        if !self.has_source_data(i) && self.durable.insert(i) {
            self.progress_dirty.store(true, Ordering::Release);
        }
    }

    /// Applies `op` to `[offset, offset+len)` region by region: regions the
    /// range covers whole are marked without copying, partly covered ones
    /// are made local first. Every region touched is marked written, also
    /// when `op` fails part way (its bytes may have changed).
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
            let r = op(offset, len);
            self.mark_written(span);
            return r;
        }
        let end = offset + len;
        let mut buf = Vec::new();
        for i in span {
            let (rs, re) = self.regions.bounds(i);
            let (s, e) = (rs.max(offset), re.min(end));
            let r = self.modify_region(i, (rs, re), (s, e), &mut buf, &mut op);
            self.mark_written(i..i + 1);
            r?;
        }
        Ok(())
    }

    /// `modify` for the part `[s, e)` of region `i` (bounds `[rs, re)`).
    fn modify_region(
        &self,
        i: usize,
        (rs, re): (u64, u64),
        (s, e): (u64, u64),
        buf: &mut Vec<u8>,
        op: &mut impl FnMut(u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.regions.state(i) == HYDRATED {
            return op(s, e - s);
        }
        let _g = self.regions.lock_settled(i);
        if self.regions.state(i) == HYDRATED {
            return op(s, e - s);
        }
        if s > rs || e < re {
            self.ensure_local(i, buf)?;
            op(s, e - s)
        } else {
            op(s, e - s)?;
            self.regions.set(i, HYDRATED);
            self.dirty.store(true, Ordering::Release);
            self.mark_durable_if_empty(i);
            Ok(())
        }
    }

    /// Whether every request goes to the remote now (copied back).
    pub fn is_returned(&self) -> bool {
        self.mode.load(Ordering::SeqCst) == RETURNED
    }

    /// Bytes written since the hydration began that a copy-back pass has
    /// not carried to the remote yet.
    pub fn copy_back_pending(&self) -> u64 {
        (self.pending.len() as u64 * self.regions.region_size()).min(self.local.size())
    }

    /// Bytes written since the hydration began (what a copy-back carries).
    pub fn written_bytes(&self) -> u64 {
        (self.regions.written_count() * self.regions.region_size()).min(self.local.size())
    }

    /// Begins a copy-back (abort): background hydration pauses; foreground
    /// I/O goes on as before. Repeating it is harmless.
    pub fn begin_copy_back(&self) {
        if self
            .mode
            .compare_exchange(SERVING, COPYING_BACK, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.pending.union_bytes(&self.regions.written_bitmap());
        }
    }

    /// Gives a copy-back up: hydration goes on. Regions already copied to
    /// the remote are still local (and written), so nothing changes for
    /// readers. Without effect once returned.
    pub fn cancel_copy_back(&self) {
        let _ =
            self.mode
                .compare_exchange(COPYING_BACK, SERVING, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// One copy-back pass while I/O goes on: carries every region pending
    /// now to the remote (regions written meanwhile are pending again for
    /// the next pass), then syncs the remote. Throttled to the hydration's
    /// bandwidth; `progress` gets the bytes copied so far. Returns the
    /// bytes copied.
    pub fn copy_back_pass(&self, progress: &mut dyn FnMut(u64)) -> io::Result<u64> {
        self.begin_copy_back();
        self.copy_back_regions(true, progress)
    }

    /// The last copy-back pass: holds writes, carries what is still
    /// pending, syncs the remote, and runs `switch` (which must persist that
    /// the remote is the volume's home again). Only then does the device
    /// serve every request from the remote, and writes go on there. On any
    /// failure nothing switched and writes go on here.
    pub fn copy_back_finish(&self, switch: impl FnOnce() -> io::Result<()>) -> io::Result<u64> {
        if self.is_returned() {
            return Ok(0);
        }
        self.begin_copy_back();
        self.gate.hold();
        let result = self
            .copy_back_regions(false, &mut |_| {})
            .and_then(|copied| switch().map(|()| copied));
        match result {
            Ok(_) => self.mode.store(RETURNED, Ordering::SeqCst),
            // Nothing switched: the next attempt carries every written
            // region again rather than trust what this one left behind.
            Err(_) => self.pending.union_bytes(&self.regions.written_bitmap()),
        }
        self.gate.release();
        result
    }

    fn copy_back_regions(&self, throttle: bool, progress: &mut dyn FnMut(u64)) -> io::Result<u64> {
        let result = self.copy_back_words(throttle, progress);
        let result = result.and_then(|copied| self.remote.flush().map(|()| copied));
        if result.is_err() {
            // What this pass wrote may not be durable on the remote (a
            // failed sync can drop dirty pages): carry every written region
            // again on the next attempt.
            self.pending.union_bytes(&self.regions.written_bitmap());
        }
        result
    }

    fn copy_back_words(&self, throttle: bool, progress: &mut dyn FnMut(u64)) -> io::Result<u64> {
        let began = Instant::now();
        let region = self.regions.region_size();
        let count = self.regions.count();
        let mut copied = 0u64;
        let mut buf = Vec::new();
        for w in 0..self.pending.word_count() {
            let limit = self.bandwidth.load(Ordering::Relaxed);
            if throttle && limit > 0 {
                let due = Duration::from_secs_f64(copied as f64 / limit as f64);
                if let Some(wait) = due.checked_sub(began.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let bits = self.pending.take_word(w);
            let mut rest = bits;
            while rest != 0 {
                // A run of consecutive pending regions, copied in one go.
                let first = rest.trailing_zeros() as usize;
                let len = (rest >> first).trailing_ones() as usize;
                rest &= !(u64::MAX >> (64 - len) << first);
                let (start, end) = (w * 64 + first, (w * 64 + first + len).min(count));
                let from = start as u64 * region;
                let to = (end as u64 * region).min(self.local.size());
                if let Err(e) = self.copy_back_range(from, to, &mut buf) {
                    self.pending.restore_word(w, bits);
                    return Err(e);
                }
                copied += to - from;
            }
            if bits != 0 {
                progress(copied);
            }
        }
        Ok(copied)
    }

    /// Carries `[from, to)` as this device reads it to the remote. All-zero
    /// data becomes a hole there, so the source stays as sparse as it was.
    fn copy_back_range(&self, from: u64, to: u64, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize((to - from) as usize, 0);
        self.read_mapped(buf, from)?;
        if buf.iter().all(|b| *b == 0) {
            self.remote.write_zeroes(from, to - from)
        } else {
            self.remote.write_at(buf, from)
        }
    }

    /// Reads through the region map (local where hydrated, else remote).
    fn read_mapped(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
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
}

impl BlockDevice for Hydration {
    fn size(&self) -> u64 {
        self.local.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.local.check_range(offset, buf.len() as u64)?;
        if self.is_returned() {
            return self.remote.read_at(buf, offset);
        }
        self.touch();
        self.read_mapped(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let _pass = self.gate.enter();
        if self.is_returned() {
            return self.remote.write_at(buf, offset);
        }
        self.modify(offset, buf.len() as u64, |s, l| {
            let from = (s - offset) as usize;
            self.local.write_at(&buf[from..from + l as usize], s)
        })
    }

    fn flush(&self) -> io::Result<()> {
        let _pass = self.gate.enter();
        if self.is_returned() {
            return self.remote.flush();
        }
        if self.remote_unsynced.load(Ordering::Acquire) {
            // Every FLUSH that finds the flag set waits for one sync of the
            // remote to succeed: a second FLUSH must not be acknowledged
            // while the first one's sync is still running, or after it
            // failed.
            let _one = self.remote_sync.lock().unwrap_or_else(|p| p.into_inner());
            if self.remote_unsynced.load(Ordering::Acquire) {
                self.remote.flush()?;
                self.remote_unsynced.store(false, Ordering::Release);
            }
        }
        self.commit()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let _pass = self.gate.enter();
        if self.is_returned() {
            return self.remote.write_zeroes(offset, len);
        }
        self.modify(offset, len, |s, l| self.local.write_zeroes(s, l))
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let _pass = self.gate.enter();
        if self.is_returned() {
            return self.remote.discard(offset, len);
        }
        self.modify(offset, len, |s, l| self.local.discard(s, l))
    }
}

#[cfg(test)]
mod tests;
