//! The OpenAPI 3.1 document served at `/openapi.json`, written by hand; a
//! test keeps it in step with the router's route table.

use serde_json::{Map, Value, json};

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_content(name: &str) -> Value {
    json!({"application/json": {"schema": schema(name)}})
}

fn ok(description: &str, body: &str) -> Value {
    json!({"description": description, "content": json_content(body)})
}

/// The error responses an operation may give, each with the error envelope.
fn errors(responses: &mut Map<String, Value>, codes: &[(&str, &str)]) {
    for (status, description) in codes {
        responses.insert(
            (*status).to_owned(),
            json!({"description": description, "content": json_content("Error")}),
        );
    }
}

/// Errors every token-protected call may give.
const AUTH_ERRORS: &[(&str, &str)] = &[
    (
        "401",
        "No bearer token, or not a valid one (`unauthorized`).",
    ),
    ("500", "The host failed."),
];
/// Errors every mutating call adds.
const ADMIN_ERRORS: &[(&str, &str)] = &[("403", "The token may only read (`forbidden`).")];
/// Errors of calls with a JSON body.
const BODY_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Malformed request: `invalid_json`, `invalid_body` (names the field), \
         `invalid_id`, `invalid_size`, `invalid_name` (a name that is empty, longer than \
         255 bytes, or holds a character that could disguise it when printed; the message \
         names the field and the code point, e.g. `U+202E`).",
    ),
    ("413", "The body is larger than 1 MiB (`body_too_large`)."),
    (
        "415",
        "The body is not `application/json` (`unsupported_media_type`).",
    ),
];
const ID_ERRORS: &[(&str, &str)] = &[
    ("400", "The id is not a UUID (`invalid_id`)."),
    ("404", "No such volume (`volume_not_found`)."),
];

fn operation(
    id: &str,
    summary: &str,
    params: &[&str],
    body: Option<&str>,
    success: (&str, Value),
    error_sets: &[&[(&str, &str)]],
) -> Value {
    let mut responses = Map::new();
    responses.insert(success.0.to_owned(), success.1);
    for set in error_sets {
        errors(&mut responses, set);
    }
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "responses": responses,
    });
    if !params.is_empty() {
        op["parameters"] = params
            .iter()
            .map(|p| {
                json!({
                    "name": p, "in": "path", "required": true,
                    "schema": {"type": "string", "format": "uuid"}
                })
            })
            .collect();
    }
    if let Some(body) = body {
        op["requestBody"] = json!({"required": true, "content": json_content(body)});
    }
    op
}

fn public(mut op: Value) -> Value {
    op["security"] = json!([]);
    op
}

/// An operation whose access the host's configuration decides: a bearer
/// token, or none (`[http] metrics`).
fn configured(mut op: Value) -> Value {
    op["security"] = json!([{"bearer": []}, {}]);
    op
}

/// A 507 of a file system too full for the volume.
const INSUFFICIENT_SPACE: &str = "The file system under the array has less free space than \
     the volume's size (`insufficient_space`; the message names the free and the needed \
     bytes). Nothing was created.";

fn no_content(description: &str) -> (&'static str, Value) {
    ("204", json!({"description": description}))
}

