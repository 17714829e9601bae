"""The `python-takeover` example driver: the `takeover` driver in Python.
It takes over LUNs of zoned arrays and moves volumes onto its own array as
the migration target, asynchronously: the volume is usable here at once
while the host hydrates it from the remote LUN, and
`complete-migration-target` polls that to its end. Every step may be
repeated after a crash or a driver swap: what a call needs to go on is in
state, under the same keys and in the same text as its Rust twin keeps it,
so either can pick up the other's migration. As a source it declines."""

from typing import Optional

from wit_world import exports
from wit_world.imports import context, hydration
from wit_world.imports import ferry_driver_types as t

from ferry_sdk import block, errors, layout, log, outcome, state
from ferry_sdk.driver import OneLunPerVolume

TAKEOVER = "takeover/"
HYDRATION = "hydration/"


class TakeOver:
    """A remote LUN this array took over for a volume."""

    def __init__(self, array: str, pool: str, name: str, size_bytes: int):
        self.array, self.pool, self.name, self.size_bytes = array, pool, name, size_bytes

    def __eq__(self, other) -> bool:
        return vars(self) == vars(other)

    def __str__(self) -> str:
        return f"{self.array}/{self.pool}/{self.name}"

    @staticmethod
    def of(remote: block.Lun) -> "TakeOver":
        address = remote.address()
        return TakeOver(remote.array(), address.pool, address.name, remote.size())

    @staticmethod
    def load(volume_id: str) -> Optional["TakeOver"]:
        text = state.get_string(TAKEOVER + volume_id)
        if text is None:
            return None
        fields = {}
        for line in text.splitlines():
            field, sep, value = line.partition("=")
            if not sep or field not in ("array", "pool", "name", "size"):
                raise errors.backend_error("take-over record has a malformed line")
            fields[field] = value
        try:
            return TakeOver(fields["array"], fields["pool"], fields["name"], int(fields["size"]))
        except (KeyError, ValueError):
            raise errors.backend_error("take-over record lacks a field or its size")

    def store(self, volume_id: str) -> None:
        # One `field=value` line per field: the Rust twin's format.
        state.set_string(
            TAKEOVER + volume_id,
            f"array={self.array}\npool={self.pool}\nname={self.name}\nsize={self.size_bytes}\n",
        )

    @staticmethod
    def forget(volume_id: str) -> None:
        state.remove(TAKEOVER + volume_id)


def retry_later(e: BaseException, what: str):
    """A failed poll is the host's to retry: whatever the failure, it is a
    backend error."""
    return errors.backend_error(f"{what}: {errors.message(e)}")


def check_size(address: t.LunAddress, lun: block.Lun, size_bytes: int) -> None:
    size = lun.size()
    if size != size_bytes:
        raise errors.invalid_argument(
            f"LUN {address.pool}/{address.name} holds {size} bytes, not {size_bytes}"
        )


def live_lun(hydration_id: str, address: t.LunAddress, size_bytes: int) -> block.Lun:
    """The local LUN of a hydration that was already started."""
    try:
        lun = block.open_lun(address)
    except BaseException as e:
        if not errors.is_not_found(e):
            raise
        # The LUN went away under its hydration: stop that before a new LUN
        # of the same name is hydrated from scratch.
        try:
            hydration.abandon(hydration_id)
        except BaseException as e2:
            raise errors.context(e2, "abandon the hydration")
        return block.create_lun(address, size_bytes)
    check_size(address, lun, size_bytes)
    return lun


def empty_lun(address: t.LunAddress, size_bytes: int, remote: block.Lun) -> block.Lun:
    """A new, empty local LUN. One found under the name was left by an
    attempt that never answered; a hydration skips the remote's holes, so
    its bytes would survive: it goes, with any hydration still on it."""
    try:
        stale = block.open_lun(address)
    except BaseException as e:
        if not errors.is_not_found(e):
            raise
        stale = None
    if stale is not None:
        if stale.size() == remote.size():
            try:
                found = hydration.start(stale, remote)
            except BaseException as e:
                if not errors.is_unsupported(e):
                    raise errors.context(e, "find the hydration of a stale LUN")
                found = None
            if found is not None:
                try:
                    hydration.abandon(found)
                except BaseException as e:
                    raise errors.context(e, "abandon the hydration of a stale LUN")
        block.close(stale)
        block.delete_lun_if_present(address)
        log.info(f"dropped {address.name} left by an earlier attempt")
    try:
        return block.create_lun(address, size_bytes)
    except BaseException as e:
        raise errors.context(e, "create local LUN")


