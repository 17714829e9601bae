"""`OneLunPerVolume`: a base for the `Driver` class that answers every call
of the contract the way most drivers would, so a driver overrides only
what it does differently (as the Rust SDK's `Driver` trait defaults do):

- the life cycle on the one-LUN-per-volume layout (`layout`), with
  idempotent create and delete, `manage-existing` of a `pool/name` LUN and
  connections that expose the volume's LUN;
- every migration call declined: the host then takes the next path, down
  to its own copy.
"""

from wit_world.imports import ferry_driver_types as t

from . import block, errors, layout, log, outcome


class OneLunPerVolume:
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
        raise errors.unsupported("this driver does not take over LUNs")

    def migrate_volume_target(self, volume, source, remote) -> t.TargetOutcome:
        return outcome.target_declined()

    def complete_migration_target(self, volume, source, remote) -> t.Completion:
        raise errors.unsupported("this driver runs no asynchronous migration")