fn paths() -> Value {
    json!({
        "/healthz": {"get": public(operation(
            "health", "Liveness check.", &[], None,
            ("200", ok("The host is up.", "Health")), &[]))},
        "/openapi.json": {"get": public(operation(
            "openapi", "This document.", &[], None,
            ("200", json!({"description": "The OpenAPI document.",
                           "content": {"application/json": {}}})), &[]))},
        "/v1/arrays": {"get": operation(
            "listArrays", "List the storage arrays.", &[], None,
            ("200", ok("The arrays.", "ArrayList")), &[AUTH_ERRORS])},
        "/v1/volumes": {
            "get": operation(
                "listVolumes", "List the volumes.", &[], None,
                ("200", ok("The volumes.", "VolumeList")), &[AUTH_ERRORS]),
            "post": operation(
                "createVolume", "Create a volume on an array.", &[], Some("CreateVolume"),
                ("201", ok("The new volume; `Location` has its address.", "Volume")),
                &[AUTH_ERRORS, ADMIN_ERRORS, BODY_ERRORS, &[
                    ("404", "No such array (`array_not_found`) or pool (`pool_not_found`)."),
                    ("422", "The array has not enough space (`no_space`)."),
                    ("502", "The array's driver failed."),
                    ("507", INSUFFICIENT_SPACE),
                    ("503", "The array's driver is not loaded (`driver_not_loaded`)."),
                ]]),
        },
        "/v1/events": {"get": operation(
            "events",
            "Every state change. Server-sent events (`id` = sequence number, `event` = kind, `data` = the Event), resumable with `Last-Event-ID` or `?after=SEQ`, when the client sends `Accept: text/event-stream`; otherwise (or with `follow=false`) one JSON page.",
            &[], None,
            ("200", ok("Events (a stream, or a page with `follow=false`).", "EventList")),
            &[AUTH_ERRORS])},
        "/v1/volumes/{id}/migrate": {"post": operation(
            "migrateVolume",
            "Migrate a volume to another array or pool. Admission is synchronous and atomic: 202 when it will proceed, else the exact reason.",
            &["id"], Some("MigrateVolume"),
            ("202", ok("Accepted; follow it at `Location`.", "MigrationAccepted")),
            &[AUTH_ERRORS, ADMIN_ERRORS, BODY_ERRORS, ID_ERRORS, &[
                ("400", "Same array and pool (`same_location`)."),
                ("409", "A migration runs (`migration_in_progress`) or the status forbids it (`not_migratable`)."),
                ("422", "The destination has not enough space (`no_space`)."),
                ("503", "A driver is not loaded (`driver_not_loaded`)."),
                ("507", INSUFFICIENT_SPACE),
            ]])},
        "/v1/volumes/{id}/migration": {"get": operation(
            "getMigration", "The last migration of a volume: status, phase, path, progress, error, warnings, retries.",
            &["id"], None,
            ("200", ok("The last migration; for a volume never migrated every field is null (`progress` too) and `warnings` empty.", "Migration")),
            &[AUTH_ERRORS, ID_ERRORS])},
        "/v1/volumes/{id}/migration/abort": {"post": operation(
            "abortMigration",
            "Stop a running migration and put the volume back where it was. An accepted abort always takes effect: the migration shows `aborting` at once and ends `aborted` with the volume on its source (a driver's copy in flight is stopped; a move the source driver finished anyway is copied back; while `migrating_attachable` the destination's writes are copied back first). Asking again answers the same. A migration started with `lock_volume` refuses it unless `?force=true`.",
            &["id"], None,
            ("202", ok("Abort accepted; the migration is `aborting` and ends `aborted`.", "Migration")),
            &[AUTH_ERRORS, ADMIN_ERRORS, ID_ERRORS, &[
                ("400", "A query other than `force=true|false` (`invalid_query`)."),
                ("409", "Nothing to abort (`no_migration_running`), the volume already lives on the destination and its source is being removed (`abort_too_late`), a failed migration is rolling back already (`abort_not_possible`), or the migration holds `lock_volume` (`volume_locked`)."),
            ]])},
        "/v1/volumes/{id}": {
            "get": operation(
                "getVolume", "Show a volume.", &["id"], None,
                ("200", ok("The volume.", "Volume")), &[AUTH_ERRORS, ID_ERRORS]),
            "delete": delete_volume(),
        },
        "/v1/volumes/{id}/reset-status": {"post": operation(
            "resetVolumeStatus",
            "Set a volume's status by hand (Cinder's os-reset_status): `available`, `in-use` \
             or `error`. A migration running on it is stopped and recorded as `error` (its \
             error says an operator reset it); no data moves and no LUN is deleted, so a LUN \
             the migration made on the other array stays until the volume is deleted. A LUN \
             still filling from the migration's source is ended when complete; when not, the \
             reset is refused unless `discard_unhydrated` is true. Emits `volume` (and \
             `migration`) events.",
            &["id"], Some("ResetStatus"),
            ("200", ok("The volume after the reset, with what was stopped and left where.",
                       "ResetOutcome")),
            &[AUTH_ERRORS, ADMIN_ERRORS, BODY_ERRORS, ID_ERRORS, &[
                ("400", "Malformed request (`invalid_json`, `invalid_body`, `invalid_id`), or \
                         a status that cannot be set by hand (`invalid_status`: `creating`, \
                         `deleting`, `migrating`, or unknown; `migration_status` other than \
                         `\"error\"` or null)."),
                ("409", "The status contradicts the volume (`inconsistent_status`: `in-use` \
                         without attachments, `available` with some, `migration_status` \
                         `error` on a volume never migrated), or its LUN still fills from \
                         the source (`hydration_incomplete`). Nothing changed."),
                ("503", "The migration was told to stop but is still inside a step \
                         (`migration_stopping`); the volume stays `migrating`; ask again."),
            ]])},
        "/v1/volumes/{id}/attachments": {"post": operation(
            "attachVolume", "Attach a volume to a server; the answer carries the NBD URI.",
            &["id"], Some("AttachVolume"),
            ("201", ok("The attachment.", "Attachment")),
            &[AUTH_ERRORS, ADMIN_ERRORS, BODY_ERRORS, ID_ERRORS, &[
                ("409", "The volume's status forbids attaching (`invalid_state`), a \
                         migration started with `lock_volume` runs (`volume_locked`), or the \
                         volume has `[volumes] max_attachments_per_volume` attachments \
                         already (`too_many_attachments`; default 16). Nothing changed."),
                ("502", "The array's driver failed."),
                ("503", "The array's driver is not loaded (`driver_not_loaded`)."),
            ]])},
        "/v1/volumes/{id}/attachments/{attachment_id}": {"delete": operation(
            "detachVolume", "Detach a volume from a server.", &["id", "attachment_id"], None,
            no_content("Detached."),
            &[AUTH_ERRORS, ADMIN_ERRORS, &[
                ("400", "An id is not a UUID (`invalid_id`)."),
                ("404", "No such volume (`volume_not_found`) or attachment \
                         (`attachment_not_found`)."),
                ("409", "A migration started with `lock_volume` runs (`volume_locked`); \
                         nothing changed."),
                ("502", "The array's driver failed."),
            ]])},
        "/v1/drivers": {"get": operation(
            "listDrivers", "List the drivers and their installed versions.", &[], None,
            ("200", ok("The drivers.", "DriverList")), &[AUTH_ERRORS])},
        "/v1/drivers/{name}": {"put": install_driver()},
        "/v1/drivers/{name}/activate": {"post": with_retry_after(named(operation(
            "activateDriver",
            "Make an installed version the active one (hot swap; roll back or forward). \
             Calls in flight finish on the old version; new calls use this one.",
            &[], Some("ActivateDriver"),
            ("200", ok("The version, now active.", "DriverVersionResult")),
            &[AUTH_ERRORS, ADMIN_ERRORS, BODY_ERRORS, &[
                ("404", "No such driver (`driver_not_found`) or version \
                         (`driver_version_not_found`)."),
                ("429", COMPILE_BUSY),
            ]])))},
        "/v1/drivers/{name}/versions/{digest}": {"delete": delete_driver_version()},
        "/metrics": {"get": configured(operation(
            "metrics",
            "Prometheus text: volumes, migrations, per-driver calls, errors, traps, \
             timeouts, latency and memory high-water mark, driver compiles (by result, \
             the abandoned compile still running, CPU time), NBD and HTTP counters. Who \
             may read it is the host's `[http] metrics` setting: `reader` (the default) \
             needs any valid bearer token, reader or admin; `public` needs none; `off` \
             answers 404.",
            &[], None,
            ("200", json!({"description": "Metrics in the text exposition format 0.0.4.",
                           "content": {"text/plain": {}}})),
            &[&[
                ("401", "`[http] metrics = \"reader\"` (the default): no bearer token, or \
                         not a valid one (`unauthorized`)."),
                ("404", "`[http] metrics = \"off\"`: not served (`not_found`)."),
            ]]))},
    })
}

