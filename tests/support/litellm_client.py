"""LiteLLM (pinned in requirements-dev.txt) asking the agent, in a process of its own: LiteLLM sets up global
state when imported (its model price table, logging workers), which the test process is better without.

    python -m tests.support.litellm_client '{"scenario": "completion", "server": ..., "apiKey": ..., ...}'

prints one JSON line: the answer's `text` and `finishReason`, or the `error` LiteLLM raised (its class name
and message). Scenarios, each with the retries LiteLLM's users set:
- `completion`: `litellm.completion(..., num_retries=2)`;
- `router`: a `Router` with `num_retries=2`;
- `router-fallback-stream`: a streamed `Router` call (async: LiteLLM's mid-stream handling is there) whose
  deployment falls back to a second one, the same agent;
- `router-continuation-stream`: the same with `enable_mid_stream_fallback_continuation`, where the fallback is
  asked to continue the broken answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price table from GitHub

import litellm  # noqa: E402  (after the variable above, which it reads when imported)
from litellm import Router  # noqa: E402


def _deployment(name: str, request: dict[str, Any]) -> dict[str, Any]:
    params = {"model": "openai/qwen-plus", "api_base": f"{request['server']}/openai/v1",
              "api_key": request["apiKey"]}
    return {"model_name": name, "litellm_params": params}


def ask(request: dict[str, Any]) -> dict[str, Any]:
    messages = [{"role": "user", "content": request["prompt"]}]
    scenario = request["scenario"]
    if scenario == "completion":
        params = _deployment("agent", request)["litellm_params"]
        answer = litellm.completion(messages=messages, num_retries=2, **params)
    elif scenario == "router":
        answer = Router(model_list=[_deployment("agent", request)], num_retries=2).completion(
            model="agent", messages=messages)
    elif scenario in ("router-fallback-stream", "router-continuation-stream"):
        fallback = _deployment("agent-fallback", request)
        fallback["model_info"] = {"supports_assistant_prefill": True}  # else it never continues
        router = Router(model_list=[_deployment("agent", request), fallback],
                        fallbacks=[{"agent": ["agent-fallback"]}],
                        enable_mid_stream_fallback_continuation=scenario == "router-continuation-stream")
        return asyncio.run(_streamed(router, messages))
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    choice = answer.choices[0]
    return {"text": choice.message.content, "finishReason": choice.finish_reason, "error": None}


async def _streamed(router: Router, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Router's mid-stream fallback is in its async streaming path."""
    text, finish_reason = [], None
    async for chunk in await router.acompletion(model="agent", messages=messages, stream=True):
        choice = chunk.choices[0]
        text.append(choice.delta.content or "")
        finish_reason = choice.finish_reason or finish_reason
    return {"text": "".join(text), "finishReason": finish_reason, "error": None}


def main() -> None:
    request = json.loads(sys.argv[1])
    try:
        result = ask(request)
    except Exception as exc:  # the test asserts on what LiteLLM raised
        result = {"text": None, "finishReason": None, "error": type(exc).__name__, "message": str(exc)[:600]}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
