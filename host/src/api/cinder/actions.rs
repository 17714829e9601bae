//! `POST /v3/{project_id}/volumes/{volume_id}/action`: Cinder's volume
//! actions, each a body with one key, mapped onto the service's calls.
//!
//! - `os-migrate_volume` and `os-retype` start a migration (a type is a
//!   location), `os-migrate_volume_completion` ends Nova's half of one.
//! - `os-reset_status` and `os-force_delete` are the operator's way out.
//! - `os-initialize_connection` attaches the connector's host and answers
//!   an NBD connection; `os-terminate_connection` detaches it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::location;
use super::volumes::{Target, VolumeParams};
use crate::api::AppState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::JsonBody;
use crate::api::routes::Routes;
use crate::model::AttachMode;
use crate::service::wire_name;
use crate::service::{AttachVolume, AttachmentView, MigrateVolume, ResetStatus, ServiceError};

pub(super) fn register(r: Routes) -> Routes {
    r.cinder(routes!(action))
}

/// One volume action.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) enum VolumeAction {
    /// Move the volume to a pool.
    #[serde(rename = "os-migrate_volume")]
    Migrate(MigrateArgs),
    /// Nova's end of a swap: Ferry keeps one volume id across a migration,
    /// so `new_volume` must be this volume; `error: true` aborts its
    /// running migration.
    #[serde(rename = "os-migrate_volume_completion")]
    MigrateCompletion(CompletionArgs),
    /// Set the status by hand.
    #[serde(rename = "os-reset_status")]
    ResetStatus(ResetArgs),
    /// Delete in any status.
    #[serde(rename = "os-force_delete")]
    ForceDelete(Option<BTreeMap<String, Value>>),
    /// Change the type, migrating when the new type lives elsewhere.
    #[serde(rename = "os-retype")]
    Retype(RetypeArgs),
    /// Attach the connector's host and answer its NBD connection.
    #[serde(rename = "os-initialize_connection")]
    InitializeConnection(ConnectorArgs),
    /// Detach the connector's host.
    #[serde(rename = "os-terminate_connection")]
    TerminateConnection(ConnectorArgs),
}

/// Arguments of `os-migrate_volume`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MigrateArgs {
    /// `HOST@ARRAY#POOL` (or `HOST@ARRAY` for its first pool).
    host: Option<String>,
    /// Skip the drivers' own paths and copy in the host.
    #[serde(default)]
    force_host_copy: Option<Flag>,
    /// Refuse attach, detach and abort while it runs.
    #[serde(default)]
    lock_volume: Option<Flag>,
    /// Must be null: no clusters.
    #[serde(default)]
    cluster: Option<String>,
}

/// A boolean as clients send it: JSON's, or a string (`"True"`,
/// `"false"`, `"1"`...), as `cinder migrate --force-host-copy True` does.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(super) enum Flag {
    /// `true` or `false`.
    Bool(bool),
    /// `true`, `false`, `1`, `0`, `yes`, `no`, in any case.
    Text(String),
}

impl Flag {
    fn value(field: &str, flag: Option<Flag>) -> Result<bool, ApiError> {
        match flag {
            None => Ok(false),
            Some(Flag::Bool(b)) => Ok(b),
            Some(Flag::Text(t)) => match t.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(bad(format!(
                    "{field} {:?} is not a boolean",
                    crate::api::clip::echo(&t)
                ))),
            },
        }
    }
}

/// Arguments of `os-migrate_volume_completion`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CompletionArgs {
    /// This volume's id.
    new_volume: Uuid,
    /// True when the caller's half failed.
    #[serde(default)]
    error: bool,
}

/// Arguments of `os-reset_status`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetArgs {
    /// `available`, `in-use` or `error`.
    status: Option<String>,
    /// `attached` or `detached`: must agree with the volume's attachments
    /// (detach with `os-terminate_connection`).
    attach_status: Option<String>,
    /// `error`, or `none` to forget the last migration.
    migration_status: Option<String>,
}

/// Arguments of `os-retype`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RetypeArgs {
    /// The type's name or id.
    new_type: String,
    /// `never` (the default): refuse a retype that needs a migration;
    /// `on-demand`: migrate.
    #[serde(default)]
    migration_policy: Option<String>,
}

/// Arguments of the connection actions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectorArgs {
    /// The connecting host, as os-brick describes it.
    connector: Connector,
}

/// The connecting host. Only `host` is read; the rest os-brick sends is
/// accepted.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct Connector {
    /// The server's name; its attachment is named after it.
    host: String,
    /// `rw` (default) or `ro`.
    #[serde(default)]
    mode: Option<String>,
}

/// `{"connection_info": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConnectionBody {
    connection_info: ConnectionInfo,
}

/// How the server reaches the volume.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConnectionInfo {
    /// `nbd`.
    driver_volume_type: &'static str,
    /// Where and how.
    data: NbdData,
}

