"""Errors in the OpenAI shape, and the mapping from what can go wrong in a run to a status and safe message.

Only messages written here (or an `IdentityError.safe_message`) reach the client: exception text from SDKs can
carry URLs, request ids or credentials, so it is never echoed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class ApiError(Exception):
    """An error response: HTTP status plus the OpenAI `error` object."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def classify(exc: BaseException) -> ApiError:
    """The client-facing error for an exception raised while running the agent."""
    if isinstance(exc, ApiError):
        return exc
    from agent.model import ModelUnavailable

    if isinstance(exc, ModelUnavailable):
        return ApiError(502, str(exc), "upstream_error", "model_unavailable")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ApiError(504, "The model did not answer in time.", "upstream_error", "model_timeout")
    openai_error = _classify_openai(exc)
    if openai_error is not None:
        return openai_error
    identity_error = _classify_identity(exc)
    if identity_error is not None:
        return identity_error
    log.error("unexpected error in agent run", exc_info=exc)
    return ApiError(500, "The agent failed unexpectedly.", "server_error", "internal_error")


def _classify_openai(exc: BaseException) -> ApiError | None:
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ApiError(504, "The model did not answer in time.", "upstream_error", "model_timeout")
    if isinstance(exc, openai.APIConnectionError):
        return ApiError(502, "The model could not be reached.", "upstream_error", "model_unreachable")
    if isinstance(exc, openai.APIStatusError):
        log.warning("model returned HTTP %s", exc.status_code)
        return ApiError(502, f"The model returned an error (HTTP {exc.status_code}).", "upstream_error",
                        "model_error")
    return None


def _classify_identity(exc: BaseException) -> ApiError | None:
    from identity.errors import IdentityError

    if not isinstance(exc, IdentityError):
        return None
    status = exc.http_status if exc.http_status >= 400 else 502
    error_type = "authentication_error" if status == 401 else "upstream_error" if status >= 500 else \
        "invalid_request_error"
    return ApiError(status, exc.safe_message, error_type, exc.code)
