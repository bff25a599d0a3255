"""A tool's answer and, beside it, whether it did its job: `(text for the model, {"ok": ..., "code": ...})`.

Tools are built with LangChain's `response_format="content_and_artifact"`: the model reads only the text, and
the artifact travels on the ToolMessage to the runner, which reports it in `tool_finished` (`ok: false` and a
`code` whenever the tool did not do its job: a pending or refused authorization, a refused or failed call).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tools.validation import describe_validation_error

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

Outcome = tuple[str, dict[str, Any]]


def succeeded(text: str) -> Outcome:
    return text, {"ok": True}


def failed(text: str, code: str) -> Outcome:
    return text, {"ok": False, "code": code}


def as_langchain_tool(run: Callable[..., Awaitable[Outcome]], *, name: str, description: str,
                      args_schema: type[BaseModel]) -> BaseTool:
    """`run` as the tool the model calls: arguments checked by `args_schema` (a rejected one becomes a short
    sentence), the outcome's text for the model and its artifact for the runner.

    LangChain's tool classes are imported here, when the app is built: importing them takes a third of a
    second (they pull in LangSmith), and `python app.py` reads the tools' settings before it opens its
    port."""
    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(coroutine=run, name=name, description=description,
                                        args_schema=args_schema,
                                        handle_validation_error=describe_validation_error,
                                        response_format="content_and_artifact")
