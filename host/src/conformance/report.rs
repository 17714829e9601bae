//! What a conformance run found: one verdict per check, what the driver
//! claimed, and the timing of every call it answered. Serializes to the JSON
//! that `ferry driver check --json` prints.

use serde::Serialize;

use crate::runtime::Capabilities;

/// The checks of the kit, in the order they run and are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    /// The bytes are a component of the driver world and `capabilities`
    /// answers.
    Loads,
    /// Create, expose, write, terminate and delete a volume.
    LifeCycle,
    /// Every life-cycle call repeated: no trap, no data lost.
    IdempotentRetries,
    /// Migration calls the driver claims no support for decline.
    DeclinesUnsupported,
    /// Migration calls the driver claims support for keep the data.
    MigrationData,
    /// A LUN the driver never made is managed without a copy and kept
    /// after unmanage (skipped when the driver does not manage).
    ManageExisting,
    /// Bad input is answered with an error variant, never a trap.
    ErrorsNotTraps,
    /// No call trapped, ran past its deadline or out of memory.
    WithinLimits,
}

impl CheckName {
    /// Every check, in order.
    pub const ALL: [CheckName; 8] = [
        CheckName::Loads,
        CheckName::LifeCycle,
        CheckName::IdempotentRetries,
        CheckName::DeclinesUnsupported,
        CheckName::MigrationData,
        CheckName::ManageExisting,
        CheckName::ErrorsNotTraps,
        CheckName::WithinLimits,
    ];

    /// The stable name, as printed and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loads => "loads",
            Self::LifeCycle => "life-cycle",
            Self::IdempotentRetries => "idempotent-retries",
            Self::DeclinesUnsupported => "declines-unsupported",
            Self::MigrationData => "migration-data",
            Self::ManageExisting => "manage-existing",
            Self::ErrorsNotTraps => "errors-not-traps",
            Self::WithinLimits => "within-limits",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The driver honours this part of the contract.
    Pass,
    /// It does not; the reason says where.
    Fail,
    /// Not applicable (nothing claimed, or an earlier step failed).
    Skip,
}

impl Status {
    /// `pass`, `fail` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skip => "skip",
        }
    }
}

/// One check's verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// Which check.
    pub name: CheckName,
    /// Its verdict.
    pub status: Status,
    /// What was verified, or what the driver broke.
    pub reason: String,
}

/// How a driver call ended, as far as the limits are concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CallOutcome {
    /// The driver answered `ok`.
    Ok,
    /// The driver answered an error variant (its code).
    Error {
        /// Stable code, e.g. `driver_not_found`.
        code: String,
    },
    /// The call trapped, timed out or ran out of memory.
    Fault {
        /// Stable code, e.g. `driver_trap`.
        code: String,
        /// What the runtime reported.
        message: String,
    },
}

/// One driver call the kit made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    /// The WIT export called, e.g. `create-volume`.
    pub call: &'static str,
    /// The check that made it.
    pub check: CheckName,
    /// Wall-clock time of the call.
    pub elapsed_ms: u64,
    /// How it ended.
    pub outcome: CallOutcome,
}

impl CallRecord {
    /// Whether the call trapped, timed out or ran out of memory.
    pub fn is_fault(&self) -> bool {
        matches!(self.outcome, CallOutcome::Fault { .. })
    }
}

/// Everything one run of the kit found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// SHA-256 of the component, lowercase hex; empty when it did not load.
    pub digest: String,
    /// What the driver claimed, when it loaded.
    pub capabilities: Option<Capabilities>,
    /// The per-call deadline the run used.
    pub deadline_ms: u64,
    /// The per-call memory limit the run used.
    pub memory_limit_bytes: u64,
    /// One verdict per check, in [`CheckName::ALL`] order.
    pub checks: Vec<CheckResult>,
    /// Every driver call, in order.
    pub calls: Vec<CallRecord>,
}

impl Report {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The verdict of `name`, if it was reported.
    pub fn check(&self, name: CheckName) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    /// The slowest call, if any was made.
    pub fn slowest_call(&self) -> Option<&CallRecord> {
        self.calls.iter().max_by_key(|c| c.elapsed_ms)
    }
}