fn delete_volume() -> Value {
    let mut op = operation(
        "deleteVolume",
        "Delete a volume and its storage. A plain delete needs the volume `available` or \
         `error` and unattached. With `force=true` (Cinder's os-force_delete) it is removed in \
         any state, `migrating` included: its migration is stopped, its exports withdrawn (NBD \
         clients are disconnected), its hydration abandoned, and the drivers of where it lives \
         and of both sides of its last migration delete their LUN of it, best effort: each \
         failure is a warning in the answer and in the `deleted` event, and the record goes \
         anyway.",
        &["id"],
        None,
        no_content("Deleted (plain delete)."),
        &[
            AUTH_ERRORS,
            ADMIN_ERRORS,
            ID_ERRORS,
            &[
                (
                    "400",
                    "The id is not a UUID (`invalid_id`), or a bad query (`invalid_query`).",
                ),
                (
                    "409",
                    "Plain delete: the volume is attached, migrating or busy \
                     (`invalid_state`; the message names the forced delete).",
                ),
                ("502", "Plain delete: the array's driver failed."),
                (
                    "503",
                    "Plain delete: the array's driver is not loaded (`driver_not_loaded`).",
                ),
            ],
        ],
    );
    op["responses"]["200"] = ok(
        "Forced delete: what was stopped and deleted, and what was left behind.",
        "ForceDeleted",
    );
    if let Some(p) = op["parameters"].as_array_mut() {
        p.push(json!({
            "name": "force", "in": "query", "required": false,
            "schema": {"type": "boolean", "default": false},
            "description": "Remove the volume in any state (see above)."
        }));
    }
    op
}

