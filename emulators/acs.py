"""What every Alibaba Cloud (ACS) emulator shares: request signatures, the error shape and RPC dispatch.

The SDKs (alibabacloud_tea_openapi 0.4.6) sign with ACS3-HMAC-SHA256 by default: a canonical request of
method, path, sorted query, the headers listed in `SignedHeaders` and the body's SHA-256 (sent as
`x-acs-content-sha256`), HMAC'd with the AccessKey secret. Clients configured with `signature_algorithm="v2"`
use the older RPC signature (HMAC-SHA1 over the sorted query and form parameters, `Signature` in the query);
both are checked here, so a signature that passes the emulator is one the real service computes too.

Callers may sign with the configured static AccessKey or with any unexpired STS credential that Agent
Identity issued (AccessKeyId `STS.…` plus the matching `x-acs-security-token`), as the real services do.

Error codes and HTTP statuses follow Alibaba Cloud's public "common error codes" list (docs/services.md):
`SignatureDoesNotMatch` (400), `InvalidAccessKeyId.NotFound` (404), `InvalidSecurityToken.Expired` (400),
`InvalidSecurityToken.MismatchWithAccessKey` (400), `SignatureNonceUsed` (400), `InvalidTimeStamp.Expired`
(400), `InvalidAction.NotFound` (404). The body is `{"RequestId","Code","Message"}` (docs/services.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulators.registry import CredentialRegistry, Issued

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
CLOCK_SKEW_S = 15 * 60  # requests dated further away are refused, and nonces are remembered this long
# Headers an ACS3 signature must cover (what the SDK always signs); the security token too when sent.
MUST_SIGN = frozenset({"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                       "x-acs-content-sha256"})


class AcsError(Exception):
    """An error the service answers with; `message` must never contain a secret."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def render_acs_error(status: int, code: str, message: str) -> Response:
    """The ACS error body; the SDK turns 4xx into ClientException and 5xx into ServerException."""
    return JSONResponse({"RequestId": new_request_id(), "Code": code, "Message": message}, status_code=status)


