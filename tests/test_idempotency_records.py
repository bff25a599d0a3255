"""The memory the Idempotency-Key records use is bounded (server/idempotency.py): by answers kept per key, by
bytes in all, by keys, and by the ten-minute window; an answer that cannot be kept still stops a second run."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from server.errors import ApiError
from server.idempotency import IdempotencyRecords, idempotency_key


async def answered(response: Response) -> bytes:
    """`response` sent as the server sends it; returns the body."""
    sent: list[bytes] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    await response({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send)
    return b"".join(sent)


async def ask(records: IdempotencyRecords, key: str, body: bytes, runs: list[bytes]) -> bytes:
    async def respond() -> Response:
        runs.append(body)
        return Response(body, media_type="application/json")

    return await answered(await records.once("alice", key, "same-request", respond, keep=lambda status: True))


async def test_an_answer_over_the_per_key_limit_leaves_a_marker_that_refuses_a_second_run() -> None:
    records, runs = IdempotencyRecords(max_body_bytes=100), []
    await ask(records, "big", b"x" * 101, runs)
    with pytest.raises(ApiError) as refused:
        await ask(records, "big", b"x" * 101, runs)
    assert refused.value.status == 409 and refused.value.code == "idempotency_key_used" and len(runs) == 1


async def test_the_total_is_bounded_by_turning_the_oldest_answers_into_markers() -> None:
    records, runs = IdempotencyRecords(max_body_bytes=1000, max_total_bytes=2500), []
    for n in range(5):
        await ask(records, f"k{n}", bytes([48 + n]) * 1000, runs)
    assert records.bytes_kept <= 2500 + 5 * 100  # bodies plus their few headers
    assert await ask(records, "k4", b"ignored", runs) == b"4" * 1000  # the newest is replayed
    with pytest.raises(ApiError):
        await ask(records, "k0", b"ignored", runs)  # the oldest is a marker: still no second run
    assert len(runs) == 5


async def test_keys_are_bounded_and_expire_after_the_window() -> None:
    now = [0.0]
    records, runs = IdempotencyRecords(max_entries=3, window_seconds=600, clock=lambda: now[0]), []
    for n in range(4):
        await ask(records, f"k{n}", b"answer", runs)
    assert len(records) == 3  # the oldest key was forgotten
    now[0] = 601.0
    await ask(records, "k3", b"answer", runs)  # expired: runs again
    assert len(runs) == 5 and len(records) == 1


def test_a_key_must_be_short_printable_ascii() -> None:
    assert idempotency_key(None) is None and idempotency_key("a-b_c.1") == "a-b_c.1"
    for bad in ("", "k" * 256, "ключ", "a\tb"):
        with pytest.raises(ApiError):
            idempotency_key(bad)