/// Adds the `{name}` path parameter (a driver name) to an operation.
fn named(mut op: Value) -> Value {
    op["parameters"] = json!([{
        "name": "name", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"}
    }]);
    op
}

/// A 429 of the compile slot.
const COMPILE_BUSY: &str = "Another component is compiling (one compile at a time per host) \
     and did not end within `max_compile_wait_ms` (`compile_busy`); `Retry-After` says \
     when to try again.";

/// Documents the `Retry-After` header of an operation's 429.
fn with_retry_after(mut op: Value) -> Value {
    op["responses"]["429"]["headers"] = json!({"Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1}
    }});
    op
}

fn delete_driver_version() -> Value {
    let mut op = named(operation(
        "deleteDriverVersion",
        "Delete an installed version: its component, its compiled artifacts and its \
         place in the driver's record (the bytes stay while another driver name lists \
         the same digest). The active version and a version a driver call (of a \
         running migration, say) still runs on are refused. Versions are also deleted \
         by the `driver_versions_kept` setting after an install.",
        &[],
        None,
        no_content("Deleted."),
        &[
            AUTH_ERRORS,
            ADMIN_ERRORS,
            &[
                ("400", "Bad driver name (`invalid_name`)."),
                (
                    "404",
                    "No such driver (`driver_not_found`) or version \
                     (`driver_version_not_found`).",
                ),
                (
                    "409",
                    "The version is the active one (`driver_version_active`) or a driver \
                     call runs on it (`driver_version_in_use`).",
                ),
            ],
        ],
    ));
    if let Some(p) = op["parameters"].as_array_mut() {
        p.push(json!({
            "name": "digest", "in": "path", "required": true,
            "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}
        }));
    }
    op
}