/// The problems one check found, collected so that a check reports all of
/// them and not only the first.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    problems: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    /// Records a contract violation.
    pub(crate) fn fail(&mut self, problem: impl Into<String>) {
        self.problems.push(problem.into());
    }

    /// Records what was verified, for the pass reason.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// How many violations were recorded so far.
    pub(crate) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// The verdict: fail with every problem, or pass with every note.
    pub(crate) fn verdict(self, name: CheckName) -> CheckResult {
        let (status, parts) = if self.problems.is_empty() {
            (Status::Pass, self.notes)
        } else {
            (Status::Fail, self.problems)
        };
        CheckResult {
            name,
            status,
            reason: parts.join("; "),
        }
    }
}

/// A skipped check.
pub(crate) fn skip(name: CheckName, reason: impl Into<String>) -> CheckResult {
    CheckResult {
        name,
        status: Status::Skip,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<CheckResult>, calls: Vec<CallRecord>) -> Report {
        Report {
            digest: "ab".into(),
            capabilities: None,
            deadline_ms: 5000,
            memory_limit_bytes: 64 << 20,
            checks,
            calls,
        }
    }

    #[test]
    fn findings_report_every_problem_or_every_note() {
        let mut f = Findings::default();
        f.note("created");
        f.note("deleted");
        let pass = f.verdict(CheckName::LifeCycle);
        assert_eq!(pass.status, Status::Pass);
        assert_eq!(pass.reason, "created; deleted");

        let mut f = Findings::default();
        f.note("created");
        f.fail("second create wiped the data");
        f.fail("second delete trapped");
        assert_eq!(f.problem_count(), 2);
        let fail = f.verdict(CheckName::IdempotentRetries);
        assert_eq!(fail.status, Status::Fail);
        assert_eq!(
            fail.reason,
            "second create wiped the data; second delete trapped"
        );
    }

    #[test]
    fn a_skip_does_not_fail_the_report_but_a_fail_does() {
        let mut r = report(
            vec![
                CheckResult {
                    name: CheckName::Loads,
                    status: Status::Pass,
                    reason: String::new(),
                },
                skip(CheckName::MigrationData, "claims no migration"),
            ],
            vec![],
        );
        assert!(r.passed());
        assert_eq!(r.failed().count(), 0);
        r.checks.push(CheckResult {
            name: CheckName::WithinLimits,
            status: Status::Fail,
            reason: "x".into(),
        });
        assert!(!r.passed());
        assert_eq!(
            r.failed().map(|c| c.name).collect::<Vec<_>>(),
            [CheckName::WithinLimits]
        );
        assert_eq!(
            r.check(CheckName::MigrationData).map(|c| c.status),
            Some(Status::Skip)
        );
        assert!(r.check(CheckName::LifeCycle).is_none());
    }

    #[test]
    fn the_json_uses_stable_names() {
        let r = report(
            vec![skip(CheckName::DeclinesUnsupported, "claims everything")],
            vec![CallRecord {
                call: "delete-volume",
                check: CheckName::ErrorsNotTraps,
                elapsed_ms: 3,
                outcome: CallOutcome::Fault {
                    code: "driver_trap".into(),
                    message: "boom".into(),
                },
            }],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["checks"][0]["name"], "declines-unsupported");
        assert_eq!(v["checks"][0]["status"], "skip");
        assert_eq!(v["calls"][0]["check"], "errors-not-traps");
        assert_eq!(v["calls"][0]["outcome"]["kind"], "fault");
        assert_eq!(v["calls"][0]["outcome"]["code"], "driver_trap");
        assert!(r.calls[0].is_fault());
        assert_eq!(r.slowest_call().map(|c| c.call), Some("delete-volume"));
    }

    #[test]
    fn names_are_unique_and_in_order() {
        let names: Vec<_> = CheckName::ALL.iter().map(|c| c.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert_eq!(names[0], "loads");
        assert_eq!(names[names.len() - 1], "within-limits");
    }
}
