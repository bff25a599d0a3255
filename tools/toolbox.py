"""The tools as LangChain tools bound to this process's identity service, and the connection pools they share.

One conversion for every tool (tools/tool.py): the credential its kind names (the user's OAuth2 token, the
consent link streamed and the wait, or STS credentials narrowed by a session policy), one more run with a
fresh credential when the service refuses the first, and a short sentence for the model on every failure. No
credential reaches the model: not in a return value, an exception message or a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from darabonba.exceptions import DaraException, UnretryableException

from identity.errors import AuthorizationPending, IdentityError, consent_sentence
from identity.sdk_errors import THROTTLED, UNAVAILABLE, credential_rejected, failure_kind
from outbound import tls_context
from tools.outcome import Outcome, as_langchain_tool, failed, succeeded
from tools.tool import CloudSession, OAuth2, OAuth2Provider, Tool, ToolFailed, UserSession

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from identity.service import AgentIdentity
    from settings.tools import ToolSettings

log = logging.getLogger(__name__)

Session = UserSession | CloudSession


class Toolbox:
    """`tools` as the LangChain tools the model calls, and the pools they share: one HTTP client per OAuth2
    provider, one aiohttp session for async Alibaba Cloud SDKs (OSS). Pools open on first use, inside the
    event loop that serves requests (an httpx or aiohttp client belongs to one loop); `aclose` runs on that
    loop at shutdown (the app's lifespan)."""

    def __init__(self, identity: AgentIdentity, settings: ToolSettings, tools: Sequence[Tool]) -> None:
        self._identity = identity
        self._settings = settings
        self._http: dict[OAuth2Provider, httpx.AsyncClient] = {}
        self._aiohttp: aiohttp.ClientSession | None = None
        self.tools: list[BaseTool] = [self._as_langchain_tool(each) for each in tools]

    async def aclose(self) -> None:
        for client in self._http.values():
            await client.aclose()
        if self._aiohttp is not None:
            await self._aiohttp.close()

    def _as_langchain_tool(self, spec: Tool) -> BaseTool:
        async def run(**arguments: Any) -> Outcome:
            try:
                return succeeded(await self._run_with_one_fresh_credential(spec, arguments))
            # BLE001: every failure becomes a sentence, unknown ones re-raised
            except Exception as error:  # noqa: BLE001
                return _failure(spec, error)

        return as_langchain_tool(run, name=spec.name, description=spec.description,
                                 args_schema=spec.args_schema)

    async def _run_with_one_fresh_credential(self, spec: Tool, arguments: dict[str, Any]) -> str:
        """Run the tool; if the service refuses the credential (expired or revoked early), run it once more
        with a fresh one. A refused credential means the action itself never ran, so repeating it is safe."""
        session = await self._session(spec, arguments, rejected=None)
        try:
            return await spec(session, **arguments)
        except (ToolFailed, AlibabaCloudException) as error:
            outdated = (isinstance(error, ToolFailed) and error.consent_outdated
                        and isinstance(spec.credential, OAuth2))
            if not (_refused_credential(error) or outdated):
                raise
            log.info("%s: the service refused the %s credential (%s); running once more with a fresh one",
                     spec.name, spec.credential.label, _code_of(error))
        session = await self._session(spec, arguments, rejected=session, consent_anew=outdated)
        try:
            return await spec(session, **arguments)
        except ToolFailed as failure:
            if failure.credential_rejected and isinstance(spec.credential, OAuth2):
                raise ToolFailed(f"{spec.credential.label} refused the user's authorization even after it "
                                 "was renewed.", f"{spec.credential.code}_authorization_rejected") from None
            raise

    async def _session(self, spec: Tool, arguments: dict[str, Any], *, rejected: Session | None,
                       consent_anew: bool = False) -> Session:
        """What the tool's credential kind gives it; `rejected`: the session whose credential was refused;
        `consent_anew`: the user's consent lacked a permission, so the provider shows its consent page
        again."""
        credential = spec.credential
        if isinstance(credential, OAuth2):
            configured = self._settings.oauth2[credential.provider.env_prefix]
            token = await self._identity.oauth2_token(
                provider=configured.credential_provider, scopes=configured.scopes or credential.scopes,
                purpose=credential.purpose, force_authentication=rejected is not None,
                prompt_consent=consent_anew)
            return UserSession(token, self._http_client(credential.provider))
        stale = rejected.credential if isinstance(rejected, CloudSession) else None
        sts = await self._identity.sts_credential(policy=credential.policy(arguments), rejected=stale)
        return CloudSession(sts, self._settings, self._aiohttp_session())

    def _http_client(self, provider: OAuth2Provider) -> httpx.AsyncClient:
        client = self._http.get(provider)
        if client is None or client.is_closed:
            timeout = self._settings.http_timeout_seconds
            client = httpx.AsyncClient(base_url=self._settings.oauth2[provider.env_prefix].api_base,
                                       timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
                                       limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                                       headers={"Accept": "application/json"})
            self._http[provider] = client
        return client

    def _aiohttp_session(self) -> aiohttp.ClientSession:
        if self._aiohttp is None or self._aiohttp.closed:
            self._aiohttp = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls_context()))
        return self._aiohttp


def _refused_credential(error: Exception) -> bool:
    if isinstance(error, ToolFailed):
        return error.credential_rejected
    return isinstance(error, AlibabaCloudException) and credential_rejected(error.code)


def _code_of(error: Exception) -> str:
    return str(error.code) if isinstance(error, (ToolFailed, AlibabaCloudException)) else type(error).__name__


def _failure(spec: Tool, error: Exception) -> Outcome:
    """The sentence and code for a failed run; an error none of these is stays a bug and is raised."""
    label, code = spec.credential.label, spec.credential.code
    if isinstance(error, ToolFailed):
        return failed(error.message, error.code)
    if isinstance(error, AuthorizationPending):
        purpose = error.purpose or (spec.credential.purpose if isinstance(spec.credential, OAuth2) else "")
        return failed(consent_sentence(purpose, error.url) + "After authorizing, ask again.", error.code)
    if isinstance(error, IdentityError):
        return failed(error.safe_message, error.code)
    if isinstance(error, httpx.TimeoutException):
        return failed(f"{label} did not answer in time, so it is not known whether this was done. Please try "
                      "again.", f"{code}_timeout")
    if isinstance(error, httpx.TransportError):
        return failed(f"{label} could not be reached; nothing was done. Please try again later.",
                      f"{code}_unreachable")
    if isinstance(error, AlibabaCloudException):
        log.warning("%s failed: HTTP %s %s (request id %s)", spec.name, error.status_code, error.code,
                    error.request_id)
        return failed(_describe_aliyun_failure(error), f"aliyun_{failure_kind(error)}")
    if isinstance(error, (UnretryableException, DaraException)):
        log.warning("%s could not reach Alibaba Cloud: %s", spec.name, type(error).__name__)
        return failed("Alibaba Cloud could not be reached or did not answer in time; please try again later.",
                      "aliyun_unreachable")
    raise error


def _describe_aliyun_failure(error: AlibabaCloudException) -> str:
    """Code and request id only: a server message may quote the signed request, security token included."""
    kind = failure_kind(error)
    if kind == THROTTLED:
        what = "Alibaba Cloud is throttling requests; try again shortly."
    elif kind == UNAVAILABLE:
        what = "Alibaba Cloud had a server error; try again later."
    elif error.status_code in (401, 403):
        what = "Alibaba Cloud denied the request: the agent's role is not allowed to do this."
    else:
        what = "Alibaba Cloud rejected the request."
    return f"{what} (code: {error.code}, request id: {error.request_id or 'n/a'})"
