"""Benchmark 2: concurrency of our identity layer against the SDK's own decorators, side by side in one run.

Workload per simulated user: write one DingTalk document with the user's stored token, then one caller-identity
call with STS credentials. Both sides run against the same emulators (Agent Identity and STS 50 ms, DingTalk
100 ms), each in its own process, alternately for each user count, over HTTPS as in production. Each process
first runs the same workload for as many other users, unmeasured: a serving instance is warm (its connection
pools open), and a cold burst would mostly measure TLS handshakes once per process. Throughput = users / wall
time from a common start; latency = one user's whole workload.

    python -m bench.vs_naive [--users 1 10 100]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from typing import Any

from bench._authorize import authorize_users
from bench._cloud import local_cloud, run_json_child, write_json_temp
from bench._harness import Report, Summary, ratio

METHOD = ("each user = 1 DingTalk overwrite (stored token) + 1 STS GetCallerIdentity; ours = identity/ + tools/ "
          "invoked as LangChain tools; naive = agent-identity-python-sdk 0.1.6 requires_access_token / "
          "requires_sts_token as in the product samples; emulators: identity+STS 50 ms, DingTalk 100 ms; "
          "HTTPS (the emulators' local CA in SSL_CERT_FILE); each side in its own process, warmed by as many "
          "other users first, same emulators, same run")


def measure(users_counts: list[int], requests_per_user: int = 1) -> dict[str, Any]:
    report = Report("Benchmark 2: concurrency, ours vs the SDK's decorators", METHOD)
    with local_cloud() as cloud, tempfile.TemporaryDirectory(prefix="bench-vs-naive-") as tmp:
        most = max(users_counts)
        tokens = [cloud.user_jwt(f"bench-user-{i}") for i in range(2 * most)]
        asyncio.run(authorize_users(cloud.env, tokens))
        cloud.set_specified_latencies()
        for users in users_counts:
            tokens_file = write_json_temp(tokens[:users], tmp)
            warmup_file = write_json_temp(tokens[most:most + users], tmp)
            args = ("--info", str(cloud.info_path), "--tokens", tokens_file, "--warmup-tokens", warmup_file,
                    "--requests-per-user", str(requests_per_user))
            ours = run_json_child("bench.ours_identity", *args)
            naive = run_json_child("bench.naive_sdk", *args)
            _report_pair(report, users, ours, naive)
    return report.as_dict()


def _report_pair(report: Report, users: int, ours: dict[str, Any], naive: dict[str, Any]) -> None:
    for side, outcome in (("ours", ours), ("naive", naive)):
        done = len(outcome["latencies_s"])
        rps = done / outcome["wall_s"] if outcome["wall_s"] else float("nan")
        summary = Summary.of_seconds(outcome["latencies_s"])
        report.figure(f"{users} users, {side}: requests/s", rps, f"{done} ok, {len(outcome['errors'])} errors, "
                      f"wall {outcome['wall_s']:.2f} s")
        report.figure(f"{users} users, {side}: p99 ms", summary.p99_ms, f"p50 {summary.p50_ms:.1f} ms")
        for error in outcome["errors"][:3]:
            report.note(f"{side} error: {error}")
    ours_rps = len(ours["latencies_s"]) / ours["wall_s"]
    naive_rps = len(naive["latencies_s"]) / naive["wall_s"] if naive["wall_s"] else float("nan")
    report.figure(f"{users} users: throughput ratio ours/naive", ratio(ours_rps, naive_rps),
                  "target >= 20 at 100 users")
    report.figure(f"{users} users: p99 ratio naive/ours",
                  ratio(Summary.of_seconds(naive["latencies_s"]).p99_ms,
                        Summary.of_seconds(ours["latencies_s"]).p99_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--requests-per-user", type=int, default=1)
    args = parser.parse_args()
    measure(args.users, args.requests_per_user)


if __name__ == "__main__":
    main()
