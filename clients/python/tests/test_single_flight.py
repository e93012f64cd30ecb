"""Single flight: leases, waits, fills and get_or_compute, against real servers.

A lookup that must be waiting on the server before the test goes on is
given WAIT_START to get there; the waits themselves are seconds long, so
that a slow machine makes no test pass for the wrong reason.
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from conftest import READER_TOKEN, TOKEN, start_server

from llmcache import (
    CacheClient,
    CacheError,
    Generation,
    Lease,
    LeasedLookup,
    LeaseStats,
)
from llmcache._stream import OperationStream
from llmcache.v1 import cache_pb2

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from conftest import Server

PARIS: list[Generation] = [{"text": "Paris"}]
LYON: list[Generation] = [{"text": "Lyon"}]
# How long a lookup started in another thread or task is given to be
# waiting on the server.
WAIT_START = 0.5


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=64) as made:
        yield made


@pytest.fixture
async def aclient(server: Server, namespace: str) -> AsyncIterator[CacheClient]:
    async with CacheClient(server.address, namespace=namespace) as made:
        yield made


@pytest.fixture
def own_server() -> Iterator[Server]:
    """A server of the test's own, with metrics, stopped at the end."""
    started = start_server("--metrics-port", "0")
    yield started
    started.stop()


def granted(found: LeasedLookup) -> Lease:
    assert found.generations is None, found
    assert found.lease is not None, found
    return found.lease


def lease_stats(client: CacheClient, namespace: str) -> LeaseStats:
    return client.stats().namespaces[namespace].leases


def metrics(server: Server) -> str:
    """The server's metrics, in Prometheus's text format."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def calls(server: Server, method: str) -> dict[str, int]:
    """llmcache_calls_total of the method, by code, from the server's metrics."""
    pattern = rf'^llmcache_calls_total{{method="{method}",code="(\w+)"}} (\d+)$'
    found = re.findall(pattern, metrics(server), re.MULTILINE)
    return {code: int(count) for code, count in found}


def lease_waiters(server: Server) -> int:
    """llmcache_lease_waiters: the lookups waiting on the server now."""
    found = re.search(r"^llmcache_lease_waiters (\d+)$", metrics(server), re.MULTILINE)
    assert found is not None, "the server has no llmcache_lease_waiters gauge"
    return int(found.group(1))


async def waiters_become(server: Server, count: int, within: float) -> float:
    """Waits until `count` lookups wait on the server; how long that took."""
    start = time.monotonic()
    while (waiting := await asyncio.to_thread(lease_waiters, server)) != count:
        elapsed = time.monotonic() - start
        assert elapsed < within, (
            f"{waiting} waiters, not {count}, after {elapsed:.1f} s"
        )
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def timed(function: Callable[[], Any]) -> Callable[[], tuple[Any, float]]:
    def run() -> tuple[Any, float]:
        start = time.monotonic()
        return function(), time.monotonic() - start

    return run


# -- leases, waits and fills ------------------------------------------------


def test_a_miss_grants_a_lease_and_a_second_miss_gets_none(
    client: CacheClient,
) -> None:
    first = client.lookup("p", "l", lease_ms=5_000)
    lease = granted(first)
    assert lease.token
    assert lease.lease_ms == 5_000
    assert first.hit is False
    # Another caller that will not wait: a plain miss, no lease of its own.
    assert client.lookup("p", "l", lease_ms=5_000) == LeasedLookup(None, None)
    client.update("p", "l", PARIS, lease_token=lease.token)
    assert client.lookup("p", "l", lease_ms=5_000) == LeasedLookup(PARIS, None)
    assert client.lookup("p", "l") == PARIS


def test_a_lookup_without_lease_ms_is_unchanged_by_a_lease(
    client: CacheClient,
) -> None:
    granted(client.lookup("p", "l", lease_ms=5_000))
    start = time.monotonic()
    assert client.lookup("p", "l") is None
    assert time.monotonic() - start < 1


