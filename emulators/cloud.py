"""Starts every emulator together, wired to each other, on free 127.0.0.1 ports in this process.

`start_local_cloud()` is what pytest fixtures and `python -m emulators` both use. Every secret (AccessKey,
IdP signing key, the app's state secret) is generated at start and lives only in memory.
"""

from __future__ import annotations

import json
import secrets
import ssl
import string
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from emulators._server import Faults, ServerGroup
from emulators.acs import SignatureVerifier
from emulators.agent_identity import (AgentIdentityEmulator, CredentialProvider, UserJwtValidator,
                                      WorkloadIdentity)
from emulators.agentrun import AgentRunEmulator, ModelService
from emulators.dingtalk import DingTalkEmulator
from emulators.idp import LocalIdp
from emulators.model import ModelEmulator
from emulators.oss import OssEmulator, role_policy, sample_buckets
from emulators.registry import CredentialRegistry
from emulators.sts import RamUser, StsEmulator

if TYPE_CHECKING:
    from tools.tool import OAuth2Provider

EMULATORS = ("idp", "agent_identity", "sts", "dingtalk", "model", "agentrun", "oss")
BROWSER_FACING = ("idp", "agent_identity")  # sign-in and consent pages: also served over plain HTTP
DEFAULT_RETURN_URL = "http://localhost:8090/callback"
APP_REDIRECT_URI = "http://localhost:8090"
REGION = "cn-hangzhou"
WORKLOAD_IDENTITY_NAME = "local-agent"
# The providers' APIs emulated here, by env_prefix; another provider's tools get their credential provider in
# Agent Identity (consent works) and call its real API base.
EMULATED_APIS = {"DINGTALK": "dingtalk"}
MODEL_SERVICE_NAME = "local-qwen"
# MODEL_SERVICE_WITH_CREDENTIAL: its key is a stored credential, read with GetCredential
MODEL_SERVICE_WITH_CREDENTIAL = "local-qwen-stored-key"
MODEL_CREDENTIAL_NAME = "local-qwen-key"
MODEL_NAME = "qwen-plus"
OSS_BUCKET = "agent-docs"  # the role may read any object in it (emulators/oss.py sample_buckets)
OSS_FORBIDDEN_BUCKET = "finance-private"  # exists, but the role may read nothing in it
CALLBACK_CLIENT_ID = "agentrun-callback"  # the IdP OAuth client the callback signs browsers in with
# The users' own app (e.g. ./scripts/get-jwt) is a public native client whose client id is the agent's
# audience, so its ID tokens are the JWTs the agent accepts; its redirect is any loopback port (RFC 8252 7.3).
LOOPBACK_REDIRECT_URI = "http://127.0.0.1/callback"
SIGNED_IN_PATH = "/signed-in"  # below a return URL: that callback's browser sign-in redirect URI

# Urllib without proxies: a loopback call must never go through HTTP_PROXY.
def _opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=context))


@dataclass(frozen=True)
class ExternalIdp:
    """An OpenID Provider the users sign in with instead of our IdP emulator (e.g. a certified one a test
    runs): Agent Identity trusts its JWKS, and the product is pointed at it and its OAuth client."""

    issuer: str
    jwks_url: str
    audience: str
    client_id: str
    client_secret: str

    @classmethod
    def discover(cls, issuer: str, *, client_id: str, client_secret: str = "", audience: str = "",
                 jwks_url: str = "") -> ExternalIdp:
        """The provider at `issuer`: its `jwks_uri` read from its discovery document unless given; the
        audience of its ID tokens is the client id unless given (OpenID Connect Core, 2: `aud`)."""
        if not jwks_url:
            metadata = _read_json(f"{issuer.rstrip('/')}/.well-known/openid-configuration")
            if metadata.get("issuer") != issuer or not isinstance(metadata.get("jwks_uri"), str):
                raise ValueError(f"{issuer}/.well-known/openid-configuration names issuer "
                                 f"{metadata.get('issuer')!r} and jwks_uri {metadata.get('jwks_uri')!r}: "
                                 "give the issuer exactly as the provider names it")
            jwks_url = metadata["jwks_uri"]
        return cls(issuer=issuer, jwks_url=jwks_url, audience=audience or client_id, client_id=client_id,
                   client_secret=client_secret)

    def jwks(self) -> dict[str, Any]:
        return _read_json(self.jwks_url)


