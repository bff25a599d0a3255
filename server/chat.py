"""`POST /openai/v1/chat/completions`: read and check the request, authenticate the caller, bind the identity
context, run the agent, and answer as one `chat.completion` or as server-sent `chat.completion.chunk`s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from agent.graph import RunOptions
from agent.model import ModelProvider
from agent.runner import AgentRunner, Emit
from identity.context import RequestContext, bind_request_context, reset_request_context
from identity.service import AgentIdentity
from server.chunks import SSE_HEADERS, CompletionWriter
from server.errors import ApiError
from server.request_log import RequestLog
from server.schemas import ChatCompletionRequest, RequestInvalid, parse_request, to_langchain_messages
from server.shutdown import Shutdown
from server.streaming import EventStreamResponse, RunOutcome, collect

CHAT_PATH = "/openai/v1/chat/completions"

# The route reads its own body (the size limit applies before parsing, and errors name the field in the
# OpenAI shape), so its body schema is published through FastAPI's `openapi_extra`.
CHAT_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        **ChatCompletionRequest.model_json_schema(
            ref_template="#/paths/~1openai~1v1~1chat~1completions/post/requestBody/content/application~1json/"
                         "schema/$defs/{model}")}}}},
    "responses": {
        "200": {"description": "A `chat.completion`; with `stream: true`, `chat.completion.chunk` events "
                               "(server-sent events) ending in `data: [DONE]`.",
                "content": {"application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}}}},
        "400": {"description": "Invalid JSON or an invalid field (`error.param` names it)."},
        "401": {"description": "Missing or invalid bearer token."},
        "413": {"description": "The body is larger than MAX_REQUEST_BYTES."},
        "502": {"description": "The model or an upstream service failed before any output."},
        "504": {"description": "The model did not answer in time."},
    },
}


class ChatCompletions:
    """The chat route's handler, bound to the process's identity service, model and agent runner."""

    def __init__(self, identity: AgentIdentity, provider: ModelProvider, runner: AgentRunner, *,
                 max_request_bytes: int, keepalive_seconds: float, shutdown: Shutdown | None = None) -> None:
        self.identity, self.provider, self.runner, self.shutdown = identity, provider, runner, shutdown
        self.max_request_bytes = max_request_bytes
        self.keepalive_seconds = keepalive_seconds

    async def handle(self, request: Request) -> Response:
        entry: RequestLog = request.state.request_log
        entry.session_id = session_id(request)
        caller = await self.identity.authenticate(request.headers.get("authorization"))
        entry.sub = caller.sub
        chat = _parse(await read_body(request, self.max_request_bytes))
        known = await self.provider.model_names()
        model = chat.model if chat.model in known else self.provider.settings.model_name
        entry.model, entry.stream = model, chat.streamed
        options = RunOptions(model=model, temperature=chat.temperature, max_tokens=chat.token_limit,
                             stop=chat.stop_sequences, seed=chat.seed)

        @contextmanager
        def request_scope(emit: Emit) -> Iterator[None]:
            context = RequestContext(caller=caller, request_id=entry.request_id, session_id=entry.session_id,
                                     emit=emit, wait_for_authorization=chat.streamed)
            token = bind_request_context(context)
            try:
                yield
            finally:
                reset_request_context(token)

        def log_outcome(outcome: RunOutcome) -> None:
            entry.tokens = outcome.usage.as_dict() if outcome.usage else None
            entry.error = entry.error or outcome.error_code
            entry.record_events(outcome.events)

        writer, outcome = CompletionWriter(model=model), RunOutcome()
        items = self.runner.run(to_langchain_messages(chat.messages), options, request_scope,
                                self.keepalive_seconds if chat.streamed else None)
        if not chat.streamed:
            try:
                return JSONResponse(await collect(items, writer, outcome))
            finally:
                log_outcome(outcome)
        return EventStreamResponse(items, writer, include_usage=chat.include_usage, outcome=outcome,
                                   headers=SSE_HEADERS, on_close=log_outcome, shutdown=self.shutdown)


def session_id(request: Request) -> str | None:
    """The client's session: `?sessionId=` or the `X-AgentRun-Session-ID` header (AgentRun's own), or the
    `X-app-custom-session-id` header (what the Agent Identity sample's clients send)."""
    return (request.query_params.get("sessionId") or request.headers.get("x-agentrun-session-id")
            or request.headers.get("x-app-custom-session-id"))


def _parse(raw: bytes) -> ChatCompletionRequest:
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.", "invalid_request_error", "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply.", "invalid_request_error",
                       "invalid_json") from None
    try:
        return parse_request(body)
    except RequestInvalid as invalid:
        raise ApiError(400, str(invalid), "invalid_request_error", "invalid_value", invalid.param) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes while reading (a chunked body has no Content-Length)."""
    too_large = ApiError(413, f"Request body is larger than {limit} bytes.", "invalid_request_error",
                         "request_too_large")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)
