"""Each operation as a call: its method, its encoded request, its reply's reading.

The blocking and the async client methods build the same Call here and
differ only in how they send it (a unary call, or an operation of the
Stream call): the whole of the checking, encoding and decoding lives in this
one layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import grpc
from google.protobuf.message import DecodeError

from ._codec import check_key, decode_generations, encode_generations
from ._describe import describe
from ._errors import CacheError, call_failure, status_numbered, trailer_reason
from ._lease import Lease, LeasedLookup
from ._stats import StatsReport, decode_stats
from .v1 import cache_pb2

if TYPE_CHECKING:
    from ._generation import Generation
    from ._options import UpdateOptions

R = TypeVar("R")

# The operations the Stream call carries: StreamOperation's and
# StreamResult's field of each.
Streamed = Literal["lookup", "update", "release_lease"]


@dataclass(frozen=True)
class Call(Generic[R]):
    """One RPC: the method's name, the request's bytes, and what the caller gets.

    `reply` is the reply's message class and `read` makes the caller's value
    of a reply decoded. `streamed` names the StreamOperation field that can
    carry the request instead (None: the method is unary only). `wait` is
    how long, in seconds, the server may hold the call before it answers
    (a lookup waiting for another's fill): its deadline is that much longer
    than the caller's timeout. `leased`: a lookup that may be granted a
    lease (which a caller that gave up on it must release). `retryable`:
    a call that failed with UNAVAILABLE may be sent again to another
    replica (see _replicas), as sending it twice stores nothing the first
    did not: lookups, clear, stats, and updates that overwrite. Not an
    update only if absent (its retry could find what the first attempt
    stored, and answer that it stored nothing), a lease's fill (the first
    attempt may have ended the lease) or a lease's release. `ends_lease`:
    a lease's fill or release, which a closing client still sends while
    calls of its own may be waiting for that lease.
    """

    method: str
    request: bytes
    reply: Any
    read: Callable[[Any], R]
    streamed: Streamed | None = None
    wait: float = 0.0
    leased: bool = False
    retryable: bool = False
    ends_lease: bool = False

    def result(self, reply: bytes) -> R:
        """What the caller gets from the reply; a malformed one is INTERNAL."""
        try:
            message = self.reply.FromString(reply)
        except DecodeError as error:
            details = f"the server's reply is malformed: {error}"
            raise call_failure(
                self.method, grpc.StatusCode.INTERNAL, details
            ) from error
        return self.read(message)

    def stream_result(self, result: Any) -> R:
        """What the caller gets from the StreamResult that answers the request."""
        answer = result.WhichOneof("result")
        if answer == self.streamed:
            return self.read(getattr(result, answer))
        if answer == "error":
            error = result.error
            code = status_numbered(error.code)
            raise call_failure(self.method, code, error.message, error.reason)
        details = f"the server answered a {self.streamed} with {answer}"
        raise call_failure(self.method, grpc.StatusCode.INTERNAL, details)

    def failure(self, error: grpc.RpcError) -> CacheError:
        """The CacheError of a call that grpcio reports failed."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        trailers = (
            error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
        )
        return call_failure(self.method, code, details or "", trailer_reason(trailers))


def lookup(
    prompt: object, llm_string: object, *, namespace: str, bypass: bool
) -> Call[list[Generation] | None]:
    """Lookup: the generations stored for the pair, or None on a miss."""
    request = _lookup_request(prompt, llm_string, namespace, bypass=bypass)
    return Call(
        "Lookup",
        request.SerializeToString(),
        cache_pb2.LookupResponse,
        _lookup_result,
        "lookup",
        retryable=True,
    )


def leased_lookup(
    prompt: object,
    llm_string: object,
    *,
    namespace: str,
    lease_ms: int,
    wait_ms: int,
) -> Call[LeasedLookup]:
    """Lookup that asks for a lease on a miss, and may wait for another's fill."""
    request = _lookup_request(prompt, llm_string, namespace, bypass=False)
    request.lease_ms = lease_ms
    request.wait_ms = wait_ms
    return Call(
        "Lookup",
        request.SerializeToString(),
        cache_pb2.LookupResponse,
        _leased_lookup_result,
        "lookup",
        wait=wait_ms / 1000,
        leased=True,
        retryable=True,
    )


def update(  # noqa: PLR0913 -- the entry, then its options
    prompt: object,
    llm_string: object,
    generations: object,
    options: UpdateOptions,
    *,
    only_if_absent: bool,
    lease_token: str = "",
) -> Call[bool]:
    """Update: stores the generations; the reply says whether it did.

    `lease_token` ("" for none): the token of the pair's lease it fills.
    """
    request = _update_request(prompt, llm_string, generations, options, "")
    request.only_if_absent = only_if_absent
    request.lease_token = lease_token
    return Call(
        "Update",
        request.SerializeToString(),
        cache_pb2.UpdateResponse,
        _update_result,
        "update",
        retryable=not only_if_absent and not lease_token,
        ends_lease=bool(lease_token),
    )


