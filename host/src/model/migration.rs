//! The migration state machine, written once: the phases a migration walks
//! through (its journal), the one table of moves between them, and the
//! public status each phase shows. The runner in `service::migration` only
//! asks to enter a phase; whether that is allowed and what clients then
//! see is decided here.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Volume, VolumeStatus, now_rfc3339};

/// Status of the last migration of a volume, as clients see it (seed 003,
/// plus `aborting`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStatus {
    /// Admitted; nothing moved yet.
    Starting,
    /// Data moves; the volume is not attachable.
    Migrating,
    /// The volume lives on the destination and is attachable while data flows.
    MigratingAttachable,
    /// An operator's abort is being carried out: the destination's data is
    /// copied back, or the destination is being removed.
    Aborting,
    /// Data moved; cleaning up.
    Completing,
    /// Finished; the volume lives on the destination.
    Success,
    /// Failed; the volume is back where it was (or, when its data could not
    /// be located, stays where it was with volume status `error`).
    Error,
    /// Stopped by an operator; the volume is back where it was.
    Aborted,
}

/// How a migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationEnd {
    /// The volume lives on the destination.
    Success,
    /// It failed; see the migration's `error`.
    Error,
    /// An operator's abort put it back.
    Aborted,
}

impl MigrationEnd {
    fn status(self) -> MigrationStatus {
        match self {
            Self::Success => MigrationStatus::Success,
            Self::Error => MigrationStatus::Error,
            Self::Aborted => MigrationStatus::Aborted,
        }
    }
}

/// The source LUN's removal after a successful migration. The volume is
/// usable at its destination as soon as the switch is recorded; the source
/// is removed after that, off the user's wait, and a host that crashed
/// first removes it on restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SourceRemoval {
    /// Not yet removed; no new migration of the volume is admitted.
    Pending,
    /// Removed.
    Done,
    /// The source driver would not remove it: it is left behind, and the
    /// migration's warnings say why.
    Failed,
}

/// Which way a migration moves the data (seed 000's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationPath {
    /// The source driver moved it by its own means.
    SourceDriver,
    /// The target driver took over the source LUN and moved it.
    TargetDriver,
    /// The target driver took over the source LUN; data flows while the
    /// volume is already attachable on the target.
    TargetDriverAsync,
    /// The host copied it to a hidden destination LUN.
    HostCopy,
    /// The volume was attached: the host switched its attachments to a
    /// hidden destination LUN that fills from the source in the background
    /// (a host-driven hydration), connections open.
    HostLive,
}

/// Where a volume lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Placement {
    /// Array name.
    pub array: String,
    /// Pool name.
    pub pool: String,
    /// The driver's model update there, if any.
    #[schema(required = true)]
    pub provider_location: Option<String>,
}

/// The step a migration is at: the journal that crash recovery reads. Each
/// step is persisted before its side effect starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Admitted; nothing done yet.
    Admitted,
    /// The source driver's `migrate-volume` runs.
    SourceDriver,
    /// The source exposes its LUN; the target takes it over and migrates.
    TargetDriver,
    /// The target driver creates the hidden destination for a host copy.
    HostCopyPrepare,
    /// The host copies; `checkpoint` says how far it got durably.
    HostCopy,
    /// Async target path: the volume lives on the destination and is
    /// attachable while it hydrates; the host polls the target driver.
    Hydrating,
    /// Abort of the async target path: the regions written on the
    /// destination since the switch are copied back to the source while the
    /// volume still serves from the destination; then it switches back.
    CopyingBack,
    /// Abort after the source driver moved the volume (and removed its
    /// source LUN): the source driver creates a LUN to take it back.
    ReturnPrepare,
    /// The host copies the volume from the destination back to the source;
    /// `checkpoint` says how far it got durably.
    Returning,
    /// The volume lives on the destination; the source's exposures are
    /// released and the success recorded, the source LUN's removal pending
    /// (see [`SourceRemoval`]).
    CleanupSource,
    /// Undoing: the destination is being removed, once the source is known
    /// to hold the volume.
    RollingBack,
    /// Over (success, error or aborted).
    Finished,
}

use MigrationEnd as End;
use MigrationPhase as P;

