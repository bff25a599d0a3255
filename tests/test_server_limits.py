"""Limits that hold before authentication, each met by a misbehaving client on loopback: oversized headers,
a silent and a trickling connection, a body that never finishes, more requests than the instance takes, and
a huge caller-supplied value that must not make a huge log line. Every client here stops by itself."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.app_server import serve_app
from tests.support.reliability import set_faults
from tests.support.sockets import connect, read_until_closed

LIMITS = {"MAX_HEADER_BYTES": "8192", "HEADER_TIMEOUT_SECONDS": "0.5", "BODY_TIMEOUT_SECONDS": "0.5",
          "MAX_CONCURRENT_REQUESTS": "2", "STREAM_KEEPALIVE_SECONDS": "0.2"}
CHAT = "/openai/v1/chat/completions"


@pytest.fixture(scope="module")
def server(cloud) -> Iterator[str]:
    with serve_app(cloud.env | LIMITS) as base_url:
        yield base_url


def test_oversized_headers_get_431_and_the_connection_is_closed(server: str) -> None:
    with connect(server) as sock:
        try:  # 64 KiB of one header, never ended: the server stops reading at its limit
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_silent_connection_is_closed_after_the_header_timeout(server: str) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < 3


def test_headers_trickling_in_are_cut_at_the_header_timeout(server: str) -> None:
    """Slowloris: a byte every 0.1 s never completes the headers; the timeout counts from the start, not
    from the last byte."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.settimeout(0.1)
        closed = False
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed and time.monotonic() - started < 3


def test_a_body_that_never_finishes_gets_408(cloud, server: str) -> None:
    jwt = cloud.issue_user_jwt("slow-body")
    head = (f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {jwt}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n").encode()
    with connect(server) as sock:
        sock.sendall(head + b'{"model": "qwen-plus", "messages": [')  # ...and nothing more
        answer = read_until_closed(sock)
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), answer[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"


async def test_beyond_the_concurrency_limit_requests_get_503_at_once_and_health_still_answers(
        cloud, fresh_cloud, server: str) -> None:
    set_faults(fresh_cloud, "model", latency_ms=1500)
    body = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
    headers = {"Authorization": f"Bearer {cloud.issue_user_jwt('busy')}"}
    async with httpx.AsyncClient(timeout=10) as http:
        running = [asyncio.create_task(http.post(f"{server}{CHAT}", json=body, headers=headers)) for _ in range(2)]
        await asyncio.sleep(0.5)  # both are in the app, waiting for the model
        started = time.monotonic()
        refused = await http.post(f"{server}{CHAT}", json=body, headers=headers)
        refused_after = time.monotonic() - started
        health = await http.get(f"{server}/health")
        done = await asyncio.gather(*running)
    set_faults(fresh_cloud, "model", latency_ms=0)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_busy" and refused_after < 1.0
    assert health.status_code == 200
    assert [r.status_code for r in done] == [200, 200]


async def test_a_huge_session_id_makes_no_huge_log_line(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.request")
    session = "s" * 7000  # as much as the header limit lets through
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{server}{CHAT}", json={}, headers={"X-AgentRun-Session-Id": session})
    assert response.status_code == 401
    request_id = response.headers["x-request-id"]
    for _ in range(50):  # the line is written once the response is over
        lines = [r for r in caplog.records if r.name == "app.request" and request_id in r.getMessage()]
        if lines:
            break
        await asyncio.sleep(0.02)
    (line,) = lines
    assert len(line.getMessage()) < 1000 and line.fields["session_id"].endswith("...[7000 chars]")
