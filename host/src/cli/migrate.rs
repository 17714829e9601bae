//! `ferry volume migrate|migration|abort-migration` and `ferry events`.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Client, ClientError};
use super::commands::{Output, decode};
use super::table::{format_size, key_values};
use crate::model::SourceRemoval;
use crate::service::MigrationView;

/// A string the server sent, escaped for the terminal (see
/// [`super::table::sanitize`]); `-` when absent.
fn text(v: &Value) -> String {
    v.as_str()
        .map_or_else(|| "-".to_owned(), super::table::sanitize)
}

/// One redrawn progress line: bar, percent, status and path.
pub(super) fn progress_line(m: &MigrationView) -> String {
    let (done, total, percent) = m
        .progress
        .as_ref()
        .map_or((0, 0, 0.0), |p| (p.done_bytes, p.total_bytes, p.percent));
    let percent = percent.clamp(0.0, 100.0);
    let filled = (percent / 5.0).round() as usize;
    let name = |v: Value| text(&v);
    format!(
        "[{}{}] {percent:5.1}%  {}  {}  {}/{}",
        "#".repeat(filled),
        ".".repeat(20 - filled.min(20)),
        name(serde_json::to_value(m.migration_status).unwrap_or_default()),
        name(serde_json::to_value(m.path).unwrap_or_default()),
        format_size(done),
        format_size(total),
    )
}

fn details(m: &MigrationView) -> String {
    let v = |x: Value| text(&x);
    key_values(&[
        ("volume", m.volume_id.to_string()),
        (
            "migration",
            m.migration_id.map_or("-".into(), |i| i.to_string()),
        ),
        (
            "status",
            v(serde_json::to_value(m.migration_status).unwrap_or_default()),
        ),
        ("path", v(serde_json::to_value(m.path).unwrap_or_default())),
        (
            "from",
            m.source
                .as_ref()
                .map_or("-".into(), |p| format!("{}/{}", p.array, p.pool)),
        ),
        (
            "to",
            m.destination
                .as_ref()
                .map_or("-".into(), |p| format!("{}/{}", p.array, p.pool)),
        ),
        (
            "progress",
            m.progress
                .as_ref()
                .map_or("-".into(), |p| format!("{:.1}%", p.percent)),
        ),
        (
            "switched",
            match m.switched_attachments.len() {
                0 => "-".into(),
                1 => "1 attachment".into(),
                n => format!("{n} attachments"),
            },
        ),
        (
            "removal",
            match m.source_removal {
                None => "-".into(),
                Some(SourceRemoval::Pending) => "source LUN being removed".into(),
                Some(SourceRemoval::Done) => "source LUN removed".into(),
                Some(SourceRemoval::Failed) => "source LUN left behind (see warnings)".into(),
            },
        ),
        ("error", m.error.clone().unwrap_or_else(|| "-".into())),
        (
            "attempts",
            if m.attempts == 0 {
                "-".into()
            } else {
                m.attempts.to_string()
            },
        ),
        (
            "warnings",
            if m.warnings.is_empty() {
                "-".into()
            } else {
                m.warnings.join("; ")
            },
        ),
        (
            "started",
            m.started_at.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "finished",
            m.finished_at.clone().unwrap_or_else(|| "-".into()),
        ),
    ])
}

/// The switches of `ferry volume migrate`.
#[derive(Debug, Clone, Copy)]
pub struct MigrateFlags {
    /// Skip the drivers' paths.
    pub force_host_copy: bool,
    /// Refuse attach and detach while it runs.
    pub lock_volume: bool,
    /// Follow the progress to the end.
    pub wait: bool,
}

