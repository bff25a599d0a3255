"""Assembles the agent once: model + tools + system prompt, and the request's model settings applied per call.

What differs per request (model name, temperature, max tokens, stop sequences, seed) is the run's context
(`RunOptions`, LangChain's `context_schema`); `RequestModelSettings` hands it to each model call as
`ModelRequest.model_settings`, which the agent binds as invocation arguments: the API parameters of that one
call. The model object and the compiled agent are the same for every request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.graph.state import CompiledStateGraph

from agent.prompts import SYSTEM_PROMPT

# The node of `create_agent`'s graph that calls the model: its text is what the user reads.
MODEL_NODE = "model"


@dataclass(frozen=True)
class RunOptions:
    """The request's model settings; None means the model's default."""

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None

    def model_settings(self) -> dict[str, Any]:
        """The settings given, as the chat-completions parameters of a call."""
        settings = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens,
                    "stop": list(self.stop) if self.stop else None, "seed": self.seed}
        return {name: value for name, value in settings.items() if value is not None}


class RequestModelSettings(AgentMiddleware[Any, RunOptions]):
    """Each model call of a run gets the run's `RunOptions` as its model settings."""

    async def awrap_model_call(self, request: ModelRequest[RunOptions],
                               handler: Callable[[ModelRequest[RunOptions]], Awaitable[ModelResponse]],
                               ) -> ModelResponse:
        options = request.runtime.context
        settings = options.model_settings() if options is not None else {}
        if settings:
            request = request.override(model_settings={**request.model_settings, **settings})
        return await handler(request)


def build_agent(model: BaseChatModel, tools: Sequence[BaseTool]) -> CompiledStateGraph:
    """The one agent: run it with `context=RunOptions(...)`."""
    return create_agent(model, list(tools), system_prompt=SYSTEM_PROMPT, middleware=[RequestModelSettings()],
                        context_schema=RunOptions)
