"""The OAuth2 `CustomState`: everything the callback needs to finish a flow, sealed into the link itself.

Agent Identity hands the state back unchanged, with `session_uri`, on the return URL. The callback may run on
another instance or as its own service, so the state carries the flow whole: who started it (`sub`), what
for, the user's ORIGINAL JWT, which CompleteResourceTokenAuth requires (the JWT the workload access token was
obtained with), and the chat session that asked (for the callback's log). It is encrypted and authenticated
(identity/sealed.py), so the address bar shows nothing of it, and expires shortly after the agent stops
waiting. Its length is about 1.34 x (JWT + session id) plus ~200 characters: under the 4,096 characters AWS
documents for the same field while the JWT stays under ~2.7 KB (the session id is capped at 128).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from identity.sealed import Sealer, Unsealable


class InvalidState(Exception):
    """The state is malformed, forged or expired. The message is safe to show."""


@dataclass(frozen=True)
class FlowState:
    """One user-federation flow, as the callback will see it."""

    sub: str
    provider: str
    purpose: str
    flow_id: str  # random; names the flow in logs and in this process's bookkeeping
    user_jwt: str = field(repr=False)
    expires_at: int


class FlowStates:
    """Issues and opens sealed CustomState values."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self._sealer = Sealer(secret, "oauth2-custom-state", clock)

    def issue(self, *, sub: str, user_jwt: str, provider: str, purpose: str,
              ttl_seconds: float) -> tuple[str, FlowState]:
        flow_id = secrets.token_urlsafe(12)
        value = self._sealer.seal({"sub": sub, "jwt": user_jwt, "prv": provider, "pur": purpose,
                                   "fid": flow_id}, ttl_seconds)
        return value, self.open(value)

    def open(self, value: str) -> FlowState:
        """The flow; raises InvalidState (with a message fit for the user) unless it is ours and fresh."""
        try:
            document = self._sealer.open(value)
            return FlowState(sub=str(document["sub"]), provider=str(document["prv"]),
                             purpose=str(document["pur"]), flow_id=str(document["fid"]),
                             user_jwt=str(document["jwt"]), expires_at=int(document["exp"]))
        except Unsealable as failure:
            if failure.expired:
                raise InvalidState("The authorization link has expired. Ask the assistant again for a new "
                                   "one.") from None
            raise InvalidState("The authorization state is not valid.") from None
        except (KeyError, TypeError, ValueError):
            raise InvalidState("The authorization state is not valid.") from None
