"""Generations to the wire's Generation messages, and back.

One conversion for the blocking and the async calls alike; it mirrors the
TypeScript client's (src/rpc/codec/generation-objects.ts, src/chat-message.ts), so
that an entry reads the same whichever client wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._describe import describe
from ._json import (
    checked_string,
    fill_list,
    fill_struct,
    fill_value,
    read_list,
    read_struct,
    read_value,
)
from .v1 import cache_pb2

if TYPE_CHECKING:
    from ._generation import ChatMessage, Generation

# How many protobuf message levels a Generation may hold below itself.
# Python's protobuf (upb), Java's and C++'s refuse to parse a message nested
# more than 101 levels deep, and a stored Generation travels deepest in a
# StreamResponse, 4 levels down: 101 - 4 = 97. The server refuses deeper.
MAX_GENERATION_NESTING = 97

_GENERATION_FIELDS = ("text", "generation_info", "message")

# The message fields with a place of their own on the wire; the rest travel
# in `extra`.
KNOWN_MESSAGE_FIELDS = frozenset(
    {
        "type",
        "content",
        "additional_kwargs",
        "response_metadata",
        "tool_calls",
        "invalid_tool_calls",
        "tool_call_chunks",
        "usage_metadata",
        "id",
        "name",
        "tool_call_id",
        "role",
        "status",
        "artifact",
    }
)
_OPTIONAL_STRINGS = ("id", "name", "tool_call_id", "role", "status")
_TOOL_CALL_FIELDS = frozenset({"name", "args", "id", "type"})
_INVALID_TOOL_CALL_STRINGS = ("name", "args", "id", "error", "type")
_INVALID_TOOL_CALL_FIELDS = frozenset(_INVALID_TOOL_CALL_STRINGS)
_TOOL_CALL_CHUNK_STRINGS = ("name", "args", "id", "type")
_TOOL_CALL_CHUNK_FIELDS = frozenset((*_TOOL_CALL_CHUNK_STRINGS, "index"))
_TOKEN_COUNTS = ("input_tokens", "output_tokens", "total_tokens")
_TOKEN_DETAILS = ("input_token_details", "output_token_details")
_USAGE_FIELDS = frozenset((*_TOKEN_COUNTS, *_TOKEN_DETAILS))
# A tool call's or the usage's fields beyond these (LangChain's `extras`, a
# provider's cost) travel in their `extra`, as a message's do in its own.
_INT64 = 2**63

# The tool-call lists LangChain always gives a message of this type, empty
# or not. The wire cannot tell an empty list from a missing one, so these
# come back as empty lists and the others are left out when empty.
_DEFAULT_LISTS: Mapping[str, tuple[str, ...]] = {
    "ai": ("tool_calls", "invalid_tool_calls"),
    "AIMessageChunk": ("tool_calls", "invalid_tool_calls", "tool_call_chunks"),
}

Places = list[tuple[str, int]]


def check_key(prompt: object, llm_string: object, path: str = "") -> tuple[str, str]:
    """The key, refused unless it is a pair of strings (empty ones are valid)."""
    return checked(prompt, f"{path}prompt"), checked(llm_string, f"{path}llm_string")


def checked(value: object, path: str) -> str:
    """The value, if it is a str that UTF-8 can carry."""
    if not isinstance(value, str):
        raise TypeError(f"{path} must be a str, got {describe(value)}")
    return checked_string(value, path)


def encode_generations(generations: object, path: str = "generations") -> list[Any]:
    """Checks a list of generations and returns them as wire Generations."""
    if not isinstance(generations, Sequence) or isinstance(generations, str | bytes):
        message = f"{path} must be a list of generations, got {describe(generations)}"
        raise TypeError(message)
    return [
        _encode_generation(generation, f"{path}[{i}]")
        for i, generation in enumerate(generations)
    ]


def decode_generations(generations: Any) -> list[Generation]:
    """Wire Generations as plain data."""
    return [_decode_generation(generation) for generation in generations]


def _encode_generation(value: object, path: str) -> Any:
    if not isinstance(value, Mapping):
        message = (
            f"{path} must be a dict (text, generation_info, message), got "
            f"{describe(value)}; for LangChain's Generation objects use "
            "llmcache.langchain.LangChainCache"
        )
        raise TypeError(message)
    for key in value:
        if key not in _GENERATION_FIELDS:
            message = (
                f"{path}.{key} is not a field of a generation"
                f" ({', '.join(_GENERATION_FIELDS)})"
            )
            raise TypeError(message)
    wire = cache_pb2.Generation(text=checked(value.get("text"), f"{path}.text"))
    places: Places = []
    info = value.get("generation_info")
    if info is not None:
        levels = fill_struct(wire.generation_info, info, f"{path}.generation_info")
        places.append(("generation_info", levels))
    chat_message = value.get("message")
    if chat_message is not None:
        message_places = _encode_message(wire.message, chat_message, f"{path}.message")
        places += [(f"message.{place}", 1 + levels) for place, levels in message_places]
    for place, levels in places:
        if levels > MAX_GENERATION_NESTING:
            message = (
                f"{path}.{place} nests {levels} protobuf message levels below its"
                f" generation, over the limit of {MAX_GENERATION_NESTING}"
                " (protobuf runtimes such as Python's refuse messages nested more"
                " than 101 levels deep)"
            )
            raise ValueError(message)
    return wire


def _encode_message(wire: Any, message: object, path: str) -> Places:
    """Fills a wire ChatMessage; returns the places that hold JSON, with levels."""
    if not isinstance(message, Mapping):
        hint = (
            "pass the message's model_dump() (with its type), not the message instance"
        )
        raise TypeError(f"{path} must be a dict, got {describe(message)}; {hint}")
    wire.type = checked(message.get("type"), f"{path}.type")
    places: Places = []
    content = message.get("content")
    if isinstance(content, str):
        wire.text = checked_string(content, f"{path}.content")
    elif isinstance(content, list | tuple):
        places.append(("content", fill_list(wire.blocks, content, f"{path}.content")))
    else:
        message_text = (
            f"{path}.content must be a str or a list of content blocks,"
            f" got {describe(content)}"
        )
        raise TypeError(message_text)
    for key in ("additional_kwargs", "response_metadata"):
        if message.get(key) is not None:
            levels = fill_struct(getattr(wire, key), message[key], f"{path}.{key}")
            places.append((key, levels))
    for key in _OPTIONAL_STRINGS:
        if message.get(key) is not None:
            setattr(wire, key, checked(message[key], f"{path}.{key}"))
    if "artifact" in message:
        places.append(
            (
                "artifact",
                fill_value(wire.artifact, message["artifact"], f"{path}.artifact"),
            )
        )
    places += _encode_tool_calls(wire, message, path)
    places += _encode_usage(wire, message, path)
    levels = _fill_extra(wire, message, KNOWN_MESSAGE_FIELDS, path)
    if levels:
        places.append(("extra fields", levels))
    return places


def _fill_extra(
    wire: Any, fields: Mapping[Any, Any], known: frozenset[str], path: str
) -> int:
    """Fills wire.extra with the fields not `known`; its levels (0: none)."""
    other = {key: value for key, value in fields.items() if key not in known}
    return fill_struct(wire.extra, other, path) if other else 0


def _encode_tool_calls(wire: Any, message: Mapping[Any, Any], path: str) -> Places:
    places: Places = []
    for i, call in enumerate(_list_at(message, "tool_calls", path)):
        call_path = f"{path}.tool_calls[{i}]"
        fields = _object_at(call, call_path)
        item = wire.tool_calls.add(
            name=checked(fields.get("name"), f"{call_path}.name")
        )
        levels = fill_struct(item.args, fields.get("args"), f"{call_path}.args")
        places.append((f"tool_calls[{i}].args", 1 + levels))
        _set_strings(item, fields, ("id", "type"), call_path)
        places += _fill_extra_places(
            item, fields, _TOOL_CALL_FIELDS, path, f"tool_calls[{i}]"
        )
    for i, call in enumerate(_list_at(message, "invalid_tool_calls", path)):
        call_path = f"{path}.invalid_tool_calls[{i}]"
        fields = _object_at(call, call_path)
        item = wire.invalid_tool_calls.add()
        _set_strings(item, fields, _INVALID_TOOL_CALL_STRINGS, call_path)
        places += _fill_extra_places(
            item, fields, _INVALID_TOOL_CALL_FIELDS, path, f"invalid_tool_calls[{i}]"
        )
    for i, chunk in enumerate(_list_at(message, "tool_call_chunks", path)):
        chunk_path = f"{path}.tool_call_chunks[{i}]"
        fields = _object_at(chunk, chunk_path)
        item = wire.tool_call_chunks.add()
        _set_strings(item, fields, _TOOL_CALL_CHUNK_STRINGS, chunk_path)
        if fields.get("index") is not None:
            item.index = _int64(fields["index"], f"{chunk_path}.index")
        places += _fill_extra_places(
            item, fields, _TOOL_CALL_CHUNK_FIELDS, path, f"tool_call_chunks[{i}]"
        )
    return places


def _fill_extra_places(
    wire: Any, fields: Mapping[Any, Any], known: frozenset[str], path: str, place: str
) -> Places:
    """Fills the `extra` of a tool call or the usage at `place` in the message.

    `path` is the message's; the place is one level below it.
    """
    levels = _fill_extra(wire, fields, known, f"{path}.{place}")
    return [(f"{place}.extra fields", 1 + levels)] if levels else []


def _encode_usage(wire: Any, message: Mapping[Any, Any], path: str) -> Places:
    usage = message.get("usage_metadata")
    if usage is None:
        return []
    usage_path = f"{path}.usage_metadata"
    fields = _object_at(usage, usage_path)
    target = wire.usage_metadata
    target.SetInParent()
    for key in _TOKEN_COUNTS:
        setattr(target, key, _int64(fields.get(key), f"{usage_path}.{key}"))
    places: Places = []
    for key in _TOKEN_DETAILS:
        if fields.get(key) is not None:
            levels = fill_struct(
                getattr(target, key), fields[key], f"{usage_path}.{key}"
            )
            places.append((f"usage_metadata.{key}", 1 + levels))
    return places + _fill_extra_places(
        target, fields, _USAGE_FIELDS, path, "usage_metadata"
    )


def _decode_generation(wire: Any) -> Generation:
    generation: Generation = {"text": wire.text}
    if wire.HasField("generation_info"):
        generation["generation_info"] = read_struct(wire.generation_info)
    if wire.HasField("message"):
        generation["message"] = _decode_message(wire.message)
    return generation


def _decode_message(wire: Any) -> ChatMessage:
    content_kind = wire.WhichOneof("content")
    message: ChatMessage = {
        "type": wire.type,
        "content": read_list(wire.blocks) if content_kind == "blocks" else wire.text,
    }
    message.update(_read_extra(wire, KNOWN_MESSAGE_FIELDS))
    for key in ("additional_kwargs", "response_metadata"):
        if wire.HasField(key):
            message[key] = read_struct(getattr(wire, key))
    lists: dict[str, list[dict[str, Any]]] = {
        "tool_calls": [
            {
                "name": call.name,
                "args": read_struct(call.args),
                **_strings_of(call, ("id", "type")),
                **_read_extra(call, _TOOL_CALL_FIELDS),
            }
            for call in wire.tool_calls
        ],
        "invalid_tool_calls": [
            {
                **_strings_of(call, _INVALID_TOOL_CALL_STRINGS),
                **_read_extra(call, _INVALID_TOOL_CALL_FIELDS),
            }
            for call in wire.invalid_tool_calls
        ],
        "tool_call_chunks": [
            {
                **_strings_of(chunk, _TOOL_CALL_CHUNK_STRINGS),
                **({"index": chunk.index} if chunk.HasField("index") else {}),
                **_read_extra(chunk, _TOOL_CALL_CHUNK_FIELDS),
            }
            for chunk in wire.tool_call_chunks
        ],
    }
    defaults = _DEFAULT_LISTS.get(wire.type, ())
    for key, items in lists.items():
        if items or key in defaults:
            message[key] = items
    if wire.HasField("usage_metadata"):
        usage = wire.usage_metadata
        message["usage_metadata"] = {
            **{key: getattr(usage, key) for key in _TOKEN_COUNTS},
            **{
                key: read_struct(getattr(usage, key))
                for key in _TOKEN_DETAILS
                if usage.HasField(key)
            },
            **_read_extra(usage, _USAGE_FIELDS),
        }
    message.update(_strings_of(wire, _OPTIONAL_STRINGS))
    if wire.HasField("artifact"):
        message["artifact"] = read_value(wire.artifact)
    return message


def _list_at(message: Mapping[Any, Any], key: str, path: str) -> Sequence[object]:
    value = message.get(key)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise TypeError(f"{path}.{key} must be a list, got {describe(value)}")
    return value


def _object_at(value: object, path: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{path} must be a dict, got {describe(value)}")
    return value


def _read_extra(wire: Any, known: frozenset[str]) -> dict[str, Any]:
    """The members of wire.extra that are not fields of its own."""
    if not wire.HasField("extra"):
        return {}
    return {k: v for k, v in read_struct(wire.extra).items() if k not in known}


def _set_strings(
    target: Any, fields: Mapping[Any, Any], keys: Sequence[str], path: str
) -> None:
    for key in keys:
        if fields.get(key) is not None:
            setattr(target, key, checked(fields[key], f"{path}.{key}"))


def _strings_of(wire: Any, keys: Sequence[str]) -> dict[str, str]:
    return {key: getattr(wire, key) for key in keys if wire.HasField(key)}


def _int64(value: object, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{path} must be an int, got {describe(value)}")
    if not -_INT64 <= value < _INT64:
        raise ValueError(f"{path} is {value}, outside the range of int64")
    return value
