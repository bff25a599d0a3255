"""OSS emulator: GetObject for path-style requests, signed with OSS's V4 signature, authorized by RAM policy.

Wire format (docs/services.md, "OSS"): `GET /<bucket>/<key>` with `Authorization: OSS4-HMAC-SHA256
Credential=<AccessKeyId>/<yyyymmdd>/<region>/oss/aliyun_v4_request[,AdditionalHeaders=h1;h2],Signature=<hex>`,
`x-oss-date`, `x-oss-content-sha256` and, for STS credentials, `x-oss-security-token`. The signature is
recomputed from the request as OSS documents it (canonical request -> string to sign -> HMAC-SHA256 with a key
derived from `aliyun_v4` + secret, date, region, `oss`, `aliyun_v4_request`), so the real SDK passes only when
it signs as the real service expects.

The STS credentials it accepts are the ones Agent Identity's AssumeRoleForWorkloadIdentity issued (the shared
`sts_credentials` registry); what they may read is the role's policy narrowed by the session policy recorded
with them (emulators/ram.py). Errors are OSS's XML `<Error>` bodies with OSS's codes and statuses.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulators import chosen
from emulators._server import Faults, emulator_app
from emulators.acs import authorization_fields
from emulators.ram import allowed
from emulators.registry import CredentialRegistry

V4_ALGORITHM = "OSS4-HMAC-SHA256"
CLOCK_SKEW_S = 15 * 60  # OSS refuses requests dated more than 15 minutes away (RequestTimeTooSkewed)
DEFAULT_SIGNED = ("content-type", "content-md5")  # signed whenever sent, as every x-oss-* header
NO_RIGHT = "You have no right to access this object because of bucket acl."


class OssError(Exception):
    """An error OSS answers with; `message` must never contain a secret."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.extra = status, code, message, extra


def render_oss_error(status: int, code: str, message: str, **extra: str) -> Response:
    """OSS's error body; the SDK reads Code, Message, RequestId and EC from it into `ServiceError`."""
    request_id = uuid.uuid4().hex[:24].upper()
    fields = {"Code": code, "Message": message, "RequestId": request_id, **extra}
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    return Response(f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{body}</Error>', status_code=status,
                    media_type="application/xml", headers={"x-oss-request-id": request_id})


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    content_type: str
    last_modified: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return '"' + hashlib.md5(self.data, usedforsecurity=False).hexdigest().upper() + '"'


@dataclass
class Bucket:
    """A bucket of the account the role belongs to; `objects` by key."""

    name: str
    objects: dict[str, StoredObject] = field(default_factory=dict)


