"""The model's text, straight from the model call to the response.

A LangChain callback on the agent's model call puts each text token on the run's queue as it is parsed, and
then yields to the event loop once, so the response writer sends it before the next token is parsed. Going
through LangGraph's "messages" stream instead adds its own queue and task hops, and when a model sends a
burst of tokens at once the first one reached the client only after the whole burst had been processed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler


class ModelTokens(AsyncCallbackHandler):
    """Passes the text tokens of the agent's "model" node to `deliver`; tool-call chunks carry no text."""

    run_inline = True  # awaited in the model call itself, not gathered in a task of its own

    def __init__(self, deliver: Callable[[str], None]) -> None:
        self.deliver = deliver
        self._model_runs: set[UUID] = set()

    async def on_chat_model_start(self, serialized: dict[str, Any], messages: Any, *, run_id: UUID,
                                  metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if (metadata or {}).get("langgraph_node") == "model":
            self._model_runs.add(run_id)

    async def on_llm_new_token(self, token: str, *, run_id: UUID, chunk: Any = None, **kwargs: Any) -> None:
        text = chunk.message.text if chunk is not None else token
        if text and run_id in self._model_runs:
            self.deliver(text)
            await asyncio.sleep(0)  # let the response writer send it now

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._model_runs.discard(run_id)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._model_runs.discard(run_id)
