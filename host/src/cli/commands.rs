//! The client commands: `array`, `volume`, `driver list|install|activate|delete`.
//! Each calls the API and prints a table, or the server's JSON with
//! `--json`.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::client::{Client, ClientError};
use super::table::{Table, format_size, key_values, sanitize};
use super::{ArrayCmd, MigrationStatusArg, ModeArg, ResetStatusArg, VolumeCmd};
use crate::runtime::Capabilities;
use crate::service::{
    ArrayView, AttachmentView, DriverView, ForceDeleted, ResetOutcome, VolumeView,
};

/// How to print answers.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// The server's JSON instead of tables.
    pub json: bool,
}

impl Output {
    pub(super) fn json(self, value: &Value) -> Result<bool, ClientError> {
        if self.json {
            let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
            println!("{text}");
        }
        Ok(self.json)
    }
}

pub(super) fn decode<T: DeserializeOwned>(c: &Client, value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Protocol {
        url: c.base().to_owned(),
        detail: format!("unexpected JSON shape: {e}"),
    })
}

fn field(mut value: Value, name: &str) -> Value {
    value.get_mut(name).map(Value::take).unwrap_or(Value::Null)
}

/// `ferry array ...`
pub fn array(c: &Client, out: Output, cmd: ArrayCmd) -> Result<(), ClientError> {
    match cmd {
        ArrayCmd::List => {
            let v = c.get("/v1/arrays")?;
            if out.json(&v)? {
                return Ok(());
            }
            let arrays: Vec<ArrayView> = decode(c, field(v, "arrays"))?;
            print!("{}", arrays_table(&arrays).render());
            Ok(())
        }
    }
}

fn arrays_table(arrays: &[ArrayView]) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "DRIVER",
        "POOLS",
        "ZONED WITH",
        "CAPACITY",
        "USED",
        "FS FREE",
    ]);
    for a in arrays {
        t.row([
            a.name.clone(),
            a.driver.clone(),
            a.pools.join(","),
            dash_if_empty(a.zoned_with.join(",")),
            format_size(a.capacity_bytes),
            format_size(a.used_bytes),
            a.filesystem_free_bytes
                .map_or_else(|| "-".to_owned(), format_size),
        ]);
    }
    t
}