class OssEmulator:
    """`.app` serves GetObject for one region's endpoint; `.buckets` is what it holds."""

    def __init__(self, *, region: str, account_id: str, buckets: list[Bucket], role_policy: Mapping[str, Any],
                 sts_credentials: CredentialRegistry, faults: Faults | None = None) -> None:
        self.region = region
        self.account_id = account_id
        self.buckets = {bucket.name: bucket for bucket in buckets}
        self.role_policy = dict(role_policy)
        self._sts = sts_credentials
        methods = ["GET", "HEAD", "PUT", "POST", "DELETE"]
        routes = [Route("/{bucket}/{key:path}", self._object, methods=methods)]
        self.app = emulator_app("oss", routes, render_oss_error, on_expire_tokens=sts_credentials.expire_all,
                                faults=faults)

    async def _object(self, request: Request) -> Response:
        try:
            bucket, key = _bucket_and_key(request)
            if request.method not in ("GET", "HEAD"):
                raise OssError(405, "MethodNotAllowed",
                               "The specified method is not allowed against this resource.")
            policy = self._verify(request, bucket, key)
            return self._get_object(request, bucket, key, policy)
        except OssError as error:
            return render_oss_error(error.status, error.code, error.message, **error.extra)

    # -- authentication ------------------------------------------------------------------------------------

    def _verify(self, request: Request, bucket: str, key: str) -> str | None:
        """Check the V4 signature and the credentials; returns the session policy they carry (None: none)."""
        authorization = request.headers.get("authorization", "")
        if not authorization:
            raise OssError(403, "AccessDenied", NO_RIGHT)
        if not authorization.startswith(V4_ALGORITHM + " "):
            raise OssError(400, "InvalidArgument", "Authorization header is invalid: only OSS4-HMAC-SHA256 "
                                                   "is accepted here.")  # Chosen: the emulator speaks V4 only
        fields = authorization_fields(authorization[len(V4_ALGORITHM) + 1:])
        scope = (fields.get("Credential", "").split("/") + [""] * 5)[:5]
        access_key_id, sign_date, region, product, terminator = scope
        well_formed = (product, terminator) == ("oss", "aliyun_v4_request") and "Signature" in fields
        if not access_key_id or not well_formed:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.")
        signed_at = _x_oss_date(request.headers.get("x-oss-date"))
        if abs(time.time() - signed_at) > CLOCK_SKEW_S:
            raise OssError(403, "RequestTimeTooSkewed",
                           "The difference between the request time and the current time is too large.")
        if datetime.fromtimestamp(signed_at, timezone.utc).strftime("%Y%m%d") != sign_date:
            raise OssError(403, "SignatureDoesNotMatch",
                           "The date in the credential scope is not x-oss-date's.")
        if region != self.region:
            status, code = chosen.OSS_CODE_WRONG_SIGNING_REGION
            raise OssError(status, code,
                           f"Invalid signing region in Authorization header: this is {self.region}.")
        if "x-oss-content-sha256" not in request.headers:
            raise OssError(400, "InvalidArgument", "x-oss-content-sha256 is required with V4 signatures.")
        secret, policy = self._credentials(access_key_id, request.headers.get("x-oss-security-token"))
        additional = [h for h in fields.get("AdditionalHeaders", "").split(";") if h]
        canonical = _canonical_request(request, bucket, key, additional)
        scope = f"{sign_date}/{region}/oss/aliyun_v4_request"
        string_to_sign = "\n".join([V4_ALGORITHM, request.headers["x-oss-date"], scope,
                                    hashlib.sha256(canonical.encode()).hexdigest()])
        signing_key = ("aliyun_v4" + secret).encode()
        for part in (sign_date, region, "oss", "aliyun_v4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["Signature"]):
            # As the real service, the answer shows what it signed: the security token is in there, so a
            # client that quotes OSS's message leaks it (the product never does; tests/test_leaks.py).
            raise OssError(403, "SignatureDoesNotMatch",
                           "The request signature we calculated does not match the signature you provided. "
                           "Check your key and signing method.",
                           CanonicalRequest=canonical, StringToSign=string_to_sign)
        return policy

    def _credentials(self, access_key_id: str, security_token: str | None) -> tuple[str, str | None]:
        """The secret of an STS AccessKeyId Agent Identity issued, and the session policy issued with it."""
        record = self._sts.get(access_key_id)
        if record is None:
            raise OssError(403, "InvalidAccessKeyId",
                           "The OSS Access Key Id you provided does not exist in our records.")
        if not security_token or not hmac.compare_digest(security_token, record.details["security_token"]):
            raise OssError(403, "InvalidSecurityToken", "The security token you provided is invalid.")
        if not record.valid:
            status, code = chosen.OSS_CODE_TOKEN_EXPIRED
            raise OssError(status, code, "The security token you provided has expired.")
        return record.secret, record.details.get("policy")

    # -- GetObject -----------------------------------------------------------------------------------------

    def _get_object(self, request: Request, bucket_name: str, key: str,
                    session_policy: str | None) -> Response:
        bucket = self.buckets.get(bucket_name)
        if bucket is None:  # Chosen: OSS names a missing bucket before it checks permissions
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.",
                           BucketName=bucket_name)
        resource = f"acs:oss:{self.region}:{self.account_id}:{bucket_name}/{key}"
        if not allowed([self.role_policy, session_policy], "oss:GetObject", resource):
            raise OssError(403, "AccessDenied", NO_RIGHT)
        stored = bucket.objects.get(key)
        if stored is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        size = len(stored.data)
        modified = datetime.fromtimestamp(stored.last_modified, timezone.utc)
        headers = {"ETag": stored.etag, "Accept-Ranges": "bytes", "x-oss-object-type": "Normal",
                   "Last-Modified": format_datetime(modified, usegmt=True),
                   "x-oss-request-id": uuid.uuid4().hex[:24].upper()}
        span = _single_range(request.headers.get("range"), size)
        if span is None:  # no Range, or one OSS cannot serve: the whole object, 200 (OSS's default behaviour)
            body, status = stored.data, 200
        else:
            first, last = span
            body, status = stored.data[first:last + 1], 206
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        content = b"" if request.method == "HEAD" else body
        response = Response(content, status_code=status, media_type=None, headers=headers)
        response.headers["Content-Type"] = stored.content_type
        response.headers["Content-Length"] = str(len(body))
        return response


