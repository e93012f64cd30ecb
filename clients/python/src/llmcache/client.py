"""CacheClient: a remote llmcache server, with blocking and async methods."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeAlias, TypeVar, overload

import grpc

from . import _calls
from ._channel import ChannelSettings, TlsConfig, open_async, open_blocking
from ._codec import checked
from ._describe import describe
from ._errors import CacheError, closed_error
from ._lease import LeasedLookup, lease_ms_of, lease_token_of, wait_ms_of
from ._options import Ttl, flag, namespace_of, timeout_of, update_options
from ._replicas import Attempts, BlockingHealth, Picker, always_healthy, async_health
from ._stream import OperationStream, streams

if TYPE_CHECKING:
    from collections.abc import (
        Awaitable,
        Callable,
        Iterable,
        Iterator,
        Mapping,
        Sequence,
    )
    from types import TracebackType

    from ._calls import Call
    from ._channel import Callables
    from ._generation import Generation
    from ._options import UpdateOptions
    from ._replicas import Health
    from ._stats import StatsReport

    Generations: TypeAlias = Sequence[Generation | Mapping[str, Any]]
    """What compute() gives get_or_compute: generations, as update() takes them."""

R = TypeVar("R")

DEFAULT_TIMEOUT = 5.0
# get_or_compute's defaults: how long the caller that computes holds the
# pair's lease, and how long the others wait for its fill, in milliseconds.
DEFAULT_LEASE_MS = 30_000
DEFAULT_WAIT_MS = 60_000


class _BlockingTransport(NamedTuple):
    """The blocking calls' channel to each replica, the replicas' health, and close."""

    replicas: tuple[Callables, ...]
    health: Health
    close: Callable[[], object]
    """Closes the channels, the first time only."""


class _AsyncReplica:
    """A replica's grpc.aio channel on one event loop, and its stream if opened."""

    __slots__ = ("callables", "stream")

    def __init__(self, callables: Callables) -> None:
        self.callables = callables
        self.stream: OperationStream | None = None


class _LoopTransport(NamedTuple):
    """An event loop's replicas (a grpc.aio channel to each) and their health."""

    replicas: tuple[_AsyncReplica, ...]
    health: Health
    calls: set[asyncio.Future[None]]
    """One per call in flight, done when it ends: aclose() waits for them."""


def _close_channels(replicas: tuple[Callables, ...]) -> None:
    for replica in replicas:
        replica.channel.close()


