"""server.failures.classify: wrapped and chained library errors still map to the right status, and an unknown
error is a 500 whose log line names types only (exception text can carry secrets)."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest
from langchain_openai.chat_models.base import OpenAIAPIError

from server.failures import classify

SECRET = "sk-do-not-log-me"


def model_response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://127.0.0.1/v1/chat/completions"))


def raised(exc: BaseException, *, cause: BaseException | None = None) -> BaseException:
    """`exc` as Python leaves it after `raise exc from cause` (traceback and chain filled in)."""
    try:
        raise exc from cause
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("status", [500, 503])
def test_langchain_wrapped_model_5xx_is_a_502(status):
    wrapped = OpenAIAPIError(message="boom", response=model_response(status), body=None)
    error = classify(raised(wrapped, cause=openai.InternalServerError("boom", response=model_response(status),
                                                                      body=None)))
    assert (error.status, error.code) == (502, "model_error")
    assert str(status) in error.message


def test_a_model_error_found_down_the_cause_chain():
    inner = raised(openai.APITimeoutError(request=model_response(500).request))
    outer = raised(RuntimeError(f"During task with name 'model' {SECRET}"), cause=inner)
    assert (classify(outer).status, classify(outer).code) == (504, "model_timeout")


def test_an_error_event_inside_the_model_stream_is_a_502_without_its_text():
    event = openai.APIError(f"overloaded {SECRET}", request=model_response(500).request, body={"code": "x"})
    error = classify(raised(RuntimeError("During task with name 'model'"), cause=raised(event)))
    assert (error.status, error.code) == (502, "model_error") and SECRET not in error.message


def test_an_upstream_status_on_any_http_error_is_a_502():
    error = classify(raised(httpx.HTTPStatusError("bad", request=model_response(503).request,
                                                  response=model_response(503))))
    assert (error.status, error.code) == (502, "upstream_error")


def test_an_unknown_error_is_a_500_logged_without_its_message(caplog):
    with caplog.at_level(logging.ERROR, logger="server.failures"):
        error = classify(raised(KeyError(SECRET), cause=raised(ValueError(SECRET))))
    assert (error.status, error.code, error.type) == (500, "internal_error", "server_error")
    assert SECRET not in error.message
    logged = "\n".join(r.getMessage() for r in caplog.records) + "".join(str(r.exc_info) for r in caplog.records)
    assert "KeyError <- ValueError" in logged and SECRET not in logged


def test_a_chain_that_loops_still_ends():
    first, second = ValueError("a"), TypeError("b")
    first.__context__, second.__context__ = second, first
    assert classify(first).status == 500
