"""The checks of the options a client and its calls take."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from ._codec import checked
from ._describe import describe

# The longest ttl the server takes, in milliseconds (2**53 - 1); longer is
# `never_expires`.
MAX_TTL_MS = 2**53 - 1
_NEVER_EXPIRES_INSTEAD = "never_expires=True keeps an entry for ever"

Ttl = float | timedelta


@dataclass(frozen=True)
class Expiry:
    """An update's ttl_ms (0: the default) and never_expires, as sent."""

    ttl_ms: int = 0
    never_expires: bool = False


@dataclass(frozen=True)
class UpdateOptions:
    """The options of an update, checked, as sent."""

    namespace: str
    expiry: Expiry
    no_store: bool


def update_options(
    namespace: object,
    ttl: object,
    never_expires: object,
    no_store: object,
    default: str,
) -> UpdateOptions:
    """Checks an update's options; the namespace defaults to `default`."""
    return UpdateOptions(
        namespace=namespace_of(namespace, default),
        expiry=expiry_of(ttl, never_expires),
        no_store=flag(no_store, "no_store"),
    )


def namespace_of(namespace: object, default: str) -> str:
    """The call's namespace: the one given, else the client's."""
    return default if namespace is None else checked(namespace, "namespace")


def flag(value: object, name: str) -> bool:
    """A boolean option, refused if it is anything else."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return value


# The longest deadline a call may have, in seconds: 24 days, as in the
# TypeScript client. Past about 7.4e9 s grpcio's deadline overflows and the
# call fails at once; past 2**31 ms (a lease's wait of up to an hour on top)
# a grpc-js server reads it as negative.
MAX_TIMEOUT = 24 * 86_400


def timeout_of(timeout: object, name: str = "timeout") -> float:
    """A deadline in seconds: a positive, finite number."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        message = f"{name} must be a number of seconds, got {describe(timeout)}"
        raise TypeError(message)
    if not math.isfinite(timeout) or timeout <= 0:
        message = f"{name} must be a positive, finite number of seconds, got {timeout}"
        raise ValueError(message)
    if timeout > MAX_TIMEOUT:
        limit = f"{MAX_TIMEOUT} seconds (24 days)"
        message = f"{name} must be at most {limit}, got {timeout}"
        raise ValueError(message)
    return float(timeout)


def expiry_of(
    ttl: object, never_expires: object, *, instead: str = _NEVER_EXPIRES_INSTEAD
) -> Expiry:
    """An update's expiry from its `ttl` and `never_expires` options.

    ttl is seconds (an int or a float) or a timedelta, rounded to the
    nearest millisecond, at least 1; None leaves it to the server's default.
    `instead`: what a bad ttl's message offers in its place, in the terms
    of the caller's options.
    """
    if flag(never_expires, "never_expires"):
        if ttl is not None:
            raise ValueError("give ttl or never_expires, not both")
        return Expiry(never_expires=True)
    if ttl is None:
        return Expiry()
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, int | float) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        message = f"ttl must be seconds (a float) or a timedelta, got {describe(ttl)}"
        raise TypeError(message)
    if not math.isfinite(seconds) or seconds <= 0:
        message = f"ttl must be a positive, finite duration, got {ttl!r} ({instead})"
        raise ValueError(message)
    ttl_ms = max(1, round(seconds * 1000))
    if ttl_ms > MAX_TTL_MS:
        message = (
            f"ttl is {ttl_ms} ms, over the server's limit of {MAX_TTL_MS} ({instead})"
        )
        raise ValueError(message)
    return Expiry(ttl_ms=ttl_ms)
