"""`POST /ag-ui/agent`: the same agent as the chat route, over the AG-UI event protocol (docs.ag-ui.com),
where the upstream sample's server (agentrun-sdk `AgentRunServer`) serves it.

Same caller authentication, same identity binding and same waiting for consent as the chat route; the body is
AG-UI's `RunAgentInput` (server/agui_input.py) and the answer is always a stream of AG-UI events
(server/agui_stream.py). Errors before the stream are the chat route's HTTP statuses with an OpenAI-shaped
error body (401, 400 naming the field, 413, and 429/502/504 when the model fails before any output); a failure
after the stream started is a `RUN_ERROR` event.
"""

from __future__ import annotations

from ag_ui.core import RunAgentInput
from fastapi import Request
from fastapi.responses import Response

from agent.graph import RunOptions
from server.agui_input import parse_run_input, to_langchain_messages
from server.agui_stream import AgUiStream
from server.chunks import SSE_HEADERS
from server.request_body import body_openapi
from server.run_scope import AgentRoute, outcome_logger, request_scope
from server.streaming import EventStreamResponse, RunOutcome

AGUI_PATH = "/ag-ui/agent"

AGUI_OPENAPI = body_openapi(
    AGUI_PATH, RunAgentInput, "AG-UI events (server-sent events) from `RUN_STARTED` to `RUN_FINISHED` or "
    "`RUN_ERROR`.", ("text/event-stream",))


class AgUiAgent(AgentRoute):
    """The AG-UI route."""

    async def handle(self, request: Request) -> Response:
        entry, caller, run = await self.admit(request, parse_run_input)
        entry.session_id = entry.session_id or run.thread_id  # AG-UI's conversation is its thread
        entry.model, entry.stream = self.provider.settings.model_name, True
        outcome = RunOutcome()

        async def answer() -> Response:
            items = self.runner.run(to_langchain_messages(run), RunOptions(model=entry.model),
                                    request_scope(caller, entry, wait_for_authorization=True),
                                    self.keepalive_seconds)
            return EventStreamResponse(items, AgUiStream(run.thread_id, run.run_id, entry.model),
                                       outcome=outcome, headers=SSE_HEADERS, on_close=outcome_logger(entry),
                                       shutdown=self.shutdown)

        return await self.once(request, caller, run, outcome, answer)