def iso_utc(epoch_s: float) -> str:
    """ACS timestamps: ISO 8601 in UTC with a `Z`, no fraction (as STS `Expiration`)."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Principal:
    """Who signed a request: the static AccessKey, or an STS credential (then `sts` is its record)."""

    access_key_id: str
    sts: Issued | None = None


class SignatureVerifier:
    """Checks ACS3-HMAC-SHA256 and RPC (HMAC-SHA1) signatures against the known AccessKeys."""

    def __init__(self, access_key_id: str, access_key_secret: str,
                 sts_credentials: CredentialRegistry) -> None:
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._sts = sts_credentials
        self._seen_nonces: dict[str, float] = {}

    async def verify(self, request: Request, body: bytes) -> Principal:
        authorization = request.headers.get("authorization", "")
        if authorization.startswith(ACS3_ALGORITHM + " "):
            return self._verify_acs3(request, body, authorization)
        if "Signature" in request.query_params:
            return self._verify_rpc(request, body)
        raise AcsError(400, "MissingAuthorization", "The request is not signed: Authorization is missing.")

    def _verify_acs3(self, request: Request, body: bytes, authorization: str) -> Principal:
        fields = authorization_fields(authorization[len(ACS3_ALGORITHM) + 1:])
        access_key_id = fields.get("Credential", "")
        signed_headers = [h for h in fields.get("SignedHeaders", "").split(";") if h]
        unsigned = MUST_SIGN - set(signed_headers)
        if "x-acs-security-token" in request.headers and "x-acs-security-token" not in signed_headers:
            unsigned.add("x-acs-security-token")
        if unsigned:
            raise AcsError(400, "IncompleteSignature",  # Chosen: code of the V3 signature docs.
                           "The signature does not cover these headers: " + ", ".join(sorted(unsigned)))
        principal, secret = self._resolve(access_key_id, request.headers.get("x-acs-security-token"))
        self._check_freshness(_parse_iso(request.headers.get("x-acs-date")),
                              request.headers.get("x-acs-signature-nonce"))
        payload_hash = hashlib.sha256(body).hexdigest()
        if request.headers.get("x-acs-content-sha256", payload_hash) != payload_hash:
            raise AcsError(400, "SignatureDoesNotMatch",
                           "The x-acs-content-sha256 header does not match the body.")
        canonical_request = "\n".join([
            request.method,
            request.scope.get("raw_path", b"/").decode("latin-1") or "/",
            _canonical_query(request.url.query),
            "".join(f"{name}:{_header_value(request, name)}\n" for name in sorted(signed_headers)),
            ";".join(sorted(signed_headers)),
            payload_hash,
        ])
        string_to_sign = f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("Signature", "")):
            raise AcsError(400, "SignatureDoesNotMatch",
                           "Specified signature is not matched with our calculation.")
        return principal

    def _verify_rpc(self, request: Request, body: bytes) -> Principal:
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        principal, secret = self._resolve(query.get("AccessKeyId", ""), query.get("SecurityToken"))
        self._check_freshness(_parse_iso(query.get("Timestamp")), query.get("SignatureNonce"))
        signature = query.pop("Signature")
        params = {**query, **dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))}
        canonical = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params.items()))
        string_to_sign = f"{request.method}&%2F&{quote_plus(canonical, safe='~')}"
        digest = hmac.new((secret + "&").encode(), string_to_sign.encode(), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), signature):
            raise AcsError(400, "SignatureDoesNotMatch",
                           "Specified signature is not matched with our calculation.")
        return principal

    def _resolve(self, access_key_id: str, security_token: str | None) -> tuple[Principal, str]:
        """The principal and secret for an AccessKeyId; STS keys also need their security token."""
        if access_key_id and hmac.compare_digest(access_key_id, self._access_key_id):
            return Principal(access_key_id), self._access_key_secret
        record = self._sts.get(access_key_id) if access_key_id else None
        if record is None:
            raise AcsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        if not security_token or not hmac.compare_digest(security_token, record.details["security_token"]):
            raise AcsError(400, "InvalidSecurityToken.MismatchWithAccessKey",
                           "Specified SecurityToken mismatch with the AccessKey.")
        if not record.valid:
            raise AcsError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
        return Principal(access_key_id, sts=record), record.secret

    def _check_freshness(self, signed_at: float | None, nonce: str | None) -> None:
        """Refuse stale requests and replayed nonces, as the real gateway does."""
        now = time.time()
        if signed_at is not None and abs(now - signed_at) > CLOCK_SKEW_S:
            raise AcsError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if not nonce:
            return
        if nonce in self._seen_nonces:
            raise AcsError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self._seen_nonces = {n: t for n, t in self._seen_nonces.items() if now - t < CLOCK_SKEW_S}
        self._seen_nonces[nonce] = now


def authorization_fields(rest: str) -> dict[str, str]:
    """`Name=value` pairs after the algorithm of an Authorization header (ACS3 and OSS V4 share the form)."""
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    return fields


def _canonical_query(raw_query: str) -> str:
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{k}={quote(v, safe='~')}" for k, v in pairs)


def _header_value(request: Request, name: str) -> str:
    return ",".join(sorted(v.strip() for v in request.headers.getlist(name)))


def _parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise AcsError(400, "InvalidTimeStamp.Format",
                       "Specified time stamp or date value is not well formatted.") from None


# An RPC action handler: (form + query parameters, the signer or None when anonymous) -> response fields.
ActionHandler = Callable[[dict[str, str], Principal | None], Awaitable[dict[str, Any]]]


def rpc_endpoint(verifier: SignatureVerifier, actions: dict[str, ActionHandler],
                 anonymous: frozenset[str] = frozenset()) -> Route:
    """`POST /` for an RPC-style service: action from `x-acs-action` (ACS3) or the `Action` query (RPC)."""

    async def endpoint(request: Request) -> Response:
        action = request.headers.get("x-acs-action") or request.query_params.get("Action", "")
        handler = actions.get(action)
        if handler is None:
            return render_acs_error(404, "InvalidAction.NotFound",
                                    "Specified api is not found, please check your url and method.")
        body = await request.body()
        try:
            principal = None if action in anonymous else await verifier.verify(request, body)
            params = {**dict(parse_qsl(request.url.query, keep_blank_values=True)),
                      **dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))}
            result = await handler(params, principal)
        except AcsError as error:
            return render_acs_error(error.status, error.code, error.message)
        return JSONResponse({"RequestId": new_request_id(), **result})

    return Route("/", endpoint, methods=["POST", "GET"])
