"""A client of several replicas: its addresses, spreading, failover, no retry where unsafe.

Replicas of one cache are servers on one Redis (conftest's redis_url). A
replica "whose Redis is gone" is connected and answers UNAVAILABLE at once:
a call sent there first, on a fresh client (whose first call goes to the
first address), shows whether the client retries it elsewhere.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest
from conftest import free_port, start_redis, start_server, start_servers
from dns_server import DnsServer

from llmcache import CacheClient, CacheError, Generation
from llmcache.langchain import LangChainCache

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator

    from conftest import Server

PARIS: list[Generation] = [{"text": "Paris"}]
# The keys the load tests look up, each with a value of its own.
KEYS = {f"prompt {i}": [{"text": f"answer {i}"}] for i in range(4)}
LOAD_SECONDS = 1.5
KILL_AFTER_SECONDS = 0.5


# -- addresses ----------------------------------------------------------------


def test_a_str_lists_replicas_separated_by_commas() -> None:
    client = CacheClient("127.0.0.1:1,[::1]:2,cache.internal:50051")
    assert client.addresses == ("127.0.0.1:1", "[::1]:2", "cache.internal:50051")
    assert client.address == "127.0.0.1:1,[::1]:2,cache.internal:50051"


def test_a_sequence_lists_one_replica_each() -> None:
    client = CacheClient(["127.0.0.1:1", "127.0.0.1:2"])
    assert client.addresses == ("127.0.0.1:1", "127.0.0.1:2")
    assert client.address == "127.0.0.1:1,127.0.0.1:2"
    assert CacheClient(("unix:/tmp/llmcache.sock",)).addresses == (
        "unix:/tmp/llmcache.sock",
    )


def test_a_dns_target_is_one_replica_address() -> None:
    targets = ("dns:///cache.internal:50051", "dns://10.0.0.53:53/cache:1", "dns:c:2")
    assert CacheClient(",".join(targets)).addresses == targets


def test_one_address_is_one_replica() -> None:
    client = CacheClient("127.0.0.1:1")
    assert client.addresses == ("127.0.0.1:1",)
    assert client.address == "127.0.0.1:1"


EXPECTED_TYPE = (
    "address must be a non-empty str (host:port, or several separated by commas)"
    " or a sequence of host:port, got "
)
EXPECTED_HOST_PORT = (
    "address items must be host:port (such as '10.0.0.1:50051', '[::1]:50051'"
    " or 'dns:///cache.internal:50051'), got "
)


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        ("", TypeError, f"{EXPECTED_TYPE}an empty str"),
        ([], TypeError, f"{EXPECTED_TYPE}an empty list"),
        (None, TypeError, f"{EXPECTED_TYPE}None"),
        (b"127.0.0.1:1", TypeError, f"{EXPECTED_TYPE}a bytes"),
        (
            ["127.0.0.1:1", 2],
            TypeError,
            "address items must be str (host:port), got an int (2)",
        ),
        (
            "127.0.0.1:1,,127.0.0.1:2",
            ValueError,
            "address has an empty item: '127.0.0.1:1,,127.0.0.1:2'",
        ),
        ("127.0.0.1:1,", ValueError, "address has an empty item: '127.0.0.1:1,'"),
        (
            ["127.0.0.1:1", ""],
            ValueError,
            "address has an empty item: ['127.0.0.1:1', '']",
        ),
        ("127.0.0.1:1,127.0.0.1:1", ValueError, "address names '127.0.0.1:1' twice"),
        ("localhost", ValueError, f"{EXPECTED_HOST_PORT}'localhost'"),
        ("localhost:0", ValueError, f"{EXPECTED_HOST_PORT}'localhost:0'"),
        ("localhost:65536", ValueError, f"{EXPECTED_HOST_PORT}'localhost:65536'"),
        ("::1:50051", ValueError, f"{EXPECTED_HOST_PORT}'::1:50051'"),
        ("127.0.0.1:1, 127.0.0.1:2", ValueError, f"{EXPECTED_HOST_PORT}' 127.0.0.1:2'"),
        (
            ["127.0.0.1:1,127.0.0.1:2"],
            ValueError,
            f"{EXPECTED_HOST_PORT}'127.0.0.1:1,127.0.0.1:2'",
        ),
        ("dns:///cache", ValueError, f"{EXPECTED_HOST_PORT}'dns:///cache'"),
        ("dns:///cache:0", ValueError, f"{EXPECTED_HOST_PORT}'dns:///cache:0'"),
        (
            "dns://10.0.0.53/cache",
            ValueError,
            f"{EXPECTED_HOST_PORT}'dns://10.0.0.53/cache'",
        ),
        ("dns:", ValueError, f"{EXPECTED_HOST_PORT}'dns:'"),
    ],
)
def test_bad_addresses_are_refused_naming_the_parameter(
    address: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        CacheClient(address)


def test_langchain_cache_takes_the_addresses_the_client_takes() -> None:
    cache = LangChainCache(address=["127.0.0.1:1", "127.0.0.1:2"])
    assert cache.client.addresses == ("127.0.0.1:1", "127.0.0.1:2")
    cache.close()


# -- spreading ------------------------------------------------------------------


def lookups_seen(server: Server, namespace: str) -> int:
    with CacheClient(server.address) as single:
        found = single.stats().namespaces.get(namespace)
    return 0 if found is None else found.misses


def test_calls_take_turns_over_the_replicas(
    server: Server, limited_server: Server, namespace: str
) -> None:
    # Two servers of their own memory: each counts the lookups it answered.
    replicas = [server.address, limited_server.address]
    with CacheClient(replicas, namespace=namespace) as client:
        for _ in range(20):
            assert client.lookup("p", "l") is None
    assert lookups_seen(server, namespace) == 10
    assert lookups_seen(limited_server, namespace) == 10


async def test_async_calls_take_turns_over_the_replicas(
    server: Server, limited_server: Server, namespace: str
) -> None:
    replicas = [server.address, limited_server.address]
    async with CacheClient(replicas, namespace=namespace) as client:
        for _ in range(2):  # on each replica's stream, then a unary batch
            await asyncio.gather(*(client.alookup("p", "l") for _ in range(10)))
            await client.alookup_many([("p", "l")] * 5)
    assert lookups_seen(server, namespace) == 15
    assert lookups_seen(limited_server, namespace) == 15


DNS_NAME = "replicas.llmcache.test"


@pytest.fixture
def servers_of_one_name() -> Iterator[tuple[DnsServer, list[Server]]]:
    """A DNS server whose one name has two records, and a server at each, one port."""
    with DnsServer({DNS_NAME: ["127.0.0.1", "127.0.0.2"]}) as dns:
        first = start_server("--host", "127.0.0.1")
        try:
            second = start_server("--host", "127.0.0.2", port=first.port)
        except BaseException:
            first.stop()
            raise
        yield dns, [first, second]
        first.stop()
        second.stop()


def test_calls_take_turns_over_the_records_of_a_dns_name(
    servers_of_one_name: tuple[DnsServer, list[Server]], namespace: str
) -> None:
    dns, (first, second) = servers_of_one_name
    address = f"dns://127.0.0.1:{dns.port}/{DNS_NAME}:{first.port}"
    with CacheClient(address, namespace=namespace) as client:
        for _ in range(20):
            assert client.lookup("p", "l") is None
    assert dns.answered > 0, "the name was not resolved by the test's DNS server"
    seen = [lookups_seen(first, namespace), lookups_seen(second, namespace)]
    assert sum(seen) == 20
    assert min(seen) >= 5, f"one record's server served {min(seen)} of 20"


# -- failover under load --------------------------------------------------------


@pytest.fixture
def replicas(redis_url: str) -> Iterator[list[Server]]:
    """Two replicas of one cache (one Redis), with metrics; the test may kill one."""
    started = start_servers(2, "--store", redis_url, "--metrics-port", "0")
    yield started
    for replica in started:
        replica.stop()


def lookup_calls(server: Server) -> int:
    """The Lookup calls the server answered, from its Prometheus metrics."""
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = r'^llmcache_calls_total\{method="Lookup",code="OK"\} (\d+)$'
    return sum(int(count) for count in re.findall(pattern, text, re.MULTILINE))


def kill_midway(replica: Server) -> int:
    """Waits KILL_AFTER_SECONDS, then SIGKILLs the replica; its Lookup calls by then."""
    time.sleep(KILL_AFTER_SECONDS)
    served = lookup_calls(replica)
    replica.process.kill()
    replica.process.wait()
    return served


def test_lookups_survive_a_replica_killed_under_load(
    replicas: list[Server], namespace: str
) -> None:
    addresses = [replica.address for replica in replicas]
    with CacheClient(addresses, namespace=namespace) as client:
        client.update_many([(key, "l", value) for key, value in KEYS.items()])
        wrong: list[object] = []
        ends_at = time.monotonic() + LOAD_SECONDS

        def look_up() -> None:
            while time.monotonic() < ends_at:
                for key, value in KEYS.items():
                    try:
                        found = client.lookup(key, "l")
                    except CacheError as error:
                        wrong.append(error)
                        continue
                    if found != value:
                        wrong.append(found)

        threads = [threading.Thread(target=look_up) for _ in range(8)]
        for thread in threads:
            thread.start()
        served = kill_midway(replicas[0])
        for thread in threads:
            thread.join()
    assert served > 0, "the killed replica served no lookup: nothing was tested"
    assert wrong == []


async def test_async_lookups_survive_a_replica_killed_under_load(
    replicas: list[Server], namespace: str
) -> None:
    addresses = [replica.address for replica in replicas]
    wrong: list[object] = []
    ends_at = time.monotonic() + LOAD_SECONDS

    async def look_up(client: CacheClient) -> None:
        kind = "batching" if client.batching else "unary"
        while time.monotonic() < ends_at:
            for key, value in KEYS.items():
                try:
                    found = await client.alookup(key, "l")
                except CacheError as error:
                    wrong.append((kind, error))
                    continue
                if found != value:
                    wrong.append((kind, found))

    # Batched on each replica's stream, and unary: each its own way to fail.
    async with (
        CacheClient(addresses, namespace=namespace) as batching,
        CacheClient(addresses, namespace=namespace, batching=False) as unary,
    ):
        await batching.aupdate_many([(key, "l", value) for key, value in KEYS.items()])
        kill = asyncio.create_task(asyncio.to_thread(kill_midway, replicas[0]))
        await asyncio.gather(
            *(look_up(client) for client in (batching, unary) for _ in range(16))
        )
        served = await kill
    assert served > 0, "the killed replica served no lookup: nothing was tested"
    assert wrong == []


# -- what is retried, and what never is -----------------------------------------


@pytest.fixture(scope="module")
def unavailable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A replica whose Redis is gone: connected, it answers UNAVAILABLE at once."""
    redis = start_redis(tmp_path_factory.mktemp("gone-redis"))
    started = start_server("--store", redis.url)
    redis.kill()
    yield started
    started.stop()


