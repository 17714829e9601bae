//! The manage check: a LUN the driver never made becomes a volume without
//! its data changing, is exposed as that very LUN, and is still there,
//! whole, after `unmanage`; a reference to nothing answers `not-found`. A
//! driver that answers `unsupported` skips it.

use super::lifecycle::{exposed_lun, with_update};
use super::probe::{Probe, describe, is_not_found, is_unsupported};
use super::report::{CheckName, CheckResult, Findings, skip};
use super::scratch::{Pattern, Scratch, volume};
use crate::model::LunAddress;
use crate::runtime::VolumeRef;

/// Name of the LUN made behind the driver's back.
const EXISTING: &str = "check-existing-lun";

pub(crate) fn manage_existing(probe: &Probe<'_>, scratch: &Scratch) -> CheckResult {
    let name = CheckName::ManageExisting;
    let scope = scratch.scope_a();
    let template = volume("check-manage");
    let at = LunAddress {
        pool: template.pool.clone(),
        name: EXISTING.to_owned(),
    };
    let pattern = Pattern::of(&template);
    let made = scope
        .array
        .create_lun(&at, template.size_bytes)
        .map_err(|e| e.to_string())
        .and_then(|lun| pattern.write(&lun));
    if let Err(e) = made {
        return skip(name, format!("the kit could not make a LUN to manage: {e}"));
    }
    let reference = format!("{}/{}", at.pool, at.name);
    let asked = VolumeRef {
        size_bytes: 0,
        ..template.clone()
    };
    let mut f = Findings::default();
    match probe.manage(&scope, &asked, &reference) {
        Err(e) if is_unsupported(&e) => {
            let _ = scope.array.delete_lun(&at);
            return skip(name, "manage-existing answers unsupported");
        }
        Err(e) => f.fail(format!("manage-existing of {reference} {}", describe(&e))),
        Ok(m) if m.size_bytes != template.size_bytes => f.fail(format!(
            "manage-existing answered {} bytes for a LUN of {}",
            m.size_bytes, template.size_bytes
        )),
        Ok(m) => {
            let vol = with_update(&template, m.model_update);
            exposed_as_itself(probe, &scope, &vol, &at, &pattern, &mut f);
            match probe.unmanage(&scope, &vol) {
                Err(e) => f.fail(format!("unmanage {}", describe(&e))),
                Ok(()) => match scope.array.open_lun(&at).map_err(|e| e.to_string()) {
                    Ok(lun) => match pattern.verify(&lun) {
                        Ok(()) => f.note("unmanaged: the LUN stays, data intact"),
                        Err(e) => f.fail(format!("after unmanage the LUN changed: {e}")),
                    },
                    Err(e) => f.fail(format!("after unmanage the LUN is gone: {e}")),
                },
            }
        }
    }
    let missing = VolumeRef {
        size_bytes: 0,
        ..volume("check-manage-missing")
    };
    match probe.manage(&scope, &missing, &format!("{}/no-such-lun", at.pool)) {
        Err(e) if is_not_found(&e) => f.note("a reference to nothing answers not-found"),
        Err(e) => f.fail(format!(
            "manage-existing of a missing LUN must answer not-found; it {}",
            describe(&e)
        )),
        Ok(_) => f.fail("manage-existing of a missing LUN answered ok"),
    }
    let _ = scope.array.delete_lun(&at);
    f.verdict(name)
}

/// The managed volume is exposed as the LUN it was, holding its bytes.
fn exposed_as_itself(
    probe: &Probe<'_>,
    scope: &crate::runtime::CallScope,
    vol: &VolumeRef,
    at: &LunAddress,
    pattern: &Pattern,
    f: &mut Findings,
) {
    match probe.connect(scope, vol) {
        Err(e) => f.fail(format!(
            "initialize-connection of the managed volume {}",
            describe(&e)
        )),
        Ok(info) if info.data.lun() != Some(at) => f.fail(format!(
            "the managed volume is exposed as {}, not as the LUN it manages",
            info.data
        )),
        Ok(info) => match exposed_lun(&scope.array, vol, &info).and_then(|l| pattern.verify(&l)) {
            Ok(()) => f.note("managed without a copy: exposed as the LUN itself, data intact"),
            Err(e) => f.fail(format!("the managed volume's data changed: {e}")),
        },
    }
    if let Err(e) = probe.disconnect(scope, vol) {
        f.fail(format!("terminate-connection {}", describe(&e)));
    }
}
