//! Native block I/O on the LUNs of the driver's own array.
//!
//! A driver names LUNs by [`LunAddress`] (pool and name) and reaches only its
//! own array through these functions; remote LUNs arrive as [`Lun`] handles
//! the host passes to the migration calls. Bytes moved with
//! [`Lun::copy_range_from`] never cross into WebAssembly, so prefer it to
//! [`Lun::read`] plus [`Lun::write`] for anything but small metadata.

use crate::{DriverError, LunAddress};

pub use crate::Lun;
pub use crate::bindings::ferry::driver::block::{create_lun, delete_lun, list_luns, open_lun};

/// The largest buffer one [`Lun::read`] or [`Lun::write`] moves.
pub const MAX_IO_BYTES: u32 = 4 << 20;

/// Opens the LUN at `address`, creating it with `size_bytes` when it does not
/// exist: the idempotent form of [`create_lun`] that a retried
/// `create-volume` needs.
///
/// An existing LUN of another size is an [`DriverError::InvalidArgument`]:
/// it belongs to something else, or to an earlier request that disagreed.
pub fn ensure_lun(address: &LunAddress, size_bytes: u64) -> Result<Lun, DriverError> {
    ensure_with(address, size_bytes, open_lun, create_lun)
}

/// The shared body of [`ensure_lun`] and
/// [`fabric::ensure_peer_lun`](crate::fabric::ensure_peer_lun).
pub(crate) fn ensure_with(
    address: &LunAddress,
    size_bytes: u64,
    open: impl FnOnce(&LunAddress) -> Result<Lun, DriverError>,
    create: impl FnOnce(&LunAddress, u64) -> Result<Lun, DriverError>,
) -> Result<Lun, DriverError> {
    match open(address) {
        Ok(lun) => {
            let size = lun.size();
            if size == size_bytes {
                Ok(lun)
            } else {
                Err(DriverError::InvalidArgument(format!(
                    "LUN {}/{} exists with {size} bytes, not {size_bytes}",
                    address.pool, address.name
                )))
            }
        }
        Err(DriverError::NotFound(_)) => create(address, size_bytes),
        Err(other) => Err(other),
    }
}

/// Deletes the LUN at `address`, treating a missing LUN or pool as already
/// deleted.
pub fn delete_lun_if_present(address: &LunAddress) -> Result<(), DriverError> {
    match delete_lun(address) {
        Ok(()) | Err(DriverError::NotFound(_)) => Ok(()),
        Err(other) => Err(other),
    }
}
