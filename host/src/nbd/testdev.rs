//! An in-memory block device for the NBD unit tests, with a flush counter
//! and a switch that makes every I/O fail.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::block::BlockDevice;

pub(crate) struct MemDevice {
    bytes: Mutex<Vec<u8>>,
    flushes: AtomicUsize,
    failing: AtomicBool,
}

impl MemDevice {
    pub(crate) fn new(size: usize) -> Self {
        Self {
            bytes: Mutex::new(vec![0; size]),
            flushes: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        }
    }

    pub(crate) fn flushes(&self) -> usize {
        self.flushes.load(Ordering::SeqCst)
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub(crate) fn snapshot(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    fn check(&self, offset: u64, len: u64) -> io::Result<std::ops::Range<usize>> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok(offset as usize..end as usize),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "out of range")),
        }
    }
}

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.bytes.lock().unwrap().len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let r = self.check(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.bytes.lock().unwrap()[r]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let r = self.check(offset, buf.len() as u64)?;
        self.bytes.lock().unwrap()[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let r = self.check(offset, len)?;
        self.bytes.lock().unwrap()[r].fill(0);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }
}
