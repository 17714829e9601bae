"""Ferry's driver SDK for Python: the conveniences the Rust SDK offers,
over the bindings componentize-py generates from the same `wit/` files.

- `driver`: `OneLunPerVolume`, a base for the `Driver` class that answers
  every call the usual way (override what differs).
- `errors`: raise a driver error by its case (`errors.invalid_argument(...)`).
- `layout`: the one-LUN-per-volume layout every example driver uses.
- `block`: idempotent LUN create and delete.
- `log`: lines in the host's log, tagged with the driver and array.
- `outcome`: what the migration calls answer.
- `state`: typed driver state (JSON values).
"""

from . import block, driver, errors, layout, log, outcome, state  # noqa: F401
