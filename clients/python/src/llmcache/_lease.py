"""Single flight: leases, what a lookup that asks for one gets, and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._describe import describe

if TYPE_CHECKING:
    from ._generation import Generation

# The longest lease, and the longest wait, a lookup may ask for: an hour
# (the server refuses more).
MAX_LEASE_MS = 3_600_000


@dataclass(frozen=True)
class Lease:
    """The right, for a while, to fill a pair that other callers wait for.

    Granted by a lookup that asked for one (`lease_ms=`) and missed while no
    other caller held the pair's lease: compute the answer, then give
    `token` back to `update(..., lease_token=token)`, or to
    `release_lease(...)` if the computation failed.
    """

    token: str
    """Opaque; the proof that a fill or release is this lease's."""
    lease_ms: int
    """How long the lease lasts from when it was granted, in milliseconds."""


@dataclass(frozen=True)
class LeasedLookup:
    """What a lookup that asked for a lease (`lease_ms=`) gets.

    Three outcomes: a hit (`generations` set, `lease` None), stored before
    or filled by another caller while this one waited; a miss with a lease
    (`generations` None, `lease` set): this caller is to compute the answer
    and update the pair with the lease's token; a plain miss (both None):
    another caller holds the lease and the wait, if any, ran out; compute
    on your own and update without a token.
    """

    generations: list[Generation] | None
    """The stored generations on a hit; None on a miss."""
    lease: Lease | None
    """The lease granted to this caller, on a miss; None otherwise."""

    @property
    def hit(self) -> bool:
        """Whether the lookup found generations."""
        return self.generations is not None


def lease_ms_of(value: object) -> int:
    """A lookup's lease_ms: an int of milliseconds, 1 to MAX_LEASE_MS."""
    return _milliseconds(value, "lease_ms", 1)


def wait_ms_of(value: object) -> int:
    """A lookup's wait_ms: an int of milliseconds, 0 to MAX_LEASE_MS."""
    return _milliseconds(value, "wait_ms", 0)


def lease_token_of(value: object, name: str = "lease_token") -> str:
    """A lease's token as given back: a non-empty str."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (Lease.token), got {describe(value)}")
    if not value:
        raise ValueError(f"{name} must be a lease's token, not an empty str")
    return value


def _milliseconds(value: object, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        message = f"{name} must be an int of milliseconds, got {describe(value)}"
        raise TypeError(message)
    if not least <= value <= MAX_LEASE_MS:
        message = (
            f"{name} must be from {least} to {MAX_LEASE_MS:,} milliseconds"
            f" (an hour), got {value}"
        )
        raise ValueError(message)
    return value