LEASE_TOKEN = "a-lease-token"

RETRIED: dict[str, Callable[[CacheClient], object]] = {
    "lookup": lambda client: client.lookup("p", "l"),
    "leased lookup": lambda client: client.lookup("p", "l", lease_ms=1_000),
    "lookup_many": lambda client: client.lookup_many([("p", "l")]),
    "update": lambda client: client.update("p", "l", PARIS),
    "update_many": lambda client: client.update_many([("p", "l", PARIS)]),
    "stats": lambda client: client.stats(),
    "clear": lambda client: client.clear(),
}
NOT_RETRIED: dict[str, Callable[[CacheClient], object]] = {
    "update_if_absent": lambda client: client.update_if_absent("p", "l", PARIS),
    "update filling a lease": lambda client: client.update(
        "p", "l", PARIS, lease_token=LEASE_TOKEN
    ),
    "release_lease": lambda client: client.release_lease("p", "l", LEASE_TOKEN),
}
ARETRIED: dict[str, Callable[[CacheClient], Coroutine[Any, Any, object]]] = {
    "alookup": lambda client: client.alookup("p", "l"),
    "leased alookup": lambda client: client.alookup("p", "l", lease_ms=1_000),
    "alookup_many": lambda client: client.alookup_many([("p", "l")]),
    "aupdate": lambda client: client.aupdate("p", "l", PARIS),
    "aupdate_many": lambda client: client.aupdate_many([("p", "l", PARIS)]),
    "astats": lambda client: client.astats(),
    "aclear": lambda client: client.aclear(),
}
ANOT_RETRIED: dict[str, Callable[[CacheClient], Coroutine[Any, Any, object]]] = {
    "aupdate_if_absent": lambda client: client.aupdate_if_absent("p", "l", PARIS),
    "aupdate filling a lease": lambda client: client.aupdate(
        "p", "l", PARIS, lease_token=LEASE_TOKEN
    ),
    "arelease_lease": lambda client: client.arelease_lease("p", "l", LEASE_TOKEN),
}


