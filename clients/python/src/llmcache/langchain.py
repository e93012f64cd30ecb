"""LangChainCache: an llmcache server as LangChain's cache (BaseCache).

    from langchain_core.globals import set_llm_cache
    from llmcache.langchain import LangChainCache

    set_llm_cache(LangChainCache(address="127.0.0.1:50051"))

Needs langchain-core (`pip install "llmcache[langchain]"`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.messages import BaseMessage, messages_from_dict
from langchain_core.outputs import ChatGeneration, Generation

from ._describe import describe
from ._options import expiry_of, flag, namespace_of
from .client import DEFAULT_TIMEOUT, CacheClient

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._channel import TlsConfig
    from ._generation import ChatMessage
    from ._generation import Generation as PlainGeneration
    from ._options import Ttl

__all__ = ["LangChainCache"]

# Keys of the tool-call entries that LangChain's TypedDicts require even when
# None; the wire, like JSON, leaves a None out.
_NONE_DEFAULTS: Mapping[str, tuple[str, ...]] = {
    "tool_calls": ("id",),
    "invalid_tool_calls": ("name", "args", "id", "error"),
    "tool_call_chunks": ("name", "args", "id", "index"),
}
_CLEAR_OPTIONS = frozenset({"namespace", "all_namespaces"})


class LangChainCache(BaseCache):
    """LangChain's BaseCache on an llmcache server, sync and native async.

    Give either `address` (with the connection options of CacheClient:
    token, tls, timeout), and the cache makes and owns its client, or a
    `client` of your own, which it uses and leaves open.

    What it stores is lossless for Generation and ChatGeneration with every
    message class of langchain_core.messages and their chunks: a lookup
    gives back objects equal (==) to those stored, token counts and
    integral JSON numbers as ints. GenerationChunk and ChatGenerationChunk
    come back as Generation and ChatGeneration (the wire has no field for
    that difference; LangChain's models store the non-chunk classes).

    Options, applied to every call: `namespace` (default: the client's),
    `ttl` (seconds as a float, or a timedelta; default: the server's) and
    `bypass` (lookups skip the cache and miss; updates still store).

    Errors propagate: CacheError (and EntryTooLargeError) from the server,
    TypeError or ValueError for a value JSON cannot carry.
    """

    def __init__(  # noqa: PLR0913 -- the client's options, then the cache's
        self,
        client: CacheClient | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
        tls: bool | TlsConfig = False,
        timeout: float | None = None,
        namespace: str | None = None,
        ttl: Ttl | None = None,
        bypass: bool = False,
    ) -> None:
        """Makes a cache on `client`, or on a new client of `address`."""
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
        expiry_of(ttl, never_expires=False)  # a bad ttl fails here, not per update
        self._ttl = ttl
        self._bypass = flag(bypass, "bypass")

    @property
    def client(self) -> CacheClient:
        """The CacheClient this cache calls."""
        return self._client

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The generations cached for (prompt, llm_string), or None."""
        plain = self._client.lookup(
            prompt, llm_string, namespace=self._namespace, bypass=self._bypass
        )
        return None if plain is None else [_from_plain(item) for item in plain]

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Caches the generations for (prompt, llm_string)."""
        self._client.update(
            prompt,
            llm_string,
            _to_plain(return_val),
            namespace=self._namespace,
            ttl=self._ttl,
        )

    def clear(self, **kwargs: Any) -> None:
        """Clears the cache's namespace; `all_namespaces=True`: every one."""
        self._client.clear(**self._clear_options(kwargs))

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """As lookup(), without blocking the event loop."""
        plain = await self._client.alookup(
            prompt, llm_string, namespace=self._namespace, bypass=self._bypass
        )
        return None if plain is None else [_from_plain(item) for item in plain]

    async def aupdate(
        self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE
    ) -> None:
        """As update(), without blocking the event loop."""
        await self._client.aupdate(
            prompt,
            llm_string,
            _to_plain(return_val),
            namespace=self._namespace,
            ttl=self._ttl,
        )

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

    def _clear_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(kwargs) - _CLEAR_OPTIONS)
        if unknown:
            message = (
                f"clear() takes namespace and all_namespaces, not {', '.join(unknown)}"
            )
            raise TypeError(message)
        return {"namespace": self._namespace, **kwargs}


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
            # A field at None is at its default (chunk_position, name, id...):
            # left out, as JSON leaves it, so that LangChain JS does not
            # read a field it has no use for.
            dumped = generation.message.model_dump()
            item["message"] = {k: v for k, v in dumped.items() if v is not None}
        plain.append(item)
    return plain


def _from_plain(plain: PlainGeneration) -> Generation:
    info = plain.get("generation_info")
    message = plain.get("message")
    if message is None:
        return Generation(text=plain["text"], generation_info=info)
    return ChatGeneration(
        text=plain["text"], generation_info=info, message=_message(message)
    )


def _message(data: ChatMessage) -> BaseMessage:
    fields = dict(data)
    for key, keys in _NONE_DEFAULTS.items():
        if key in fields:
            fields[key] = [{**dict.fromkeys(keys), **item} for item in fields[key]]
    try:
        return messages_from_dict([{"type": fields["type"], "data": fields}])[0]
    except ValueError as error:
        kind = fields["type"]
        message = f"the cached message of type {kind!r} has no LangChain class: {error}"
        raise ValueError(message) from error
