//! The fabric between arrays: which array a call works for, its pools, the
//! arrays zoned with it, and peer arrays of the same driver.

use crate::{DriverError, Lun, LunAddress};

pub use crate::PeerArray;
pub use crate::bindings::ferry::driver::fabric::{local_array, local_pools, zoned_arrays};

/// True when `array` is zoned with the array this call works for, that is
/// when it can take over this array's LUNs and the other way round.
pub fn is_zoned_with(array: &str) -> bool {
    zoned_arrays().iter().any(|a| a == array)
}

/// True when the array this call works for has a pool named `pool`.
pub fn has_pool(pool: &str) -> bool {
    local_pools().iter().any(|p| p == pool)
}

/// Opens the LUN at `address` on `peer`, creating it with `size_bytes` when
/// it does not exist; the peer-array form of
/// [`block::ensure_lun`](crate::block::ensure_lun).
pub fn ensure_peer_lun(
    peer: &PeerArray,
    address: &LunAddress,
    size_bytes: u64,
) -> Result<Lun, DriverError> {
    crate::block::ensure_with(
        address,
        size_bytes,
        |a| peer.open_lun(a),
        |a, size| peer.create_lun(a, size),
    )
}
