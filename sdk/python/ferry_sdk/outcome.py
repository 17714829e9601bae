"""What the migration calls answer, by name rather than by flags."""

from typing import Optional

from wit_world.imports import ferry_driver_types as t


def declined() -> t.MigrateOutcome:
    """`migrate-volume`: not by this driver; the host tries the next path."""
    return t.MigrateOutcome(moved=False, model_update=None)


def moved(model_update: Optional[str]) -> t.MigrateOutcome:
    """`migrate-volume`: the volume lives on the destination now."""
    return t.MigrateOutcome(moved=True, model_update=model_update)


def target_declined() -> t.TargetOutcome:
    """`migrate-volume-target`: the host copies by itself."""
    return t.TargetOutcome(moved=False, is_async=False, model_update=None)


def target_moved(model_update: Optional[str]) -> t.TargetOutcome:
    """`migrate-volume-target`: every byte is here."""
    return t.TargetOutcome(moved=True, is_async=False, model_update=model_update)


def target_async(model_update: Optional[str]) -> t.TargetOutcome:
    """`migrate-volume-target`: usable here now; data still flows, polled
    through `complete-migration-target`."""
    return t.TargetOutcome(moved=True, is_async=True, model_update=model_update)


def in_progress(done_bytes: int, total_bytes: int) -> t.Completion:
    """`complete-migration-target`: not yet."""
    return t.Completion(done=False, done_bytes=done_bytes, total_bytes=total_bytes)


def done(total_bytes: int) -> t.Completion:
    """`complete-migration-target`: every byte is local and cleaned up."""
    return t.Completion(done=True, done_bytes=total_bytes, total_bytes=total_bytes)


def lun(address: t.LunAddress, read_only: bool = False) -> t.ConnectionInfo:
    """`initialize-connection`: the volume's data is this LUN of the array."""
    return t.ConnectionInfo(data=t.DataPath_Lun(address), read_only=read_only)
