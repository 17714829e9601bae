"""Driver state kept by the host, as JSON values: written with the call's
result, dropped with a call that traps or times out."""

import json
from typing import Any, List, Optional

from componentize_py_types import Err
from wit_world.imports import state as _state

from . import errors


def get(key: str) -> Optional[Any]:
    """The value under `key`, or None."""
    raw = _state.get(key)
    return None if raw is None else json.loads(raw)


def set(key: str, value: Any) -> None:  # noqa: A001 - the contract's name
    """Sets `key` to `value` (keys up to 256 bytes, values up to 64 KiB)."""
    try:
        _state.set(key, json.dumps(value).encode())
    except Err as e:
        raise errors.invalid_argument(f"state {key!r}: {e.value}")


def get_string(key: str) -> Optional[str]:
    """The text under `key` (UTF-8, as the Rust SDK's `get_string` keeps
    it), or None: drivers of both languages read each other's state."""
    raw = _state.get(key)
    if raw is None:
        return None
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        raise errors.backend_error(f"state {key!r} is not UTF-8 text")


def set_string(key: str, value: str) -> None:
    """Sets `key` to `value` as UTF-8 text."""
    try:
        _state.set(key, value.encode())
    except Err as e:
        raise errors.invalid_argument(f"state {key!r}: {e.value}")


def remove(key: str) -> None:
    """Removes `key`; a missing key is removed already."""
    _state.remove(key)


def keys(prefix: str) -> List[str]:
    """Keys that start with `prefix`, in order."""
    return _state.keys(prefix)
