"""Cold start of `python app.py`: process start -> first `/health` answer, and -> first chat completion.

Run: `.venv/bin/python -m bench.cold_start [--runs N]`. Each run starts the emulators once (their own process),
then starts app.py fresh N times against them and times, from `Popen`:
- `health`: the first `GET /health` answered 200 (what the platform's health check sees);
- `first_chat`: then one non-stream chat completion answered (LangChain, the model client and the agent are
  built on this first request, so it includes those lazy imports);
plus the server's RSS after that first chat. Median and max over the runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from bench._cloud import app_server, local_cloud
from bench._harness import rss_mb


def one_run(cloud) -> dict[str, float]:
    with app_server(cloud.env) as server:
        began = time.perf_counter() - server.started_s
        body = {"messages": [{"role": "user", "content": "hello there"}]}
        response = httpx.post(server.chat_url, json=body, timeout=60, trust_env=False,
                              headers={"Authorization": f"Bearer {cloud.user_jwt('alice')}"})
        response.raise_for_status()
        first_chat = time.perf_counter() - began
        return {"health_s": server.started_s, "first_chat_s": first_chat, "rss_mb": rss_mb(server.process.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with local_cloud() as cloud:
        runs = [one_run(cloud) for _ in range(args.runs)]
    print(f"cold start of `python app.py` against the local emulators, {args.runs} fresh processes:")
    for key, label in (("health_s", "process start -> first /health 200"),
                       ("first_chat_s", "process start -> first chat completion"),
                       ("rss_mb", "RSS after the first chat (MB)")):
        values = [r[key] for r in runs]
        print(f"  {label:42s} median {statistics.median(values):7.3f}   max {max(values):7.3f}")


if __name__ == "__main__":
    main()