class CacheClient:
    """A client of an llmcache server: LangChain's cache operations over gRPC.

    Every operation has a blocking method (`lookup`, `update`, ...; grpcio's
    blocking calls) and an async twin (`alookup`, `aupdate`, ...; native
    grpc.aio, no thread pool). Both build the same request and read the same
    reply; only the sending differs.

    Values are plain data in LangChain's shape (see Generation and
    ChatMessage): a lookup returns a list of generations, `None` on a miss,
    and `[]` for a stored empty list.

    Args:
        address: "host:port" of the server ("10.0.0.1:50051",
            "[::1]:50051"), or of several replicas of one cache (servers
            sharing one Redis): "host:port" items separated by commas, or a
            sequence of them. An empty list or item, a duplicate, or an item
            that is not host:port is refused (TypeError, ValueError). See
            Replicas below.
        token: a bearer token from the server's auth file, sent with every
            call as "authorization: Bearer <token>".
        tls: False for plain text (the default); True for TLS with the
            system's roots; a TlsConfig for a CA of your own or mutual TLS.
        namespace: the namespace of the calls that name none; default "".
        timeout: each call's deadline in seconds, unless the call gives its
            own; default 5.0.
        batching: auto-batching of the async lookups and updates
            (`alookup`, `aupdate`, `aupdate_if_absent`, `arelease_lease`),
            on by default: those started in the same turn of the event loop
            travel together on one long-lived stream (CacheService.Stream),
            each call keeping its own deadline, cancellation and error.
            False makes each a unary call of its own. The blocking methods
            are unary either way.

    Replicas: the client opens a channel to each address; a DNS name with
    several records is spread over all of them (round robin). Calls take
    turns over the replicas whose channel is not in TRANSIENT_FAILURE
    (the first call goes to the first address), or go to the next one
    anyway when none is healthy. A call that fails with UNAVAILABLE (its
    replica died, or was never there) is made again on a replica it has
    not tried yet, with what is left of its deadline, at most once per
    replica: lookups (leased or not), lookup_many, stats, clear, and
    updates that overwrite (update, update_many: storing the same value
    again changes nothing). Never retried, so that their UNAVAILABLE
    reaches the caller: update_if_absent (a retry could find what the
    first attempt stored and answer False), an update that fills a lease
    (`lease_token`), and release_lease. Batching, each replica has its own
    stream. With one address nothing is picked or retried.

    Single flight (leases, as memcache's): `lookup(..., lease_ms=...)` asks
    for a lease on a miss, so that of many callers missing the same pair at
    once one computes it while the others wait (`wait_ms`) for its update;
    `get_or_compute()` does all of it. See LeasedLookup.

    Errors: a failed call raises CacheError with the gRPC status name as
    `code` ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED", ...);
    an entry larger than the server's byte budget, EntryTooLargeError. Bad
    input (a prompt that is not a str, a value JSON cannot carry, NaN, an
    int beyond ±2**53) raises TypeError or ValueError naming the field,
    before anything is sent.

    Close the client with `close()` / `await aclose()`, or use it as a
    context manager (`with` or `async with`); one never closed has its
    blocking channels closed when it is collected, or at the interpreter's
    exit at the latest. The async methods keep one
    channel (and, batching, one stream) per replica and event loop, so a
    client may serve several `asyncio.run`s; `aclose()` ends the streams
    of its loop once they have answered, and a loop that ends with a
    stream open cancels it.

    """

    def __init__(  # noqa: PLR0913 -- the address, then keyword options
        self,
        address: str | Sequence[str],
        *,
        token: str | None = None,
        tls: bool | TlsConfig = False,
        namespace: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        batching: bool = True,
    ) -> None:
        """Checks the options; connects lazily, on the first call."""
        self._settings = ChannelSettings.of(address, token, tls)
        self._namespace = "" if namespace is None else checked(namespace, "namespace")
        self._timeout = timeout_of(timeout)
        self._batching = flag(batching, "batching")
        self._picker = Picker(len(self._settings.addresses))
        # Reentrant: close() may run in a signal handler on a thread that
        # holds the lock, in the middle of a call.
        self._lock = threading.RLock()
        self._closed = False
        # Blocking calls in flight, by thread, which close() lets finish:
        # grpcio's close() would cancel them, or fail them with its own
        # ValueError. By thread, so that a close() made on a thread in the
        # middle of a call (from a signal handler) does not wait for it.
        self._blocking_calls: Counter[int] = Counter()
        self._blocking_calls_ended = threading.Condition(self._lock)
        self._blocking: _BlockingTransport | None = None
        self._blocking_closed = False
        # Kept once the client is closed, until their loop's aclose() closes
        # them: the calls that end a lease still use them (_async_transport).
        self._async: dict[asyncio.AbstractEventLoop, _LoopTransport] = {}
        # Each loop's aclose(), which a second aclose() waits for too.
        self._aclosing: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    @property
    def address(self) -> str:
        """The replicas' "host:port", joined with "," (one: the server's)."""
        return ",".join(self._settings.addresses)

    @property
    def addresses(self) -> tuple[str, ...]:
        """Each replica's "host:port", in the order given."""
        return self._settings.addresses

    @property
    def namespace(self) -> str:
        """The namespace of the calls that name none."""
        return self._namespace

    @property
    def timeout(self) -> float:
        """The deadline of each call that gives none, in seconds."""
        return self._timeout

    @property
    def batching(self) -> bool:
        """Whether the async lookups and updates are auto-batched on a stream."""
        return self._batching

    # -- blocking -----------------------------------------------------------

    @overload
    def lookup(
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        lease_ms: None = None,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> list[Generation] | None: ...

    @overload
    def lookup(
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        lease_ms: int,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> LeasedLookup: ...

    def lookup(  # noqa: PLR0913 -- the key, then keyword options
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        lease_ms: int | None = None,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> list[Generation] | LeasedLookup | None:
        """The generations stored for (prompt, llm_string); None on a miss.

        A stored empty list comes back as []. `bypass=True` skips the read:
        the answer is a miss whatever is stored, counted as a bypass.

        Single flight: with `lease_ms` (1 to 3,600,000 ms: how long this
        caller expects to need to compute the answer and update it) the
        lookup returns a LeasedLookup instead: a hit; or a miss that grants
        this caller the pair's lease (update with `lease_token=`, or
        release_lease() on failure); or, while another caller holds the
        lease, it waits up to `wait_ms` (0 to 3,600,000; default 0: no wait)
        for that caller's update and returns its hit, and a plain miss (no
        lease) if the wait runs out. A waiting call's deadline is `wait_ms`
        plus its timeout. Asking for a lease needs the right to write the
        namespace; it cannot be combined with `bypass`.
        """
        if lease_ms is None:
            return self._send(
                self._lookup(prompt, llm_string, namespace, bypass, wait_ms), timeout
            )
        call = self._leased_lookup(
            prompt, llm_string, namespace, bypass, lease_ms=lease_ms, wait_ms=wait_ms
        )
        return self._send(call, timeout)

    def update(  # noqa: PLR0913 -- LangChain's three, then keyword options
        self,
        prompt: str,
        llm_string: str,
        generations: Sequence[Generation | Mapping[str, Any]],
        *,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        no_store: bool = False,
        lease_token: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Stores the generations for (prompt, llm_string), replacing any.

        ttl: how long the entry lives, in seconds (a float) or a timedelta,
        rounded to the millisecond; None: the server's default for the
        namespace. never_expires=True: for ever, whatever the defaults say.
        no_store=True: the update is accepted and nothing is stored.

        lease_token: the token of the lease a lookup granted (Lease.token),
        to fill the pair and answer the lookups waiting for it. A token no
        longer current (the lease expired, was released or cleared, or the
        server restarted) is stored only if the pair holds no live entry and
        no other lease, so that it never overwrites a newer value; else it
        is not stored (update_if_absent() says which happened). Any update
        that stores the pair, with a token or without, ends its lease.
        """
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt,
            llm_string,
            generations,
            options,
            only_if_absent=False,
            lease_token=self._lease_token(lease_token),
        )
        self._send(call, timeout)

    def update_if_absent(  # noqa: PLR0913 -- as update
        self,
        prompt: str,
        llm_string: str,
        generations: Sequence[Generation | Mapping[str, Any]],
        *,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        no_store: bool = False,
        lease_token: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Stores the generations only if the pair has no live entry.

        Returns whether it stored them: False when an entry was there (it
        stays as it was) and for no_store. Options as for update().
        """
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt,
            llm_string,
            generations,
            options,
            only_if_absent=True,
            lease_token=self._lease_token(lease_token),
        )
        return self._send(call, timeout)

    def release_lease(
        self,
        prompt: str,
        llm_string: str,
        token: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Gives up a lease unfilled (the computation failed).

        The next lookup waiting for the pair is granted a lease at once
        rather than when this one would have expired. Returns whether the
        token was still the pair's current lease.
        """
        return self._send(self._release(prompt, llm_string, token, namespace), timeout)

    def get_or_compute(  # noqa: PLR0913 -- the key and compute, then keyword options
        self,
        prompt: str,
        llm_string: str,
        compute: Callable[[], Generations],
        *,
        lease_ms: int = DEFAULT_LEASE_MS,
        wait_ms: int = DEFAULT_WAIT_MS,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        timeout: float | None = None,
    ) -> list[Generation]:
        """The pair's generations: the cache's, or compute()'s, computed once.

        Single flight: looks the pair up with a lease (`lease_ms`, default
        30 s: how long compute may take before another caller is let in).
        A hit is returned. A miss that grants this caller the lease runs
        compute(), updates the pair with the lease's token (which answers
        every lookup waiting for it, in this process or any other) and
        returns what compute gave, as a lookup would give it back. While
        another caller holds the lease this one waits, up to `wait_ms`
        (default 60 s), for its update; if the wait runs out it computes
        and updates on its own, without a token.

        If compute raises, the lease is released (so that the next waiting
        caller computes at once; a failure to release is ignored) and the
        exception propagates. Errors of the cache calls propagate too
        (CacheError), after the lease is released. `namespace`, `ttl` and
        `never_expires` are those of lookup() and update(); `timeout` is
        each call's (a waiting lookup's deadline is wait_ms longer).
        Asking for a lease needs the right to write the namespace.
        """
        options = self._computing(compute, namespace, ttl, never_expires)
        # A call of its own for close(), compute included: closed under it,
        # its fill (and its release) would be refused.
        with self._blocking_call():
            lookup = self._leased_lookup(
                prompt,
                llm_string,
                options.namespace,
                bypass=False,
                lease_ms=lease_ms,
                wait_ms=wait_ms,
            )
            found = self._send(lookup, timeout, admitted=True)
            if found.generations is not None:
                return found.generations
            token = "" if found.lease is None else found.lease.token
            try:
                call = _calls.update(
                    prompt,
                    llm_string,
                    compute(),
                    options,
                    only_if_absent=False,
                    lease_token=token,
                )
                self._send(call, timeout, admitted=True)
            except BaseException:
                if token:
                    release = self._release(
                        prompt, llm_string, token, options.namespace
                    )
                    with contextlib.suppress(Exception):  # it expires then
                        self._send(release, timeout, admitted=True)
                raise
            return _calls.stored_generations(call)

    def clear(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Removes every entry of the namespace, or of all namespaces.

        `namespace` (default: the client's) and `all_namespaces=True` are
        refused together (ValueError), before anything is sent.
        """
        self._send(self._clear(namespace, all_namespaces), timeout)

    def stats(self, *, timeout: float | None = None) -> StatsReport:
        """What the cache holds and has done, in total and per namespace."""
        return self._send(_calls.stats(), timeout)

    def lookup_many(
        self,
        keys: Iterable[tuple[str, str]],
        *,
        namespace: str | None = None,
        bypass: bool = False,
        timeout: float | None = None,
    ) -> list[list[Generation] | None]:
        """Looks up many (prompt, llm_string) pairs in one call.

        One result per pair, in their order: a list of generations or None.
        The options apply to every lookup.
        """
        return self._send(self._lookup_many(keys, namespace, bypass), timeout)

    def update_many(  # noqa: PLR0913 -- the entries, then keyword options
        self,
        entries: Iterable[tuple[str, str, Sequence[Generation | Mapping[str, Any]]]],
        *,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        no_store: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Stores many (prompt, llm_string, generations) entries in one call.

        In order, all or none: if the server refuses one, it stores none.
        The options apply to every entry. A batch is one message: keep it
        under the server's limit (4 MiB by default).
        """
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update_many(entries, options)
        self._send(call, timeout)

    def close(self) -> None:
        """Closes the client; later calls raise CacheError FAILED_PRECONDITION.

        Waits for the blocking calls already made (in other threads) to
        end, each within its deadline, then closes the blocking channels.
        Meanwhile it still sends the calls that end a lease (an update with
        `lease_token`, release_lease), which calls it waits for may be
        waiting for, and those of a get_or_compute made before, which counts
        as one call. The async channels are closed by aclose(), which waits
        for their calls; close() only lets them go.
        """
        with self._lock:
            self._closed = True
            for stale in [loop for loop in self._async if loop.is_closed()]:
                del self._async[stale]
        self._close_blocking(threading.get_ident())

    def _close_blocking(self, closer: int | None) -> None:
        """Closes the blocking channels once no thread but `closer` has calls.

        `closer` is the thread close() runs on: a close() in a signal handler
        must not wait for the call it interrupted.
        """
        with self._lock:
            while self._blocking_calls_besides(closer):
                self._blocking_calls_ended.wait()
            blocking, self._blocking = self._blocking, None
            self._blocking_closed = True
        if blocking is not None:
            blocking.close()

    def _blocking_calls_besides(self, thread: int | None) -> bool:
        calls = self._blocking_calls
        return any(n for caller, n in calls.items() if caller != thread)

    def __enter__(self) -> Self:
        """Returns the client, closed by the `with` block's end."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Closes the client."""
        self.close()

    # -- async ----------------------------------------------------------------

    @overload
    async def alookup(
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        lease_ms: None = None,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> list[Generation] | None: ...

    @overload
    async def alookup(
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        lease_ms: int,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> LeasedLookup: ...

    async def alookup(  # noqa: PLR0913 -- as lookup
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        lease_ms: int | None = None,
        wait_ms: int = 0,
        timeout: float | None = None,
    ) -> list[Generation] | LeasedLookup | None:
        """As lookup(), without blocking the event loop.

        Batching, a lookup that waits for another caller's fill holds up
        none of the calls sent after it on the stream.
        """
        if lease_ms is None:
            call = self._lookup(prompt, llm_string, namespace, bypass, wait_ms)
            return await self._asend(call, timeout)
        leased = self._leased_lookup(
            prompt, llm_string, namespace, bypass, lease_ms=lease_ms, wait_ms=wait_ms
        )
        return await self._asend(leased, timeout)

    async def aupdate(  # noqa: PLR0913 -- as update
        self,
        prompt: str,
        llm_string: str,
        generations: Sequence[Generation | Mapping[str, Any]],
        *,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        no_store: bool = False,
        lease_token: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """As update(), without blocking the event loop."""
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt,
            llm_string,
            generations,
            options,
            only_if_absent=False,
            lease_token=self._lease_token(lease_token),
        )
        await self._asend(call, timeout)

    async def aupdate_if_absent(  # noqa: PLR0913 -- as update
        self,
        prompt: str,
        llm_string: str,
        generations: Sequence[Generation | Mapping[str, Any]],
        *,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        no_store: bool = False,
        lease_token: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """As update_if_absent(), without blocking the event loop."""
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt,
            llm_string,
            generations,
            options,
            only_if_absent=True,
            lease_token=self._lease_token(lease_token),
        )
        return await self._asend(call, timeout)

    async def arelease_lease(
        self,
        prompt: str,
        llm_string: str,
        token: str,
        *,
        namespace: str | None = None,
        timeout: float | None = None,
    ) -> bool:
        """As release_lease(), without blocking the event loop."""
        call = self._release(prompt, llm_string, token, namespace)
        return await self._asend(call, timeout)

    async def aget_or_compute(  # noqa: PLR0913 -- as get_or_compute
        self,
        prompt: str,
        llm_string: str,
        compute: Callable[[], Awaitable[Generations]],
        *,
        lease_ms: int = DEFAULT_LEASE_MS,
        wait_ms: int = DEFAULT_WAIT_MS,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        timeout: float | None = None,
    ) -> list[Generation]:
        """As get_or_compute(), with an async compute, awaited.

        The lease is released also when the task is cancelled while compute
        runs.
        """
        options = self._computing(compute, namespace, ttl, never_expires)
        with self._async_call():  # as get_or_compute's
            lookup = self._leased_lookup(
                prompt,
                llm_string,
                options.namespace,
                bypass=False,
                lease_ms=lease_ms,
                wait_ms=wait_ms,
            )
            found = await self._asend(lookup, timeout, admitted=True)
            if found.generations is not None:
                return found.generations
            token = "" if found.lease is None else found.lease.token
            try:
                call = _calls.update(
                    prompt,
                    llm_string,
                    await compute(),
                    options,
                    only_if_absent=False,
                    lease_token=token,
                )
                await self._asend(call, timeout, admitted=True)
            except BaseException:
                if token:
                    release = self._release(
                        prompt, llm_string, token, options.namespace
                    )
                    with contextlib.suppress(Exception):  # it expires then
                        await self._asend(release, timeout, admitted=True)
                raise
            return _calls.stored_generations(call)

    async def aclear(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        timeout: float | None = None,
    ) -> None:
        """As clear(), without blocking the event loop."""
        await self._asend(self._clear(namespace, all_namespaces), timeout)

    async def astats(self, *, timeout: float | None = None) -> StatsReport:
        """As stats(), without blocking the event loop."""
        return await self._asend(_calls.stats(), timeout)

    async def alookup_many(
        self,
        keys: Iterable[tuple[str, str]],
        *,
        namespace: str | None = None,
        bypass: bool = False,
        timeout: float | None = None,
    ) -> list[list[Generation] | None]:
        """As lookup_many(), without blocking the event loop."""
        return await self._asend(self._lookup_many(keys, namespace, bypass), timeout)

    async def aupdate_many(  # noqa: PLR0913 -- as update_many
        self,
        entries: Iterable[tuple[str, str, Sequence[Generation | Mapping[str, Any]]]],
        *,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        never_expires: bool = False,
        no_store: bool = False,
        timeout: float | None = None,
    ) -> None:
        """As update_many(), without blocking the event loop."""
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update_many(entries, options)
        await self._asend(call, timeout)

    async def aclose(self) -> None:
        """Closes the client, waiting for this event loop's channel to close.

        The calls already made on this loop (and in other threads, blocking)
        end first, each within its deadline; then this loop's streams and
        channels are closed.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            self._closed = True
            closing = self._aclosing.get(loop)
            if closing is None:
                closing = self._aclosing[loop] = loop.create_task(self._drain(loop))
        # Shielded: an aclose() given up (a timeout) leaves the drain to end.
        await asyncio.shield(closing)

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """aclose()'s work: this loop's calls end, and the blocking ones; then close."""
        try:
            await self._drain_transport(loop)
        finally:
            with self._lock:  # done: a later aclose() finds nothing left
                self._aclosing.pop(loop, None)

    async def _drain_transport(self, loop: asyncio.AbstractEventLoop) -> None:
        transport = self._async.get(loop)
        await _calls_ended(transport)
        # Off this loop, whose calls (a lease's fill) may be what the
        # blocking calls wait for; and on another thread, so none is spared.
        await asyncio.to_thread(self._close_blocking, None)
        if transport is None:
            return
        # A lease's fill may have come from this loop meanwhile.
        await _calls_ended(transport)
        with self._lock:
            del self._async[loop]
        opened = [r.stream for r in transport.replicas if r.stream is not None]
        channels = [replica.callables.channel for replica in transport.replicas]
        try:
            await asyncio.gather(*(stream.aclose() for stream in opened))
        finally:
            # A stream that fails to close must not keep the channels open.
            await asyncio.gather(*(channel.close() for channel in channels))

    async def __aenter__(self) -> Self:
        """Returns the client, closed by the `async with` block's end."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Closes the client."""
        await self.aclose()

    # -- the calls, built once for both halves --------------------------------

    def _lookup(
        self,
        prompt: object,
        llm_string: object,
        namespace: object,
        bypass: object,
        wait_ms: object = 0,
    ) -> Call[list[Generation] | None]:
        if wait_ms_of(wait_ms):
            message = (
                "wait_ms needs lease_ms: only a lookup that asks for a lease"
                " waits for another caller's fill"
            )
            raise ValueError(message)
        return _calls.lookup(
            prompt,
            llm_string,
            namespace=namespace_of(namespace, self._namespace),
            bypass=flag(bypass, "bypass"),
        )

    def _leased_lookup(  # noqa: PLR0913 -- a lookup's arguments
        self,
        prompt: object,
        llm_string: object,
        namespace: object,
        bypass: object,
        *,
        lease_ms: object,
        wait_ms: object,
    ) -> Call[LeasedLookup]:
        lease = lease_ms_of(lease_ms)
        wait = wait_ms_of(wait_ms)
        if flag(bypass, "bypass"):
            message = (
                "give bypass or lease_ms, not both: a lookup that bypasses the"
                " cache never takes or waits for a lease"
            )
            raise ValueError(message)
        return _calls.leased_lookup(
            prompt,
            llm_string,
            namespace=namespace_of(namespace, self._namespace),
            lease_ms=lease,
            wait_ms=wait,
        )

    def _release(
        self, prompt: object, llm_string: object, token: object, namespace: object
    ) -> Call[bool]:
        return _calls.release_lease(
            prompt,
            llm_string,
            lease_token_of(token, "token"),
            namespace=namespace_of(namespace, self._namespace),
        )

    def _lease_token(self, token: object) -> str:
        return "" if token is None else lease_token_of(token)

    def _computing(
        self, compute: object, namespace: object, ttl: object, never_expires: object
    ) -> UpdateOptions:
        """Checks get_or_compute's compute, and its update's options."""
        if not callable(compute):
            message = (
                f"compute must be a function of no arguments, got {describe(compute)}"
            )
            raise TypeError(message)
        return self._update_options(namespace, ttl, never_expires, no_store=False)

    def _update_options(
        self, namespace: object, ttl: object, never_expires: object, no_store: object
    ) -> UpdateOptions:
        return update_options(namespace, ttl, never_expires, no_store, self._namespace)

    def _clear(self, namespace: object, all_namespaces: object) -> Call[None]:
        scoped = namespace_of(namespace, self._namespace)
        everywhere = flag(all_namespaces, "all_namespaces")
        # The server clears every namespace then, whatever the one named:
        # a call that names one must not clear the others.
        if everywhere and namespace is not None:
            raise ValueError("give either namespace or all_namespaces=True, not both")
        return _calls.clear(namespace=scoped, all_namespaces=everywhere)

    def _lookup_many(
        self, keys: object, namespace: object, bypass: object
    ) -> Call[list[list[Generation] | None]]:
        return _calls.lookup_many(
            keys,
            namespace=namespace_of(namespace, self._namespace),
            bypass=flag(bypass, "bypass"),
        )

    # -- the two transports ---------------------------------------------------

    def _send(
        self, call: Call[R], timeout: float | None, *, admitted: bool = False
    ) -> R:
        """Makes a blocking call.

        `admitted`: sent while the client closes, as a lease's fill or
        release is: a call get_or_compute makes, which close() waits for.
        """
        deadline = self._deadline(timeout) + call.wait
        with self._blocking_call(
            while_closing=call.ends_lease or admitted
        ) as transport:
            return self._send_on(transport, call, deadline)

    @contextlib.contextmanager
    def _blocking_call(
        self, *, while_closing: bool = False
    ) -> Iterator[_BlockingTransport]:
        """The blocking transport, for a call close() waits for."""
        transport = self._begin_blocking_call(while_closing=while_closing)
        thread = threading.get_ident()
        try:
            yield transport
        finally:
            with self._lock:
                self._blocking_calls[thread] -= 1
                if not self._blocking_calls[thread]:
                    del self._blocking_calls[thread]
                self._blocking_calls_ended.notify_all()

    @contextlib.contextmanager
    def _async_call(self, *, while_closing: bool = False) -> Iterator[_LoopTransport]:
        """The running loop's transport, for a call aclose() waits for."""
        transport = self._async_transport(while_closing=while_closing)
        ended = asyncio.get_running_loop().create_future()
        transport.calls.add(ended)
        try:
            yield transport
        finally:
            transport.calls.discard(ended)
            ended.set_result(None)

    def _send_on(
        self, transport: _BlockingTransport, call: Call[R], deadline: float
    ) -> R:
        attempts = Attempts(
            self._picker, transport.health, deadline, retryable=call.retryable
        )
        while True:
            callables = transport.replicas[attempts.replica]
            try:
                reply = callables.unary(call.method)(
                    call.request,
                    timeout=attempts.timeout,
                    metadata=self._settings.metadata,
                )
            except grpc.RpcError as error:
                failure = call.failure(error)
                if attempts.retry(failure):
                    continue
                raise failure from error
            except ValueError as error:
                # grpcio's own, for a channel closed under the call (by a
                # close() in a signal handler on this thread).
                if self._blocking_closed:
                    raise closed_error() from error
                raise
            return call.result(reply)

    async def _asend(
        self, call: Call[R], timeout: float | None, *, admitted: bool = False
    ) -> R:
        """As _send(), on this loop's transport."""
        deadline = self._deadline(timeout) + call.wait
        with self._async_call(while_closing=call.ends_lease or admitted) as transport:
            attempts = Attempts(
                self._picker, transport.health, deadline, retryable=call.retryable
            )
            while True:
                replica = transport.replicas[attempts.replica]
                try:
                    return await self._asend_to(replica, call, attempts.timeout)
                except CacheError as error:
                    if not attempts.retry(error):
                        raise

    async def _asend_to(
        self, replica: _AsyncReplica, call: Call[R], timeout: float
    ) -> R:
        if self._batching and streams(call):
            stream = replica.stream
            if stream is None:  # opened on the first call that needs it
                channel = replica.callables.channel
                stream = replica.stream = OperationStream(
                    channel, self._settings.metadata
                )
            return await stream.send(call, timeout)
        try:
            reply = await replica.callables.unary(call.method)(
                call.request, timeout=timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            raise call.failure(error) from error
        return call.result(reply)

    def _deadline(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else timeout_of(timeout)

    def _begin_blocking_call(self, *, while_closing: bool) -> _BlockingTransport:
        """The blocking transport, for a call that close() is to wait for.

        Once closed, only a call that ends a lease, and only until the
        blocking channels are closed (close() waits for other calls first).
        """
        with self._lock:
            if self._closed and not (while_closing and not self._blocking_closed):
                raise closed_error()
            if self._blocking is None:
                addresses = self._settings.addresses
                replicas = tuple(open_blocking(self._settings, a) for a in addresses)
                health: Health = always_healthy
                if len(replicas) > 1:
                    health = BlockingHealth([replica.channel for replica in replicas])
                # BlockingHealth's subscriptions keep a grpcio thread (a
                # daemon) watching each channel. A channel still open when
                # the interpreter finalizes is closed by grpcio's __del__,
                # which waits for that watch to end, and a daemon thread is
                # frozen by then: the exit would hang for ever. A finalizer
                # runs at exit while threads still run (or when the client
                # is collected), so a client never closed is closed in time.
                close = weakref.finalize(self, _close_channels, replicas)
                self._blocking = _BlockingTransport(replicas, health, close)
            self._blocking_calls[threading.get_ident()] += 1
            return self._blocking

    def _async_transport(self, *, while_closing: bool) -> _LoopTransport:
        # A grpc.aio channel (and a call on it) works only on the event loop
        # it was made on, so there is one per replica and loop. One whose
        # loop has closed (an asyncio.run that returned) can no longer be
        # closed by awaiting; letting it go frees it with its loop.
        loop = asyncio.get_running_loop()
        with self._lock:
            transport = self._async.get(loop)
            if self._closed:
                # Calls still in flight may wait for the lease this ends.
                if while_closing and transport is not None:
                    return transport
                raise closed_error()
            if transport is None:
                for stale in [other for other in self._async if other.is_closed()]:
                    del self._async[stale]
                addresses = self._settings.addresses
                replicas = tuple(
                    _AsyncReplica(open_async(self._settings, a)) for a in addresses
                )
                health: Health = always_healthy
                if len(replicas) > 1:
                    channels = [replica.callables.channel for replica in replicas]
                    health = async_health(channels)
                transport = _LoopTransport(replicas, health, set())
                self._async[loop] = transport
            return transport


async def _calls_ended(transport: _LoopTransport | None) -> None:
    """Waits until the transport carries no call.

    A call may go on to another replica after UNAVAILABLE, and a lease's
    fill may come while draining: one ending may not be the last.
    """
    while transport is not None and transport.calls:
        await asyncio.wait(set(transport.calls))
