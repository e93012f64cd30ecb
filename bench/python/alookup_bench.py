"""Python's side of `npm run bench`: lookups/s from 64 asyncio tasks.

  alookup_bench.py LLMCACHE_ADDRESS REDIS_PORT SECONDS

llmcache's CacheClient.alookup (grpc.aio) against what a Python app would
otherwise run on the same redis-server: redis-py's asyncio client doing GET
and json.loads of the same 500-byte answer. Each checks one hit first: a
fast wrong answer is no result. Prints one JSON object of rows.
"""

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from llmcache import CacheClient

TASKS = 64
PROMPT = "Summarise the following support ticket #7 in one sentence. ".ljust(200, ".")
LLM_STRING = "model='gpt-5.4-mini' temperature=0.0"
GENERATIONS = [{"text": ("answer 7: " + "lorem ipsum " * 50)[:500]}]


async def measure(call: Callable[[], Awaitable[object]], seconds: float) -> float:
    """Lookups per second from TASKS tasks calling in a closed loop."""
    deadline = 0.0
    done = 0

    async def task() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    deadline = time.perf_counter() + seconds / 4  # warm-up
    await asyncio.gather(*(task() for _ in range(TASKS)))
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(task() for _ in range(TASKS)))
    return done / (time.perf_counter() - started)


async def main(address: str, redis_port: int, seconds: float) -> None:
    async with CacheClient(address, namespace="bench-python") as cache:
        await cache.aupdate(PROMPT, LLM_STRING, GENERATIONS)
        assert await cache.alookup(PROMPT, LLM_STRING) == GENERATIONS
        llmcache_rate = await measure(
            lambda: cache.alookup(PROMPT, LLM_STRING), seconds
        )

    redis = aioredis.Redis(host="127.0.0.1", port=redis_port, max_connections=TASKS)
    key = f"bench:python:{PROMPT}:{LLM_STRING}"
    await redis.set(key, json.dumps(GENERATIONS))

    async def get_and_parse() -> object:
        return json.loads(await redis.get(key))

    assert await get_and_parse() == GENERATIONS
    redis_rate = await measure(get_and_parse, seconds)
    await redis.aclose()
    print(
        json.dumps(
            {
                "llmcache CacheClient.alookup": llmcache_rate,
                "redis-py asyncio GET + json.loads": redis_rate,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
