"""Assembles the agent: model + tools + system prompt, with per-request model settings.

The compiled agent is shared by all requests; what differs per request (model name, temperature, max tokens)
travels in LangGraph's runtime context (`RunOptions`), never in globals.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.prompts import SYSTEM_PROMPT

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool
    from langgraph.graph.state import CompiledStateGraph


@dataclass(frozen=True)
class RunOptions:
    """The request's model settings; None means the model's default."""

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def model_settings(self) -> dict[str, Any]:
        settings = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        return {k: v for k, v in settings.items() if v is not None}


def build_agent(model: BaseChatModel, tools: Sequence[BaseTool]) -> CompiledStateGraph:
    from langchain.agents import create_agent
    from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

    class RequestModelSettings(AgentMiddleware):
        """Applies the request's `RunOptions` to every model call of the run."""

        async def awrap_model_call(self, request: ModelRequest,
                                   handler: Callable[[ModelRequest], Awaitable[ModelResponse]]) -> Any:
            options = request.runtime.context if request.runtime else None
            if isinstance(options, RunOptions) and options.model_settings():
                request = request.override(model_settings={**request.model_settings,
                                                           **options.model_settings()})
            return await handler(request)

    return create_agent(model, list(tools), system_prompt=SYSTEM_PROMPT, middleware=[RequestModelSettings()],
                        context_schema=RunOptions)
