"""JSON values to google.protobuf.Struct, Value and ListValue, and back.

The rules are JSON's, so that a value survives the trip unchanged and reads
the same in every language: mappings with string keys, lists (and tuples,
which come back as lists), strings, booleans, None, and numbers. Anything
else (a set, bytes, a datetime, an object, a cycle, NaN or infinity, a
string with a lone surrogate) is refused before anything is sent, with an
error that names where it is.

Numbers: the wire carries every JSON number as a double. An int is sent
only if a double holds it exactly (within ±2**53), and a double read back
that is integral and within ±2**53 becomes an int, as JavaScript reads JSON:
{"days": 3} comes back {"days": 3}, and {"t": 1.0} comes back {"t": 1}
(equal in Python). Other doubles stay floats.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import struct_pb2

from ._describe import describe

# The largest magnitude up to which a double holds every integer exactly.
MAX_EXACT_INT = 2**53

# How deeply JSON may nest while it is converted: a guard that turns a
# cycle into an error instead of a RecursionError. What may be stored is
# bounded more tightly by the protobuf levels (see _codec.py).
MAX_JSON_DEPTH = 100

JsonObject = dict[str, Any]


def fill_struct(target: Any, value: object, path: str, depth: int = 0) -> int:
    """Fills `target` (a Struct) from a mapping; returns its protobuf levels.

    A Struct costs one level, and each member a map entry and a Value.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"{path} must be a JSON object (a dict), got {describe(value)}")
    _check_depth(path, depth)
    target.SetInParent()
    deepest = 0
    for key, member in value.items():
        if not isinstance(key, str):
            message = f"{path} has the key {key!r}: JSON object keys must be str"
            raise TypeError(message)
        member_path = member_path_of(path, key)
        try:
            slot = target.fields[key]
        except UnicodeEncodeError:
            message = f"the name of {member_path} is not well-formed Unicode"
            raise ValueError(f"{message} (it has a lone surrogate)") from None
        deepest = max(deepest, 1 + fill_value(slot, member, member_path, depth + 1))
    return 1 + deepest


def member_path_of(path: str, key: str) -> str:
    """Where a member is, as an error names it, as the TypeScript client does.

    `path.key` for a name that reads as an identifier, else `path["key"]`
    quoted as JSON: a name with a dot or a space is then not ambiguous, and
    one with a lone surrogate can still be printed.
    """
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    quoted = json.dumps(key, ensure_ascii=False)  # leaves a lone surrogate raw
    return f"{path}[{quoted.encode('utf-8', 'backslashreplace').decode()}]"


_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*", re.ASCII)


def fill_list(target: Any, value: object, path: str, depth: int = 0) -> int:
    """Fills `target` (a ListValue) from a list; returns its protobuf levels."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{path} must be a JSON array (a list), got {describe(value)}")
    _check_depth(path, depth)
    target.SetInParent()
    deepest = 0
    for i, item in enumerate(value):
        slot = target.values.add()
        deepest = max(deepest, fill_value(slot, item, f"{path}[{i}]", depth + 1))
    return 1 + deepest


def fill_value(target: Any, value: object, path: str, depth: int = 0) -> int:
    """Fills `target` (a Value) from any JSON value; returns its levels."""
    if value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.number_value = exact_int(value, path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            message = f"{path} is {value}, which JSON cannot carry"
            raise ValueError(message)
        target.number_value = value
    elif isinstance(value, str):
        target.string_value = checked_string(value, path)
    elif isinstance(value, Mapping):
        return 1 + fill_struct(target.struct_value, value, path, depth)
    elif isinstance(value, list | tuple):
        return 1 + fill_list(target.list_value, value, path, depth)
    else:
        message = f"{path} is not JSON: got {describe(value)}"
        raise TypeError(message)
    return 1


def exact_int(value: int, path: str) -> float:
    """The int as a double, if the double holds it exactly."""
    if abs(value) > MAX_EXACT_INT:
        message = (
            f"{path} is {value}, beyond ±2**53: JSON numbers travel as doubles,"
            " which cannot hold it exactly"
        )
        raise ValueError(message)
    return float(value)


def checked_string(value: str, path: str) -> str:
    """The string, if UTF-8 can carry it (no lone surrogate)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        message = f"{path} is not well-formed Unicode (it has a lone surrogate)"
        raise ValueError(message) from None
    return value


def read_struct(struct: Any) -> JsonObject:
    """A Struct as a dict."""
    return {key: read_value(value) for key, value in struct.fields.items()}


def read_list(list_value: Any) -> list[Any]:
    """A ListValue as a list."""
    return [read_value(value) for value in list_value.values]


def read_value(value: Any) -> Any:
    """A Value as JSON data; an integral double within ±2**53 as an int."""
    kind = value.WhichOneof("kind")
    return None if kind is None else _READERS[kind](getattr(value, kind))


def _read_number(number: float) -> int | float:
    if number.is_integer() and abs(number) <= MAX_EXACT_INT:
        return int(number)
    return number


def _read_as_is(value: Any) -> Any:
    return value


def _read_null(value: Any) -> None:
    del value


_READERS: dict[str, Callable[[Any], Any]] = {
    "null_value": _read_null,
    "number_value": _read_number,
    "string_value": _read_as_is,
    "bool_value": _read_as_is,
    "struct_value": read_struct,
    "list_value": read_list,
}


def _check_depth(path: str, depth: int) -> None:
    if depth >= MAX_JSON_DEPTH:
        message = (
            f"{path} nests deeper than {MAX_JSON_DEPTH} levels (or contains itself)"
        )
        raise ValueError(message)
