"""OSS (Object Storage Service): read one text object with the agent's own identity.

The STS credentials of a call are scoped by their session policy to `oss:GetObject` on exactly the object
asked for, so a model talked into reading something else gets credentials that cannot. At most
`OSS_MAX_OBJECT_BYTES` are fetched (a ranged GET); an object that is not text is described, not dumped. The
SDK's side is tools/oss_client.py, imported at the first read and off the event loop: the SDK is slow
to import, which neither a cold start nor another request should pay. What this relies on is in
docs/services.md, "OSS".
"""

from __future__ import annotations

import codecs
import re

from pydantic import BaseModel, Field, field_validator

from outbound import REGION_ID_PATTERN, import_off_loop
from tools.tool import CloudSession, Sts, tool

BUCKET_NAME = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"  # OSS's bucket naming rules
MAX_KEY_BYTES = 1023
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


@tool(Sts(["oss:GetObject"], resources=object_resource), args_schema=ReadOssObjectArguments)
async def read_oss_object(cloud: CloudSession, bucket: str, key: str, region: str | None = None) -> str:
    """Read a text file (an object) from Alibaba Cloud OSS object storage and return its content. Use this
    when the user asks to read, show, open or summarise a file in an OSS bucket (e.g.
    `oss://bucket/path/file.txt`). Give the bucket and the object key; the region only if the user names one.
    Long files are cut to the first part; files that are not text (images, archives...) are described, not
    shown."""
    limit = cloud.settings.oss_max_object_bytes
    client = await import_off_loop("tools.oss_client")  # the SDK's side, imported at the first read
    start = await client.read_start(cloud, bucket, key, region or cloud.settings.oss_region, limit)
    return _describe(f"oss://{bucket}/{key}", start.data, start.size, limit, start.content_type)


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
