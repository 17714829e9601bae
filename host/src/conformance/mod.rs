//! The driver conformance kit behind `ferry driver check`: runs a driver
//! component in-process, through the real [`DriverRuntime`], against scratch
//! file-backed arrays, and reports check by check whether it honours the
//! contract of `wit/driver.wit`. A vendor runs it in CI before shipping a
//! driver; the host never runs it on its own arrays.
//!
//! Every check uses volumes of its own, so one broken call fails the checks
//! that depend on it and no others. Calls that trap, time out or run out of
//! memory fail their own check and, named, the limits check.

mod lifecycle;
mod manage;
mod migration;
mod probe;
mod report;
mod scratch;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::report::{CallOutcome, CallRecord, CheckName, CheckResult, Report, Status};

use self::probe::{Probe, describe};
use self::report::{Findings, skip};
use self::scratch::{DRIVER, Scratch};
use crate::config::DriverLimits;
use crate::runtime::{Capabilities, DriverRuntime, MemoryStateStore, RuntimeConfig, RuntimeError};

/// How a run is set up.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Per-call deadline and memory limit; the host's defaults unless set.
    pub limits: DriverLimits,
    /// Directory to make the scratch arrays in; the system's temporary
    /// directory when `None`.
    pub scratch_parent: Option<PathBuf>,
}

/// Why no report could be made: the input is unusable or the host could not
/// set up the scratch world.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The runtime refused the bytes before they could run at all: not a
    /// component, too large, or not compilable.
    #[error("{0}")]
    Refused(RuntimeError),
    /// The scratch world or the runtime could not be set up.
    #[error("cannot {what}: {message}")]
    Scratch {
        /// What the kit was doing.
        what: String,
        /// What went wrong.
        message: String,
    },
}

impl CheckError {
    /// A stable snake_case code: the runtime's refusal code, or
    /// `unreadable` / `scratch_failed`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "unreadable",
            Self::Refused(e) => e.code(),
            Self::Scratch { .. } => "scratch_failed",
        }
    }
}

/// Checks the component in the file at `path`.
pub fn check_file(path: &Path, options: &CheckOptions) -> Result<Report, CheckError> {
    let bytes = std::fs::read(path).map_err(|source| CheckError::Read {
        path: path.to_owned(),
        source,
    })?;
    check_component(&bytes, options)
}

/// Checks the component `bytes`. A component the runtime cannot compile is
/// an error; one that compiles but does not target the driver world, or
/// fails its first `capabilities` call, is a report whose `loads` check
/// fails.
pub fn check_component(bytes: &[u8], options: &CheckOptions) -> Result<Report, CheckError> {
    let scratch = Scratch::new(options.scratch_parent.as_deref())?;
    let cfg = RuntimeConfig {
        limits: options.limits,
        hydrations: Some(scratch.hydrations.clone()),
        ..RuntimeConfig::default()
    };
    let rt = DriverRuntime::new(cfg, Arc::new(MemoryStateStore::default())).map_err(|e| {
        CheckError::Scratch {
            what: "set up the driver runtime".into(),
            message: e.to_string(),
        }
    })?;
    let mut report = Report {
        digest: String::new(),
        capabilities: None,
        deadline_ms: options.limits.deadline_ms,
        memory_limit_bytes: options.limits.memory_bytes,
        checks: Vec::new(),
        calls: Vec::new(),
    };
    let installed = match rt.install(DRIVER, bytes) {
        Ok(i) => i,
        Err(
            e @ (RuntimeError::WrongWorld(_)
            | RuntimeError::IncompatibleVersion { .. }
            | RuntimeError::SmokeFailed(_)),
        ) => {
            report.checks.push(CheckResult {
                name: CheckName::Loads,
                status: Status::Fail,
                reason: format!("the runtime refused it: {e}"),
            });
            for name in &CheckName::ALL[1..] {
                report.checks.push(skip(*name, "the driver did not load"));
            }
            return Ok(report);
        }
        Err(e @ RuntimeError::Engine(_)) => {
            return Err(CheckError::Scratch {
                what: "set up the driver runtime".into(),
                message: e.to_string(),
            });
        }
        Err(e) => return Err(CheckError::Refused(e)),
    };
    report.digest = installed.digest;

    let log = RefCell::new(Vec::new());
    let probe = |check| Probe::new(&rt, check, &log);
    let (loads, caps) = loads(
        &probe(CheckName::Loads),
        &scratch,
        installed.capabilities,
        installed.contract,
    );
    report.checks.push(loads);
    match caps {
        None => {
            for name in &CheckName::ALL[1..CheckName::ALL.len() - 1] {
                report.checks.push(skip(*name, "the driver did not load"));
            }
        }
        Some(caps) => {
            report.capabilities = Some(caps);
            report.checks.extend([
                lifecycle::life_cycle(&probe(CheckName::LifeCycle), &scratch),
                lifecycle::idempotent_retries(&probe(CheckName::IdempotentRetries), &scratch),
                migration::declines_unsupported(
                    &probe(CheckName::DeclinesUnsupported),
                    &scratch,
                    &caps,
                ),
                migration::migration_data(&probe(CheckName::MigrationData), &scratch, &caps),
                manage::manage_existing(&probe(CheckName::ManageExisting), &scratch),
                lifecycle::errors_not_traps(&probe(CheckName::ErrorsNotTraps), &scratch),
            ]);
        }
    }
    report.calls = log.into_inner();
    let peak = rt
        .call_stats()
        .get(DRIVER)
        .map(|s| s.memory_high_water_bytes);
    report.checks.push(within_limits(&report, peak));
    Ok(report)
}