def _read_json(url: str) -> dict[str, Any]:
    with _opener().open(url, timeout=10) as response:
        return json.loads(response.read())


class LocalCloud:
    """Running emulators: `.info` (the ready-file dict), `.env` for the product, and test helpers."""

    def __init__(self, group: ServerGroup, info: dict[str, Any], *, idp: LocalIdp,
                 agent_identity: AgentIdentityEmulator, model: ModelEmulator,
                 dingtalk_tokens: CredentialRegistry, sts_credentials: CredentialRegistry,
                 oss: OssEmulator) -> None:
        self._group = group
        self.info = info
        self.env: dict[str, str] = info["env"]
        self.idp = idp
        self.agent_identity = agent_identity
        self.model = model
        self.dingtalk_tokens = dingtalk_tokens
        self.sts_credentials = sts_credentials
        self.oss = oss
        self._http = _opener(self.ssl_context())

    def url(self, name: str) -> str:
        """The service URL of emulator `name` (HTTPS)."""
        return self._group.urls[name]

    def browser_url(self, name: str) -> str:
        """Where a browser opens `name`'s pages (plain HTTP for the IdP and Agent Identity's consent page)."""
        return self._group.browser_url(name)

    @property
    def ca_file(self) -> str:
        """The local CA's certificate: what a client trusts (`SSL_CERT_FILE`) to reach the emulators."""
        return self.info["ca_file"]

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the emulators' CA, for helpers that do not read SSL_CERT_FILE."""
        return ssl.create_default_context(cafile=self.ca_file)

    def register_return_url(self, url: str) -> None:
        """Allow another callback: on the workload identity, and its sign-in redirect on the IdP's client."""
        self.agent_identity.return_urls.add(url)
        self.idp.register_client(CALLBACK_CLIENT_ID, self.env["CALLBACK_OIDC_CLIENT_SECRET"],
                                 [url + SIGNED_IN_PATH])
        self.info["return_urls"] = sorted(self.agent_identity.return_urls)

    def reset(self) -> None:
        """Clear faults and call counters of every emulator (issued credentials stay valid)."""
        for name in EMULATORS:
            self._post(f"{self.url(name)}/emulator/reset", b"")

    def issue_user_jwt(self, sub: str, **claims: Any) -> str:
        """A valid RS256 JWT for `sub`: from the IdP's token endpoint, or signed in-process when `claims`
        (e.g. `exp`, `iss`) must be forged for a negative test."""
        if claims:
            return self.idp.issue(sub, **claims)
        body = urlencode({"grant_type": "password", "username": sub}).encode()
        return json.loads(self._post(f"{self.url('idp')}/token", body))["id_token"]

    def issued(self) -> dict[str, list[dict[str, Any]]]:
        """Every credential Agent Identity's emulator issued so far (`GET /emulator/issued`)."""
        with self._http.open(f"{self.url('agent_identity')}/emulator/issued", timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self._group.stop()

    def __enter__(self) -> LocalCloud:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _post(self, url: str, body: bytes) -> bytes:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with self._http.open(request, timeout=10) as response:
            return response.read()


def start_local_cloud(return_urls: Iterable[str] = (), faults: Mapping[str, Mapping[str, Any]] | None = None,
                      users_idp: ExternalIdp | None = None, ca_file: Path | None = None,
                      workload_token_ttl_s: float | None = None) -> LocalCloud:
    """Start all emulators; `faults` (e.g. `{"agent_identity": {"latency_ms": 50}}`) apply from the start.
    With `users_idp`, users are those of that provider, not of the IdP emulator (which still runs).
    `workload_token_ttl_s` replaces the chosen lifetime of workload access tokens (emulators/chosen.py).
    They serve HTTPS with a certificate of this process's local CA, whose certificate is at `info["ca_file"]`
    (`ca_file` if given, e.g. next to a ready file) and is `SSL_CERT_FILE` in `.env`."""
    start_faults = {name: _faults(name, spec) for name, spec in (faults or {}).items()}
    group = ServerGroup()
    assert group.ca is not None
    urls = {name: group.reserve(name, browser=name in BROWSER_FACING) for name in EMULATORS}
    trusted = str(group.ca.write_ca(ca_file) if ca_file else group.ca.ca_file)
    registered = tuple(dict.fromkeys([DEFAULT_RETURN_URL, *return_urls]))
    access_key_id = "LTAI" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(20))
    access_key_secret = secrets.token_urlsafe(22)[:30]
    model_api_key = "sk-local-" + secrets.token_hex(16)
    account_id = _digits(16)
    dingtalk_tokens = CredentialRegistry("dt-")
    sts_credentials = CredentialRegistry("STS.")

    def verifier() -> SignatureVerifier:
        return SignatureVerifier(access_key_id, access_key_secret, sts_credentials)

    idp = LocalIdp(urls["idp"], browser_url=group.browser_url("idp"))
    callback_client_secret = secrets.token_urlsafe(24)
    idp.register_client(CALLBACK_CLIENT_ID, callback_client_secret,
                        [url + SIGNED_IN_PATH for url in registered])
    idp.register_client(idp.audience, "", [LOOPBACK_REDIRECT_URI])
    workload = WorkloadIdentity(name=WORKLOAD_IDENTITY_NAME, return_urls=registered, account_id=account_id,
                                role_name="AgentRunLocalAgentRole", role_id=_digits(19), region=REGION)
    agent_identity = AgentIdentityEmulator(
        group.browser_url("agent_identity"), verifier=verifier(),
        users=(UserJwtValidator(users_idp.jwks, users_idp.issuer, users_idp.audience) if users_idp
               else UserJwtValidator(idp.jwks, idp.issuer, idp.audience)),
        workload=workload,
        providers=[CredentialProvider(credential_provider_name(provider), provider.label, scopes)
                   for provider, scopes in tools_providers().items()],
        provider_tokens=dingtalk_tokens, sts_credentials=sts_credentials)
    if workload_token_ttl_s is not None:
        agent_identity.workload_token_ttl_s = workload_token_ttl_s
    sts = StsEmulator(verifier=verifier(), sts_credentials=sts_credentials,
                      owner=RamUser(account_id, "agentrun-local", _digits(15)))
    model = ModelEmulator(model_api_key)
    agentrun = AgentRunEmulator(verifier=verifier(), services=[
        ModelService(MODEL_SERVICE_NAME, f"{urls['model']}/v1", model_api_key, (MODEL_NAME,)),
        ModelService(MODEL_SERVICE_WITH_CREDENTIAL, f"{urls['model']}/v1", model_api_key, (MODEL_NAME,),
                     credential_name=MODEL_CREDENTIAL_NAME)])
    oss = OssEmulator(region=REGION, account_id=account_id, role_policy=role_policy(OSS_BUCKET),
                      buckets=sample_buckets(OSS_BUCKET, OSS_FORBIDDEN_BUCKET),
                      sts_credentials=sts_credentials)
    apps = {"idp": idp.app, "agent_identity": agent_identity.app, "sts": sts.app,
            "dingtalk": DingTalkEmulator(dingtalk_tokens).app, "model": model.app, "agentrun": agentrun.app,
            "oss": oss.app}
    for name, app in apps.items():
        if name in start_faults:
            app.state.emulator.faults = start_faults[name]
        group.add(name, app)

    env = {
        "AGENT_IDENTITY_REGION_ID": REGION,
        "AGENT_IDENTITY_DATA_ENDPOINT": urls["agent_identity"],
        "AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME": WORKLOAD_IDENTITY_NAME,
        "AGENT_IDENTITY_USE_STS": "true",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": access_key_id,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": access_key_secret,
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
        "SSL_CERT_FILE": trusted,
        "INBOUND_JWKS_URL": f"{urls['idp']}/jwks",
        "INBOUND_JWT_ISSUER": idp.issuer,
        "INBOUND_JWT_AUDIENCE": idp.audience,
        **provider_env(urls),
        "STS_ENDPOINT": urls["sts"],
        "OSS_ENDPOINT": urls["oss"],
        "OSS_REGION": REGION,
        "MODEL_BASE_URL": f"{urls['model']}/v1",
        "MODEL_API_KEY": model_api_key,
        "MODEL_NAME": MODEL_NAME,
        "AGENTRUN_CONTROL_ENDPOINT": urls["agentrun"],
        "IDENTITY_STATE_SECRET": secrets.token_urlsafe(32),
        "APP_REDIRECT_URI": APP_REDIRECT_URI,
        "CALLBACK_OIDC_CLIENT_ID": CALLBACK_CLIENT_ID,
        "CALLBACK_OIDC_CLIENT_SECRET": callback_client_secret,
    }
    if users_idp is not None:
        env.update({"INBOUND_JWKS_URL": users_idp.jwks_url, "INBOUND_JWT_ISSUER": users_idp.issuer,
                    "INBOUND_JWT_AUDIENCE": users_idp.audience,
                    "CALLBACK_OIDC_CLIENT_ID": users_idp.client_id,
                    "CALLBACK_OIDC_CLIENT_SECRET": users_idp.client_secret})
    info = {
        **{f"{name}_url": url for name, url in urls.items()},
        **{f"{name}_browser_url": group.browser_url(name) for name in BROWSER_FACING},
        "ca_file": trusted,
        "access_key_id": access_key_id,
        "access_key_secret": access_key_secret,
        "account_id": account_id,
        "region": REGION,
        "workload_identity_name": WORKLOAD_IDENTITY_NAME,
        "dingtalk_provider": env["DINGTALK_CREDENTIAL_PROVIDER_NAME"],
        "return_urls": list(registered),
        "idp_issuer": idp.issuer,
        "idp_audience": idp.audience,
        "model_service_name": MODEL_SERVICE_NAME,
        "model_service_with_credential": MODEL_SERVICE_WITH_CREDENTIAL,
        "model_name": MODEL_NAME,
        "oss_bucket": OSS_BUCKET,
        "oss_forbidden_bucket": OSS_FORBIDDEN_BUCKET,
        "env": env,
    }
    group.start()
    return LocalCloud(group, info, idp=idp, agent_identity=agent_identity, model=model,
                      dingtalk_tokens=dingtalk_tokens, sts_credentials=sts_credentials, oss=oss)


