"""Our side of benchmark 2: the same workload as bench/naive_sdk.py, through identity/ and tools/.

Run as its own process by bench/vs_naive.py. Each simulated user is one request: authenticate the caller's
JWT, bind the request context (as app.py does), then invoke the agent's own `write_dingtalk_document` and
`get_alibaba_cloud_caller_identity` tools the way LangChain's tool node does (`ainvoke`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

WRITE_TOOL = "write_dingtalk_document"
IDENTITY_TOOL = "get_alibaba_cloud_caller_identity"


async def run(info: dict[str, Any], user_tokens: list[str], requests_per_user: int,
              warmup_tokens: list[str]) -> dict[str, Any]:
    import tools
    from bench._harness import drive
    from identity.context import RequestContext, bind_request_context, reset_request_context
    from identity.service import AgentIdentity
    from settings.identity import IdentitySettings
    from settings.tools import ToolSettings
    from tools.tool import oauth2_providers
    from tools.toolbox import Toolbox

    env = info["env"]
    identity = AgentIdentity(IdentitySettings.from_env(env))
    toolbox = Toolbox(identity, ToolSettings.from_env(env, oauth2_providers(tools.TOOLS)), tools.TOOLS)
    by_name = {tool.name: tool for tool in toolbox.tools}
    write_tool, identity_tool = by_name[WRITE_TOOL], by_name[IDENTITY_TOOL]

    async def workload(tokens: list[str]) -> Any:
        async def one_user_request(user: int, n: int) -> None:
            caller = await identity.authenticate(f"Bearer {tokens[user]}")
            bound = bind_request_context(RequestContext(caller=caller, session_id=None,
                                                        request_id=uuid.uuid4().hex))
            try:
                written = await write_tool.ainvoke({"content": f"ours {user}/{n}",
                                                    "document_id": f"ours{user}"})
                whoami = await identity_tool.ainvoke({})
            finally:
                reset_request_context(bound)
            if not str(written).startswith("Wrote") or "acs:ram" not in str(whoami):
                raise RuntimeError(f"unexpected tool results: {str(written)[:80]!r} / {str(whoami)[:80]!r}")

        return await drive(len(tokens), one_user_request, requests_per_user=requests_per_user)

    try:
        if warmup_tokens:
            await workload(warmup_tokens)  # other users, not measured: warm, as a serving process is
        cpu_began = time.process_time()
        result = await workload(user_tokens)
        cpu_s = time.process_time() - cpu_began
    finally:
        await toolbox.aclose()
        await identity.aclose()
    return {"latencies_s": result.latencies_s, "errors": result.errors, "wall_s": result.wall_s,
            "cpu_s": cpu_s}


def main() -> None:
    from bench._harness import read_worker_arguments

    info, tokens, requests_per_user, warmup = read_worker_arguments(__doc__.splitlines()[0])
    outcome = asyncio.run(run(info, tokens, requests_per_user, warmup))
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
