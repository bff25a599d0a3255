"""What the user sees of a run besides model text: tool progress and authorization requests.

Each event becomes content text (so any chat UI shows it) and one `agent_event` object (so a UI can render
a button or a spinner instead). The `agent_event` shapes are the contract in docs/architecture.md:

    {"type": "authorization_required", "url": ..., "purpose": ..., "provider": ...}
    {"type": "authorization_completed", "purpose": ..., "provider": ...}
    {"type": "tool_started", "tool": ...}
    {"type": "tool_finished", "tool": ..., "ok": true|false, "code": ... (when not ok)}
    {"type": "error", "code": ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.runner import ToolFinished, ToolStarted
from identity.context import AuthorizationCompleted, AuthorizationRequired
from identity.errors import consent_sentence


@dataclass(frozen=True)
class Rendered:
    """An event as the client gets it."""

    text: str
    agent_event: dict[str, Any]


def render(event: object) -> Rendered | None:
    """Content text + `agent_event` for an event; None for events the client need not see."""
    if isinstance(event, AuthorizationRequired):
        return Rendered(consent_sentence(event.purpose, event.url),
                        {"type": "authorization_required", "url": event.url, "purpose": event.purpose,
                         "provider": event.provider})
    if isinstance(event, AuthorizationCompleted):
        return Rendered(f"Authorized {event.purpose}, continuing.\n\n",
                        {"type": "authorization_completed", "purpose": event.purpose,
                         "provider": event.provider})
    if isinstance(event, ToolStarted):
        return Rendered(f"> Running `{event.tool}`...\n\n", {"type": "tool_started", "tool": event.tool})
    if isinstance(event, ToolFinished):
        outcome = "done" if event.ok else "failed"
        code = {"code": event.code} if not event.ok and event.code else {}
        return Rendered(f"> `{event.tool}` {outcome}.\n\n",
                        {"type": "tool_finished", "tool": event.tool, "ok": event.ok, **code})
    return None
