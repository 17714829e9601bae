//! Driver-scoped key-value state, persisted by the host.
//!
//! The host instantiates the driver afresh for every call, so anything that
//! must outlive a call (a migration's checkpoint, a take-over record) lives
//! here. Writes made during a call are committed when it returns, `Ok` or
//! `Err`, and dropped when it traps or times out.

use crate::DriverError;

/// The longest key the host accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The largest value the host accepts, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// The value under `key`, if any.
pub fn get(key: &str) -> Option<Vec<u8>> {
    crate::bindings::ferry::driver::state::get(key)
}

/// Sets `key` to `value`. Fails when the key or the value is too large or
/// the host cannot store it.
pub fn set(key: &str, value: &[u8]) -> Result<(), DriverError> {
    crate::bindings::ferry::driver::state::set(key, value)
        .map_err(|m| DriverError::BackendError(format!("state key {key:?}: {m}")))
}

/// Removes `key`; removing a missing key succeeds.
pub fn remove(key: &str) {
    crate::bindings::ferry::driver::state::remove(key)
}

/// Keys that start with `prefix`, in order.
pub fn keys(prefix: &str) -> Vec<String> {
    crate::bindings::ferry::driver::state::keys(prefix)
}

/// The value under `key` as UTF-8 text. A value that is not UTF-8 is an
/// [`DriverError::BackendError`]: the driver did not write it as text.
pub fn get_string(key: &str) -> Result<Option<String>, DriverError> {
    get(key)
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                DriverError::BackendError(format!("state key {key:?} does not hold UTF-8 text"))
            })
        })
        .transpose()
}

/// Sets `key` to the text `value`.
pub fn set_string(key: &str, value: &str) -> Result<(), DriverError> {
    set(key, value.as_bytes())
}

/// The value under `key` as a number written by [`set_u64`].
pub fn get_u64(key: &str) -> Result<Option<u64>, DriverError> {
    get(key).map(|bytes| decode_u64(key, &bytes)).transpose()
}

/// Sets `key` to the number `value` (eight bytes, little-endian).
pub fn set_u64(key: &str, value: u64) -> Result<(), DriverError> {
    set(key, &value.to_le_bytes())
}

fn decode_u64(key: &str, bytes: &[u8]) -> Result<u64, DriverError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        DriverError::BackendError(format!(
            "state key {key:?} holds {} bytes, not a number",
            bytes.len()
        ))
    })?;
    Ok(u64::from_le_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_only_eight_bytes() {
        assert_eq!(decode_u64("k", &42u64.to_le_bytes()).unwrap(), 42);
        assert!(decode_u64("k", b"short").is_err());
    }
}
