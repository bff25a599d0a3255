"""AgentIdentity against the Agent Identity emulator with the real SDK data client over HTTP."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from identity.context import AuthorizationCompleted, AuthorizationRequired, current_request_context
from identity.errors import (AuthorizationFailed, AuthorizationPending, AuthorizationTimedOut, IdentityThrottled,
                             IdentityUnavailable, InvalidCallerToken, ProviderMisconfigured,
                             TooManyPendingAuthorizations)
from tests.support.identity import answer_consent, calls, identity_for, set_faults, signed_in, unique

SCOPES = ["openid", "corpid"]
POLICY = '{"Version":"1","Statement":[{"Effect":"Allow","Action":["sts:GetCallerIdentity"],"Resource":"*"}]}'
PURPOSE = "Write to DingTalk document"


def provider(cloud) -> str:
    return cloud.env["DINGTALK_CREDENTIAL_PROVIDER_NAME"]


class Clock:
    def __init__(self) -> None:
        import time
        self.offset = 0.0
        self._time = time.time

    def __call__(self) -> float:
        return self._time() + self.offset


async def test_workload_token_is_fetched_once_then_cached(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("wat"))):
        first = await identity.workload_access_token()
        second = await identity.workload_access_token()
    await identity.aclose()
    assert first == second and first.startswith("wat-")
    assert (await calls(fresh_cloud))["GetWorkloadAccessTokenForJWT"] == 1


async def test_workload_token_is_exchanged_again_shortly_before_the_user_jwt_expires(fresh_cloud) -> None:
    from identity.workload import USER_TOKEN_MARGIN_SECONDS

    clock = Clock()
    identity = identity_for(fresh_cloud, clock=clock)
    jwt = fresh_cloud.issue_user_jwt(unique("wat-expiry"), exp=int(time.time()) + 120)  # before the reuse bound
    async with signed_in(identity, jwt):
        exp = current_request_context().caller.claims["exp"]
        first = await identity.workload_access_token()
        clock.offset = exp - USER_TOKEN_MARGIN_SECONDS - clock._time() - 1  # just inside the JWT's lifetime
        assert await identity.workload_access_token() == first
        clock.offset += 2  # within the margin: the cached token must not outlive the user's JWT
        second = await identity.workload_access_token()
    await identity.aclose()
    assert second != first
    assert (await calls(fresh_cloud))["GetWorkloadAccessTokenForJWT"] == 2


async def test_a_workload_token_is_reused_at_most_its_observed_lifetime_whatever_the_jwt_says(fresh_cloud) -> None:
    """Workload tokens live about 5 minutes and an opaque one tells nothing of it: a JWT valid for an hour must
    not keep one in use past WORKLOAD_TOKEN_REUSE_SECONDS."""
    from identity.workload import WORKLOAD_TOKEN_REUSE_SECONDS

    clock = Clock()
    identity = identity_for(fresh_cloud, clock=clock)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("wat-reuse"))):
        first = await identity.workload_access_token()
        clock.offset = WORKLOAD_TOKEN_REUSE_SECONDS - 1
        assert await identity.workload_access_token() == first
        clock.offset = WORKLOAD_TOKEN_REUSE_SECONDS + 1
        second = await identity.workload_access_token()
    await identity.aclose()
    assert second != first and WORKLOAD_TOKEN_REUSE_SECONDS < 300  # below the observed lifetime


async def test_twenty_concurrent_requests_share_one_call(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    await set_faults(fresh_cloud, latency_ms=100)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("burst"))):
        tokens = await asyncio.gather(*(identity.workload_access_token() for _ in range(20)))
    await identity.aclose()
    assert len(set(tokens)) == 1
    assert (await calls(fresh_cloud))["GetWorkloadAccessTokenForJWT"] == 1


async def test_each_user_gets_their_own_workload_token(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("u1"))):
        one = await identity.workload_access_token()
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("u2"))):
        two = await identity.workload_access_token()
    await identity.aclose()
    assert one != two


async def test_authorization_link_is_reported_before_polling_then_the_token_arrives(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    seen_calls_at_link: list[int] = []

    async def sink(event: object) -> None:
        if isinstance(event, AuthorizationRequired):
            seen_calls_at_link.append((await calls(fresh_cloud))["GetResourceOAuth2Token"])
        events.append(event)

    events: list[object] = []
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("flow"))) as _:
        from identity.context import current_request_context
        current_request_context().emit = sink
        task = asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                         purpose=PURPOSE))
        while not events:
            await asyncio.sleep(0.01)
        link = events[0]
        assert isinstance(link, AuthorizationRequired) and link.purpose == PURPOSE
        assert seen_calls_at_link == [1]  # only the first GetResourceOAuth2Token: no poll before the link
        redirect = await answer_consent(link.url)
        await identity.complete_authorization(session_uri=redirect["session_uri"],
                                              flow=identity.open_state(redirect["state"]))
        token = await asyncio.wait_for(task, 10)
        assert fresh_cloud.dingtalk_tokens.get(token).valid
        assert events[-1] == AuthorizationCompleted(purpose=PURPOSE, provider=provider(fresh_cloud))
        # The vault now holds the token: the next ask needs no link.
        assert await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE) == token
    await identity.aclose()


async def test_a_session_the_service_reports_failed_ends_the_wait_as_not_completed(fresh_cloud) -> None:
    """Polling alone cannot tell a refusal from a provider failure (the callback, which sees error=, can):
    the wait ends at once, saying the authorization was not completed, not that the user declined."""
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("deny"))) as events:
        task = asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                         purpose=PURPOSE))
        while not events:
            await asyncio.sleep(0.01)
        await answer_consent(events[0].url, "deny")
        with pytest.raises(AuthorizationFailed) as failed:
            await asyncio.wait_for(task, 10)
    await identity.aclose()
    assert "not completed" in failed.value.safe_message


async def test_a_session_status_nobody_documented_means_still_waiting(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud, authorization_timeout_seconds=0.6)
    fresh_cloud.agent_identity.waiting_status = "AWAITING_USER_CONSENT"
    try:
        async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("unknown-status"))):
            with pytest.raises(AuthorizationTimedOut):
                await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
        polls = (await calls(fresh_cloud))["GetResourceOAuth2Token"]
    finally:
        fresh_cloud.agent_identity.waiting_status = "IN_PROGRESS"
        await identity.aclose()
    assert polls >= 3  # it kept polling through the unknown status until its own timeout


async def test_waiting_times_out(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud, authorization_timeout_seconds=0.3)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("slow"))) as events:
        with pytest.raises(AuthorizationTimedOut) as raised:
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
    await identity.aclose()
    assert isinstance(events[0], AuthorizationRequired)
    assert "not completed in time" in raised.value.safe_message


async def test_cancelled_wait_stops_at_once_and_the_next_ask_gets_a_new_link(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud, poll_interval_seconds=30)
    jwt = fresh_cloud.issue_user_jwt(unique("gone"))
    async with signed_in(identity, jwt) as events:
        task = asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                         purpose=PURPOSE))
        while not events:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with signed_in(identity, jwt, wait=False):
        with pytest.raises(AuthorizationPending) as pending:
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
    await identity.aclose()
    # An authorization URL works once: a link shown before is never shown again (the user may have opened it).
    assert pending.value.url != events[0].url
    assert (await calls(fresh_cloud))["GetResourceOAuth2Token"] == 2  # one start per ask, no poll in between


async def test_non_stream_mode_raises_pending_and_the_next_request_gets_the_token(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("nonstream"))
    async with signed_in(identity, jwt, wait=False) as events:
        with pytest.raises(AuthorizationPending) as pending:
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
        # The link also goes to the event sink first, so a non-stream answer's agent_events carries it.
        assert events == [AuthorizationRequired(url=pending.value.url, purpose=PURPOSE,
                                                provider=provider(fresh_cloud))]
        assert pending.value.purpose == PURPOSE
        with pytest.raises(AuthorizationPending) as again:
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
        assert again.value.url != pending.value.url  # a new link each ask; either one fills the vault
        assert [e.url for e in events] == [pending.value.url, again.value.url]
        redirect = await answer_consent(pending.value.url)
        await identity.complete_authorization(session_uri=redirect["session_uri"],
                                              flow=identity.open_state(redirect["state"]))
        token = await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
    await identity.aclose()
    assert fresh_cloud.dingtalk_tokens.get(token).valid


async def test_m2m_flow_needs_no_user_consent(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("m2m"))) as events:
        token = await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                            flow="M2M")
    await identity.aclose()
    assert token and events == []


async def test_sts_credential_is_cached_and_refreshed_after_expiry(fresh_cloud) -> None:
    clock = Clock()
    identity = identity_for(fresh_cloud, clock=clock)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("sts"))):
        first = await identity.sts_credential(duration_seconds=900)
        assert await identity.sts_credential(duration_seconds=900) is first
        assert (await calls(fresh_cloud))["AssumeRoleForWorkloadIdentity"] == 1
        clock.offset = first.expiration.timestamp() - clock._time() + 1
        second = await identity.sts_credential(duration_seconds=900)
    await identity.aclose()
    assert second.access_key_id != first.access_key_id
    assert (await calls(fresh_cloud))["AssumeRoleForWorkloadIdentity"] == 2
    assert first.access_key_secret not in repr(first) and first.security_token not in repr(first)
    assert fresh_cloud.sts_credentials.get(second.access_key_id).valid


async def test_sts_credentials_sign_a_real_tea_client(fresh_cloud) -> None:
    from alibabacloud_sts20150401.client import Client as StsClient
    from alibabacloud_tea_openapi import models as open_api_models

    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("tea"))):
        credential = await identity.sts_credential(policy='{"Version":"1","Statement":[]}')
    await identity.aclose()
    endpoint = fresh_cloud.env["STS_ENDPOINT"].removeprefix("http://")
    sts = StsClient(open_api_models.Config(credential=credential.credential_client(), endpoint=endpoint,
                                           protocol="http", region_id="cn-hangzhou"))
    body = (await sts.get_caller_identity_async()).body
    assert body.arn and "assumed-role" in body.arn


async def test_credentials_the_service_stopped_accepting_are_exchanged_again(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("stale"))):
        await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE, flow="M2M")
        before = await identity.sts_credential()
        async with httpx.AsyncClient() as http:
            await http.post(f"{fresh_cloud.url('agent_identity')}/emulator/expire-tokens")
        # Forced: the cached token is skipped, and the call signed with the expired STS credentials and workload
        # token is refused once, then made again with freshly exchanged ones.
        assert await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                           flow="M2M", force_authentication=True)
        after = await identity.sts_credential()  # keyed by the new workload token: assumed again
        assert after.access_key_id != before.access_key_id
        assert fresh_cloud.sts_credentials.get(after.access_key_id).valid
    await identity.aclose()
    assert (await calls(fresh_cloud))["GetWorkloadAccessTokenForJWT"] == 2


async def test_rejected_sts_credentials_are_replaced_once_even_when_many_report_them(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("rejected"))):
        before = await identity.sts_credential(policy=POLICY)
        async with httpx.AsyncClient() as http:
            await http.post(f"{fresh_cloud.url('agent_identity')}/emulator/expire-tokens")
        fresh = await asyncio.gather(*(identity.sts_credential(policy=POLICY, rejected=before) for _ in range(5)))
        # A request that reports the already-replaced credential gets the replacement, not a third one.
        again = await identity.sts_credential(policy=POLICY, rejected=before)
    await identity.aclose()
    assert {c.access_key_id for c in fresh} == {again.access_key_id} != {before.access_key_id}
    assert fresh_cloud.sts_credentials.get(again.access_key_id).valid
    counted = await calls(fresh_cloud)
    # The expired workload token is refused once, exchanged again, then one AssumeRole with the new one.
    assert counted["GetWorkloadAccessTokenForJWT"] == 2
    assert counted["AssumeRoleForWorkloadIdentity"] == 1 + 1 + 1


async def test_oauth2_token_is_cached_until_shortly_before_it_expires(fresh_cloud) -> None:
    clock = Clock()
    identity = identity_for(fresh_cloud, clock=clock)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("cached"), exp=int(clock()) + 86400)):
        first = await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                            flow="M2M")
        same = await asyncio.gather(*(identity.oauth2_token(provider=provider(fresh_cloud),
                                                            scopes=list(reversed(SCOPES)), purpose=PURPOSE,
                                                            flow="M2M") for _ in range(10)))
        assert set(same) == {first}
        assert (await calls(fresh_cloud))["GetResourceOAuth2Token"] == 1
        lifetime = fresh_cloud.dingtalk_tokens.get(first).expires_at - clock._time()
        clock.offset = lifetime - 61  # the margin is 60 s: still served from the cache
        assert await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                           flow="M2M") == first
        assert (await calls(fresh_cloud))["GetResourceOAuth2Token"] == 1
        clock.offset = lifetime - 59
        await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE, flow="M2M")
        assert (await calls(fresh_cloud))["GetResourceOAuth2Token"] == 2
    await identity.aclose()


async def test_oauth2_token_cache_is_per_user_and_flow_and_forcing_skips_it(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    tokens = {}
    for user in ("alice", "bob"):
        async with signed_in(identity, fresh_cloud.issue_user_jwt(unique(user))):
            tokens[user] = await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                       purpose=PURPOSE, flow="M2M")
            assert await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                               flow="M2M") == tokens[user]
    assert (await calls(fresh_cloud))["GetResourceOAuth2Token"] == 2  # one per user: never shared across users
    carol = fresh_cloud.issue_user_jwt(unique("carol"))
    async with signed_in(identity, carol, wait=False):
        with pytest.raises(AuthorizationPending):  # the user's own token needs consent: nothing cached
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
        m2m = await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                          flow="M2M")
        assert m2m == tokens["alice"]  # the emulator's M2M token belongs to the workload, not the user
        forced = await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                             flow="M2M", force_authentication=True)
        assert await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE,
                                           flow="M2M") == forced
    await identity.aclose()
    assert (await calls(fresh_cloud))["GetResourceOAuth2Token"] == 2 + 1 + 1 + 1


async def test_signing_credentials_are_the_ones_sts_credential_returns(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("shared"))):
        await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE, flow="M2M")
        unscoped = await identity.sts_credential()
        scoped = await identity.sts_credential(policy=POLICY)
    await identity.aclose()
    assert scoped.access_key_id != unscoped.access_key_id
    # One AssumeRole signed GetResourceOAuth2Token and is reused by sts_credential(); the scoped one is its own.
    assert (await calls(fresh_cloud))["AssumeRoleForWorkloadIdentity"] == 2


@pytest.mark.parametrize("fault, expected", [
    ({"fail_next": 1, "fail_kind": "throttle"}, IdentityThrottled),
    ({"fail_next": 1, "fail_status": 503}, IdentityUnavailable),
    ({"fail_next": 1, "fail_status": 500}, IdentityUnavailable),
    ({"fail_next": 1, "fail_kind": "timeout", "timeout_s": 2}, IdentityUnavailable),
])
async def test_service_faults_become_typed_errors(fresh_cloud, fault, expected) -> None:
    identity = identity_for(fresh_cloud, request_timeout_seconds=0.5)
    jwt = fresh_cloud.issue_user_jwt(unique("fault"))
    await set_faults(fresh_cloud, **fault)
    async with signed_in(identity, jwt):
        with pytest.raises(expected) as raised:
            await identity.workload_access_token()
        assert jwt not in str(raised.value)
        # A failed call is not cached: the next one succeeds.
        assert (await identity.workload_access_token()).startswith("wat-")
    await identity.aclose()


@pytest.mark.parametrize("status", [401, 403])
async def test_any_refusal_of_a_cached_credential_is_recovered_with_one_fresh_exchange(fresh_cloud, status) -> None:
    """Agent Identity's codes for a refused workload token are not published: a 401/403 (here with a code the
    product has never seen) on a call made with cached credentials costs one fresh exchange, not the answer."""
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("stale"))
    async with signed_in(identity, jwt):
        first = await identity.sts_credential()
        await set_faults(fresh_cloud, fail_next=1, fail_status=status, match="AssumeRoleForWorkloadIdentity")
        fresh = await identity.sts_credential(policy='{"Version":"1","Statement":[]}')
        exchanges = (await calls(fresh_cloud))["GetWorkloadAccessTokenForJWT"]
    await identity.aclose()
    assert fresh.access_key_id != first.access_key_id
    assert exchanges == 2  # the user's JWT was exchanged again, once


async def test_a_refusal_that_stays_is_reported_after_one_retry(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("stays"))):
        await identity.sts_credential()
        await set_faults(fresh_cloud, fail_next=5, fail_status=403, match="AssumeRoleForWorkloadIdentity")
        with pytest.raises(ProviderMisconfigured):
            await identity.sts_credential(policy='{"Version":"1","Statement":[]}')
        counted = await calls(fresh_cloud)
    await identity.aclose()
    assert counted["AssumeRoleForWorkloadIdentity"] == 3  # the first success, then the refusal and one retry


@pytest.mark.parametrize("env, call, expected", [
    ({"AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": "not-ours"}, "workload", ProviderMisconfigured),
    ({"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "wrong-secret"}, "workload", ProviderMisconfigured),
    ({"AGENT_IDENTITY_DATA_ENDPOINT": "http://127.0.0.1:9"}, "workload", IdentityUnavailable),
    ({"DINGTALK_CREDENTIAL_PROVIDER_NAME": "no-such-provider"}, "oauth2", ProviderMisconfigured),
    ({"APP_REDIRECT_URI": "http://unregistered.example"}, "oauth2", ProviderMisconfigured),
])
async def test_configuration_errors_become_typed_errors(fresh_cloud, env, call, expected) -> None:
    identity = identity_for(fresh_cloud, env=env)
    jwt = fresh_cloud.issue_user_jwt(unique("conf"))
    async with signed_in(identity, jwt):
        with pytest.raises(expected) as raised:
            if call == "workload":
                await identity.workload_access_token()
            else:
                await identity.oauth2_token(provider={**fresh_cloud.env, **env}["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
                                            scopes=SCOPES, purpose=PURPOSE)
    await identity.aclose()
    assert jwt not in str(raised.value) and "wrong-secret" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


@pytest.mark.parametrize("endpoint, logged, told", [
    # Nothing listens there: the host tried is logged; the user hears more than "try again shortly".
    ("http://127.0.0.1:9", "could not be reached at http://127.0.0.1:9 (", "region and endpoint"),
    # A mistyped region gives a host name that does not resolve (.invalid never does, RFC 2606).
    ("agentidentitydata.cn-hangzou.invalid", "the host agentidentitydata.cn-hangzou.invalid does not resolve; "
                                             "check AGENT_IDENTITY_REGION_ID", "region setting"),
])
async def test_an_unreachable_identity_service_names_the_host_it_tried(
        fresh_cloud, caplog: pytest.LogCaptureFixture, endpoint: str, logged: str, told: str) -> None:
    caplog.set_level(logging.WARNING, logger="identity.sdk_errors")
    identity = identity_for(fresh_cloud, env={"AGENT_IDENTITY_DATA_ENDPOINT": endpoint}, request_timeout_seconds=3)
    jwt = fresh_cloud.issue_user_jwt(unique("host"))
    async with signed_in(identity, jwt):
        with pytest.raises(IdentityUnavailable) as raised:
            await identity.workload_access_token()
    await identity.aclose()
    assert logged in caplog.text and "GetWorkloadAccessTokenForJWT" in caplog.text
    assert told in raised.value.safe_message and jwt not in caplog.text


async def test_a_jwt_the_service_rejects_is_an_invalid_caller(fresh_cloud) -> None:
    import time
    identity = identity_for(fresh_cloud, env={"INBOUND_JWKS_URL": ""}, jwt_leeway_seconds=3600)
    jwt = fresh_cloud.issue_user_jwt(unique("old"), exp=int(time.time()) - 60)
    async with signed_in(identity, jwt):
        with pytest.raises(InvalidCallerToken):
            await identity.workload_access_token()
    await identity.aclose()


async def test_event_loop_keeps_ticking_while_twenty_calls_wait(fresh_cloud) -> None:
    identity = identity_for(fresh_cloud)
    jwts = [fresh_cloud.issue_user_jwt(unique("loop")) for _ in range(20)]
    await set_faults(fresh_cloud, latency_ms=500, match="GetWorkloadAccessTokenForJWT")
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def one(jwt: str) -> str:
        async with signed_in(identity, jwt):
            return await identity.workload_access_token()

    ticking = asyncio.create_task(ticker())
    tokens = await asyncio.gather(*(one(j) for j in jwts))
    stop.set()
    await ticking
    await identity.aclose()
    assert len(set(tokens)) == 20
    assert ticks >= 20  # a blocking SDK call would freeze the ticker for 20 x 500 ms


async def test_no_secret_reaches_the_logs(fresh_cloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    identity = identity_for(fresh_cloud)
    jwt = fresh_cloud.issue_user_jwt(unique("logs"))
    secrets_seen: list[str] = [jwt, fresh_cloud.env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                               fresh_cloud.env["IDENTITY_STATE_SECRET"]]
    async with signed_in(identity, jwt) as events:
        secrets_seen.append(await identity.workload_access_token())
        credential = await identity.sts_credential()
        secrets_seen += [credential.access_key_secret, credential.security_token]
        await set_faults(fresh_cloud, fail_next=1, fail_status=400, match="GetResourceOAuth2Token")
        with pytest.raises(IdentityError):
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
        task = asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                         purpose=PURPOSE))
        while not events:
            await asyncio.sleep(0.01)
        redirect = await answer_consent(events[0].url)
        await identity.complete_authorization(session_uri=redirect["session_uri"],
                                              flow=identity.open_state(redirect["state"]))
        secrets_seen.append(await asyncio.wait_for(task, 10))
    await identity.aclose()
    assert caplog.records  # the flow did log (warnings for the fault, info for the link)
    for secret in secrets_seen:
        assert secret not in caplog.text


from identity.errors import IdentityError  # noqa: E402


async def test_a_users_waits_are_capped_and_a_wait_that_ends_frees_its_place(fresh_cloud) -> None:
    """MAX_WAITING_PER_USER waits of one user at once; one more is refused before its link is shown, and
    once a wait ends (its client went away) another may begin. Other users are not counted against it."""
    identity = identity_for(fresh_cloud, max_waiting_per_user=2)
    jwt = fresh_cloud.issue_user_jwt(unique("capped"))
    waits, sinks = [], []
    for _ in range(2):
        async with signed_in(identity, jwt) as events:
            waits.append(asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud),
                                                                   scopes=SCOPES, purpose=PURPOSE)))
            sinks.append(events)
            while not events:
                await asyncio.sleep(0.01)
    async with signed_in(identity, jwt) as refused_events:
        with pytest.raises(TooManyPendingAuthorizations) as refused:
            await identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES, purpose=PURPOSE)
    async with signed_in(identity, fresh_cloud.issue_user_jwt(unique("someone-else"))) as other_events:
        other = asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                          purpose=PURPOSE))
        while not other_events:
            await asyncio.sleep(0.01)
    waits[0].cancel()
    await asyncio.gather(waits[0], return_exceptions=True)
    async with signed_in(identity, jwt) as admitted_events:
        admitted = asyncio.create_task(identity.oauth2_token(provider=provider(fresh_cloud), scopes=SCOPES,
                                                             purpose=PURPOSE))
        while not admitted_events:
            await asyncio.sleep(0.01)
    for task in (waits[1], other, admitted):
        task.cancel()
    await asyncio.gather(waits[1], other, admitted, return_exceptions=True)
    await identity.aclose()
    assert refused.value.code == "too_many_pending_authorizations" and refused.value.http_status == 429
    assert "2 requests waiting" in refused.value.safe_message
    assert refused_events == []  # no link shown for a wait that cannot begin
    assert isinstance(admitted_events[0], AuthorizationRequired)
