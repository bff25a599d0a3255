"""OSS (Object Storage Service): read one text object with the agent's own identity.

The STS credentials of a call are scoped by their session policy to `oss:GetObject` on exactly the object
asked for, so a model talked into reading something else gets credentials that cannot. At most
`OSS_MAX_OBJECT_BYTES` are fetched (a ranged GET); an object that is not text is described, not dumped. The
SDK's async client keeps the event loop free, over the tools' shared aiohttp session (pooled TLS). What this
relies on is in docs/services.md, "OSS".
"""

from __future__ import annotations

import codecs
import ipaddress
import logging
import re
from urllib.parse import urlsplit

import alibabacloud_oss_v2 as oss
from alibabacloud_oss_v2.aio import AsyncClient
from alibabacloud_oss_v2.aio.transport import AioHttpClient
from alibabacloud_oss_v2.credentials import StaticCredentialsProvider
from pydantic import BaseModel, Field, field_validator

from config import REGION_ID_PATTERN
from tools.aliyun import CloudCallFailed, CloudSession, aliyun_tool

log = logging.getLogger(__name__)

BUCKET_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"  # OSS's bucket naming rules
MAX_KEY_BYTES = 1023
# Codes with which OSS refuses the temporary credentials themselves: fresh ones may fix them (one retry).
STALE_CREDENTIAL_CODES = {"InvalidAccessKeyId", "InvalidSecurityToken", "SecurityTokenExpired",
                          "AccessKeyIdAndSecurityTokenNotMatch"}
# Media types that are text although not text/*.
TEXT_APPLICATION_TYPES = {"application/json", "application/xml", "application/javascript", "application/yaml",
                          "application/x-yaml", "application/toml", "application/x-sh", "application/sql",
                          "application/csv", "application/x-ndjson"}
# What objects uploaded without a type get: their bytes decide.
UNTYPED = {"", "application/octet-stream", "binary/octet-stream"}


class ReadOssObjectArguments(BaseModel):
    """Which object to read."""

    bucket: str = Field(description="The bucket's name, e.g. `my-reports`.", pattern=BUCKET_NAME)
    key: str = Field(description="The object's full name in the bucket (its key), e.g. `notes/2025/plan.md`.",
                     min_length=1)
    region: str | None = Field(None, description="The bucket's region ID, e.g. `cn-hangzhou`; leave it out "
                                                 "to use the agent's default OSS region.",
                               pattern=REGION_ID_PATTERN)

    @field_validator("key")
    @classmethod
    def _one_exact_object(cls, key: str) -> str:
        """A RAM policy reads `*` and `?` as wildcards: a key holding them would widen the policy."""
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"an object key is at most {MAX_KEY_BYTES} bytes")
        if key.startswith(("/", "\\")):
            raise ValueError("an object key does not start with / or \\")
        if "*" in key or "?" in key:
            raise ValueError("this tool reads one exact object: the key may not contain * or ?")
        return key


def object_resource(bucket: str, key: str, region: str | None = None) -> list[str]:
    """The RAM resource of exactly one object (docs/services.md, "OSS"): the session policy names only it."""
    return [f"acs:oss:*:*:{bucket}/{key}"]


@aliyun_tool(actions=["oss:GetObject"], resources=object_resource, args_schema=ReadOssObjectArguments)
async def read_oss_object(cloud: CloudSession, bucket: str, key: str, region: str | None = None) -> str:
    """Read a text file (an object) from Alibaba Cloud OSS object storage and return its content. Use this
    when the user asks to read, show, open or summarise a file in an OSS bucket (e.g.
    `oss://bucket/path/file.txt`). Give the bucket and the object key; the region only if the user names one.
    Long files are cut to the first part; files that are not text (images, archives...) are described, not
    shown."""
    region = region or cloud.settings.oss_region
    limit = cloud.settings.oss_max_object_bytes
    request = oss.GetObjectRequest(bucket=bucket, key=key, range_header=f"bytes=0-{limit}")  # limit + 1 bytes
    try:
        async with AsyncClient(_config(cloud, region)) as client:
            result = await client.get_object(request)
            data = result.body.content if result.body is not None else b""
    except oss.exceptions.OperationError as error:
        raise _failure(error.unwrap(), bucket, key, region) from None
    size = _object_size(result.content_range, len(data))
    return _describe(f"oss://{bucket}/{key}", data, size, limit, result.content_type)


