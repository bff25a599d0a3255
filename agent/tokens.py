"""The model's text, straight from the wire to the response.

`agent.completions` parses the model's server-sent events and hands the text of each to the sink the run
bound here as soon as it is decoded, then yields to the event loop once so the response writer sends it
before LangChain processes anything. The sink is a context variable, so it reaches the model call that
LangGraph runs in a task of its own, and only the calls of the run that bound it; and only the agent's own
model calls use it: the text of a model that a tool calls is the tool's business, not the user's.

A LangChain callback handler did this before: any handler on a run makes LangChain and LangGraph dispatch
every chain's start and end to it, and the first token then waited for LangChain's handling of the chunks
before it (0.3-0.4 ms of a cold request's time to first token, bench/RESULTS.md, benchmark 1). LangGraph's
"messages" stream mode is such a handler too, plus a queue and task hops of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

TextSink = Callable[[str], None]

# The node of `create_agent`'s graph that calls the model (LangGraph puts it in the config's metadata).
AGENT_MODEL_NODE = "model"

_sink: ContextVar[TextSink | None] = ContextVar("model_text_sink", default=None)


@contextmanager
def model_text_to(sink: TextSink) -> Iterator[None]:
    """Send the text of the agent's streamed model calls made inside this block (and its tasks) to `sink`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


def agent_text_sink() -> TextSink | None:
    """For the model call being made now: the run's sink if the call is the agent's own (its graph's "model"
    node, not one of a graph nested in it), else None."""
    sink = _sink.get()
    if sink is None:
        return None
    from langgraph.config import get_config

    try:
        metadata = get_config().get("metadata", {})
    except RuntimeError:  # not inside a graph node
        return None
    # A nested graph's namespace reads "parent:<task>|node:<task>"; a tool's sub-agent has a "model" node.
    top_level = "|" not in metadata.get("langgraph_checkpoint_ns", "")
    return sink if metadata.get("langgraph_node") == AGENT_MODEL_NODE and top_level else None


def delta_text(event: dict[str, Any]) -> str | None:
    """The text delta of a chat-completion chunk; tool-call deltas, reasoning and usage carry none."""
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    delta = choices[0].get("delta")
    text = delta.get("content") if isinstance(delta, dict) else None
    return text if isinstance(text, str) and text else None
