"""LangChain Python's side of the cross-language test (test/e2e/cross-language.test.ts).

  cross_language.py store ADDRESS NAMESPACE SPEC   stores each message of SPEC under "py:INDEX"
  cross_language.py check ADDRESS NAMESPACE SPEC   reads "js:INDEX" and compares it with SPEC

SPEC is a JSON list of {"class": "AIMessage", "fields": {...}}, the same
file the TypeScript side builds its messages from. `check` prints a JSON
list of problems and exits 1 if there is any.
"""

import json
import sys
from typing import Any

from langchain_core import messages
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration
from llmcache.langchain import LangChainCache

LLM_STRING = "cross-language"


def build(spec: dict[str, Any]) -> BaseMessage:
    message_class = getattr(messages, spec["class"])
    message: BaseMessage = message_class(**spec["fields"])
    return message


def main(mode: str, address: str, namespace: str, spec_path: str) -> int:
    with open(spec_path, encoding="utf-8") as file:
        specs: list[dict[str, Any]] = json.load(file)
    cache = LangChainCache(address=address, namespace=namespace)
    problems: list[str] = []
    try:
        for index, spec in enumerate(specs):
            expected = build(spec)
            if mode == "store":
                cache.update(
                    f"py:{index}", LLM_STRING, [ChatGeneration(message=expected)]
                )
                continue
            found = cache.lookup(f"js:{index}", LLM_STRING)
            if (
                found is None
                or len(found) != 1
                or not isinstance(found[0], ChatGeneration)
            ):
                problems.append(
                    f"js:{index} ({spec['class']}): expected one ChatGeneration, got {found!r}"
                )
                continue
            message = found[0].message
            if type(message) is not type(expected):
                problems.append(
                    f"js:{index}: expected a {type(expected).__name__}, got a {type(message).__name__}"
                )
            elif message != expected:
                problems.append(
                    f"js:{index} ({spec['class']}): {message!r} != {expected!r}"
                )
    finally:
        cache.close()
    print(json.dumps(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
