//! What the driver keeps in state about a volume hydrating onto this array:
//! the host's hydration id, under `hydration/<volume id>`, from the
//! `migrate-volume-target` that started it until the poll that finished it.

use ferry_sdk::{DriverError, state};

/// State key prefix of hydration ids.
const PREFIX: &str = "hydration/";

/// The id of the hydration of `volume_id`, if one was started.
pub fn load(volume_id: &str) -> Result<Option<String>, DriverError> {
    state::get_string(&key(volume_id))
}

/// Records that hydration `id` runs for `volume_id`.
pub fn store(volume_id: &str, id: &str) -> Result<(), DriverError> {
    state::set_string(&key(volume_id), id)
}

/// Forgets the hydration of `volume_id`; forgetting none succeeds.
pub fn forget(volume_id: &str) {
    state::remove(&key(volume_id))
}

fn key(volume_id: &str) -> String {
    format!("{PREFIX}{volume_id}")
}
