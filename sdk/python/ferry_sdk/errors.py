"""Driver errors: each case of the contract's `driver-error`, raised so the
host answers the call with it (and its stable error code)."""

from componentize_py_types import Err
from wit_world.imports import ferry_driver_types as t


def unsupported(message: str) -> Err:
    """The driver does not do this: the host falls back where it can."""
    return Err(t.DriverError_Unsupported(message))


def invalid_argument(message: str) -> Err:
    """The request names something the driver cannot accept."""
    return Err(t.DriverError_InvalidArgument(message))


def not_found(message: str) -> Err:
    """What the call names does not exist."""
    return Err(t.DriverError_NotFound(message))


def no_space(message: str) -> Err:
    """The array has no room for it."""
    return Err(t.DriverError_NoSpace(message))


def backend_error(message: str) -> Err:
    """The array failed."""
    return Err(t.DriverError_BackendError(message))


def is_not_found(error: BaseException) -> bool:
    """Whether a host call failed with `not-found`."""
    return isinstance(error, Err) and isinstance(error.value, t.DriverError_NotFound)


def _case(error: BaseException):
    return error.value if isinstance(error, Err) else None


def is_unsupported(error: BaseException) -> bool:
    """Whether a host call failed with `unsupported`."""
    return isinstance(_case(error), t.DriverError_Unsupported)


def message(error: BaseException) -> str:
    """The text of a driver error (or of any other exception)."""
    case = _case(error)
    return case.value if case is not None else str(error)


def context(error: BaseException, what: str) -> Err:
    """The same error case, its message prefixed with what was being done;
    a Python exception that is no driver error becomes a backend error."""
    case = _case(error)
    if case is None:
        return backend_error(f"{what}: {error}")
    return Err(type(case)(f"{what}: {case.value}"))