@pytest.mark.parametrize("operation", RETRIED.values(), ids=RETRIED.keys())
def test_a_call_safe_to_repeat_is_retried_on_another_replica(
    unavailable_server: Server,
    server: Server,
    namespace: str,
    operation: Callable[[CacheClient], object],
) -> None:
    addresses = [unavailable_server.address, server.address]
    with CacheClient(addresses, namespace=namespace) as client:
        operation(client)


@pytest.mark.parametrize("operation", NOT_RETRIED.values(), ids=NOT_RETRIED.keys())
def test_a_call_unsafe_to_repeat_fails_with_unavailable(
    unavailable_server: Server,
    server: Server,
    namespace: str,
    operation: Callable[[CacheClient], object],
) -> None:
    addresses = [unavailable_server.address, server.address]
    with CacheClient(addresses, namespace=namespace) as client:
        with pytest.raises(CacheError) as raised:
            operation(client)
        assert raised.value.code == "UNAVAILABLE"
        assert "Redis" in raised.value.details  # the first replica's answer
    with CacheClient(server.address, namespace=namespace) as live:
        assert live.lookup("p", "l") is None  # the other replica never saw it


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "unary"])
@pytest.mark.parametrize("operation", ARETRIED.values(), ids=ARETRIED.keys())
async def test_an_async_call_safe_to_repeat_is_retried_on_another_replica(
    unavailable_server: Server,
    server: Server,
    namespace: str,
    operation: Callable[[CacheClient], Coroutine[Any, Any, object]],
    *,
    batching: bool,
) -> None:
    addresses = [unavailable_server.address, server.address]
    async with CacheClient(addresses, namespace=namespace, batching=batching) as client:
        await operation(client)


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "unary"])
@pytest.mark.parametrize("operation", ANOT_RETRIED.values(), ids=ANOT_RETRIED.keys())
async def test_an_async_call_unsafe_to_repeat_fails_with_unavailable(
    unavailable_server: Server,
    server: Server,
    namespace: str,
    operation: Callable[[CacheClient], Coroutine[Any, Any, object]],
    *,
    batching: bool,
) -> None:
    addresses = [unavailable_server.address, server.address]
    async with CacheClient(addresses, namespace=namespace, batching=batching) as client:
        with pytest.raises(CacheError) as raised:
            await operation(client)
        assert raised.value.code == "UNAVAILABLE"
        assert "Redis" in raised.value.details
    async with CacheClient(server.address, namespace=namespace) as live:
        assert await live.alookup("p", "l") is None


