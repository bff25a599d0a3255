"""The edges of consent that real users and real services hit, as production runs it (agent and callback as
two processes, a browser that only follows links): a workload token that expires while the user is on the
consent page, the provider's token endpoint failing after consent, session binding switched on for the
workload identity, a named token vault, and SessionStatus values the product has never seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from emulators import LocalCloud, start_local_cloud
from tests.support.deployment import (DINGTALK_PROMPT, Deployment, LinkFollowingBrowser, deployment, page_title,
                                      stream_chat)
from tests.support.e2e import document_content_at


@pytest.fixture(scope="module")
def production() -> Iterator[Deployment]:
    with deployment(extra_env={"TOKEN_VAULT_NAME": "team-vault"}) as running:
        running.cloud.agent_identity.token_vaults.add("team-vault")
        yield running


async def approve(link: str, user: str, pages: list[str]) -> None:
    browser = LinkFollowingBrowser()
    try:
        pages.append(page_title(await browser.approve_and_sign_in(link, user)))
    finally:
        await browser.aclose()


def calls(cloud: LocalCloud, action: str) -> int:
    """How often the emulated Agent Identity served `action` (its public /emulator/calls route)."""
    answer = httpx.get(f"{cloud.url('agent_identity')}/emulator/calls", verify=cloud.ssl_context(),
                       trust_env=False, timeout=10).json()
    return answer.get(action, 0)


async def test_a_workload_token_expiring_on_the_consent_page_costs_no_second_link() -> None:
    """Workload tokens live minutes (here 5 s) and the user takes longer (12 s): the waiting request exchanges
    the JWT again and keeps polling the same session, so one link, one approval, one written document."""
    with start_local_cloud(workload_token_ttl_s=5) as cloud, deployment(cloud=cloud) as running:
        jwt = cloud.issue_user_jwt("slow-approver")
        pages: list[str] = []

        async def think_then_approve(link: str) -> None:
            await asyncio.sleep(12)
            await approve(link, "slow-approver", pages)

        reply = await stream_chat(running.agent_url, jwt, DINGTALK_PROMPT.format(text="in time", doc="docWat"),
                                  on_link=think_then_approve)
        written = await document_content_at(cloud, "docWat")
        exchanges = calls(cloud, "GetWorkloadAccessTokenForJWT")

    assert reply["types"].count("authorization_required") == 1
    assert pages == ["Authorization complete"] and "authorization_completed" in reply["types"]
    assert written == "in time"
    assert exchanges >= 2  # the first token expired while the user was deciding


async def test_the_provider_failing_to_hand_out_its_token_ends_the_wait_at_once(production: Deployment) -> None:
    cloud = production.cloud
    cloud.agent_identity.upstream_token_endpoint_fails = True
    pages: list[str] = []
    try:
        began = time.monotonic()
        reply = await stream_chat(production.agent_url, cloud.issue_user_jwt("upstream-user"),
                                  DINGTALK_PROMPT.format(text="x", doc="docUpstream"),
                                  on_link=lambda link: approve(link, "upstream-user", pages))
        waited = time.monotonic() - began
    finally:
        cloud.agent_identity.upstream_token_endpoint_fails = False

    finished = [e for e in reply["events"] if e["type"] == "tool_finished"]
    assert pages == ["Authorization complete"]
    assert finished and finished[-1]["ok"] is False and finished[-1]["code"] == "provider_unavailable"
    assert waited < 30  # not the 60 s AUTHORIZATION_TIMEOUT_SECONDS of the deployment
    assert await document_content_at(cloud, "docUpstream") is None


async def test_session_binding_on_the_workload_identity_is_named_for_the_operator(production: Deployment) -> None:
    cloud = production.cloud
    cloud.agent_identity.session_binding = True
    try:
        reply = await stream_chat(production.agent_url, cloud.issue_user_jwt("bound-user"),
                                  DINGTALK_PROMPT.format(text="x", doc="docBound"))
    finally:
        cloud.agent_identity.session_binding = False

    finished = [e for e in reply["events"] if e["type"] == "tool_finished"]
    assert finished[-1]["code"] == "provider_misconfigured"
    assert "Session binding is on for this workload identity" in reply["text"]
    assert "authorization_required" not in reply["types"]


@pytest.mark.parametrize("status", ["callback_received", "pending", "Completed", "in_progress"])
async def test_session_statuses_never_seen_before_keep_the_wait_going(production: Deployment, status: str) -> None:
    """Alibaba publishes no SessionStatus values: whatever the service says while the user decides (any case,
    even `completed` before the token is fetched), the wait goes on until the token comes."""
    cloud = production.cloud
    cloud.agent_identity.waiting_status = status
    pages: list[str] = []
    user = f"status-{status.lower()}"
    try:
        reply = await stream_chat(production.agent_url, cloud.issue_user_jwt(user),
                                  DINGTALK_PROMPT.format(text=status, doc=f"doc-{user}"),
                                  on_link=lambda link: approve(link, user, pages))
    finally:
        cloud.agent_identity.waiting_status = "IN_PROGRESS"

    assert "authorization_completed" in reply["types"]
    assert await document_content_at(cloud, f"doc-{user}") == status


async def test_the_token_vault_named_by_the_operator_holds_the_users_tokens(production: Deployment) -> None:
    cloud = production.cloud
    jwt = cloud.issue_user_jwt("vault-user")
    pages: list[str] = []
    first = await stream_chat(production.agent_url, jwt, DINGTALK_PROMPT.format(text="one", doc="docVault"),
                              on_link=lambda link: approve(link, "vault-user", pages))
    cloud.agent_identity.token_vaults.discard("team-vault")
    try:
        refused = await stream_chat(production.agent_url, cloud.issue_user_jwt("vault-user-2"),
                                    DINGTALK_PROMPT.format(text="two", doc="docVault2"))
    finally:
        cloud.agent_identity.token_vaults.add("team-vault")

    assert "authorization_completed" in first["types"]
    assert await document_content_at(cloud, "docVault") == "one"
    finished = [e for e in refused["events"] if e["type"] == "tool_finished"]
    assert finished[-1]["ok"] is False and "authorization_required" not in refused["types"]


async def test_a_permission_the_app_gained_after_the_users_consent_costs_one_consent_anew(
        production: Deployment) -> None:
    """DingTalk's app lacked Document.Document.Write when the user consented; it was granted since. The user's
    token is a snapshot of that old consent, so DingTalk answers 403 AccessTokenPermissionDenied: the tool asks
    the user once more with prompt=consent, and the new token can write."""
    cloud, user = production.cloud, "snapshot-user"
    provider = cloud.info["dingtalk_provider"]
    cloud.agent_identity.app_permissions[provider] = ["Contact.User.Read"]
    jwt, pages = cloud.issue_user_jwt(user), []
    try:
        first = await stream_chat(production.agent_url, jwt, DINGTALK_PROMPT.format(text="old", doc="docSnap0"),
                                  on_link=lambda link: approve(link, user, pages))
        cloud.agent_identity.app_permissions[provider] = ["Contact.User.Read", "Document.Document.Write"]
        reply = await stream_chat(production.agent_url, jwt, DINGTALK_PROMPT.format(text="new", doc="docSnap"),
                                  on_link=lambda link: approve(link, user, pages))
    finally:
        cloud.agent_identity.app_permissions.pop(provider, None)

    assert first["types"].count("authorization_required") == 2, first  # the app really lacked it: asked again
    assert [e["code"] for e in first["events"] if e["type"] == "tool_finished"][-1] == \
        "dingtalk_app_permission_missing"
    assert reply["types"].count("authorization_required") == 1 and "authorization_completed" in reply["types"]
    assert await document_content_at(cloud, "docSnap") == "new"
    assert await document_content_at(cloud, "docSnap0") is None
