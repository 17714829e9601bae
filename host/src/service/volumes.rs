//! Volume life cycle: create, show, delete, attach, detach, and recovery of
//! calls a crash interrupted. Every change a client could observe is an
//! event (`volume` kind; attach and detach name the attachment and server).

use std::sync::Arc;

use uuid::Uuid;

use super::events::NewEvent;
use super::operator::locked_by_migration;
use super::{
    AttachVolume, AttachmentView, CreateVolume, Service, ServiceError, UpdateVolume, VolumeView,
};
use crate::model::{
    AttachMode, Attachment, DataPath, MigrationPhase, MigrationStatus, Volume, VolumeStatus,
    now_rfc3339,
};
use crate::nbd::Export;
use crate::runtime::{Connector, VolumeRef};
use crate::store::UpdateError;

/// The pool a request names on `array`, or the array's first pool.
pub(super) fn choose_pool(
    array: &crate::array::Array,
    pool: Option<String>,
) -> Result<String, ServiceError> {
    match pool {
        Some(p) if array.pools().contains(&p) => Ok(p),
        Some(p) => Err(ServiceError::PoolNotFound {
            array: array.name().to_owned(),
            pool: p,
        }),
        None => {
            array.pools().first().cloned().ok_or_else(|| {
                ServiceError::Internal(format!("array {} has no pool", array.name()))
            })
        }
    }
}

/// Longest volume or server name accepted.
const MAX_NAME: usize = 255;

/// Checks a name a client sets and people read later (in the CLI's tables,
/// events and logs): `what` is how messages call it, `field` its JSON
/// field. Characters that could disguise it when printed (controls, bidi
/// overrides, zero-width marks, separators, private use) are refused, each
/// named by its code point, so a name cannot pass for another.
pub(super) fn validate_display_name(
    what: &str,
    field: &str,
    name: &str,
) -> Result<(), ServiceError> {
    let invalid = |reason: String| {
        Err(ServiceError::InvalidName(format!(
            "{what} (field \"{field}\") {reason}"
        )))
    };
    if name.trim().is_empty() {
        return invalid("must not be empty".into());
    }
    if name.len() > MAX_NAME {
        return invalid(format!("must be at most {MAX_NAME} bytes"));
    }
    if let Some((at, c, kind)) = crate::display_text::first_hidden(name) {
        return invalid(format!(
            "contains {} ({kind}) at character {at}: control, format (bidirectional, \
             zero-width), separator and private-use characters could disguise it when printed",
            crate::display_text::code_point(c)
        ));
    }
    Ok(())
}

/// Longest description kept with a volume, in bytes (Cinder's limit).
const MAX_DESCRIPTION: usize = 255;

/// Checks a volume's description: free text, so it may be empty and hold
/// line breaks, but no other character that could disguise it when
/// printed.
fn validate_description(text: &str) -> Result<(), ServiceError> {
    if text.len() > MAX_DESCRIPTION {
        return Err(ServiceError::InvalidName(format!(
            "volume description (field \"description\") must be at most {MAX_DESCRIPTION} bytes"
        )));
    }
    let without_breaks: String = text.chars().filter(|c| *c != '\n').collect();
    if let Some((at, c, kind)) = crate::display_text::first_hidden(&without_breaks) {
        return Err(ServiceError::InvalidName(format!(
            "volume description (field \"description\") contains {} ({kind}) near character \
             {at}: only line breaks may stand beside visible text",
            crate::display_text::code_point(c)
        )));
    }
    Ok(())
}

pub(super) fn volume_ref(v: &Volume) -> VolumeRef {
    VolumeRef {
        id: v.id,
        name: v.name.clone(),
        size_bytes: v.size_bytes,
        pool: v.pool.clone(),
        provider_location: v.provider_location.clone(),
    }
}

pub(super) fn status_name(s: VolumeStatus) -> String {
    super::views::wire_name(s)
}