def release_lease(
    prompt: object, llm_string: object, token: str, *, namespace: str
) -> Call[bool]:
    """ReleaseLease: gives up a lease unfilled; whether it was still current."""
    prompt, llm_string = check_key(prompt, llm_string)
    request = cache_pb2.ReleaseLeaseRequest(
        prompt=prompt, llm_string=llm_string, namespace=namespace, lease_token=token
    )
    return Call(
        "ReleaseLease",
        request.SerializeToString(),
        cache_pb2.ReleaseLeaseResponse,
        _release_result,
        "release_lease",
        ends_lease=True,
    )


def clear(*, namespace: str, all_namespaces: bool) -> Call[None]:
    """Clear: removes the entries of a namespace, or of all."""
    request = cache_pb2.ClearRequest(namespace=namespace, all_namespaces=all_namespaces)
    return Call(
        "Clear",
        request.SerializeToString(),
        cache_pb2.ClearResponse,
        _nothing,
        retryable=True,
    )


def stats() -> Call[StatsReport]:
    """Stats: what the cache holds and has done."""
    return Call("Stats", b"", cache_pb2.StatsResponse, decode_stats, retryable=True)


def lookup_many(
    keys: object, *, namespace: str, bypass: bool
) -> Call[list[list[Generation] | None]]:
    """BatchLookup: one result per key, in the keys' order."""
    pairs = _items(keys, "keys", ("prompt", "llm_string"))
    request = cache_pb2.BatchLookupRequest(
        lookups=[
            _lookup_request(
                prompt, llm_string, namespace, bypass=bypass, path=f"keys[{i}]."
            )
            for i, (prompt, llm_string) in enumerate(pairs)
        ]
    )
    expected = len(pairs)

    def read(reply: Any) -> list[list[Generation] | None]:
        results = reply.results
        if len(results) != expected:
            details = f"{len(results)} results for {expected} lookups"
            raise call_failure("BatchLookup", grpc.StatusCode.INTERNAL, details)
        return [_lookup_result(result) for result in results]

    return Call(
        "BatchLookup",
        request.SerializeToString(),
        cache_pb2.BatchLookupResponse,
        read,
        retryable=True,
    )


def update_many(entries: object, options: UpdateOptions) -> Call[None]:
    """BatchUpdate: stores every entry, in order, or none if one is refused."""
    triples = _items(entries, "entries", ("prompt", "llm_string", "generations"))
    request = cache_pb2.BatchUpdateRequest(
        updates=[
            _update_request(prompt, llm_string, generations, options, f"entries[{i}].")
            for i, (prompt, llm_string, generations) in enumerate(triples)
        ]
    )
    return Call(
        "BatchUpdate",
        request.SerializeToString(),
        cache_pb2.BatchUpdateResponse,
        _nothing,
        retryable=True,
    )


def _lookup_request(
    prompt: object, llm_string: object, namespace: str, *, bypass: bool, path: str = ""
) -> Any:
    key = check_key(prompt, llm_string, path)
    return cache_pb2.LookupRequest(
        prompt=key[0], llm_string=key[1], namespace=namespace, bypass=bypass
    )


def _update_request(
    prompt: object,
    llm_string: object,
    generations: object,
    options: UpdateOptions,
    path: str,
) -> Any:
    prompt, llm_string = check_key(prompt, llm_string, path)
    return cache_pb2.UpdateRequest(
        prompt=prompt,
        llm_string=llm_string,
        generations=encode_generations(generations, f"{path}generations"),
        namespace=options.namespace,
        ttl_ms=options.expiry.ttl_ms,
        never_expires=options.expiry.never_expires,
        no_store=options.no_store,
    )


def stored_generations(call: Call[Any]) -> list[Generation]:
    """The generations an Update call sends, as a lookup would give them back."""
    return decode_generations(
        cache_pb2.UpdateRequest.FromString(call.request).generations
    )


def _items(value: object, name: str, fields: Sequence[str]) -> Sequence[Sequence[Any]]:
    """An iterable of tuples of `fields`, as a list, each checked for its size."""
    shape = f"({', '.join(fields)})"
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        message = f"{name} must be an iterable of {shape} tuples, got {describe(value)}"
        raise TypeError(message)
    items = list(value)
    for i, item in enumerate(items):
        if isinstance(item, tuple | list) and len(item) == len(fields):
            continue
        got = describe(item)
        if isinstance(item, tuple | list):
            got += f" of {len(item)} item{'' if len(item) == 1 else 's'}"
        raise TypeError(f"{name}[{i}] must be a tuple of {shape}, got {got}")
    return items


def _lookup_result(result: Any) -> list[Generation] | None:
    return decode_generations(result.generations) if result.hit else None


def _leased_lookup_result(result: Any) -> LeasedLookup:
    if result.hit:
        return LeasedLookup(decode_generations(result.generations), None)
    lease = None
    if result.HasField("lease") and result.lease.token:
        lease = Lease(result.lease.token, result.lease.lease_ms)
    return LeasedLookup(None, lease)


def granted_token(result: Any) -> str | None:
    """The token of the lease a lookup's StreamResult grants, if it grants one."""
    if result.WhichOneof("result") != "lookup":
        return None
    lookup = result.lookup
    if lookup.hit or not lookup.HasField("lease"):
        return None
    return str(lookup.lease.token) or None


def _release_result(result: Any) -> bool:
    return bool(result.released)


def _update_result(result: Any) -> bool:
    return bool(result.stored)


def _nothing(reply: Any) -> None:
    del reply
