"""Reads one llmcache entry from a running server the way a Python client would.

Calls Lookup, BatchLookup (the same pair twice) and Stream (one lookup
operation) through grpcio with the Python client's generated code
(llmcache.v1 in clients/python, which scripts/generate-python.sh makes from
proto/ and scripts/python-env.sh installs in .venv/), so that Python's
protobuf parses the responses exactly as it does for a Python client, and
prints a JSON summary on stdout:

    {"ok": false,
     "calls": {
       "Lookup": {"results": [{"hit": true, "generations": 1, "max_depth": 34}]},
       "BatchLookup": {"results": [{...}, {...}]},
       "Stream": {"error": "INTERNAL: Exception deserializing response! (...)"}}}

`max_depth` is how deeply dicts and lists nest in the generations rendered by
json_format.MessageToDict, a generation's own dict counting as 1.

Exits 0 when every call succeeded and 1 when any failed: a response Python
cannot parse fails as INTERNAL, with the parser's own error in parentheses.
Exits 2 for bad arguments.

    .venv/bin/python test/python/read_entry.py 127.0.0.1:50051 PROMPT LLM_STRING \\
        --namespace NS --mode all
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format
from llmcache.v1 import cache_pb2, cache_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

MODES = ("all", "lookup", "batch", "stream")
STREAM_OPERATION_ID = 1

JsonDict = dict[str, Any]


class ReadError(Exception):
    """A call whose answer was not what a lookup must get."""


class DeserializeErrors(logging.Handler):
    """Keeps the parser errors grpcio logs.

    grpcio turns a response it cannot parse into a bare INTERNAL "Exception
    deserializing response!" and only logs the parser's exception.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            self.messages.append(f"{type(error).__name__}: {error}")


def nesting_depth(value: object) -> int:
    """How deeply dicts and lists nest: 0 for a scalar, 1 for a flat dict or list."""
    if isinstance(value, dict):
        return 1 + max((nesting_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting_depth(item) for item in value), default=0)
    return 0


def summarize(lookup_response: Any) -> JsonDict:
    generations = [
        json_format.MessageToDict(generation)
        for generation in lookup_response.generations
    ]
    depths = (nesting_depth(generation) for generation in generations)
    return {
        "hit": bool(lookup_response.hit),
        "generations": len(generations),
        "max_depth": max(depths, default=0),
    }


class Reader:
    """The three ways to look up one pair, each summarized per lookup."""

    def __init__(self, pb2: ModuleType, stub: Any, args: argparse.Namespace) -> None:
        self.pb2 = pb2
        self.stub = stub
        self.timeout: float = args.timeout
        self.request = pb2.LookupRequest(
            prompt=args.prompt, llm_string=args.llm_string, namespace=args.namespace
        )

    def lookup(self) -> list[JsonDict]:
        return [summarize(self.stub.Lookup(self.request, timeout=self.timeout))]

    def batch_lookup(self) -> list[JsonDict]:
        request = self.pb2.BatchLookupRequest(lookups=[self.request, self.request])
        response = self.stub.BatchLookup(request, timeout=self.timeout)
        return [summarize(result) for result in response.results]

    def stream(self) -> list[JsonDict]:
        def requests() -> Iterator[Any]:
            operation = self.pb2.StreamOperation(
                id=STREAM_OPERATION_ID, lookup=self.request
            )
            yield self.pb2.StreamRequest(operations=[operation])

        # Sending ends after the one request; the server ends the call once
        # it has answered it.
        results = [
            self._stream_result(result)
            for response in self.stub.Stream(requests(), timeout=self.timeout)
            for result in response.results
        ]
        if len(results) != 1:
            message = f"Stream answered the one lookup {len(results)} times"
            raise ReadError(message)
        return results

    @staticmethod
    def _stream_result(result: Any) -> JsonDict:
        if result.id != STREAM_OPERATION_ID:
            message = f"Stream answered operation {result.id}, which was never sent"
            raise ReadError(message)
        if result.WhichOneof("result") != "lookup":
            answer = json_format.MessageToJson(result, indent=None)
            message = f"Stream answered the lookup with {answer}"
            raise ReadError(message)
        return summarize(result.lookup)


def run_calls(
    pb2: ModuleType, pb2_grpc: ModuleType, args: argparse.Namespace
) -> dict[str, JsonDict]:
    deserialize_errors = DeserializeErrors()
    logging.getLogger("grpc._common").addHandler(deserialize_errors)
    summary: dict[str, JsonDict] = {}
    with grpc.insecure_channel(args.address) as channel:
        reader = Reader(pb2, pb2_grpc.CacheServiceStub(channel), args)
        calls: dict[str, Callable[[], list[JsonDict]]] = {
            "Lookup": reader.lookup,
            "BatchLookup": reader.batch_lookup,
            "Stream": reader.stream,
        }
        modes = {"Lookup": "lookup", "BatchLookup": "batch", "Stream": "stream"}
        for name, call in calls.items():
            if args.mode not in ("all", modes[name]):
                continue
            deserialize_errors.messages.clear()
            try:
                summary[name] = {"results": call()}
            except grpc.RpcError as error:
                summary[name] = {"error": describe(error, deserialize_errors.messages)}
            except ReadError as error:
                summary[name] = {"error": str(error)}
    return summary


def describe(error: grpc.RpcError, causes: list[str]) -> str:
    if isinstance(error, grpc.Call):
        text = f"{error.code().name}: {error.details()}"
    else:
        text = f"{type(error).__name__}: {error}"
    return f"{text} ({'; '.join(causes)})" if causes else text


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reads one llmcache entry through grpcio and summarizes it."
    )
    parser.add_argument("address", help="host:port of the llmcache server")
    parser.add_argument("prompt")
    parser.add_argument("llm_string")
    parser.add_argument("--namespace", default="")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="all",
        help="which calls to make (default: all three)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="each call's deadline, in seconds"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    calls = run_calls(cache_pb2, cache_pb2_grpc, args)
    failed = {name: call["error"] for name, call in calls.items() if "error" in call}
    print(json.dumps({"ok": not failed, "calls": calls}))
    for name, error in failed.items():
        print(f"read_entry: {name} failed: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