def _config(cloud: CloudSession, region: str) -> oss.Config:
    """The SDK's config for `region`, signed (V4) with the call's STS credentials."""
    settings, credential = cloud.settings, cloud.credential
    return oss.Config(
        region=region, endpoint=settings.oss_endpoint or None,
        use_path_style=needs_path_style(settings.oss_endpoint),
        credentials_provider=StaticCredentialsProvider(credential.access_key_id, credential.access_key_secret,
                                                       credential.security_token),
        # The process's pooled session: a new client per call (its credentials are the call's) reuses the TLS
        # connections of the previous calls; the client's close leaves a session it does not own open.
        http_client=AioHttpClient(session=cloud.connections.aiohttp_session(),
                                  connect_timeout=settings.http_timeout_seconds,
                                  readwrite_timeout=settings.http_timeout_seconds))


def needs_path_style(endpoint: str) -> bool:
    """`bucket.<host>` cannot resolve for an IP address or localhost (an emulator, a proxy): there the bucket
    goes into the path. Every OSS domain takes the default virtual-hosted style."""
    host = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _object_size(content_range: str | None, received: int) -> int:
    """The whole object's size: `bytes 0-N/SIZE` of a 206, or what arrived with a 200 (OSS ignores a range
    reaching past the object and sends all of it: an object no larger than the cap)."""
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", (content_range or "").strip())
    return int(match.group(1)) if match else received


def _describe(name: str, data: bytes, size: int, limit: int, content_type: str | None) -> str:
    media_type, _, params = (content_type or "").partition(";")
    media_type = media_type.strip().lower()
    charset = re.search(r"charset=\"?([\w.:-]+)", params, re.IGNORECASE)
    truncated = size > limit
    encoding = charset.group(1) if charset else "utf-8"
    text = _as_text(data[:limit], media_type, encoding, complete=not truncated)
    kind = media_type or "unknown type"
    if text is None:
        return f"{name} is {size:,} bytes of {kind}, not text, so its content is not shown."
    if truncated:
        return f"{name} ({kind}) is {size:,} bytes; only the first {limit:,} are shown:\n{text}"
    return f"{name} ({kind}, {size:,} bytes):\n{text}"


def _as_text(data: bytes, media_type: str, charset: str, *, complete: bool) -> str | None:
    """The decoded text, or None for a binary object. An object cut at the limit may end inside a character:
    the incremental decoder leaves that partial character out instead of failing."""
    declared_text = media_type.startswith("text/") or media_type.endswith(("+json", "+xml")) \
        or media_type in TEXT_APPLICATION_TYPES
    if not declared_text and (media_type not in UNTYPED or b"\x00" in data):
        return None
    try:
        return codecs.getincrementaldecoder(charset)("strict").decode(data, final=complete)
    except (LookupError, UnicodeDecodeError):
        return None


def _failure(error: Exception, bucket: str, key: str, region: str) -> CloudCallFailed:
    """A short sentence per OSS error; the service's message is never quoted (it may echo the request)."""
    if not isinstance(error, oss.exceptions.ServiceError):
        log.warning("read_oss_object could not reach OSS: %s", type(error).__name__)
        return CloudCallFailed("OSS could not be reached or did not answer in time; please try again later.",
                               "aliyun_unreachable")
    code, status = str(error.code or ""), int(error.status_code or 0)
    log.warning("read_oss_object failed: HTTP %s %s (request id %s)", status, code, error.request_id)
    where = f"oss://{bucket}/{key}"
    if code == "NoSuchKey":
        return CloudCallFailed(f"There is no object {key!r} in bucket {bucket!r}.", "oss_no_such_key")
    if code == "NoSuchBucket":
        return CloudCallFailed(f"There is no bucket {bucket!r} in region {region}; check the name and the "
                               "region.", "oss_no_such_bucket")
    if code in STALE_CREDENTIAL_CODES:
        return CloudCallFailed("OSS did not accept the agent's temporary credentials; please try again "
                               "later.", "aliyun_rejected", stale_credentials=True)
    if code == "AccessDenied":
        return CloudCallFailed(f"The agent is not allowed to read {where} (access denied).",
                               "oss_access_denied")
    if status >= 500 or status == 429:
        return CloudCallFailed("OSS had a server error or is busy; please try again later.",
                               "aliyun_unavailable")
    return CloudCallFailed(f"OSS refused to read {where} (code: {code or status}, request id: "
                           f"{error.request_id or 'n/a'}).", "aliyun_rejected")
