//! The host copy between any two block devices, for when one end is not a
//! LUN file (an NBD export an array serves): chunks move on several threads
//! at once so that a network's round trips overlap, all-zero chunks are not
//! written, and checkpoints are durable positions as in `copy_lun`.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use super::copy::{Pace, counted, finish, is_zero, same_size};
use super::{CopyCheckpoint, CopyError, CopyOptions, Extent};
use crate::block::BlockDevice;

/// Bytes one request moves: large enough that a round trip is small
/// beside it, small enough that several fit in a server's request limit.
const CHUNK: u64 = 4 << 20;

/// Chunks in flight at once.
const WORKERS: usize = 8;

/// Bytes between two barriers: after a batch every chunk below its end is
/// written, which is what a checkpoint may claim.
const BATCH_BYTES: u64 = 64 << 20;

/// A checkpoint makes the far side sync everything written since the last
/// one, and the copy waits for it: over the network they come less often
/// than between LUN files. A crash repeats at most this much.
const CHECKPOINT_BYTES: u64 = 256 << 20;
/// Longest time between two checkpoints.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Copies all of `src` into `dst` (same size) from `opts.resume_from` on.
/// `allocated` lists the source's allocated extents when it knows them
/// (holes are then not read); otherwise every byte is read. `checkpoint`
/// and `cancel` work as in [`super::copy_lun`].
pub fn copy_device(
    src: &dyn BlockDevice,
    dst: &dyn BlockDevice,
    allocated: Option<Vec<Extent>>,
    opts: CopyOptions,
    cancel: &AtomicBool,
    mut checkpoint: impl FnMut(CopyCheckpoint) -> Result<(), String>,
) -> Result<CopyCheckpoint, CopyError> {
    let size = same_size(src, dst)?;
    let start = opts.resume_from.min(size);
    let extents = allocated.unwrap_or_else(|| {
        vec![Extent {
            offset: 0,
            length: size,
        }]
    });
    let (total_bytes, mut done_bytes) = counted(&extents, start);
    // What a crashed run (or an earlier life of the target) left past the
    // checkpoint is not trusted: skipped zero chunks must read as zeroes.
    if start < size {
        dst.write_zeroes(start, size - start)?;
    }
    let mut pieces = extents.into_iter().flat_map(move |e| {
        let from = e.offset.max(start);
        let end = e.offset + e.length;
        (from..end)
            .step_by(usize::try_from(CHUNK).unwrap_or(usize::MAX))
            .map(move |off| (off, CHUNK.min(end - off)))
    });
    let mut pace = Pace::every(opts.bandwidth, CHECKPOINT_BYTES, CHECKPOINT_INTERVAL);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let mut batch = Vec::new();
        let mut batch_bytes = 0u64;
        for piece in pieces.by_ref() {
            batch_bytes += piece.1;
            batch.push(piece);
            if batch_bytes >= BATCH_BYTES {
                break;
            }
        }
        let Some(&(last_off, last_len)) = batch.last() else {
            break;
        };
        copy_batch(src, dst, &batch, cancel)?;
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        done_bytes += batch_bytes;
        pace.moved(batch_bytes, cancel, || {
            dst.flush()?;
            checkpoint(CopyCheckpoint {
                position: last_off + last_len,
                done_bytes,
                total_bytes,
            })
            .map_err(CopyError::Checkpoint)
        })?;
    }
    finish(dst, size, total_bytes, checkpoint)
}

/// Moves every chunk of `batch` on up to [`WORKERS`] threads; the first
/// error wins and stops the others at their next chunk.
fn copy_batch(
    src: &dyn BlockDevice,
    dst: &dyn BlockDevice,
    batch: &[(u64, u64)],
    cancel: &AtomicBool,
) -> io::Result<()> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..WORKERS.min(batch.len()) {
            s.spawn(|| {
                let mut buf = Vec::new();
                loop {
                    if stop.load(Ordering::Relaxed) || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(offset, len)) = batch.get(i) else {
                        return;
                    };
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    buf.resize(len, 0);
                    let moved = src.read_at(&mut buf, offset).and_then(|()| {
                        if is_zero(&buf) {
                            Ok(())
                        } else {
                            dst.write_at(&buf, offset)
                                .map(|()| dst.start_writeback(offset, buf.len() as u64))
                        }
                    });
                    if let Err(e) = moved {
                        stop.store(true, Ordering::Relaxed);
                        let mut first = failed.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::testdev::MemDevice;

    fn mem(size: u64) -> MemDevice {
        MemDevice::new(usize::try_from(size).unwrap())
    }

    fn patterned(size: u64) -> MemDevice {
        let d = mem(size);
        // Data, a hole, data at the very end.
        d.write_at(&vec![0xa5; 3 << 20], 1 << 20).unwrap();
        d.write_at(&[7u8; 4096], size - 4096).unwrap();
        d
    }

    fn read_all(d: &dyn BlockDevice) -> Vec<u8> {
        let mut v = vec![0; usize::try_from(d.size()).unwrap()];
        d.read_at(&mut v, 0).unwrap();
        v
    }

    #[test]
    fn copies_every_byte_and_clears_what_the_target_held() {
        let size = 70 << 20;
        let (src, dst) = (patterned(size), mem(size));
        dst.write_at(&vec![0xff; 1 << 20], 40 << 20).unwrap();
        let mut marks = Vec::new();
        let end = copy_device(
            &src,
            &dst,
            None,
            CopyOptions::default(),
            &AtomicBool::new(false),
            |c| {
                marks.push(c.position);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(end.position, size);
        assert_eq!(read_all(&src), read_all(&dst));
        assert!(marks.windows(2).all(|w| w[0] <= w[1]), "{marks:?}");
    }

    #[test]
    fn resumes_from_a_checkpoint_and_honours_cancel() {
        let size = 64 << 20;
        let (src, dst) = (patterned(size), mem(size));
        let cancel = AtomicBool::new(true);
        let r = copy_device(
            &src,
            &dst,
            None,
            CopyOptions::default(),
            &cancel,
            |_| Ok(()),
        );
        assert!(matches!(r, Err(CopyError::Cancelled)));
        // Resume past the first data: only what lies beyond is copied, and
        // the extents given are all that is read.
        let opts = CopyOptions {
            resume_from: 2 << 20,
            bandwidth: None,
        };
        let extents = vec![Extent {
            offset: 0,
            length: size,
        }];
        copy_device(
            &src,
            &dst,
            Some(extents),
            opts,
            &AtomicBool::new(false),
            |_| Ok(()),
        )
        .unwrap();
        let (s, d) = (read_all(&src), read_all(&dst));
        assert_eq!(s[2 << 20..], d[2 << 20..]);
        assert!(d[..2 << 20].iter().all(|b| *b == 0));
    }

    #[test]
    fn a_failing_target_fails_the_copy() {
        let size = 8 << 20;
        let src = patterned(size);
        let dst = mem(size - 512);
        let r = copy_device(
            &src,
            &dst,
            None,
            CopyOptions::default(),
            &AtomicBool::new(false),
            |_| Ok(()),
        );
        assert!(matches!(r, Err(CopyError::SizeMismatch { .. })));
    }
}