fn install_driver() -> Value {
    let mut op = named(operation(
        "installDriver",
        "Upload a driver component (the raw bytes as the body). It is validated (size, \
         compile time, the ferry:driver world at a compatible version, a first \
         `capabilities` call), stored and, unless `activate=false`, made active at once. \
         Components compile one at a time per host. A refused component changes \
         nothing and leaves nothing stored. A new version may delete the driver's oldest \
         inactive versions beyond `driver_versions_kept`.",
        &[],
        None,
        (
            "201",
            ok("A new version was installed.", "DriverVersionResult"),
        ),
        &[
            AUTH_ERRORS,
            ADMIN_ERRORS,
            &[
                (
                    "400",
                    "Empty body (`empty_body`) or bad driver name (`invalid_name`).",
                ),
                (
                    "413",
                    "Larger than the component limit (`component_too_large`).",
                ),
                (
                    "422",
                    "Refused: `not_wasm`, `core_module`, `not_a_component`, `wrong_world`, \
                     `incompatible_world_version`, `compile_failed`, `compile_timeout`, \
                     `smoke_call_failed`.",
                ),
                ("429", COMPILE_BUSY),
            ],
        ],
    ));
    op = with_retry_after(op);
    op["responses"]["200"] = ok(
        "That version was installed already (same digest).",
        "DriverVersionResult",
    );
    if let Some(p) = op["parameters"].as_array_mut() {
        p.push(json!({
            "name": "activate", "in": "query", "required": false,
            "schema": {"type": "boolean", "default": true}
        }));
    }
    op["requestBody"] = json!({"required": true, "content": {
        "application/wasm": {"schema": {"type": "string", "format": "binary"}}
    }});
    op
}

