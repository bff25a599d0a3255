"""Run every benchmark in turn (each prints its figures and how it measured them).

    python -m bench.run_all [--quick | --smoke] [--zip PATH]

`--quick` uses fewer requests; `--smoke` runs each benchmark once at its smallest size, to show they all still
run (a test does; its figures mean nothing). `--zip PATH` starts the cold-start benchmark from that AgentRun zip
instead of building one. bench/RESULTS.md records full runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import (cold_start, consent_resume, footprint, identity_calls, identity_cpu, isolation, overhead,
                   saturation, vs_naive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer requests")
    size.add_argument("--smoke", action="store_true", help="each benchmark once, at its smallest size")
    parser.add_argument("--zip", type=Path, metavar="PATH", help="the AgentRun zip to cold-start from")
    args = parser.parse_args()
    zip_path = args.zip.resolve() if args.zip else None
    if args.smoke:
        overhead.measure([1], 1, tool_requests=1)
        vs_naive.measure([1])
        identity_calls.measure(1)
        isolation.measure(1)
        footprint.measure(1, with_zip=False, starts=1)
        cold_start.measure_zip(1, zip_path)
        consent_resume.measure(1)
        identity_cpu.measure(1)
        saturation.measure(1, 1, 1)
        return
    quick = args.quick
    overhead.measure([1, 100], 3 if quick else None)  # None: 200 pairs at 1 user, 20 per user above
    vs_naive.measure([1, 10] if quick else [1, 10, 100])
    identity_calls.measure(10 if quick else 100)
    isolation.measure(5 if quick else 20)
    footprint.measure(100 if quick else 1000, with_zip=False)
    cold_start.measure_zip(3 if quick else 10, zip_path)  # builds the zip unless given, and prints its size
    consent_resume.measure(2 if quick else 8)
    identity_cpu.measure(20 if quick else 200)
    saturation.measure(20 if quick else 200, 10 if quick else 100, 5 if quick else 30)


if __name__ == "__main__":
    main()
