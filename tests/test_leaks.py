"""No secret escapes: after the end-to-end conversations (test_e2e_*, test_browser_* run before this file,
and this file runs a full conversation of its own so it never checks an empty record), no user JWT,
workload access token, DingTalk OAuth2 token, STS secret or security token, AccessKey secret, model API key
or state secret appears in what the model was sent, in any response body a client read, or in any log line.
"""

from __future__ import annotations

import json

import httpx

from tests.support.e2e import Product, User, document_content, product  # noqa: F401 - fixture

MUST_HAVE_BEEN_ISSUED = ("user JWT", "workload access token", "DingTalk OAuth2 token",
                         "STS secret or security token")


async def run_one_of_everything(product: Product) -> None:
    """Stream with consent, a second write, the caller-identity tool, OSS reads (one refused with a body that
    quotes the security token), and a non-stream pending link; on the AG-UI route (whose events also carry each
    tool call's arguments and result), consent, a write and the caller-identity tool."""
    user = User(product, "leak-check")
    newcomer = User(product, "leak-check-new")
    agui_user = User(product, "leak-check-agui")
    try:
        await user.chat_stream("帮我写入“Helloworld”到钉钉文档，文档ID：docLeak1", on_link=user.approve)
        await user.chat_stream('Please write "again" to the DingTalk document ID: docLeak1')
        await user.chat_stream("Who am I on Alibaba Cloud?")
        await user.chat_stream("Read oss://agent-docs/notes/welcome.txt")
        # Another region: OSS answers SignatureDoesNotMatch with the signed request, security token and all.
        await user.chat_stream("Read oss://agent-docs/notes/welcome.txt in region cn-shanghai")
        await newcomer.chat("帮我写入“Helloworld”到钉钉文档，文档ID：docLeak2")
        agui = await agui_user.agui_stream("帮我写入“AG-UI”到钉钉文档，文档ID：docLeak3", on_link=agui_user.approve)
        await agui_user.agui_stream("Who am I on Alibaba Cloud?")
    finally:
        await user.aclose()
        await newcomer.aclose()
        await agui_user.aclose()
    assert await document_content(product, "docLeak1") == "again"
    assert agui.finish_reason == "RUN_FINISHED" and await document_content(product, "docLeak3") == "AG-UI"


async def test_each_request_is_one_json_line_with_its_ids_status_durations_and_tool_outcomes(product):
    """As Function Compute ships it to SLS (LOG_FORMAT=json): one object a line, fields at the top level."""
    user = User(product, "log-line")
    try:
        await user.chat_stream("帮我写入“logged”到钉钉文档，文档ID：docLog1", on_link=user.approve)
    finally:
        await user.aclose()
    lines = [json.loads(line) for line in product.witness.log_lines if line.startswith("{")]
    chats = [line for line in lines if line["logger"] == "app.request" and line.get("path", "").endswith(
        "/chat/completions") and any(tool.get("tool") for tool in line.get("tools", []))]
    assert chats, "no chat with a tool call was logged"
    line = chats[-1]
    assert {"time", "level", "request_id", "method", "status", "duration_ms", "first_byte_ms", "sub", "model",
            "stream", "tools"} <= set(line)
    assert line["status"] == 200 and line["tools"][-1]["ok"] is True
    assert line["first_byte_ms"] <= line["duration_ms"]


async def test_no_secret_reaches_the_model_a_response_or_a_log(product):
    await run_one_of_everything(product)
    async with httpx.AsyncClient() as http:
        model_requests = (await http.get(f"{product.cloud.url('model')}/emulator/requests")).text
    secrets = product.issued_secrets()
    for kind in MUST_HAVE_BEEN_ISSUED:
        assert secrets[kind], f"no {kind} was issued: the conversations did not exercise it"

    places = {"the model's requests": [model_requests],
              "a response body": product.witness.bodies,
              "a log line": product.witness.log_lines}
    assert all(places.values())
    leaks = [f"{kind} in {place}"
             for kind, values in secrets.items() for value in values if len(value) >= 16
             for place, texts in places.items() if any(value in text for text in texts)]
    assert leaks == []
