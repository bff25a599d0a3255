"""Assembles the agent: model + tools + system prompt, for one set of per-request model settings; and says
what its first model call is made of (for `agent.early_call`).

What differs per request (model name, temperature, max tokens) is set on the agent's own copy of the chat
model, so the agent needs no per-call middleware: a model-call middleware costs every call a LangSmith
`traceable` wrapper that hops to a worker thread twice, tracing on or off. Agents are compiled once per
distinct `RunOptions` (`AgentRunner` keeps a few) and shared by the requests that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.prompts import SYSTEM_PROMPT

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.runnables import RunnableBinding
    from langchain_core.tools import BaseTool
    from langgraph.graph.state import CompiledStateGraph


@dataclass(frozen=True)
class RunOptions:
    """The request's model settings; None means the model's default. Hashable: agents are cached by it."""

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def model_fields(self) -> dict[str, Any]:
        """The settings as `ChatOpenAI` field names, the unset ones left out."""
        fields = {"model_name": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class Agent:
    """A compiled agent, and the chat model and tools it was built from."""

    graph: CompiledStateGraph
    model: BaseChatModel
    tools: list[BaseTool]

    def first_call(self, messages: Sequence[BaseMessage]) -> tuple[RunnableBinding, list[BaseMessage]]:
        """The tool-bound model and the messages the graph's model node calls it with first, for a run given
        `messages`: built as `create_agent` builds them (`bind_tools(tools, tool_choice=None)`, the system
        prompt first). Built any other way, the early request would not be taken (`agent.early_call`)."""
        from langchain_core.messages import SystemMessage

        return (self.model.bind_tools(self.tools, tool_choice=None),  # type: ignore[return-value]
                [SystemMessage(SYSTEM_PROMPT), *messages])


def build_agent(model: BaseChatModel, tools: Sequence[BaseTool], options: RunOptions) -> Agent:
    from langchain.agents import create_agent

    if fields := options.model_fields():
        # A shallow copy: it shares the model's HTTP clients, only the request defaults differ.
        model = model.model_copy(update=fields)
    return Agent(create_agent(model, list(tools), system_prompt=SYSTEM_PROMPT), model, list(tools))
