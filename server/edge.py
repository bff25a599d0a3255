"""What both deployments (the agent and the callback) enforce on every request before a route sees it:
HTTP/1.x only, a header block within `MAX_HEADER_BYTES` however it arrived, one credential per request, and an
answer that leaves before the body was read closes the connection.

The HTTP server bounds only a header block that is still incomplete (`h11_max_incomplete_size`): one that
arrives whole in a single read passes it, so its size is checked again here. A request over HTTP/2 can only be
the one an `Upgrade: h2c` opened (server/serving.py allows no other stream): it gets a 505.

Several `Authorization` headers (or several tokens in one) are refused outright: which one a server or a
gateway reads is up to each of them, and with `INBOUND_JWT_VERIFY=off` behind a gateway that checked another
one, reading the first would be impersonation.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError

CLOSE = (b"connection", b"close")


def ambiguous_credentials() -> ApiError:
    return ApiError(400, "The request carries more than one credential: send exactly one "
                    "`Authorization: Bearer <token>` header with one token.", "invalid_request_error",
                    "multiple_credentials", "authorization")


def has_many_credentials(headers: list[tuple[bytes, bytes]]) -> bool:
    """More than one `Authorization` header, or one that holds more than one credential (a comma list, or
    extra words after the token)."""
    values = [value for name, value in headers if name.lower() == b"authorization"]
    if len(values) > 1:
        return True
    if not values:
        return False
    _, _, credentials = values[0].strip().partition(b" ")
    credentials = credentials.strip()
    return b"," in credentials or any(space in credentials for space in (b" ", b"\t"))


def http_version_refused() -> ApiError:
    return ApiError(505, "This server speaks HTTP/1.1 only.", "invalid_request_error",
                    "http_version_not_supported")


def headers_too_large(limit: int) -> ApiError:
    return ApiError(431, f"The request line and headers are larger than {limit} bytes.",
                    "invalid_request_error", "headers_too_large")


def header_block_bytes(scope: Scope) -> int:
    """The request line and headers as they were on the wire, give or take a space."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"") + 1
    line = len(scope["method"]) + target + len(" HTTP/1.1\r\n")
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


def body_expected(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request has a body to read (a chunked one, or a non-zero Content-Length)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            return True
        if lowered == b"content-length" and value.strip() not in (b"", b"0"):
            return True
    return False


class HttpEdge:
    """Refuses a request with several credentials (400), and adds `Connection: close` to any answer that
    starts before the request body was read to its end (a 401 or 413 sent early): the server would otherwise
    have to drain a body nobody wants, and a client that pipelines its next request behind it would see it
    fail."""

    def __init__(self, app: ASGIApp, max_header_bytes: int) -> None:
        self.app, self.max_header_bytes = app, max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("http_version") not in ("1.0", "1.1"):
            await http_version_refused().response()(scope, receive, send)  # HTTP/2 has no Connection header
            return
        body_read = not body_expected(scope["headers"])

        async def receive_tracked() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True
            return message

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, CLOSE]}
            await send(message)

        if header_block_bytes(scope) > self.max_header_bytes:
            body_read = False  # whatever follows is not read: close
            await headers_too_large(self.max_header_bytes).response()(scope, receive_tracked, send_closing)
            return
        if has_many_credentials(scope["headers"]):
            await ambiguous_credentials().response()(scope, receive_tracked, send_closing)
            return
        await self.app(scope, receive_tracked, send_closing)
