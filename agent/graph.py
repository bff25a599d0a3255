"""Assembles the agent: model + tools + system prompt, for one set of per-request model settings.

What differs per request (model name, temperature, max tokens, stop sequences, seed) is set on the agent's own
copy of the chat model, so the agent needs no per-call middleware. Agents are compiled once per distinct
`RunOptions` (`AgentRunner` keeps a few) and shared by the requests that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.graph.state import CompiledStateGraph

from agent.prompts import SYSTEM_PROMPT

# The node of `create_agent`'s graph that calls the model: its text is what the user reads.
MODEL_NODE = "model"


@dataclass(frozen=True)
class RunOptions:
    """The request's model settings; None means the model's default. Hashable: agents are cached by it."""

    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    seed: int | None = None


def build_agent(model: BaseChatModel, tools: Sequence[BaseTool], options: RunOptions) -> CompiledStateGraph:
    """`create_agent` over a copy of `model` carrying the request's settings."""
    fields = type(model).model_fields
    settings = {"model_name" if "model_name" in fields else "model": options.model,
                "temperature": options.temperature, "max_tokens": options.max_tokens,
                "stop": list(options.stop) if options.stop else None, "seed": options.seed}
    update = {name: value for name, value in settings.items() if value is not None and name in fields}
    if update:
        model = model.model_copy(update=update)  # shallow: shares the model's HTTP clients
    return create_agent(model, list(tools), system_prompt=SYSTEM_PROMPT)
