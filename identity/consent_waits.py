"""The requests of this instance that wait for a user's consent: one poller per (user, provider, scopes, flow)
asks Agent Identity for all of them, every one resumes as soon as any answer carries the token, and a user's
concurrent waits are capped.

The poll schedule's invariant (figures: bench/RESULTS.md, benchmark 6). While at least one request waits here
for a (user, provider, scopes, flow), its poller starts one Agent Identity call every `interval` (2 s), never
sooner: 0.5 calls/s per waiting user per instance, however many of the user's requests wait. The calls
alternate between the vault (GetResourceOAuth2Token without SessionURI, which returns the token as soon as ANY
link of the user was approved, on any instance) and the sessions of the links waiting here, in turn (only a
session reports a refusal, an expiry or the provider's failure). So, with the callback as its own deployment:
the approval of the one link waiting here is seen by the very next call (within `interval` plus one call),
any other approval by the next vault probe (within 2 x `interval` plus one call), and a refused link within
2 x `interval` x (links waiting here). A forced flow (the provider refused the token the vault holds) never
asks the vault: its calls poll its sessions in turn. A callback served by this same process wakes the waiting
request at once, which then polls its own session.

The cap (`MAX_WAITING_PER_USER`) counts the requests of a user waiting on this instance, whatever the
provider: an instance cannot see another's waits, so a user may wait on several instances, each capping
alone. It is checked when a wait would begin (the link not yet shown), which is inside a tool call: the tool
reports `too_many_pending_authorizations` (HTTP 429 wherever an identity error is answered on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from identity.authorization import PendingAuthorization
from identity.errors import AuthorizationTimedOut, IdentityError, TooManyPendingAuthorizations

log = logging.getLogger(__name__)

Token = TypeVar("Token")
# One poll of a flow's own session: the token, or None while the user decides; raises how the flow ended.
PollSession = Callable[[PendingAuthorization], Awaitable["Token | None"]]
# One look into the vault: the token if any link of the user was approved, else None.
ProbeVault = Callable[[], Awaitable["Token | None"]]


@dataclass(eq=False)
class _Wait(Generic[Token]):
    """One waiting request: its link, the calls it may make (in its own request context: its JWT, its
    workload token), and where its outcome lands."""

    pending: PendingAuthorization
    context: contextvars.Context
    poll: PollSession
    probe: ProbeVault | None  # None: a forced flow, which never takes the vault's token
    outcome: asyncio.Future[Token] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def end(self, token: Token | None = None, error: BaseException | None = None) -> None:
        if not self.outcome.done():
            if error is not None:
                self.outcome.set_exception(error)
            else:
                self.outcome.set_result(token)


class _Poller(Generic[Token]):
    """The calls for one (user, provider, scopes, flow) on this instance, shared by all its waits."""

    def __init__(self, interval: float, on_idle: Callable[[], None]) -> None:
        self.waits: list[_Wait[Token]] = []
        self._interval, self._on_idle = interval, on_idle
        self._turn = 0
        self._task: asyncio.Task[None] | None = None

    def join(self, wait: _Wait[Token]) -> None:
        self.waits.append(wait)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="consent-poller")

    def leave(self, wait: _Wait[Token]) -> None:
        self.waits.remove(wait)
        if wait.outcome.done() and not wait.outcome.cancelled():
            wait.outcome.exception()  # retrieved: a wait that went away first leaves no warning behind
        if not self.waits:
            if self._task is not None:
                self._task.cancel()
            self._on_idle()

    def resolve(self, token: Token) -> None:
        """Every wait here resumes with `token`."""
        for wait in self.waits:
            wait.end(token)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_call = loop.time() + self._interval
        while self.waits:
            await asyncio.sleep(max(0.0, next_call - loop.time()))
            if not self.waits:
                return
            started = loop.time()
            try:
                await self._one_call()
            except Exception as error:  # noqa: BLE001 - a bug must not leave the waits hanging
                log.error("The consent poller failed (%s); its waits end", type(error).__name__)
                for wait in self.waits:
                    wait.end(error=IdentityError())
                return
            next_call = max(started + self._interval, loop.time())

    async def _one_call(self) -> None:
        """The vault on every other turn (when the waits may take its token), else the next session here."""
        self._turn += 1
        newest = self.waits[-1]
        if newest.probe is not None and self._turn % 2 == 1:
            try:
                token = await _in_context(newest, newest.probe())
            except IdentityError as error:
                for wait in self.waits:
                    wait.end(error=error)
                return
            if token is not None:
                self.resolve(token)
            return
        sessions = list({wait.pending.session_uri: wait for wait in self.waits}.values())
        chosen = sessions[(self._turn // (2 if newest.probe is not None else 1)) % len(sessions)]
        try:
            token = await _in_context(chosen, chosen.poll(chosen.pending))
        except IdentityError as error:  # how this one link ended: only its waits end with it
            for wait in self.waits:
                if wait.pending.session_uri == chosen.pending.session_uri:
                    wait.end(error=error)
            return
        if token is not None:
            self.resolve(token)


async def _in_context(wait: _Wait[Token], call: Awaitable[Token | None]) -> Token | None:
    """Run `call` in the request context of `wait` (the JWT its workload token comes from)."""
    return await asyncio.get_running_loop().create_task(call, context=wait.context)  # type: ignore[arg-type]


class ConsentWaits(Generic[Token]):
    """This instance's waits for consent, their pollers, and each user's count of them."""

    def __init__(self, *, interval: float, max_per_user: int, timeout: float) -> None:
        self._interval, self._max_per_user, self._timeout = interval, max_per_user, timeout
        self._pollers: dict[Hashable, _Poller[Token]] = {}
        self._waiting: Counter[str] = Counter()

    def slot(self, user: str) -> contextlib.ExitStack:
        """One of `user`'s waits, taken now and given back when the returned block ends; raises
        TooManyPendingAuthorizations when they are all taken. Checked and taken with no await in between, so
        concurrent requests cannot overshoot."""
        if self._waiting[user] >= self._max_per_user:
            raise TooManyPendingAuthorizations(self._max_per_user)
        self._waiting[user] += 1
        held = contextlib.ExitStack()
        held.callback(self._give_back, user)
        return held

    def _give_back(self, user: str) -> None:
        self._waiting[user] -= 1
        if not self._waiting[user]:
            del self._waiting[user]

    async def until_token(self, key: Hashable, pending: PendingAuthorization, poll: PollSession,
                          probe: ProbeVault | None) -> Token:
        """Wait (in a `slot`) until the poller of `key` finds the token, this link's flow ends, or the timeout
        passes. Cancelling it (the client went away) ends this wait only."""
        poller = self._pollers.get(key)
        if poller is None:
            poller = self._pollers[key] = _Poller(self._interval, lambda: self._pollers.pop(key, None))
        wait: _Wait[Token] = _Wait(pending, contextvars.copy_context(), poll, probe)
        poller.join(wait)
        try:
            async with asyncio.timeout(self._timeout):
                return await self._outcome(poller, wait)
        except TimeoutError:
            raise AuthorizationTimedOut() from None
        finally:
            poller.leave(wait)

    @staticmethod
    async def _outcome(poller: _Poller[Token], wait: _Wait[Token]) -> Token:
        """The poller's answer; or, when this process's callback saw the flow end (`pending.wake`), its own
        session polled at once."""
        pending = wait.pending
        while True:
            woken = asyncio.ensure_future(pending.wake.wait())
            try:
                await asyncio.wait((wait.outcome, woken), return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            if wait.outcome.done():
                return wait.outcome.result()
            pending.wake.clear()
            token = await wait.poll(pending)  # raises the outcome the callback saw
            if token is not None:
                poller.resolve(token)
                return token
