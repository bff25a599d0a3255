"""The product reaches the cloud services over TLS as in production: it trusts only the CA it is told to trust
(SSL_CERT_FILE), and it reuses its TLS connections (counted at the emulators, not mocked)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from emulators._server import serving
from emulators.tls import make_ca
from identity.errors import IdentityUnavailable
from outbound import SDK_THREADS
from tests.support.app_server import serve_app
from tests.support.identity import identity_for, signed_in, unique

CALLS = 20


async def connections(cloud, name: str) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{cloud.url(name)}/emulator/connections")).json()["connections"]


async def test_an_endpoint_with_an_untrusted_certificate_is_refused_with_a_clear_error(fresh_cloud, caplog):
    """The Agent Identity emulator behind a certificate of a CA nobody here trusts: no call goes through, the
    error the user sees is the plain "unavailable", and the log says why without quoting a secret."""
    jwt = fresh_cloud.issue_user_jwt(unique("untrusted"))
    with serving("agent_identity", fresh_cloud.agent_identity.app, ca=make_ca()) as impostor:
        assert impostor.startswith("https://")
        identity = identity_for(fresh_cloud, env={"AGENT_IDENTITY_DATA_ENDPOINT": impostor})
        with caplog.at_level(logging.WARNING):
            async with signed_in(identity, jwt):
                try:
                    await identity.workload_access_token()
                except IdentityUnavailable as error:
                    refused = error
                else:
                    raise AssertionError("a server with an untrusted certificate was accepted")
        await identity.aclose()
    assert refused.safe_message == IdentityUnavailable.default_message
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "TLS certificate is not trusted" in logged and "SSL_CERT_FILE" in logged
    for secret in (jwt, fresh_cloud.env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]):
        assert secret not in logged and secret not in str(refused)
    assert (await connections(fresh_cloud, "agent_identity")) == 0  # nothing reached the trusted one either


async def test_agent_identity_calls_reuse_pooled_tls_connections(fresh_cloud):
    """CALLS workload-token exchanges for new users, one after another, then all at once: the emulator sees
    one connection for the first burst and never more than the SDK thread pool for the second."""
    identity = identity_for(fresh_cloud)
    jwts = [fresh_cloud.issue_user_jwt(unique("pooled")) for _ in range(2 * CALLS)]
    for jwt in jwts[:CALLS]:
        async with signed_in(identity, jwt):
            await identity.workload_access_token()
    one_after_another = await connections(fresh_cloud, "agent_identity")

    async def exchange(jwt: str) -> str:
        async with signed_in(identity, jwt):
            return await identity.workload_access_token()

    await asyncio.gather(*(exchange(jwt) for jwt in jwts[CALLS:]))
    await identity.aclose()
    assert one_after_another <= 2, one_after_another  # 1, or 2 if the server closed an idle one meanwhile
    assert await connections(fresh_cloud, "agent_identity") <= SDK_THREADS + one_after_another


@pytest.mark.parametrize(("prompt", "services", "answer"), [
    ("Who am I on Alibaba Cloud?", ("agent_identity", "sts", "model"), "acts as Alibaba Cloud account"),
    ("Read oss://agent-docs/notes/welcome.txt", ("agent_identity", "oss", "model"), "Welcome to the local OSS"),
])
def test_a_chat_reuses_connections_to_every_service(fresh_cloud, prompt, services, answer):
    """Through the whole app: CALLS users each ask who the agent is on Alibaba Cloud (model, Agent Identity,
    STS), or read an OSS object (a new OSS client per call, with that call's credentials). Every service sees
    a handful of connections, not one per call."""
    jwts = [fresh_cloud.issue_user_jwt(unique("who")) for _ in range(CALLS)]
    with serve_app(fresh_cloud.env) as base_url, httpx.Client(trust_env=False, timeout=60) as client:
        for jwt in jwts:
            reply = client.post(f"{base_url}/openai/v1/chat/completions",
                                headers={"Authorization": f"Bearer {jwt}"},
                                json={"model": "qwen-plus", "messages": [{"role": "user", "content": prompt}]})
            assert reply.status_code == 200 and answer in reply.text, reply.text
        with httpx.Client() as http:
            seen = {name: http.get(f"{fresh_cloud.url(name)}/emulator/connections").json()["connections"]
                    for name in services}
            calls = {name: sum(http.get(f"{fresh_cloud.url(name)}/emulator/calls").json().values())
                     for name in services}
    assert all(calls[name] >= CALLS for name in calls), calls
    assert all(count <= 3 for count in seen.values()), (seen, calls)


def test_a_model_endpoint_with_an_untrusted_certificate_is_refused_with_a_clear_error(fresh_cloud, caplog):
    """The model behind a certificate nobody here trusts: the chat fails as "the model could not be reached"
    (502, not a timeout), the log says why, neither the model's API key nor the user's JWT is in the answer or
    the log, and nothing reaches the model."""
    jwt = fresh_cloud.issue_user_jwt(unique("untrusted-model"))
    with serving("model", fresh_cloud.model.app, ca=make_ca()) as impostor:
        env = fresh_cloud.env | {"MODEL_BASE_URL": f"{impostor}/v1", "MODEL_MAX_RETRIES": "0"}
        with caplog.at_level(logging.WARNING), serve_app(env) as base_url, \
                httpx.Client(trust_env=False, timeout=60) as client:
            answer = client.post(f"{base_url}/openai/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {jwt}"},
                                 json={"model": "qwen-plus", "messages": [{"role": "user", "content": "hello"}]})
    assert answer.status_code == 502, answer.text
    assert answer.json()["error"]["code"] == "model_unreachable"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "TLS certificate this agent does not trust" in logged
    for secret in (jwt, fresh_cloud.env["MODEL_API_KEY"]):
        assert secret not in answer.text and secret not in logged
    with httpx.Client() as http:
        assert http.get(f"{fresh_cloud.url('model')}/emulator/connections").json()["connections"] == 0