pub(super) fn invalid_state(v: &Volume, reason: &str) -> ServiceError {
    ServiceError::InvalidState {
        id: v.id,
        status: status_name(v.status),
        reason: reason.to_owned(),
    }
}

pub(super) fn from_update(id: Uuid, e: UpdateError<ServiceError>) -> ServiceError {
    match e {
        UpdateError::NotFound => ServiceError::VolumeNotFound(id),
        UpdateError::Refused(e) => e,
        UpdateError::Store(e) => ServiceError::Store(e),
    }
}

/// The migration a volume event belongs to: the one running, if any.
fn running_migration(v: &Volume) -> Option<Uuid> {
    v.migration
        .as_ref()
        .filter(|m| m.phase != MigrationPhase::Finished)
        .map(|m| m.id)
}

/// What `to` says in the event of a volume that is gone.
pub(super) const DELETED: &str = "deleted";

impl Service {
    /// A `volume` event outside the migration runner: `from` and `to` are
    /// statuses (`None` before the record existed, `deleted` after).
    pub(super) fn emit_life_cycle(
        &self,
        v: &Volume,
        from: Option<String>,
        to: String,
        reason: String,
    ) {
        self.inner.events.emit(NewEvent {
            kind: "volume",
            volume: Some(v.id),
            migration: running_migration(v),
            from,
            to,
            reason: Some(reason),
        });
    }

    /// A `volume` event about one attachment: the status before and after,
    /// the attachment's id and server.
    fn emit_attachment(&self, v: &Volume, from: VolumeStatus, a: &Attachment, reason: String) {
        self.inner.events.emit_attachment(
            NewEvent {
                kind: "volume",
                volume: Some(v.id),
                migration: running_migration(v),
                from: Some(status_name(from)),
                to: status_name(v.status),
                reason: Some(reason),
            },
            a.id,
            &a.server,
        );
    }

    /// Creates a volume on an array through its driver.
    pub async fn create_volume(&self, req: CreateVolume) -> Result<VolumeView, ServiceError> {
        validate_display_name("volume name", "name", &req.name)?;
        if let Some(d) = &req.description {
            validate_description(d)?;
        }
        if req.size_bytes == 0 || !req.size_bytes.is_multiple_of(512) {
            return Err(ServiceError::InvalidSize(req.size_bytes));
        }
        let array = self.array(&req.array)?.clone();
        let pool = choose_pool(&array, req.pool)?;
        let free = array
            .capacity_bytes()
            .saturating_sub(self.provisioned(&array)?);
        if req.size_bytes > free {
            return Err(ServiceError::NoSpace(format!(
                "array {} has {free} bytes free, {} wanted",
                array.name(),
                req.size_bytes
            )));
        }
        // Before any record exists: the driver's create_lun would refuse it
        // too, but as the driver's error, after a record was written.
        array.check_filesystem_fits(req.size_bytes)?;
        let scope = self.scope(&array)?;
        let mut volume = Volume::creating(req.name, req.size_bytes, array.name().to_owned(), pool);
        volume.description = req.description.filter(|d| !d.is_empty());
        // Persist first: a crash during the driver call leaves a record that
        // recovery can clean up, never an orphan LUN nobody knows about.
        self.inner.store.insert_volume(&volume)?;
        self.emit_life_cycle(
            &volume,
            None,
            status_name(VolumeStatus::Creating),
            format!(
                "create {} bytes on {}/{}",
                volume.size_bytes, volume.array, volume.pool
            ),
        );
        let vref = volume_ref(&volume);
        let created = self
            .call(array.driver(), move |rt| rt.create_volume(&scope, &vref))
            .await;
        let location = match created {
            Ok(location) => location,
            Err(e) => {
                self.emit_life_cycle(
                    &volume,
                    Some(status_name(VolumeStatus::Creating)),
                    status_name(VolumeStatus::Error),
                    format!("creation failed: {e}"),
                );
                if self.discard_failed_create(&volume).await {
                    self.emit_life_cycle(
                        &volume,
                        Some(status_name(VolumeStatus::Error)),
                        DELETED.into(),
                        "a failed creation keeps nothing".into(),
                    );
                }
                return Err(e);
            }
        };
        // The record may have changed meanwhile: an operator may have reset
        // it (kept, with its status) or force-deleted it (the LUN just made
        // goes too, so nothing is left that no record names).
        let recorded = self.inner.store.update_volume(volume.id, |v| {
            v.provider_location = location.clone();
            if v.status == VolumeStatus::Creating {
                v.status = VolumeStatus::Available;
            }
            Ok::<(), ServiceError>(())
        });
        match recorded {
            Ok(v) => {
                volume = v;
                tracing::info!(volume = %volume.id, array = %volume.array, size = volume.size_bytes, "volume created");
                self.emit_life_cycle(
                    &volume,
                    Some(status_name(VolumeStatus::Creating)),
                    status_name(volume.status),
                    format!("created by the driver of {}", volume.array),
                );
                Ok(self.view(&volume))
            }
            Err(UpdateError::NotFound) => {
                volume.provider_location = location;
                self.discard_failed_create(&volume).await;
                Err(ServiceError::VolumeNotFound(volume.id))
            }
            Err(e) => Err(from_update(volume.id, e)),
        }
    }

