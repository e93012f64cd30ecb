"""LangChainCache: LangChain's BaseCache on a real server."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from langchain_core.caches import BaseCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, Generation

from llmcache import CacheClient, EntryTooLargeError
from llmcache.langchain import LangChainCache

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import Server
    from langchain_core.messages.ai import UsageMetadata

USAGE: UsageMetadata = {
    "input_tokens": 12,
    "output_tokens": 30,
    "total_tokens": 42,
    "input_token_details": {"cache_read": 2, "audio": 0},
    "output_token_details": {"reasoning": 5},
}

MESSAGES: list[BaseMessage] = [
    AIMessage(
        content="Calling the tool.",
        id="run-1",
        name="assistant",
        tool_calls=[
            {
                "name": "weather",
                "args": {"city": "Paris", "days": 3, "units": [1, 2.5]},
                "id": "c1",
            },
            {"name": "clock", "args": {}, "id": None},
        ],
        invalid_tool_calls=[
            {
                "name": "w",
                "args": "{bad",
                "id": None,
                "error": "not JSON",
                "type": "invalid_tool_call",
            }
        ],
        usage_metadata=USAGE,
        response_metadata={"model_name": "m", "finish_reason": "tool_calls"},
        additional_kwargs={"refusal": None},
    ),
    AIMessage(content=[{"type": "text", "text": "blocks"}, "and text"]),
    AIMessageChunk(
        content="",
        tool_call_chunks=[{"name": "f", "args": '{"a": 1}', "id": "c1", "index": 0}],
        chunk_position="last",
    ),
    AIMessageChunk(content="partial", usage_metadata=USAGE),
    HumanMessage(content="What is the weather?", id="h1", example=True),
    HumanMessage(content=[{"type": "image", "url": "https://example.com/a.png"}]),
    HumanMessageChunk(content="What"),
    SystemMessage(
        content="Be brief.", additional_kwargs={"__openai_role__": "developer"}
    ),
    SystemMessageChunk(content="Be"),
    ToolMessage(
        content="sunny", tool_call_id="c1", artifact={"temp": 21, "raw": [1, None]}
    ),
    ToolMessage(content="failed", tool_call_id="c2", status="error"),
    ToolMessageChunk(content="sun", tool_call_id="c1"),
    ChatMessage(content="hello", role="critic"),
    ChatMessageChunk(content="hel", role="critic"),
    FunctionMessage(content="{}", name="weather"),
    FunctionMessageChunk(content="{", name="weather"),
]


@pytest.fixture
def cache(client: CacheClient) -> LangChainCache:
    return LangChainCache(client=client)


@pytest.fixture
def global_cache() -> Iterator[None]:
    """Puts LangChain's global cache back as it was after the test."""
    before = get_llm_cache()
    yield
    set_llm_cache(before)


def test_it_is_a_langchain_base_cache(cache: LangChainCache) -> None:
    assert isinstance(cache, BaseCache)


def test_lookup_returns_the_generations_update_stored(cache: LangChainCache) -> None:
    generations = [Generation(text="Paris", generation_info={"finish_reason": "stop"})]
    cache.update("capital of France?", "llm", generations)
    assert cache.lookup("capital of France?", "llm") == generations


def test_a_langchain_miss_is_none(cache: LangChainCache) -> None:
    assert cache.lookup("never stored", "llm") is None


def test_a_generation_without_info_round_trips(cache: LangChainCache) -> None:
    cache.update("p", "llm", [Generation(text="plain")])
    assert cache.lookup("p", "llm") == [Generation(text="plain")]


def test_an_empty_list_of_generations_round_trips(cache: LangChainCache) -> None:
    cache.update("p", "llm", [])
    assert cache.lookup("p", "llm") == []


@pytest.mark.parametrize(
    "message", MESSAGES, ids=lambda message: type(message).__name__
)
def test_every_message_type_round_trips_equal(
    cache: LangChainCache, message: BaseMessage
) -> None:
    generation = ChatGeneration(message=message, generation_info={"days": 3})
    cache.update("p", "llm", [generation])
    (back,) = cache.lookup("p", "llm") or []
    assert back == generation
    assert type(back) is ChatGeneration
    assert type(back.message) is type(message)


