//! LUNs that already live on an array become volumes without a copy
//! (Cinder's manage existing), and volumes go back to being plain LUNs
//! (unmanage): how an operator starts moving volumes off an array Ferry did
//! not create them on.

use uuid::Uuid;

use super::volumes::{
    DELETED, choose_pool, from_update, invalid_state, status_name, validate_display_name,
    volume_ref,
};
use super::{ManageVolume, Service, ServiceError, VolumeView};
use crate::model::{Volume, VolumeStatus};

/// Longest reference accepted, in bytes.
const MAX_REFERENCE: usize = 1024;

/// One manage at a time: the check that no other volume has the LUN and
/// the record that claims it must not interleave.
static MANAGING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Service {
    /// Makes the LUN `req.reference` names on `req.array` a volume. The
    /// driver reads its size and names its model update; nothing is written
    /// to the array, so a crash before the record leaves it as it was.
    pub async fn manage_volume(&self, req: ManageVolume) -> Result<VolumeView, ServiceError> {
        validate_display_name("volume name", "name", &req.name)?;
        if req.reference.is_empty()
            || req.reference.len() > MAX_REFERENCE
            || req.reference.chars().any(char::is_control)
        {
            return Err(ServiceError::InvalidArgument(format!(
                "reference: 1 to {MAX_REFERENCE} bytes without control characters"
            )));
        }
        let array = self.array(&req.array)?.clone();
        let pool = choose_pool(&array, req.pool)?;
        let scope = self.scope(&array)?;
        let mut volume = Volume::creating(req.name, 0, array.name().to_owned(), pool);
        let _one = MANAGING.lock().await;
        let (vref, reference) = (volume_ref(&volume), req.reference.clone());
        let managed = self
            .call(array.driver(), move |rt| {
                rt.manage_existing(&scope, &vref, &reference)
            })
            .await?;
        if let Some(location) = &managed.model_update
            && let Some(other) =
                self.inner.store.list_volumes()?.into_iter().find(|v| {
                    v.array == volume.array && v.provider_location.as_ref() == Some(location)
                })
        {
            return Err(ServiceError::AlreadyManaged {
                reference: req.reference,
                volume: other.id,
            });
        }
        volume.size_bytes = managed.size_bytes;
        volume.provider_location = managed.model_update;
        volume.status = VolumeStatus::Available;
        self.inner.store.insert_volume(&volume)?;
        tracing::info!(volume = %volume.id, array = %volume.array, reference = %req.reference, size = volume.size_bytes, "LUN managed");
        self.emit_life_cycle(
            &volume,
            None,
            status_name(VolumeStatus::Available),
            format!(
                "managed: the LUN {:?} on {} is this volume now, {} bytes, not copied",
                req.reference, volume.array, volume.size_bytes
            ),
        );
        Ok(self.view(&volume))
    }

    /// Forgets an available, detached volume; its LUN stays on the array
    /// with its data. If the driver fails, the volume stays as it was.
    pub async fn unmanage_volume(&self, id: Uuid) -> Result<(), ServiceError> {
        fn unmanageable(v: &Volume) -> Result<(), ServiceError> {
            if v.attachments.is_empty() && v.status == VolumeStatus::Available {
                Ok(())
            } else {
                Err(invalid_state(
                    v,
                    "only an available, detached volume can be unmanaged",
                ))
            }
        }
        let volume = self.volume(id)?;
        unmanageable(&volume)?;
        let array = self.array(&volume.array)?.clone();
        let scope = self.scope(&array)?;
        let vref = volume_ref(&volume);
        self.call(array.driver(), move |rt| rt.unmanage(&scope, &vref))
            .await?;
        // Gone only as it was checked: an attach or a migration that came
        // during the driver's call keeps it (and a crash before this line
        // leaves it as it was, to unmanage again).
        let volume = self
            .inner
            .store
            .remove_volume_if(id, unmanageable)
            .map_err(|e| from_update(id, e))?;
        tracing::info!(volume = %id, array = %volume.array, "volume unmanaged");
        self.emit_life_cycle(
            &volume,
            Some(status_name(VolumeStatus::Available)),
            DELETED.into(),
            format!(
                "unmanaged: the host forgot the volume; its LUN stays on {} ({})",
                volume.array,
                volume.provider_location.as_deref().unwrap_or("no location")
            ),
        );
        Ok(())
    }
}
