//! Native hydration, for asynchronous target migrations.
//!
//! A hydration makes a LUN of the driver's array usable at once while the
//! host fills it from the remote LUN in the background: reads of regions not
//! yet local go to the remote, writes go local. The host persists the
//! progress, so a hydration survives a host restart and resumes where it
//! stopped.
//!
//! The usual life of one, across calls (each in a fresh instance):
//!
//! 1. `migrate-volume-target`: create the local LUN, [`start`] hydrating it
//!    from the remote LUN the host handed the call, keep the returned id in
//!    [`state`](crate::state) and answer
//!    [`TargetOutcome::moving_async`](crate::TargetOutcome::moving_async);
//! 2. `complete-migration-target`: [`progress`] the id; while incomplete
//!    answer [`Completion::running`](crate::Completion::running), once
//!    complete [`finish`] it, forget the id and answer
//!    [`Completion::done`](crate::Completion::done);
//! 3. `delete-volume` of a volume still hydrating: [`abandon`] it before
//!    deleting the local LUN.
//!
//! On a host that runs no hydrations every function answers
//! [`DriverError::Unsupported`]: a driver may fall back to a synchronous
//! copy then.

use crate::bindings::ferry::driver::hydration as wit;
use crate::{DriverError, Lun};

pub use crate::bindings::ferry::driver::hydration::HydrationProgress;

/// Starts hydrating `local`, a LUN of the caller's array, from `remote`, the
/// remote LUN the host handed this call; both must have the same size.
///
/// Returns the hydration's id, stable across host restarts; keep it in
/// state. Starting the same pair again returns the same id, so a retried
/// call may simply start again. A `local` of another array, a `remote` the
/// host did not hand this call, or a size mismatch is an
/// [`DriverError::InvalidArgument`]; so is a `local` already hydrating from
/// another source.
pub fn start(local: &Lun, remote: &Lun) -> Result<String, DriverError> {
    wit::start(local, remote)
}

/// Progress of the hydration `id`.
///
/// An error means the background copy failed (for example the remote became
/// unreachable); the host restarts it, so poll again later. An id the host
/// does not know is a [`DriverError::NotFound`].
pub fn progress(id: &str) -> Result<HydrationProgress, DriverError> {
    wit::progress(id)
}

/// Ends the complete hydration `id`: the local LUN stands alone and the
/// remote is no longer read. Fails with [`DriverError::InvalidArgument`]
/// while it is incomplete.
pub fn finish(id: &str) -> Result<(), DriverError> {
    wit::finish(id)
}

/// Stops and forgets the hydration `id` whatever its progress, before its
/// local LUN is deleted. Forgetting a missing hydration succeeds.
pub fn abandon(id: &str) -> Result<(), DriverError> {
    wit::abandon(id)
}