async def test_update_if_absent_to_a_replica_not_there_is_not_retried(
    dead_address: str, server: Server, namespace: str
) -> None:
    # A fresh grpc.aio channel is idle, not failing, so the first call of a
    # fresh client goes to the first address.
    addresses = [dead_address, server.address]
    async with CacheClient(addresses, namespace=namespace) as client:
        with pytest.raises(CacheError) as raised:
            await client.aupdate_if_absent("p", "l", PARIS)
        assert raised.value.code == "UNAVAILABLE"
    async with CacheClient(addresses, namespace=namespace) as client:
        await client.aupdate("p", "l", PARIS)
    async with CacheClient(server.address, namespace=namespace) as live:
        assert await live.alookup("p", "l") == PARIS


def test_an_update_reaches_the_replica_that_is_there(
    dead_address: str, server: Server, namespace: str
) -> None:
    with CacheClient([dead_address, server.address], namespace=namespace) as client:
        client.update("p", "l", PARIS)
        assert client.lookup("p", "l") == PARIS


def test_a_call_fails_with_unavailable_once_every_replica_failed(
    dead_address: str,
) -> None:
    with CacheClient([dead_address, f"127.0.0.1:{free_port()}"]) as client:
        started = time.monotonic()
        with pytest.raises(CacheError) as raised:
            client.lookup("p", "l")
    assert raised.value.code == "UNAVAILABLE"
    assert time.monotonic() - started < client.timeout


def test_one_replica_not_there_fails_as_a_single_server_does(
    dead_address: str,
) -> None:
    with CacheClient(dead_address) as client, pytest.raises(CacheError) as raised:
        client.lookup("p", "l")
    assert raised.value.code == "UNAVAILABLE"
    assert str(raised.value).startswith("Lookup failed: UNAVAILABLE: ")


# -- a client never closed ------------------------------------------------------

# A script of its own: what is at stake is the interpreter's exit.
UNCLOSED_CLIENT_SCRIPT = """
import sys
from llmcache import CacheClient

client = CacheClient(sys.argv[1], namespace=sys.argv[2])
print(client.lookup("p", "l"))
"""
EXIT_SECONDS = 10.0


def test_a_script_that_never_closes_its_client_of_replicas_exits(
    server: Server, limited_server: Server, namespace: str
) -> None:
    addresses = f"{server.address},{limited_server.address}"
    command = [sys.executable, "-c", UNCLOSED_CLIENT_SCRIPT, addresses, namespace]
    try:
        finished = subprocess.run(
            command, capture_output=True, text=True, timeout=EXIT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as timed_out:
        printed = timed_out.stdout  # bytes, text=True notwithstanding
        pytest.fail(f"the script had not exited after {EXIT_SECONDS} s: {printed!r}")
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == "None\n"
