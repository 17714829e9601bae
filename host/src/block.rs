//! The block device seam between the data path (NBD, copy, hydration) and
//! whatever holds the bytes (a LUN file today, a hydrating clone later).

use std::io;

/// A byte-addressed block device. Implementations are shared between
/// threads: every method takes `&self` and positions are explicit.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`. Holes read as zeroes.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable.
    fn flush(&self) -> io::Result<()>;
    /// Makes `[offset, offset + len)` read as zeroes.
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()>;
    /// Releases `[offset, offset + len)`: it reads as zeroes afterwards.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()>;
    /// A hint from a copy: `[offset, offset + len)` was just written and a
    /// flush will follow, so writing it back may start now. Only a hint;
    /// durability still comes from `flush`.
    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
}
