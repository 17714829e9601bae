"""A careless driver in Python, for the conformance kit's tests: the Python
twin of the Rust `careless` component, breaking the contract in the same
places on ordinary input, so `ferry driver check` must name the same
faults for both languages.

| call                    | what it does wrong                                          |
| ----------------------- | ----------------------------------------------------------- |
| `create-volume`         | a retry deletes the existing LUN and makes a new, empty one |
| `delete-volume`         | raises (traps) when the volume's LUN is missing             |
| `migrate-volume`        | claims the move to a peer but never copies the data         |
| `take-over-remote-lun`  | raises (traps) although it claims no take-over              |
| `migrate-volume-target` | spins until the host's deadline stops it                    |
"""

from wit_world import exports
from wit_world.imports import block
from wit_world.imports import ferry_driver_types as t

from ferry_sdk import errors, layout, outcome
from ferry_sdk.driver import OneLunPerVolume


class Driver(OneLunPerVolume, exports.Driver):
    def capabilities(self) -> t.Capabilities:
        return t.Capabilities(
            take_over=False,
            async_target_migration=False,
            source_migration=True,
            sparse=True,
            live_move=False,
        )

    def create_volume(self, volume: t.Volume):
        address = layout.new_volume_lun(volume)
        # The fault: "start clean" instead of reusing what a first attempt
        # made, which throws away data written since.
        block.delete_lun(address)
        block.create_lun(address, volume.size_bytes)
        return layout.provider_location(address)

    def delete_volume(self, volume: t.Volume) -> None:
        address = layout.volume_lun(volume)
        # The fault: assumes the LUN is there instead of treating a missing
        # one as already deleted; the exception is no driver error, so the
        # call traps.
        try:
            block.open_lun(address)
        except BaseException:
            raise RuntimeError("the volume's LUN exists")
        block.delete_lun(address)

    def manage_existing(self, volume: t.Volume, reference: str) -> t.Managed:
        raise errors.unsupported("careless drivers manage nothing")

    def migrate_volume(self, volume, destination, peer) -> t.MigrateOutcome:
        if peer is None:
            return outcome.declined()
        source = layout.volume_lun(volume)
        target = t.Volume(
            id=volume.id,
            name=volume.name,
            size_bytes=volume.size_bytes,
            pool=destination.pool,
            provider_location=None,
        )
        address = layout.new_volume_lun(target)
        # The fault: an empty LUN on the peer stands in for the copy.
        peer.create_lun(address, volume.size_bytes)
        block.delete_lun(source)
        return outcome.moved(layout.provider_location(address))

    def take_over_remote_lun(self, volume, remote) -> None:
        raise NotImplementedError(f"take-over of volume {volume.id} is not implemented")

    def migrate_volume_target(self, volume, source, remote) -> t.TargetOutcome:
        n = 0
        while True:
            n += 1
