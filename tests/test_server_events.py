"""How run events look to the client: content text (any UI) plus one machine-readable `agent_event`."""

from server.chunks import CompletionWriter, sse
from server.events import ToolFinished, ToolStarted, render
from identity.context import AuthorizationCompleted, AuthorizationRequired


def test_authorization_required_uses_the_documented_wording_and_event():
    rendered = render(AuthorizationRequired(url="https://idp.example/authorize?x=1",
                                            purpose="Write to DingTalk document", provider="dingtalk"))
    assert rendered.text == ("Please click the link to authorize Write to DingTalk document: "
                             "https://idp.example/authorize?x=1 \n\n")
    assert rendered.agent_event == {"type": "authorization_required", "url": "https://idp.example/authorize?x=1",
                                    "purpose": "Write to DingTalk document", "provider": "dingtalk"}


def test_other_events_and_unknown_objects():
    assert render(AuthorizationCompleted(purpose="p", provider="d")).agent_event == {
        "type": "authorization_completed", "purpose": "p", "provider": "d"}
    assert render(ToolStarted("t")).agent_event == {"type": "tool_started", "tool": "t"}
    assert render(ToolFinished("t", ok=False)).agent_event == {"type": "tool_finished", "tool": "t", "ok": False}
    assert render(object()) is None


def test_event_chunk_carries_text_and_agent_event():
    writer = CompletionWriter(model="qwen-plus")
    rendered = render(ToolStarted("get_alibaba_cloud_caller_identity"))
    raw = sse(writer.content(rendered.text, rendered.agent_event))
    assert raw.startswith(b'data: {"id":"chatcmpl-') and raw.endswith(b"}\n\n")
    assert b'"agent_event":{"type":"tool_started","tool":"get_alibaba_cloud_caller_identity"}' in raw
