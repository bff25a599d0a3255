"""Errors in the OpenAI shape, and the mapping from what can go wrong in a run to a status and safe message.

Only messages written here (or an `IdentityError.safe_message`) reach the client: exception text from SDKs can
carry URLs, request ids or credentials, so it is never echoed.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import openai
from starlette.responses import JSONResponse

from agent.model import ModelUnavailable
from identity.errors import IdentityError
from outbound import untrusted_certificate

log = logging.getLogger(__name__)


@dataclass
class ApiError(Exception):
    """An error response: HTTP status plus the OpenAI `error` object."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] | None = None  # e.g. Retry-After, x-should-retry

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def response(self, headers: Mapping[str, str] | None = None) -> JSONResponse:
        """This error as an HTTP response, with its own headers and any `headers` added."""
        return JSONResponse(self.body(), status_code=self.status,
                            headers={**(self.headers or {}), **(headers or {})})


def classify(exc: BaseException) -> ApiError:
    """The client-facing error for an exception raised while running the agent.

    Libraries wrap errors (langchain_openai re-raises `openai.InternalServerError` as its own subclass,
    LangGraph may chain them), so the whole `__cause__`/`__context__` chain is searched for something we
    recognise.
    """
    # openai's aiohttp client reports it as a connect *timeout*: say what it is
    if untrusted_certificate(exc):
        log.warning("the model's endpoint presented a TLS certificate this agent does not trust (a private "
                    "CA must be named in SSL_CERT_FILE)")
        return ApiError(502, "The model could not be reached.", "upstream_error", "model_unreachable")
    for link in _chain(exc):
        known = _classify_one(link)
        if known is not None:
            return known
    log.error("unexpected error in agent run: %s", describe(exc))
    return ApiError(500, "The agent failed unexpectedly.", "server_error", "internal_error")


def describe(exc: BaseException) -> str:
    """Exception types and where the innermost was raised, without messages (they can carry secrets)."""
    names = " <- ".join(type(link).__qualname__ for link in _chain(exc))
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{names} at {frames[-1].filename}:{frames[-1].lineno}" if frames else names


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what caused it, then what that was handling, ... (each once: chains can loop)."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and not any(link is seen for seen in chain):
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def _classify_one(exc: BaseException) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelUnavailable):
        return ApiError(502, str(exc), "upstream_error", "model_unavailable")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ApiError(504, "The model did not answer in time.", "upstream_error", "model_timeout")
    return _classify_openai(exc) or _classify_identity(exc) or _classify_status(exc)


def _classify_openai(exc: BaseException) -> ApiError | None:
    if isinstance(exc, openai.APITimeoutError):
        return ApiError(504, "The model did not answer in time.", "upstream_error", "model_timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ApiError(502, "The model could not be reached.", "upstream_error", "model_unreachable")
    if isinstance(exc, openai.APIStatusError):
        return _model_status_error(exc.status_code, exc.response.headers.get("retry-after"))
    if isinstance(exc, openai.APIError):  # an error event inside a stream that had started well
        log.warning("model stream ended with an error event")
        return ApiError(502, "The model reported an error while answering.", "upstream_error", "model_error")
    return None


def _classify_status(exc: BaseException) -> ApiError | None:
    """Any other HTTP client error that carries the upstream status (e.g. `httpx.HTTPStatusError`)."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    if not isinstance(status, int) or not 400 <= status <= 599:
        return None
    log.warning("upstream call returned HTTP %s", status)
    return ApiError(502, f"An upstream service returned an error (HTTP {status}).", "upstream_error",
                    "upstream_error")


def _model_status_error(status: int, retry_after: str | None = None) -> ApiError:
    """What the client should do: a rate-limited model is a 429 to retry later (with the model's
    Retry-After), a request the model refused is the client's 400, anything else a 502."""
    log.warning("model returned HTTP %s", status)
    if status == 429:
        seconds = retry_after if retry_after and retry_after.isdigit() else "1"
        return ApiError(429, "The model is rate-limited; retry after a moment.", "rate_limit_error",
                        "model_rate_limited", headers={"Retry-After": seconds})
    if status in (400, 422):
        return ApiError(400, "The model rejected the request (e.g. it is too long or a parameter is out of "
                        "range).", "invalid_request_error", "model_bad_request")
    return ApiError(502, f"The model returned an error (HTTP {status}).", "upstream_error", "model_error")


def _classify_identity(exc: BaseException) -> ApiError | None:
    if not isinstance(exc, IdentityError):
        return None
    status = exc.http_status if exc.http_status >= 400 else 502
    error_type = "authentication_error" if status == 401 else "upstream_error" if status >= 500 else \
        "invalid_request_error"
    return ApiError(status, exc.safe_message, error_type, exc.code)