/// The driver loaded; `capabilities` must answer for an array too, and
/// answer what it answered when loaded.
fn loads(
    probe: &Probe<'_>,
    scratch: &Scratch,
    at_load: Capabilities,
    contract: crate::runtime::Contract,
) -> (CheckResult, Option<Capabilities>) {
    let name = CheckName::Loads;
    let mut f = Findings::default();
    let caps = match probe.capabilities(&scratch.scope_a()) {
        Ok(c) => c,
        Err(e) => {
            f.fail(format!(
                "capabilities answered when loaded but then {}",
                describe(&e)
            ));
            return (f.verdict(name), None);
        }
    };
    if caps != at_load {
        f.fail(format!(
            "capabilities changed between two calls: {} when loaded, {} for an array",
            at_load.describe(),
            caps.describe()
        ));
    }
    if caps.live_move && !caps.source_migration {
        f.fail(
            "it declares live-move without source-migration: live-move says how \
             migrate-volume moves an attached volume, and the host never calls it"
                .to_owned(),
        );
    }
    f.note(format!(
        "a ferry:driver@{contract} component; capabilities: {}",
        caps.describe()
    ));
    (f.verdict(name), Some(caps))
}

/// Fails when any call of the run trapped, timed out or ran out of memory,
/// naming each; otherwise reports the slowest call.
fn within_limits(report: &Report, peak_memory: Option<u64>) -> CheckResult {
    let name = CheckName::WithinLimits;
    if report.calls.is_empty() {
        return skip(name, "no call was made");
    }
    let mut f = Findings::default();
    for c in report.calls.iter().filter(|c| c.is_fault()) {
        if let CallOutcome::Fault { code, .. } = &c.outcome {
            let what = match code.as_str() {
                "driver_timeout" => "ran past the deadline",
                "driver_out_of_memory" => "ran out of memory",
                _ => "trapped",
            };
            f.fail(format!("{} ({}) {what}", c.call, c.check));
        }
    }
    if let Some(slow) = report.slowest_call() {
        f.note(format!(
            "{} calls within {} ms and {} MiB each; slowest: {} ({}) {} ms; peak memory {}",
            report.calls.len(),
            report.deadline_ms,
            report.memory_limit_bytes >> 20,
            slow.call,
            slow.check,
            slow.elapsed_ms,
            peak_memory.map_or_else(
                || "not measured".to_owned(),
                |b| format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
            )
        ));
    }
    f.verdict(name)
}

#[cfg(test)]
mod tests;
