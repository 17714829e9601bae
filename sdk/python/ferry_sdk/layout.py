"""One LUN per volume, named after the volume's id, in the volume's pool;
its provider location is `pool/name` (`managed:pool/name` for a LUN made a
volume by `manage-existing`, which keeps its own name). The same layout as
the Rust SDK's, so a Python driver and a Rust one can take over each
other's arrays."""

from wit_world.imports import ferry_driver_types as t

from . import block, errors

VOLUME_LUN_PREFIX = "volume-"
MANAGED = "managed:"
_MAX_ID_BYTES = 128


def _check_pool(pool: str) -> None:
    if not pool or "/" in pool or pool in (".", ".."):
        raise errors.invalid_argument(f"pool name {pool!r} is not a single path component")


def lun_name(volume_id: str) -> str:
    """The name of a volume's LUN."""
    ok = 0 < len(volume_id.encode()) <= _MAX_ID_BYTES and all(
        c.isascii() and (c.isalnum() or c in "-_") for c in volume_id
    )
    if not ok:
        raise errors.invalid_argument(
            f"volume id {volume_id!r} is not a run of letters, digits, '-' and '_'"
        )
    return VOLUME_LUN_PREFIX + volume_id


def new_volume_lun(volume: t.Volume) -> t.LunAddress:
    """Where a new volume's LUN goes."""
    _check_pool(volume.pool)
    return t.LunAddress(pool=volume.pool, name=lun_name(volume.id))


def provider_location(address: t.LunAddress) -> str:
    """The model update naming a LUN."""
    return f"{address.pool}/{address.name}"


def parse_provider_location(location: str) -> t.LunAddress:
    """The LUN a provider location names."""
    pool, sep, name = location.partition("/")
    if not sep or not name or "/" in name:
        raise errors.invalid_argument(f"provider location {location!r} is not <pool>/<lun name>")
    _check_pool(pool)
    return t.LunAddress(pool=pool, name=name)


def volume_lun(volume: t.Volume) -> t.LunAddress:
    """Where an existing volume's LUN is."""
    location = volume.provider_location
    if location is None:
        return new_volume_lun(volume)
    if location.startswith(MANAGED):
        return parse_provider_location(location[len(MANAGED):])
    address = parse_provider_location(location)
    expected = lun_name(volume.id)
    if address.name != expected:
        raise errors.invalid_argument(f"provider location {location!r} does not name LUN {expected}")
    return address


def manage_lun(volume: t.Volume, reference: str) -> t.Managed:
    """`manage-existing` for this layout: `reference` is `pool/name` (or a
    name in the volume's pool); the LUN keeps its name and data."""
    if "/" in reference:
        address = parse_provider_location(reference)
    else:
        _check_pool(volume.pool)
        address = t.LunAddress(pool=volume.pool, name=reference)
    if not address.name or address.name.startswith(VOLUME_LUN_PREFIX):
        raise errors.invalid_argument(
            f"reference {reference!r} does not name a LUN outside this driver's volumes"
        )
    size = block.open_lun(address).size()
    if size == 0 or size % 512:
        raise errors.invalid_argument(
            f"LUN {provider_location(address)} holds {size} bytes, not a positive multiple of 512"
        )
    return t.Managed(size_bytes=size, model_update=MANAGED + provider_location(address))
