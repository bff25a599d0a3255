"""The HTTP edge of both deployments met over raw sockets, as a hostile or sloppy client meets it: several
credentials in one request, answers sent before the body was read, a client that leaves mid-body, the
trailing-slash redirect and its Host header, the callback pages' browser headers, `/favicon.ico`."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from sandbox.process import app_process, free_port
from tests.support.app_server import serve_app
from tests.support.sockets import connect, read_until_closed

CHAT = "/openai/v1/chat/completions"
BODY = json.dumps({"model": "qwen-plus", "messages": [{"role": "user", "content": "hello"}]}).encode()


@pytest.fixture(scope="module")
def server(cloud) -> Iterator[str]:
    with serve_app(cloud.env | {"LOG_LEVEL": "INFO"}) as base_url:
        yield base_url


def request(path: str, *headers: str, body: bytes = b"", method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if method == "GET":
        lines.append("Connection: close")
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(base_url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a new connection, read until the server closes it (every answer here must close, or
    carry Connection: close), and parse the one response."""
    with connect(base_url) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        return parse(read_until_closed(sock))


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("authorization", [
    ("Authorization: Bearer {jwt}", "Authorization: Bearer {other}"),
    ("Authorization: Bearer {jwt}", "Authorization: Bearer {jwt}"),
    ("Authorization: Bearer {jwt}, Bearer {other}",),
    ("Authorization: Bearer {jwt} {other}",),
], ids=["two-headers", "the-same-header-twice", "comma-list", "two-tokens"])
def test_more_than_one_credential_is_a_400(cloud, server, authorization) -> None:
    jwt, other = cloud.issue_user_jwt("edge-first"), cloud.issue_user_jwt("edge-second")
    headers = [line.format(jwt=jwt, other=other) for line in authorization]
    status, response_headers, body = exchange(server, request(CHAT, *headers, body=BODY))
    error = json.loads(body)["error"]
    assert status == 400 and (error["code"], error["param"]) == ("multiple_credentials", "authorization")
    assert response_headers["connection"] == "close"  # answered before the body was read


def test_one_credential_still_passes(cloud, server) -> None:
    """The check counts credentials, nothing else: one valid token gets the answer."""
    jwt = cloud.issue_user_jwt("edge-single")
    status, _, body = exchange(server, request(CHAT, f"Authorization: Bearer {jwt}", "Connection: close",
                                               body=BODY))
    assert status == 200 and json.loads(body)["object"] == "chat.completion"


@pytest.fixture(scope="module")
def callback(cloud, tmp_path_factory) -> Iterator[str]:
    """The callback deployment as production runs it: `python app.py callback`, its own process."""
    port = free_port()
    env = {name: value for name, value in cloud.env.items()
           if not name.startswith(("MODEL_", "DINGTALK_", "AGENT_IDENTITY_WORKLOAD"))}
    with app_process({**env, "APP_REDIRECT_URI": f"http://127.0.0.1:{port}"}, "callback", port=port,
                     log_path=tmp_path_factory.mktemp("callback") / "callback.log") as base_url:
        yield base_url


def test_401_names_the_bearer_scheme_and_closes_the_unread_body(server) -> None:
    head = request(CHAT, "Content-Length: 100000", body=b"")
    with connect(server) as sock:  # the body is announced, and only its start is sent
        sock.sendall(head.replace(b"Content-Length: 0\r\n", b"") + BODY[:20])
        status, headers, body = parse(read_until_closed(sock))
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert headers["connection"] == "close" and json.loads(body)["error"]["type"] == "authentication_error"


def test_413_closes_the_connection_before_the_body(cloud, server) -> None:
    head = request(CHAT, f"Authorization: Bearer {cloud.issue_user_jwt('edge-large')}",
                   "Content-Length: 5000000", body=b"")
    with connect(server) as sock:
        sock.sendall(head.replace(b"Content-Length: 0\r\n", b"") + b'{"messages": [')
        status, headers, body = parse(read_until_closed(sock))
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "request_too_large"


