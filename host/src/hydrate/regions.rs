//! The region map of a hydration: one state per region, readable without a
//! lock on the hot path, with striped locks and wake-ups for the
//! transitions that foreground writes and the background worker race for.
//! Each region's byte also says whether it was written since the hydration
//! began: a write checks its region's state and marks it in the same cache
//! line (kept apart, the two cost a cache miss each on random writes).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Not local yet: reads go to the source.
pub(super) const UNHYDRATED: u8 = 0;
/// The background worker is copying it; writers wait.
pub(super) const HYDRATING: u8 = 1;
/// Local: reads and writes use the local LUN only.
pub(super) const HYDRATED: u8 = 2;

/// The bits of a region's byte holding its state.
const STATE: u8 = 0b11;
/// The bit of a region's byte set once the region was written.
const WRITTEN: u8 = 0b100;

const STRIPES: usize = 256;

/// Region states plus the locks that order their transitions.
pub(super) struct Regions {
    states: Vec<AtomicU8>,
    region_size: u64,
    size: u64,
    hydrated: AtomicU64,
    written: AtomicU64,
    stripes: Vec<(Mutex<()>, Condvar)>,
}

impl Regions {
    /// `bits` is a persisted bitmap (bit set = hydrated) and `written` one
    /// of the regions written (bit set = written); either may be empty.
    pub(super) fn new(size: u64, region_size: u64, bits: &[u8], written: &[u8]) -> Self {
        let count = size.div_ceil(region_size) as usize;
        let is_set = |map: &[u8], i: usize| map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        let (mut hydrated, mut marked) = (0u64, 0u64);
        let states = (0..count)
            .map(|i| {
                let (h, w) = (is_set(bits, i), is_set(written, i));
                hydrated += u64::from(h);
                marked += u64::from(w);
                let state = if h { HYDRATED } else { UNHYDRATED };
                AtomicU8::new(state | if w { WRITTEN } else { 0 })
            })
            .collect();
        Self {
            states,
            region_size,
            size,
            hydrated: AtomicU64::new(hydrated),
            written: AtomicU64::new(marked),
            stripes: (0..STRIPES)
                .map(|_| (Mutex::new(()), Condvar::new()))
                .collect(),
        }
    }

    pub(super) fn count(&self) -> usize {
        self.states.len()
    }

    pub(super) fn region_size(&self) -> u64 {
        self.region_size
    }

    /// Byte range `[start, end)` of region `i`.
    pub(super) fn bounds(&self, i: usize) -> (u64, u64) {
        let start = i as u64 * self.region_size;
        (start, (start + self.region_size).min(self.size))
    }

    /// Regions touched by `[offset, offset + len)`.
    pub(super) fn span(&self, offset: u64, len: u64) -> std::ops::Range<usize> {
        if len == 0 {
            return 0..0;
        }
        let first = (offset / self.region_size) as usize;
        let last = ((offset + len - 1) / self.region_size) as usize;
        first..(last + 1).min(self.states.len())
    }

    pub(super) fn state(&self, i: usize) -> u8 {
        self.states[i].load(Ordering::Acquire) & STATE
    }

    /// Marks region `i` written; true if it was not. A region marked
    /// before costs one load: most writes go to regions written before.
    pub(super) fn mark_written(&self, i: usize) -> bool {
        if self.states[i].load(Ordering::SeqCst) & WRITTEN != 0 {
            return false;
        }
        let new = self.states[i].fetch_or(WRITTEN, Ordering::SeqCst) & WRITTEN == 0;
        if new {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// Number of regions written since the hydration began.
    pub(super) fn written_count(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The written regions as a bitmap (bit set = written).
    pub(super) fn written_bitmap(&self) -> Vec<u8> {
        let mut bits = vec![0u8; self.states.len().div_ceil(8)];
        for (i, s) in self.states.iter().enumerate() {
            if s.load(Ordering::SeqCst) & WRITTEN != 0 {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits
    }

    pub(super) fn hydrated_count(&self) -> u64 {
        self.hydrated.load(Ordering::Relaxed)
    }

    pub(super) fn is_complete(&self) -> bool {
        self.hydrated_count() == self.states.len() as u64
    }

    /// Locks region `i`'s stripe, waiting while the region is hydrating.
    pub(super) fn lock_settled(&self, i: usize) -> MutexGuard<'_, ()> {
        let (lock, cv) = &self.stripes[i % STRIPES];
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.state(i) == HYDRATING {
            guard = cv.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
        guard
    }

    /// Locks region `i`'s stripe without waiting for its state: used by the
    /// worker that set it hydrating.
    pub(super) fn lock_settled_hydrating(&self, i: usize) -> MutexGuard<'_, ()> {
        self.stripes[i % STRIPES]
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Sets region `i`'s state, keeping its written mark; the caller holds
    /// its stripe lock.
    pub(super) fn set(&self, i: usize, state: u8) {
        let old = self.states[i]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some((b & !STATE) | state)
            })
            .unwrap_or_else(|b| b)
            & STATE;
        if old != HYDRATED && state == HYDRATED {
            self.hydrated.fetch_add(1, Ordering::Relaxed);
        }
        if old == HYDRATING {
            self.stripes[i % STRIPES].1.notify_all();
        }
    }

    /// The bitmaps to persist, from one pass over the map: the hydrated one
    /// (bit set = hydrated), then the written one of the same length. A
    /// FLUSH commits them, so this runs on the volume's I/O path.
    pub(super) fn bitmaps(&self) -> Vec<u8> {
        let half = self.states.len().div_ceil(8);
        let mut bits = vec![0u8; 2 * half];
        let (hydrated, written) = bits.split_at_mut(half);
        for (i, s) in self.states.iter().enumerate() {
            let b = s.load(Ordering::SeqCst);
            let bit = 1 << (i % 8);
            if b & STATE == HYDRATED {
                hydrated[i / 8] |= bit;
            }
            if b & WRITTEN != 0 {
                written[i / 8] |= bit;
            }
        }
        bits
    }
}