fn schemas() -> Value {
    let name = json!({"type": "string", "minLength": 1, "maxLength": 255,
        "description": "Shown to people as it is, so refused with `invalid_name` when it \
            holds a control character (C0, C1), a format character (bidirectional \
            embeddings, overrides, isolates and marks, zero-width characters, the soft \
            hyphen, U+FEFF), a line or paragraph separator, a private-use character or a \
            noncharacter."});
    let size = json!({"type": "integer", "format": "int64", "minimum": 512, "multipleOf": 512});
    let mode = json!({"type": "string", "enum": ["rw", "ro"]});
    let time = json!({"type": "string", "format": "date-time"});
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable."},
                    "message": {"type": "string", "description": "For people."}
                }
            }}
        },
        "Health": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"const": "ok"}}
        },
        "Array": {
            "type": "object",
            "required": ["name", "driver", "pools", "zoned_with", "capacity_bytes", "used_bytes",
                         "filesystem_free_bytes", "filesystem_total_bytes"],
            "properties": {
                "name": {"type": "string"},
                "driver": {"type": "string"},
                "pools": {"type": "array", "items": {"type": "string"}},
                "zoned_with": {"type": "array", "items": {"type": "string"},
                               "description": "Arrays connected to this one over the fabric."},
                "capacity_bytes": {"type": "integer", "format": "int64"},
                "used_bytes": {"type": "integer", "format": "int64",
                               "description": "Bytes provisioned to LUNs."},
                "filesystem_free_bytes": {"type": ["integer", "null"], "format": "int64",
                    "description": "Bytes still free on the file system holding the array's \
                    LUN files, as an unprivileged writer may use them (statvfs `f_bavail`); \
                    null when it cannot be measured. A volume larger than this is refused \
                    (`insufficient_space`)."},
                "filesystem_total_bytes": {"type": ["integer", "null"], "format": "int64",
                    "description": "Size of that file system; null when it cannot be measured."}
            }
        },
        "ArrayList": {
            "type": "object", "required": ["arrays"],
            "properties": {"arrays": {"type": "array", "items": schema("Array")}}
        },
        "CreateVolume": {
            "type": "object", "required": ["name", "size_bytes", "array"],
            "additionalProperties": false,
            "properties": {
                "name": name,
                "size_bytes": size,
                "array": {"type": "string"},
                "pool": {"type": ["string", "null"],
                         "description": "The array's first pool when absent."}
            }
        },
        "AttachVolume": {
            "type": "object", "required": ["server"],
            "additionalProperties": false,
            "properties": {
                "server": name,
                "mode": {"anyOf": [mode, {"type": "null"}],
                         "description": "`rw` when absent."}
            }
        },
        "Attachment": {
            "type": "object", "required": ["id", "server", "mode", "uri"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "server": {"type": "string"},
                "mode": mode,
                "uri": {"type": ["string", "null"], "format": "uri",
                        "description": "`nbd://host:port/EXPORT` (`nbds://` when the NBD server requires TLS), for any NBD client. The export name is a 256-bit secret, the credential that opens the export (the server's export list is always empty); null for reader tokens, which never receive it."}
            }
        },
        "Volume": {
            "type": "object",
            "required": ["id", "name", "size_bytes", "status", "migration_status",
                         "attachable", "array", "pool", "attachments", "created_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid",
                       "description": "Never changes, also across migrations."},
                "name": {"type": "string"},
                "size_bytes": size,
                "status": {"type": "string", "enum": [
                    "creating", "available", "in-use", "deleting", "migrating", "error"]},
                "migration_status": {"enum": [
                    null, "starting", "migrating", "migrating_attachable", "aborting",
                    "completing", "success", "error", "aborted"],
                    "description": "Status of the last migration; null if never migrated."},
                "attachable": {"type": "boolean"},
                "array": {"type": "string"},
                "pool": {"type": "string"},
                "attachments": {"type": "array", "items": schema("Attachment")},
                "created_at": time
            }
        },
        "Event": {
            "type": "object", "required": ["seq", "kind", "to", "at"],
            "description": "One change a client could observe. `volume` events: create \
                (`from` null, `to` `creating`, then `available` or `error`), delete (`to` \
                `deleting`, then `deleted` or `error`), attach and detach (with `attachment` \
                and `server`), reset-status, forced delete, and the status changes of \
                migrations. The log keeps the newest `[events] max_count` events, none older \
                than `max_age_secs`.",
            "properties": {
                "seq": {"type": "integer"},
                "kind": {"enum": ["volume", "migration", "driver"]},
                "volume": {"type": ["string", "null"], "format": "uuid"},
                "migration": {"type": ["string", "null"], "format": "uuid",
                              "description": "The migration running when it happened, if any."},
                "attachment": {"type": "string", "format": "uuid",
                               "description": "Attach and detach events: the attachment."},
                "server": {"type": "string",
                           "description": "Attach and detach events: its server."},
                "driver": {"type": "string",
                           "description": "Driver events: the driver's name. `to` is the \
                           version's digest, `from` the digest it replaced, `reason` \
                           `installed`, `activated`, `deleted` (by request) or `pruned` \
                           (by `driver_versions_kept`)."},
                "from": {"type": ["string", "null"]},
                "to": {"type": "string"},
                "at": time,
                "reason": {"type": ["string", "null"]}
            }
        },
        "EventList": {
            "type": "object", "required": ["events"],
            "properties": {"events": {"type": "array", "items": schema("Event")}}
        },
        "MigrateVolume": {
            "type": "object", "required": ["array"], "additionalProperties": false,
            "properties": {
                "array": {"type": "string"},
                "pool": {"type": ["string", "null"]},
                "force_host_copy": {"type": "boolean"},
                "lock_volume": {"type": ["boolean", "null"],
                    "description": "Default false. When true, attach, detach and abort requests are refused with `volume_locked` while the migration runs (abort passes with `?force=true`)."}
            }
        },
        "ResetStatus": {
            "type": "object", "required": ["status"], "additionalProperties": false,
            "properties": {
                "status": {"enum": ["available", "in-use", "error"]},
                "migration_status": {"enum": ["error", null],
                    "description": "Absent: a running migration is recorded as `error`, a \
                    finished one is left as it is. `\"error\"`: the last migration is \
                    recorded as failed. null: the volume forgets its last migration."},
                "discard_unhydrated": {"type": "boolean", "default": false,
                    "description": "The volume's LUN still fills from the migration's \
                    source: end the fill and keep what arrived; the rest reads as zeros."}
            }
        },
        "ResetOutcome": {
            "type": "object", "required": ["volume", "stopped_migration", "notes"],
            "properties": {
                "volume": schema("Volume"),
                "stopped_migration": {"type": ["string", "null"], "format": "uuid"},
                "notes": {"type": "array", "items": {"type": "string"},
                          "description": "What was stopped, and what was left where."}
            }
        },
        "ForceDeleted": {
            "type": "object",
            "required": ["volume_id", "stopped_migration", "deleted_on", "warnings"],
            "properties": {
                "volume_id": {"type": "string", "format": "uuid"},
                "stopped_migration": {"type": ["string", "null"], "format": "uuid"},
                "deleted_on": {"type": "array", "items": {"type": "string"},
                               "description": "`array/pool` of each LUN deleted."},
                "warnings": {"type": "array", "items": {"type": "string"},
                             "description": "LUNs left behind, connections not ended."}
            }
        },
        "MigrationAccepted": {
            "type": "object", "required": ["migration_id", "message"],
            "properties": {
                "migration_id": {"type": "string", "format": "uuid"},
                "message": {"type": "string"}
            }
        },
        "Migration": {
            "type": "object",
            "required": ["volume_id", "migration_status", "path", "progress", "error",
                         "started_at", "finished_at"],
            "properties": {
                "volume_id": {"type": "string", "format": "uuid"},
                "migration_id": {"type": ["string", "null"], "format": "uuid"},
                "migration_status": {"enum": [
                    null, "starting", "migrating", "migrating_attachable", "aborting",
                    "completing", "success", "error", "aborted"]},
                "path": {"enum": [null, "source-driver", "target-driver",
                                  "target-driver-async", "host-copy"]},
                "phase": {"enum": [null, "admitted", "source_driver", "target_driver",
                                   "host_copy_prepare", "host_copy", "hydrating",
                                   "copying_back", "return_prepare", "returning",
                                   "cleanup_source", "rolling_back", "finished"],
                          "description": "The step of the state machine (ARCHITECTURE.md draws it)."},
                "source": {"type": ["object", "null"]},
                "destination": {"type": ["object", "null"]},
                "progress": {
                    "type": ["object", "null"], "required": ["done_bytes", "total_bytes", "percent"],
                    "description": "The current copy: the migration's, or while `aborting` the copy back. Its total is fixed when the copy starts; `done_bytes` never decreases within it. Null if never migrated.",
                    "properties": {
                        "done_bytes": {"type": "integer"},
                        "total_bytes": {"type": "integer"},
                        "percent": {"type": "number"}
                    }
                },
                "error": {"type": ["string", "null"],
                          "description": "Why it failed (`error`), or why the step now retried failed; null on success."},
                "warnings": {"type": "array", "items": {"type": "string"},
                             "description": "What went wrong without failing it (a LUN left behind, a broken driver promise, an abort that could not be honoured)."},
                "attempts": {"type": "integer",
                             "description": "Failed attempts of the step now retried (after the switch); 0 otherwise."},
                "abort_requested": {"type": "boolean"},
                "lock_volume": {"type": "boolean"},
                "started_at": {"type": ["string", "null"]},
                "finished_at": {"type": ["string", "null"]}
            }
        },
        "VolumeList": {
            "type": "object", "required": ["volumes"],
            "properties": {"volumes": {"type": "array", "items": schema("Volume")}}
        },
        "DriverVersion": {
            "type": "object", "required": ["digest", "installed_at"],
            "properties": {
                "digest": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                           "description": "SHA-256 of the component bytes."},
                "installed_at": time
            }
        },
        "Driver": {
            "type": "object", "required": ["name", "active_digest", "versions"],
            "properties": {
                "name": {"type": "string"},
                "active_digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "versions": {"type": "array", "items": schema("DriverVersion")}
            }
        },
        "ActivateDriver": {
            "type": "object", "required": ["digest"], "additionalProperties": false,
            "properties": {"digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
        },
        "DriverVersionResult": {
            "type": "object",
            "required": ["name", "digest", "active", "created", "capabilities", "installed_at"],
            "properties": {
                "name": {"type": "string"},
                "digest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "active": {"type": "boolean"},
                "created": {"type": "boolean",
                            "description": "false when this digest was installed before."},
                "capabilities": {
                    "type": "object",
                    "properties": {
                        "take_over": {"type": "boolean"},
                        "async_target_migration": {"type": "boolean"},
                        "source_migration": {"type": "boolean"},
                        "sparse": {"type": "boolean"}
                    }
                },
                "installed_at": time
            }
        },
        "DriverList": {
            "type": "object", "required": ["drivers"],
            "properties": {"drivers": {"type": "array", "items": schema("Driver")}}
        }
    })
}

