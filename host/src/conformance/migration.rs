//! The migration checks: calls the driver claims no support for must
//! decline (`moved: false` or `unsupported`), and calls it claims support
//! for must leave the volume's data whole, wherever it ends up. The calls
//! are made as `service/migration/paths.rs` makes them: `migrate-volume` with
//! a peer handle when the destination belongs to the same driver, and for a
//! take-over a remote LUN the host opened on a zoned array.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lifecycle::{cleanup, exposed_lun, open, provision, with_update};
use super::probe::{Probe, describe, is_unsupported};
use super::report::{CheckName, CheckResult, Findings, skip};
use super::scratch::{Pattern, Scratch, volume};
use crate::array::Lun;
use crate::model::LunAddress;
use crate::runtime::{CallScope, Capabilities, VolumeRef};

/// How long an asynchronous target migration of a test volume may take.
const ASYNC_LIMIT: Duration = Duration::from_secs(60);
/// Pause between two polls of `complete-migration-target`.
const POLL_PAUSE: Duration = Duration::from_millis(50);

/// For every migration capability the driver lacks, its call declines.
pub(crate) fn declines_unsupported(
    probe: &Probe<'_>,
    scratch: &Scratch,
    caps: &Capabilities,
) -> CheckResult {
    let name = CheckName::DeclinesUnsupported;
    if caps.source_migration && caps.take_over {
        return skip(
            name,
            "claims source migration and take-over: nothing to decline",
        );
    }
    let mut f = Findings::default();
    let scope = scratch.scope_a();
    if !caps.source_migration {
        declines_source(probe, scratch, &scope, &mut f);
    }
    if !caps.take_over {
        declines_target(probe, scratch, &scope, &mut f);
    }
    f.verdict(name)
}

fn declines_source(probe: &Probe<'_>, scratch: &Scratch, scope: &CallScope, f: &mut Findings) {
    let vol = volume("check-declines-source");
    let pattern = Pattern::of(&vol);
    let (vol, at) = match provision(probe, scope, &vol, &pattern) {
        Ok(done) => done,
        Err(problem) => {
            f.fail(format!("could not make a volume to migrate: {problem}"));
            return;
        }
    };
    let tries = [
        (
            "to a peer array",
            scratch.peer_destination(),
            Some(scratch.b.clone()),
        ),
        (
            "to another vendor's array",
            scratch.foreign_destination(),
            None,
        ),
    ];
    let mut declined = 0;
    for (whither, dest, peer) in tries {
        match probe.migrate(scope, &vol, &dest, peer) {
            Ok(o) if o.moved => f.fail(format!(
                "migrate-volume {whither} answered moved=true although the driver claims no source migration"
            )),
            Ok(_) => declined += 1,
            Err(e) if is_unsupported(&e) => declined += 1,
            Err(e) => f.fail(format!(
                "migrate-volume {whither} {} instead of declining",
                describe(&e)
            )),
        }
    }
    match open(&scope.array, &at).and_then(|lun| pattern.verify(&lun)) {
        Ok(()) if declined == 2 => f.note("migrate-volume declines; the volume stays whole"),
        Ok(()) => {}
        Err(problem) => f.fail(format!("after migrate-volume declined, {problem}")),
    }
    cleanup(probe, scope, &vol);
}

