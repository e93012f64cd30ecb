"""CacheClient: a remote llmcache server, with blocking and async methods."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, Self, TypeVar

import grpc

from . import _calls
from ._channel import ChannelSettings, TlsConfig, open_async, open_blocking
from ._codec import checked
from ._errors import closed_error
from ._options import Ttl, flag, namespace_of, timeout_of, update_options
from ._stream import OperationStream, streams

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import TracebackType

    from ._calls import Call
    from ._channel import Callables
    from ._generation import Generation
    from ._options import UpdateOptions
    from ._stats import StatsReport

R = TypeVar("R")

DEFAULT_TIMEOUT = 5.0


class _LoopTransport(NamedTuple):
    """An event loop's grpc.aio channel and, when batching, its stream."""

    callables: Callables
    stream: OperationStream | None


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
        address: "host:port" of the server.
        token: a bearer token from the server's auth file, sent with every
            call as "authorization: Bearer <token>".
        tls: False for plain text (the default); True for TLS with the
            system's roots; a TlsConfig for a CA of your own or mutual TLS.
        namespace: the namespace of the calls that name none; default "".
        timeout: each call's deadline in seconds, unless the call gives its
            own; default 5.0.
        batching: auto-batching of the async lookups and updates (`alookup`,
            `aupdate`, `aupdate_if_absent`), on by default: those started in
            the same turn of the event loop travel together on one
            long-lived stream (CacheService.Stream), each call keeping its
            own deadline, cancellation and error. False makes each a unary
            call of its own. The blocking methods are unary either way.

    Errors: a failed call raises CacheError with the gRPC status name as
    `code` ("UNAVAILABLE", "DEADLINE_EXCEEDED", "UNAUTHENTICATED", ...);
    an entry larger than the server's byte budget, EntryTooLargeError. Bad
    input (a prompt that is not a str, a value JSON cannot carry, NaN, an
    int beyond ±2**53) raises TypeError or ValueError naming the field,
    before anything is sent.

    Close the client with `close()` / `await aclose()`, or use it as a
    context manager (`with` or `async with`). The async methods keep one
    channel (and, batching, one stream) per event loop, so a client may
    serve several `asyncio.run`s; `aclose()` ends the stream of its loop
    once it has answered, and a loop that ends with its stream open
    cancels it.

    """

    def __init__(  # noqa: PLR0913 -- the address, then keyword options
        self,
        address: str,
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
        self._lock = threading.Lock()
        self._closed = False
        self._blocking: Callables | None = None
        self._async: dict[asyncio.AbstractEventLoop, _LoopTransport] = {}

    @property
    def address(self) -> str:
        """The server's "host:port"."""
        return self._settings.address

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

    def lookup(
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        timeout: float | None = None,
    ) -> list[Generation] | None:
        """The generations stored for (prompt, llm_string); None on a miss.

        A stored empty list comes back as []. `bypass=True` skips the read:
        the answer is a miss whatever is stored, counted as a bypass.
        """
        return self._send(self._lookup(prompt, llm_string, namespace, bypass), timeout)

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
        timeout: float | None = None,
    ) -> None:
        """Stores the generations for (prompt, llm_string), replacing any.

        ttl: how long the entry lives, in seconds (a float) or a timedelta,
        rounded to the millisecond; None: the server's default for the
        namespace. never_expires=True: for ever, whatever the defaults say.
        no_store=True: the update is accepted and nothing is stored.
        """
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt, llm_string, generations, options, only_if_absent=False
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
        timeout: float | None = None,
    ) -> bool:
        """Stores the generations only if the pair has no live entry.

        Returns whether it stored them: False when an entry was there (it
        stays as it was) and for no_store. Options as for update().
        """
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt, llm_string, generations, options, only_if_absent=True
        )
        return self._send(call, timeout)

    def clear(
        self,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Removes every entry of the namespace, or of all namespaces."""
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

        Closes the blocking channel at once. The async channels are closed
        by aclose(), which waits for them; close() only lets them go.
        """
        with self._lock:
            self._closed = True
            blocking, self._blocking = self._blocking, None
            self._async.clear()
        if blocking is not None:
            blocking.channel.close()

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

    async def alookup(
        self,
        prompt: str,
        llm_string: str,
        *,
        namespace: str | None = None,
        bypass: bool = False,
        timeout: float | None = None,
    ) -> list[Generation] | None:
        """As lookup(), without blocking the event loop."""
        call = self._lookup(prompt, llm_string, namespace, bypass)
        return await self._asend(call, timeout)

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
        timeout: float | None = None,
    ) -> None:
        """As update(), without blocking the event loop."""
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt, llm_string, generations, options, only_if_absent=False
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
        timeout: float | None = None,
    ) -> bool:
        """As update_if_absent(), without blocking the event loop."""
        options = self._update_options(namespace, ttl, never_expires, no_store)
        call = _calls.update(
            prompt, llm_string, generations, options, only_if_absent=True
        )
        return await self._asend(call, timeout)

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

        This loop's stream sends what waits and ends: the calls it carries
        get their results first.
        """
        with self._lock:
            self._closed = True
            blocking, self._blocking = self._blocking, None
            current = self._async.pop(asyncio.get_running_loop(), None)
            self._async.clear()
        if blocking is not None:
            blocking.channel.close()
        if current is not None:
            if current.stream is not None:
                await current.stream.aclose()
            await current.callables.channel.close()

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
        self, prompt: object, llm_string: object, namespace: object, bypass: object
    ) -> Call[list[Generation] | None]:
        return _calls.lookup(
            prompt,
            llm_string,
            namespace=namespace_of(namespace, self._namespace),
            bypass=flag(bypass, "bypass"),
        )

    def _update_options(
        self, namespace: object, ttl: object, never_expires: object, no_store: object
    ) -> UpdateOptions:
        return update_options(namespace, ttl, never_expires, no_store, self._namespace)

    def _clear(self, namespace: object, all_namespaces: object) -> Call[None]:
        return _calls.clear(
            namespace=namespace_of(namespace, self._namespace),
            all_namespaces=flag(all_namespaces, "all_namespaces"),
        )

    def _lookup_many(
        self, keys: object, namespace: object, bypass: object
    ) -> Call[list[list[Generation] | None]]:
        return _calls.lookup_many(
            keys,
            namespace=namespace_of(namespace, self._namespace),
            bypass=flag(bypass, "bypass"),
        )

    # -- the two transports ---------------------------------------------------

    def _send(self, call: Call[R], timeout: float | None) -> R:
        deadline = self._deadline(timeout)
        callables = self._blocking_callables()
        try:
            reply = callables.unary(call.method)(
                call.request, timeout=deadline, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            raise call.failure(error) from error
        return call.result(reply)

    async def _asend(self, call: Call[R], timeout: float | None) -> R:
        deadline = self._deadline(timeout)
        callables, stream = self._async_transport()
        if stream is not None and streams(call):
            return await stream.send(call, deadline)
        try:
            reply = await callables.unary(call.method)(
                call.request, timeout=deadline, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            raise call.failure(error) from error
        return call.result(reply)

    def _deadline(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else timeout_of(timeout)

    def _blocking_callables(self) -> Callables:
        with self._lock:
            if self._closed:
                raise closed_error()
            if self._blocking is None:
                self._blocking = open_blocking(self._settings)
            return self._blocking

    def _async_transport(self) -> _LoopTransport:
        # A grpc.aio channel (and a call on it) works only on the event loop
        # it was made on, so there is one per loop. One whose loop has closed
        # (an asyncio.run that returned) can no longer be closed by awaiting;
        # letting it go frees it with its loop.
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise closed_error()
            transport = self._async.get(loop)
            if transport is None:
                for stale in [other for other in self._async if other.is_closed()]:
                    del self._async[stale]
                callables = open_async(self._settings)
                stream = None
                if self._batching:
                    metadata = self._settings.metadata
                    stream = OperationStream(callables.channel, metadata)
                transport = _LoopTransport(callables, stream)
                self._async[loop] = transport
            return transport
