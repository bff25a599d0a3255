"""HTTP/1.1 only, met with a raw HTTP/2 client (the `h2` package) over a real socket: a prior-knowledge
connection can open no stream (so no rapid reset and no oversized header block is ever decoded), the one
stream an `Upgrade: h2c` opens is answered 505, an HTTP/1.1 header block over MAX_HEADER_BYTES is refused
even in one read, and a DEBUG run logs no JWT, token or cookie whatever it is sent."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest

from sandbox.browser import LinkFollowingBrowser
from sandbox.process import app_process, free_port
from server.logs import QUIET_LOGGERS, configure_logging
from tests.support.app_server import serve_app
from tests.support.e2e import document_content_at
from tests.support.sockets import connect, read_until_closed

LIMITS = {"MAX_HEADER_BYTES": "8192", "HEADER_TIMEOUT_SECONDS": "1"}


@pytest.fixture(scope="module")
def server(cloud) -> Iterator[str]:
    with serve_app(cloud.env | LIMITS) as base_url:
        yield base_url


def h2_client() -> h2.connection.H2Connection:
    return h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))


def request_headers(path: str, **extra: str) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "127.0.0.1"),
            *extra.items()]


def h2_events(sock: socket.socket, client: h2.connection.H2Connection, within_s: float = 5.0) -> list:
    """Every HTTP/2 event the server sends until it closes the connection (or `within_s` passes)."""
    sock.settimeout(within_s)
    events: list = []
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline and (data := sock.recv(65536)):
            events += client.receive_data(data)
            sock.sendall(client.data_to_send())  # settings acks
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                break
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        pass
    return events


def test_prior_knowledge_can_open_no_stream(server) -> None:
    client = h2_client()
    client.initiate_connection()
    with connect(server) as sock:
        sock.sendall(client.data_to_send())
        # The server's first SETTINGS: no stream may be opened at all.
        sock.settimeout(5)
        events = client.receive_data(sock.recv(65536))
        settings = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
        assert settings.changed_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 0
        # A client that opens one anyway ends the connection; nothing is answered.
        raw = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        raw.initiate_connection()  # a client that ignores the limit: our own encoder, without the server's
        raw.clear_outbound_data_buffer()
        raw.send_headers(1, request_headers("/health"), end_stream=True)
        sock.sendall(raw.data_to_send())
        received = read_until_closed(sock)
    events = client.receive_data(received) if received else []
    assert not any(isinstance(e, h2.events.ResponseReceived) for e in events)


def test_rapid_reset_and_a_huge_header_block_reach_nothing(server, caplog) -> None:
    """3,000 HEADERS + RST_STREAM pairs and a 60 KB header block: the connection ends at the first frame, the
    app sees no request, and no header is decoded (hpack logs nothing even at DEBUG)."""
    client = h2_client()
    client.local_settings.max_concurrent_streams = 2 ** 31 - 1
    client.initiate_connection()
    for stream_id in range(1, 6001, 2):
        client.send_headers(stream_id, request_headers("/health"))
        client.reset_stream(stream_id)
    client.send_headers(6001, request_headers("/health", **{"x-big": "a" * 60_000}), end_stream=True)
    frames = client.data_to_send()
    caplog.set_level(logging.DEBUG)  # from here on, hpack could only log the server decoding
    started = time.monotonic()
    with connect(server) as sock:
        try:
            sock.sendall(frames)
        except (BrokenPipeError, ConnectionResetError):
            pass
        read_until_closed(sock)
    assert time.monotonic() - started < 3
    assert not [r for r in caplog.records if r.name == "app.request" and "/health" in r.getMessage()]
    assert not [r for r in caplog.records if r.name == "hpack.hpack"]  # no header block decoded


def test_an_h2c_upgrade_is_answered_505_and_opens_no_other_stream(server) -> None:
    settings_payload = h2_client()
    settings_payload.initiate_upgrade_connection()
    http2_settings = base64.urlsafe_b64encode(settings_payload.data_to_send()[9:]).rstrip(b"=")
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                     b"Upgrade: h2c\r\nHTTP2-Settings: " + http2_settings + b"\r\n\r\n")
        sock.settimeout(5)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        # Hypercorn answers the upgrade itself, before the app; the app refuses the stream it opened.
        assert head.startswith(b"HTTP/1.1 101")
        client = h2_client()
        client.initiate_upgrade_connection()
        sock.sendall(client.data_to_send())
        events = h2_events(sock, client, within_s=3)
        response = next(e for e in events if isinstance(e, h2.events.ResponseReceived))
        body = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived) and e.stream_id == 1)
        assert dict(response.headers)[":status"] == "505"
        assert json.loads(body)["error"]["code"] == "http_version_not_supported"
        assert client.remote_settings.max_concurrent_streams == 0


def test_an_http1_header_block_over_the_limit_is_refused_even_in_one_read(server) -> None:
    request = (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 30_000 + b"\r\n\r\n")
    with connect(server) as sock:
        sock.sendall(request)  # one write: the whole block is there at the first read
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"headers_too_large" in answer  # the app's answer: the server let the whole block through


def test_protocol_loggers_stay_at_warning_whatever_log_level_says() -> None:
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        configure_logging("DEBUG", "json")
        assert {name: logging.getLogger(name).getEffectiveLevel() for name in QUIET_LOGGERS} == dict.fromkeys(
            QUIET_LOGGERS, logging.WARNING)
        assert logging.getLogger("hypercorn.error").getEffectiveLevel() == logging.WARNING
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


async def test_a_debug_run_logs_no_jwt_token_or_cookie(fresh_cloud, tmp_path) -> None:
    """Every kind of request at LOG_LEVEL=DEBUG, as `python app.py` runs: a consent flow with its callback
    (cookies and all), stream, non-stream, AG-UI, models, bad and doubled credentials, HTTP/2 attempts that
    carry the JWT. Nothing a credential looks like reaches the log."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    fresh_cloud.register_return_url(f"{public}/callback")
    jwt = fresh_cloud.issue_user_jwt("debug-logger")
    log = tmp_path / "app.log"
    chat = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"Authorization": f"Bearer {jwt}"}
    env = fresh_cloud.env | {"LOG_LEVEL": "DEBUG", "APP_REDIRECT_URI": public, "AUTHORIZATION_TIMEOUT_SECONDS": "30"}
    with app_process(env, port=port, log_path=log) as base:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as http:
            async def approve(link: str) -> None:
                browser = LinkFollowingBrowser()
                consent = await browser.open(link)
                back = await browser.http.post(str(consent.url), data={"decision": "approve"}, follow_redirects=False)
                await browser.http.get(back.headers["location"], headers=auth)
                await browser.aclose()

            write = {**chat, "stream": True, "messages": [
                {"role": "user", "content": "帮我写入“debug”到钉钉文档，文档ID：docDebugLog"}]}
            async with http.stream("POST", f"{base}/openai/v1/chat/completions?sessionId=s1", json=write,
                                   headers=auth) as stream:
                async for line in stream.aiter_lines():
                    if "authorization_required" in line:
                        await approve(json.loads(line.removeprefix("data: "))["agent_event"]["url"])
            assert await document_content_at(fresh_cloud, "docDebugLog") == "debug"
            assert (await http.post(f"{base}/openai/v1/chat/completions", json=chat, headers=auth)).status_code == 200
            agui = {"threadId": "t", "runId": "r", "messages": [{"id": "1", "role": "user", "content": "hi"}],
                    "tools": [], "context": [], "state": {}, "forwardedProps": {}}
            assert (await http.post(f"{base}/ag-ui/agent", json=agui, headers=auth)).status_code == 200
            await http.get(f"{base}/openai/v1/models", headers=auth)
            await http.post(f"{base}/openai/v1/chat/completions", json=chat,
                            headers={"Authorization": f"Bearer {jwt}x"})
            await http.post(f"{base}/openai/v1/chat/completions", json=chat,
                            headers=[("Authorization", f"Bearer {jwt}"), ("Authorization", f"Bearer {jwt}")])
            await http.get(f"{base}/callback?state=x", headers={"Cookie": "__Host-session=cookie-secret-value-1"})
        client = h2_client()
        client.initiate_connection()
        client.send_headers(1, request_headers("/openai/v1/models", authorization=f"Bearer {jwt}",
                                               cookie="c=cookie-secret-value-2"), end_stream=True)
        with connect(base) as sock:
            sock.sendall(client.data_to_send())
            read_until_closed(sock)
        with connect(base) as sock:
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                         f"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nAuthorization: Bearer {jwt}\r\n"
                         "Cookie: c=cookie-secret-value-3\r\n\r\n".encode())
            time.sleep(0.5)
    written = log.read_text()
    assert '"level": "DEBUG"' in written  # the run did log at DEBUG
    for secret in (jwt, jwt.split(".")[1], "cookie-secret-value", "eyJ", "Bearer "):
        assert secret not in written, secret