def copy_now(volume: t.Volume, address: t.LunAddress, remote: block.Lun) -> t.TargetOutcome:
    """The move without a hydration: a native copy, then done."""
    try:
        local = block.ensure_lun(address, volume.size_bytes)
    except BaseException as e:
        raise errors.context(e, "create local LUN")
    try:
        copied = local.copy_range_from(remote, 0, 0, volume.size_bytes)
        local.flush()
    except BaseException as e:
        # The remote LUN still holds the volume: drop the partial copy so
        # the host's fallback starts from a clean array.
        block.close(local)
        try:
            block.delete_lun_if_present(address)
        except BaseException as cleanup:
            log.warn(f"left partial copy {address.name}: {errors.message(cleanup)}")
        raise errors.context(e, "copy from remote LUN")
    context.report_progress(volume.size_bytes, volume.size_bytes)
    log.info(f"moved volume {volume.id} into {address.name} ({copied} allocated bytes)")
    TakeOver.forget(volume.id)
    return outcome.target_moved(layout.provider_location(address))


class Driver(OneLunPerVolume, exports.Driver):
    def capabilities(self) -> t.Capabilities:
        return t.Capabilities(
            take_over=True,
            async_target_migration=True,
            source_migration=False,
            sparse=True,
            live_move=False,
        )

    def delete_volume(self, volume: t.Volume) -> None:
        running = state.get_string(HYDRATION + volume.id)
        if running is not None:
            try:
                hydration.abandon(running)
            except BaseException as e:
                raise errors.context(e, "abandon the hydration")
            log.info(f"abandoned hydration {running} of volume {volume.id}")
        super().delete_volume(volume)
        state.remove(HYDRATION + volume.id)
        TakeOver.forget(volume.id)

    def take_over_remote_lun(self, volume: t.Volume, remote: block.Lun) -> None:
        # Names the local LUN up front so a bad id fails here, not mid-move.
        layout.new_volume_lun(volume)
        record = TakeOver.of(remote)
        if record.size_bytes != volume.size_bytes:
            raise errors.invalid_argument(
                f"remote LUN {record.pool}/{record.name} holds {record.size_bytes} bytes, "
                f"volume {volume.id} has {volume.size_bytes}"
            )
        record.store(volume.id)
        log.info(f"took over {record} for volume {volume.id}")

    def migrate_volume_target(self, volume: t.Volume, source, remote: block.Lun) -> t.TargetOutcome:
        record = TakeOver.load(volume.id)
        if record is None:
            raise errors.invalid_argument(
                f"volume {volume.id} was not taken over before migrate-volume-target"
            )
        current = TakeOver.of(remote)
        if current != record:
            raise errors.invalid_argument(
                f"remote LUN {current} is not the one taken over for volume {volume.id} ({record})"
            )
        if current.size_bytes != volume.size_bytes:
            raise errors.invalid_argument(
                f"remote LUN holds {current.size_bytes} bytes, volume {volume.id} has {volume.size_bytes}"
            )
        address = layout.new_volume_lun(volume)
        location = layout.provider_location(address)
        recorded = state.get_string(HYDRATION + volume.id)
        # Answered once already, and the volume may be in use here since:
        # keep its LUN, and never fall back to a copy over it.
        if recorded is not None:
            local = live_lun(recorded, address, volume.size_bytes)
        else:
            local = empty_lun(address, volume.size_bytes, remote)
        try:
            # Starting again finds the hydration an earlier call started.
            hydration_id = hydration.start(local, remote)
        except BaseException as e:
            if errors.is_unsupported(e) and recorded is None:
                block.close(local)
                log.info(f"no hydration here ({errors.message(e)}); copying volume {volume.id} now")
                return copy_now(volume, address, remote)
            raise errors.context(e, "start hydration")
        state.set_string(HYDRATION + volume.id, hydration_id)
        log.info(f"volume {volume.id} is usable in {address.name} while hydration {hydration_id} runs")
        return outcome.target_async(location)

    def complete_migration_target(self, volume: t.Volume, source, remote) -> t.Completion:
        running = state.get_string(HYDRATION + volume.id)
        if running is None:
            # Nothing runs: a synchronous move, or a poll repeated after the
            # hydration finished. Tidy a take-over record a crash left.
            TakeOver.forget(volume.id)
            return outcome.done(volume.size_bytes)
        try:
            p = hydration.progress(running)
        except BaseException as e:
            raise retry_later(e, "hydration progress")
        context.report_progress(p.done_bytes, p.total_bytes)
        if not p.complete:
            return outcome.in_progress(p.done_bytes, p.total_bytes)
        # Finishing again succeeds, so a poll repeated after a crash that
        # lost this call's state ends the same way.
        try:
            hydration.finish(running)
        except BaseException as e:
            raise retry_later(e, "finish the hydration")
        state.remove(HYDRATION + volume.id)
        TakeOver.forget(volume.id)
        log.info(f"volume {volume.id} is all local; hydration {running} ended")
        return outcome.done(p.total_bytes)
