"""CORS for browser pages at the origins `CORS_ALLOW_ORIGINS` lists, with the headers OpenAI's own SDKs send.

The official `openai` npm package always sends its `X-Stainless-*` headers (and `OpenAI-Organization`,
`OpenAI-Project` when configured): a preflight that does not allow every one of them fails, and the browser
never sends the request. The list is the SDKs' (openai npm 7.x, openai-python 3.x), plus ours.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

STAINLESS_HEADERS = ("X-Stainless-Arch", "X-Stainless-Lang", "X-Stainless-OS", "X-Stainless-Package-Version",
                     "X-Stainless-Runtime", "X-Stainless-Runtime-Version", "X-Stainless-Retry-Count",
                     "X-Stainless-Timeout", "X-Stainless-Read-Timeout", "X-Stainless-Async",
                     "X-Stainless-Raw-Response", "X-Stainless-Helper-Method", "X-Stainless-Helper",
                     "X-Stainless-Poll-Helper", "X-Stainless-Custom-Poll-Interval")
ALLOW_HEADERS = ("Authorization", "Content-Type", "Accept", "X-AgentRun-Session-ID",
                 "X-app-custom-session-id", "Idempotency-Key", "OpenAI-Organization", "OpenAI-Project",
                 "OpenAI-Beta", *STAINLESS_HEADERS)
EXPOSE_HEADERS = ("x-request-id", "Retry-After", "Idempotent-Replayed")


def allow_browser_origins(app: FastAPI, origins: tuple[str, ...]) -> None:
    """CORS on for `origins` (nothing when empty), preflight included."""
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST"],
                           allow_headers=list(ALLOW_HEADERS), expose_headers=list(EXPOSE_HEADERS))
