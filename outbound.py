"""How the product calls outside services: over pooled TLS connections, with one TLS context per process.

Alibaba Cloud SDK calls (Agent Identity, STS, AgentRun) go through `sdk_call`: the SDK's own sync method,
run in one bounded thread pool. The SDK's `*_async` methods build a new SSL context and a new TLS connection
for every call (~17-35 ms of CPU each over HTTPS); its sync methods keep one pooled `requests` session per
endpoint, so a call costs ~0.8 ms (measured: docs/architecture.md, "Outbound calls"). The pool's size stays
below the SDK's connection pool per endpoint (40), so every connection goes back to the pool and is reused.

Clients we build ourselves (the callback's OIDC sign-in) take `tls_context()`. Trust is the platform's: the
system store and certifi's bundle, plus whatever the operator names in `SSL_CERT_FILE` / `SSL_CERT_DIR` (a
corporate CA; the local emulators' CA in tests and the sandbox).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import certifi

T = TypeVar("T")

# Threads that make Alibaba Cloud SDK calls at once. Below darabonba's pool per endpoint (DEFAULT_POOL_MAXSIZE,
# 40): a thread never opens a connection the pool would then have to discard.
SDK_THREADS = 32
# A TLS error that means "the server's certificate is not trusted here" (OpenSSL's reason, in every wrapper).
UNTRUSTED_CERTIFICATE = "CERTIFICATE_VERIFY_FAILED"


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's one client TLS context: default verification (hostname, certificate chain) against the
    system store (or SSL_CERT_FILE / SSL_CERT_DIR when set) plus certifi's bundle, as the Alibaba SDK does."""
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context


@functools.cache
def _sdk_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=SDK_THREADS, thread_name_prefix="alibaba-sdk")


async def sdk_call(method: Callable[..., T], *args: Any) -> T:
    """`method(*args)`, an Alibaba Cloud SDK client's sync method, awaited without blocking the event loop.

    The SDK's bounded timeouts (config.sdk_config) bound how long a thread is held; a cancelled caller stops
    waiting at once while its thread finishes the call in the background."""
    return await asyncio.get_running_loop().run_in_executor(_sdk_threads(), functools.partial(method, *args))


def untrusted_certificate(error: BaseException) -> bool:
    """Whether `error` (from any HTTP client) says the server's TLS certificate is not trusted here. Only the
    reason is looked for; the text is never shown."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) or UNTRUSTED_CERTIFICATE in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