    /// Undoes a create whose driver call failed: asks the driver to remove
    /// whatever it made, then forgets the record. True if it forgot it.
    async fn discard_failed_create(&self, volume: &Volume) -> bool {
        if let Ok(array) = self.array(&volume.array).cloned()
            && let Ok(scope) = self.scope(&array)
        {
            let vref = volume_ref(volume);
            if let Err(e) = self
                .call(array.driver(), move |rt| rt.delete_volume(&scope, &vref))
                .await
            {
                tracing::warn!(volume = %volume.id, error = %e, "cleanup after failed create failed");
            }
        }
        match self.inner.store.delete_volume(volume.id) {
            Ok(existed) => existed,
            Err(e) => {
                tracing::warn!(volume = %volume.id, error = %e, "cannot forget failed volume");
                false
            }
        }
    }

    /// Renames a volume or changes its description, in any status: neither
    /// reaches the driver, so a migration running meanwhile is not
    /// disturbed. An empty description removes it.
    pub fn update_volume(&self, id: Uuid, req: UpdateVolume) -> Result<VolumeView, ServiceError> {
        if let Some(name) = &req.name {
            validate_display_name("volume name", "name", name)?;
        }
        if let Some(d) = &req.description {
            validate_description(d)?;
        }
        let volume = self
            .inner
            .store
            .update_volume(id, |v| {
                if let Some(name) = req.name {
                    v.name = name;
                }
                if let Some(d) = req.description {
                    v.description = Some(d).filter(|d| !d.is_empty());
                }
                Ok::<(), ServiceError>(())
            })
            .map_err(|e| from_update(id, e))?;
        Ok(self.view(&volume))
    }

    /// Every volume (never a migration's hidden destination).
    pub fn list_volumes(&self) -> Result<Vec<VolumeView>, ServiceError> {
        Ok(self
            .inner
            .store
            .list_volumes()?
            .iter()
            .map(|v| self.view(v))
            .collect())
    }

    /// One volume.
    pub fn get_volume(&self, id: Uuid) -> Result<VolumeView, ServiceError> {
        Ok(self.view(&self.volume(id)?))
    }

    pub(super) fn volume(&self, id: Uuid) -> Result<Volume, ServiceError> {
        self.inner
            .store
            .get_volume(id)?
            .ok_or(ServiceError::VolumeNotFound(id))
    }