def test_ints_stay_ints_in_generation_info_tool_args_and_usage(
    cache: LangChainCache,
) -> None:
    cache.update(
        "p", "llm", [ChatGeneration(message=MESSAGES[0], generation_info={"days": 3})]
    )
    (back,) = cache.lookup("p", "llm") or []
    assert isinstance(back, ChatGeneration)
    assert isinstance(back.message, AIMessage)
    assert type(back.generation_info and back.generation_info["days"]) is int
    args = back.message.tool_calls[0]["args"]
    assert args == {"city": "Paris", "days": 3, "units": [1, 2.5]}
    assert [type(args["days"]), type(args["units"][0]), type(args["units"][1])] == [
        int,
        int,
        float,
    ]
    usage = back.message.usage_metadata
    assert usage is not None
    assert {
        type(usage["input_tokens"]),
        type(usage["output_tokens"]),
        type(usage["total_tokens"]),
    } == {int}
    assert type(usage.get("input_token_details", {}).get("cache_read")) is int


def test_several_generations_keep_their_order(cache: LangChainCache) -> None:
    generations = [
        ChatGeneration(message=AIMessage(content="one")),
        Generation(text="two"),
        ChatGeneration(message=AIMessage(content="three")),
    ]
    cache.update("p", "llm", generations)
    assert cache.lookup("p", "llm") == generations


def test_clear_empties_the_langchain_cache(cache: LangChainCache) -> None:
    cache.update("p", "llm", [Generation(text="x")])
    cache.clear()
    assert cache.lookup("p", "llm") is None


def _stored_in_two_namespaces(client: CacheClient, namespace: str) -> tuple[str, str]:
    """An entry in the cache's namespace and one in another; their names."""
    own, other = f"{namespace}-lc", f"{namespace}-other"
    for name in (own, other):
        client.update("p", "llm", [{"text": "x"}], namespace=name, never_expires=True)
    return own, other


def test_clear_all_namespaces_reaches_beyond_the_caches_own(
    limited_server: Server, namespace: str
) -> None:
    # On a server of its own, so that other tests' entries are not cleared.
    with CacheClient(limited_server.address) as client:
        own, other = _stored_in_two_namespaces(client, namespace)
        cache = LangChainCache(client=client, namespace=own)
        cache.clear()
        assert client.lookup("p", "llm", namespace=own) is None
        assert client.lookup("p", "llm", namespace=other) == [{"text": "x"}]
        cache.clear(all_namespaces=True)
        assert client.lookup("p", "llm", namespace=other) is None


async def test_aclear_all_namespaces_reaches_beyond_the_caches_own(
    limited_server: Server, namespace: str
) -> None:
    with CacheClient(limited_server.address) as client:
        own, other = _stored_in_two_namespaces(client, namespace)
        await LangChainCache(client=client, namespace=own).aclear(all_namespaces=True)
        assert client.lookup("p", "llm", namespace=own) is None
        assert client.lookup("p", "llm", namespace=other) is None


async def test_async_methods_round_trip_natively(cache: LangChainCache) -> None:
    generations = [ChatGeneration(message=MESSAGES[0])]
    await cache.aupdate("p", "llm", generations)
    assert await cache.alookup("p", "llm") == generations
    await cache.aclear()
    assert await cache.alookup("p", "llm") is None


def test_fake_list_llm_hits_the_cache_on_its_second_call(cache: LangChainCache) -> None:
    llm = FakeListLLM(responses=["first", "second"], cache=cache)
    assert llm.invoke("What is 2 + 2?") == "first"
    assert llm.invoke("What is 2 + 2?") == "first"
    assert llm.i == 1  # the second response was never consumed