/// Every move the machine allows: from a phase, the phases it may enter and
/// the ends it may finish with. Nothing else moves a migration.
const TRANSITIONS: &[(MigrationPhase, &[MigrationPhase], &[MigrationEnd])] = &[
    (
        P::Admitted,
        &[
            P::SourceDriver,
            P::TargetDriver,
            P::HostCopyPrepare,
            P::RollingBack,
        ],
        &[],
    ),
    (
        P::SourceDriver,
        &[
            P::TargetDriver,
            P::HostCopyPrepare,
            P::ReturnPrepare,
            P::RollingBack,
        ],
        // Error: the driver does not confirm a move and the source LUN is
        // gone, so nothing may be deleted on either side.
        &[End::Success, End::Error],
    ),
    (
        P::TargetDriver,
        &[
            P::HostCopyPrepare,
            P::Hydrating,
            P::CleanupSource,
            P::RollingBack,
        ],
        &[],
    ),
    // Hydrating: an attached volume switches to the destination at once
    // and fills from the source there (the host's live move).
    (
        P::HostCopyPrepare,
        &[P::HostCopy, P::Hydrating, P::RollingBack],
        &[],
    ),
    (P::HostCopy, &[P::CleanupSource, P::RollingBack], &[]),
    (P::Hydrating, &[P::CopyingBack, P::CleanupSource], &[]),
    // Back to hydrating when the copy-back gives up: the destination holds
    // every write, so going on loses nothing.
    (P::CopyingBack, &[P::RollingBack, P::Hydrating], &[]),
    // Success: the volume could not be taken back and stays, whole, on the
    // destination; the warning says why.
    (P::ReturnPrepare, &[P::Returning], &[End::Success]),
    (P::Returning, &[P::RollingBack], &[End::Success]),
    (P::CleanupSource, &[], &[End::Success]),
    // Error also when the source cannot be shown to hold the volume: then
    // nothing is deleted and the volume is marked `error`.
    (P::RollingBack, &[], &[End::Error, End::Aborted]),
    (P::Finished, &[], &[]),
];

fn row(
    phase: MigrationPhase,
) -> &'static (
    MigrationPhase,
    &'static [MigrationPhase],
    &'static [MigrationEnd],
) {
    TRANSITIONS
        .iter()
        .find(|(from, _, _)| *from == phase)
        // Every phase has a row; the table test checks it.
        .unwrap_or(&(P::Finished, &[], &[]))
}

impl MigrationPhase {
    /// Every phase, in the order a reader meets them.
    pub const ALL: [MigrationPhase; 12] = [
        P::Admitted,
        P::SourceDriver,
        P::TargetDriver,
        P::HostCopyPrepare,
        P::HostCopy,
        P::Hydrating,
        P::CopyingBack,
        P::ReturnPrepare,
        P::Returning,
        P::CleanupSource,
        P::RollingBack,
        P::Finished,
    ];

    /// Whether the table allows entering `to` from here.
    pub fn may_enter(self, to: MigrationPhase) -> bool {
        row(self).1.contains(&to)
    }

    /// Whether the table allows finishing with `end` from here.
    pub fn may_finish(self, end: MigrationEnd) -> bool {
        row(self).2.contains(&end)
    }

    /// The public status of a migration in this phase (`Finished` keeps the
    /// end status it was given).
    fn status(self, abort_requested: bool) -> MigrationStatus {
        match self {
            P::Admitted if abort_requested => MigrationStatus::Aborting,
            P::Admitted => MigrationStatus::Starting,
            P::SourceDriver | P::TargetDriver | P::HostCopyPrepare | P::HostCopy
                if abort_requested =>
            {
                MigrationStatus::Aborting
            }
            P::SourceDriver | P::TargetDriver | P::HostCopyPrepare | P::HostCopy => {
                MigrationStatus::Migrating
            }
            P::Hydrating => MigrationStatus::MigratingAttachable,
            P::CopyingBack | P::ReturnPrepare | P::Returning => MigrationStatus::Aborting,
            P::CleanupSource => MigrationStatus::Completing,
            P::RollingBack if abort_requested => MigrationStatus::Aborting,
            P::RollingBack => MigrationStatus::Migrating,
            P::Finished => MigrationStatus::Error,
        }
    }

    /// Whether an operator's abort can still put the volume back. Before
    /// the switch it rolls back; while hydrating it copies the
    /// destination's writes back first.
    pub fn abortable(self) -> bool {
        matches!(
            self,
            P::Admitted
                | P::SourceDriver
                | P::TargetDriver
                | P::HostCopyPrepare
                | P::HostCopy
                | P::Hydrating
        )
    }

    /// Whether the volume's only up-to-date copy is on the destination: a
    /// failure here is retried, never undone by deleting the destination.
    pub fn past_switch(self) -> bool {
        matches!(
            self,
            P::Hydrating | P::CopyingBack | P::ReturnPrepare | P::Returning | P::CleanupSource
        )
    }

    /// Whether the step runs inside one driver call, which an abort reaches
    /// only through the host functions the call uses.
    pub fn in_driver_call(self) -> bool {
        matches!(self, P::SourceDriver | P::TargetDriver)
    }
}

/// A move the transition table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// `to` is not reachable from `from`.
    #[error("a migration in phase {from:?} cannot enter {to:?}")]
    Phase {
        /// The current phase.
        from: MigrationPhase,
        /// The phase asked for.
        to: MigrationPhase,
    },
    /// `from` cannot end that way.
    #[error("a migration in phase {from:?} cannot end with {end:?}")]
    End {
        /// The current phase.
        from: MigrationPhase,
        /// The end asked for.
        end: MigrationEnd,
    },
}

