"""The HTTP edge of both deployments met over raw sockets, as a hostile or sloppy client meets it: several
credentials in one request, answers sent before the body was read, a client that leaves mid-body, the
trailing-slash redirect and its Host header, the callback pages' browser headers, `/favicon.ico`."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from tests.app_server import serve_app
from tests.test_server_limits import connect, read_until_closed

CHAT = "/openai/v1/chat/completions"
BODY = json.dumps({"model": "qwen-plus", "messages": [{"role": "user", "content": "hello"}]}).encode()


@pytest.fixture(scope="module")
def server(cloud) -> Iterator[str]:
    with serve_app(cloud.env | {"LOG_LEVEL": "INFO"}) as base_url:
        yield base_url


def request(path: str, *headers: str, body: bytes = b"", method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
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
