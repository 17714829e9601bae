"""Lines in the host's log, tagged with the driver and array."""

from wit_world.imports import context
from wit_world.imports import ferry_driver_types as t


def debug(message: str) -> None:
    context.log(t.LogLevel.DEBUG, message)


def info(message: str) -> None:
    context.log(t.LogLevel.INFO, message)


def warn(message: str) -> None:
    context.log(t.LogLevel.WARN, message)


def error(message: str) -> None:
    context.log(t.LogLevel.ERROR, message)