/// One migration of a volume: path, phase, progress, outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Migration id.
    pub id: Uuid,
    /// Where the volume was when the migration started.
    pub source: Placement,
    /// Where it goes (`provider_location` set once the destination exists).
    pub destination: Placement,
    /// The volume's status before the migration, restored after.
    pub original_status: VolumeStatus,
    /// Skip the driver paths.
    pub force_host_copy: bool,
    /// Refuse attach, detach and abort by other requests while it runs.
    pub lock_volume: bool,
    /// Journal step. Changed only through [`Migration::enter`] and
    /// [`Migration::finish`].
    pub phase: MigrationPhase,
    /// The path taken, once known.
    pub path: Option<MigrationPath>,
    /// Status as the API shows it; derived from the phase.
    pub status: MigrationStatus,
    /// Bytes of the current copy settled so far (never decreases within a
    /// copy).
    pub done_bytes: u64,
    /// Bytes of the current copy in all, fixed when the copy starts.
    pub total_bytes: u64,
    /// Host copy or return: offset below which the target is complete and
    /// synced.
    pub checkpoint: u64,
    /// An operator asked to abort.
    pub abort_requested: bool,
    /// The source LUN the source driver exposed to the destination array
    /// (target paths), handed again to every `complete-migration-target`.
    #[serde(default)]
    pub remote: Option<LunAddress>,
    /// The host's live move: the destination LUN the host hydrates from
    /// `remote`, which every switched attachment is served from.
    #[serde(default)]
    pub hydrating: Option<LunAddress>,
    /// Attachments whose NBD export serves from the destination since the
    /// switch (cleared when a copy-back switches them back).
    #[serde(default)]
    pub switched: Vec<Uuid>,
    /// The target driver's call ran (or began) while clients could write
    /// to the source: a fill it left behind is stale, whatever is attached
    /// when the call is repeated.
    #[serde(default)]
    pub taken_over_attached: bool,
    /// Why it failed, if it did (only with status `error`, or while a
    /// failing step is retried).
    pub error: Option<String>,
    /// What went wrong without failing it (a LUN left behind, a path the
    /// drivers declined for a reason worth knowing, an abort that could not
    /// be honoured).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Failed attempts of the current step since its last success (retries
    /// after the switch).
    #[serde(default)]
    pub attempts: u32,
    /// After a success: how the removal of the source LUN goes.
    #[serde(default)]
    pub source_removal: Option<SourceRemoval>,
    /// When it was admitted (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
}

use super::LunAddress;

impl Migration {
    /// Moves to `to` if the table allows it, deriving the public status.
    pub fn enter(&mut self, to: MigrationPhase) -> Result<(), TransitionError> {
        if !self.phase.may_enter(to) {
            return Err(TransitionError::Phase {
                from: self.phase,
                to,
            });
        }
        self.phase = to;
        self.status = to.status(self.abort_requested);
        self.attempts = 0;
        Ok(())
    }

    /// Ends the migration with `end` if the table allows it.
    pub fn finish(&mut self, end: MigrationEnd) -> Result<(), TransitionError> {
        if !self.phase.may_finish(end) {
            return Err(TransitionError::End {
                from: self.phase,
                end,
            });
        }
        self.phase = P::Finished;
        self.status = end.status();
        self.finished_at = Some(now_rfc3339());
        self.attempts = 0;
        if end == End::Success {
            self.done_bytes = self.total_bytes;
        }
        if end != End::Error {
            self.error = None;
        }
        Ok(())
    }

    /// An operator's reset or forced delete: ends the migration in whatever
    /// phase it is, as `error` with `reason`, leaving the data where it is.
    /// The one move outside the table, by design: it is the way out where
    /// the table has none (a source lost for good). A finished migration
    /// keeps its end but for the status, which becomes `error`.
    pub fn stop_by_operator(&mut self, reason: String) {
        if self.phase != P::Finished {
            self.finished_at = Some(now_rfc3339());
        }
        self.phase = P::Finished;
        self.status = MigrationStatus::Error;
        self.error = Some(reason);
        self.attempts = 0;
    }

    /// Records an operator's abort; the status shows it at once.
    pub fn request_abort(&mut self) {
        self.abort_requested = true;
        if self.phase != P::Finished {
            self.status = self.phase.status(true);
        }
    }

    /// Starts a new copy whose size is `total` bytes: progress restarts.
    pub fn start_copy(&mut self, total: u64) {
        self.total_bytes = total;
        self.done_bytes = 0;
        self.checkpoint = 0;
    }

