"""The `python-plain` example driver: the `plain` driver in Python. Each
volume is one thin LUN; every migration call is declined, so migrations to
and from its arrays take the host's own copy. All of it is the SDK's
`OneLunPerVolume`: a driver states only what it does differently."""

from wit_world import exports

from ferry_sdk.driver import OneLunPerVolume


class Driver(OneLunPerVolume, exports.Driver):
    pass
