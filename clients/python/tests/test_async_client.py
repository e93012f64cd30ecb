"""CacheClient's async methods (grpc.aio) against a real server.

The cache's behaviour is checked on every store (`aclient` is of
`store_server`); what only the memory store has (a byte budget, its
namespaces' counts of entries) on `server` or `limited_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from typing import TYPE_CHECKING

import grpc.aio
import pytest

from llmcache import CacheClient, CacheError, EntryTooLargeError, Generation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from conftest import Server

PARIS: list[Generation] = [{"text": "Paris"}]


@pytest.fixture
async def aclient(store_server: Server, namespace: str) -> AsyncIterator[CacheClient]:
    """A client of a server on each store (memory, Redis, Redis Cluster)."""
    async with CacheClient(store_server.address, namespace=namespace) as made:
        yield made


@pytest.fixture
async def memory_aclient(server: Server, namespace: str) -> AsyncIterator[CacheClient]:
    """A client of the memory store's `server` only, in the test's namespace.

    For the statistics of entries: on Redis a namespace counts none.
    """
    async with CacheClient(server.address, namespace=namespace) as made:
        yield made


async def test_alookup_returns_what_aupdate_stored(aclient: CacheClient) -> None:
    await aclient.aupdate("capital of France?", "model='m'", PARIS)
    assert await aclient.alookup("capital of France?", "model='m'") == PARIS


async def test_an_async_miss_is_none(aclient: CacheClient) -> None:
    assert await aclient.alookup("never stored", "model='m'") is None


async def test_an_async_stored_empty_list_comes_back_empty(
    aclient: CacheClient,
) -> None:
    await aclient.aupdate("empty", "l", [])
    assert await aclient.alookup("empty", "l") == []


async def test_aclear_empties_the_namespace(aclient: CacheClient) -> None:
    await aclient.aupdate("p", "l", PARIS)
    await aclient.aclear()
    assert await aclient.alookup("p", "l") is None


async def test_aclear_refuses_a_namespace_with_all_namespaces(
    limited_server: Server, namespace: str
) -> None:
    # On a server of its own: accepted, it would clear every namespace.
    async with CacheClient(limited_server.address, namespace=namespace) as client:
        other = f"{namespace}-other"
        await client.aupdate("p", "l", PARIS, namespace=other, never_expires=True)
        with pytest.raises(
            ValueError,
            match=r"^give either namespace or all_namespaces=True, not both$",
        ):
            await client.aclear(namespace=namespace, all_namespaces=True)
        assert await client.alookup("p", "l", namespace=other) == PARIS


async def test_async_namespaces_keep_keys_apart(
    aclient: CacheClient, namespace: str
) -> None:
    await aclient.aupdate("p", "l", [{"text": "a"}], namespace=f"{namespace}-a")
    assert await aclient.alookup("p", "l", namespace=f"{namespace}-a") == [
        {"text": "a"}
    ]
    assert await aclient.alookup("p", "l") is None


async def test_an_async_entry_expires_after_its_ttl(aclient: CacheClient) -> None:
    await aclient.aupdate("p", "l", PARIS, ttl=0.2)
    await asyncio.sleep(0.4)
    assert await aclient.alookup("p", "l") is None


async def test_async_bypass_answers_a_miss(aclient: CacheClient) -> None:
    await aclient.aupdate("p", "l", PARIS)
    assert await aclient.alookup("p", "l", bypass=True) is None


async def test_async_no_store_stores_nothing(aclient: CacheClient) -> None:
    await aclient.aupdate("p", "l", PARIS, no_store=True)
    assert await aclient.alookup("p", "l") is None


async def test_aupdate_if_absent_stores_only_when_absent(aclient: CacheClient) -> None:
    assert await aclient.aupdate_if_absent("p", "l", [{"text": "first"}]) is True
    assert await aclient.aupdate_if_absent("p", "l", [{"text": "second"}]) is False
    assert await aclient.alookup("p", "l") == [{"text": "first"}]


async def test_astats_count_the_namespaces_lookups(
    memory_aclient: CacheClient, namespace: str
) -> None:
    await memory_aclient.aupdate("p", "l", PARIS)
    await memory_aclient.alookup("p", "l")
    await memory_aclient.alookup("absent", "l")
    stats = (await memory_aclient.astats()).namespaces[namespace]
    assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)


async def test_async_batches_store_and_answer_in_order(aclient: CacheClient) -> None:
    await aclient.aupdate_many([("a", "l", [{"text": "A"}]), ("b", "l", [])])
    results = await aclient.alookup_many([("b", "l"), ("x", "l"), ("a", "l")])
    assert results == [[], None, [{"text": "A"}]]


async def test_concurrent_async_calls_each_get_their_own_answer(
    aclient: CacheClient,
) -> None:
    await asyncio.gather(
        *(aclient.aupdate(f"p{i}", "l", [{"text": str(i)}]) for i in range(50))
    )
    results = await asyncio.gather(*(aclient.alookup(f"p{i}", "l") for i in range(50)))
    assert results == [[{"text": str(i)}] for i in range(50)]


async def test_async_with_closes_the_client(server: Server) -> None:
    async with CacheClient(server.address) as client:
        assert await client.alookup("p", "unused llm") is None
    with pytest.raises(CacheError) as raised:
        await client.alookup("p", "unused llm")
    assert raised.value.code == "FAILED_PRECONDITION"


async def test_async_calls_fail_with_unavailable_when_no_server_listens(
    dead_address: str,
) -> None:
    async with CacheClient(dead_address) as client:
        with pytest.raises(CacheError) as raised:
            await client.alookup("p", "l")
    assert raised.value.code == "UNAVAILABLE"
    assert str(raised.value).startswith("Lookup failed: UNAVAILABLE: ")


async def test_an_async_entry_too_large_raises_entry_too_large_error(
    limited_server: Server, namespace: str
) -> None:
    # In memory only: the entry is too large for the server's byte budget.
    async with CacheClient(limited_server.address, namespace=namespace) as client:
        with pytest.raises(EntryTooLargeError) as raised:
            await client.aupdate("p", "l", [{"text": "x" * 100_000}])
    assert raised.value.code == "RESOURCE_EXHAUSTED"


def test_async_methods_work_across_event_loops(server: Server, namespace: str) -> None:
    # Each asyncio.run has a loop of its own; a grpc.aio channel works only
    # on the loop it was made on, so the client keeps one per loop.
    with CacheClient(server.address, namespace=namespace) as client:
        asyncio.run(client.aupdate("p", "l", PARIS))
        assert asyncio.run(client.alookup("p", "l")) == PARIS
        assert client.lookup("p", "l") == PARIS


async def test_blocking_and_async_calls_share_one_client(aclient: CacheClient) -> None:
    aclient.update("p", "l", PARIS)
    assert await aclient.alookup("p", "l") == PARIS


def live_async_channels() -> int:
    gc.collect()
    return sum(isinstance(item, grpc.aio.Channel) for item in gc.get_objects())


def test_channels_of_finished_event_loops_are_let_go(
    server: Server, namespace: str
) -> None:
    with CacheClient(server.address, namespace=namespace) as client:
        before = live_async_channels()
        for _ in range(20):
            asyncio.run(client.alookup("p", "l"))
        assert live_async_channels() <= before + 2


async def test_aclose_lets_unary_calls_in_flight_finish(
    server: Server, namespace: str
) -> None:
    # grpc.aio's channel.close() cancels the calls on it: they raised
    # CancelledError in tasks no one cancelled, though the server had
    # stored the updates.
    client = CacheClient(server.address, namespace=namespace, batching=False)
    await client.aupdate("k", "l", [{"text": "v"}])
    lookups = [asyncio.create_task(client.alookup("k", "l")) for _ in range(30)]
    updates = [
        asyncio.create_task(client.aupdate(f"u{i}", "l", [{"text": "new"}]))
        for i in range(30)
    ]
    await asyncio.sleep(0.001)  # sent, not yet answered
    await client.aclose()
    assert await asyncio.gather(*lookups) == [[{"text": "v"}]] * 30
    assert await asyncio.gather(*updates) == [None] * 30
    with pytest.raises(CacheError) as raised:
        await client.alookup("k", "l")
    assert raised.value.code == "FAILED_PRECONDITION"


@pytest.mark.parametrize("mode", ["batching", "unary"])
async def test_aclose_lets_a_lease_be_filled_for_the_calls_it_waits_for(
    server: Server, namespace: str, mode: str
) -> None:
    # aclose() waits for the waiter, so it must still send the leaseholder's
    # fill: refused, the waiter waited out its 20 s.
    client = CacheClient(
        server.address, namespace=namespace, batching=mode == "batching"
    )
    computing = asyncio.Event()

    async def compute() -> list[Generation]:
        computing.set()
        await asyncio.sleep(0.5)
        return [Generation(text="computed")]

    async def waiter() -> list[Generation] | None:
        await computing.wait()
        found = await client.alookup("p", "l", lease_ms=5_000, wait_ms=20_000)
        return found.generations

    holder = asyncio.create_task(client.aget_or_compute("p", "l", compute))
    waiting = asyncio.create_task(waiter())
    await computing.wait()
    await asyncio.sleep(0.1)  # the waiter's lookup waits on the server
    start = time.monotonic()
    await client.aclose()
    assert time.monotonic() - start < 5
    assert await holder == [Generation(text="computed")]
    assert await waiting == [Generation(text="computed")]


async def test_a_second_aclose_waits_as_the_first_does(
    server: Server, namespace: str
) -> None:
    # The second returned at once, its loop's calls still in flight.
    holder = CacheClient(server.address, namespace=namespace)
    lease = (await holder.alookup("p", "l", lease_ms=30_000)).lease
    assert lease is not None
    client = CacheClient(server.address, namespace=namespace)
    waiter = asyncio.create_task(
        client.alookup("p", "l", lease_ms=1_000, wait_ms=20_000)
    )
    await asyncio.sleep(0.2)  # it waits on the server
    first = asyncio.create_task(client.aclose())
    second = asyncio.create_task(client.aclose())
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(second), 0.3)
    assert not second.done(), "the second aclose() waits for the waiter too"
    await holder.aupdate("p", "l", [{"text": "filled"}], lease_token=lease.token)
    assert (await waiter).generations == [{"text": "filled"}]
    await asyncio.gather(first, second)
    await holder.aclose()


async def test_aclose_takes_a_fill_from_another_threads_get_or_compute(
    server: Server, namespace: str
) -> None:
    # aclose() closed the blocking channels before it drained this loop's
    # calls: the fill from another thread was refused, the waiter missed.
    client = CacheClient(server.address, namespace=namespace)
    computing = threading.Event()

    def compute() -> list[Generation]:
        computing.set()
        time.sleep(0.5)
        return [Generation(text="computed")]

    holder = asyncio.get_running_loop().run_in_executor(
        None, lambda: client.get_or_compute("p", "l", compute)
    )
    await asyncio.to_thread(computing.wait)
    found = asyncio.create_task(
        client.alookup("p", "l", lease_ms=1_000, wait_ms=20_000)
    )
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await client.aclose()
    assert time.monotonic() - start < 5
    assert (await found).generations == [Generation(text="computed")]
    assert await holder == [Generation(text="computed")]


async def test_aget_or_compute_made_before_aclose_stores_its_answer(
    server: Server, namespace: str
) -> None:
    # With no other call in flight, aclose() closed under the compute: the
    # fill was refused and the lease held to its end.
    client = CacheClient(server.address, namespace=namespace)

    async def compute() -> list[Generation]:
        await asyncio.sleep(0.3)
        return [Generation(text="computed")]

    answer = asyncio.create_task(client.aget_or_compute("p", "l", compute))
    await asyncio.sleep(0.1)
    await client.aclose()
    assert await answer == [Generation(text="computed")]
    async with CacheClient(server.address, namespace=namespace) as other:
        assert await other.alookup("p", "l") == [Generation(text="computed")]