    /// Records progress of the current copy; never goes back.
    pub fn advance(&mut self, done: u64) {
        self.done_bytes = self.done_bytes.max(done.min(self.total_bytes));
    }

    /// Adds a warning unless the same text is there already.
    pub fn warn(&mut self, text: String) {
        if !self.warnings.contains(&text) {
            self.warnings.push(text);
        }
    }

    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.phase != P::Finished
    }
}

impl Volume {
    /// Puts the volume record at `at`.
    pub fn place(&mut self, at: &Placement) {
        self.array = at.array.clone();
        self.pool = at.pool.clone();
        self.provider_location = at.provider_location.clone();
    }

    /// The volume's status after its migration ended: in use when attached
    /// (it may have been attached while `migrating_attachable`), available
    /// when its last attachment went meanwhile, otherwise what it was
    /// before.
    pub fn settle_after_migration(&mut self, original: VolumeStatus) {
        self.status = if !self.attachments.is_empty() {
            VolumeStatus::InUse
        } else if matches!(original, VolumeStatus::Migrating | VolumeStatus::InUse) {
            VolumeStatus::Available
        } else {
            original
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_one_row_and_finished_is_terminal() {
        for phase in MigrationPhase::ALL {
            let rows = TRANSITIONS.iter().filter(|(p, _, _)| *p == phase).count();
            assert_eq!(rows, 1, "{phase:?}");
        }
        assert_eq!(TRANSITIONS.len(), MigrationPhase::ALL.len());
        let (_, to, ends) = row(P::Finished);
        assert!(to.is_empty() && ends.is_empty());
    }

    #[test]
    fn every_phase_can_reach_an_end() {
        // No phase is a trap: from each, some path leads to Finished.
        for start in MigrationPhase::ALL {
            let mut seen = vec![start];
            let mut i = 0;
            let mut ends = false;
            while i < seen.len() {
                let (p, to, e) = row(seen[i]);
                ends |= !e.is_empty() || *p == P::Finished;
                for next in *to {
                    if !seen.contains(next) {
                        seen.push(*next);
                    }
                }
                i += 1;
            }
            assert!(ends, "{start:?} cannot end");
        }
    }

    #[test]
    fn no_way_back_across_the_switch_but_through_an_abort() {
        // Past the switch the destination holds the volume: the only way
        // out that is not success is an abort's copy back, never a plain
        // rollback that would delete the destination.
        for phase in MigrationPhase::ALL.into_iter().filter(|p| p.past_switch()) {
            let (_, to, ends) = row(phase);
            assert!(!ends.contains(&End::Error), "{phase:?}");
            assert!(!ends.contains(&End::Aborted), "{phase:?}");
            if to.contains(&P::RollingBack) {
                assert!(
                    matches!(phase, P::CopyingBack | P::Returning),
                    "{phase:?} may roll back without copying back"
                );
            }
        }
    }

    fn migration() -> Migration {
        let place = Placement {
            array: "a".into(),
            pool: "p".into(),
            provider_location: None,
        };
        Migration {
            id: Uuid::nil(),
            source: place.clone(),
            destination: place,
            original_status: VolumeStatus::Available,
            force_host_copy: false,
            lock_volume: false,
            phase: P::Admitted,
            path: None,
            status: MigrationStatus::Starting,
            done_bytes: 0,
            total_bytes: 100,
            checkpoint: 0,
            abort_requested: false,
            remote: None,
            hydrating: None,
            switched: Vec::new(),
            taken_over_attached: false,
            error: None,
            warnings: vec![],
            attempts: 0,
            source_removal: None,
            started_at: String::new(),
            finished_at: None,
        }
    }

    #[test]
    fn enter_derives_the_status_and_refuses_what_the_table_does_not_allow() {
        let mut m = migration();
        m.enter(P::SourceDriver).unwrap();
        assert_eq!(m.status, MigrationStatus::Migrating);
        m.request_abort();
        assert_eq!(m.status, MigrationStatus::Aborting);
        assert_eq!(
            m.enter(P::Hydrating),
            Err(TransitionError::Phase {
                from: P::SourceDriver,
                to: P::Hydrating
            })
        );
        m.enter(P::RollingBack).unwrap();
        assert_eq!(m.status, MigrationStatus::Aborting);
        assert!(m.finish(End::Success).is_err());
        m.finish(End::Aborted).unwrap();
        assert_eq!((m.phase, m.status), (P::Finished, MigrationStatus::Aborted));
        assert!(m.enter(P::Admitted).is_err());
    }

    #[test]
    fn progress_never_goes_back_and_its_total_is_fixed_per_copy() {
        let mut m = migration();
        m.start_copy(1000);
        m.advance(400);
        m.advance(300);
        assert_eq!(m.done_bytes, 400);
        m.advance(5000);
        assert_eq!((m.done_bytes, m.total_bytes), (1000, 1000));
    }
}