def test_an_answer_after_the_whole_body_keeps_the_connection(cloud, server) -> None:
    """Only an answer that leaves the body unread closes: a 400 for a body read to its end keeps the
    connection, and the next request on it is answered."""
    jwt = cloud.issue_user_jwt("edge-keep")
    with connect(server) as sock:
        sock.sendall(request(CHAT, f"Authorization: Bearer {jwt}", body=b"not json")
                     + request("/health", method="GET"))
        sock.settimeout(5)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < 2 and (chunk := sock.recv(65536)):
            answers += chunk
    first, second = answers.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"400") and b"connection: close" not in first.lower()
    assert second.startswith(b"200")


def test_a_client_leaving_mid_body_is_client_disconnected_at_info(cloud, server, caplog) -> None:
    caplog.set_level(logging.INFO)
    head = request(CHAT, f"Authorization: Bearer {cloud.issue_user_jwt('edge-leaver')}", "Content-Length: 10000",
                   "X-Request-Id: edge-leaver-1", body=b"")
    with connect(server) as sock:
        sock.sendall(head.replace(b"Content-Length: 0\r\n", b"") + b'{"messages": [')
        time.sleep(0.3)  # the app is reading the body
    for _ in range(100):
        lines = [r for r in caplog.records if r.name == "app.request" and "edge-leaver-1" in r.getMessage()]
        if lines:
            break
        time.sleep(0.05)
    (line,) = lines
    assert line.levelno == logging.INFO and line.fields["error"] == "client_disconnected"
    assert line.fields["status"] == 499
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("deployment", ["server", "callback"])
@pytest.mark.parametrize("path", ["/health/", "/callback/signed-in/"])
def test_a_trailing_slash_never_redirects_to_the_host_header(request_fixture, deployment, path) -> None:
    base_url = request_fixture.getfixturevalue(deployment)
    status, headers, body = exchange(base_url, request(path, "Host: evil.example", method="GET").replace(
        b"Host: 127.0.0.1\r\n", b""))
    assert "location" not in headers and b"evil.example" not in body
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


@pytest.fixture
def request_fixture(request):
    return request


@pytest.mark.parametrize("deployment", ["server", "callback"])
def test_callback_pages_send_the_browser_headers(request_fixture, deployment) -> None:
    base_url = request_fixture.getfixturevalue(deployment)
    status, headers, body = exchange(base_url, request("/callback?state=forged", method="GET"))
    assert status == 400 and b"<!doctype html>" in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("deployment", ["server", "callback"])
def test_favicon_is_an_empty_answer_not_an_api_error(request_fixture, deployment) -> None:
    base_url = request_fixture.getfixturevalue(deployment)
    status, headers, body = exchange(base_url, request("/favicon.ico", method="GET"))
    assert status == 204 and body == b"" and "max-age" in headers["cache-control"]


def test_cors_for_every_origin_is_a_warning_at_start_up(cloud, tmp_path) -> None:
    log = tmp_path / "app.log"
    with app_process(cloud.env | {"CORS_ALLOW_ORIGINS": "*", "LOG_LEVEL": "INFO"}, port=free_port(),
                     log_path=log):
        started = log.read_text()
    lines = [json.loads(line) for line in started.splitlines() if line.startswith("{")]
    warning = next(line for line in lines if "CORS_ALLOW_ORIGINS=*" in line.get("message", ""))
    assert warning["level"] == "WARNING"


def test_the_callback_deployment_refuses_two_credentials_too(cloud, callback) -> None:
    jwt = cloud.issue_user_jwt("edge-callback")
    status, _, body = exchange(callback, request("/callback?state=x", f"Authorization: Bearer {jwt}",
                                                 f"Authorization: Bearer {jwt}", method="GET"))
    assert status == 400 and json.loads(body)["error"]["code"] == "multiple_credentials"


def test_a_client_s_next_request_after_an_early_401_succeeds(server) -> None:
    """A real client sends a large body, gets the 401 before it is read, and goes on: the connection was
    closed, so its next requests go on a new one."""
    with httpx.Client(timeout=10) as http:
        answers = [http.post(f"{server}{CHAT}", content=b"x" * 900_000,
                             headers={"Content-Type": "application/json"}) for _ in range(3)]
        health = http.get(f"{server}/health")
    assert [a.status_code for a in answers] == [401, 401, 401] and health.status_code == 200
    assert all(a.headers["connection"] == "close" for a in answers)
