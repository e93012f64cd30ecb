"""LangChainCache: an llmcache server as LangChain's cache (BaseCache).

    from langchain_core.globals import set_llm_cache
    from llmcache.langchain import LangChainCache

    set_llm_cache(LangChainCache(address="127.0.0.1:50051"))

Needs langchain-core (`pip install "llmcache[langchain]"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import BaseMessage, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation

from ._describe import describe
from ._lease import lease_ms_of, wait_ms_of
from ._options import expiry_of, flag, namespace_of
from .client import DEFAULT_LEASE_MS, DEFAULT_TIMEOUT, DEFAULT_WAIT_MS, CacheClient

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ._channel import TlsConfig
    from ._generation import ChatMessage
    from ._generation import Generation as PlainGeneration
    from ._lease import Lease, LeasedLookup
    from ._options import Ttl

__all__ = ["LangChainCache"]

_log = logging.getLogger(__name__)

# Keys of the tool-call entries that LangChain's TypedDicts require even when
# None; the wire, like JSON, leaves a None out.
_NONE_DEFAULTS: Mapping[str, tuple[str, ...]] = {
    "tool_calls": ("id",),
    "invalid_tool_calls": ("name", "args", "id", "error"),
    "tool_call_chunks": ("name", "args", "id", "index"),
}
# Fields LangChain Python's message classes require and LangChain JS's do
# not: a message JS stored without one reads with it empty.
_REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "tool": ("tool_call_id",),
    "ToolMessageChunk": ("tool_call_id",),
    "function": ("name",),
    "FunctionMessageChunk": ("name",),
    "chat": ("role",),
    "ChatMessageChunk": ("role",),
}
_CLEAR_OPTIONS = frozenset({"namespace", "all_namespaces"})
# What a bad ttl's message offers instead: the cache has no never_expires.
_TTL_INSTEAD = "ttl=None, the default, leaves it to the server's default"
# The types messages_from_dict makes a message of; a stored message of any
# other type is read as a ChatMessage whose role is its type.
_MESSAGE_TYPES = frozenset(
    {
        "human",
        "ai",
        "system",
        "chat",
        "function",
        "tool",
        "remove",
        "AIMessageChunk",
        "HumanMessageChunk",
        "FunctionMessageChunk",
        "ToolMessageChunk",
        "SystemMessageChunk",
        "ChatMessageChunk",
    }
)


class LangChainCache(BaseCache):
    """LangChain's BaseCache on an llmcache server, sync and native async.

    Give either `address` (with the connection options of CacheClient:
    token, tls, timeout), and the cache makes and owns its client, or a
    `client` of your own, which it uses and leaves open. `address` is what
    CacheClient takes: "host:port", or several replicas of one cache as
    "host:port" items separated by commas or as a sequence of them (see
    CacheClient for how calls spread over them and fail over).

    What it stores is lossless for Generation and ChatGeneration with every
    message class of langchain_core.messages and their chunks: a lookup
    gives back objects equal (==) to those stored, token counts and
    integral JSON numbers as ints. GenerationChunk and ChatGenerationChunk
    come back as Generation and ChatGeneration (the wire has no field for
    that difference; LangChain's models store the non-chunk classes). A
    message of a type with no LangChain class (stored by another client,
    as the TypeScript one may) comes back as a ChatMessage whose role is
    that type, unless it has a role of its own.

    Options, applied to every call: `namespace` (default: the client's),
    `ttl` (seconds as a float, or a timedelta; default: the server's) and
    `bypass` (lookups skip the cache and miss; updates still store).

    Single flight, `single_flight=True` (off by default): of many identical
    model calls missing the cache at once, in this process or any other
    using the server, one calls the model and the others wait for its
    answer. A lookup that misses asks for the pair's lease: the first is
    granted it (LangChain then calls the model, and this cache's update of
    the pair fills the lease with its token); the others wait, up to
    `wait_ms` (default 60,000 ms), and get the leaseholder's generations as
    a hit; a wait that runs out is a miss (the model is called as without
    single flight). `lease_ms` (default 30,000 ms) is how long a
    leaseholder may take: if its model call raises, LangChain makes no
    update, and the lease expires after lease_ms, when the next waiter is
    granted it. The tokens it holds are remembered only until their lease
    expires. A lookup from the task (or thread) that already holds the
    pair's lease (the same prompt twice in one generate call) does not wait
    for itself. Taking a lease needs the right to write the namespace.
    Single flight with `bypass` is refused (ValueError): a cache that
    bypasses never reads the server, so there is no answer to wait for.

    Errors propagate: CacheError (and EntryTooLargeError) from the server,
    TypeError or ValueError for a value JSON cannot carry.
    """

    def __init__(  # noqa: PLR0913 -- the client's options, then the cache's
        self,
        client: CacheClient | None = None,
        *,
        address: str | Sequence[str] | None = None,
        token: str | None = None,
        tls: bool | TlsConfig = False,
        timeout: float | None = None,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        bypass: bool = False,
        single_flight: bool = False,
        lease_ms: int = DEFAULT_LEASE_MS,
        wait_ms: int = DEFAULT_WAIT_MS,
    ) -> None:
        """Makes a cache on `client`, or on a new client of `address`."""
        self._bypass = flag(bypass, "bypass")
        self._single_flight = flag(single_flight, "single_flight")
        if self._single_flight and self._bypass:
            message = (
                "single_flight with bypass: a cache that bypasses never reads the"
                " server, so there is no answer to wait for"
            )
            raise ValueError(message)
        if client is None:
            if address is None:
                raise TypeError("give address (host:port) or client")
            client = CacheClient(
                address,
                token=token,
                tls=tls,
                timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            )
            self._owns_client = True
        else:
            if not isinstance(client, CacheClient):
                message = f"client must be a CacheClient, got {describe(client)}"
                raise TypeError(message)
            if (
                address is not None
                or token is not None
                or tls is not False
                or timeout is not None
            ):
                message = "give client or address (with token, tls, timeout), not both"
                raise TypeError(message)
            self._owns_client = False
        self._client = client
        self._namespace = namespace_of(namespace, client.namespace)
        # A bad ttl fails here, not per update.
        expiry_of(ttl, never_expires=False, instead=_TTL_INSTEAD)
        self._ttl = ttl
        self._lease_ms = lease_ms_of(lease_ms)
        self._wait_ms = wait_ms_of(wait_ms)
        self._leases = _HeldLeases()

    @property
    def client(self) -> CacheClient:
        """The CacheClient this cache calls."""
        return self._client

    @property
    def single_flight(self) -> bool:
        """Whether lookups that miss take a lease (see the class)."""
        return self._single_flight

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations cached for (prompt, llm_string), or None.

        With single flight, a miss takes the pair's lease, or waits for the
        holder's update and returns it.
        """
        owner = _thread_owner()
        if self._leasing(prompt, llm_string, owner):
            found = self._client.lookup(
                prompt,
                llm_string,
                namespace=self._namespace,
                lease_ms=self._lease_ms,
                wait_ms=self._wait_ms,
            )
            return self._leased(prompt, llm_string, found, owner)
        plain = self._client.lookup(
            prompt, llm_string, namespace=self._namespace, bypass=self._bypass
        )
        return _from_stored(plain, prompt, llm_string)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Caches the generations for (prompt, llm_string).

        With single flight, the update fills the lease this thread's lookup
        of the pair was granted, if it has not expired; an update that fails
        (a value the cache cannot carry, an entry too large) releases it, so
        that the callers waiting for it do not wait out its time.
        """
        token = self._leases.take((prompt, llm_string), _thread_owner())
        try:
            self._client.update(
                prompt,
                llm_string,
                _to_plain(return_val),
                namespace=self._namespace,
                ttl=self._ttl,
                lease_token=token,
            )
        except BaseException:
            if token is not None:
                with contextlib.suppress(Exception):  # it expires then
                    self._client.release_lease(
                        prompt, llm_string, token, namespace=self._namespace
                    )
            raise

    def clear(self, **kwargs: Any) -> None:
        """Clears the cache's namespace; `all_namespaces=True`: every one."""
        self._client.clear(**self._clear_options(kwargs))

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """As lookup(), without blocking the event loop.

        A waiting lookup waits on the server, holding up nothing else.
        """
        owner = _task_owner()
        if self._leasing(prompt, llm_string, owner):
            found = await self._client.alookup(
                prompt,
                llm_string,
                namespace=self._namespace,
                lease_ms=self._lease_ms,
                wait_ms=self._wait_ms,
            )
            return self._leased(prompt, llm_string, found, owner)
        plain = await self._client.alookup(
            prompt, llm_string, namespace=self._namespace, bypass=self._bypass
        )
        return _from_stored(plain, prompt, llm_string)

    async def aupdate(
        self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE
    ) -> None:
        """As update(), without blocking the event loop (the task's lease)."""
        token = self._leases.take((prompt, llm_string), _task_owner())
        try:
            await self._client.aupdate(
                prompt,
                llm_string,
                _to_plain(return_val),
                namespace=self._namespace,
                ttl=self._ttl,
                lease_token=token,
            )
        except BaseException:
            if token is not None:
                with contextlib.suppress(Exception):  # it expires then
                    await self._client.arelease_lease(
                        prompt, llm_string, token, namespace=self._namespace
                    )
            raise

    async def aclear(self, **kwargs: Any) -> None:
        """As clear(), without blocking the event loop."""
        await self._client.aclear(**self._clear_options(kwargs))

    def close(self) -> None:
        """Closes the client, if this cache made it."""
        if self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """As close(), waiting for the async channel to close."""
        if self._owns_client:
            await self._client.aclose()

    def _leasing(self, prompt: str, llm_string: str, owner: object) -> bool:
        """Whether a lookup asks for a lease.

        With single flight (never with bypass), unless its caller holds the
        pair's live lease already (it would wait for itself).
        """
        return self._single_flight and not self._leases.holds(
            (prompt, llm_string), owner
        )

    def _leased(
        self, prompt: str, llm_string: str, found: LeasedLookup, owner: object
    ) -> RETURN_VAL_TYPE | None:
        if found.lease is not None:
            self._leases.remember((prompt, llm_string), found.lease, owner)
        plain: list[PlainGeneration] | None = found.generations
        return _from_stored(plain, prompt, llm_string)

    def _clear_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - _CLEAR_OPTIONS)
        if unknown:
            message = (
                f"clear() takes namespace and all_namespaces, not {', '.join(unknown)}"
            )
            raise TypeError(message)
        if kwargs.get("all_namespaces") is True:
            return kwargs  # the cache's namespace would be refused with it
        return {"namespace": self._namespace, **kwargs}


class _HeldLeases:
    """The leases this cache's lookups were granted, until updated or expired.

    By pair: the token, when its lease expires (time.monotonic()), and its
    owner, the task or thread whose lookup was granted it: the one whose
    update is to fill it. Entries go in the order their leases expire (one
    lease_ms for all), so the expired are dropped from the front: what a
    model call that raised (no update) leaves behind lasts no longer than
    its lease.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], tuple[str, float, object]] = {}

    def remember(self, key: tuple[str, str], lease: Lease, owner: object) -> None:
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            self._held.pop(key, None)  # to the end: the latest to expire
            self._held[key] = (lease.token, now + lease.lease_ms / 1000, owner)

    def holds(self, key: tuple[str, str], owner: object) -> bool:
        """Whether `owner` holds a live lease of the pair."""
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            held = self._held.get(key)
            return held is not None and held[2] is owner

    def take(self, key: tuple[str, str], owner: object) -> str | None:
        """The token of the owner's live lease of the pair, forgotten; or None."""
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            held = self._held.get(key)
            if held is None or held[2] is not owner:
                return None
            del self._held[key]
            return held[0]

    def __len__(self) -> int:
        with self._lock:
            self._drop_expired(time.monotonic())
            return len(self._held)

    def _drop_expired(self, now: float) -> None:
        held = self._held
        while held:
            key = next(iter(held))
            if held[key][1] > now:
                return
            del held[key]


def _thread_owner() -> object:
    """Who holds a lease a blocking lookup is granted: its thread."""
    return _THREAD_OWNERS.owner()


def _task_owner() -> object:
    """Who holds a lease an async lookup is granted: its task (or thread)."""
    task = asyncio.current_task()
    return task if task is not None else _thread_owner()


class _ThreadOwners(threading.local):
    """One object a thread, standing for it (a thread id may be reused)."""

    def owner(self) -> object:
        token: object | None = getattr(self, "token", None)
        if token is None:
            token = self.token = object()
        return token


_THREAD_OWNERS = _ThreadOwners()


def _to_plain(generations: object) -> list[PlainGeneration]:
    if not isinstance(generations, list | tuple):
        message = (
            f"return_val must be a list of Generations, got {describe(generations)}"
        )
        raise TypeError(message)
    plain: list[PlainGeneration] = []
    for i, generation in enumerate(generations):
        if not isinstance(generation, Generation):
            message = (
                f"return_val[{i}] must be a Generation, got {describe(generation)}"
            )
            raise TypeError(message)
        item: PlainGeneration = {"text": generation.text}
        if generation.generation_info is not None:
            item["generation_info"] = generation.generation_info
        if isinstance(generation, ChatGeneration):
            # A field of the class at None is at its default (chunk_position,
            # name, id...): left out, as JSON leaves it, so that LangChain JS
            # does not read a field it has no use for. An extra field is the
            # caller's own, None included.
            extra = generation.message.model_extra or {}
            dumped = generation.message.model_dump()
            item["message"] = {
                k: v for k, v in dumped.items() if v is not None or k in extra
            }
        plain.append(item)
    return plain


def _from_stored(
    plain: list[PlainGeneration] | None, prompt: str, llm_string: str
) -> RETURN_VAL_TYPE | None:
    """LangChain's generations of a hit; a miss for one LangChain cannot build.

    Another client (a raw one, or LangChain of another language or version)
    may have stored a message this LangChain refuses. Raising would fail
    every model call of the prompt for as long as the entry lives; as a miss
    (LangChain's own caches read an entry they cannot load so), the model
    is called and its answer replaces the entry.
    """
    if plain is None:
        return None
    try:
        return [_from_plain(item) for item in plain]
    except (KeyError, TypeError, ValueError) as error:
        _log.warning(
            "llmcache: the entry cached for prompt %.80r (llm_string %.80r) is"
            " not one LangChain can build, so it is read as a miss: %s",
            prompt,
            llm_string,
            error,
        )
        return None


def _from_plain(plain: PlainGeneration) -> Generation:
    info = plain.get("generation_info")
    message = plain.get("message")
    if message is None:
        return Generation(text=plain["text"], generation_info=info)
    return ChatGeneration(
        text=plain["text"], generation_info=info, message=_message(message)
    )


def _message(data: ChatMessage) -> BaseMessage:
    fields: dict[str, Any] = dict(data)
    for key, keys in _NONE_DEFAULTS.items():
        if key in fields:
            fields[key] = [{**dict.fromkeys(keys), **item} for item in fields[key]]
    kind = fields["type"]
    for field in _REQUIRED_FIELDS.get(kind, ()):
        # LangChain JS lets these be absent; Python's classes require them.
        fields.setdefault(field, "")
    if kind not in _MESSAGE_TYPES:
        # A type of another client's own (the TypeScript adapter reads it
        # so too) or of a newer LangChain: failing would fail every lookup
        # of the key, so it comes back as the generic kind of message.
        fields["role"] = fields.get("role", kind)
        kind = fields["type"] = "chat"
    return messages_from_dict([{"type": kind, "data": fields}])[0]
