"""Raw sockets to a local server, for what an HTTP client would hide (header framing, closing)."""

from __future__ import annotations

import socket


def connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def read_until_closed(sock: socket.socket, within_s: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection (fails if it has not within `within_s`)."""
    sock.settimeout(within_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received
