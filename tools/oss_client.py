"""The OSS SDK's side of `read_oss_object` (tools/oss.py): one ranged GET signed (V4) with the call's STS
credentials, over the tools' shared aiohttp session, and OSS's refusals as short sentences.

tools/oss.py imports this module at the first read, off the event loop (`outbound.import_off_loop`): with its
aiohttp transport the SDK is slow to import (figures: docs/architecture.md, "Start-up").
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import alibabacloud_oss_v2 as oss
from alibabacloud_oss_v2.aio import AsyncClient
from alibabacloud_oss_v2.aio.transport import AioHttpClient
from alibabacloud_oss_v2.credentials import StaticCredentialsProvider

from tools.tool import CloudSession, ToolFailed

log = logging.getLogger(__name__)

# Codes with which OSS refuses the temporary credentials themselves: fresh ones may fix them (one retry).
STALE_CREDENTIAL_CODES = {"InvalidAccessKeyId", "InvalidSecurityToken", "SecurityTokenExpired",
                          "AccessKeyIdAndSecurityTokenNotMatch"}


@dataclass(frozen=True)
class ObjectStart:
    """The first bytes of an object, and what OSS says of the whole."""

    data: bytes  # at most `limit` + 1 bytes: one more than shown tells a longer object apart
    size: int  # the whole object's
    content_type: str | None


async def read_start(cloud: CloudSession, bucket: str, key: str, region: str, limit: int) -> ObjectStart:
    """The object's first `limit` + 1 bytes; raises `ToolFailed` with a sentence for the user."""
    request = oss.GetObjectRequest(bucket=bucket, key=key, range_header=f"bytes=0-{limit}")
    try:
        async with AsyncClient(_config(cloud, region)) as client:
            result = await client.get_object(request)
            data = result.body.content if result.body is not None else b""
    except oss.exceptions.OperationError as error:
        raise _failure(error.unwrap(), bucket, key, region) from None
    return ObjectStart(data, _object_size(result.content_range, len(data)), result.content_type)


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
        http_client=AioHttpClient(session=cloud.aiohttp_session,
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


def _failure(error: Exception, bucket: str, key: str, region: str) -> ToolFailed:
    """A short sentence per OSS error; the service's message is never quoted (it may echo the request)."""
    if not isinstance(error, oss.exceptions.ServiceError):
        log.warning("read_oss_object could not reach OSS: %s", type(error).__name__)
        return ToolFailed("OSS could not be reached or did not answer in time; please try again later.",
                               "aliyun_unreachable")
    code, status = str(error.code or ""), int(error.status_code or 0)
    log.warning("read_oss_object failed: HTTP %s %s (request id %s)", status, code, error.request_id)
    where = f"oss://{bucket}/{key}"
    if code == "NoSuchKey":
        return ToolFailed(f"There is no object {key!r} in bucket {bucket!r}.", "oss_no_such_key")
    if code == "NoSuchBucket":
        return ToolFailed(f"There is no bucket {bucket!r} in region {region}; check the name and the "
                               "region.", "oss_no_such_bucket")
    if code in STALE_CREDENTIAL_CODES:
        return ToolFailed("OSS did not accept the agent's temporary credentials; please try again "
                               "later.", "aliyun_rejected", credential_rejected=True)
    if code == "AccessDenied":
        return ToolFailed(f"The agent is not allowed to read {where} (access denied).",
                               "oss_access_denied")
    if status >= 500 or status == 429:
        return ToolFailed("OSS had a server error or is busy; please try again later.",
                               "aliyun_unavailable")
    return ToolFailed(f"OSS refused to read {where} (code: {code or status}, request id: "
                           f"{error.request_id or 'n/a'}).", "aliyun_rejected")