async def test_fake_list_llm_hits_the_cache_through_ainvoke(
    cache: LangChainCache,
) -> None:
    llm = FakeListLLM(responses=["first", "second"], cache=cache)
    assert await llm.ainvoke("What is 2 + 2?") == "first"
    assert await llm.ainvoke("What is 2 + 2?") == "first"
    assert llm.i == 1


@pytest.mark.usefixtures("global_cache")
def test_set_llm_cache_makes_it_every_models_cache(
    server: Server, namespace: str
) -> None:
    cache = LangChainCache(address=server.address, namespace=namespace)
    try:
        set_llm_cache(cache)
        assert FakeListLLM(responses=["first", "second"]).invoke("q") == "first"
        # Another model of the same settings (the same llm_string): a hit.
        llm = FakeListLLM(responses=["first", "second"])
        assert llm.invoke("q") == "first"
        assert llm.i == 0  # it was never called
        assert cache.client.stats().namespaces[namespace].hits == 1
    finally:
        cache.close()


def test_the_namespace_option_scopes_the_cache(
    client: CacheClient, namespace: str
) -> None:
    scoped = LangChainCache(client=client, namespace=f"{namespace}-lc")
    scoped.update("p", "llm", [Generation(text="x")])
    assert client.lookup("p", "llm") is None
    assert client.lookup("p", "llm", namespace=f"{namespace}-lc") == [{"text": "x"}]


def test_the_bypass_option_misses_but_stores(client: CacheClient) -> None:
    bypassing = LangChainCache(client=client, bypass=True)
    bypassing.update("p", "llm", [Generation(text="x")])
    assert bypassing.lookup("p", "llm") is None
    assert LangChainCache(client=client).lookup("p", "llm") == [Generation(text="x")]


def test_the_ttl_option_expires_entries(client: CacheClient) -> None:
    expiring = LangChainCache(client=client, ttl=0.2)
    expiring.update("p", "llm", [Generation(text="x")])
    assert expiring.lookup("p", "llm") == [Generation(text="x")]
    time.sleep(0.4)
    assert expiring.lookup("p", "llm") is None


def test_a_cache_made_from_an_address_owns_and_closes_its_client(
    server: Server,
) -> None:
    cache = LangChainCache(address=server.address, timeout=2.0)
    assert cache.client.address == server.address
    assert cache.client.timeout == 2.0
    cache.close()
    with pytest.raises(Exception, match="the client is closed"):
        cache.lookup("p", "llm")


def test_a_cache_leaves_a_given_client_open(client: CacheClient) -> None:
    LangChainCache(client=client).close()
    assert client.lookup("p", "llm") is None


def test_a_message_of_a_type_langchain_lacks_comes_back_as_a_chat_message(
    client: CacheClient, cache: LangChainCache
) -> None:
    # What a TypeScript client stores for a message type of its own: the
    # raw client sends the same bytes.
    robot = {
        "type": "robot",
        "content": "beep",
        "id": "r1",
        "additional_kwargs": {"volts": 12},
        "serial": "R2",
    }
    client.update("p", "llm", [{"text": "beep", "message": robot}])
    fields = {**robot, "type": "chat", "role": "robot"}
    message = ChatMessage.model_validate(fields)  # with the extra field, serial
    expected = [ChatGeneration(text="beep", message=message)]
    assert cache.lookup("p", "llm") == expected
    # A role it carries is its own, as for LangChain's ChatMessage.
    client.update("p", "llm", [{"text": "", "message": {**robot, "role": "droid"}}])
    [found] = cache.lookup("p", "llm") or []
    assert isinstance(found, ChatGeneration)
    assert isinstance(found.message, ChatMessage)
    assert found.message.role == "droid"


def test_extra_message_fields_at_none_round_trip(cache: LangChainCache) -> None:
    # Dropped once with the class's own fields at None: no longer equal.
    message = AIMessage(content="x", refusal=None, parsed=None, kept=1)
    cache.update("p", "llm", [ChatGeneration(message=message)])
    [found] = cache.lookup("p", "llm") or []
    assert isinstance(found, ChatGeneration)
    assert found.message == message
    assert found.message.model_extra == {"refusal": None, "parsed": None, "kept": 1}


