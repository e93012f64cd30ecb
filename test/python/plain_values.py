"""The Python client's side of the plain-values test (test/e2e/cross-language.test.ts).

  plain_values.py read ADDRESS NAMESPACE PROMPT    prints the generations stored, as JSON
  plain_values.py store ADDRESS NAMESPACE PROMPT   stores the generations read from stdin

Plain data through llmcache.CacheClient, no LangChain: what one client
stores, the other must read back equal.
"""

import json
import sys

from llmcache import CacheClient

LLM_STRING = "plain-values"


def main(mode: str, address: str, namespace: str, prompt: str) -> int:
    with CacheClient(address, namespace=namespace) as client:
        if mode == "store":
            client.update(prompt, LLM_STRING, json.load(sys.stdin))
        else:
            print(json.dumps(client.lookup(prompt, LLM_STRING)))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
