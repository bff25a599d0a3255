"""The OAuth2 `CustomState`: everything the callback needs to finish a flow, sealed into the link itself.

Agent Identity hands the state back unchanged, with `session_uri`, on the return URL. The callback may run on
another instance or as its own service, so the state carries the flow whole: who started it (`sub`), what
for, the user's ORIGINAL JWT, which CompleteResourceTokenAuth requires (the JWT the workload access token was
obtained with), and the chat session that asked (for the callback's log). It is encrypted and authenticated
(identity/sealed.py), so the address bar shows nothing of it, and expires shortly after the agent stops
waiting. Its length is about 1.34 x the JWT plus ~200 characters: Agent Identity does not publish its limit,
AWS documents 4,096 characters for the same field (MAX_CUSTOM_STATE_CHARACTERS, docs/services.md), which a JWT
of up to ~2.9 KB fits. A longer state is refused before the link is asked for (`UserTokenTooLarge`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jwt

from identity.sealed import Sealer, Unsealable

# Agent Identity's CustomState limit is not published; AWS documents 4,096 characters for the identical API
# (docs/services.md). A lower real limit shows as the service's own CustomState refusal, handled the same way.
MAX_CUSTOM_STATE_CHARACTERS = 4096
MAX_DISPLAY_NAME = 64


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

    def starter_display_name(self) -> str | None:
        """A name for who started the flow that is safe to show anyone: the `name` or `preferred_username`
        the IdP put in the flow's own JWT (authentic: the JWT was verified when the flow began and travels
        sealed), unless it is the `sub` or looks like an e-mail address."""
        try:
            claims = jwt.decode(self.user_jwt, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        for claim in ("name", "preferred_username"):
            value = claims.get(claim)
            if (isinstance(value, str) and value.strip() and value.strip() != self.sub and "@" not in value
                    and len(value.strip()) <= MAX_DISPLAY_NAME):
                return value.strip()
        return None


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
