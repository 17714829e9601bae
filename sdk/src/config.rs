//! The array's settings and secrets, from the host's configuration (the
//! array's `settings` and `secrets` tables).
//!
//! A call reads those of the array it works for. Secrets stay secret on the
//! host side: their text is replaced by `[redacted]` in the driver's log
//! lines and error messages, and a model update that contains one is
//! refused, so never put one in `provider-location`.

use crate::DriverError;
use crate::bindings::ferry::driver::config as host;

/// The setting `name`, if the configuration sets it.
pub fn setting(name: &str) -> Option<String> {
    host::setting(name)
}

/// The setting `name`, or an `invalid-argument` error that names it.
pub fn required_setting(name: &str) -> Result<String, DriverError> {
    setting(name).ok_or_else(|| {
        DriverError::InvalidArgument(format!("the array's configuration has no setting {name:?}"))
    })
}

/// The secret `name` (a password or a token), if the configuration names
/// one.
pub fn secret(name: &str) -> Option<String> {
    host::secret(name)
}

/// The secret `name`, or an `invalid-argument` error that names it (never
/// its text).
pub fn required_secret(name: &str) -> Result<String, DriverError> {
    secret(name).ok_or_else(|| {
        DriverError::InvalidArgument(format!("the array's configuration has no secret {name:?}"))
    })
}
