"""Errors in the OpenAI shape: what every refusal and failure of the API answers with; and `describe`, an
exception as a log may show it.

Only messages written in server/ (or an `IdentityError.safe_message`) reach the client: exception text from
SDKs can carry URLs, request ids or credentials, so it is never echoed (server/failures.py maps them).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


@dataclass
class ApiError(Exception):
    """An error response: HTTP status plus the OpenAI `error` object."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] | None = None  # e.g. Retry-After

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        """This error as an HTTP response, with its own headers and any `headers` added."""
        return JSONResponse(self.body(), status_code=self.status,
                            headers={**(self.headers or {}), **(headers or {})})


async def http_error(_: Request, error: Exception) -> Response:
    """Unknown paths and unserved methods (Starlette's HTTPException) in the OpenAI shape, with the
    exception's headers (405's Allow): the handler of every app here, the agent's and the callback's."""
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
    api = ApiError(error.status_code, str(error.detail), "invalid_request_error", code)
    return api.response(headers=error.headers)


def describe(exc: BaseException) -> str:
    """Exception types and where the innermost was raised, without messages (they can carry secrets)."""
    names = " <- ".join(type(link).__qualname__ for link in chain(exc))
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{names} at {frames[-1].filename}:{frames[-1].lineno}" if frames else names


def chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what caused it, then what that was handling, ... (each once: chains can loop)."""
    links: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and not any(link is seen for seen in links):
        links.append(link)
        link = link.__cause__ or link.__context__
    return links
