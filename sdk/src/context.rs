//! What the host offers every call: its log, progress reporting and a clock.
//!
//! Log lines land in the host's log tagged with the driver and the array.
//! The [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](crate::error) macros format like
//! `format!`.

use crate::LogLevel;

/// Writes `message` to the host's log at `level`.
pub fn log(level: LogLevel, message: &str) {
    crate::bindings::ferry::driver::context::log(level, message)
}

/// Logs detail for debugging the driver.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message)
}

/// Logs normal operation.
pub fn info(message: &str) {
    log(LogLevel::Info, message)
}

/// Logs something unexpected that the driver handled.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message)
}

/// Logs a failure.
pub fn error(message: &str) {
    log(LogLevel::Error, message)
}

/// Reports progress of the running operation, in bytes.
pub fn report_progress(done_bytes: u64, total_bytes: u64) {
    crate::bindings::ferry::driver::context::report_progress(done_bytes, total_bytes)
}

/// Milliseconds since the Unix epoch, by the host's clock.
pub fn now_ms() -> u64 {
    crate::bindings::ferry::driver::context::now_ms()
}

/// Logs a formatted line at debug level: `ferry_sdk::debug!("lun {name}")`.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::context::debug(&::std::format!($($arg)+))
    };
}

/// Logs a formatted line at info level: `ferry_sdk::info!("created {name}")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::context::info(&::std::format!($($arg)+))
    };
}

/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::context::warn(&::std::format!($($arg)+))
    };
}

/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::context::error(&::std::format!($($arg)+))
    };
}
