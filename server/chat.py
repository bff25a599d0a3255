"""`POST /openai/v1/chat/completions`: read and check the request, authenticate the caller, bind the identity
context, run the agent, and answer as one `chat.completion` or as server-sent `chat.completion.chunk`s."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from agent.graph import RunOptions
from identity.context import Caller
from server.chunks import SSE_HEADERS, ChatCompletionStream, CompletionWriter
from server.request_body import body_openapi
from server.request_log import RequestLog
from server.run_scope import AgentRoute, outcome_logger, request_scope
from server.schemas import ChatCompletionRequest, parse_request, to_langchain_messages
from server.streaming import EventStreamResponse, RunOutcome, collect

CHAT_PATH = "/openai/v1/chat/completions"

CHAT_OPENAPI = body_openapi(
    CHAT_PATH, ChatCompletionRequest, "A `chat.completion`; with `stream: true`, `chat.completion.chunk` "
    "events (server-sent events) ending in `data: [DONE]`.", ("application/json", "text/event-stream"))


class ChatCompletions(AgentRoute):
    """The chat route."""

    async def handle(self, request: Request) -> Response:
        entry, caller, chat = await self.admit(request, parse_request)
        outcome = RunOutcome()
        return await self.once(request, caller, chat, outcome,
                               lambda: self.answer(entry, caller, chat, outcome))

    async def answer(self, entry: RequestLog, caller: Caller, chat: ChatCompletionRequest,
                     outcome: RunOutcome) -> Response:
        known = self.provider.model_names()
        model = chat.model if chat.model in known else self.provider.settings.model_name
        entry.model, entry.stream = model, chat.streamed
        options = RunOptions(model=model, temperature=chat.temperature, max_tokens=chat.token_limit,
                             stop=chat.stop_sequences, seed=chat.seed)

        writer, log_outcome = CompletionWriter(model=model), outcome_logger(entry)
        items = self.runner.run(to_langchain_messages(chat.messages), options,
                                request_scope(caller, entry, wait_for_authorization=chat.streamed),
                                self.keepalive_seconds if chat.streamed else None)
        if not chat.streamed:
            try:
                return JSONResponse(await collect(items, writer, outcome))
            finally:
                log_outcome(outcome)
        return EventStreamResponse(items, ChatCompletionStream(writer, chat.include_usage), outcome=outcome,
                                   headers=SSE_HEADERS, on_close=log_outcome, shutdown=self.shutdown)
