"""Python callers of the cross-language single-flight burst (a TypeScript e2e test runs it).

  single_flight_burst.py --address HOST:PORT [--token TOKEN] --prompt P
      --llm-string L --callers N --model-ms MS --lease-ms X --wait-ms Y
      [--namespace NS] [--fail-first]

Connects, then waits for a line "go" on stdin, so that the processes of a
burst start together; then runs N concurrent `aget_or_compute` calls of
(P, L) on one client. Their compute is the fake model: it sleeps MS
milliseconds and answers [{"text": "answer"}]; with --fail-first, the
first compute of this process raises instead (after its sleep). Prints one
JSON line and exits 0:

  {"model_calls": K, "answers": [texts of the calls that succeeded],
   "errors": ["ExceptionType: message" of the calls that failed]}
"""

import argparse
import asyncio
import contextlib
import json
import sys

from llmcache import CacheClient, CacheError, Generation


class FakeModel:
    """Counts its calls; the first raises if asked to."""

    def __init__(self, model_ms: int, *, fail_first: bool) -> None:
        self.model_ms = model_ms
        self.fail_first = fail_first
        self.calls = 0

    async def compute(self) -> list[Generation]:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(self.model_ms / 1000)
        if self.fail_first and call == 1:
            raise RuntimeError("the first model call of this process failed")
        return [{"text": "answer"}]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--token")
    parser.add_argument("--namespace")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--llm-string", required=True)
    parser.add_argument("--callers", type=int, required=True)
    parser.add_argument("--model-ms", type=int, required=True)
    parser.add_argument("--lease-ms", type=int, required=True)
    parser.add_argument("--wait-ms", type=int, required=True)
    parser.add_argument("--fail-first", action="store_true")
    return parser.parse_args(argv)


async def wait_for_go() -> None:
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit(f'expected "go" on stdin, got {line!r}')


async def burst(args: argparse.Namespace) -> dict[str, object]:
    model = FakeModel(args.model_ms, fail_first=args.fail_first)
    answers: list[str] = []
    errors: list[str] = []
    async with CacheClient(
        args.address, token=args.token, namespace=args.namespace
    ) as client:
        # Connected before the go (a Stats call changes no counter; a token
        # without the stats right is refused, once connected).
        with contextlib.suppress(CacheError):
            await client.astats()
        await wait_for_go()
        results = await asyncio.gather(
            *(
                client.aget_or_compute(
                    args.prompt,
                    args.llm_string,
                    model.compute,
                    lease_ms=args.lease_ms,
                    wait_ms=args.wait_ms,
                )
                for _ in range(args.callers)
            ),
            return_exceptions=True,
        )
    for result in results:
        if isinstance(result, BaseException):
            errors.append(f"{type(result).__name__}: {result}")
        else:
            answers.append(" ".join(generation["text"] for generation in result))
    return {"model_calls": model.calls, "answers": answers, "errors": errors}


def main() -> int:
    args = parse(sys.argv[1:])
    print(json.dumps(asyncio.run(burst(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