/// `ferry volume migrate`.
pub fn migrate(
    c: &Client,
    out: Output,
    id: Uuid,
    to: &str,
    pool: Option<String>,
    flags: MigrateFlags,
) -> Result<(), ClientError> {
    let MigrateFlags {
        force_host_copy,
        lock_volume,
        wait,
    } = flags;
    // Always sent, so the volume is locked exactly when the flag says.
    let mut body = json!({
        "array": to,
        "force_host_copy": force_host_copy,
        "lock_volume": lock_volume,
    });
    if let Some(pool) = pool {
        body["pool"] = json!(pool);
    }
    let accepted = c.post(&format!("/v1/volumes/{id}/migrate"), &body)?;
    if !out.json(&accepted)? {
        println!("{}", text(&accepted["message"]));
    }
    if !wait {
        return Ok(());
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last = String::new();
    loop {
        let m: MigrationView = decode(c, c.get(&format!("/v1/volumes/{id}/migration"))?)?;
        let line = progress_line(&m);
        if line != last {
            let mut err = std::io::stderr().lock();
            let _ = if tty {
                write!(err, "\r{line}\x1b[K")
            } else {
                writeln!(err, "{line}")
            };
            let _ = err.flush();
            last = line;
        }
        let status = serde_json::to_value(m.migration_status).unwrap_or_default();
        match status.as_str() {
            Some("success") => {
                if tty {
                    eprintln!();
                }
                return Ok(());
            }
            Some(s @ ("error" | "aborted")) => {
                if tty {
                    eprintln!();
                }
                return Err(ClientError::Api {
                    status: 200,
                    code: format!("migration_{s}"),
                    message: m
                        .error
                        .unwrap_or_else(|| format!("the migration ended {s}")),
                });
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `ferry volume migration`.
pub fn show(c: &Client, out: Output, id: Uuid) -> Result<(), ClientError> {
    let v = c.get(&format!("/v1/volumes/{id}/migration"))?;
    if !out.json(&v)? {
        print!("{}", details(&decode(c, v)?));
    }
    Ok(())
}

/// `ferry volume abort-migration`.
pub fn abort(c: &Client, out: Output, id: Uuid, force: bool) -> Result<(), ClientError> {
    let query = if force { "?force=true" } else { "" };
    let v = c.post(
        &format!("/v1/volumes/{id}/migration/abort{query}"),
        &json!({}),
    )?;
    if !out.json(&v)? {
        println!(
            "abort accepted; the migration is {} and ends aborted, with the volume on its source",
            text(&v["migration_status"])
        );
    }
    Ok(())
}

/// `ferry events`: follows the stream until interrupted.
pub fn events(c: &Client, out: Output, after: Option<u64>) -> Result<(), ClientError> {
    let path = after.map_or_else(
        || "/v1/events".to_owned(),
        |a| format!("/v1/events?after={a}"),
    );
    c.follow(&path, |line| {
        let Some(data) = line.strip_prefix("data:") else {
            return true;
        };
        let Ok(e) = serde_json::from_str::<Value>(data.trim()) else {
            return true;
        };
        if out.json {
            println!("{e}");
        } else {
            println!(
                "{:>6} {} {:<9} {} {} -> {}{}",
                e["seq"],
                text(&e["at"]),
                text(&e["kind"]),
                text(&e["volume"]),
                text(&e["from"]),
                text(&e["to"]),
                e["reason"]
                    .as_str()
                    .map(|r| format!("  ({})", super::table::sanitize(r)))
                    .unwrap_or_default()
            );
        }
        let _ = std::io::stdout().flush();
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MigrationPath, MigrationStatus};
    use crate::service::Progress;

    #[test]
    fn progress_line_draws_a_bar() {
        let m = MigrationView {
            volume_id: Uuid::nil(),
            migration_id: None,
            migration_status: Some(MigrationStatus::Migrating),
            path: Some(MigrationPath::HostCopy),
            phase: None,
            source: None,
            destination: None,
            progress: Some(Progress {
                done_bytes: 1 << 30,
                total_bytes: 4 << 30,
                percent: 25.0,
            }),
            error: None,
            warnings: vec![],
            attempts: 0,
            source_removal: None,
            abort_requested: false,
            lock_volume: false,
            switched_attachments: vec![],
            started_at: None,
            finished_at: None,
        };
        let line = progress_line(&m);
        assert!(line.starts_with("[#####..............."), "{line}");
        assert!(
            line.contains(" 25.0%") && line.contains("migrating") && line.contains("host-copy"),
            "{line}"
        );
    }
}
