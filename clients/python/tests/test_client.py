"""CacheClient's blocking methods against a real server.

The cache's behaviour is checked on every store (the `client` here is of
`store_server`); what only the memory store has (a byte budget, its
namespaces' counts of entries and bytes) on `server` or `limited_server`.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from conftest import start_server

from llmcache import CacheClient, CacheError, CacheStats, Generation, LeasedLookup

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import Server

PARIS: list[Generation] = [{"text": "Paris"}]


@pytest.fixture
def client(store_server: Server, namespace: str) -> Iterator[CacheClient]:
    """conftest's `client`, of a server on each store: memory, Redis, Cluster."""
    with CacheClient(store_server.address, namespace=namespace) as made:
        yield made


@pytest.fixture
def memory_client(server: Server, namespace: str) -> Iterator[CacheClient]:
    """A client of the memory store's `server` only, in the test's namespace.

    For the statistics of entries and bytes: on Redis a namespace counts
    none, and the total's are Redis's (DBSIZE, used_memory), which count the
    keys of every test process that shares it.
    """
    with CacheClient(server.address, namespace=namespace) as made:
        yield made


def test_lookup_returns_what_update_stored(client: CacheClient) -> None:
    client.update("capital of France?", "model='m'", PARIS)
    assert client.lookup("capital of France?", "model='m'") == PARIS


def test_a_miss_is_none(client: CacheClient) -> None:
    assert client.lookup("never stored", "model='m'") is None


def test_a_stored_empty_list_comes_back_as_an_empty_list(client: CacheClient) -> None:
    client.update("empty", "model='m'", [])
    assert client.lookup("empty", "model='m'") == []


def test_update_replaces_what_was_stored(client: CacheClient) -> None:
    client.update("p", "l", [{"text": "old"}])
    client.update("p", "l", [{"text": "new"}, {"text": "newer"}])
    assert client.lookup("p", "l") == [{"text": "new"}, {"text": "newer"}]


def test_keys_are_pairs_that_never_collide(client: CacheClient) -> None:
    client.update("a_b", "c", [{"text": "first"}])
    client.update("a", "b_c", [{"text": "second"}])
    assert client.lookup("a_b", "c") == [{"text": "first"}]
    assert client.lookup("a", "b_c") == [{"text": "second"}]


def test_empty_strings_are_a_valid_key(client: CacheClient) -> None:
    client.update("", "", PARIS)
    assert client.lookup("", "") == PARIS


def test_clear_empties_the_clients_namespace(client: CacheClient) -> None:
    client.update("p", "l", PARIS)
    client.clear()
    assert client.lookup("p", "l") is None


def test_clear_leaves_other_namespaces_alone(
    client: CacheClient, namespace: str
) -> None:
    client.update("p", "l", PARIS, namespace=f"{namespace}-other")
    client.clear()
    assert client.lookup("p", "l", namespace=f"{namespace}-other") == PARIS


def test_clear_all_namespaces_empties_every_namespace(
    limited_server: Server, namespace: str
) -> None:
    # On a server of its own, so that other tests' entries are not cleared:
    # in memory only, since on Redis it would clear other processes' too.
    with CacheClient(limited_server.address, namespace=namespace) as client:
        client.update("p", "l", PARIS, never_expires=True)
        client.update("p", "l", PARIS, namespace=f"{namespace}-b", never_expires=True)
        client.clear(all_namespaces=True)
        assert client.lookup("p", "l") is None
        assert client.lookup("p", "l", namespace=f"{namespace}-b") is None


def test_clear_refuses_a_namespace_with_all_namespaces(
    limited_server: Server, namespace: str
) -> None:
    # On a server of its own, as above: accepted, it would clear every namespace.
    with CacheClient(limited_server.address, namespace=namespace) as client:
        other = f"{namespace}-other"
        client.update("p", "l", PARIS, namespace=other, never_expires=True)
        with pytest.raises(
            ValueError,
            match=r"^give either namespace or all_namespaces=True, not both$",
        ):
            client.clear(namespace=namespace, all_namespaces=True)
        assert client.lookup("p", "l", namespace=other) == PARIS