def tools_providers() -> dict[OAuth2Provider, tuple[str, ...]]:
    """The OAuth2 providers of the product's tools, with their scopes. Imported when the emulators start, not
    with this module: the tools pull in SDKs whose HTTP stacks read `SSL_CERT_FILE` when first imported."""
    from tools import TOOLS
    from tools.tool import oauth2_providers

    return oauth2_providers(TOOLS)


def credential_provider_name(provider: OAuth2Provider) -> str:
    """The emulated Agent Identity credential provider of `provider`: `dingtalk-oauth` for DINGTALK."""
    return provider.env_prefix.lower().replace("_", "-") + "-oauth"


def provider_env(urls: Mapping[str, str]) -> dict[str, str]:
    """The variables of every OAuth2 provider the tools use: its credential provider here, and its API base
    where an emulator serves it."""
    env: dict[str, str] = {}
    for provider in tools_providers():
        env[f"{provider.env_prefix}_CREDENTIAL_PROVIDER_NAME"] = credential_provider_name(provider)
        if provider.env_prefix in EMULATED_APIS:
            env[f"{provider.env_prefix}_API_BASE"] = urls[EMULATED_APIS[provider.env_prefix]]
    return env


def _digits(n: int) -> str:
    """A random n-digit id, the shape of Alibaba Cloud account, user and role ids."""
    return str(10 ** (n - 1) + secrets.randbelow(9 * 10 ** (n - 1)))


def _faults(name: str, spec: Mapping[str, Any]) -> Faults:
    if name not in EMULATORS:
        raise ValueError(f"unknown emulator {name!r}; known: {', '.join(EMULATORS)}")
    unknown = set(spec) - {f.name for f in fields(Faults)}
    if unknown:
        raise ValueError(f"unknown fault fields for {name}: {sorted(unknown)}")
    return Faults(**spec)
