"""RAM policy evaluation for the emulators: may this principal do `action` on `resource`?

A request signed with STS credentials may do what the role's own policy allows AND what the session policy
given to AssumeRole allows (RAM's documented rule: the session policy only narrows the role). Within one
policy an explicit Deny wins over any Allow, and nothing is allowed unless a statement allows it. Actions
match case-insensitively, resources case-sensitively; `*` and `?` are wildcards in both (docs/services.md).

Only `Effect`, `Action` and `Resource` are understood. A statement with anything else (Condition, NotAction,
NotResource...) is read the strictest way: an Allow never matches, a Deny always does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

UNDERSTOOD = {"Effect", "Action", "Resource"}


def allowed(policies: Iterable[dict[str, Any] | str | None], action: str, resource: str) -> bool:
    """True when every given policy allows `action` on `resource` (None: no session policy, no narrowing)."""
    return all(_policy_allows(_as_document(policy), action, resource)
               for policy in policies if policy is not None)


def _as_document(policy: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(policy, dict):
        return policy
    try:
        document = json.loads(policy)
    except json.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _policy_allows(document: dict[str, Any], action: str, resource: str) -> bool:
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    verdict = False
    for statement in statements if isinstance(statements, list) else []:
        if not isinstance(statement, dict):
            continue
        effect = statement.get("Effect")
        understood = set(statement) <= UNDERSTOOD
        if effect == "Deny" and (not understood or _matches(statement, action, resource)):
            return False
        if effect == "Allow" and understood and _matches(statement, action, resource):
            verdict = True
    return verdict


def _matches(statement: dict[str, Any], action: str, resource: str) -> bool:
    return (any(_wildcard(p, action, ignore_case=True) for p in _strings(statement.get("Action")))
            and any(_wildcard(p, resource, ignore_case=False) for p in _strings(statement.get("Resource"))))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _wildcard(pattern: str, value: str, *, ignore_case: bool) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None