def test_usage_and_tool_calls_with_fields_of_their_own_round_trip(
    cache: LangChainCache,
) -> None:
    # LangChain builds these (UsageMetadata and ToolCall are TypedDicts that
    # take any key) and InMemoryCache keeps them: the update once raised,
    # after the model had answered.
    message = AIMessage(
        content="",
        tool_calls=[{"name": "f", "args": {"n": 1}, "id": "c1", "extras": {"k": 1}}],
        usage_metadata={
            "input_tokens": 1,
            "output_tokens": 2,
            "total_tokens": 3,
            "cost": 0.5,
        },
    )
    cache.update("p", "llm", [ChatGeneration(message=message)])
    assert cache.lookup("p", "llm") == [ChatGeneration(message=message)]


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"type": "tool", "content": "r"}, ToolMessage(content="r", tool_call_id="")),
        ({"type": "function", "content": "r"}, FunctionMessage(content="r", name="")),
        ({"type": "chat", "content": "r"}, ChatMessage(content="r", role="")),
    ],
    ids=["tool", "function", "chat"],
)
def test_a_message_without_a_field_only_python_requires_reads_with_it_empty(
    client: CacheClient,
    cache: LangChainCache,
    stored: dict[str, str],
    expected: BaseMessage,
) -> None:
    # LangChain JS builds and stores these without tool_call_id, name, role.
    client.update("p", "llm", [{"text": "r", "message": stored}])
    assert cache.lookup("p", "llm") == [ChatGeneration(text="r", message=expected)]


async def test_an_entry_langchain_cannot_build_is_a_miss_that_the_answer_replaces(
    client: CacheClient, cache: LangChainCache, caplog: pytest.LogCaptureFixture
) -> None:
    # A RemoveMessage needs an id; another client stored one without.
    # Raising would fail every model call of the prompt while it lives.
    client.update(
        "p", "llm", [{"text": "", "message": {"type": "remove", "content": ""}}]
    )
    with caplog.at_level("WARNING", logger="llmcache.langchain"):
        assert cache.lookup("p", "llm") is None
        assert await cache.alookup("p", "llm") is None
    assert len(caplog.records) == 2
    assert "is not one LangChain can build, so it is read as a miss" in caplog.text
    assert "'p'" in caplog.text
    cache.update("p", "llm", [Generation(text="the answer")])
    assert cache.lookup("p", "llm") == [Generation(text="the answer")]


def test_a_bad_ttl_is_refused_naming_the_caches_own_options(
    client: CacheClient,
) -> None:
    with pytest.raises(
        ValueError,
        match=r"^ttl must be a positive, finite duration, got -1"
        r" \(ttl=None, the default, leaves it to the server's default\)$",
    ):
        LangChainCache(client=client, ttl=-1)
    with pytest.raises(
        ValueError,
        match=r"^ttl is \d+ ms, over the server's limit of \d+"
        r" \(ttl=None, the default, leaves it to the server's default\)$",
    ):
        LangChainCache(client=client, ttl=2.0**53)


def test_address_and_client_together_are_refused(client: CacheClient) -> None:
    with pytest.raises(TypeError, match="give client or address"):
        LangChainCache(client=client, address="127.0.0.1:1")
    with pytest.raises(TypeError, match="give address"):
        LangChainCache()


def test_an_unserializable_value_is_refused_naming_its_place(
    cache: LangChainCache,
) -> None:
    message = AIMessage(content="x", additional_kwargs={"when": object()})
    with pytest.raises(
        TypeError,
        match=r"generations\[0\]\.message\.additional_kwargs\.when is not JSON",
    ):
        cache.update("p", "llm", [ChatGeneration(message=message)])


def test_entry_too_large_reaches_the_langchain_caller(
    limited_server: Server, namespace: str
) -> None:
    cache = LangChainCache(address=limited_server.address, namespace=namespace)
    with pytest.raises(EntryTooLargeError):
        cache.update("p", "llm", [Generation(text="x" * 100_000)])
    cache.close()
