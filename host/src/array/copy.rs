//! Native, sparse-preserving copy between LUNs. Only allocated extents of the
//! source are read (SEEK_DATA/SEEK_HOLE), all-zero chunks stay holes in the
//! target, and the copy reports progress and durable checkpoints so a restart
//! resumes it instead of starting over.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Lun;
use crate::block::BlockDevice;

/// Chunk size of the copy: large and aligned, so the kernel streams.
const CHUNK: usize = 4 << 20;

/// Bytes between two durable checkpoints.
const CHECKPOINT_BYTES: u64 = 64 << 20;

/// Longest time between two durable checkpoints.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Copies `len` bytes from `src` at `src_off` into `dst` at `dst_off`.
/// Holes in the source become holes in the target; returns the number of
/// allocated source bytes that were read.
pub fn copy_range(src: &Lun, src_off: u64, dst: &Lun, dst_off: u64, len: u64) -> io::Result<u64> {
    copy_range_cancellable(src, src_off, dst, dst_off, len, None).map_err(|e| match e {
        CopyError::Io(e) => e,
        other => io::Error::other(other),
    })
}

/// [`copy_range`] that stops at the next chunk once `cancel` is raised
/// (with [`CopyError::Cancelled`]); what it copied so far stays.
pub fn copy_range_cancellable(
    src: &Lun,
    src_off: u64,
    dst: &Lun,
    dst_off: u64,
    len: u64,
    cancel: Option<&AtomicBool>,
) -> Result<u64, CopyError> {
    src.check_range(src_off, len)?;
    dst.check_range(dst_off, len)?;
    // The target range must read as zeroes where the source has holes.
    dst.discard(dst_off, len)?;
    let mut buf = vec![0u8; CHUNK];
    let mut moved = 0u64;
    for ext in src.allocated_extents(src_off, len)? {
        let mut pos = ext.offset;
        let end = ext.offset + ext.length;
        while pos < end {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(CopyError::Cancelled);
            }
            let n = chunk_len(end - pos);
            copy_chunk(src, pos, dst, pos - src_off + dst_off, &mut buf[..n])?;
            moved += n as u64;
            pos += n as u64;
        }
    }
    Ok(moved)
}

fn chunk_len(remaining: u64) -> usize {
    usize::try_from(remaining).map_or(CHUNK, |r| r.min(CHUNK))
}

/// Reads one chunk and writes it unless it is all zeroes; tells whether it
/// wrote.
fn copy_chunk(src: &Lun, from: u64, dst: &Lun, to: u64, buf: &mut [u8]) -> io::Result<bool> {
    src.file().read_exact_at(buf, from)?;
    if is_zero(buf) {
        return Ok(false);
    }
    dst.file().write_all_at(buf, to)?;
    Ok(true)
}

/// Whether every byte is zero, a word at a time.
pub(super) fn is_zero(buf: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: u64 has no invalid bit patterns; align_to keeps the
        // unaligned ends in `head` and `tail`.
        unsafe { buf.align_to::<u64>() }
    };
    head.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

/// Where a whole-LUN copy stands: every byte below `position` is copied and
/// durable in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyCheckpoint {
    /// Offset below which the copy is complete and synced.
    pub position: u64,
    /// Allocated source bytes copied so far.
    pub done_bytes: u64,
    /// Allocated source bytes in all.
    pub total_bytes: u64,
}

/// Options of a whole-LUN copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// Resume from this checkpoint position (0: from the start).
    pub resume_from: u64,
    /// Bandwidth limit in bytes per second of allocated data.
    pub bandwidth: Option<u64>,
}

/// Why a whole-LUN copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Reading the source or writing the target failed.
    #[error("copy I/O error: {0}")]
    Io(#[from] io::Error),
    /// The sizes differ.
    #[error("source is {src} bytes but target is {dst}")]
    SizeMismatch {
        /// Source size.
        src: u64,
        /// Target size.
        dst: u64,
    },
    /// The cancel flag was raised.
    #[error("copy cancelled")]
    Cancelled,
    /// The checkpoint callback refused to go on (it could not persist).
    #[error("checkpoint failed: {0}")]
    Checkpoint(String),
}

