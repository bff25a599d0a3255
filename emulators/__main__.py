"""`python -m emulators --ready-file PATH`: run every emulator until SIGINT/SIGTERM.

When all servers accept connections, the `.info` JSON (URLs, AccessKey, names, `env`) is written to PATH
atomically, so a waiting script never reads half a file. The emulators serve HTTPS: the certificate of the
local CA they made at start is written next to it (`PATH.ca.pem`, named in it as `ca_file` and as
`SSL_CERT_FILE` in `env`). A short summary goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from emulators.cloud import EMULATORS, ExternalIdp, start_local_cloud


def _latency(value: str) -> tuple[str, float]:
    name, sep, ms = value.partition("=")
    if not sep or name not in EMULATORS:
        raise argparse.ArgumentTypeError(f"expected NAME=MS with NAME in {', '.join(EMULATORS)}")
    try:
        return name, float(ms)
    except ValueError:
        raise argparse.ArgumentTypeError(f"latency for {name} must be a number of milliseconds") from None


def _fault(value: str) -> tuple[str, dict[str, Any]]:
    name, sep, spec = value.partition("=")
    if not sep or name not in EMULATORS:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON with NAME in {', '.join(EMULATORS)}")
    try:
        fields = json.loads(spec)
    except json.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError(f"faults for {name} must be a JSON object, "
                                         'e.g. {"fail_next": 2}')
    return name, fields


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulators", description="Run every local emulator on 127.0.0.1 until SIGINT/SIGTERM.")
    parser.add_argument("--ready-file", type=Path, help="write the info JSON here once ready")
    parser.add_argument("--return-url", action="append", default=[], metavar="URL",
                        help="register another OAuth2 return URL on the workload identity, and its browser "
                             "sign-in redirect (URL/signed-in) on the IdP's OAuth client (repeatable)")
    parser.add_argument("--latency", action="append", default=[], type=_latency, metavar="NAME=MS",
                        help="add latency to every call of one emulator, e.g. agent_identity=50 (repeatable)")
    parser.add_argument("--fault", action="append", default=[], type=_fault, metavar="NAME=JSON",
                        help='start with faults, e.g. sts=\'{"fail_next": 2, "fail_kind": "throttle"}\' '
                             "(fields as POST /emulator/faults; repeatable)")
    parser.add_argument("--workload-token-ttl", type=_seconds, metavar="S",
                        help="lifetime of the workload access tokens Agent Identity issues (default 300, as "
                             "observed of the real service)")
    users = parser.add_argument_group(
        "users from your own OpenID Provider",
        "Agent Identity then trusts that provider's ID tokens instead of the local IdP's, and the env block "
        "points the agent and the callback at it. Register <return URL>/signed-in (default "
        "http://localhost:8090/callback/signed-in) as a redirect URI of the client.")
    users.add_argument("--users-issuer", metavar="URL", help="the provider's issuer, exactly as its "
                       "/.well-known/openid-configuration names it")
    users.add_argument("--users-client-id", metavar="ID", help="the OAuth client the callback signs browsers "
                       "in with (required with --users-issuer)")
    users.add_argument("--users-client-secret", metavar="SECRET", default="",
                       help="that client's secret (omit for a public client); write --users-client-secret=S, "
                       "which also takes a secret that begins with '-'")
    users.add_argument("--users-audience", metavar="AUD", default="",
                       help="the aud of your users' JWTs (default: the client id, as in an ID token)")
    users.add_argument("--users-jwks-url", metavar="URL", default="",
                       help="the provider's JWKS (default: jwks_uri from its discovery document)")
    return parser


def _users_idp(args: argparse.Namespace) -> ExternalIdp | None:
    """The provider the --users-* options name, or None; ValueError says what is wrong."""
    others = [args.users_client_id, args.users_client_secret, args.users_audience, args.users_jwks_url]
    if not args.users_issuer:
        if any(others):
            raise ValueError("the --users-* options need --users-issuer")
        return None
    if not args.users_client_id:
        raise ValueError("--users-issuer needs --users-client-id (the callback signs browsers in with it)")
    try:
        return ExternalIdp.discover(args.users_issuer, client_id=args.users_client_id,
                                    client_secret=args.users_client_secret, audience=args.users_audience,
                                    jwks_url=args.users_jwks_url)
    except OSError as error:
        raise ValueError(f"could not read {args.users_issuer}'s discovery document: {error}") from None


def _write_atomically(path: Path, info: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(info, out, indent=2)
    os.chmod(tmp, 0o600)  # it holds the AccessKey secret
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    faults: dict[str, dict[str, Any]] = {}
    for name, fields in args.fault:
        faults.setdefault(name, {}).update(fields)
    for name, ms in args.latency:
        faults.setdefault(name, {})["latency_ms"] = ms
    try:
        users_idp = _users_idp(args)
        ca_file = args.ready_file.with_name(args.ready_file.name + ".ca.pem") if args.ready_file else None
        cloud = start_local_cloud(return_urls=args.return_url, faults=faults, ca_file=ca_file,
                                  users_idp=users_idp, workload_token_ttl_s=args.workload_token_ttl)
    except ValueError as error:  # unknown fault fields, or a provider that cannot be used
        print(f"python -m emulators: {error}", file=sys.stderr)
        return 2
    try:
        if args.ready_file:
            _write_atomically(args.ready_file, cloud.info)
        print("emulators ready:", file=sys.stderr)
        for name in EMULATORS:
            print(f"  {name:<15} {cloud.url(name)}", file=sys.stderr)
        print(f"  return URLs     {', '.join(cloud.info['return_urls'])}", file=sys.stderr)
        print(f"  CA certificate  {cloud.ca_file} (trust it: SSL_CERT_FILE)", file=sys.stderr)
        if users_idp is not None:
            print(f"  users from      {users_idp.issuer} (client {users_idp.client_id})", file=sys.stderr)
        if args.ready_file:
            print(f"  info and env    {args.ready_file}", file=sys.stderr)
        print("Ctrl-C or SIGTERM stops them.", file=sys.stderr, flush=True)
        while not stop.wait(3600):
            pass
    finally:
        cloud.stop()
    print("emulators stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