def test_namespaces_keep_keys_apart(client: CacheClient, namespace: str) -> None:
    client.update("p", "l", [{"text": "a"}], namespace=f"{namespace}-a")
    client.update("p", "l", [{"text": "b"}], namespace=f"{namespace}-b")
    assert client.lookup("p", "l", namespace=f"{namespace}-a") == [{"text": "a"}]
    assert client.lookup("p", "l", namespace=f"{namespace}-b") == [{"text": "b"}]
    assert client.lookup("p", "l") is None


def test_the_clients_namespace_is_the_default_of_its_calls(
    store_server: Server, namespace: str
) -> None:
    # A prompt of the test's own: the default namespace is everyone's.
    prompt = f"p-{namespace}"
    with CacheClient(store_server.address, namespace=namespace) as scoped:
        scoped.update(prompt, "l", PARIS)
    with CacheClient(store_server.address) as unscoped:
        assert unscoped.lookup(prompt, "l") is None
        assert unscoped.lookup(prompt, "l", namespace=namespace) == PARIS


def test_an_entry_expires_after_its_ttl_in_seconds(client: CacheClient) -> None:
    client.update("p", "l", PARIS, ttl=0.2)
    assert client.lookup("p", "l") == PARIS
    time.sleep(0.4)
    assert client.lookup("p", "l") is None


def test_ttl_takes_a_timedelta(client: CacheClient) -> None:
    client.update("p", "l", PARIS, ttl=timedelta(milliseconds=200))
    assert client.lookup("p", "l") == PARIS
    time.sleep(0.4)
    assert client.lookup("p", "l") is None


def test_an_entry_without_ttl_expires_after_the_servers_default(
    default_ttl_server: Server, namespace: str
) -> None:
    with CacheClient(default_ttl_server.address, namespace=namespace) as client:
        client.update("p", "l", PARIS)
        assert client.lookup("p", "l") == PARIS
        time.sleep(0.6)
        assert client.lookup("p", "l") is None


def test_never_expires_outlives_the_servers_default_ttl(
    default_ttl_server: Server, namespace: str
) -> None:
    with CacheClient(default_ttl_server.address, namespace=namespace) as client:
        client.update("p", "l", PARIS, never_expires=True)
        time.sleep(0.6)
        assert client.lookup("p", "l") == PARIS


def test_bypass_answers_a_miss_whatever_is_stored(client: CacheClient) -> None:
    client.update("p", "l", PARIS)
    assert client.lookup("p", "l", bypass=True) is None
    assert client.lookup("p", "l") == PARIS


def test_no_store_stores_nothing(client: CacheClient) -> None:
    client.update("p", "l", PARIS, no_store=True)
    assert client.lookup("p", "l") is None


def test_update_if_absent_stores_only_when_the_pair_is_absent(
    client: CacheClient,
) -> None:
    assert client.update_if_absent("p", "l", [{"text": "first"}]) is True
    assert client.update_if_absent("p", "l", [{"text": "second"}]) is False
    assert client.lookup("p", "l") == [{"text": "first"}]


def test_update_if_absent_with_no_store_answers_false(client: CacheClient) -> None:
    assert client.update_if_absent("p", "l", PARIS, no_store=True) is False
    assert client.lookup("p", "l") is None


def test_stats_count_a_namespaces_entries_and_lookups(
    memory_client: CacheClient, namespace: str
) -> None:
    memory_client.update("p", "l", PARIS)
    memory_client.update("q", "l", PARIS, no_store=True)
    memory_client.lookup("p", "l")
    memory_client.lookup("absent", "l")
    memory_client.lookup("p", "l", bypass=True)
    report = memory_client.stats()
    stats = report.namespaces[namespace]
    assert isinstance(stats, CacheStats)
    assert (stats.entries, stats.hits, stats.misses, stats.bypasses) == (1, 1, 1, 1)
    assert stats.updates_not_stored == 1
    assert stats.hit_ratio == 0.5
    assert stats.bytes > 0
    assert isinstance(stats.bytes, int)
    assert report.total.entries >= 1
    assert report.total.hits >= 1
    assert isinstance(report.namespaces_not_listed, int)