/// Copies all of `src` into `dst` (same size), skipping holes, from
/// `opts.resume_from` on. `checkpoint` is called with durable positions (the
/// target is synced first) and may stop the copy by returning an error;
/// `cancel` stops it at the next chunk.
pub fn copy_lun(
    src: &Lun,
    dst: &Lun,
    opts: CopyOptions,
    cancel: &AtomicBool,
    mut checkpoint: impl FnMut(CopyCheckpoint) -> Result<(), String>,
) -> Result<CopyCheckpoint, CopyError> {
    let size = same_size(src, dst)?;
    let start = opts.resume_from.min(size);
    let extents = src.allocated_extents(0, size)?;
    let (total_bytes, mut done_bytes) = counted(&extents, start);
    // Whatever a crashed run wrote past the checkpoint is not trusted: the
    // rest of the target starts as holes again.
    if start < size {
        dst.discard(start, size - start)?;
    }
    let mut buf = vec![0u8; CHUNK];
    let mut pace = Pace::new(opts.bandwidth);
    for ext in extents {
        let end = ext.offset + ext.length;
        let mut pos = ext.offset.max(start);
        while pos < end {
            if cancel.load(Ordering::Relaxed) {
                return Err(CopyError::Cancelled);
            }
            let n = chunk_len(end - pos);
            if copy_chunk(src, pos, dst, pos, &mut buf[..n])? {
                dst.start_writeback(pos, n as u64);
            }
            pos += n as u64;
            done_bytes += n as u64;
            pace.moved(n as u64, cancel, || {
                dst.flush()?;
                checkpoint(CopyCheckpoint {
                    position: pos,
                    done_bytes,
                    total_bytes,
                })
                .map_err(CopyError::Checkpoint)
            })?;
        }
    }
    finish(dst, size, total_bytes, checkpoint)
}

/// The size of both devices, or why they cannot be copied one to the other.
pub(super) fn same_size(src: &dyn BlockDevice, dst: &dyn BlockDevice) -> Result<u64, CopyError> {
    let size = src.size();
    if dst.size() != size {
        return Err(CopyError::SizeMismatch {
            src: size,
            dst: dst.size(),
        });
    }
    Ok(size)
}

/// The bytes `extents` hold in all, and those of them below `start`
/// (copied before a resume).
pub(super) fn counted(extents: &[super::Extent], start: u64) -> (u64, u64) {
    let total = extents.iter().map(|e| e.length).sum();
    let done = extents
        .iter()
        .map(|e| e.length.min(start.saturating_sub(e.offset)))
        .sum();
    (total, done)
}

/// The end of a whole copy: the target synced, the last checkpoint at the
/// end of the device.
pub(super) fn finish(
    dst: &dyn BlockDevice,
    size: u64,
    total_bytes: u64,
    mut checkpoint: impl FnMut(CopyCheckpoint) -> Result<(), String>,
) -> Result<CopyCheckpoint, CopyError> {
    dst.flush()?;
    let done = CopyCheckpoint {
        position: size,
        done_bytes: total_bytes,
        total_bytes,
    };
    checkpoint(done).map_err(CopyError::Checkpoint)?;
    Ok(done)
}

/// The rhythm of a whole copy: a durable checkpoint every so many bytes or
/// so much time, whichever comes first, and the bandwidth limit.
pub(super) struct Pace {
    began: Instant,
    bandwidth: Option<u64>,
    sync_bytes: u64,
    sync_interval: Duration,
    copied: u64,
    since_sync: u64,
    last_sync: Instant,
}

impl Pace {
    /// Checkpoints every `CHECKPOINT_BYTES` or `CHECKPOINT_INTERVAL`.
    pub(super) fn new(bandwidth: Option<u64>) -> Self {
        Self::every(bandwidth, CHECKPOINT_BYTES, CHECKPOINT_INTERVAL)
    }

    /// Checkpoints every `sync_bytes` or `sync_interval`.
    pub(super) fn every(bandwidth: Option<u64>, sync_bytes: u64, sync_interval: Duration) -> Self {
        Self {
            began: Instant::now(),
            bandwidth: bandwidth.filter(|l| *l > 0),
            sync_bytes,
            sync_interval,
            copied: 0,
            since_sync: 0,
            last_sync: Instant::now(),
        }
    }

