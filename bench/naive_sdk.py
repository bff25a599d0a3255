"""The naive baseline: the Agent Identity SDK's own decorators, used the way the product's samples use them.

Run as its own process (`python -m bench.naive_sdk --info READY.json --users N ...`) by bench/vs_naive.py, so
its process-wide patches and environment never touch anything else. The workload per user is the one our
side runs too: write one DingTalk document with the user's stored token, then one caller-identity call.

How the samples use the SDK, reproduced here without copying them:
- the caller's JWT goes into `AgentIdentityContext.set_user_token(...)` at the start of each request;
- the DingTalk tool is an `async def` under `@requires_access_token(USER_FEDERATION, callback_url=...)` that
  opens an `httpx.AsyncClient` per call and POSTs `overwriteContent`;
- the cloud tool is a plain `def` under `@requires_sts_token()` that builds an SDK client from the injected
  STS credential and calls it synchronously;
- both are handed to LangChain as tools, which awaits the async one on the event loop and runs the sync one
  in the default thread pool (exactly what `create_agent`'s tool node does).

Pointing it at the emulators fairly: the decorators build `IdentityClient(region)` with no endpoint, so the
constructor's default endpoints are patched in this process only. `AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME` is set
so nothing is created, and the process works in a throwaway directory because the SDK writes `.config.json`
into the working directory on every call.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from typing import Any


def _prepare_environment(info: dict[str, Any]) -> None:
    """Before any Alibaba SDK import: the credentials chain reads the environment when it is imported."""
    os.environ.update(info["env"])
    os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(proxy, None)


def _point_sdk_at(agent_identity_url: str) -> None:
    """Make `IdentityClient(region)` (as the decorators build it) talk to the emulator instead of the cloud."""
    from agent_identity_python_sdk.core import identity

    original_init = identity.IdentityClient.__init__

    def init_with_local_endpoints(self: Any, region_id: str, data_api_endpoint: str | None = None,
                                  control_api_endpoint: str | None = None) -> None:
        original_init(self, region_id, data_api_endpoint or agent_identity_url,
                      control_api_endpoint or agent_identity_url)

    identity.IdentityClient.__init__ = init_with_local_endpoints  # type: ignore[method-assign]


def build_naive_tools(info: dict[str, Any]) -> tuple[Any, Any]:
    """The two tools, decorated exactly as the samples do (decoration builds the SDK clients, so it runs here)."""
    import httpx
    from agent_identity_python_sdk import requires_access_token, requires_sts_token
    from alibabacloud_credentials.client import Client as CredentialClient
    from alibabacloud_credentials.models import Config as CredentialConfig
    from alibabacloud_sts20150401.client import Client as StsClient
    from alibabacloud_tea_openapi import models as open_api_models
    from langchain_core.tools import StructuredTool

    env = info["env"]
    dingtalk_base = env["DINGTALK_API_BASE"].rstrip("/") + "/v2.0"

    @requires_access_token(
        credential_provider_name=env["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
        scopes=env.get("DINGTALK_SCOPES", "openid corpid").split(),
        auth_flow="USER_FEDERATION",
        on_auth_url=lambda url: None,
        callback_url=f"{env.get('APP_REDIRECT_URI', 'http://localhost:8090')}/callback",
        inject_param_name="access_token",
    )
    async def naive_write_dingtalk(content: str, document_id: str, access_token: str) -> str:
        url = f"{dingtalk_base}/doc/me/suites/documents/{document_id}/overwriteContent"
        async with httpx.AsyncClient() as client:  # as the samples: trusts SSL_CERT_FILE; proxies are unset
            response = await client.post(url, json={"dataType": "markdown", "content": content},
                                         headers={"x-acs-dingtalk-access-token": access_token})
            response.raise_for_status()
            return f"written: {response.json()}"

    async def write_dingtalk_document(content: str, document_id: str) -> str:
        """Write content to a DingTalk document."""
        return await naive_write_dingtalk(content=content, document_id=document_id)

    @requires_sts_token(inject_param_name="sts_credential")
    def naive_caller_identity(sts_credential: Any) -> str:
        credential = CredentialClient(CredentialConfig(
            type="sts", access_key_id=sts_credential.access_key_id,
            access_key_secret=sts_credential.access_key_secret, security_token=sts_credential.security_token))
        client = StsClient(open_api_models.Config(credential=credential, endpoint=env["STS_ENDPOINT"]))
        body = client.get_caller_identity().body
        return f"{body.arn} in account {body.account_id}"

    def get_alibaba_cloud_caller_identity() -> str:
        """Who the agent is on Alibaba Cloud."""
        return naive_caller_identity()

    return (StructuredTool.from_function(coroutine=write_dingtalk_document),
            StructuredTool.from_function(func=get_alibaba_cloud_caller_identity))


def _quiet_sdk_loggers() -> None:
    """The SDK sets its loggers to INFO at import and logs every call; keep the benchmark's output readable."""
    import logging
    for name in ("agentidentity.core.decorators", "agentidentity.utils.config", "agentidentity.identity_client"):
        logging.getLogger(name).setLevel(logging.WARNING)


async def run(info: dict[str, Any], user_tokens: list[str], requests_per_user: int,
              warmup_tokens: list[str]) -> dict[str, Any]:
    from agent_identity_python_sdk import AgentIdentityContext

    from bench._harness import drive

    write_tool, identity_tool = build_naive_tools(info)
    _quiet_sdk_loggers()

    async def workload(tokens: list[str]) -> Any:
        async def one_user_request(user: int, n: int) -> None:
            AgentIdentityContext.set_user_token(tokens[user])  # per task: each user's own context
            written = await write_tool.ainvoke({"content": f"naive {user}/{n}",
                                                "document_id": f"naive{user}"})
            whoami = await identity_tool.ainvoke({})
            if not written.startswith("written") or "acs:ram" not in whoami:
                raise RuntimeError(f"unexpected tool results: {written[:80]!r} / {whoami[:80]!r}")

        return await drive(len(tokens), one_user_request, requests_per_user=requests_per_user)

    if warmup_tokens:
        await workload(warmup_tokens)  # other users, not measured: the process is warm, as a serving one is
    result = await workload(user_tokens)
    return {"latencies_s": result.latencies_s, "errors": result.errors, "wall_s": result.wall_s}


def main() -> None:
    from bench._harness import read_worker_arguments

    info, tokens, requests_per_user, warmup = read_worker_arguments(__doc__.splitlines()[0])
    _prepare_environment(info)
    _point_sdk_at(info["agent_identity_url"])
    with tempfile.TemporaryDirectory(prefix="naive-sdk-") as workdir:
        os.chdir(workdir)  # the SDK writes .config.json into the working directory
        outcome = asyncio.run(run(info, tokens, requests_per_user, warmup))
    print("RESULT " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
