"""Auto-batching of the async lookups and updates over CacheService.Stream.

The lookups, updates and lease releases that a client's async methods
start in the same turn of an event loop travel together, up to
MAX_OPERATIONS a StreamRequest, on one long-lived Stream call per event
loop, as the TypeScript client (and ioredis's auto-pipelining) does; their
results come back matched by id, in any order. Each call keeps its own
deadline and may be cancelled; a broken stream fails the calls it carried,
with UNAVAILABLE, and the next call opens a new one. Requests and results
are converted by the same Call (see _calls) as a unary call's.

A lookup that waits for another caller's fill (single flight) is answered
when that fill lands, while the operations sent after it are answered as
usual: results come out of order. A leased lookup that its caller gave up
on (cancelled, or past its deadline) once sent is cancelled on the server
too (a CancelOperation naming it, on the same stream), so that it no
longer waits there, holds a place under the waiter limits, or is handed
the next lease. One granted a lease before its cancel arrived gets it
still: the stream releases it, so that the others waiting for the pair get
the next lease at once instead of when this one expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from . import _calls
from ._channel import SERVICE
from ._errors import call_failure
from .v1 import cache_pb2

if TYPE_CHECKING:
    from ._calls import Call

R = TypeVar("R")

# Operations share a message up to this size; a request as large goes as a
# unary call of its own.
MAX_MESSAGE_BYTES = 1024 * 1024
# At most this many operations a message: smaller messages let the server
# answer the first while the client writes the next (the TypeScript client's
# figure, measured there).
MAX_OPERATIONS = 24
# How long aclose() waits at least for the server to end the stream, beyond
# the deadlines of the calls still waiting for their results.
CLOSE_GRACE = 1.0
# How long an event loop that ends with the stream open waits for grpcio to
# finish the cancelled call.
LOOP_END_SETTLE = 0.02
# The deadline of the release of a lease granted to a lookup given up on.
RELEASE_TIMEOUT = 5.0
# How long a new stream's second message waits at most for the server's
# headers, which come with its first answer (or its refusal). Only a first
# message of lookups that all wait for a lease's fill keeps them that long.
ACCEPT_WAIT = 0.5

# What grpc.aio reports, in place of the server's status, for a stream that
# ends while a message is being sent (grpc/grpc#36066): a server shutting
# down, or refusing a token revoked meanwhile. It is UNAVAILABLE for the
# calls the stream carried, worth a retry, as for any stream that ends.
_STATUS_LOST = "Internal error from Core"

_LENGTH_DELIMITED = 2
_OPERATION = cache_pb2.StreamOperation.DESCRIPTOR.fields_by_name


def _tag(number: int, wire_type: int) -> bytes:
    return bytes((number << 3 | wire_type,))


_OPERATIONS_TAG = _tag(
    cache_pb2.StreamRequest.DESCRIPTOR.fields_by_name["operations"].number,
    _LENGTH_DELIMITED,
)
_ID_TAG = _tag(_OPERATION["id"].number, 0)
_REQUEST_TAGS = {
    kind: _tag(_OPERATION[kind].number, _LENGTH_DELIMITED)
    for kind in ("lookup", "update", "release_lease")
}
# A CancelOperation, empty, after the id of the operation it cancels.
_CANCEL = _tag(_OPERATION["cancel"].number, _LENGTH_DELIMITED) + b"\x00"


def streams(call: Call[Any]) -> bool:
    """Whether the stream may carry the call: one it can carry, not too large."""
    return call.streamed is not None and len(call.request) < MAX_MESSAGE_BYTES


class _Operation:
    """A call waiting for its result: sent on `sent_on`, or not sent yet."""

    __slots__ = ("call", "deadline", "future", "id", "sent_on", "tag", "timeout")

    def __init__(
        self,
        operation_id: int,
        call: Call[Any],
        tag: bytes,
        timeout: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.id = operation_id
        self.call = call
        self.tag = tag  # StreamOperation's field of the request
        self.timeout = timeout
        self.deadline = loop.time() + timeout
        self.future: asyncio.Future[Any] = loop.create_future()
        self.sent_on: Any = None


class OperationStream:
    """One event loop's Stream call, and the calls it carries.

    Made on the loop it serves; everything here runs on that loop. The call
    opens with the first operation; a writer task sends what waits (what
    the loop's last turn submitted) and a reader task settles the results.
    """

    def __init__(self, channel: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        """Streams over a grpc.aio channel, sending `metadata` with the call."""
        self._open = channel.stream_stream(f"/{SERVICE}/Stream")
        self._metadata = metadata
        self._loop = asyncio.get_running_loop()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        # Submitted and not settled, by id, sent or not; and those not sent.
        self._pending: dict[int, _Operation] = {}
        self._unsent: deque[_Operation] = deque()
        # Leased lookups sent and given up on, whose results are still due:
        # a lease one of them is granted is released. Those that may wait on
        # the server are cancelled there: their cancels wait to be sent.
        self._abandoned: dict[int, _Operation] = {}
        self._cancels: deque[_Operation] = deque()
        self._last_id = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._closing = False

    async def send(self, call: Call[R], timeout: float) -> R:
        """The call's result, sent on the stream with the others of this turn."""
        operation = self._submit(call, timeout)
        future = operation.future
        try:
            result = await future
        except asyncio.CancelledError:
            # Its result, if one comes, is dropped; unsent, it is not sent.
            if self._pending.get(operation.id) is operation:
                del self._pending[operation.id]
                self._abandon(operation)
            elif call.leased and _succeeded(future):
                # Cancelled as its result came: a lease it grants is let go.
                self._release_granted(operation, future.result())
            raise
        return call.stream_result(result)

    def _submit(self, call: Call[Any], timeout: float) -> _Operation:
        """Queues the call's operation for the next message, and returns it."""
        if call.streamed is None:
            raise ValueError(f"the stream cannot carry a {call.method} call")
        operation = _Operation(
            self._next_id(),
            call,
            _REQUEST_TAGS[call.streamed],
            timeout,
            self._loop,
        )
        self._pending[operation.id] = operation
        self._unsent.append(operation)
        if operation.deadline < self._timer_at:
            self._watch(operation.deadline)
        if self._call is None:
            self._start()
        else:
            self._wake_writer()
        return operation

    def _abandon(self, operation: _Operation) -> None:
        """Remembers a leased lookup given up on after it was sent.

        One that may wait on the server for a lease's fill is cancelled
        there (the cancel goes out with the next message), and its result
        then comes soon: CANCELLED, or the lease granted before the cancel
        arrived.
        """
        if operation.call.leased and operation.sent_on is not None:
            self._abandoned[operation.id] = operation
            if operation.call.wait > 0:
                self._cancel(operation)

    def _cancel(self, operation: _Operation) -> None:
        """Asks the server to stop an abandoned operation's wait."""
        # A broken stream has no server side left to tell.
        if operation.sent_on is self._call:
            self._cancels.append(operation)
            self._wake_writer()

    def _release_abandoned(self, operation: _Operation, token: str) -> None:
        """Releases the lease granted to a lookup whose caller gave up on it."""
        if self._closing:
            return  # the lease expires on its own
        lookup = cache_pb2.LookupRequest.FromString(operation.call.request)
        call = _calls.release_lease(
            lookup.prompt, lookup.llm_string, token, namespace=lookup.namespace
        )
        release = self._submit(call, RELEASE_TIMEOUT)
        # Nobody awaits it: its failure is let go (the lease then expires).
        release.future.add_done_callback(_let_go)

    async def aclose(self) -> None:
        """Sends what waits, ends the stream and waits for the server to end it.

        The calls waiting for results get them: the server answers all it
        was sent before it ends the stream. One that has not ended within
        the last deadline of those calls (CLOSE_GRACE at least) is cancelled.
        """
        self._closing = True
        call = self._call
        tasks = [task for task in (self._reader, self._writer) if task is not None]
        if call is not None:
            self._wake_writer()
            deadlines = [operation.deadline for operation in self._pending.values()]
            grace = max(CLOSE_GRACE, max(deadlines, default=0) - self._loop.time())
            _, running = await asyncio.wait(tasks, timeout=grace)
            if running:
                call.cancel()
                await asyncio.wait(running)
        if self._timer is not None:
            self._timer.cancel()

    def _next_id(self) -> int:
        # Ids are 32-bit and wrap; 0 and those in flight are skipped.
        last = self._last_id
        while True:
            last = (last + 1) & 0xFFFFFFFF
            if last and last not in self._pending and last not in self._abandoned:
                self._last_id = last
                return last

    def _start(self) -> None:
        call = self._open(metadata=self._metadata)
        self._call = call
        self._reader = self._loop.create_task(self._read(call))
        self._writer = self._loop.create_task(self._write(call))

    def _wake_writer(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _write(self, call: Any) -> None:
        accepted = False
        try:
            while self._call is call:
                message = self._take(call)
                if message:
                    await call.write(message)
                    if not accepted:
                        await _accepted(call)
                        accepted = True
                elif self._closing:
                    await call.done_writing()
                    return
                else:
                    self._wakeup = self._loop.create_future()
                    await self._wakeup
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return  # the call failed: the reader reports it

    def _take(self, call: Any) -> bytes:
        """The next StreamRequest of what waits to be sent, or b"".

        Cancels go first: they free the server's places under its waiter
        limits for the operations that follow.
        """
        parts: list[bytes] = []
        size = count = 0
        cancels = self._cancels
        while cancels and count < MAX_OPERATIONS:
            operation = cancels.popleft()
            # Not once its result has come, or for an operation of another call.
            if self._abandoned.get(operation.id) is operation and (
                operation.sent_on is call
            ):
                body = _ID_TAG + _varint(operation.id) + _CANCEL
                parts += (_OPERATIONS_TAG, _varint(len(body)), body)
                size += 2 + len(body)
                count += 1
        unsent = self._unsent
        while unsent and count < MAX_OPERATIONS:
            operation = unsent[0]
            if operation.future.done():  # cancelled, or past its deadline
                unsent.popleft()
                continue
            request = operation.call.request
            operation_id = _varint(operation.id)
            request_size = _varint(len(request))
            body_size = 2 + len(operation_id) + len(request_size) + len(request)
            body_size_bytes = _varint(body_size)
            framed_size = 1 + len(body_size_bytes) + body_size
            if count and size + framed_size > MAX_MESSAGE_BYTES:
                break
            unsent.popleft()
            operation.sent_on = call
            parts += (
                _OPERATIONS_TAG,
                body_size_bytes,
                _ID_TAG,
                operation_id,
                operation.tag,
                request_size,
                request,
            )
            size += framed_size
            count += 1
        return b"".join(parts)

    async def _read(self, call: Any) -> None:
        code = grpc.StatusCode.UNAVAILABLE
        try:
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    self._fail(call, code, "the server ended the stream")
                    return
                if not self._receive(call, reply):
                    return
        except grpc.aio.AioRpcError as error:
            # A stream this client did not cancel was cancelled by a server
            # shutting down or by a proxy: for the calls it carried that is
            # UNAVAILABLE, worth a retry.
            details = error.details() or ""
            if error.code() == grpc.StatusCode.CANCELLED:
                details = f"the stream was cancelled ({details})"
            elif error.code() == grpc.StatusCode.INTERNAL and details == _STATUS_LOST:
                details = "the stream ended as a message was being sent"
            else:
                code = error.code()
            self._fail(call, code, details)
        except Exception as error:  # noqa: BLE001 -- grpcio's: fail the calls, not the stream
            self._fail(call, grpc.StatusCode.INTERNAL, f"the stream failed: {error!r}")
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or not task.cancelling():  # aclose() cancelled the call
                self._fail(call, grpc.StatusCode.CANCELLED, "the client was closed")
                return
            # The event loop is ending (asyncio.run cancels its tasks) with the
            # stream open. Its call is cancelled; grpcio hands the cancelled
            # operations back to this loop soon after, and logs "Event loop
            # is closed" from the next loop if this one is gone by then.
            self._closing = True
            self._fail(call, grpc.StatusCode.CANCELLED, "the event loop is ending")
            call.cancel()
            await asyncio.sleep(LOOP_END_SETTLE)
            raise

    def _receive(self, call: Any, reply: bytes) -> bool:
        try:
            results = cache_pb2.StreamResponse.FromString(reply).results
        except DecodeError as error:
            call.cancel()
            details = f"the server's reply is malformed: {error}"
            self._fail(call, grpc.StatusCode.INTERNAL, details)
            return False
        pending = self._pending
        for result in results:
            operation = pending.get(result.id)
            if operation is not None and operation.sent_on is call:
                del pending[result.id]
                # Not if its caller was cancelled and has yet to forget it.
                if not operation.future.done():
                    operation.future.set_result(result)
                elif operation.call.leased:
                    self._release_granted(operation, result)
            elif operation is None and result.id in self._abandoned:
                abandoned = self._abandoned.pop(result.id)
                if abandoned.sent_on is call:
                    self._release_granted(abandoned, result)
        return True

    def _release_granted(self, operation: _Operation, result: Any) -> None:
        token = _calls.granted_token(result)
        if token is not None:
            self._release_abandoned(operation, token)

    def _fail(self, call: Any, code: grpc.StatusCode, details: str) -> None:
        """Fails what the ended call carried; what waits goes on a new one.

        Once the client is closing there is no new one, and what waits
        fails too.
        """
        if self._call is call:
            # The writer ends by itself: one cancelled while grpcio sends
            # would leave grpcio an operation to finish after the loop's end.
            self._call = None
            self._wake_writer()
        # Their results will not come; a lease one was granted expires.
        for operation_id, abandoned in list(self._abandoned.items()):
            if abandoned.sent_on is call:
                del self._abandoned[operation_id]
        self._cancels = deque(op for op in self._cancels if op.sent_on is not call)
        for operation in list(self._pending.values()):
            if operation.sent_on is call or (self._closing and self._call is None):
                del self._pending[operation.id]
                if not operation.future.done():
                    error = call_failure(operation.call.method, code, details)
                    operation.future.set_exception(error)
        if self._call is None and not self._closing:
            self._unsent = deque(op for op in self._unsent if not op.future.done())
            if self._unsent:
                self._start()

    def _watch(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = self._loop.time()
        following = math.inf
        for operation in list(self._pending.values()):
            if operation.deadline <= now:
                del self._pending[operation.id]
                self._abandon(operation)
                if not operation.future.done():
                    details = f"no result within {operation.timeout:g} s"
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
                    error = call_failure(operation.call.method, code, details)
                    operation.future.set_exception(error)
            else:
                following = min(following, operation.deadline)
        if following < math.inf:
            self._watch(following)


async def _accepted(call: Any) -> None:
    """Waits for the server's headers (or its status), ACCEPT_WAIT at most.

    The server refuses a stream (a wrong token, a server shutting down) once
    its first message has come. grpc.aio reports a stream that ends while it
    sends a message as INTERNAL "Internal error from Core", losing the
    server's status (grpc/grpc#36066); sending nothing more until the
    server has answered, or refused, leaves no send in flight when a
    refusal arrives.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(call.initial_metadata(), ACCEPT_WAIT)


def _succeeded(future: asyncio.Future[Any]) -> bool:
    """Whether the future holds a result (not an error, not cancelled)."""
    return future.done() and not future.cancelled() and future.exception() is None


def _let_go(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so that asyncio does not log it


def _varint(value: int) -> bytes:
    if value < 0x80:  # noqa: PLR2004 -- one byte
        return bytes((value,))
    if value < 0x4000:  # noqa: PLR2004 -- two
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:  # noqa: PLR2004 -- seven bits a byte
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
