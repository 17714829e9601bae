//! The life-cycle checks: a volume's round trip (create, expose, write,
//! terminate, delete), the same calls repeated as the host repeats them
//! after a crash, and bad input that must be answered with an error variant.

use std::sync::Arc;

use super::probe::{Probe, describe, is_fault, is_not_found};
use super::report::{CheckName, CheckResult, Findings};
use super::scratch::{Pattern, Scratch, volume};
use crate::array::{Array, Lun};
use crate::block::BlockDevice;
use crate::model::LunAddress;
use crate::runtime::{CallScope, ConnectionInfo, VolumeRef};

/// Opens the LUN `initialize-connection` named and checks it holds the
/// volume.
pub(crate) fn exposed_lun(
    array: &Array,
    vol: &VolumeRef,
    info: &ConnectionInfo,
) -> Result<Lun, String> {
    // The kit runs drivers on scratch arrays the host holds: a driver that
    // answers an NBD export is checked against its own array instead.
    let at = info.host_lun().map_err(|e| e.to_string())?;
    let lun = array.open_lun(at).map_err(|e| {
        format!(
            "initialize-connection named LUN {}/{}, which is not on array {} ({e})",
            at.pool,
            at.name,
            array.name()
        )
    })?;
    if lun.size() != vol.size_bytes {
        return Err(format!(
            "initialize-connection named LUN {}/{} of {} bytes for a volume of {} bytes",
            at.pool,
            at.name,
            lun.size(),
            vol.size_bytes
        ));
    }
    Ok(lun)
}

/// The volume as the host knows it after `create-volume` answered.
pub(crate) fn with_update(vol: &VolumeRef, update: Option<String>) -> VolumeRef {
    VolumeRef {
        provider_location: update,
        ..vol.clone()
    }
}

/// Creates `vol` and writes the pattern into the LUN it is exposed as.
/// Returns the volume as the host then knows it and the LUN's address.
pub(crate) fn provision(
    probe: &Probe<'_>,
    scope: &CallScope,
    vol: &VolumeRef,
    pattern: &Pattern,
) -> Result<(VolumeRef, LunAddress), String> {
    let update = probe
        .create(scope, vol)
        .map_err(|e| format!("create-volume {}", describe(&e)))?;
    let vol = with_update(vol, update);
    let info = probe
        .connect(scope, &vol)
        .map_err(|e| format!("initialize-connection {}", describe(&e)))?;
    let lun = exposed_lun(&scope.array, &vol, &info)?;
    pattern.write(&lun)?;
    Ok((vol, lun.address().clone()))
}

fn lun_exists(array: &Array, at: &LunAddress) -> bool {
    // An unusable address cannot name an existing LUN.
    array.lun_exists(at).unwrap_or(false)
}

/// Create, expose, write natively, terminate, delete.
pub(crate) fn life_cycle(probe: &Probe<'_>, scratch: &Scratch) -> CheckResult {
    let name = CheckName::LifeCycle;
    let scope = scratch.scope_a();
    let vol = volume("check-life-cycle");
    let pattern = Pattern::of(&vol);
    let mut f = Findings::default();
    let (vol, at) = match provision(probe, &scope, &vol, &pattern) {
        Ok(done) => done,
        Err(problem) => {
            f.fail(problem);
            return f.verdict(name);
        }
    };
    f.note(format!(
        "created, exposed as {}/{} of {} bytes, pattern written",
        at.pool, at.name, vol.size_bytes
    ));
    if let Err(e) = probe.disconnect(&scope, &vol) {
        f.fail(format!("terminate-connection {}", describe(&e)));
    }
    match probe.delete(&scope, &vol) {
        Ok(()) if lun_exists(&scope.array, &at) => f.fail(format!(
            "delete-volume answered ok but LUN {}/{} is still there",
            at.pool, at.name
        )),
        Ok(()) => f.note("terminated and deleted: the LUN is gone"),
        Err(e) => f.fail(format!("delete-volume {}", describe(&e))),
    }
    f.verdict(name)
}

