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
from server.errors import ApiError


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


def tool_acted(events: list[dict[str, Any]]) -> bool:
    """Whether a tool ran in this request (and may have acted: written a document, ...)."""
    return any(event["type"] == "tool_started" for event in events)


def failure_after_tools(events: list[dict[str, Any]], error: ApiError) -> str:
    """The assistant's last words when the run failed after tools ran: what was done, what failed, and that
    nothing is repeated by itself (the answer is a 200, so no client retries the side effects)."""
    started = [event["tool"] for event in events if event["type"] == "tool_started"]
    finished = [event for event in events if event["type"] == "tool_finished"]
    done = [f"`{event['tool']}`" for event in finished if event["ok"]]
    failed = [f"`{event['tool']}` ({event.get('code') or 'failed'})" for event in finished if not event["ok"]]
    unfinished = list(started)
    for event in finished:
        if event["tool"] in unfinished:
            unfinished.remove(event["tool"])
    lines = [f"The request stopped with an error after tools ran: {error.message}"]
    if done:
        lines.append(f"Done: {', '.join(done)}.")
    if failed:
        lines.append(f"Failed: {', '.join(failed)}.")
    if unfinished:
        lines.append(f"Interrupted (it may have acted): {', '.join(f'`{tool}`' for tool in unfinished)}.")
    lines.append("Nothing is repeated automatically: check the result before asking again.")
    return "\n\n" + " ".join(lines)
