"""Auto-batching: the async lookups and updates on CacheService.Stream.

Against real servers. Those that are stopped (SIGSTOP), killed or
restarted are the test's own, so that the session's servers never are.
"""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import time
import urllib.request
from typing import TYPE_CHECKING

import pytest
from conftest import TOKEN, start_server

from llmcache import CacheClient, CacheError, EntryTooLargeError, Generation

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from conftest import Server

PARIS: list[Generation] = [{"text": "Paris"}]


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A server of the test's own, with metrics; resumed if stopped, then stopped."""
    started = start_server("--metrics-port", "0")
    yield started
    if started.process.poll() is None:
        started.process.send_signal(signal.SIGCONT)
    started.stop()


@pytest.fixture
async def aclient(server: Server, namespace: str) -> AsyncIterator[CacheClient]:
    async with CacheClient(server.address, namespace=namespace) as made:
        yield made


def calls(server: Server, method: str) -> dict[str, int]:
    """llmcache_calls_total of the method, by code, from the server's metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^llmcache_calls_total{{method="{method}",code="(\w+)"}} (\d+)$'
    return {code: int(count) for code, count in re.findall(pattern, text, re.MULTILINE)}


def gen(i: int) -> list[Generation]:
    return [{"text": f"answer {i}", "generation_info": {"i": i}}]


async def test_batching_is_on_by_default(server: Server) -> None:
    async with CacheClient(server.address) as client:
        assert client.batching is True
    assert CacheClient(server.address, batching=False).batching is False
    with pytest.raises(TypeError, match="batching must be a bool"):
        CacheClient(server.address, batching="yes")  # type: ignore[arg-type]


async def test_async_lookups_and_updates_travel_on_one_stream(
    own_server: Server, namespace: str
) -> None:
    async with CacheClient(own_server.address, namespace=namespace) as client:
        await asyncio.gather(
            *(client.aupdate(f"p{i}", "l", gen(i)) for i in range(100))
        )
        results = await asyncio.gather(
            *(client.alookup(f"p{i}", "l") for i in range(100))
        )
        assert results == [gen(i) for i in range(100)]
        await client.astats()  # not a stream operation: a unary call
    assert calls(own_server, "Stream") == {"OK": 1}  # ended cleanly by aclose
    assert calls(own_server, "Lookup") == {}
    assert calls(own_server, "Update") == {}
    assert calls(own_server, "Stats") == {"OK": 1}


async def test_many_tasks_mixing_hits_misses_and_updates_all_get_their_answers(
    aclient: CacheClient,
) -> None:
    await aclient.aupdate_many([(f"k{i}", "l", gen(i)) for i in range(0, 200, 2)])

    async def task(i: int) -> None:
        for round_ in range(5):
            expected = gen(i) if i % 2 == 0 else None
            assert await aclient.alookup(f"k{i}", "l") == expected
            assert await aclient.alookup(f"absent{i}-{round_}", "l") is None
            await aclient.aupdate(f"own{i}", "l", gen(i * 100 + round_))
            assert await aclient.alookup(f"own{i}", "l") == gen(i * 100 + round_)
            stored = await aclient.aupdate_if_absent(f"once{i}", "l", gen(round_))
            assert stored is (round_ == 0)
            assert await aclient.alookup(f"once{i}", "l") == gen(0)
            # A hit on a key another task writes: its first value, or a later one.
            other = (i + 1) % 200
            assert await aclient.alookup(f"own{other}", "l") in (
                None,
                *(gen(other * 100 + r) for r in range(5)),
            )

    await asyncio.gather(*(task(i) for i in range(200)))


async def test_many_operations_started_in_one_turn_are_each_answered(
    aclient: CacheClient,
) -> None:
    # 1,000 operations of one turn: about 42 messages each way, whose results
    # the client matches by id.
    updates = [aclient.aupdate(f"p{i}", f"l{i % 7}", gen(i)) for i in range(0, 1000, 3)]
    await asyncio.gather(*updates)
    results = await asyncio.gather(
        *(aclient.alookup(f"p{i}", f"l{i % 7}") for i in range(1000)),
        *(aclient.aupdate_if_absent(f"p{i}", f"l{i % 7}", []) for i in range(1000)),
    )
    assert results[:1000] == [gen(i) if i % 3 == 0 else None for i in range(1000)]
    assert results[1000:] == [i % 3 != 0 for i in range(1000)]


async def test_each_call_keeps_its_own_timeout(
    own_server: Server, namespace: str
) -> None:
    async with CacheClient(own_server.address, namespace=namespace) as client:
        await client.aupdate("p", "l", PARIS)  # the stream is open
        own_server.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        short = asyncio.create_task(client.alookup("p", "l", timeout=0.3))
        long = asyncio.create_task(client.alookup("p", "l", timeout=10))
        default = asyncio.create_task(client.alookup("p", "l"))
        with pytest.raises(CacheError) as raised:
            await short
        assert 0.25 < time.monotonic() - started < 2
        assert raised.value.code == "DEADLINE_EXCEEDED"
        assert raised.value.method == "Lookup"
        assert str(raised.value).startswith("Lookup failed: DEADLINE_EXCEEDED: ")
        assert not long.done()
        assert not default.done()
        own_server.process.send_signal(signal.SIGCONT)
        # The late result of the call that timed out is dropped; the stream
        # goes on and the others get theirs.
        assert await long == PARIS
        assert await default == PARIS
        assert await client.alookup("p", "l") == PARIS


async def test_a_cancelled_call_does_not_break_the_others(
    own_server: Server, namespace: str
) -> None:
    async with CacheClient(own_server.address, namespace=namespace) as client:
        await client.aupdate("p", "l", PARIS)
        # Cancelled before it is sent: it is never sent.
        unsent = asyncio.create_task(client.alookup("p", "l"))
        neighbour = asyncio.create_task(client.alookup("p", "l"))
        await asyncio.sleep(0)
        unsent.cancel()
        assert await neighbour == PARIS
        with pytest.raises(asyncio.CancelledError):
            await unsent
        # Cancelled while the server holds it.
        own_server.process.send_signal(signal.SIGSTOP)
        tasks = [asyncio.create_task(client.alookup("p", "l")) for _ in range(50)]
        await asyncio.sleep(0.2)
        for task in tasks[::2]:
            task.cancel()
        own_server.process.send_signal(signal.SIGCONT)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(
            isinstance(result, asyncio.CancelledError) for result in results[::2]
        )
        assert results[1::2] == [PARIS] * 25
        assert await client.alookup("p", "l") == PARIS
    assert calls(own_server, "Stream") == {"OK": 1}


async def test_cancelled_calls_on_a_busy_stream_leave_the_rest_answered(
    aclient: CacheClient,
) -> None:
    await aclient.aupdate_many([(f"p{i}", "l", gen(i)) for i in range(300)])
    tasks = [asyncio.create_task(aclient.alookup(f"p{i}", "l")) for i in range(300)]
    for turn in range(3):
        await asyncio.sleep(0)
        for task in tasks[turn::7]:
            task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(results):
        if not isinstance(result, asyncio.CancelledError):
            assert result == gen(i)
    assert sum(isinstance(result, list) for result in results) >= 300 - 3 * 43


async def test_a_server_killed_mid_stream_fails_its_calls_then_a_new_one_serves(
    own_server: Server, namespace: str
) -> None:
    async with CacheClient(own_server.address, namespace=namespace) as client:
        await client.aupdate("p", "l", PARIS)
        own_server.process.send_signal(signal.SIGSTOP)
        in_flight = [
            asyncio.create_task(client.alookup("p", "l")),
            asyncio.create_task(client.aupdate("q", "l", PARIS)),
            *(asyncio.create_task(client.alookup(f"x{i}", "l")) for i in range(60)),
        ]
        await asyncio.sleep(0.2)
        own_server.process.kill()
        own_server.process.wait()
        results = await asyncio.gather(*in_flight, return_exceptions=True)
        for result in results:
            assert isinstance(result, CacheError), result
            assert result.code == "UNAVAILABLE"
        assert str(results[0]).startswith("Lookup failed: UNAVAILABLE: ")
        assert str(results[1]).startswith("Update failed: UNAVAILABLE: ")

        restarted = start_server(port=own_server.port)
        try:
            await client.aupdate("p", "l", [{"text": "again"}])
            assert await client.alookup("p", "l") == [{"text": "again"}]
        finally:
            restarted.stop()


async def test_a_server_shutting_down_under_load_fails_calls_unavailable_never_internal(
    own_server: Server,
) -> None:
    # The server ends the stream while the client is sending its next
    # message: grpc.aio then reports INTERNAL in place of the status
    # (grpc/grpc#36066). One shutdown gave a few hundred INTERNAL failures.
    async with CacheClient(own_server.address) as client:
        await client.aupdate("p", "l", PARIS)
        submitting = True

        async def submit() -> list[list[Generation] | BaseException | None]:
            calls: list[asyncio.Task[list[Generation] | None]] = []
            while submitting:
                calls.append(asyncio.create_task(client.alookup("p", "l")))
                await asyncio.sleep(0)
            return await asyncio.gather(*calls, return_exceptions=True)

        submitted = asyncio.create_task(submit())
        await asyncio.sleep(0.3)
        await asyncio.to_thread(own_server.stop)
        await asyncio.sleep(0.2)
        submitting = False
        results = await submitted
    outcomes = collections.Counter(
        result.code if isinstance(result, CacheError) else repr(result)
        for result in results
        if result != PARIS
    )
    assert set(outcomes) == {"UNAVAILABLE"}, outcomes
    assert results.count(PARIS) > 0


async def test_calls_to_no_server_fail_with_unavailable(dead_address: str) -> None:
    async with CacheClient(dead_address) as client:
        results = await asyncio.gather(
            *(client.alookup(f"p{i}", "l") for i in range(30)),
            client.aupdate("p", "l", PARIS),
            return_exceptions=True,
        )
    for result in results:
        assert isinstance(result, CacheError)
        assert result.code == "UNAVAILABLE"
    assert str(results[0]).startswith("Lookup failed: UNAVAILABLE: ")
    assert str(results[-1]).startswith("Update failed: UNAVAILABLE: ")


async def test_aclose_answers_the_calls_in_flight_and_ends_the_stream(
    own_server: Server, namespace: str
) -> None:
    client = CacheClient(own_server.address, namespace=namespace)
    await client.aupdate("p", "l", PARIS)
    tasks = [asyncio.create_task(client.alookup("p", "l")) for _ in range(100)]
    await asyncio.sleep(0)  # submitted, some perhaps not sent yet
    await client.aclose()
    assert await asyncio.gather(*tasks) == [PARIS] * 100
    with pytest.raises(CacheError) as raised:
        await client.alookup("p", "l")
    assert raised.value.code == "FAILED_PRECONDITION"
    assert calls(own_server, "Stream") == {"OK": 1}


async def test_an_entry_too_large_fails_only_its_own_call(
    limited_server: Server, namespace: str
) -> None:
    async with CacheClient(limited_server.address, namespace=namespace) as client:
        results = await asyncio.gather(
            client.aupdate("small", "l", PARIS),
            client.aupdate("big", "l", [{"text": "x" * 100_000}]),
            client.aupdate_if_absent("big2", "l", [{"text": "x" * 100_000}]),
            client.alookup("small", "l"),
            return_exceptions=True,
        )
    assert results[0] is None
    assert results[3] == PARIS
    for error in results[1:3]:
        assert isinstance(error, EntryTooLargeError)
        assert error.code == "RESOURCE_EXHAUSTED"
        assert error.method == "Update"
        assert str(error).startswith(
            "Update failed: RESOURCE_EXHAUSTED: entry too large"
        )
    # The same error, message and all, as the unary call gives.
    async with CacheClient(
        limited_server.address, namespace=namespace, batching=False
    ) as unary:
        with pytest.raises(EntryTooLargeError) as raised:
            await unary.aupdate("big", "l", [{"text": "x" * 100_000}])
    assert str(raised.value) == str(results[1])


async def test_a_request_too_large_to_share_a_message_goes_unary(
    own_server: Server, namespace: str
) -> None:
    big: list[Generation] = [{"text": "y" * (1536 * 1024)}]
    async with CacheClient(own_server.address, namespace=namespace) as client:
        results = await asyncio.gather(
            client.aupdate("big", "l", big), client.alookup("small", "l")
        )
        assert list(results) == [None, None]
        assert await client.alookup("big", "l") == big
    assert calls(own_server, "Update") == {"OK": 1}
    assert calls(own_server, "Lookup") == {}


async def test_a_wrong_token_fails_streamed_calls_with_unauthenticated(
    auth_server: Server, namespace: str
) -> None:
    async with CacheClient(auth_server.address, token="not-the-token") as client:
        with pytest.raises(CacheError) as raised:
            await client.alookup("p", "l")
    assert raised.value.code == "UNAUTHENTICATED"
    assert str(raised.value).startswith("Lookup failed: UNAUTHENTICATED: ")
    async with CacheClient(
        auth_server.address, token=TOKEN, namespace=namespace
    ) as client:
        await client.aupdate("p", "l", PARIS)
        assert await client.alookup("p", "l") == PARIS


async def test_a_wrong_token_fails_the_first_call_of_every_client_with_unauthenticated(
    auth_server: Server,
) -> None:
    # Each client's stream is refused as its first message arrives; refused
    # at its headers, one in five reported grpcio's INTERNAL instead.
    codes = collections.Counter[str]()
    for _ in range(100):
        async with CacheClient(auth_server.address, token="not-the-token") as client:
            with pytest.raises(CacheError) as raised:
                await client.alookup("p", "l")
            codes[raised.value.code] += 1
    assert codes == {"UNAUTHENTICATED": 100}


async def test_a_wrong_token_fails_every_call_with_unauthenticated_while_calls_keep_coming(
    auth_server: Server,
) -> None:
    # A call every turn of the loop: each new stream has more to send by the
    # time it is refused. Sent before the server accepted the stream, two
    # thirds of them reported grpcio's INTERNAL.
    async with CacheClient(auth_server.address, token="not-the-token") as client:
        calls = []
        for i in range(2000):
            calls.append(asyncio.create_task(client.alookup(f"p{i}", "l")))
            await asyncio.sleep(0)
        results = await asyncio.gather(*calls, return_exceptions=True)
    codes = collections.Counter(
        result.code if isinstance(result, CacheError) else repr(result)
        for result in results
    )
    assert codes == {"UNAUTHENTICATED": 2000}


async def test_batching_off_makes_each_call_unary(
    own_server: Server, namespace: str
) -> None:
    async with CacheClient(
        own_server.address, namespace=namespace, batching=False
    ) as client:
        await asyncio.gather(*(client.aupdate(f"p{i}", "l", gen(i)) for i in range(20)))
        results = await asyncio.gather(
            *(client.alookup(f"p{i}", "l") for i in range(25))
        )
        assert results == [gen(i) for i in range(20)] + [None] * 5
        assert await client.aupdate_if_absent("p0", "l", []) is False
    assert calls(own_server, "Stream") == {}
    assert calls(own_server, "Lookup") == {"OK": 25}
    assert calls(own_server, "Update") == {"OK": 21}


def test_each_event_loop_has_a_stream_of_its_own(
    server: Server, namespace: str
) -> None:
    with CacheClient(server.address, namespace=namespace) as client:
        for i in range(5):
            asyncio.run(client.aupdate(f"p{i}", "l", gen(i)))
        assert [asyncio.run(client.alookup(f"p{i}", "l")) for i in range(5)] == [
            gen(i) for i in range(5)
        ]
