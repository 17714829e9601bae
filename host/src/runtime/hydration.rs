//! The host side of the `hydration` import. A driver may hydrate only a LUN
//! of its own array, only from the remote LUN the host handed the call, and
//! may name only hydrations of its own array: the ids it passes are checked
//! against the call's array before the host's hydrations see them.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Resource;

use super::bindings::ferry::driver::hydration::{self, HydrationProgress};
use super::bindings::ferry::driver::types::DriverError;
use super::call::{CallState, MAX_MESSAGE_BYTES, truncate};
use super::host_impl::{DResult, LunHandle};
use crate::array::Lun;
use crate::block::BlockDevice;
use crate::hydrate::{HydrationError, Hydrations};

/// Longest id quoted back in an error message, in bytes.
const MAX_QUOTED_ID_BYTES: usize = 256;

/// The answer of every hydration call on a host that runs no hydrations.
pub(super) const NO_SERVICE: &str = "this host runs no hydration service";

fn hydration_error(e: HydrationError) -> DriverError {
    let m = truncate(&e.to_string(), MAX_MESSAGE_BYTES);
    match e {
        HydrationError::NotFound(_) => DriverError::NotFound(m),
        HydrationError::Incomplete { .. } | HydrationError::Conflict(_) => {
            DriverError::InvalidArgument(m)
        }
        // Held for a copy-back: a poll that tries to finish retries later.
        HydrationError::Io(_) | HydrationError::Failed { .. } | HydrationError::CopyingBack(_) => {
            DriverError::BackendError(m)
        }
    }
}

impl CallState {
    /// The host's hydrations, for a call bound to an array.
    fn hydrations(&self) -> Result<Arc<Hydrations>, DriverError> {
        let Some(scope) = &self.scope else {
            return Err(DriverError::Unsupported(
                "no array is bound while the driver is being loaded".into(),
            ));
        };
        scope
            .hydrations
            .clone()
            .ok_or_else(|| DriverError::Unsupported(NO_SERVICE.into()))
    }

    /// The host's hydrations, once `id` is known to belong to the call's
    /// array. Ids are `array/pool/name` of the local LUN.
    fn hydrations_for(&self, id: &str) -> Result<Arc<Hydrations>, DriverError> {
        let hydrations = self.hydrations()?;
        let own = self.array_name();
        match id.split_once('/') {
            Some((array, rest)) if array == own && !rest.is_empty() => Ok(hydrations),
            _ => Err(DriverError::InvalidArgument(format!(
                "hydration {:?} does not belong to array {own}",
                truncate(id, MAX_QUOTED_ID_BYTES)
            ))),
        }
    }

    /// Checks the LUNs of a `start` and returns them.
    fn hydration_pair(
        &self,
        local: &Resource<LunHandle>,
        remote: &Resource<LunHandle>,
    ) -> DResult<(Arc<Lun>, Arc<Lun>)> {
        let own = self.array_name();
        let (l, r) = (self.table.get(local)?, self.table.get(remote)?);
        if l.is_remote() || l.lun().array() != own {
            let a = l.lun().address();
            return Ok(Err(DriverError::InvalidArgument(format!(
                "local must be a LUN of array {own}, not {}/{}/{}",
                l.lun().array(),
                a.pool,
                a.name
            ))));
        }
        if !r.is_remote() {
            return Ok(Err(DriverError::InvalidArgument(
                "remote must be the remote LUN the host handed this call".into(),
            )));
        }
        if l.lun().size() != r.lun().size() {
            return Ok(Err(DriverError::InvalidArgument(format!(
                "local LUN holds {} bytes but the remote holds {}",
                l.lun().size(),
                r.lun().size()
            ))));
        }
        Ok(Ok((l.lun().clone(), r.lun().clone())))
    }
}

impl hydration::Host for CallState {
    fn start(
        &mut self,
        local: Resource<LunHandle>,
        remote: Resource<LunHandle>,
    ) -> DResult<String> {
        let hydrations = match self.hydrations() {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let (local, remote) = match self.hydration_pair(&local, &remote)? {
            Ok(pair) => pair,
            Err(e) => return Ok(Err(e)),
        };
        // Starting reads the remote's allocation map and persists the
        // hydration: host I/O, which does not count against the deadline.
        let started = Instant::now();
        let result = hydrations.start(local, remote).map_err(hydration_error);
        self.credit(started.elapsed());
        if let Ok(id) = &result {
            tracing::info!(driver = %self.driver, array = %self.array_name(), hydration = %id, "driver started a hydration");
        }
        Ok(result)
    }

    fn progress(&mut self, id: String) -> DResult<HydrationProgress> {
        Ok(self.hydrations_for(&id).and_then(|h| {
            h.status(&id)
                .map(|s| HydrationProgress {
                    done_bytes: s.done_bytes,
                    total_bytes: s.total_bytes,
                    complete: s.complete,
                })
                .map_err(hydration_error)
        }))
    }

    fn finish(&mut self, id: String) -> DResult<()> {
        let hydrations = match self.hydrations_for(&id) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        // Finishing stops the worker and commits the bitmap.
        let started = Instant::now();
        let result = hydrations.finish(&id).map_err(hydration_error);
        self.credit(started.elapsed());
        Ok(result)
    }

    fn abandon(&mut self, id: String) -> DResult<()> {
        let hydrations = match self.hydrations_for(&id) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        let started = Instant::now();
        let result = hydrations.abandon(&id).map_err(hydration_error);
        self.credit(started.elapsed());
        if result.is_ok() {
            tracing::info!(driver = %self.driver, array = %self.array_name(), hydration = %id, "driver abandoned a hydration");
        }
        Ok(result)
    }
}