def test_a_waiting_lookup_is_served_by_the_holders_fill(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    lease = granted(client.lookup("p", "l", lease_ms=10_000))
    waiters = [
        pool.submit(
            timed(lambda: client.lookup("p", "l", lease_ms=10_000, wait_ms=10_000))
        )
        for _ in range(5)
    ]
    time.sleep(WAIT_START)
    assert not any(waiter.done() for waiter in waiters)
    filled_at = time.monotonic()
    client.update("p", "l", PARIS, lease_token=lease.token)
    for waiter in waiters:
        found, _ = waiter.result(timeout=5)
        assert found == LeasedLookup(PARIS, None)
    assert time.monotonic() - filled_at < 2


def test_a_release_grants_the_next_lease_to_the_first_waiter(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    first = granted(client.lookup("p", "l", lease_ms=30_000))
    waiter = pool.submit(
        lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
    )
    time.sleep(WAIT_START)
    second_waiter = pool.submit(
        lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
    )
    time.sleep(WAIT_START)
    assert client.release_lease("p", "l", first.token) is True
    second = granted(waiter.result(timeout=5))
    assert second.token != first.token
    # The other goes on waiting, and gets the new holder's fill.
    time.sleep(WAIT_START)
    assert not second_waiter.done()
    assert client.release_lease("p", "l", first.token) is False
    client.update("p", "l", LYON, lease_token=second.token)
    assert second_waiter.result(timeout=5) == LeasedLookup(LYON, None)


def test_an_expired_lease_passes_to_the_first_waiter(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    first = granted(client.lookup("p", "l", lease_ms=1_000))
    waiter = pool.submit(
        timed(lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000))
    )
    found, waited = waiter.result(timeout=10)
    second = granted(found)
    assert second.token != first.token
    assert second.lease_ms == 30_000
    assert 0.5 < waited < 5
    assert client.release_lease("p", "l", first.token) is False


def test_a_clear_ends_the_lease_and_passes_it_on(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    first = granted(client.lookup("p", "l", lease_ms=30_000))
    waiter = pool.submit(
        lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
    )
    time.sleep(WAIT_START)
    client.clear()
    second = granted(waiter.result(timeout=5))
    assert second.token != first.token


def test_an_update_without_a_token_ends_the_lease_and_serves_the_waiters(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    lease = granted(client.lookup("p", "l", lease_ms=30_000))
    waiter = pool.submit(
        lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
    )
    time.sleep(WAIT_START)
    client.update("p", "l", LYON)
    assert waiter.result(timeout=5) == LeasedLookup(LYON, None)
    # The holder's token is stale now, and the pair has an entry: refused.
    assert client.update_if_absent("p", "l", PARIS, lease_token=lease.token) is False
    client.update("p", "l", PARIS, lease_token=lease.token)
    assert client.lookup("p", "l") == LYON


def test_a_stale_token_never_overwrites_a_newer_lease_or_value(
    client: CacheClient,
) -> None:
    stale = granted(client.lookup("p", "l", lease_ms=200))
    time.sleep(0.5)
    newer = granted(client.lookup("p", "l", lease_ms=30_000))
    # The pair is leased to another: the stale fill is refused.
    assert client.update_if_absent("p", "l", PARIS, lease_token=stale.token) is False
    assert client.lookup("p", "l") is None
    client.update("p", "l", LYON, lease_token=newer.token)
    # The pair holds a newer value: refused again, by update() too.
    client.update("p", "l", PARIS, lease_token=stale.token)
    assert client.lookup("p", "l") == LYON
    assert lease_stats(client, client.namespace).stale_fills_refused == 2


def test_a_stale_token_is_stored_when_the_pair_is_free(client: CacheClient) -> None:
    stale = granted(client.lookup("p", "l", lease_ms=200))
    time.sleep(0.5)
    assert client.update_if_absent("p", "l", PARIS, lease_token=stale.token) is True
    assert client.lookup("p", "l") == PARIS


def test_a_token_from_elsewhere_is_stale(client: CacheClient) -> None:
    assert client.update_if_absent("p", "l", PARIS, lease_token="made-up") is True
    granted(client.lookup("q", "l", lease_ms=30_000))
    assert client.update_if_absent("q", "l", PARIS, lease_token="made-up") is False
    assert client.release_lease("q", "l", "made-up") is False


def test_a_wait_that_runs_out_is_a_plain_miss(client: CacheClient) -> None:
    granted(client.lookup("p", "l", lease_ms=30_000))
    found, waited = timed(
        lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=1_000)
    )()
    assert found == LeasedLookup(None, None)
    assert 0.9 < waited < 4


def test_a_waiting_lookups_deadline_is_its_wait_plus_its_timeout(
    client: CacheClient,
) -> None:
    # A timeout shorter than the wait: the client's deadline is wait_ms
    # longer, so the server answers at the wait's end, not DEADLINE_EXCEEDED.
    granted(client.lookup("p", "l", lease_ms=30_000))
    found, waited = timed(
        lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=1_500, timeout=0.2)
    )()
    assert found == LeasedLookup(None, None)
    assert 1.4 < waited < 4


def test_a_call_deadline_shorter_than_the_wait_ends_the_wait() -> None:
    # Sent raw, as a client that does not lengthen its deadline would: the
    # server waits no longer than the call's deadline, and the wait stops
    # counting against the waiter limit (one here).
    limited = start_server("--max-lease-waiters-per-pair", "1")
    try:
        with grpc.insecure_channel(limited.address) as channel:
            lookup = channel.unary_unary(
                "/llmcache.v1.CacheService/Lookup",
                request_serializer=cache_pb2.LookupRequest.SerializeToString,
                response_deserializer=cache_pb2.LookupResponse.FromString,
            )
            request = cache_pb2.LookupRequest(
                prompt="p", llm_string="l", lease_ms=30_000
            )
            assert lookup(request, timeout=5).lease.token
            request.wait_ms = 20_000
            start = time.monotonic()
            outcome: Any
            try:
                outcome = lookup(request, timeout=0.5)
            except grpc.RpcError as error:
                outcome = error.code()
            # DEADLINE_EXCEEDED, or answered just in time: a plain miss
            assert outcome == grpc.StatusCode.DEADLINE_EXCEEDED or (
                not outcome.hit and not outcome.HasField("lease")
            )
            assert time.monotonic() - start < 3
            time.sleep(0.2)
            request.wait_ms = 300
            reply = lookup(request, timeout=5)
            assert not reply.hit
            assert not reply.HasField("lease")
    finally:
        limited.stop()


def test_the_waiter_limit_is_refused_with_resource_exhausted(
    pool: ThreadPoolExecutor,
) -> None:
    limited = start_server("--max-lease-waiters-per-pair", "1")
    try:
        with CacheClient(limited.address) as client:
            lease = granted(client.lookup("p", "l", lease_ms=30_000))
            waiter = pool.submit(
                lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
            )
            time.sleep(WAIT_START)
            with pytest.raises(
                CacheError, match="--max-lease-waiters-per-pair"
            ) as raised:
                client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
            assert raised.value.code == "RESOURCE_EXHAUSTED"
            # Another pair is not limited by this one's waiters.
            granted(client.lookup("q", "l", lease_ms=30_000))
            client.update("p", "l", PARIS, lease_token=lease.token)
            assert waiter.result(timeout=5) == LeasedLookup(PARIS, None)
    finally:
        limited.stop()


def test_the_server_wide_waiter_limit_names_its_flag(pool: ThreadPoolExecutor) -> None:
    limited = start_server("--max-lease-waiters", "1")
    try:
        with CacheClient(limited.address) as client:
            for prompt in ("p", "q"):
                granted(client.lookup(prompt, "l", lease_ms=30_000))
            waiter = pool.submit(
                lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=20_000)
            )
            time.sleep(WAIT_START)
            with pytest.raises(CacheError, match=r"--max-lease-waiters\b") as raised:
                client.lookup("q", "l", lease_ms=30_000, wait_ms=20_000)
            assert raised.value.code == "RESOURCE_EXHAUSTED"
            client.clear()
            granted(waiter.result(timeout=5))
    finally:
        limited.stop()


def test_a_shutdown_answers_the_waiters_unavailable(pool: ThreadPoolExecutor) -> None:
    own = start_server()
    try:
        with CacheClient(own.address) as client:
            granted(client.lookup("p", "l", lease_ms=30_000))
            waiter = pool.submit(
                timed(lambda: client.lookup("p", "l", lease_ms=30_000, wait_ms=30_000))
            )
            time.sleep(WAIT_START)
            stopped_at = time.monotonic()
            own.process.send_signal(signal.SIGTERM)
            with pytest.raises(CacheError) as raised:
                waiter.result(timeout=10)
            assert raised.value.code == "UNAVAILABLE"
            assert time.monotonic() - stopped_at < 5
            own.process.wait(10)
    finally:
        own.stop()


def test_a_lease_needs_the_right_to_write(auth_server: Server, namespace: str) -> None:
    with CacheClient(
        auth_server.address, token=READER_TOKEN, namespace=namespace
    ) as reader:
        assert reader.lookup("p", "l") is None
        with pytest.raises(CacheError) as raised:
            reader.lookup("p", "l", lease_ms=5_000)
        assert raised.value.code == "PERMISSION_DENIED"
    with CacheClient(auth_server.address, token=TOKEN, namespace=namespace) as writer:
        granted(writer.lookup("p", "l", lease_ms=5_000))


def test_the_stats_count_the_leases(
    client: CacheClient, namespace: str, pool: ThreadPoolExecutor
) -> None:
    before = client.stats().total.leases
    # granted 1, waits_served 1, filled 1
    lease = granted(client.lookup("a", "l", lease_ms=30_000))
    waiter = pool.submit(
        lambda: client.lookup("a", "l", lease_ms=30_000, wait_ms=20_000)
    )
    time.sleep(WAIT_START)
    client.update("a", "l", PARIS, lease_token=lease.token)
    assert waiter.result(timeout=5) == LeasedLookup(PARIS, None)
    # granted 2, released 1, waits_timed_out 1
    lease = granted(client.lookup("b", "l", lease_ms=30_000))
    assert client.lookup("b", "l", lease_ms=30_000, wait_ms=300).lease is None
    assert client.release_lease("b", "l", lease.token) is True
    # granted 3, expired 1, stale_fills_refused 1
    stale = granted(client.lookup("c", "l", lease_ms=200))
    time.sleep(0.5)
    client.update("c", "l", LYON)
    client.update("c", "l", PARIS, lease_token=stale.token)
    assert client.lookup("c", "l") == LYON
    stats = lease_stats(client, namespace)
    assert stats == LeaseStats(
        granted=3,
        filled=1,
        waits_served=1,
        waits_timed_out=1,
        expired=1,
        released=1,
        stale_fills_refused=1,
    )
    assert client.stats().namespaces[namespace].updates_not_stored == 1
    total = client.stats().total.leases
    assert total.granted >= before.granted + 3


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"lease_ms": 0}, ValueError, r"^lease_ms must be from 1 to 3,600,000"),
        ({"lease_ms": -5}, ValueError, r"^lease_ms must be from 1"),
        ({"lease_ms": 3_600_001}, ValueError, r"^lease_ms must be from 1 to 3,600,000"),
        (
            {"lease_ms": 1.5},
            TypeError,
            r"^lease_ms must be an int of milliseconds, got a float",
        ),
        (
            {"lease_ms": "5"},
            TypeError,
            r"^lease_ms must be an int of milliseconds, got a str",
        ),
        (
            {"lease_ms": True},
            TypeError,
            r"^lease_ms must be an int of milliseconds, got a bool",
        ),
        (
            {"lease_ms": 5, "wait_ms": -1},
            ValueError,
            r"^wait_ms must be from 0 to 3,600,000",
        ),
        ({"lease_ms": 5, "wait_ms": 3_600_001}, ValueError, r"^wait_ms must be from 0"),
        ({"lease_ms": 5, "wait_ms": 0.5}, TypeError, r"^wait_ms must be an int"),
        ({"wait_ms": 100}, ValueError, r"^wait_ms needs lease_ms"),
        ({"wait_ms": "x"}, TypeError, r"^wait_ms must be an int"),
        (
            {"lease_ms": 5, "bypass": True},
            ValueError,
            r"^give bypass or lease_ms, not both",
        ),
    ],
)
async def test_bad_lease_options_are_refused_before_sending(
    dead_address: str, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with CacheClient(dead_address) as client:
        with pytest.raises(error, match=match):
            client.lookup("p", "l", **options)
        with pytest.raises(error, match=match):
            await client.alookup("p", "l", **options)
        if "lease_ms" in options and "bypass" not in options:
            with pytest.raises(error, match=match):
                client.get_or_compute("p", "l", lambda: PARIS, **options)


@pytest.mark.parametrize(
    ("token", "error", "match"),
    [
        ("", ValueError, r"must be a lease's token, not an empty str"),
        (5, TypeError, r"must be a str \(Lease\.token\), got an int"),
    ],
)
async def test_bad_tokens_are_refused_before_sending(
    dead_address: str, token: Any, error: type[Exception], match: str
) -> None:
    async with CacheClient(dead_address) as client:
        with pytest.raises(error, match=rf"^lease_token {match}"):
            client.update("p", "l", PARIS, lease_token=token)
        with pytest.raises(error, match=rf"^lease_token {match}"):
            await client.aupdate_if_absent("p", "l", PARIS, lease_token=token)
        with pytest.raises(error, match=rf"^token {match}"):
            client.release_lease("p", "l", token)
        with pytest.raises(error, match=rf"^token {match}"):
            await client.arelease_lease("p", "l", token)


def test_compute_must_be_callable(dead_address: str) -> None:
    with (
        CacheClient(dead_address) as client,
        pytest.raises(TypeError, match=r"^compute must be a function of no arguments"),
    ):
        client.get_or_compute("p", "l", PARIS)  # type: ignore[arg-type]


# -- get_or_compute -------------------------------------------------------------


class Model:
    """A slow model that counts its calls, and raises for the first `failures`."""

    def __init__(self, seconds: float = 0.3, failures: int = 0) -> None:
        self.seconds = seconds
        self.failures = failures
        self.calls = 0
        self._lock = threading.Lock()

    def _next(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls

    def _answer(self, call: int) -> list[Generation]:
        if call <= self.failures:
            raise RuntimeError(f"model call {call} failed")
        return [{"text": f"answer {call}", "generation_info": {"call": call}}]

    def __call__(self) -> list[Generation]:
        call = self._next()
        time.sleep(self.seconds)
        return self._answer(call)

    async def acompute(self) -> list[Generation]:
        call = self._next()
        await asyncio.sleep(self.seconds)
        return self._answer(call)


def test_get_or_compute_computes_once_then_hits(client: CacheClient) -> None:
    model = Model(seconds=0)
    first = client.get_or_compute("p", "l", model)
    assert first == [{"text": "answer 1", "generation_info": {"call": 1}}]
    assert client.get_or_compute("p", "l", model) == first
    assert model.calls == 1
    assert client.lookup("p", "l") == first


def test_get_or_compute_gives_back_what_a_hit_would(client: CacheClient) -> None:
    # A float that is integral comes back as an int, from the cache or not.
    computed = client.get_or_compute(
        "p", "l", lambda: [{"text": "t", "generation_info": {"n": 2.0}}]
    )
    assert computed == client.lookup("p", "l")
    assert type(computed[0].get("generation_info", {})["n"]) is int


def test_get_or_compute_makes_one_call_of_a_burst(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    model = Model()
    answers = list(
        pool.map(lambda _: client.get_or_compute("p", "l", model), range(20))
    )
    assert model.calls == 1
    assert all(answer == answers[0] for answer in answers)
    stats = lease_stats(client, client.namespace)
    assert (stats.granted, stats.filled) == (1, 1)
    assert stats.waits_served > 0


def test_get_or_compute_releases_when_compute_raises(
    client: CacheClient, pool: ThreadPoolExecutor
) -> None:
    # The lease is long: the next caller computes at once only if the
    # failed one released it.
    model = Model(failures=1)

    def call() -> list[Generation]:
        return client.get_or_compute("p", "l", model, lease_ms=60_000)

    start = time.monotonic()
    first = pool.submit(call)
    time.sleep(WAIT_START / 5)
    others = [pool.submit(call) for _ in range(9)]
    with pytest.raises(RuntimeError, match="model call 1 failed"):
        first.result(timeout=10)
    answers = [other.result(timeout=10) for other in others]
    assert time.monotonic() - start < 5
    assert model.calls == 2
    assert all(
        answer == [{"text": "answer 2", "generation_info": {"call": 2}}]
        for answer in answers
    )
    stats = lease_stats(client, client.namespace)
    assert (stats.released, stats.granted, stats.filled) == (1, 2, 1)


def test_get_or_compute_computes_alone_when_the_wait_runs_out(
    client: CacheClient,
) -> None:
    holder = granted(client.lookup("p", "l", lease_ms=30_000))
    model = Model(seconds=0)
    answer = client.get_or_compute("p", "l", model, wait_ms=300)
    assert model.calls == 1
    assert answer == [{"text": "answer 1", "generation_info": {"call": 1}}]
    # Its update carried no token: stored, which ended the holder's lease.
    assert client.lookup("p", "l") == answer
    assert client.release_lease("p", "l", holder.token) is False


@pytest.mark.parametrize("batching", [True, False])
async def test_aget_or_compute_makes_one_call_of_a_burst(
    server: Server, namespace: str, *, batching: bool
) -> None:
    model = Model()
    async with CacheClient(
        server.address, namespace=namespace, batching=batching
    ) as client:
        answers = await asyncio.gather(
            *(client.aget_or_compute("p", "l", model.acompute) for _ in range(30))
        )
        assert model.calls == 1
        assert all(answer == answers[0] for answer in answers)
        stats = (await client.astats()).namespaces[namespace].leases
        assert (stats.granted, stats.filled, stats.waits_served) == (1, 1, 29)


@pytest.mark.parametrize("batching", [True, False])
async def test_aget_or_compute_releases_when_compute_raises(
    server: Server, namespace: str, *, batching: bool
) -> None:
    model = Model(failures=1)
    async with CacheClient(
        server.address, namespace=namespace, batching=batching
    ) as client:
        start = time.monotonic()
        results = await asyncio.gather(
            *(
                client.aget_or_compute("p", "l", model.acompute, lease_ms=60_000)
                for _ in range(10)
            ),
            return_exceptions=True,
        )
        assert time.monotonic() - start < 5
        errors = [result for result in results if isinstance(result, BaseException)]
        assert [str(error) for error in errors] == ["model call 1 failed"]
        assert model.calls == 2
        answers = [
            result for result in results if not isinstance(result, BaseException)
        ]
        assert answers == [[{"text": "answer 2", "generation_info": {"call": 2}}]] * 9


async def test_aget_or_compute_releases_when_cancelled(aclient: CacheClient) -> None:
    model = Model(seconds=30)
    holder = asyncio.create_task(
        aclient.aget_or_compute("p", "l", model.acompute, lease_ms=60_000)
    )
    await asyncio.sleep(WAIT_START)
    assert model.calls == 1
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    found = await aclient.alookup("p", "l", lease_ms=60_000)
    granted(found)


# -- the async stream ---------------------------------------------------------


async def test_the_stream_answers_others_while_a_lookup_waits(
    own_server: Server, namespace: str
) -> None:
    async with CacheClient(own_server.address, namespace=namespace) as client:
        lease = granted(await client.alookup("p", "l", lease_ms=30_000))
        waiting = asyncio.create_task(
            client.alookup("p", "l", lease_ms=30_000, wait_ms=20_000)
        )
        await asyncio.sleep(WAIT_START)
        # Sent after it on the same stream, answered before it.
        await client.aupdate("q", "l", LYON)
        assert await client.alookup("q", "l") == LYON
        other = granted(await client.alookup("r", "l", lease_ms=30_000))
        assert await client.arelease_lease("r", "l", other.token) is True
        assert not waiting.done()
        await client.aupdate("p", "l", PARIS, lease_token=lease.token)
        assert await asyncio.wait_for(waiting, 5) == LeasedLookup(PARIS, None)
    # All of it went on the stream, none as a unary call.
    assert calls(own_server, "Lookup") == {}
    assert calls(own_server, "Update") == {}
    assert calls(own_server, "ReleaseLease") == {}
    assert calls(own_server, "Stream") == {"OK": 1}


async def test_a_waiting_lookup_on_the_stream_outlives_its_timeout(
    aclient: CacheClient,
) -> None:
    granted(await aclient.alookup("p", "l", lease_ms=30_000))
    start = time.monotonic()
    found = await aclient.alookup("p", "l", lease_ms=30_000, wait_ms=1_500, timeout=0.2)
    assert found == LeasedLookup(None, None)
    assert 1.4 < time.monotonic() - start < 4
    # A lookup that does not wait keeps its own short deadline.
    assert await aclient.alookup("q", "l", timeout=0.2) is None


@pytest.mark.parametrize("how", ["task.cancel", "wait_for"])
async def test_a_waiting_lookup_given_up_is_cancelled_on_the_server(
    own_server: Server, namespace: str, how: str
) -> None:
    async with (
        CacheClient(own_server.address, namespace=namespace) as holder,
        CacheClient(own_server.address, namespace=namespace) as client,
    ):
        lease = granted(await holder.alookup("p", "l", lease_ms=60_000))
        lookup = client.alookup("p", "l", lease_ms=60_000, wait_ms=30_000)
        if how == "task.cancel":
            waiter = asyncio.create_task(lookup)
            await waiters_become(own_server, 1, within=5)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        else:
            waiter = asyncio.create_task(asyncio.wait_for(lookup, 3))
            await waiters_become(own_server, 1, within=2.5)
            with pytest.raises(TimeoutError):
                await waiter
        # The stream tells the server, which stops the wait at once rather
        # than at the end of its 30 s.
        assert await waiters_become(own_server, 0, within=2) < 2
        # Nobody waits for the pair now: the holder's release grants no one,
        # and the next caller gets a lease at once.
        assert await holder.arelease_lease("p", "l", lease.token) is True
        granted(await client.alookup("p", "l", lease_ms=60_000, wait_ms=30_000))
        stats = (await holder.astats()).namespaces[namespace].leases
        assert (stats.granted, stats.released, stats.waits_served) == (2, 1, 0)
    # All of it went on the stream, none as a unary call.
    assert calls(own_server, "Lookup") == {}
    assert calls(own_server, "Stream") == {"OK": 2}


async def test_a_cancelled_waiter_frees_its_place_under_the_waiter_limit() -> None:
    limited = start_server("--max-lease-waiters-per-pair", "1")
    try:
        async with (
            CacheClient(limited.address) as holder,
            CacheClient(limited.address) as client,
        ):
            lease = granted(await holder.alookup("p", "l", lease_ms=60_000))
            first = asyncio.create_task(
                client.alookup("p", "l", lease_ms=60_000, wait_ms=30_000)
            )
            await asyncio.sleep(WAIT_START)
            with pytest.raises(CacheError, match="--max-lease-waiters-per-pair"):
                await holder.alookup("p", "l", lease_ms=60_000, wait_ms=30_000)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            # Sent on the same stream right after the cancel: it takes the
            # place the cancelled one left instead of RESOURCE_EXHAUSTED.
            second = asyncio.create_task(
                client.alookup("p", "l", lease_ms=60_000, wait_ms=30_000)
            )
            await asyncio.sleep(WAIT_START)
            assert not second.done(), second.exception()
            await holder.aupdate("p", "l", PARIS, lease_token=lease.token)
            assert await asyncio.wait_for(second, 5) == LeasedLookup(PARIS, None)
    finally:
        limited.stop()


async def test_the_stream_releases_a_lease_granted_before_its_cancel_arrived(
    server: Server, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cancel is held back, as if it reached the server just after the
    # holder's release had handed the given-up lookup the next lease.
    monkeypatch.setattr(OperationStream, "_cancel", lambda _self, _operation: None)
    async with (
        CacheClient(server.address, namespace=namespace) as holder,
        CacheClient(server.address, namespace=namespace) as quitter,
        CacheClient(server.address, namespace=namespace) as patient,
    ):
        first = granted(await holder.alookup("p", "l", lease_ms=60_000))
        # The server does not know that this one was given up: it is the
        # first waiter, and is granted the next lease.
        gives_up = asyncio.create_task(
            quitter.alookup("p", "l", lease_ms=60_000, wait_ms=30_000)
        )
        await asyncio.sleep(WAIT_START)
        waits = asyncio.create_task(
            patient.alookup("p", "l", lease_ms=60_000, wait_ms=30_000)
        )
        await asyncio.sleep(WAIT_START)
        gives_up.cancel()
        await asyncio.sleep(0.1)
        assert await holder.arelease_lease("p", "l", first.token) is True
        # Its stream releases what it was granted, so the next waiter is
        # not left waiting for the 60 s lease to expire.
        granted(await asyncio.wait_for(waits, 5))
        stats = (await holder.astats()).namespaces[namespace].leases
        assert (stats.granted, stats.released) == (3, 2)


async def test_a_shutdown_answers_the_streams_waiters_unavailable() -> None:
    own = start_server()
    try:
        async with CacheClient(own.address) as client:
            granted(await client.alookup("p", "l", lease_ms=30_000))
            waiting = asyncio.create_task(
                client.alookup("p", "l", lease_ms=30_000, wait_ms=30_000)
            )
            await asyncio.sleep(WAIT_START)
            own.process.send_signal(signal.SIGTERM)
            with pytest.raises(CacheError) as raised:
                await asyncio.wait_for(waiting, 10)
            assert raised.value.code == "UNAVAILABLE"
    finally:
        own.stop()