/// Every life-cycle call twice, as the host retries it.
pub(crate) fn idempotent_retries(probe: &Probe<'_>, scratch: &Scratch) -> CheckResult {
    let name = CheckName::IdempotentRetries;
    let scope = scratch.scope_a();
    let first = volume("check-retries");
    let pattern = Pattern::of(&first);
    let mut f = Findings::default();
    let (vol, at) = match provision(probe, &scope, &first, &pattern) {
        Ok(done) => done,
        Err(problem) => {
            f.fail(format!("the first attempt failed: {problem}"));
            return f.verdict(name);
        }
    };
    // The host retries with what it knew before the first answer: no
    // provider location yet.
    match probe.create(&scope, &first) {
        Err(e) => f.fail(format!("a second create-volume {}", describe(&e))),
        Ok(update) => {
            let vol = with_update(&first, update);
            match probe.connect(&scope, &vol) {
                Err(e) => f.fail(format!(
                    "initialize-connection after a second create-volume {}",
                    describe(&e)
                )),
                Ok(info) => match exposed_lun(&scope.array, &vol, &info)
                    .and_then(|lun| pattern.verify(&lun))
                {
                    Ok(()) => f.note("a second create-volume kept the data"),
                    Err(problem) => f.fail(format!("a second create-volume lost data: {problem}")),
                },
            }
        }
    }
    for attempt in ["first", "second"] {
        if let Err(e) = probe.disconnect(&scope, &vol) {
            f.fail(format!(
                "the {attempt} terminate-connection {}",
                describe(&e)
            ));
        }
    }
    match probe.delete(&scope, &vol) {
        Ok(()) => {}
        Err(e) => f.fail(format!("the first delete-volume {}", describe(&e))),
    }
    match probe.delete(&scope, &vol) {
        Ok(()) => f.note("terminate-connection and delete-volume repeat cleanly"),
        Err(e) if is_not_found(&e) => {
            f.note("terminate-connection repeats; a second delete-volume answers not found")
        }
        Err(e) => f.fail(format!(
            "a second delete-volume (of a deleted volume) {}",
            describe(&e)
        )),
    }
    if lun_exists(&scope.array, &at) {
        f.fail(format!(
            "LUN {}/{} is still there after two delete-volume calls",
            at.pool, at.name
        ));
    }
    f.verdict(name)
}

/// Bad input must be answered with an error variant.
pub(crate) fn errors_not_traps(probe: &Probe<'_>, scratch: &Scratch) -> CheckResult {
    let name = CheckName::ErrorsNotTraps;
    let scope = scratch.scope_a();
    let mut f = Findings::default();

    let unknown = volume("check-unknown");
    match probe.delete(&scope, &unknown) {
        Ok(()) => f.note("delete-volume of an unknown volume answers ok"),
        Err(e) if is_not_found(&e) => {
            f.note("delete-volume of an unknown volume answers not found")
        }
        Err(e) => f.fail(format!(
            "delete-volume of an unknown volume {} (deleting a missing volume must succeed)",
            describe(&e)
        )),
    }
    match probe.connect(&scope, &unknown) {
        Ok(info) if info.host_lun().is_ok_and(|l| lun_exists(&scope.array, l)) => f.fail(format!(
            "initialize-connection of an unknown volume named {}, which holds something else",
            info.data
        )),
        // Naming a LUN that does not exist is harmless: the host cannot
        // open it and refuses the attachment.
        Ok(_) => f.note("initialize-connection of an unknown volume names no existing LUN"),
        Err(e) if is_fault(&e) => f.fail(format!(
            "initialize-connection of an unknown volume {}",
            describe(&e)
        )),
        Err(_) => f.note("initialize-connection of an unknown volume answers an error"),
    }

    let mut bad = Vec::new();
    for size in [0, 1000] {
        bad.push((
            format!("a size of {size} bytes"),
            VolumeRef {
                size_bytes: size,
                ..volume("check-odd-size")
            },
        ));
    }
    bad.push((
        "a pool the array does not have".to_owned(),
        VolumeRef {
            pool: "no-such-pool".into(),
            ..volume("check-bad-pool")
        },
    ));
    for (what, vol) in bad {
        match probe.create(&scope, &vol) {
            Ok(_) => {
                f.fail(format!("create-volume with {what} answered ok"));
                // Leave the scratch array as clean as possible for the
                // checks that follow.
                probe.tidy(&scope, &vol);
            }
            Err(e) if is_fault(&e) => f.fail(format!("create-volume with {what} {}", describe(&e))),
            Err(e) => f.note(format!("create-volume with {what} answers {}", e.code())),
        }
    }
    f.verdict(name)
}

/// Deletes a volume the kit made, ignoring the answer: cleanup only.
pub(crate) fn cleanup(probe: &Probe<'_>, scope: &CallScope, vol: &VolumeRef) {
    probe.tidy(scope, vol);
}

/// The LUN behind `at` on `array`, if it is there.
pub(crate) fn open(array: &Arc<Array>, at: &LunAddress) -> Result<Lun, String> {
    array.open_lun(at).map_err(|e| e.to_string())
}
