"""What can go wrong in an agent run, mapped to a status and a safe message (`classify`), and the error
handlers that answer a route's errors in the OpenAI shape (`install_error_handlers`).

Libraries wrap errors (langchain_openai re-raises `openai.InternalServerError` as its own subclass, LangGraph
may chain them), so the whole `__cause__`/`__context__` chain is searched for something recognised. The
exception's own text never reaches the client or the log: it can carry URLs, request ids or credentials.
"""

from __future__ import annotations

import asyncio
import logging

import openai
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.model import ModelUnavailable
from identity.errors import IdentityError
from outbound import untrusted_certificate
from server.errors import ApiError, chain, describe, http_error

log = logging.getLogger(__name__)


def classify(exc: BaseException) -> ApiError:
    """The client-facing error for an exception raised while running the agent (the first link of its chain
    that is recognised; else a 500)."""
    # openai's aiohttp client reports it as a connect *timeout*: say what it is
    if untrusted_certificate(exc):
        log.warning("the model's endpoint presented a TLS certificate this agent does not trust (a private "
                    "CA must be named in SSL_CERT_FILE)")
        return ApiError(502, "The model could not be reached.", "upstream_error", "model_unreachable")
    for link in chain(exc):
        known = _classify_one(link)
        if known is not None:
            return known
    log.error("unexpected error in agent run: %s", describe(exc))
    return ApiError(500, "The agent failed unexpectedly.", "server_error", "internal_error")


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
    # RFC 6750 section 3: a 401 names the scheme the client must use.
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ApiError(status, exc.safe_message, error_type, exc.code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error a route raises, in the OpenAI shape, with its code in the request's log line."""

    async def api_error(request: Request, error: Exception) -> Response:
        api = error if isinstance(error, ApiError) else classify(error)
        request.state.request_log.error = api.code
        return api.response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(IdentityError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
