"""LangChainCache(single_flight=True): one model call for a burst, on a real server."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.outputs import Generation

from llmcache import CacheClient
from llmcache.langchain import LangChainCache

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import Server
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )

PROMPT = "What is the capital of France?"
# Each model call answers differently: equal answers mean one call.
RESPONSES = [f"answer {i}" for i in range(100)]


class SlowCountingLLM(FakeListLLM):
    """FakeListLLM that takes `sleep` seconds a call, counts its calls, and
    raises in the first `failures` of them."""

    failures: int = 0
    calls: int = 0
    lock: Any = None

    def _count(self) -> int:
        assert self.lock is not None
        with self.lock:
            self.calls += 1
            return self.calls

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        call = self._count()
        time.sleep(self.sleep or 0)
        if call <= self.failures:
            raise RuntimeError(f"model call {call} failed")
        return super()._call(prompt, stop, run_manager, **kwargs)

    async def _acall(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        call = self._count()
        await asyncio.sleep(self.sleep or 0)
        if call <= self.failures:
            raise RuntimeError(f"model call {call} failed")
        return await super()._acall(prompt, stop, run_manager, **kwargs)


def model(
    cache: LangChainCache, *, sleep: float = 0.2, failures: int = 0
) -> SlowCountingLLM:
    return SlowCountingLLM(
        responses=RESPONSES,
        sleep=sleep,
        failures=failures,
        lock=threading.Lock(),
        cache=cache,
    )


@pytest.fixture
def cache(server: Server, namespace: str) -> Iterator[LangChainCache]:
    made = LangChainCache(
        address=server.address, namespace=namespace, single_flight=True
    )
    yield made
    made.close()


def lease_counts(cache: LangChainCache, namespace: str) -> tuple[int, int, int]:
    stats = cache.client.stats().namespaces[namespace].leases
    return stats.granted, stats.filled, stats.waits_served


async def test_a_burst_of_ainvokes_makes_one_model_call(
    cache: LangChainCache, namespace: str
) -> None:
    llm = model(cache)
    answers = await asyncio.gather(*(llm.ainvoke(PROMPT) for _ in range(50)))
    assert llm.calls == 1
    assert answers == ["answer 0"] * 50
    assert lease_counts(cache, namespace) == (1, 1, 49)
    await cache.aclose()


def test_a_burst_of_invokes_in_threads_makes_one_model_call(
    cache: LangChainCache, namespace: str
) -> None:
    llm = model(cache)
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: llm.invoke(PROMPT), range(50)))
    assert llm.calls == 1
    assert answers == ["answer 0"] * 50
    granted, filled, _ = lease_counts(cache, namespace)
    assert (granted, filled) == (1, 1)


async def test_without_single_flight_the_burst_calls_the_model_many_times(
    server: Server, namespace: str
) -> None:
    # What the option changes: the same burst without it.
    cache = LangChainCache(address=server.address, namespace=namespace)
    llm = model(cache)
    answers = await asyncio.gather(*(llm.ainvoke(PROMPT) for _ in range(10)))
    assert llm.calls == 10
    assert len(set(answers)) == 10
    await cache.aclose()


async def test_a_leaseholder_whose_model_raises_passes_the_lease_on_at_expiry(
    server: Server, namespace: str
) -> None:
    cache = LangChainCache(
        address=server.address,
        namespace=namespace,
        single_flight=True,
        lease_ms=1_000,
        wait_ms=20_000,
    )
    llm = model(cache, failures=1)
    start = time.monotonic()
    results = await asyncio.gather(
        *(llm.ainvoke(PROMPT) for _ in range(20)), return_exceptions=True
    )
    elapsed = time.monotonic() - start
    errors = [result for result in results if isinstance(result, BaseException)]
    assert [str(error) for error in errors] == ["model call 1 failed"]
    assert llm.calls == 2
    assert [result for result in results if isinstance(result, str)] == [
        "answer 0"
    ] * 19
    # The lease was not released (LangChain makes no update after a
    # failure): the next waiter took over when it expired.
    assert 0.9 < elapsed < 10
    stats = cache.client.stats().namespaces[namespace].leases
    assert (stats.granted, stats.expired, stats.filled) == (2, 1, 1)
    # Nothing of the failed call's lease is left behind once it expired.
    assert len(cache._leases) == 0  # noqa: SLF001
    await cache.aclose()


@pytest.mark.parametrize("kind", ["update", "aupdate"])
def test_an_update_that_fails_releases_the_lease_for_the_waiters(
    server: Server, namespace: str, kind: str
) -> None:
    # NaN is refused before anything is sent: the waiters used to wait for
    # the lease to expire, though the leaseholder had given up.
    cache = LangChainCache(
        address=server.address,
        namespace=namespace,
        single_flight=True,
        lease_ms=20_000,
        wait_ms=20_000,
    )
    unstorable = [Generation(text="x", generation_info={"score": math.nan})]

    def lookup_then_fail_to_update() -> None:
        assert cache.lookup(PROMPT, "llm") is None  # this thread's lease
        cache.update(PROMPT, "llm", unstorable)

    async def alookup_then_fail_to_update() -> None:
        assert await cache.alookup(PROMPT, "llm") is None  # this task's lease
        await cache.aupdate(PROMPT, "llm", unstorable)

    def leaseholder() -> None:
        if kind == "aupdate":
            asyncio.run(alookup_then_fail_to_update())
        else:
            lookup_then_fail_to_update()

    try:
        with pytest.raises(ValueError, match=r"nan, which JSON cannot carry"):
            leaseholder()
        with ThreadPoolExecutor(1) as other_thread:
            start = time.monotonic()
            assert other_thread.submit(cache.lookup, PROMPT, "llm").result() is None
            assert time.monotonic() - start < 5, "granted the next lease at once"
        stats = cache.client.stats().namespaces[namespace].leases
        assert (stats.granted, stats.released, stats.expired) == (2, 1, 0)
    finally:
        cache.close()


def test_remembered_leases_last_no_longer_than_the_lease(
    server: Server, namespace: str
) -> None:
    cache = LangChainCache(
        address=server.address, namespace=namespace, single_flight=True, lease_ms=300
    )
    try:
        for i in range(20):
            assert cache.lookup(f"prompt {i}", "llm") is None  # a lease, never filled
        assert len(cache._leases) == 20  # noqa: SLF001
        time.sleep(0.5)
        assert len(cache._leases) == 0  # noqa: SLF001
    finally:
        cache.close()


def test_the_update_after_a_leased_lookup_carries_its_token(
    cache: LangChainCache, namespace: str
) -> None:
    llm = model(cache, sleep=0)
    assert llm.invoke(PROMPT) == "answer 0"
    assert llm.invoke(PROMPT) == "answer 0"
    assert llm.calls == 1
    granted, filled, _ = lease_counts(cache, namespace)
    assert (granted, filled) == (1, 1)


def test_the_same_prompt_twice_in_one_generate_does_not_wait_for_itself(
    server: Server, namespace: str
) -> None:
    cache = LangChainCache(
        address=server.address,
        namespace=namespace,
        single_flight=True,
        lease_ms=20_000,
        wait_ms=20_000,
    )
    try:
        llm = model(cache, sleep=0)
        start = time.monotonic()
        result = llm.generate([PROMPT, PROMPT])
        assert time.monotonic() - start < 5
        assert [g[0].text for g in result.generations] == ["answer 0", "answer 1"]
        # One lease, filled by the first update.
        granted, filled, _ = lease_counts(cache, namespace)
        assert (granted, filled) == (1, 1)
    finally:
        cache.close()


async def test_the_same_prompt_twice_in_one_agenerate_does_not_wait_for_itself(
    server: Server, namespace: str
) -> None:
    cache = LangChainCache(
        address=server.address,
        namespace=namespace,
        single_flight=True,
        lease_ms=20_000,
        wait_ms=20_000,
    )
    llm = model(cache, sleep=0)
    start = time.monotonic()
    result = await llm.agenerate([PROMPT, PROMPT])
    assert time.monotonic() - start < 5
    assert len(result.generations) == 2
    stats = cache.client.stats().namespaces[namespace].leases
    assert (stats.granted, stats.filled) == (1, 1)
    await cache.aclose()


def test_single_flight_with_bypass_is_refused(client: CacheClient) -> None:
    with pytest.raises(
        ValueError,
        match=r"^single_flight with bypass: a cache that bypasses never reads the"
        r" server, so there is no answer to wait for$",
    ):
        LangChainCache(client=client, single_flight=True, bypass=True)


async def test_single_flight_on_a_client_without_batching(
    server: Server, namespace: str
) -> None:
    async with CacheClient(
        server.address, namespace=namespace, batching=False
    ) as client:
        cache = LangChainCache(client, single_flight=True)
        llm = model(cache)
        answers = await asyncio.gather(*(llm.ainvoke(PROMPT) for _ in range(20)))
        assert llm.calls == 1
        assert answers == ["answer 0"] * 20


def test_the_options_are_checked(server: Server) -> None:
    with pytest.raises(TypeError, match=r"^single_flight must be a bool"):
        LangChainCache(address=server.address, single_flight="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^lease_ms must be from 1"):
        LangChainCache(address=server.address, single_flight=True, lease_ms=0)
    with pytest.raises(ValueError, match=r"^wait_ms must be from 0"):
        LangChainCache(address=server.address, single_flight=True, wait_ms=-1)
    cache = LangChainCache(address=server.address)
    assert cache.single_flight is False
    cache.close()