/// `ferry volume ...`
pub fn volume(c: &Client, out: Output, cmd: VolumeCmd) -> Result<(), ClientError> {
    match cmd {
        VolumeCmd::Migrate {
            id,
            to,
            pool,
            force_host_copy,
            lock_volume,
            wait,
        } => super::migrate::migrate(
            c,
            out,
            id,
            &to,
            pool,
            super::migrate::MigrateFlags {
                force_host_copy,
                lock_volume,
                wait,
            },
        )?,
        VolumeCmd::Migration { id } => super::migrate::show(c, out, id)?,
        VolumeCmd::AbortMigration { id, force } => super::migrate::abort(c, out, id, force)?,
        VolumeCmd::Create {
            name,
            size,
            array,
            pool,
        } => {
            let mut body = json!({"name": name, "size_bytes": size, "array": array});
            if let Some(pool) = pool {
                body["pool"] = json!(pool);
            }
            let v = c.post("/v1/volumes", &body)?;
            if !out.json(&v)? {
                print!("{}", volume_details(&decode(c, v)?));
            }
        }
        VolumeCmd::Manage {
            name,
            array,
            reference,
            pool,
        } => {
            let mut body = json!({"name": name, "array": array, "reference": reference});
            if let Some(pool) = pool {
                body["pool"] = json!(pool);
            }
            let v = c.post("/v1/volumes/manage", &body)?;
            if !out.json(&v)? {
                print!("{}", volume_details(&decode(c, v)?));
            }
        }
        VolumeCmd::Unmanage { id } => {
            c.post_empty(&format!("/v1/volumes/{id}/unmanage"))?;
            if !out.json {
                println!("unmanaged volume {id}: its LUN stays on its array");
            }
        }
        VolumeCmd::List => {
            let v = c.get("/v1/volumes")?;
            if !out.json(&v)? {
                let volumes: Vec<VolumeView> = decode(c, field(v, "volumes"))?;
                if volumes.is_empty() {
                    println!("no volumes");
                } else {
                    print!("{}", volumes_table(&volumes).render());
                }
            }
        }
        VolumeCmd::Show { id } => {
            let v = c.get(&format!("/v1/volumes/{id}"))?;
            if !out.json(&v)? {
                print!("{}", volume_details(&decode(c, v)?));
            }
        }
        VolumeCmd::Delete { id, force: false } => {
            c.delete(&format!("/v1/volumes/{id}"))?;
            if !out.json {
                println!("deleted volume {id}");
            }
        }
        VolumeCmd::Delete { id, force: true } => {
            let v = c.delete_json(&format!("/v1/volumes/{id}?force=true"))?;
            if !out.json(&v)? {
                let d: ForceDeleted = decode(c, v)?;
                println!("deleted volume {id}");
                print!("{}", force_deleted_details(&d));
            }
        }
        VolumeCmd::ResetStatus {
            id,
            status,
            migration_status,
            discard_unhydrated,
        } => {
            let mut body = json!({
                "status": match status {
                    ResetStatusArg::Available => "available",
                    ResetStatusArg::InUse => "in-use",
                    ResetStatusArg::Error => "error",
                },
                "discard_unhydrated": discard_unhydrated,
            });
            match migration_status {
                Some(MigrationStatusArg::Error) => body["migration_status"] = json!("error"),
                Some(MigrationStatusArg::None) => body["migration_status"] = Value::Null,
                None => {}
            }
            let v = c.post(&format!("/v1/volumes/{id}/reset-status"), &body)?;
            if !out.json(&v)? {
                let r: ResetOutcome = decode(c, v)?;
                print!("{}", volume_details(&r.volume));
                if let Some(m) = r.stopped_migration {
                    println!("stopped migration {m}");
                }
                for note in &r.notes {
                    println!("note: {}", super::table::sanitize(note));
                }
            }
        }
        VolumeCmd::Attach { id, server, mode } => {
            let wanted = match mode {
                ModeArg::Rw => "rw",
                ModeArg::Ro => "ro",
            };
            let body = json!({"server": server, "mode": wanted});
            let v = c.post(&format!("/v1/volumes/{id}/attachments"), &body)?;
            if !out.json(&v)? {
                let a: AttachmentView = decode(c, v)?;
                let mode = mode_name(&a);
                print!(
                    "{}",
                    key_values(&[
                        ("attachment", a.id.to_string()),
                        ("volume", id.to_string()),
                        ("server", a.server),
                        ("mode", mode),
                        ("uri", a.uri.unwrap_or_else(|| "-".into())),
                    ])
                );
            }
        }
        VolumeCmd::Detach { id, attachment_id } => {
            c.delete(&format!("/v1/volumes/{id}/attachments/{attachment_id}"))?;
            if !out.json {
                println!("detached {attachment_id} from volume {id}");
            }
        }
    }
    Ok(())
}

fn force_deleted_details(d: &ForceDeleted) -> String {
    let mut out = key_values(&[
        (
            "stopped migration",
            d.stopped_migration.map_or("-".into(), |m| m.to_string()),
        ),
        ("storage deleted on", dash_if_empty(d.deleted_on.join(", "))),
    ]);
    for w in &d.warnings {
        out.push_str(&format!("warning: {}\n", super::table::sanitize(w)));
    }
    out
}

