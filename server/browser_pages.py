"""What a browser gets from the callback's pages, which users open from a link: headers that keep the page
from being framed (clickjacking the consent), sniffed, or leaking its URL (it carries the sealed state) to
anyone it links to; and an empty answer for the `/favicon.ico` every browser asks for, instead of an API
error."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAVICON_PATH = "/favicon.ico"

# The pages are static HTML with one inline style, no script, no form, no image.
PAGE_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
     b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class BrowserPages:
    """Adds `PAGE_HEADERS` to every response under `prefix` (`/callback` in the agent, everything in the
    callback deployment) and answers `/favicon.ico` with a cacheable 204."""

    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == FAVICON_PATH and scope["method"] in ("GET", "HEAD"):
            await send({"type": "http.response.start", "status": 204,
                        "headers": [(b"cache-control", b"public, max-age=86400")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if not path.startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in PAGE_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *PAGE_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
