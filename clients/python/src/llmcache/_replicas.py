"""Several replicas of one cache: where a call goes, and where it goes next.

The rules, the same as the TypeScript client's (src/client/replica-picker.ts),
for the blocking and the async calls alike:

- Where a call goes: round robin over the replicas whose channel is not in
  TRANSIENT_FAILURE, starting with the first address. When none is healthy it
  goes to the next one anyway (and fails fast there with UNAVAILABLE).
- When it goes elsewhere: a call that fails with UNAVAILABLE and is safe to
  send twice (Call.retryable) is sent again to a replica it has not tried
  yet, with what is left of its deadline, as long as some is left: at most
  once per replica.

With one replica there is nothing to pick and nowhere to retry: a call is
made exactly as a client of one server makes it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from ._describe import describe

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from ._errors import CacheError

    Health = Callable[[int], bool]
    """Whether the replica numbered so is healthy (not in TRANSIENT_FAILURE)."""

# host:port or [IPv6]:port (the TypeScript client's pattern), the port
# checked for its range apart.
_HOST_PORT = re.compile(
    r"(?:\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\]|[^\s:/,\[\]]+):(\d{1,5})", re.ASCII
)
# gRPC's dns target (its naming doc): "dns:", an optional "//" DNS server "/",
# then host:port.
_DNS_TARGET = re.compile(r"dns:(?://[^\s/,]*/)?(.*)", re.ASCII)
_MAX_PORT = 65_535
_ADDRESS_TYPE = (
    "address must be a non-empty str (host:port, or several separated by commas)"
    " or a sequence of host:port, got {}"
)
_TRANSIENT_FAILURE = grpc.ChannelConnectivity.TRANSIENT_FAILURE


def addresses_of(address: object) -> tuple[str, ...]:
    """The replicas `address` names: "host:port", several joined by ",", or a sequence.

    A grpc "unix:PATH" target counts as one address, as the TypeScript
    client and the command line allow, and so does a gRPC "dns:" target
    ("dns:///cache.internal:50051"; the port is required), whose records
    are all used.
    """
    if isinstance(address, str):
        items: Sequence[object] = address.split(",") if address else []
    elif isinstance(address, Sequence) and not isinstance(address, bytes):
        items = address
    else:
        raise TypeError(_ADDRESS_TYPE.format(describe(address)))
    if not items:
        raise TypeError(_ADDRESS_TYPE.format(f"an empty {type(address).__name__}"))
    seen: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str):
            message = f"address items must be str (host:port), got {describe(item)}"
            raise TypeError(message)
        if not item:
            raise ValueError(f"address has an empty item: {address!r}")
        if not _is_address(item):
            message = (
                "address items must be host:port (such as '10.0.0.1:50051',"
                f" '[::1]:50051' or 'dns:///cache.internal:50051'), got {item!r}"
            )
            raise ValueError(message)
        if item in seen:
            raise ValueError(f"address names {item!r} twice")
        seen[item] = None
    return tuple(seen)


def _is_address(item: str) -> bool:
    if item.startswith("unix:"):
        return len(item) > len("unix:") and "," not in item
    dns = _DNS_TARGET.fullmatch(item)
    match = _HOST_PORT.fullmatch(dns.group(1) if dns else item)
    return match is not None and 1 <= int(match.group(1)) <= _MAX_PORT


class Picker:
    """Round robin over a client's replicas; shared by its threads and loops."""

    def __init__(self, count: int) -> None:
        """Takes turns over `count` replicas, numbered in the addresses' order."""
        self.count = count
        self._next = 0
        self._lock = threading.Lock()

    def pick(self, healthy: Health, tried: Collection[int] = ()) -> int:
        """The next replica not in `tried` (one must be left), healthy if one is."""
        with self._lock:
            fallback = -1
            for step in range(self.count):
                replica = (self._next + step) % self.count
                if replica in tried:
                    continue
                if fallback < 0:
                    fallback = replica
                if healthy(replica):
                    break
            else:
                replica = fallback
            self._next = (replica + 1) % self.count
            return replica


class Attempts:
    """One call's way over the replicas: the replica and the timeout of each try.

    `replica` and `timeout` are the current attempt's: first the picker's
    next replica and the call's whole deadline; after a failure that
    retry() accepts, a replica not tried yet and the time left.
    """

    __slots__ = ("_ends_at", "_health", "_picker", "_retryable", "replica", "timeout")

    def __init__(
        self, picker: Picker, health: Health, timeout: float, *, retryable: bool
    ) -> None:
        """Starts a call whose deadline is `timeout` seconds from now."""
        self.timeout = timeout
        self._picker = picker
        if picker.count == 1:  # nothing to pick, nowhere to retry
            self.replica = 0
            self._retryable: set[int] | None = None
            return
        self._health = health
        self._ends_at = time.monotonic() + timeout
        self.replica = picker.pick(health)
        self._retryable = {self.replica} if retryable else None

    def retry(self, error: CacheError) -> bool:
        """Whether the call goes on after `error`, on the replica it picks then."""
        tried = self._retryable
        if (
            tried is None
            or error.grpc_code != grpc.StatusCode.UNAVAILABLE
            or len(tried) == self._picker.count
        ):
            return False
        remaining = self._ends_at - time.monotonic()
        if remaining <= 0:
            return False
        self.replica = self._picker.pick(self._health, tried)
        tried.add(self.replica)
        self.timeout = remaining
        return True


def always_healthy(replica: int) -> bool:
    """The health of a client's only replica, never asked."""
    del replica
    return True


class BlockingHealth:
    """Blocking channels' health, as grpcio reports each change of their state."""

    def __init__(self, channels: Sequence[Any]) -> None:
        """Watches each channel, which starts connecting."""
        self._failing = [False] * len(channels)
        for replica, channel in enumerate(channels):
            channel.subscribe(self._watcher(replica), try_to_connect=True)

    def __call__(self, replica: int) -> bool:
        """Whether the replica's channel is not in TRANSIENT_FAILURE."""
        return not self._failing[replica]

    def _watcher(self, replica: int) -> Callable[[grpc.ChannelConnectivity], None]:
        def changed(state: grpc.ChannelConnectivity) -> None:
            self._failing[replica] = state == _TRANSIENT_FAILURE

        return changed


def async_health(channels: Sequence[Any]) -> Health:
    """Grpc.aio channels' health, asked at each pick.

    An idle channel starts connecting, so that it is ready when its turn
    comes.
    """

    def healthy(replica: int) -> bool:
        return bool(
            channels[replica].get_state(try_to_connect=True) != _TRANSIENT_FAILURE
        )

    return healthy