def _bucket_and_key(request: Request) -> tuple[str, str]:
    """Path style: the first segment of the (percent-decoded) path is the bucket, the rest the key."""
    raw_path = request.scope.get("raw_path", b"/").decode("latin-1").split("?", 1)[0]
    bucket, _, key = unquote(raw_path.lstrip("/")).partition("/")
    if not bucket or not key:
        raise OssError(400, "InvalidArgument", "Only object requests (/bucket/key) are served.")  # Chosen
    return bucket, key


def _x_oss_date(value: str | None) -> float:
    try:
        return datetime.strptime(value or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        raise OssError(403, "AccessDenied",
                       "x-oss-date is missing or not in ISO 8601 basic format.") from None


def _canonical_request(request: Request, bucket: str, key: str, additional: list[str]) -> str:
    """Method, URI-encoded `/bucket/key`, sorted query, signed headers (every x-oss-*, Content-Type,
    Content-MD5, and the AdditionalHeaders), the AdditionalHeaders list, and the payload hash header."""
    missing = [name for name in additional if name not in request.headers]
    if missing:
        raise OssError(400, "InvalidArgument", "AdditionalHeaders names headers the request does not carry.")
    signed = sorted({name for name in request.headers
                     if name.startswith("x-oss-") or name in DEFAULT_SIGNED} | set(additional))
    headers = "".join(f"{name}:{request.headers[name].strip()}\n" for name in signed)
    pairs = sorted(pair.partition("=")[::2] for pair in request.url.query.split("&") if pair)
    query = "&".join(f"{k}={v}" if v else k for k, v in pairs)
    return "\n".join([request.method, quote(f"/{bucket}/{key}", safe="/"), query, headers,
                      ";".join(additional), request.headers["x-oss-content-sha256"]])


def _single_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of the first range of `bytes=a-b` / `bytes=a-` / `bytes=-n` when it lies wholly within
    0..size-1; None otherwise: OSS then ignores the Range header and returns the whole object with 200
    (without `x-oss-range-behavior: standard`, which the product does not send). A range ending past the
    object is invalid too: it is not clamped (docs/services.md, "OSS")."""
    if not header or not header.startswith("bytes="):
        return None
    start, _, end = header[len("bytes="):].split(",")[0].strip().partition("-")
    try:
        if not start:
            count = int(end)
            return (size - count, size - 1) if 0 < count <= size else None
        first = int(start)
        last = int(end) if end else size - 1
    except ValueError:
        return None
    return (first, last) if 0 <= first <= last < size else None


def sample_buckets(readable: str, forbidden: str) -> list[Bucket]:
    """What the local cloud's OSS holds: in `readable`, a text file, a binary file and a file larger than the
    tool's default cap; in `forbidden`, a file the role may not read."""
    welcome = ("Welcome to the local OSS emulator.\n欢迎使用本地 OSS 模拟器。\n"
               "This object was read with STS credentials scoped to exactly this object.\n")
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))
    large = "".join(f"line {n:06d}: the agent reads only the first part of a large object.\n"
                    for n in range(4000)).encode()
    return [
        Bucket(readable, {
            "notes/welcome.txt": StoredObject(welcome.encode(), "text/plain; charset=utf-8"),
            "notes/other.txt": StoredObject(b"Another object in the same bucket.\n", "text/plain"),
            "notes/说明 v2.md": StoredObject("# 说明\n非 ASCII 的对象名。\n".encode(), "text/markdown"),
            "images/logo.png": StoredObject(png, "image/png"),
            "logs/large.log": StoredObject(large, "text/plain"),
        }),
        Bucket(forbidden, {"reports/salaries.txt": StoredObject(b"Not for the agent.\n", "text/plain")}),
    ]


def role_policy(readable: str) -> dict[str, Any]:
    """The agent role's own permissions in the local cloud: read any object of `readable`, nothing else."""
    return {"Version": "1", "Statement": [{"Effect": "Allow", "Action": ["oss:GetObject"],
                                           "Resource": [f"acs:oss:*:*:{readable}/*"]}]}