    /// Deletes a volume that has no attachments and no running migration.
    pub async fn delete_volume(&self, id: Uuid) -> Result<(), ServiceError> {
        let mut from = VolumeStatus::Deleting;
        let volume = self
            .inner
            .store
            .update_volume(id, |v| {
                from = v.status;
                if !v.attachments.is_empty() {
                    return Err(invalid_state(
                        v,
                        "detach it before deleting it, or force the delete (DELETE with \
                         ?force=true, ferry volume delete --force), which disconnects it",
                    ));
                }
                match v.status {
                    VolumeStatus::Available | VolumeStatus::Error | VolumeStatus::Deleting => {
                        v.status = VolumeStatus::Deleting;
                        Ok(())
                    }
                    VolumeStatus::Migrating => Err(invalid_state(
                        v,
                        "a migration runs; wait for it, abort it, or force the delete (DELETE \
                         with ?force=true, ferry volume delete --force), which stops it and \
                         removes the volume's LUNs on both arrays",
                    )),
                    _ => Err(invalid_state(
                        v,
                        "only an available volume can be deleted; reset its status, or force \
                         the delete (DELETE with ?force=true, ferry volume delete --force)",
                    )),
                }
            })
            .map_err(|e| from_update(id, e))?;
        if from != VolumeStatus::Deleting {
            self.emit_life_cycle(
                &volume,
                Some(status_name(from)),
                status_name(VolumeStatus::Deleting),
                "delete requested".into(),
            );
        }
        self.finish_delete(volume).await
    }

    async fn finish_delete(&self, volume: Volume) -> Result<(), ServiceError> {
        let deleted = async {
            let array = self.array(&volume.array)?.clone();
            let scope = self.scope(&array)?;
            let vref = volume_ref(&volume);
            self.call(array.driver(), move |rt| rt.delete_volume(&scope, &vref))
                .await
        }
        .await;
        match deleted {
            Ok(()) => {
                let warnings = self.delete_leftovers(&volume).await;
                self.inner.store.delete_volume(volume.id)?;
                tracing::info!(volume = %volume.id, "volume deleted");
                let mut reason = format!("the driver of {} deleted its storage", volume.array);
                if !warnings.is_empty() {
                    reason.push_str("; warnings: ");
                    reason.push_str(&warnings.join("; "));
                }
                self.emit_life_cycle(
                    &volume,
                    Some(status_name(VolumeStatus::Deleting)),
                    DELETED.into(),
                    reason,
                );
                Ok(())
            }
            Err(e) => {
                // Error keeps the volume deletable: the operator can retry.
                let _ = self.inner.store.update_volume(volume.id, |v| {
                    v.status = VolumeStatus::Error;
                    Ok::<(), ServiceError>(())
                });
                self.emit_life_cycle(
                    &volume,
                    Some(status_name(VolumeStatus::Deleting)),
                    status_name(VolumeStatus::Error),
                    format!("delete failed, delete it again: {e}"),
                );
                Err(e)
            }
        }
    }

    /// After a delete: a last migration that did not succeed (failed,
    /// aborted, or stopped by a reset) may have left a LUN of the volume on
    /// its other array; its driver deletes it (idempotent), best effort.
    /// Returns what could not be deleted.
    async fn delete_leftovers(&self, volume: &Volume) -> Vec<String> {
        let Some(m) = volume
            .migration
            .as_ref()
            .filter(|m| m.status != MigrationStatus::Success)
        else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        for at in [&m.source, &m.destination] {
            if at.array == volume.array && at.pool == volume.pool {
                continue;
            }
            if let Err(e) = self.delete_lun_at(volume, at).await {
                tracing::warn!(volume = %volume.id, array = %at.array, error = %e, "LUN of a failed migration left behind");
                warnings.push(format!(
                    "a LUN of the last migration on {}/{} could not be deleted: {e}",
                    at.array, at.pool
                ));
            }
        }
        warnings
    }

