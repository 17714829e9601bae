"""LUNs of the caller's array, with the idempotent create and delete every
driver needs: a call the host repeats after a crash finds its work done."""

from wit_world.imports import block as _block
from wit_world.imports import ferry_driver_types as t

from . import errors

Lun = _block.Lun
open_lun = _block.open_lun
create_lun = _block.create_lun
list_luns = _block.list_luns


def ensure_lun(address: t.LunAddress, size_bytes: int) -> Lun:
    """The LUN at `address`, created when missing; one of another size is
    an error, never resized."""
    try:
        lun = _block.open_lun(address)
    except BaseException as e:
        if not errors.is_not_found(e):
            raise
        return _block.create_lun(address, size_bytes)
    size = lun.size()
    if size != size_bytes:
        raise errors.invalid_argument(
            f"LUN {address.pool}/{address.name} exists with {size} bytes, not {size_bytes}"
        )
    return lun


def delete_lun_if_present(address: t.LunAddress) -> None:
    """Deletes the LUN; a missing one is already deleted."""
    try:
        _block.delete_lun(address)
    except BaseException as e:
        if not errors.is_not_found(e):
            raise


def close(lun: Lun) -> None:
    """Releases an open LUN now rather than when Python collects it (before
    deleting it, for one)."""
    lun.__exit__(None, None, None)