/// An NBD export.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct NbdData {
    /// `nbd://HOST:PORT/EXPORT` (`nbds://` with TLS): the export name is
    /// the credential that opens it.
    uri: String,
    /// The NBD server's address.
    host: String,
    /// Its port.
    port: u16,
    /// The export.
    export_name: String,
    /// Whether the server requires TLS.
    tls: bool,
    /// `rw` or `ro`.
    access_mode: AttachMode,
    /// The attachment.
    attachment_id: Uuid,
    /// The volume.
    volume_id: Uuid,
}

/// `{"save_volume_id": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct CompletionBody {
    save_volume_id: Uuid,
}

fn bad(message: String) -> ApiError {
    ApiError::from(ServiceError::InvalidArgument(message))
}

/// Take an action on a volume.
///
/// `os-migrate_volume`, `os-retype`, `os-reset_status`, `os-force_delete`
/// and `os-terminate_connection` answer 202 with no body;
/// `os-initialize_connection` 200 with the connection;
/// `os-migrate_volume_completion` 200 with `save_volume_id`.
#[utoipa::path(post, path = "/v3/{project_id}/volumes/{volume_id}/action", operation_id = "cinderVolumeAction",
    tag = "block-storage-v3", params(VolumeParams), request_body = VolumeAction, responses(
    (status = 200, description = "`os-initialize_connection`: the NBD connection.", body = ConnectionBody),
    (status = 202, description = "Accepted: the migration runs (follow `migration_status`), the \
        status is reset, the volume is deleted, or the host is detached."),
    (status = 400, description = "A host that names no pool of this host (`invalid_host`), a \
        retype that needs a migration under `migration_policy` `never`, a completion naming \
        another volume or an attach status that contradicts the volume (`invalid_argument`), \
        the same location (`same_location`), a status that cannot be set (`invalid_status`).", body = ErrorBody),
    (status = 404, description = "No such volume (`volume_not_found`), array \
        (`array_not_found`), pool (`pool_not_found`) or type (`volume_type_not_found`).", body = ErrorBody),
    (status = 409, description = "A migration runs (`migration_in_progress`), the status forbids \
        it (`not_migratable`, `invalid_state`, `inconsistent_status`), the volume is locked \
        (`volume_locked`), nothing to abort (`no_migration_running`, `abort_too_late`), too many \
        attachments (`too_many_attachments`), or its LUN still fills (`hydration_incomplete`).", body = ErrorBody),
    (status = 422, description = "The destination has not enough space (`no_space`), or a \
        driver refused (`driver_unsupported`).", body = ErrorBody),
    (status = 502, description = "A driver failed.", body = ErrorBody),
    (status = 503, description = "A driver is not loaded (`driver_not_loaded`), or a migration \
        told to stop is still inside a step (`migration_stopping`).", body = ErrorBody),
    (status = 507, description = crate::api::volumes::INSUFFICIENT_SPACE, body = ErrorBody),
))]
async fn action(
    State(state): State<AppState>,
    target: Target,
    JsonBody(action): JsonBody<VolumeAction>,
) -> Result<Response, ApiError> {
    let id = target.volume_id()?;
    let service = &state.service;
    match action {
        VolumeAction::Migrate(args) => {
            if args.cluster.is_some() {
                return Err(bad("cluster is not supported: name a host".into()));
            }
            let host = args
                .host
                .ok_or_else(|| bad("os-migrate_volume needs a host (HOST@ARRAY#POOL)".into()))?;
            let (array, pool) = location::parse_host(&state.options.cinder.host, &host)?;
            let force_host_copy = Flag::value("force_host_copy", args.force_host_copy)?;
            let lock_volume = Flag::value("lock_volume", args.lock_volume)?;
            service
                .migrate(
                    id,
                    MigrateVolume {
                        array,
                        pool,
                        force_host_copy,
                        lock_volume: Some(lock_volume),
                    },
                )
                .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        VolumeAction::MigrateCompletion(args) => {
            if args.new_volume != id {
                return Err(bad(format!(
                    "new_volume {} is not this volume: Ferry keeps one volume id across a \
                     migration, so the completion names the volume itself",
                    args.new_volume
                )));
            }
            if args.error {
                service.abort_migration(id, false).await?;
            } else {
                service.get_volume(id)?;
            }
            Ok(Json(CompletionBody { save_volume_id: id }).into_response())
        }
        VolumeAction::ResetStatus(args) => {
            reset(&state, id, args).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        VolumeAction::ForceDelete(args) => {
            if args.is_some_and(|a| !a.is_empty()) {
                return Err(bad("os-force_delete takes no arguments".into()));
            }
            service.force_delete(id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        VolumeAction::Retype(args) => {
            retype(&state, id, args).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        VolumeAction::InitializeConnection(args) => {
            let attachment = connect(&state, id, args.connector).await?;
            Ok(Json(connection(id, attachment)?).into_response())
        }
        VolumeAction::TerminateConnection(args) => {
            let volume = service.get_volume(id)?;
            for a in volume
                .attachments
                .iter()
                .filter(|a| a.server == args.connector.host)
            {
                service.detach(id, a.id).await?;
            }
            Ok(StatusCode::ACCEPTED.into_response())
        }
    }
}

async fn reset(state: &AppState, id: Uuid, args: ResetArgs) -> Result<(), ApiError> {
    let volume = state.service.get_volume(id)?;
    if let Some(attach) = &args.attach_status {
        let attached = match attach.as_str() {
            "attached" => true,
            "detached" => false,
            other => {
                return Err(bad(format!(
                    "attach_status {:?} is neither attached nor detached",
                    crate::api::clip::echo(other)
                )));
            }
        };
        if attached == volume.attachments.is_empty() {
            return Err(bad(format!(
                "attach_status {attach} contradicts the volume's {} attachment(s); detach \
                 with os-terminate_connection",
                volume.attachments.len()
            )));
        }
    }
    let status = match args.status {
        Some(s) => s,
        // Only the migration status changes: keep the volume's own, as
        // Cinder does. A volume in the middle of something has no status
        // to keep; the service names what it accepts.
        None => wire_name(volume.status),
    };
    let migration_status = match args.migration_status.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(other) => Some(Some(other.to_owned())),
    };
    state
        .service
        .reset_status(
            id,
            ResetStatus {
                status,
                migration_status,
                discard_unhydrated: false,
            },
        )
        .await?;
    Ok(())
}

async fn retype(state: &AppState, id: Uuid, args: RetypeArgs) -> Result<(), ApiError> {
    let on_demand = match args.migration_policy.as_deref() {
        None | Some("never") => false,
        Some("on-demand") => true,
        Some(other) => {
            return Err(bad(format!(
                "migration_policy {:?} is neither never nor on-demand",
                crate::api::clip::echo(other)
            )));
        }
    };
    let arrays = state.service.array_pools();
    let kind = location::find_type(&arrays, &args.new_type)?;
    let volume = state.service.get_volume(id)?;
    if volume.array == kind.location.array && volume.pool == kind.location.pool {
        // Already of that type: nothing to do, as Cinder answers.
        return Ok(());
    }
    if !on_demand {
        return Err(bad(format!(
            "type {} lives on array {} pool {}, and the volume on {} pool {}: the retype needs \
             a migration, which migration_policy never forbids (use on-demand)",
            kind.name, kind.location.array, kind.location.pool, volume.array, volume.pool
        )));
    }
    state
        .service
        .migrate(
            id,
            MigrateVolume {
                array: kind.location.array,
                pool: Some(kind.location.pool),
                force_host_copy: false,
                lock_volume: Some(false),
            },
        )
        .await?;
    Ok(())
}

/// The attachment of the connector's host: the one it has already (a
/// connection is initialized again after a host restarts), else a new one.
async fn connect(
    state: &AppState,
    id: Uuid,
    connector: Connector,
) -> Result<AttachmentView, ApiError> {
    let mode = match connector.mode.as_deref() {
        None | Some("rw") => AttachMode::Rw,
        Some("ro") => AttachMode::Ro,
        Some(other) => {
            return Err(bad(format!(
                "connector mode {:?} is neither rw nor ro",
                crate::api::clip::echo(other)
            )));
        }
    };
    let volume = state.service.get_volume(id)?;
    if let Some(existing) = volume
        .attachments
        .into_iter()
        .find(|a| a.server == connector.host && a.mode == mode)
    {
        return Ok(existing);
    }
    Ok(state
        .service
        .attach(
            id,
            AttachVolume {
                server: connector.host,
                mode: Some(mode),
            },
        )
        .await?)
}

fn connection(id: Uuid, a: AttachmentView) -> Result<ConnectionBody, ApiError> {
    let internal = || {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an attachment without a usable NBD URI",
        )
    };
    let uri = a.uri.ok_or_else(internal)?;
    // `nbd://HOST:PORT/EXPORT`, as the service writes it: the address
    // clients should use, which may differ from the one it listens on.
    let (tls, rest) = match uri.split_once("://") {
        Some(("nbds", rest)) => (true, rest),
        Some(("nbd", rest)) => (false, rest),
        _ => return Err(internal()),
    };
    let (authority, export) = rest.split_once('/').ok_or_else(internal)?;
    let (host, port) = authority.rsplit_once(':').ok_or_else(internal)?;
    let port = port.parse().map_err(|_| internal())?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(ConnectionBody {
        connection_info: ConnectionInfo {
            driver_volume_type: "nbd",
            data: NbdData {
                tls,
                host,
                port,
                export_name: export.to_owned(),
                uri,
                access_mode: a.mode,
                attachment_id: a.id,
                volume_id: id,
            },
        },
    })
}
