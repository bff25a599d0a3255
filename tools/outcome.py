"""A tool's answer and, beside it, whether it did its job: `(text for the model, {"ok": ..., "code": ...})`.

Tools are built with LangChain's `response_format="content_and_artifact"`: the model reads only the text, and
the artifact travels on the ToolMessage to the runner, which reports it in `tool_finished` (`ok: false` and a
`code` whenever the tool did not do its job: a pending or refused authorization, a refused or failed call).
"""

from __future__ import annotations

from typing import Any

Outcome = tuple[str, dict[str, Any]]


def succeeded(text: str) -> Outcome:
    return text, {"ok": True}


def failed(text: str, code: str) -> Outcome:
    return text, {"ok": False, "code": code}