def test_lookup_many_answers_in_the_order_of_the_keys(client: CacheClient) -> None:
    client.update("a", "l", [{"text": "A"}])
    client.update("c", "l", [])
    results = client.lookup_many([("a", "l"), ("b", "l"), ("c", "l"), ("a", "l")])
    assert results == [[{"text": "A"}], None, [], [{"text": "A"}]]


def test_lookup_many_of_no_keys_is_an_empty_list(client: CacheClient) -> None:
    assert client.lookup_many([]) == []


def test_update_many_stores_every_entry(client: CacheClient, namespace: str) -> None:
    client.update_many(
        [("a", "l", [{"text": "A"}]), ("b", "l", [{"text": "B"}])],
        namespace=f"{namespace}-batch",
    )
    results = client.lookup_many(
        [("a", "l"), ("b", "l")], namespace=f"{namespace}-batch"
    )
    assert results == [[{"text": "A"}], [{"text": "B"}]]


def test_update_many_stores_none_when_one_entry_is_refused(
    limited_server: Server, namespace: str
) -> None:
    # In memory only: the entry is refused for the server's byte budget.
    with CacheClient(limited_server.address, namespace=namespace) as client:
        with pytest.raises(CacheError):
            client.update_many(
                [("small", "l", PARIS), ("huge", "l", [{"text": "x" * 100_000}])]
            )
        assert client.lookup("small", "l") is None


def test_the_client_is_a_context_manager_that_closes_it(server: Server) -> None:
    with CacheClient(server.address) as client:
        assert client.lookup("p", "unused llm") is None
    with pytest.raises(CacheError) as raised:
        client.lookup("p", "unused llm")
    assert raised.value.code == "FAILED_PRECONDITION"


def test_close_can_be_called_twice(server: Server) -> None:
    client = CacheClient(server.address)
    client.lookup("p", "unused llm")
    client.close()
    client.close()