fn declines_target(probe: &Probe<'_>, scratch: &Scratch, scope: &CallScope, f: &mut Findings) {
    let vol = volume("check-declines-target");
    let pattern = Pattern::of(&vol);
    let remote = match scratch.remote_lun(&vol, &pattern) {
        Ok(r) => r,
        Err(problem) => {
            f.fail(problem);
            return;
        }
    };
    let before = f.problem_count();
    match probe.take_over(scope, &vol, &remote) {
        Err(e) if is_unsupported(&e) => {}
        Ok(()) => f.fail(
            "take-over-remote-lun answered ok although the driver claims no take-over \
             (it must answer unsupported)",
        ),
        Err(e) => f.fail(format!(
            "take-over-remote-lun {} instead of answering unsupported",
            describe(&e)
        )),
    }
    match probe.migrate_target(scope, &vol, &scratch.remote_source(), &remote) {
        Ok(o) if o.moved => f.fail(
            "migrate-volume-target answered moved=true although the driver claims no take-over",
        ),
        Ok(_) => {}
        Err(e) if is_unsupported(&e) => {}
        Err(e) => f.fail(format!(
            "migrate-volume-target {} instead of declining",
            describe(&e)
        )),
    }
    if let Err(problem) = pattern.verify(&remote) {
        f.fail(format!("the remote LUN was changed: {problem}"));
    }
    if f.problem_count() == before {
        f.note("take-over-remote-lun and migrate-volume-target decline");
    }
}

/// For every migration capability the driver claims, the call keeps the
/// data.
pub(crate) fn migration_data(
    probe: &Probe<'_>,
    scratch: &Scratch,
    caps: &Capabilities,
) -> CheckResult {
    let name = CheckName::MigrationData;
    if !caps.source_migration && !caps.take_over {
        return skip(name, "claims neither source migration nor take-over");
    }
    let mut f = Findings::default();
    if caps.source_migration {
        source_keeps_data(probe, scratch, &mut f);
    }
    if caps.take_over {
        target_keeps_data(probe, scratch, caps, &mut f);
    }
    f.verdict(name)
}

fn source_keeps_data(probe: &Probe<'_>, scratch: &Scratch, f: &mut Findings) {
    let scope = scratch.scope_a();
    let vol = volume("check-migrate-source");
    let pattern = Pattern::of(&vol);
    let (vol, at) = match provision(probe, &scope, &vol, &pattern) {
        Ok(done) => done,
        Err(problem) => {
            f.fail(format!("could not make a volume to migrate: {problem}"));
            return;
        }
    };
    let dest = scratch.peer_destination();
    let outcome = match probe.migrate(&scope, &vol, &dest, Some(scratch.b.clone())) {
        Ok(o) => o,
        Err(e) if is_unsupported(&e) => {
            check_still_home(
                &scope,
                &at,
                &pattern,
                f,
                "migrate-volume to a peer declined",
            );
            cleanup(probe, &scope, &vol);
            return;
        }
        Err(e) => {
            f.fail(format!("migrate-volume to a peer array {}", describe(&e)));
            cleanup(probe, &scope, &vol);
            return;
        }
    };
    if !outcome.moved {
        check_still_home(
            &scope,
            &at,
            &pattern,
            f,
            "migrate-volume to a peer declined",
        );
        cleanup(probe, &scope, &vol);
        return;
    }
    // Where the host would look for the volume from now on.
    let moved = VolumeRef {
        pool: dest.pool.clone(),
        ..with_update(&vol, outcome.model_update)
    };
    let scope_b = scratch.scope_b();
    let landed = probe
        .connect(&scope_b, &moved)
        .map_err(|e| {
            format!(
                "after migrate-volume moved it, initialize-connection on {} {}",
                dest.array,
                describe(&e)
            )
        })
        .and_then(|info| exposed_lun(&scope_b.array, &moved, &info))
        .and_then(|lun| pattern.verify(&lun));
    match landed {
        Ok(()) => f.note(format!(
            "migrate-volume moved the volume to peer array {} with its data",
            dest.array
        )),
        Err(problem) => f.fail(format!(
            "migrate-volume answered moved=true but on {} {problem}",
            dest.array
        )),
    }
    if scope.array.lun_exists(&at).unwrap_or(false) {
        f.fail(format!(
            "migrate-volume answered moved=true but the source LUN {}/{} is still there",
            at.pool, at.name
        ));
        cleanup(probe, &scope, &vol);
    }
    cleanup(probe, &scope_b, &moved);
}

