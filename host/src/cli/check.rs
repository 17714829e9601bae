//! `ferry driver check FILE`: runs the conformance kit on a component and
//! prints its report as a table, or as JSON with `--json`. Exit status 0
//! when every check passes, 1 when one fails, 2 when the file is no usable
//! component (or the scratch arrays cannot be made).

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::table::{Table, sanitize};
use super::{EXIT_API, EXIT_USAGE};
use crate::config::DriverLimits;
use crate::conformance::{self, CheckOptions, Report, Status};

/// Runs the checks with `limits` on every call and prints the outcome.
pub fn run(file: &Path, json: bool, limits: DriverLimits) -> ExitCode {
    let shown = sanitize(&file.display().to_string());
    let options = CheckOptions {
        limits,
        ..CheckOptions::default()
    };
    let report = match conformance::check_file(file, &options) {
        Ok(r) => r,
        Err(e) => {
            if json {
                let v = json!({
                    "file": file.display().to_string(),
                    "error": {"code": e.code(), "message": e.to_string()},
                });
                println!("{}", pretty(&v));
            }
            eprintln!(
                "error: {shown}: {} ({})",
                sanitize(&e.to_string()),
                e.code()
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if json {
        println!("{}", pretty(&report_json(file, &report)));
    } else {
        print!("{}", render(&shown, &report));
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_API)
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The report with the file and the overall verdict on top.
fn report_json(file: &Path, report: &Report) -> Value {
    let mut v = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("file".into(), json!(file.display().to_string()));
        map.insert("passed".into(), json!(report.passed()));
    }
    v
}

/// The table of checks and a one-line summary.
fn render(file: &str, report: &Report) -> String {
    let mut t = Table::new(&["CHECK", "RESULT", "REASON"]);
    for c in &report.checks {
        t.row([c.name.as_str(), c.status.as_str(), c.reason.as_str()]);
    }
    let count = |s: Status| report.checks.iter().filter(|c| c.status == s).count();
    let digest: String = report.digest.chars().take(12).collect();
    let digest = if digest.is_empty() {
        String::new()
    } else {
        format!(" (sha256 {digest})")
    };
    format!(
        "{}\n{file}{digest}: {} passed, {} failed, {} skipped\n",
        t.render(),
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Skip)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{CheckName, CheckResult};

    #[test]
    fn the_table_lists_every_check_and_counts_them() {
        let check = |name, status, reason: &str| CheckResult {
            name,
            status,
            reason: reason.into(),
        };
        let report = Report {
            digest: "0123456789abcdef".into(),
            capabilities: None,
            deadline_ms: 5000,
            memory_limit_bytes: 64 << 20,
            checks: vec![
                check(CheckName::Loads, Status::Pass, "ok"),
                check(CheckName::MigrationData, Status::Skip, "claims none"),
                check(
                    CheckName::WithinLimits,
                    Status::Fail,
                    "delete-volume trapped",
                ),
            ],
            calls: vec![],
        };
        let out = render("d.wasm", &report);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "CHECK           RESULT  REASON");
        assert_eq!(lines[3], "within-limits   fail    delete-volume trapped");
        assert_eq!(
            lines[5],
            "d.wasm (sha256 0123456789ab): 1 passed, 1 failed, 1 skipped"
        );
        let v = report_json(Path::new("d.wasm"), &report);
        assert_eq!(v["passed"], false);
        assert_eq!(v["file"], "d.wasm");
        assert_eq!(v["checks"][2]["status"], "fail");
    }
}
