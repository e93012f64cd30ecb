"""What the client sends and reads back: LangChain's shapes, JSON's rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from llmcache import CacheClient, CacheError, EntryTooLargeError, Generation

AI_MESSAGE: dict[str, Any] = {
    "type": "ai",
    "content": "It is sunny.",
    "additional_kwargs": {"refusal": None},
    "response_metadata": {"model_name": "m", "finish_reason": "stop", "seed": 42},
    "tool_calls": [
        {
            "name": "weather",
            "args": {"city": "Paris", "days": 3},
            "id": "c1",
            "type": "tool_call",
        },
    ],
    "invalid_tool_calls": [
        {
            "name": "w",
            "args": "{bad",
            "id": "c2",
            "error": "not JSON",
            "type": "invalid_tool_call",
        },
    ],
    "usage_metadata": {
        "input_tokens": 10,
        "output_tokens": 20,
        "total_tokens": 30,
        "input_token_details": {"cache_read": 4},
        "output_token_details": {"reasoning": 7},
    },
    "id": "run-1",
    "name": "assistant",
}


def test_a_chat_message_with_every_field_round_trips(client: CacheClient) -> None:
    generation: Generation = {
        "text": "It is sunny.",
        "generation_info": {"finish_reason": "stop"},
        "message": AI_MESSAGE,
    }
    client.update("p", "l", [generation])
    assert client.lookup("p", "l") == [generation]


def test_content_blocks_round_trip(client: CacheClient) -> None:
    message = {
        "type": "human",
        "content": ["plain", {"type": "image", "url": "https://example.com/a.png"}],
    }
    client.update("p", "l", [{"text": "", "message": message}])
    assert client.lookup("p", "l") == [{"text": "", "message": message}]


def test_tool_message_fields_round_trip(client: CacheClient) -> None:
    message = {
        "type": "tool",
        "content": "42",
        "tool_call_id": "c1",
        "status": "error",
        "artifact": {"rows": [1, 2, 3], "raw": None},
    }
    client.update("p", "l", [{"text": "42", "message": message}])
    assert client.lookup("p", "l") == [{"text": "42", "message": message}]


def test_chunk_fields_round_trip(client: CacheClient) -> None:
    message = {
        "type": "AIMessageChunk",
        "content": "",
        "tool_calls": [],
        "invalid_tool_calls": [],
        "tool_call_chunks": [
            {
                "name": "f",
                "args": '{"a": 1}',
                "id": "c1",
                "index": 0,
                "type": "tool_call_chunk",
            }
        ],
    }
    client.update("p", "l", [{"text": "", "message": message}])
    assert client.lookup("p", "l") == [{"text": "", "message": message}]


def test_fields_without_a_place_of_their_own_travel_as_extra(
    client: CacheClient,
) -> None:
    message = {
        "type": "human",
        "content": "hi",
        "example": True,
        "chunk_position": None,
    }
    client.update("p", "l", [{"text": "hi", "message": message}])
    assert client.lookup("p", "l") == [{"text": "hi", "message": message}]


def test_other_fields_of_tool_calls_and_usage_travel_as_their_extra(
    client: CacheClient,
) -> None:
    # A newer LangChain's `extras`, a provider's cost: once refused.
    message = {
        "type": "AIMessageChunk",
        "content": "",
        "tool_calls": [
            {"name": "f", "args": {}, "id": "c1", "extras": {"cache": "ephemeral"}}
        ],
        "invalid_tool_calls": [{"name": "g", "args": "{", "index": 1, "extras": None}],
        "tool_call_chunks": [{"name": "f", "args": "{", "index": 0, "provider": "x"}],
        "usage_metadata": {
            "input_tokens": 1,
            "output_tokens": 2,
            "total_tokens": 3,
            "cost": 0.5,
            "currency": "USD",
        },
    }
    client.update("p", "l", [{"text": "", "message": message}])
    assert client.lookup("p", "l") == [{"text": "", "message": message}]


def test_none_optional_fields_are_left_out(client: CacheClient) -> None:
    message = {"type": "human", "content": "hi", "id": None, "name": None}
    client.update(
        "p", "l", [{"text": "hi", "message": message, "generation_info": None}]
    )
    assert client.lookup("p", "l") == [
        {"text": "hi", "message": {"type": "human", "content": "hi"}}
    ]


def test_an_ai_message_always_has_its_tool_call_lists(client: CacheClient) -> None:
    client.update("p", "l", [{"text": "", "message": {"type": "ai", "content": ""}}])
    message = {"type": "ai", "content": "", "tool_calls": [], "invalid_tool_calls": []}
    assert client.lookup("p", "l") == [{"text": "", "message": message}]


def test_integral_numbers_come_back_as_ints(client: CacheClient) -> None:
    client.update(
        "p", "l", [{"text": "", "generation_info": {"days": 3, "big": 2**53}}]
    )
    result = client.lookup("p", "l")
    assert result is not None
    info = result[0]["generation_info"]
    assert info == {"days": 3, "big": 2**53}
    assert type(info["days"]) is int
    assert type(info["big"]) is int


def test_fractional_numbers_stay_floats(client: CacheClient) -> None:
    client.update("p", "l", [{"text": "", "generation_info": {"t": 0.5, "n": -1e300}}])
    result = client.lookup("p", "l")
    assert result is not None
    assert result[0]["generation_info"] == {"t": 0.5, "n": -1e300}


def test_tool_call_args_keep_ints_as_ints(client: CacheClient) -> None:
    client.update("p", "l", [{"text": "", "message": AI_MESSAGE}])
    result = client.lookup("p", "l")
    assert result is not None
    args = result[0]["message"]["tool_calls"][0]["args"]
    assert args == {"city": "Paris", "days": 3}
    assert type(args["days"]) is int


def test_token_counts_are_ints(client: CacheClient) -> None:
    client.update("p", "l", [{"text": "", "message": AI_MESSAGE}])
    result = client.lookup("p", "l")
    assert result is not None
    usage = result[0]["message"]["usage_metadata"]
    assert [
        type(usage[key]) for key in ("input_tokens", "output_tokens", "total_tokens")
    ] == [int] * 3
    assert type(usage["input_token_details"]["cache_read"]) is int


def test_token_counts_beyond_two_to_the_53_survive(client: CacheClient) -> None:
    # int64 on the wire, not a double.
    usage = {"input_tokens": 2**62, "output_tokens": 1, "total_tokens": 2**62 + 1}
    message = {
        "type": "ai",
        "content": "",
        "tool_calls": [],
        "invalid_tool_calls": [],
        "usage_metadata": usage,
    }
    client.update("p", "l", [{"text": "", "message": message}])
    assert client.lookup("p", "l") == [{"text": "", "message": message}]


def test_tuples_come_back_as_lists(client: CacheClient) -> None:
    client.update("p", "l", [{"text": "", "generation_info": {"pair": (1, "a")}}])
    assert client.lookup("p", "l") == [
        {"text": "", "generation_info": {"pair": [1, "a"]}}
    ]


def test_non_ascii_text_round_trips(client: CacheClient) -> None:
    generation: Generation = {"text": "été 🌞", "generation_info": {"clé": "valeur ✓"}}
    client.update("prompt é", "llm ✓", [generation])
    assert client.lookup("prompt é", "llm ✓") == [generation]


def nested(objects: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(objects):
        value = {"k": value}
    result: dict[str, Any] = value
    return result


def test_json_nested_to_the_limit_is_stored_and_read_back(client: CacheClient) -> None:
    # 32 objects are 96 protobuf levels below the generation, within 97.
    generation: Generation = {"text": "", "generation_info": nested(32)}
    client.update("p", "l", [generation])
    assert client.lookup("p", "l") == [generation]


def cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["me"] = value
    return value


BAD_INPUT: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    (
        "prompt not a str",
        {"prompt": 1},
        TypeError,
        r"^prompt must be a str, got an int \(1\)$",
    ),
    (
        "llm_string not a str",
        {"llm_string": None},
        TypeError,
        r"^llm_string must be a str",
    ),
    (
        "prompt with a lone surrogate",
        {"prompt": "\ud800"},
        ValueError,
        r"^prompt is not well-formed Unicode",
    ),
    (
        "generations not a list",
        {"generations": {"text": "x"}},
        TypeError,
        r"^generations must be a list",
    ),
    (
        "a generation not a dict",
        {"generations": ["x"]},
        TypeError,
        r"^generations\[0\] must be a dict",
    ),
    (
        "an unknown generation field",
        {"generations": [{"text": "x", "type": "Generation"}]},
        TypeError,
        r"^generations\[0\]\.type is not a field of a generation",
    ),
    (
        "text missing",
        {"generations": [{}]},
        TypeError,
        r"^generations\[0\]\.text must be a str, got None$",
    ),
    (
        "NaN",
        {"generations": [{"text": "", "generation_info": {"x": math.nan}}]},
        ValueError,
        r"^generations\[0\]\.generation_info\.x is nan, which JSON cannot carry$",
    ),
    (
        "NaN under a name with a dot, named unambiguously",
        {"generations": [{"text": "", "generation_info": {"a.b": math.nan}}]},
        ValueError,
        r'^generations\[0\]\.generation_info\["a\.b"\] is nan',
    ),
    (
        "a name with a lone surrogate, named printably",
        {"generations": [{"text": "", "generation_info": {"a\udc00": 1}}]},
        ValueError,
        r'^the name of generations\[0\]\.generation_info\["a\\udc00"\] is not well-formed',
    ),
    (
        "infinity",
        {"generations": [{"text": "", "generation_info": {"x": [math.inf]}}]},
        ValueError,
        r"generation_info\.x\[0\] is inf",
    ),
    (
        "an int beyond 2**53",
        {"generations": [{"text": "", "generation_info": {"x": 2**53 + 1}}]},
        ValueError,
        r"generation_info\.x is 9007199254740993, beyond ±2\*\*53",
    ),
    (
        "a set",
        {"generations": [{"text": "", "generation_info": {"s": {1}}}]},
        TypeError,
        r"^generations\[0\]\.generation_info\.s is not JSON: got an instance of set$",
    ),
    (
        "bytes",
        {"generations": [{"text": "", "generation_info": {"b": b"x"}}]},
        TypeError,
        r"generation_info\.b is not JSON: got a bytes$",
    ),
    (
        "a non-str key",
        {"generations": [{"text": "", "generation_info": {1: "x"}}]},
        TypeError,
        r"generation_info has the key 1: JSON object keys must be str$",
    ),
    (
        "a message instance",
        {"generations": [{"text": "", "message": object()}]},
        TypeError,
        r"^generations\[0\]\.message must be a dict, got an instance of object; pass the message's model_dump\(\)",
    ),
    (
        "a message without type",
        {"generations": [{"text": "", "message": {"content": ""}}]},
        TypeError,
        r"^generations\[0\]\.message\.type must be a str, got None$",
    ),
    (
        "content neither str nor list",
        {"generations": [{"text": "", "message": {"type": "ai", "content": 3}}]},
        TypeError,
        r"message\.content must be a str or a list of content blocks",
    ),
    (
        "a tool call without args",
        {
            "generations": [
                {
                    "text": "",
                    "message": {
                        "type": "ai",
                        "content": "",
                        "tool_calls": [{"name": "f", "id": "c"}],
                    },
                }
            ]
        },
        TypeError,
        r"message\.tool_calls\[0\]\.args must be a JSON object \(a dict\), got None$",
    ),
    (
        "a float token count",
        {
            "generations": [
                {
                    "text": "",
                    "message": {
                        "type": "ai",
                        "content": "",
                        "usage_metadata": {
                            "input_tokens": 1.0,
                            "output_tokens": 1,
                            "total_tokens": 2,
                        },
                    },
                }
            ]
        },
        TypeError,
        r"usage_metadata\.input_tokens must be an int, got a float \(1\.0\)$",
    ),
    (
        "nesting past the limit",
        {"generations": [{"text": "", "generation_info": nested(33)}]},
        ValueError,
        r"^generations\[0\]\.generation_info nests 99 protobuf message levels below its generation, over the limit of 97",
    ),
    (
        "a cycle",
        {"generations": [{"text": "", "generation_info": cyclic()}]},
        ValueError,
        r"nests deeper than 100 levels \(or contains itself\)$",
    ),
    (
        "ttl not positive",
        {"ttl": 0},
        ValueError,
        r"^ttl must be a positive, finite duration",
    ),
    (
        "ttl not a duration",
        {"ttl": "1h"},
        TypeError,
        r"^ttl must be seconds \(a float\) or a timedelta, got a str$",
    ),
    (
        "ttl and never_expires",
        {"ttl": 1.0, "never_expires": True},
        ValueError,
        r"^give ttl or never_expires, not both$",
    ),
    (
        "no_store not a bool",
        {"no_store": 1},
        TypeError,
        r"^no_store must be a bool, got an int \(1\)$",
    ),
    (
        "namespace not a str",
        {"namespace": b"ns"},
        TypeError,
        r"^namespace must be a str, got a bytes$",
    ),
    (
        "timeout not positive",
        {"timeout": -1},
        ValueError,
        r"^timeout must be a positive, finite number of seconds",
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        pytest.param(change, error, match, id=name)
        for name, change, error, match in BAD_INPUT
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    dead_address: str, change: dict[str, Any], error: type[Exception], match: str
) -> None:
    # No server listens: reaching the network would fail with UNAVAILABLE.
    arguments: dict[str, Any] = {
        "prompt": "p",
        "llm_string": "l",
        "generations": [],
        **change,
    }
    with CacheClient(dead_address) as client, pytest.raises(error, match=match):
        client.update(
            arguments.pop("prompt"),
            arguments.pop("llm_string"),
            arguments.pop("generations"),
            **arguments,
        )


async def test_bad_input_is_refused_by_async_calls_too(dead_address: str) -> None:
    async with CacheClient(dead_address) as client:
        with pytest.raises(TypeError, match=r"^prompt must be a str"):
            await client.alookup(b"p", "l")  # type: ignore[call-overload]
        with pytest.raises(TypeError, match=r"^bypass must be a bool"):
            await client.alookup("p", "l", bypass="yes")  # type: ignore[call-overload]


def test_batch_input_is_refused_with_the_entrys_place(dead_address: str) -> None:
    with CacheClient(dead_address) as client:
        with pytest.raises(TypeError, match=r"^keys\[1\]\.llm_string must be a str"):
            client.lookup_many([("p", "l"), ("p", 2)])  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"^keys\[0\] must be a tuple of"):
            client.lookup_many(["pl"])  # type: ignore[list-item]
        with pytest.raises(
            ValueError,
            match=r"^entries\[0\]\.generations\[0\]\.generation_info\.x is nan",
        ):
            client.update_many(
                [("p", "l", [{"text": "", "generation_info": {"x": math.nan}}])]
            )


def test_a_batch_item_of_the_wrong_size_is_refused_saying_its_size(
    dead_address: str,
) -> None:
    with CacheClient(dead_address) as client:
        with pytest.raises(
            TypeError,
            match=r"^keys\[0\] must be a tuple of \(prompt, llm_string\),"
            r" got a tuple of 1 item$",
        ):
            client.lookup_many([("p",)])  # type: ignore[list-item]
        with pytest.raises(
            TypeError,
            match=r"^entries\[1\] must be a tuple of \(prompt, llm_string,"
            r" generations\), got a list of 2 items$",
        ):
            client.update_many([("p", "l", []), ["p", "l"]])  # type: ignore[list-item]


def test_bad_client_options_are_refused_at_construction() -> None:
    with pytest.raises(TypeError, match=r"^address must be a non-empty str"):
        CacheClient("")
    for token in ["", "two words", "tok\u00e9n", "tok\x01en", "line\nbreak"]:
        with pytest.raises(
            ValueError,
            match=r"^token must be a non-empty str of visible ASCII characters,"
            r" without spaces$",
        ):
            CacheClient("127.0.0.1:1", token=token)
    with pytest.raises(TypeError, match=r"^tls must be a bool or a TlsConfig"):
        CacheClient("127.0.0.1:1", tls="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^timeout must be a positive"):
        CacheClient("127.0.0.1:1", timeout=0)
    # A larger one failed every call at once (grpcio's deadline overflowed).
    with pytest.raises(
        ValueError, match=r"^timeout must be at most 2073600 seconds \(24 days\)"
    ):
        CacheClient("127.0.0.1:1", timeout=1e10)


def test_a_calls_own_timeout_over_24_days_is_refused(client: CacheClient) -> None:
    with pytest.raises(ValueError, match=r"^timeout must be at most 2073600 seconds"):
        client.lookup("p", "l", timeout=24 * 86_400 + 1)


def test_a_refused_value_is_not_half_stored(client: CacheClient) -> None:
    with pytest.raises(ValueError, match="nan"):
        client.update(
            "p", "l", [{"text": "ok"}, {"text": "", "generation_info": {"x": math.nan}}]
        )
    assert client.lookup("p", "l") is None


def test_a_request_over_the_servers_message_limit_is_resource_exhausted(
    client: CacheClient,
) -> None:
    with pytest.raises(CacheError) as raised:
        client.update("p", "l", [{"text": "x" * 5_000_000}])
    assert raised.value.code == "RESOURCE_EXHAUSTED"
    assert not isinstance(raised.value, EntryTooLargeError)