fn mode_name(a: &AttachmentView) -> String {
    serde_json::to_value(a.mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A serde enum as its wire name (`in-use`, `migrating_attachable`).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(Value::Null) => "-".to_owned(),
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

fn dash_if_empty(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

fn volumes_table(volumes: &[VolumeView]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "SIZE",
        "STATUS",
        "MIGRATION",
        "ARRAY",
        "POOL",
        "ATTACHED",
    ]);
    for v in volumes {
        t.row([
            v.id.to_string(),
            v.name.clone(),
            format_size(v.size_bytes),
            wire_name(&v.status),
            wire_name(&v.migration_status),
            v.array.clone(),
            v.pool.clone(),
            v.attachments.len().to_string(),
        ]);
    }
    t
}

fn volume_details(v: &VolumeView) -> String {
    let mut out = key_values(&[
        ("id", v.id.to_string()),
        ("name", v.name.clone()),
        (
            "size",
            format!("{} ({} bytes)", format_size(v.size_bytes), v.size_bytes),
        ),
        ("status", wire_name(&v.status)),
        ("migration", wire_name(&v.migration_status)),
        (
            "attachable",
            if v.attachable { "yes" } else { "no" }.to_owned(),
        ),
        ("array", v.array.clone()),
        ("pool", v.pool.clone()),
        ("created", v.created_at.clone()),
    ]);
    if !v.attachments.is_empty() {
        let mut t = Table::new(&["ATTACHMENT", "SERVER", "MODE", "URI"]);
        for a in &v.attachments {
            t.row([
                a.id.to_string(),
                a.server.clone(),
                mode_name(a),
                a.uri.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

/// `ferry driver list`
pub fn driver_list(c: &Client, out: Output) -> Result<(), ClientError> {
    let v = c.get("/v1/drivers")?;
    if out.json(&v)? {
        return Ok(());
    }
    let drivers: Vec<DriverView> = decode(c, field(v, "drivers"))?;
    if drivers.is_empty() {
        println!("no drivers");
    } else {
        print!("{}", drivers_table(&drivers).render());
    }
    Ok(())
}

/// What the server answers to an install or an activation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct DriverVersionAnswer {
    name: String,
    digest: String,
    active: bool,
    #[serde(default)]
    capabilities: Capabilities,
}

/// `ferry driver install FILE --name N [--no-activate]`: the component's
/// bytes go up as they are; the server validates and compiles them.
pub fn driver_install(
    c: &Client,
    out: Output,
    name: &str,
    component: &[u8],
    activate: bool,
) -> Result<(), ClientError> {
    let (status, v) = c.put_bytes(&install_path(name, activate), "application/wasm", component)?;
    if out.json(&v)? {
        return Ok(());
    }
    let answer: DriverVersionAnswer = decode(c, v)?;
    let headline = if status == 201 {
        "installed a new version"
    } else {
        "this version was installed already"
    };
    println!("{headline}");
    print!("{}", version_details(&answer));
    Ok(())
}

/// `ferry driver activate N DIGEST`
pub fn driver_activate(
    c: &Client,
    out: Output,
    name: &str,
    digest: &str,
) -> Result<(), ClientError> {
    let path = format!("/v1/drivers/{}/activate", path_segment(name));
    let v = c.post(&path, &json!({ "digest": digest }))?;
    if out.json(&v)? {
        return Ok(());
    }
    let answer: DriverVersionAnswer = decode(c, v)?;
    print!("{}", version_details(&answer));
    Ok(())
}

/// `ferry driver delete N DIGEST`
pub fn driver_delete(c: &Client, out: Output, name: &str, digest: &str) -> Result<(), ClientError> {
    c.delete(&version_path(name, digest))?;
    if !out.json(&json!({ "name": name, "digest": digest, "deleted": true }))? {
        println!(
            "deleted version {} of driver {}",
            sanitize(digest),
            sanitize(name)
        );
    }
    Ok(())
}

fn version_path(name: &str, digest: &str) -> String {
    format!(
        "/v1/drivers/{}/versions/{}",
        path_segment(name),
        path_segment(digest)
    )
}

fn install_path(name: &str, activate: bool) -> String {
    let mut path = format!("/v1/drivers/{}", path_segment(name));
    if !activate {
        path.push_str("?activate=false");
    }
    path
}

/// `name` as one URL path segment: anything but unreserved characters is
/// percent-encoded, so a name cannot add segments or a query.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn version_details(a: &DriverVersionAnswer) -> String {
    key_values(&[
        ("driver", a.name.clone()),
        ("digest", a.digest.clone()),
        ("active", if a.active { "yes" } else { "no" }.to_owned()),
        ("capabilities", a.capabilities.describe()),
    ])
}

/// Digests are shown shortened, like commit ids; `--json` has them whole.
const SHORT_DIGEST: usize = 12;

/// One row per installed version; `*` marks the one new calls use.
fn drivers_table(drivers: &[DriverView]) -> Table {
    let mut t = Table::new(&["NAME", "VERSION", "ACTIVE", "INSTALLED"]);
    for d in drivers {
        if d.versions.is_empty() {
            t.row([
                d.name.clone(),
                d.active_digest.chars().take(SHORT_DIGEST).collect(),
                "*".to_owned(),
                "-".to_owned(),
            ]);
        }
        for v in &d.versions {
            let active = if v.digest == d.active_digest { "*" } else { "" };
            t.row([
                d.name.clone(),
                v.digest.chars().take(SHORT_DIGEST).collect(),
                active.to_owned(),
                v.installed_at.clone(),
            ]);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::model::{AttachMode, DriverVersion, VolumeStatus};

    fn volume() -> VolumeView {
        VolumeView {
            id: Uuid::nil(),
            name: "db".into(),
            description: None,
            size_bytes: 1 << 30,
            status: VolumeStatus::InUse,
            migration_status: None,
            attachable: true,
            array: "t1".into(),
            pool: "default".into(),
            attachments: vec![AttachmentView {
                id: Uuid::nil(),
                server: "web1".into(),
                mode: AttachMode::Ro,
                uri: Some("nbd://127.0.0.1:10809/x".into()),
            }],
            created_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn volume_rows_use_wire_names() {
        let out = volumes_table(&[volume()]).render();
        let row = out.lines().nth(1).unwrap();
        let cells: Vec<_> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "00000000-0000-0000-0000-000000000000",
                "db",
                "1",
                "GiB",
                "in-use",
                "-",
                "t1",
                "default",
                "1"
            ]
        );
    }

    #[test]
    fn volume_details_list_attachments() {
        let out = volume_details(&volume());
        assert!(out.contains("status:      in-use\n"), "{out}");
        assert!(
            out.contains("size:        1 GiB (1073741824 bytes)\n"),
            "{out}"
        );
        assert!(
            out.contains("web1    ro    nbd://127.0.0.1:10809/x"),
            "{out}"
        );
    }

    #[test]
    fn arrays_and_drivers_render() {
        let a = ArrayView {
            name: "p1".into(),
            driver: "plain".into(),
            pools: vec!["default".into(), "fast".into()],
            zoned_with: vec![],
            capacity_bytes: 256 << 30,
            used_bytes: 0,
            filesystem_free_bytes: Some(3 << 29),
            filesystem_total_bytes: Some(8 << 30),
            http_allow: Vec::new(),
            nbd_allow: Vec::new(),
            lun_files: true,
            settings: Default::default(),
            secrets: Vec::new(),
        };
        let unmeasured = ArrayView {
            name: "t1".into(),
            filesystem_free_bytes: None,
            filesystem_total_bytes: None,
            ..a.clone()
        };
        let out = arrays_table(&[a, unmeasured]).render();
        assert_eq!(
            out.lines().nth(1).unwrap(),
            "p1    plain   default,fast  -           256 GiB   0 B   1.5 GiB"
        );
        assert_eq!(
            out.lines().nth(2).unwrap(),
            "t1    plain   default,fast  -           256 GiB   0 B   -"
        );

        let d = DriverView {
            name: "plain".into(),
            active_digest: "ab".repeat(32),
            versions: vec![DriverVersion {
                digest: "ab".repeat(32),
                installed_at: "2026-01-01T00:00:00.000Z".into(),
                contract: None,
            }],
        };
        let out = drivers_table(&[d]).render();
        assert_eq!(
            out.lines().nth(1).unwrap(),
            "plain  abababababab  *       2026-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn every_version_is_listed_and_only_the_active_one_marked() {
        let version = |digest: &str, at: &str| DriverVersion {
            digest: digest.repeat(32),
            installed_at: at.into(),
            contract: None,
        };
        let d = DriverView {
            name: "acme".into(),
            active_digest: "cd".repeat(32),
            versions: vec![version("ab", "2026-01-01"), version("cd", "2026-02-01")],
        };
        let out = drivers_table(&[d]).render();
        let rows: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            rows,
            [
                "acme  abababababab          2026-01-01",
                "acme  cdcdcdcdcdcd  *       2026-02-01"
            ]
        );
    }

    #[test]
    fn install_and_activate_answers_render() {
        let v = json!({
            "name": "acme",
            "digest": "ef".repeat(32),
            "active": false,
            "capabilities": {"take_over": true, "async_target_migration": false,
                             "source_migration": false, "sparse": true}
        });
        let a: DriverVersionAnswer = serde_json::from_value(v).unwrap();
        let out = version_details(&a);
        assert!(out.contains("active:        no\n"), "{out}");
        assert!(out.contains("capabilities:  take-over, sparse\n"), "{out}");
        assert_eq!(install_path("acme", true), "/v1/drivers/acme");
        assert_eq!(
            install_path("acme", false),
            "/v1/drivers/acme?activate=false"
        );
        assert_eq!(
            version_path("acme", "ab12"),
            "/v1/drivers/acme/versions/ab12"
        );
        assert_eq!(
            version_path("acme", "../x?y"),
            "/v1/drivers/acme/versions/..%2Fx%3Fy"
        );
        assert_eq!(path_segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(path_segment("vendor-copy_2.0"), "vendor-copy_2.0");
    }
}