/// The whole document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Ferry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Moves block volumes between storage arrays of different vendors \
                while they stay usable. Reads need any valid bearer token; every call that \
                changes state needs an admin token; `/metrics` is as the host's `[http] \
                metrics` setting says (by default any valid token). Every error is \
                `{\"error\": {\"code\": ..., \"message\": ...}}`."
        },
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "The admin token is in `DATA/admin.token`; read-only tokens \
                    in `DATA/reader.token`."
            }},
            "schemas": schemas()
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::routes::Access;

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let doc = document();
        let routes = crate::api::routes_table();
        let registered: BTreeSet<(String, String)> = routes
            .iter()
            .map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned()))
            .collect();
        assert_eq!(
            registered.len(),
            routes.len(),
            "a route is registered twice"
        );
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        assert_eq!(registered, documented);
    }

    #[test]
    fn documented_security_matches_each_routes_access() {
        let doc = document();
        for r in crate::api::routes_table() {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let responses = op["responses"].as_object().unwrap();
            match r.access {
                Access::Public => assert_eq!(op["security"], json!([]), "{}", r.path),
                Access::Configured => {
                    assert_eq!(op["security"], json!([{"bearer": []}, {}]), "{}", r.path);
                    assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
                    assert!(responses.contains_key("404"), "{} {}", r.method, r.path);
                }
                Access::Read | Access::Admin => {
                    assert!(op.get("security").is_none(), "{}", r.path);
                    assert!(responses.contains_key("401"), "{} {}", r.method, r.path);
                }
            }
            assert_eq!(
                responses.contains_key("403"),
                r.access == Access::Admin,
                "{} {}",
                r.method,
                r.path
            );
            let params: Vec<_> = op["parameters"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: Vec<_> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(params, in_path, "{}", r.path);
        }
    }

    #[test]
    fn the_driver_registry_documents_its_refusals_and_retry_after() {
        let doc = document();
        let del = &doc["paths"]["/v1/drivers/{name}/versions/{digest}"]["delete"];
        let conflict = del["responses"]["409"]["description"].as_str().unwrap();
        assert!(conflict.contains("`driver_version_active`"), "{conflict}");
        assert!(conflict.contains("`driver_version_in_use`"), "{conflict}");
        assert!(del["responses"].get("204").is_some());
        for path in ["/v1/drivers/{name}", "/v1/drivers/{name}/activate"] {
            let item = doc["paths"][path].as_object().unwrap();
            let op = item.values().next().unwrap();
            let busy = &op["responses"]["429"];
            assert!(
                busy["description"]
                    .as_str()
                    .unwrap()
                    .contains("`compile_busy`"),
                "{path}"
            );
            assert!(busy["headers"].get("Retry-After").is_some(), "{path}");
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }
}