fn check_still_home(
    scope: &CallScope,
    at: &LunAddress,
    pattern: &Pattern,
    f: &mut Findings,
    what: &str,
) {
    match open(&scope.array, at).and_then(|lun| pattern.verify(&lun)) {
        Ok(()) => f.note(format!("{what}; the volume stays whole")),
        Err(problem) => f.fail(format!("{what}, but {problem}")),
    }
}

fn target_keeps_data(probe: &Probe<'_>, scratch: &Scratch, caps: &Capabilities, f: &mut Findings) {
    let scope = scratch.scope_a();
    let vol = volume("check-migrate-target");
    let pattern = Pattern::of(&vol);
    let remote = match scratch.remote_lun(&vol, &pattern) {
        Ok(r) => r,
        Err(problem) => {
            f.fail(problem);
            return;
        }
    };
    let source = scratch.remote_source();
    match probe.take_over(&scope, &vol, &remote) {
        Ok(()) => {}
        Err(e) if is_unsupported(&e) => {
            f.note("take-over-remote-lun declined");
            return;
        }
        Err(e) => {
            f.fail(format!("take-over-remote-lun {}", describe(&e)));
            return;
        }
    }
    let outcome = match probe.migrate_target(&scope, &vol, &source, &remote) {
        Ok(o) => o,
        Err(e) if is_unsupported(&e) => {
            f.note("migrate-volume-target declined after the take-over");
            return;
        }
        Err(e) => {
            f.fail(format!("migrate-volume-target {}", describe(&e)));
            cleanup(probe, &scope, &vol);
            return;
        }
    };
    if !outcome.moved {
        f.note("migrate-volume-target declined after the take-over");
        cleanup(probe, &scope, &vol);
        return;
    }
    let moved = with_update(&vol, outcome.model_update.clone());
    if outcome.is_async {
        if !caps.async_target_migration {
            f.fail(
                "migrate-volume-target answered is-async=true although the driver claims no \
                 asynchronous target migration",
            );
        }
        if let Err(problem) = poll_to_the_end(probe, &scope, &moved, &source, &remote) {
            f.fail(problem);
            cleanup(probe, &scope, &moved);
            return;
        }
    }
    let how = if outcome.is_async {
        "asynchronously"
    } else {
        "synchronously"
    };
    let landed = probe
        .connect(&scope, &moved)
        .map_err(|e| {
            format!(
                "after migrate-volume-target, initialize-connection {}",
                describe(&e)
            )
        })
        .and_then(|info| exposed_lun(&scope.array, &moved, &info))
        .and_then(|lun| pattern.verify(&lun));
    match landed {
        Ok(()) => f.note(format!(
            "take-over and migrate-volume-target moved the volume {how} with its data"
        )),
        Err(problem) => f.fail(format!(
            "migrate-volume-target moved the volume {how} but {problem}"
        )),
    }
    cleanup(probe, &scope, &moved);
}

/// Polls `complete-migration-target` until it answers done. A failed poll
/// is retried like the host retries it; only a fault or the time limit
/// ends the wait early.
fn poll_to_the_end(
    probe: &Probe<'_>,
    scope: &CallScope,
    vol: &VolumeRef,
    source: &crate::runtime::Source,
    remote: &Arc<Lun>,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last_error = None;
    while started.elapsed() < ASYNC_LIMIT {
        match probe.complete_target(scope, vol, source, remote) {
            Ok(c) if c.done => return Ok(()),
            Ok(_) => last_error = None,
            Err(e) if super::probe::is_fault(&e) => {
                return Err(format!("complete-migration-target {}", describe(&e)));
            }
            Err(e) => last_error = Some(describe(&e)),
        }
        std::thread::sleep(POLL_PAUSE);
    }
    Err(match last_error {
        Some(e) => format!(
            "complete-migration-target did not answer done within {} s; its last poll {e}",
            ASYNC_LIMIT.as_secs()
        ),
        None => format!(
            "complete-migration-target did not answer done within {} s",
            ASYNC_LIMIT.as_secs()
        ),
    })
}
