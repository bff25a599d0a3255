"""`POST /ag-ui/agent`: the same agent as the chat route, over the AG-UI event protocol (docs.ag-ui.com), where
the upstream sample's server (agentrun-sdk `AgentRunServer`) serves it.

Same caller authentication, same identity binding and same waiting for consent as the chat route; the body is
AG-UI's `RunAgentInput` (server/agui_input.py) and the answer is always a stream of AG-UI events
(server/agui_stream.py). Errors before the stream are the chat route's HTTP statuses with an OpenAI-shaped
error body (401, 400 naming the field, 413, and 429/502/504 when the model fails before any output); a failure
after the stream started is a `RUN_ERROR` event.
"""

from __future__ import annotations

from typing import Any

from ag_ui.core import RunAgentInput
from fastapi import Request
from fastapi.responses import Response

from agent.graph import RunOptions
from server.agui_input import parse_run_input, to_langchain_messages
from server.agui_stream import AgUiStream
from server.chunks import SSE_HEADERS
from server.request_body import parse_body, read_body
from server.request_log import RequestLog
from server.run_scope import AgentRoute, outcome_logger, request_scope, session_id
from server.streaming import EventStreamResponse, RunOutcome

AGUI_PATH = "/ag-ui/agent"

# Published as the chat route's body is (server/chat.py): the route reads its own body.
AGUI_OPENAPI: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        **RunAgentInput.model_json_schema(
            ref_template="#/paths/~1ag-ui~1agent/post/requestBody/content/application~1json/schema/$defs/{model}")
    }}}},
    "responses": {
        "200": {"description": "AG-UI events (server-sent events) from `RUN_STARTED` to `RUN_FINISHED` or "
                               "`RUN_ERROR`.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        "400": {"description": "Invalid JSON, an invalid field, or client `tools` (`error.param` names it)."},
        "401": {"description": "Missing or invalid bearer token."},
        "413": {"description": "The body is larger than MAX_REQUEST_BYTES."},
        "502": {"description": "The model or an upstream service failed before any output."},
        "504": {"description": "The model did not answer in time."},
    },
}


class AgUiAgent(AgentRoute):
    """The AG-UI route."""

    async def handle(self, request: Request) -> Response:
        entry: RequestLog = request.state.request_log
        entry.session_id = session_id(request)
        caller = await self.identity.authenticate(request.headers.get("authorization"))
        entry.sub = caller.sub
        run = parse_body(await read_body(request, self.max_request_bytes), parse_run_input)
        entry.session_id = entry.session_id or run.thread_id  # AG-UI's conversation is its thread
        entry.model, entry.stream = self.provider.settings.model_name, True
        items = self.runner.run(to_langchain_messages(run), RunOptions(model=entry.model),
                                request_scope(caller, entry, wait_for_authorization=True), self.keepalive_seconds)
        return EventStreamResponse(items, AgUiStream(run.thread_id, run.run_id, entry.model), outcome=RunOutcome(),
                                   headers=SSE_HEADERS, on_close=outcome_logger(entry))
