"""A `ChatOpenAI` that binds the same tools once, not before every model call.

`create_agent` binds the agent's tools to the model again before each model call, and each binding turns
every tool's argument model into JSON Schema afresh. The agent's tools never change, so the last binding is
kept and handed out again for the same tools and options: 0.1-0.2 ms off each request's time to first
token on a cold cache (bench/RESULTS.md, benchmark 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr


@dataclass(frozen=True)
class _Binding:
    tools: tuple[Any, ...]  # held, so their ids cannot be reused while the binding is kept
    options: dict[str, Any]
    runnable: Runnable[Any, Any]


class ToolBindingChatOpenAI(ChatOpenAI):
    """`ChatOpenAI` whose `bind_tools` returns its previous binding for the same tool objects and options."""

    _last_binding: _Binding | None = PrivateAttr(default=None)

    def bind_tools(self, tools: Sequence[Any], **options: Any) -> Runnable[Any, Any]:
        last = self._last_binding
        # `model_copy` shares private attributes: a binding is reused only by the model it binds.
        if (last is not None and getattr(last.runnable, "bound", None) is self and last.options == options
                and len(last.tools) == len(tools) and all(a is b for a, b in zip(last.tools, tools))):
            return last.runnable
        runnable = super().bind_tools(tools, **options)
        self._last_binding = _Binding(tuple(tools), dict(options), runnable)
        return runnable
