"""Benchmark 7: the app's CPU per Agent Identity call over HTTPS.

This process runs identity/ (as app.py does) against the emulators in their own process, over HTTPS with
the emulators' CA in SSL_CERT_FILE. One call at a time, so each call's CPU is this process's CPU time
(`time.process_time`, every thread) across it: `--calls` new users each exchange their JWT for a workload
token (GetWorkloadAccessTokenForJWT) and get STS credentials (AssumeRoleForWorkloadIdentity), so every call
reaches the service. The same calls through the SDK's `*_async` methods (a new TLS connection per call) are
measured alongside, for comparison. Target: median <= 2 ms per call through identity/.

    python -m bench.identity_cpu [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable
from typing import Any

from bench._cloud import IDENTITY_LATENCY_MS, Cloud, local_cloud
from bench._harness import Report

METHOD = ("identity/ in this process: AgentIdentity.workload_access_token, then sts_credential, for a new "
          "user each time (GetWorkloadAccessTokenForJWT, AssumeRoleForWorkloadIdentity), one call at a time; "
          "CPU = time.process_time() across each call (all threads); emulators in their own process, Agent "
          "Identity 50 ms, HTTPS; then GetWorkloadAccessTokenForJWT through the SDK's *_async method")


async def timed(call: Awaitable[Any], samples: list[float]) -> None:
    """Await one service call and append the CPU milliseconds this process spent on it."""
    began = time.process_time()
    await call
    samples.append((time.process_time() - began) * 1000)


async def ours(cloud: Cloud, jwts: list[str]) -> list[float]:
    from identity.context import RequestContext, bind_request_context, reset_request_context
    from identity.service import AgentIdentity
    from settings.identity import IdentitySettings

    identity = AgentIdentity(IdentitySettings.from_env(cloud.env))
    callers = [await identity.authenticate(f"Bearer {jwt}") for jwt in jwts]  # the JWT check is not a call
    samples: list[float] = []
    try:
        for user, caller in enumerate(callers):
            bound = bind_request_context(RequestContext(caller=caller, session_id=None, request_id=str(user)))
            try:
                await timed(identity.workload_access_token(), samples)  # GetWorkloadAccessTokenForJWT
                await timed(identity.sts_credential(), samples)  # AssumeRoleForWorkloadIdentity
            finally:
                reset_request_context(bound)
    finally:
        await identity.aclose()
    return samples


async def sdk_async(cloud: Cloud, jwts: list[str]) -> list[float]:
    from alibabacloud_agentidentitydata20251127.client import Client as DataClient
    from alibabacloud_agentidentitydata20251127.models import GetWorkloadAccessTokenForJWTRequest

    from outbound import sdk_config
    from identity.credentials import instance_credential_client

    env = cloud.env
    client = DataClient(sdk_config(instance_credential_client(env["ALIBABA_CLOUD_ACCESS_KEY_ID"],
                                                              env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]),
                                   env["AGENT_IDENTITY_REGION_ID"], env["AGENT_IDENTITY_DATA_ENDPOINT"],
                                   timeout_seconds=10))
    samples: list[float] = []
    for jwt in jwts:
        await timed(client.get_workload_access_token_for_jwt_async(GetWorkloadAccessTokenForJWTRequest(
            workload_identity_name=env["AGENT_IDENTITY_WORKLOAD_IDENTITY_NAME"], user_token=jwt)), samples)
    return samples


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"median {statistics.median(ordered):.2f}, p90 {ordered[int(len(ordered) * 0.9)]:.2f}, "
            f"max {ordered[-1]:.2f} ms over {len(ordered)} calls")


def measure(calls: int) -> dict[str, Any]:
    report = Report("Benchmark 7: app CPU per Agent Identity call, HTTPS", METHOD)
    users = max(1, (calls + 1) // 2)
    with local_cloud() as cloud:
        cloud.set_faults("agent_identity", latency_ms=IDENTITY_LATENCY_MS)
        jwts = [cloud.user_jwt(f"cpu-user-{i}") for i in range(users + 10)]
        asyncio.run(ours(cloud, jwts[:10]))  # warm-up: imports, the pool's first connection
        cloud.reset()
        cloud.set_faults("agent_identity", latency_ms=IDENTITY_LATENCY_MS)
        samples = asyncio.run(ours(cloud, jwts[10:]))
        connections = cloud.connections("agent_identity")
        made = sum(cloud.calls("agent_identity").values())
        baseline = asyncio.run(sdk_async(cloud, jwts[10:10 + min(users, 100)]))
    report.figure("ms CPU per call, identity/ (median)", statistics.median(samples), describe(samples))
    report.figure("Agent Identity calls made", made, f"over {connections} TLS connection(s)")
    report.figure("ms CPU per call, SDK *_async (median)", statistics.median(baseline), describe(baseline))
    report.figure("target", 2.0, "median ms CPU per call through identity/ over HTTPS")
    return report.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200,
                        help="Agent Identity calls to measure (two per user)")
    measure(parser.parse_args().calls)


if __name__ == "__main__":
    main()
