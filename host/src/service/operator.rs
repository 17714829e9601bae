//! Operator-facing rules of a volume: the `lock_volume` option of a
//! migration, which attach and detach obey.

use super::ServiceError;
use crate::model::{MigrationPhase, Volume};

/// A locking migration runs on the volume: attach, detach and abort by
/// other requests are refused with this error until it ends.
pub(super) fn locked_by_migration(v: &Volume) -> Option<ServiceError> {
    let m = v
        .migration
        .as_ref()
        .filter(|m| m.phase != MigrationPhase::Finished && m.lock_volume)?;
    Some(ServiceError::VolumeLocked {
        id: v.id,
        migration: m.id,
    })
}
