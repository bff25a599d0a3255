"""`Idempotency-Key`: a request repeated with the same key by the same user within ten minutes, on the same
instance, gets the first request's recorded answer, and the agent does not run again.

Clients retry on their own (a timeout, a 5xx, a dropped connection), and an agent run can act: write a
document. A retry with the key the first attempt sent is answered from the record; one that arrives while the
first is still running waits for it, so two requests with one key never both run. Only outcomes worth keeping
are recorded: an answer that ended well, or any answer after a tool ran. A failure before any tool ran is
forgotten, so its retry runs again, which is what a retry is for. The same key with another body is a 422.

Memory is bounded: at most `max_entries` keys (the oldest are forgotten first), at most `max_body_bytes`
kept per answer and `max_total_bytes` in all; an answer that cannot be kept leaves a small marker, and a retry
of it is a 409 saying the request already ran. Keys are held as hashes (with the user), never as sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from server.errors import ApiError

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
WINDOW_SECONDS = 600.0
MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
_NOT_REPLAYED = {b"content-length", b"x-request-id", b"connection"}


@dataclass
class Record:
    """One key's request: running until `done` is set, then its answer (or only that it ran)."""

    fingerprint: str
    expires_at: float
    done: asyncio.Event = field(default_factory=asyncio.Event)
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | None = None  # None once finished: the answer was too large to keep (or was dropped)

    @property
    def size(self) -> int:
        return len(self.body or b"") + sum(len(k) + len(v) for k, v in self.headers)


def idempotency_key(value: str | None) -> str | None:
    """The header's key, checked (None when absent)."""
    if value is None:
        return None
    if not value or len(value) > MAX_KEY_LENGTH or not value.isascii() or not value.isprintable():
        raise ApiError(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                       "invalid_request_error", "invalid_idempotency_key", "Idempotency-Key")
    return value


class IdempotencyRecords:
    """The records of one process (`once` per request that sent a key)."""

    def __init__(self, *, window_seconds: float = WINDOW_SECONDS, max_entries: int = 10_000,
                 max_body_bytes: int = 256 * 1024, max_total_bytes: int = 32 * 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds, self.clock = window_seconds, clock
        self.max_entries, self.max_body_bytes = max_entries, max_body_bytes
        self.max_total_bytes = max_total_bytes
        self._records: OrderedDict[str, Record] = OrderedDict()  # oldest first
        self._total_bytes = 0

    def __len__(self) -> int:
        """Keys held (running or answered)."""
        return len(self._records)

    @property
    def bytes_kept(self) -> int:
        """Bytes of the answers kept (bodies and headers)."""
        return self._total_bytes

    async def once(self, sub: str, key: str, fingerprint: str, respond: Callable[[], Awaitable[Response]],
                   keep: Callable[[int], bool]) -> Response:
        """`respond()`'s answer, recorded under (sub, key) if `keep(status)` says so once it is over; or the
        recorded answer of an earlier request with the same key."""
        slot = hashlib.sha256(f"{sub}\0{key}".encode()).hexdigest()
        while (record := self._live(slot)) is not None:
            if record.fingerprint != fingerprint:
                raise ApiError(422, "This Idempotency-Key was used with a different request; use a new key "
                               "for a new request.", "invalid_request_error", "idempotency_key_reused",
                               "Idempotency-Key")
            if record.done.is_set():
                return self._replay(record)
            # The same request is running: its answer is this one's (within the window; after it, the key
            # no longer holds and this request runs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(record.expires_at - self.clock(), 0.0)):
                    await record.done.wait()
        record = Record(fingerprint, self.clock() + self.window_seconds)
        self._add(slot, record)
        try:
            response = await respond()
        except BaseException:
            self._forget(slot, record)
            raise
        return _Recording(response, self.max_body_bytes, lambda status, headers, body: self._finish(
            slot, record, status, headers, body, keep(status)))

    def _live(self, slot: str) -> Record | None:
        now = self.clock()
        while self._records:  # expired records leave first (the oldest are at the front)
            oldest_slot, oldest = next(iter(self._records.items()))
            if oldest.expires_at > now:
                break
            self._remove(oldest_slot)
        return self._records.get(slot)

    def _add(self, slot: str, record: Record) -> None:
        self._records[slot] = record
        while len(self._records) > self.max_entries:
            oldest_slot, oldest = next(iter(self._records.items()))
            if not oldest.done.is_set():
                break  # never forget a request that is running
            log.warning("idempotency records full (%d keys): forgetting the oldest early", self.max_entries)
            self._remove(oldest_slot)

    def _finish(self, slot: str, record: Record, status: int, headers: list[tuple[bytes, bytes]],
                body: bytes | None, keep: bool) -> None:
        if not keep or self._records.get(slot) is not record:  # dropped, or expired while running
            self._forget(slot, record)
            return
        record.status = status
        record.headers = [(k, v) for k, v in headers if k.lower() not in _NOT_REPLAYED]
        # Too large to keep: the record stays as a marker (a retry is told the request already ran).
        record.body = body if body is not None and len(body) <= self.max_body_bytes else None
        self._total_bytes += record.size
        for other in list(self._records.values()):  # over the total: the oldest answers become markers
            if self._total_bytes <= self.max_total_bytes:
                break
            if other.body is not None and other is not record:
                self._total_bytes -= len(other.body)
                other.body = None
        record.done.set()

    def _forget(self, slot: str, record: Record) -> None:
        if self._records.get(slot) is record:
            del self._records[slot]
        record.done.set()  # a waiting request finds no record and runs itself

    def _remove(self, slot: str) -> None:
        record = self._records.pop(slot)
        self._total_bytes -= record.size

    @staticmethod
    def _replay(record: Record) -> Response:
        if record.body is None or record.status is None:
            raise ApiError(409, "A request with this Idempotency-Key already ran; its answer is no longer "
                           "kept. Check its result, and use a new key for a new request.",
                           "invalid_request_error", "idempotency_key_used", "Idempotency-Key")
        response = Response(record.body, status_code=record.status)
        response.raw_headers = [*[(k, v) for k, v in response.raw_headers if k == b"content-length"],
                                *record.headers, (REPLAYED_HEADER.lower().encode(), b"true")]
        return response


class _Recording(Response):
    """`response` as it is sent, with what was sent handed to `finished(status, headers, body)` at the end
    (the body is None once it grew past `limit`: it would not be kept)."""

    def __init__(self, response: Response, limit: int,
                 finished: Callable[[int, list[tuple[bytes, bytes]], bytes | None], None]) -> None:
        self.response, self.limit, self.finished = response, limit, finished
        self.status_code, self.background = response.status_code, None
        self.raw_headers = response.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, headers, body = self.response.status_code, list(self.response.raw_headers), bytearray()
        kept = True

        async def send_recorded(message: Message) -> None:
            nonlocal status, headers, kept
            if message["type"] == "http.response.start":
                status, headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body" and kept:
                body.extend(message.get("body", b""))
                kept = len(body) <= self.limit
                if not kept:
                    body.clear()
            await send(message)

        try:
            await self.response(scope, receive, send_recorded)
        finally:
            self.finished(status, headers, bytes(body) if kept else None)
