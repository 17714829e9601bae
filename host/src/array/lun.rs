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

    /// Writes `buf` at `offset` and returns once it is durable, along with
    /// what reading it back after a crash takes (an allocation, a converted
    /// extent). Unlike a write and a sync of the file, it writes back
    /// nothing else: other writes to the LUN stay in the page cache.
    pub fn write_durable_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_range(offset, buf.len() as u64)?;
        let mut done = 0usize;
        while done < buf.len() {
            let rest = &buf[done..];
            let Ok(pos) = i64::try_from(offset + done as u64) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "offset too large",
                ));
            };
            let iov = libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            };
            // SAFETY: the iovec points into `rest`, which outlives the call;
            // pwritev2 only reads from it. The fd is open for the lifetime
            // of `self.file`.
            let n = unsafe { libc::pwritev2(self.file.as_raw_fd(), &iov, 1, pos, libc::RWF_DSYNC) };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // A kernel or file system without per-write sync: the
                    // same promise from a write and a sync of the file.
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) if done == 0 => {
                        self.file.write_all_at(buf, offset)?;
                        return self.file.sync_data();
                    }
                    _ => return Err(err),
                }
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "durable write wrote nothing",
                ));
            }
            done += n as usize;
        }
        Ok(())
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
    fn durable_writes_land_whole_in_preallocated_space_and_check_their_range() {
        let (_d, l) = lun(4 << 20);
        l.preallocate(0, 4 << 20).unwrap();
        let data: Vec<u8> = (0..(1 << 20) + 512).map(|i| (i % 251) as u8).collect();
        l.write_durable_at(&data, 4096).unwrap();
        let mut back = vec![0u8; data.len()];
        l.read_at(&mut back, 4096).unwrap();
        assert!(back == data);
        let err = l
            .write_durable_at(&[1u8; 1024], (4 << 20) - 512)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
