"""Run every benchmark in turn (each prints its figures and how it measured them).

    python -m bench.run_all [--quick]

`--quick` uses fewer requests, for a smoke run; bench/RESULTS.md records full runs.
"""

from __future__ import annotations

import argparse

from bench import cold_start, consent_resume, footprint, identity_calls, isolation, overhead, vs_naive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    overhead.measure([1, 100], 3 if quick else None)  # None: 200 pairs at 1 user, 20 per user above
    vs_naive.measure([1, 10] if quick else [1, 10, 100])
    identity_calls.measure(10 if quick else 100)
    isolation.measure(5 if quick else 20)
    footprint.measure(100 if quick else 1000, with_zip=False)
    cold_start.measure_zip(3 if quick else 10, None)  # builds the zip and prints its size too
    consent_resume.measure(2 if quick else 8)


if __name__ == "__main__":
    main()
