"""How to reach a server: settings, grpcio channels, and their callables."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from ._describe import describe
from ._replicas import addresses_of

SERVICE = "llmcache.v1.CacheService"
# grpcio's default, pick_first, sends every call to the first address a name
# resolves to; round_robin keeps a connection to each and takes turns.
# round_robin also reconnects at once when a connection drops, and so lies in
# TRANSIENT_FAILURE, failing calls fast, while its server is away and for up
# to a reconnect backoff after it is back. pick_first goes idle instead and
# reconnects on the next call. Hence round_robin only where it spreads calls:
# over a DNS name's records, and for replicas, where a replica away must be
# seen as such (see _replicas).
_ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the server, PEM text or bytes for each part.

    ca: the CA that signs the server's certificate (default: the system's
    roots). cert and key: the client's own certificate and key, for a server
    that requires them (mutual TLS); give both or neither. server_name: the
    name to expect in the server's certificate, when it is not the address's
    host.
    """

    ca: str | bytes | None = None
    cert: str | bytes | None = None
    key: str | bytes | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class ChannelSettings:
    """The replicas' addresses, the token to send them and TLS, checked."""

    addresses: tuple[str, ...]
    metadata: tuple[tuple[str, str], ...]
    tls: TlsConfig | None

    @classmethod
    def of(cls, address: object, token: object, tls: object) -> ChannelSettings:
        """Checks the client's connection options."""
        addresses = addresses_of(address)
        metadata: tuple[tuple[str, str], ...] = ()
        if token is not None:
            if not isinstance(token, str):
                raise TypeError(f"token must be a str, got {describe(token)}")
            # A header carries visible ASCII only, and a space would split
            # "Bearer <token>"; grpcio would find out at every call instead.
            if not token or not all("!" <= char <= "~" for char in token):
                raise ValueError(
                    "token must be a non-empty str of visible ASCII characters,"
                    " without spaces"
                )
            metadata = (("authorization", f"Bearer {token}"),)
        return cls(addresses, metadata, _check_tls(tls))

    def options(self, address: str) -> list[tuple[str, Any]]:
        """Grpcio channel arguments of the channel to `address`, one of them."""
        options: list[tuple[str, Any]] = [
            # The server bounds its replies (--max-reply-bytes, 16 MiB by
            # default); grpcio's own 4 MiB would refuse large hits it sends.
            ("grpc.max_receive_message_length", -1),
            # After a cache server restarts, clients should be back within
            # seconds, not after grpcio's default of up to two minutes.
            ("grpc.max_reconnect_backoff_ms", 5_000),
            # A failed call is the caller's to retry or not.
            ("grpc.enable_retries", 0),
        ]
        if len(self.addresses) > 1 or not _is_literal(address):
            options.append(("grpc.service_config", _ROUND_ROBIN))
        if self.tls is not None and self.tls.server_name is not None:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options

    def credentials(self) -> Any:
        """Grpcio channel credentials, or None for plain text."""
        if self.tls is None:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.tls.ca),
            private_key=_pem(self.tls.key),
            certificate_chain=_pem(self.tls.cert),
        )


class Callables:
    """A channel and its unary callables, made once per method."""

    def __init__(self, channel: Any) -> None:
        """Wraps a grpcio channel (blocking or async)."""
        self.channel = channel
        self._unary: dict[str, Any] = {}

    def unary(self, method: str) -> Any:
        """The callable of `method` ("Lookup"): bytes in, bytes out."""
        call = self._unary.get(method)
        if call is None:
            # No serializers: requests are encoded, and replies decoded, by
            # the conversion layer the blocking and async calls share.
            call = self.channel.unary_unary(f"/{SERVICE}/{method}")
            self._unary[method] = call
        return call


def open_blocking(settings: ChannelSettings, address: str) -> Callables:
    """A grpcio channel to one replica, for the blocking calls."""
    credentials = settings.credentials()
    options = settings.options(address)
    if credentials is None:
        return Callables(grpc.insecure_channel(address, options=options))
    return Callables(grpc.secure_channel(address, credentials, options=options))


def open_async(settings: ChannelSettings, address: str) -> Callables:
    """A grpc.aio channel to one replica, bound to the running event loop."""
    credentials = settings.credentials()
    options = settings.options(address)
    if credentials is None:
        return Callables(grpc.aio.insecure_channel(address, options=options))
    return Callables(grpc.aio.secure_channel(address, credentials, options=options))


def _is_literal(address: str) -> bool:
    """Whether the address is one server: an IP address's or a unix socket."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_tls(tls: object) -> TlsConfig | None:
    if tls is False or tls is None:
        return None
    if tls is True:
        return TlsConfig()
    if not isinstance(tls, TlsConfig):
        message = f"tls must be a bool or a TlsConfig, got {describe(tls)}"
        raise TypeError(message)
    for name in ("ca", "cert", "key"):
        value = getattr(tls, name)
        if value is not None and not isinstance(value, str | bytes):
            message = f"tls.{name} must be PEM as str or bytes, got {describe(value)}"
            raise TypeError(message)
    if (tls.cert is None) != (tls.key is None):
        raise ValueError("tls.cert and tls.key go together: give both or neither")
    if tls.server_name is not None and not isinstance(tls.server_name, str):
        message = f"tls.server_name must be a str, got {describe(tls.server_name)}"
        raise TypeError(message)
    return tls


def _pem(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
