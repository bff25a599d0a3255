"""How the product calls outside services: over pooled TLS connections, with one TLS context per process.

Alibaba Cloud SDK calls (Agent Identity, STS, AgentRun) go through `sdk_call`: the SDK's own sync method,
run in one bounded thread pool, never its `*_async` twin, which builds a new SSL context and TLS connection
for every call; the sync methods keep one pooled `requests` session per endpoint (figures:
docs/architecture.md, "Outbound calls"). The SDK's connection pool per endpoint is sized to the thread pool
(`sdk_config`), so every connection goes back to the pool and is reused.

Clients we build ourselves (the callback's OIDC sign-in) take `tls_context()`. Trust is the platform's: the
system store and certifi's bundle, plus whatever the operator names in `SSL_CERT_FILE` / `SSL_CERT_DIR` (a
corporate CA; the local emulators' CA in tests and the sandbox).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from urllib.parse import urlsplit
from typing import Any, TypeVar

import certifi
from alibabacloud_credentials.client import Client as CredentialClient
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig

T = TypeVar("T")

# Threads that make Alibaba Cloud SDK calls at once, and the SDK's connection pool per endpoint (its public
# `max_idle_conns`, set by sdk_config): as large, so a thread never opens a connection the pool would
# then have to discard (a new TLS handshake for every call beyond the pool).
SDK_THREADS = 64
# The form of an Alibaba Cloud region id: cn-beijing, ap-southeast-1.
REGION_ID_PATTERN = r"^[a-z]{2,}(-[a-z0-9]+)+$"
# A TLS error that means "the server's certificate is not trusted here" (OpenSSL's reason, in every wrapper).
UNTRUSTED_CERTIFICATE = "CERTIFICATE_VERIFY_FAILED"
# How urllib3, aiohttp and the C library say a host name did not resolve.
UNRESOLVED_HOST = ("NameResolutionError", "Name or service not known", "nodename nor servname",
                   "Temporary failure in name resolution", "No address associated with hostname")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one client TLS context: default verification (hostname, certificate chain) against the
    system store (or SSL_CERT_FILE / SSL_CERT_DIR when set) plus certifi's bundle, as the Alibaba SDK does."""
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context


_imported: dict[str, ModuleType] = {}


async def import_off_loop(name: str) -> ModuleType:
    """The module `name`, imported in a thread the first time. For an SDK only some requests need: imported at
    start-up it delays every cold start; imported on the event loop it stalls every request for as long."""
    module = _imported.get(name)
    if module is None:
        module = _imported[name] = await asyncio.to_thread(importlib.import_module, name)
    return module


@functools.cache
def _sdk_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=SDK_THREADS, thread_name_prefix="alibaba-sdk")


async def sdk_call(method: Callable[..., T], *args: Any) -> T:
    """`method(*args)`, an Alibaba Cloud SDK client's sync method, awaited without blocking the event loop.

    The SDK's bounded timeouts (config.sdk_config) bound how long a thread is held; a cancelled caller stops
    waiting at once while its thread finishes the call in the background."""
    return await asyncio.get_running_loop().run_in_executor(_sdk_threads(), _first_call_alone, method, args)


_warm: set[type] = set()
_first_call_locks: dict[type, threading.Lock] = {}


def _first_call_alone(method: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Run the first call of each SDK client class alone. The SDK builds its pooled session (an SSL context
    loading the CA bundle) on first use without a lock: threads starting together would each build and drop
    one. After that first call every thread shares the one session and its connections."""
    kind = type(getattr(method, "__self__", method))
    if kind in _warm:
        return method(*args)
    with _first_call_locks.setdefault(kind, threading.Lock()):
        if kind not in _warm:
            try:
                return method(*args)
            finally:
                _warm.add(kind)
    return method(*args)


def untrusted_certificate(error: BaseException) -> bool:
    """Whether `error` (from any HTTP client) says the server's TLS certificate is not trusted here. Only the
    reason is looked for; the text is never shown."""
    return _caused_by(error, ssl.SSLCertVerificationError, (UNTRUSTED_CERTIFICATE,))


def unresolved_host(error: BaseException) -> bool:
    """Whether `error` says the host name did not resolve (DNS): for an Alibaba Cloud endpoint built from a
    region id, most often a mistyped region. Only the reason is looked for; the text is never shown."""
    return _caused_by(error, socket.gaierror, UNRESOLVED_HOST)


def _caused_by(error: BaseException, kind: type[BaseException], words: tuple[str, ...]) -> bool:
    """`error` or one of its causes is a `kind`, or says one of `words` (the SDKs flatten their causes into
    text)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind) or any(word in str(current) for word in words):
            return True
        current = current.__cause__ or current.__context__
    return False


def sdk_endpoint(value: str) -> tuple[str, str]:
    """An endpoint setting as the Alibaba Cloud SDKs' `Config` wants it: (host[:port], protocol).

    `host` and `https://host` mean HTTPS; `http://127.0.0.1:PORT` reaches a local emulator (the SDKs take the
    scheme only through `protocol`, never inside `endpoint`)."""
    parts = urlsplit(value.strip() if "://" in value else f"https://{value.strip()}")
    return parts.netloc, parts.scheme


def sdk_config(credential: CredentialClient, region_id: str, endpoint: str | None, *,
               timeout_seconds: float) -> SdkConfig:
    """How every Alibaba Cloud SDK client here is configured: credential, region, endpoint (None: the SDK's
    default for the region), bounded timeouts (connecting at most 5 s) and a connection pool per endpoint as
    large as the thread pool its calls run in (outbound.sdk_call)."""
    timeout_ms = int(timeout_seconds * 1000)
    config = SdkConfig(credential=credential, region_id=region_id, read_timeout=timeout_ms,
                       connect_timeout=min(timeout_ms, 5000), max_idle_conns=SDK_THREADS)
    if endpoint:
        config.endpoint, config.protocol = sdk_endpoint(endpoint)
    return config