def test_close_lets_calls_in_other_threads_finish(server: Server) -> None:
    # grpcio's close() cancels the calls on the channel, and a call that
    # starts on a closed channel raises grpcio's own ValueError: both leaked
    # to callers of a client closed by another thread. The calls here wait
    # for a lease another client holds, so they are surely in flight.
    holder = CacheClient(server.address, namespace="close-threads")
    lease = holder.lookup("p", "l", lease_ms=30_000).lease
    assert lease is not None
    client = CacheClient(server.address, namespace="close-threads")
    outcomes: list[object] = []

    def wait_for_the_fill() -> None:
        try:
            found = client.lookup("p", "l", lease_ms=1_000, wait_ms=20_000)
            outcomes.append(found.generations)
        except CacheError as error:
            outcomes.append(error.code)
        except Exception as error:  # noqa: BLE001 -- what the test looks for
            outcomes.append(repr(error))

    threads = [threading.Thread(target=wait_for_the_fill) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # their lookups wait on the server
    closing = threading.Thread(target=client.close)
    closing.start()
    time.sleep(0.1)
    with pytest.raises(CacheError) as raised:
        client.lookup("p", "l")
    assert raised.value.code == "FAILED_PRECONDITION", "a call made after close()"
    holder.update("p", "l", [Generation(text="filled")], lease_token=lease.token)
    for thread in [*threads, closing]:
        thread.join()
    holder.close()
    assert outcomes == [[Generation(text="filled")]] * 4


def test_close_lets_a_lease_be_filled_for_the_calls_it_waits_for(
    server: Server,
) -> None:
    # One thread computes a pair's answer while another waits for it; the
    # client is closed meanwhile. close() waits for the waiter, so it must
    # still send the fill: refused, the waiter waited out its 20 s.
    client = CacheClient(server.address, namespace="close-lease")
    computing = threading.Event()
    answers: list[object] = []

    def compute() -> list[Generation]:
        computing.set()
        time.sleep(0.5)
        return [Generation(text="computed")]

    def leaseholder() -> None:
        answers.append(client.get_or_compute("p", "l", compute))

    def waiter() -> None:
        computing.wait()
        answers.append(client.lookup("p", "l", lease_ms=5_000, wait_ms=20_000))

    threads = [threading.Thread(target=leaseholder), threading.Thread(target=waiter)]
    for thread in threads:
        thread.start()
    computing.wait()
    time.sleep(0.1)  # the waiter's lookup waits on the server
    start = time.monotonic()
    client.close()
    for thread in threads:
        thread.join()
    assert time.monotonic() - start < 5
    found = [a.generations if isinstance(a, LeasedLookup) else a for a in answers]
    assert found == [[Generation(text="computed")]] * 2, answers
    with pytest.raises(CacheError) as raised:
        client.release_lease("p", "l", "token")
    assert raised.value.code == "FAILED_PRECONDITION", "refused once closed"


def test_get_or_compute_made_before_close_stores_its_answer(server: Server) -> None:
    # With no other call in flight, close() closed under the compute: the
    # fill was refused and the lease held to its end.
    client = CacheClient(server.address, namespace="close-compute")
    computing = threading.Event()

    def compute() -> list[Generation]:
        computing.set()
        time.sleep(0.3)
        return [Generation(text="computed")]

    answers: list[object] = []
    thread = threading.Thread(
        target=lambda: answers.append(client.get_or_compute("p", "l", compute))
    )
    thread.start()
    computing.wait()
    client.close()
    thread.join()
    assert answers == [[Generation(text="computed")]]
    with CacheClient(server.address, namespace="close-compute") as other:
        assert other.lookup("p", "l") == [Generation(text="computed")]


def test_get_or_compute_whose_wait_ran_out_stores_while_close_waits(
    server: Server,
) -> None:
    # Its store carries no token (it holds no lease): refused as a new call.
    holder = CacheClient(server.address, namespace="close-no-lease")
    assert holder.lookup("p", "l", lease_ms=30_000).lease is not None
    client = CacheClient(server.address, namespace="close-no-lease")

    def compute() -> list[Generation]:
        time.sleep(0.5)
        return [Generation(text="computed")]

    answers: list[object] = []
    thread = threading.Thread(
        target=lambda: answers.append(
            client.get_or_compute("p", "l", compute, wait_ms=300)
        )
    )
    thread.start()
    time.sleep(0.4)  # the wait has run out; compute runs
    client.close()
    thread.join()
    assert answers == [[Generation(text="computed")]]
    assert holder.lookup("p", "l") == [Generation(text="computed")]
    holder.close()


def test_close_from_a_signal_handler_during_a_call_does_not_wait_for_it(
    server: Server,
) -> None:
    # The handler runs on the thread whose call is in flight: close() waited
    # for that call, which cannot end until the handler returns.
    holder = CacheClient(server.address, namespace="close-signal")
    client = CacheClient(server.address, namespace="close-signal")
    assert holder.lookup("p", "l", lease_ms=30_000).lease is not None
    previous = signal.signal(signal.SIGALRM, lambda *_: client.close())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        start = time.monotonic()
        with pytest.raises(CacheError):
            client.lookup("p", "l", lease_ms=1_000, wait_ms=10_000)
        assert time.monotonic() - start < 5, "the close ended the wait"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        holder.close()


def test_a_call_past_its_deadline_fails_with_deadline_exceeded() -> None:
    # A server that cannot answer (stopped), so that the deadline passes
    # whatever the machine's speed: grpcio rounds a deadline to the
    # millisecond, within which a local server can answer.
    stopped = start_server()
    client = CacheClient(stopped.address)
    try:
        client.lookup("p", "l")  # connected
        stopped.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(CacheError) as raised:
            client.lookup("p", "l", timeout=0.2)
        assert raised.value.code == "DEADLINE_EXCEEDED"
        assert 0.15 < time.monotonic() - started < 2
    finally:
        stopped.process.send_signal(signal.SIGCONT)
        client.close()
        stopped.stop()


def test_a_hit_larger_than_grpcios_default_receive_limit_is_read(
    client: CacheClient,
) -> None:
    # grpcio refuses replies over 4 MiB unless told otherwise; the server
    # sends up to 16 MiB.
    big = [{"text": "x" * 3_000_000}, {"text": "y" * 3_000_000}]
    client.update("a", "big", big[:1])
    client.update("b", "big", big[1:])
    assert client.lookup_many([("a", "big"), ("b", "big")]) == [big[:1], big[1:]]