    /// Attaches a volume: the driver names the LUN to expose, the host
    /// serves it over NBD under the attachment's id.
    pub async fn attach(
        &self,
        id: Uuid,
        req: AttachVolume,
    ) -> Result<AttachmentView, ServiceError> {
        validate_display_name("server name", "server", &req.server)?;
        let volume = self.volume(id)?;
        if !super::views::attachable(&volume) {
            return Err(invalid_state(&volume, "the volume is not attachable now"));
        }
        // Checked before the driver is asked, so a refusal changes nothing;
        // checked again in the update below, where concurrent attaches meet.
        self.check_attachment_room(&volume)?;
        if let Some(locked) = locked_by_migration(&volume, "attach") {
            return Err(locked);
        }
        let array = self.array(&volume.array)?.clone();
        let scope = self.scope(&array)?;
        let vref = volume_ref(&volume);
        let connector = Connector::Server(req.server.clone());
        let info = self
            .call(array.driver(), move |rt| {
                rt.initialize_connection(&scope, &vref, &connector)
            })
            .await;
        // The driver may have exposed the volume before its answer was
        // refused (an export off `nbd_allow`) or could not be reached:
        // the exposure ends with the attach (terminate is idempotent).
        let opened = match info {
            Ok(info) => self.open_data(&array, &info.data).await.map(|d| (info, d)),
            Err(e) => Err(e),
        };
        let (info, device) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                self.terminate(&volume, &req.server).await;
                return Err(e);
            }
        };
        let mode = if info.read_only {
            AttachMode::Ro
        } else {
            req.mode.unwrap_or_default()
        };
        let attachment = Attachment {
            id: Uuid::new_v4(),
            export: Some(crate::model::new_export_secret()),
            server: req.server,
            mode,
            lun: info.data,
            created_at: now_rfc3339(),
        };
        let export_name = attachment.export_name();
        self.inner.exports.add(
            &export_name,
            Export {
                device,
                read_only: mode == AttachMode::Ro,
            },
        );
        let added = attachment.clone();
        let attached_on = array.name().to_owned();
        let mut before = volume.status;
        let updated = self.inner.store.update_volume(id, |v| {
            // An abort's copy-back can switch the volume back to its source
            // meanwhile: the LUN the driver named is then not the volume's.
            if !super::views::attachable(v) || v.array != attached_on {
                return Err(invalid_state(v, "the volume changed state during attach"));
            }
            if let Some(locked) = locked_by_migration(v, "attach") {
                return Err(locked);
            }
            self.check_attachment_room(v)?;
            before = v.status;
            v.attachments.push(added);
            if v.status == VolumeStatus::Available {
                v.status = VolumeStatus::InUse;
            }
            Ok(())
        });
        let updated = match updated {
            Ok(v) => v,
            Err(e) => {
                self.inner.exports.remove(&export_name);
                self.terminate(&volume, &attachment.server).await;
                return Err(from_update(id, e));
            }
        };
        tracing::info!(volume = %id, attachment = %attachment.id, server = %attachment.server, "attached");
        self.emit_attachment(
            &updated,
            before,
            &attachment,
            format!(
                "attached to server {} (attachment {}, {})",
                attachment.server,
                attachment.id,
                if mode == AttachMode::Ro { "ro" } else { "rw" }
            ),
        );
        Ok(self.attachment_view(&attachment))
    }

    /// Refuses one more attachment of a volume that has as many as
    /// `[volumes] max_attachments_per_volume` allows.
    fn check_attachment_room(&self, v: &Volume) -> Result<(), ServiceError> {
        let max = self.inner.max_attachments;
        if u64::try_from(v.attachments.len()).unwrap_or(u64::MAX) >= max {
            return Err(ServiceError::TooManyAttachments { id: v.id, max });
        }
        Ok(())
    }

    async fn terminate(&self, volume: &Volume, server: &str) {
        let Ok(array) = self.array(&volume.array).cloned() else {
            return;
        };
        let Ok(scope) = self.scope(&array) else {
            return;
        };
        let vref = volume_ref(volume);
        let connector = Connector::Server(server.to_owned());
        if let Err(e) = self
            .call(array.driver(), move |rt| {
                rt.terminate_connection(&scope, &vref, &connector)
            })
            .await
        {
            tracing::warn!(volume = %volume.id, error = %e, "terminate-connection failed");
        }
    }

    /// What serves a LUN: its hydration while it hydrates (async
    /// migration), else the LUN file itself; for an NBD export the array
    /// serves, the host's own client of it.
    pub(super) fn data_device(
        &self,
        array: &crate::array::Array,
        data: &DataPath,
    ) -> Result<Arc<dyn crate::block::BlockDevice>, ServiceError> {
        match data {
            DataPath::Lun(lun) => {
                if let Some(h) = self.inner.hydrations.device(array.name(), lun) {
                    return Ok(h);
                }
                Ok(Arc::new(array.open_lun(lun)?))
            }
            DataPath::Nbd { nbd_uri } => Ok(Arc::new(connect_export(array, nbd_uri)?)),
        }
    }

    /// [`Self::data_device`] off the async runtime: connecting to an NBD
    /// export waits on the network.
    pub(super) async fn open_data(
        &self,
        array: &Arc<crate::array::Array>,
        data: &DataPath,
    ) -> Result<Arc<dyn crate::block::BlockDevice>, ServiceError> {
        let (service, array, data) = (self.clone(), Arc::clone(array), data.clone());
        tokio::task::spawn_blocking(move || service.data_device(&array, &data))
            .await
            .map_err(|e| ServiceError::Internal(format!("open task failed: {e}")))?
    }

    /// Detaches: flushes and closes the export, then tells the driver.
    pub async fn detach(&self, id: Uuid, attachment: Uuid) -> Result<(), ServiceError> {
        let volume = self.volume(id)?;
        let Some(a) = volume
            .attachments
            .iter()
            .find(|a| a.id == attachment)
            .cloned()
        else {
            return Err(ServiceError::AttachmentNotFound {
                volume: id,
                attachment,
            });
        };
        // Checked before the export goes: a refusal changes nothing.
        if let Some(locked) = locked_by_migration(&volume, "detach") {
            return Err(locked);
        }
        self.inner.exports.remove(&a.export_name());
        self.terminate(&volume, &a.server).await;
        let mut before = volume.status;
        let updated = self
            .inner
            .store
            .update_volume(id, |v| {
                before = v.status;
                v.attachments.retain(|x| x.id != attachment);
                if v.attachments.is_empty() && v.status == VolumeStatus::InUse {
                    v.status = VolumeStatus::Available;
                }
                Ok::<(), ServiceError>(())
            })
            .map_err(|e| from_update(id, e))?;
        tracing::info!(volume = %id, attachment = %attachment, "detached");
        self.emit_attachment(
            &updated,
            before,
            &a,
            format!("detached from server {} (attachment {})", a.server, a.id),
        );
        Ok(())
    }

    /// Retries, on a thread of its own and with backoff, to serve the
    /// attachment `a` of `volume` from its array's NBD export, for as long
    /// as the attachment exists unchanged.
    fn restore_export_later(&self, volume: Uuid, a: Attachment) {
        let (service, attachment) = (self.clone(), a.id);
        let current = move |service: &Service, a: &Attachment| {
            service
                .volume(volume)
                .ok()
                .filter(|v| v.attachments.iter().any(|x| x.id == a.id && x.lun == a.lun))
        };
        let spawned = std::thread::Builder::new()
            .name("export-restore".into())
            .spawn(move || {
                let mut pause = std::time::Duration::from_millis(500);
                loop {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                    let Some(v) = current(&service, &a) else {
                        return;
                    };
                    let Some(array) = service.inner.arrays.get(&v.array) else {
                        return;
                    };
                    match service.data_device(array, &a.lun) {
                        // Detached while it connected: nothing to serve.
                        Ok(_) if current(&service, &a).is_none() => return,
                        Ok(device) => {
                            service.inner.exports.add(
                                &a.export_name(),
                                Export {
                                    device,
                                    read_only: a.mode == AttachMode::Ro,
                                },
                            );
                            tracing::info!(volume = %volume, attachment = %a.id, "export restored");
                            return;
                        }
                        Err(e) => {
                            tracing::debug!(volume = %volume, attachment = %a.id, error = %e, "the array's export is still unreachable")
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(volume = %volume, %attachment, error = %e, "cannot retry restoring the export");
        }
    }

    /// Brings the host back to where it was: re-exports attached volumes and
    /// settles life-cycle calls a crash interrupted.
    pub(super) fn recover(&self) -> Result<(), ServiceError> {
        for volume in self.inner.store.list_volumes()? {
            match volume.status {
                VolumeStatus::Creating => {
                    // The driver may or may not have made the LUN; Error lets
                    // the operator delete it, which the driver does idempotently.
                    self.inner
                        .store
                        .update_volume(volume.id, |v| {
                            v.status = VolumeStatus::Error;
                            Ok::<(), ServiceError>(())
                        })
                        .map_err(|e| from_update(volume.id, e))?;
                    tracing::warn!(volume = %volume.id, "creation was interrupted; volume set to error");
                    self.emit_life_cycle(
                        &volume,
                        Some(status_name(VolumeStatus::Creating)),
                        status_name(VolumeStatus::Error),
                        "the host stopped during creation; delete the volume".into(),
                    );
                }
                VolumeStatus::Deleting => {
                    self.inner
                        .store
                        .update_volume(volume.id, |v| {
                            v.status = VolumeStatus::Error;
                            Ok::<(), ServiceError>(())
                        })
                        .map_err(|e| from_update(volume.id, e))?;
                    tracing::warn!(volume = %volume.id, "deletion was interrupted; delete it again");
                    self.emit_life_cycle(
                        &volume,
                        Some(status_name(VolumeStatus::Deleting)),
                        status_name(VolumeStatus::Error),
                        "the host stopped during deletion; delete the volume again".into(),
                    );
                }
                _ => {}
            }
            let Some(array) = self.inner.arrays.get(&volume.array) else {
                continue;
            };
            for a in &volume.attachments {
                match self.data_device(array, &a.lun) {
                    Ok(device) => self.inner.exports.add(
                        &a.export_name(),
                        Export {
                            device,
                            read_only: a.mode == AttachMode::Ro,
                        },
                    ),
                    // An array's export may be down for a while (its host
                    // restarting): keep trying, so clients find it again.
                    Err(e) if matches!(a.lun, DataPath::Nbd { .. }) => {
                        tracing::warn!(volume = %volume.id, attachment = %a.id, error = %e, "the array's export is unreachable; retrying in the background");
                        self.restore_export_later(volume.id, a.clone());
                    }
                    Err(e) => {
                        tracing::error!(volume = %volume.id, attachment = %a.id, error = %e, "cannot restore export")
                    }
                }
            }
        }
        Ok(())
    }
}

/// The host's client of an NBD export that `array`'s driver named: the
/// server must be one the array's `nbd_allow` lists.
fn connect_export(
    array: &crate::array::Array,
    uri: &str,
) -> Result<crate::remote_nbd::RemoteDevice, ServiceError> {
    let failed = |message: String| ServiceError::RemoteExport {
        array: array.name().to_owned(),
        message,
    };
    let parsed = crate::outbound::NbdUri::parse(uri).map_err(failed)?;
    let addr = array.nbd_allow().resolve(&parsed).map_err(failed)?;
    crate::remote_nbd::RemoteDevice::connect(addr, &parsed.export, Default::default())
        .map_err(|e| failed(format!("{}: {e}", crate::outbound::redact_uri(uri))))
}
