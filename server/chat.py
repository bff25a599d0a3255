"""`POST /openai/v1/chat/completions`: read and check the request, authenticate the caller, bind the identity
context, run the agent, and answer as one `chat.completion` or as server-sent `chat.completion.chunk`s."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from agent.graph import RunOptions
from server.chunks import SSE_HEADERS, ChatCompletionStream, CompletionWriter
from server.request_body import parse_body, read_body
from server.request_log import RequestLog
from server.run_scope import AgentRoute, outcome_logger, request_scope, session_id
from server.schemas import ChatCompletionRequest, parse_request, to_langchain_messages
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


class ChatCompletions(AgentRoute):
    """The chat route."""

    async def handle(self, request: Request) -> Response:
        entry: RequestLog = request.state.request_log
        entry.session_id = session_id(request)
        caller = await self.identity.authenticate(request.headers.get("authorization"))
        entry.sub = caller.sub
        chat = parse_body(await read_body(request, self.max_request_bytes), parse_request)
        known = await self.provider.model_names()
        model = chat.model if chat.model in known else self.provider.settings.model_name
        entry.model, entry.stream = model, chat.streamed
        options = RunOptions(model=model, temperature=chat.temperature, max_tokens=chat.token_limit,
                             stop=chat.stop_sequences, seed=chat.seed)

        writer, outcome, log_outcome = CompletionWriter(model=model), RunOutcome(), outcome_logger(entry)
        items = self.runner.run(to_langchain_messages(chat.messages), options,
                                request_scope(caller, entry, wait_for_authorization=chat.streamed),
                                self.keepalive_seconds if chat.streamed else None)
        if not chat.streamed:
            try:
                return JSONResponse(await collect(items, writer, outcome))
            finally:
                log_outcome(outcome)
        return EventStreamResponse(items, ChatCompletionStream(writer, chat.include_usage), outcome=outcome,
                                   headers=SSE_HEADERS, on_close=log_outcome)
