"""The errors a call fails with, and the one mapping from grpcio's to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from collections.abc import Iterable

# The trailer in which the server gives a failure's machine-readable reason.
REASON_TRAILER = "llmcache-reason"
# The reason, with RESOURCE_EXHAUSTED, for an entry larger than a byte budget.
ENTRY_TOO_LARGE_REASON = "entry_too_large"

_STATUS_BY_NAME = {status.name: status for status in grpc.StatusCode}
_STATUS_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


class CacheError(Exception):
    """A call to the cache server failed.

    `code` is the gRPC status by name, as the TypeScript client gives it:
    "UNAVAILABLE" (no server there, or the connection broke),
    "DEADLINE_EXCEEDED" (no answer within the timeout), "UNAUTHENTICATED"
    (a missing or unknown token), "PERMISSION_DENIED" (a token outside its
    rights), "RESOURCE_EXHAUSTED" (a limit of the server),
    "INVALID_ARGUMENT", "FAILED_PRECONDITION" (the client is closed), ...
    `grpc_code` is the same status as grpcio's `grpc.StatusCode`, `details`
    the server's own message, and `method` the RPC that failed ("Lookup",
    "BatchUpdate", ...; None when no call was made). The message says all
    of it: "Lookup failed: UNAVAILABLE: ...".
    """

    code: str
    grpc_code: grpc.StatusCode
    details: str
    method: str | None

    def __init__(
        self,
        code: str | grpc.StatusCode,
        message: str,
        *,
        details: str | None = None,
        method: str | None = None,
    ) -> None:
        """Makes an error of a status (name or grpcio's code) and message."""
        super().__init__(message)
        self.grpc_code = (
            code if isinstance(code, grpc.StatusCode) else _status_named(code)
        )
        self.code = self.grpc_code.name
        self.details = message if details is None else details
        self.method = method


class EntryTooLargeError(CacheError):
    """The entry is larger on its own than the server's byte budget.

    It was not stored, and nothing was evicted for it. The server answers
    RESOURCE_EXHAUSTED with the trailer `llmcache-reason: entry_too_large`;
    `code` is "RESOURCE_EXHAUSTED".
    """


def call_failure(
    method: str, code: grpc.StatusCode, details: str, reason: str | None = None
) -> CacheError:
    """The error of a failed call: "Lookup failed: UNAVAILABLE: ...".

    `reason` is the server's machine-readable reason, from a unary call's
    trailer (trailer_reason) or a stream's OperationError.
    """
    message = f"{method} failed: {code.name}: {details}"
    error_type = CacheError
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason == ENTRY_TOO_LARGE_REASON:
        error_type = EntryTooLargeError
    return error_type(code, message, details=details, method=method)


def status_numbered(number: int) -> grpc.StatusCode:
    """The gRPC status of a google.rpc.Code number; UNKNOWN for one unknown."""
    return _STATUS_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def closed_error() -> CacheError:
    """The error of a call made on a closed client."""
    return CacheError(grpc.StatusCode.FAILED_PRECONDITION, "the client is closed")


def trailer_reason(trailers: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The reason a failed unary call gives in its trailers, if any."""
    for key, value in trailers or ():
        if key == REASON_TRAILER:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _status_named(name: str) -> grpc.StatusCode:
    status = _STATUS_BY_NAME.get(name)
    if status is None:
        message = f"code must be the name of a gRPC status, got {name!r}"
        raise ValueError(message)
    return status
