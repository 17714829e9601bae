"""The `python-plain` example driver: the `plain` driver in Python. Each
volume is one thin LUN; every migration call is declined, so migrations to
and from its arrays take the host's own copy."""

from wit_world import exports
from wit_world.imports import ferry_driver_types as t

from ferry_sdk import block, errors, layout, log, outcome


class Driver(exports.Driver):
    def capabilities(self) -> t.Capabilities:
        return t.Capabilities(
            take_over=False,
            async_target_migration=False,
            source_migration=False,
            sparse=True,
            live_move=False,
        )

    def create_volume(self, volume: t.Volume):
        address = layout.new_volume_lun(volume)
        block.ensure_lun(address, volume.size_bytes)
        log.info(f"created {address.name} ({volume.size_bytes} bytes)")
        return layout.provider_location(address)

    def delete_volume(self, volume: t.Volume) -> None:
        address = layout.volume_lun(volume)
        block.delete_lun_if_present(address)
        log.info(f"deleted {address.name}")

    def manage_existing(self, volume: t.Volume, reference: str) -> t.Managed:
        return layout.manage_lun(volume, reference)

    def unmanage(self, volume: t.Volume) -> None:
        # Managing changed nothing on the array: nothing to undo.
        layout.volume_lun(volume)

    def initialize_connection(self, volume: t.Volume, connector: t.Connector) -> t.ConnectionInfo:
        return outcome.lun(layout.volume_lun(volume))

    def terminate_connection(self, volume: t.Volume, connector: t.Connector) -> None:
        pass

    def migrate_volume(self, volume, destination, peer) -> t.MigrateOutcome:
        return outcome.declined()

    def take_over_remote_lun(self, volume, remote) -> None:
        raise errors.unsupported("python-plain does not take over LUNs")

    def migrate_volume_target(self, volume, source, remote) -> t.TargetOutcome:
        return outcome.target_declined()

    def complete_migration_target(self, volume, source, remote) -> t.Completion:
        raise errors.unsupported("python-plain runs no asynchronous migration")
