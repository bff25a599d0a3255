"""`python -m packager`: build the AgentRun zip and print what to enter in the console."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from packager.build import build
from packager.deploy_settings import console_settings
from packager.wheels import DEFAULT_PLATFORMS, PackagingError, Target

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/package", description=__doc__)
    parser.add_argument("--python-version", default="3.12",
                        help="Python of the AgentRun runtime (default 3.12; 3.10 cannot run langchain 1.x)")
    parser.add_argument("--platform", action="append", dest="platforms",
                        help=f"wheel platform tag, repeatable (default: {' '.join(DEFAULT_PLATFORMS)})")
    parser.add_argument("--output", type=Path, default=ROOT / "dist" / "agentrun-identity-agent.zip",
                        help="where to write the zip (default: dist/agentrun-identity-agent.zip)")
    args = parser.parse_args(argv)
    target = Target(python_version=args.python_version, platforms=tuple(args.platforms or DEFAULT_PLATFORMS))
    try:
        package = build(ROOT, args.output.resolve(), target)
    except PackagingError as error:
        print(f"package: {error}", file=sys.stderr)
        return 1
    print()
    print(console_settings(package))
    return 0


if __name__ == "__main__":
    sys.exit(main())
