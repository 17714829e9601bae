//! A LUN: one sparse file in a pool directory, with native block I/O.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::block::BlockDevice;
use crate::model::LunAddress;

/// An allocated byte range of a LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// An open LUN file. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Lun {
    file: File,
    size: u64,
    array: String,
    address: LunAddress,
}

impl Lun {
    pub(crate) fn new(file: File, size: u64, array: String, address: LunAddress) -> Self {
        Self {
            file,
            size,
            array,
            address,
        }
    }

    /// Array that owns this LUN.
    pub fn array(&self) -> &str {
        &self.array
    }

    /// Pool and name of this LUN on its array.
    pub fn address(&self) -> &LunAddress {
        &self.address
    }

    /// The underlying file, for native copies.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes the file occupies on disk.
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.blocks() * 512)
    }

    /// Checks that `[offset, offset + len)` lies inside the LUN.
    pub fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {offset}+{len} is outside LUN {}/{} of {} bytes",
                    self.address.pool, self.address.name, self.size
                ),
            )),
        }
    }

    /// Allocated ranges within `[offset, offset + len)`, found with
    /// SEEK_DATA/SEEK_HOLE so holes are skipped without reading them.
    pub fn allocated_extents(&self, offset: u64, len: u64) -> io::Result<Vec<Extent>> {
        self.check_range(offset, len)?;
        let end = offset + len;
        let fd = self.file.as_raw_fd();
        let mut out = Vec::new();
        let mut pos = offset;
        while pos < end {
            let data = match seek(fd, pos, libc::SEEK_DATA)? {
                Some(d) if d < end => d,
                _ => break,
            };
            let hole = seek(fd, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
            out.push(Extent {
                offset: data,
                length: hole - data,
            });
            pos = hole;
        }
        Ok(out)
    }

    /// Makes `[offset, offset + len)` durable: its pages, what reading them
    /// back after a crash takes (allocations, converted extents) and the
    /// disk's cache, as `fdatasync` does for the whole file, but writing
    /// back no page outside the range. Under load, a sync of the whole
    /// file writes back every write the LUN's user has not flushed at once
    /// and stalls the writes that follow; this one leaves them alone.
    /// (`msync` of a shared mapping is the system call that reaches the
    /// kernel's ranged sync; the mapping itself is never touched.)
    pub fn sync_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: sysconf reads no memory of ours.
        let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|p| p.is_power_of_two())
            .unwrap_or(4096);
        let start = offset & !(page - 1);
        let (Ok(map_len), Ok(map_off)) = (
            usize::try_from(offset + len - start),
            libc::off_t::try_from(start),
        ) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range too large",
            ));
        };
        // SAFETY: a fresh read-only shared mapping of our own open file, at
        // a page-aligned offset inside it; nothing reads through it, and it
        // is unmapped before returning.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                self.file.as_raw_fd(),
                map_off,
            )
        };
        if ptr == libc::MAP_FAILED {
            // A file that cannot be mapped still syncs, whole.
            return self.file.sync_data();
        }
        // SAFETY: `ptr` is the mapping of `map_len` bytes made above.
        let synced = unsafe { libc::msync(ptr, map_len, libc::MS_SYNC) };
        let err = (synced < 0).then(io::Error::last_os_error);
        // SAFETY: the same mapping, unmapped once.
        unsafe { libc::munmap(ptr, map_len) };
        err.map_or(Ok(()), Err)
    }

    /// Allocates `[offset, offset + len)` without changing what it reads.
    pub fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(libc::FALLOC_FL_KEEP_SIZE, offset, len)
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range too large",
            ));
        };
        // SAFETY: fallocate only reads its scalar arguments; the fd is open for
        // the lifetime of `self.file`.
        let rc = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, off, l) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// lseek with SEEK_DATA/SEEK_HOLE; `None` when there is no more data (ENXIO).
fn seek(fd: i32, pos: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let Ok(p) = i64::try_from(pos) else {
        return Ok(None);
    };
    // SAFETY: lseek only reads its scalar arguments.
    let r = unsafe { libc::lseek(fd, p, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENXIO) {
        Ok(None)
    } else {
        Err(err)
    }
}

impl BlockDevice for Lun {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        // Punching a hole both zeroes and frees the range; the size is kept.
        self.discard(offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Without this the dirty pages of a whole checkpoint interval wait in
    /// the page cache until the checkpoint's fdatasync, and a copy stalls
    /// there while the disk works alone; started early, writeback overlaps
    /// the reads of the next chunks and the checkpoint finds little left to
    /// sync. A failure is ignored: it is only a hint.
    fn start_writeback(&self, offset: u64, len: u64) {
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range(2) on a file descriptor this LUN keeps
        // open for the duration of the call; it reads no memory of ours.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lun(size: u64) -> (tempfile::TempDir, Lun) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.set_len(size).unwrap();
        let addr = LunAddress {
            pool: "p".into(),
            name: "l".into(),
        };
        (dir, Lun::new(f, size, "a".into(), addr))
    }

    #[test]
    fn extents_skip_holes_and_discard_frees() {
        let (_d, l) = lun(16 << 20);
        assert!(l.allocated_extents(0, 16 << 20).unwrap().is_empty());
        l.write_at(&[7u8; 65536], 4 << 20).unwrap();
        let ext = l.allocated_extents(0, 16 << 20).unwrap();
        assert_eq!(ext.len(), 1);
        assert!(ext[0].offset <= 4 << 20 && ext[0].offset + ext[0].length >= (4 << 20) + 65536);
        l.discard(4 << 20, 65536).unwrap();
        let mut buf = [1u8; 512];
        l.read_at(&mut buf, 4 << 20).unwrap();
        assert!(buf.iter().all(|b| *b == 0));
        assert!(l.allocated_extents(0, 16 << 20).unwrap().is_empty());
    }

    #[test]
    fn out_of_range_io_is_refused() {
        let (_d, l) = lun(1 << 20);
        let err = l.write_at(&[1u8; 512], (1 << 20) - 256).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(l.read_at(&mut [0u8; 1], u64::MAX).is_err());
        assert!(l.discard(u64::MAX - 1, 10).is_err());
    }

    #[test]
    fn a_ranged_sync_takes_unaligned_ranges_and_checks_them() {
        let (_d, l) = lun(4 << 20);
        l.preallocate(0, 4 << 20).unwrap();
        let data: Vec<u8> = (0..(1 << 20) + 512).map(|i| (i % 251) as u8).collect();
        l.write_at(&data, 4096 + 512).unwrap();
        l.sync_range(4096 + 512, data.len() as u64).unwrap();
        l.sync_range(0, 0).unwrap();
        let mut back = vec![0u8; data.len()];
        l.read_at(&mut back, 4096 + 512).unwrap();
        assert!(back == data);
        let err = l.sync_range((4 << 20) - 512, 1024).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(l.sync_range(u64::MAX - 1, 2).is_err());
    }
}