    /// Counts `n` bytes moved; runs `sync` (flush and checkpoint) when one
    /// is due, then waits as long as the bandwidth limit asks.
    pub(super) fn moved(
        &mut self,
        n: u64,
        cancel: &AtomicBool,
        sync: impl FnOnce() -> Result<(), CopyError>,
    ) -> Result<(), CopyError> {
        self.copied += n;
        self.since_sync += n;
        if self.since_sync >= self.sync_bytes || self.last_sync.elapsed() >= self.sync_interval {
            sync()?;
            self.last_sync = Instant::now();
            self.since_sync = 0;
        }
        if let Some(limit) = self.bandwidth {
            throttle(self.began, self.copied, limit, cancel);
        }
        Ok(())
    }
}

/// Sleeps until `copied` bytes since `began` are within `limit` bytes/s,
/// waking early when cancelled.
fn throttle(began: Instant, copied: u64, limit: u64, cancel: &AtomicBool) {
    let due = Duration::from_secs_f64(copied as f64 / limit as f64);
    while began.elapsed() < due && !cancel.load(Ordering::Relaxed) {
        std::thread::sleep((due - began.elapsed()).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ArrayConfig;
    use crate::model::LunAddress;

    fn luns(size: u64) -> (tempfile::TempDir, Lun, Lun) {
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
        let a = super::super::Array::open(dir.path(), &cfg).unwrap();
        let addr = |n: &str| LunAddress {
            pool: "p".into(),
            name: n.into(),
        };
        let s = a.create_lun(&addr("s"), size).unwrap();
        let d = a.create_lun(&addr("d"), size).unwrap();
        (dir, s, d)
    }

    fn read_all(l: &Lun) -> Vec<u8> {
        let mut v = vec![0u8; l.size() as usize];
        l.read_at(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn copy_is_exact_and_sparse() {
        let (_d, s, d) = luns(64 << 20);
        s.write_at(&[0xabu8; 1 << 20], 3 << 20).unwrap();
        s.write_at(&[0u8; 8 << 20], 20 << 20).unwrap(); // allocated zeroes
        s.write_at(&[0x11u8; 4096], (64 << 20) - 4096).unwrap();
        let mut points = Vec::new();
        let done = copy_lun(
            &s,
            &d,
            CopyOptions::default(),
            &AtomicBool::new(false),
            |c| {
                points.push(c);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(read_all(&s), read_all(&d));
        assert_eq!(done.done_bytes, done.total_bytes);
        assert_eq!(points.last().copied(), Some(done));
        assert!(d.allocated_bytes().unwrap() <= s.allocated_bytes().unwrap());
        // The allocated zeroes were not written.
        assert!(d.allocated_bytes().unwrap() < (4 << 20));
    }

    #[test]
    fn resume_discards_untrusted_tail_and_finishes() {
        let (_d, s, d) = luns(16 << 20);
        s.write_at(&[1u8; 16 << 20], 0).unwrap();
        s.discard(8 << 20, 4 << 20).unwrap();
        // A crashed run left garbage past its checkpoint at 4 MiB.
        d.write_at(&[9u8; 12 << 20], 4 << 20).unwrap();
        d.write_at(&[1u8; 4 << 20], 0).unwrap();
        let opts = CopyOptions {
            resume_from: 4 << 20,
            bandwidth: None,
        };
        copy_lun(&s, &d, opts, &AtomicBool::new(false), |_| Ok(())).unwrap();
        assert_eq!(read_all(&s), read_all(&d));
    }

    #[test]
    fn cancel_and_checkpoint_failure_stop_the_copy() {
        let (_d, s, d) = luns(8 << 20);
        s.write_at(&[1u8; 8 << 20], 0).unwrap();
        let err = copy_lun(
            &s,
            &d,
            CopyOptions::default(),
            &AtomicBool::new(true),
            |_| Ok(()),
        );
        assert!(matches!(err, Err(CopyError::Cancelled)));
        let err = copy_lun(
            &s,
            &d,
            CopyOptions::default(),
            &AtomicBool::new(false),
            |_| Err("disk full".into()),
        );
        assert!(matches!(err, Err(CopyError::Checkpoint(m)) if m == "disk full"));
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0u8; 4099]));
        let mut b = vec![0u8; 4099];
        b[4098] = 1;
        assert!(!is_zero(&b));
        b[4098] = 0;
        b[1] = 1;
        assert!(!is_zero(&b));
    }
}
