"""Failed calls raise CacheError with the gRPC status, by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from conftest import TOKEN

from llmcache import CacheClient, CacheError, EntryTooLargeError, TlsConfig

if TYPE_CHECKING:
    from conftest import Certificates, Server


def test_a_call_to_no_server_fails_with_unavailable(dead_address: str) -> None:
    with CacheClient(dead_address) as client, pytest.raises(CacheError) as raised:
        client.lookup("p", "l")
    error = raised.value
    assert error.code == "UNAVAILABLE"
    assert error.grpc_code is grpc.StatusCode.UNAVAILABLE
    assert error.method == "Lookup"
    assert str(error).startswith("Lookup failed: UNAVAILABLE: ")
    assert error.details in str(error)


def test_a_wrong_token_fails_with_unauthenticated(auth_server: Server) -> None:
    with (
        CacheClient(auth_server.address, token="not-the-token") as client,
        pytest.raises(CacheError) as raised,
    ):
        client.lookup("p", "l")
    assert raised.value.code == "UNAUTHENTICATED"


def test_no_token_fails_with_unauthenticated(auth_server: Server) -> None:
    with (
        CacheClient(auth_server.address) as client,
        pytest.raises(CacheError) as raised,
    ):
        client.update("p", "l", [])
    assert raised.value.code == "UNAUTHENTICATED"


async def test_a_wrong_token_fails_async_calls_too(auth_server: Server) -> None:
    async with CacheClient(auth_server.address, token="not-the-token") as client:
        with pytest.raises(CacheError) as raised:
            await client.astats()
    assert raised.value.code == "UNAUTHENTICATED"


def test_the_right_token_is_let_in(auth_server: Server, namespace: str) -> None:
    with CacheClient(auth_server.address, token=TOKEN, namespace=namespace) as client:
        client.update("p", "l", [{"text": "t"}])
        assert client.lookup("p", "l") == [{"text": "t"}]


def test_an_entry_larger_than_the_byte_budget_raises_entry_too_large_error(
    limited_server: Server, namespace: str
) -> None:
    with (
        CacheClient(limited_server.address, namespace=namespace) as client,
        pytest.raises(EntryTooLargeError) as raised,
    ):
        client.update("p", "l", [{"text": "x" * 100_000}])
    error = raised.value
    assert isinstance(error, CacheError)
    assert error.code == "RESOURCE_EXHAUSTED"
    assert str(error).startswith("Update failed: RESOURCE_EXHAUSTED: entry too large")


def test_tls_with_the_servers_ca_connects(
    tls_server: Server, certificates: Certificates, namespace: str
) -> None:
    tls = TlsConfig(ca=certificates.ca.read_bytes())
    with CacheClient(tls_server.address, tls=tls, namespace=namespace) as client:
        client.update("p", "l", [{"text": "over TLS"}])
        assert client.lookup("p", "l") == [{"text": "over TLS"}]


def test_tls_with_an_unknown_ca_fails_with_unavailable(tls_server: Server) -> None:
    with (
        CacheClient(tls_server.address, tls=True, timeout=2.0) as client,
        pytest.raises(CacheError) as raised,
    ):
        client.lookup("p", "l")
    assert raised.value.code == "UNAVAILABLE"


def test_plain_text_to_a_tls_server_fails_with_unavailable(tls_server: Server) -> None:
    with (
        CacheClient(tls_server.address, timeout=2.0) as client,
        pytest.raises(CacheError) as raised,
    ):
        client.lookup("p", "l")
    assert raised.value.code == "UNAVAILABLE"
