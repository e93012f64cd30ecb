"""A DNS server on 127.0.0.1 for the tests' own names (see DnsServer)."""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

_TYPE_A = 1
_CLASS_IN = 1
_NAME_ERROR = 3


class DnsServer:
    """Answers A queries for `records` with every IPv4 address listed, over UDP.

    Other types of a known name get an empty answer, unknown names NXDOMAIN:
    RFC 1035, enough for grpcio's resolver. `answered` counts the queries
    answered with records.
    """

    def __init__(self, records: Mapping[str, Sequence[str]]) -> None:
        """Binds a port at 127.0.0.1; serving starts with `with`."""
        self._records = {name.lower(): list(ips) for name, ips in records.items()}
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.answered = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        """Starts answering."""
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stops answering and frees the port."""
        self._socket.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self._socket.recvfrom(4096)
            except OSError:  # closed
                return
            answer = self._answer(query)
            if answer is not None:
                self._socket.sendto(answer, peer)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 12 or struct.unpack_from("!H", query, 4)[0] != 1:
            return None
        labels: list[str] = []
        at = 12
        while at < len(query) and query[at] != 0:
            length = query[at]
            labels.append(query[at + 1 : at + 1 + length].decode("latin-1"))
            at += 1 + length
        if at + 5 > len(query):
            return None
        kind, klass = struct.unpack_from("!HH", query, at + 1)
        end = at + 5
        addresses = self._records.get(".".join(labels).lower())
        records = (
            addresses if addresses and (kind, klass) == (_TYPE_A, _CLASS_IN) else []
        )
        if records:
            self.answered += 1
        flags = struct.pack(
            "!BB",
            0x80 | (query[2] & 0x79),
            0x80 | (_NAME_ERROR if addresses is None else 0),
        )
        counts = struct.pack("!HHHH", 1, len(records), 0, 0)
        answers = b"".join(
            struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, 1, 4)
            + socket.inet_aton(ip)
            for ip in records
        )
        return query[:2] + flags + counts + query[12:end] + answers
