"""Sealed OAuth2 state and the single-flight credential cache (pure in-process logic, no network)."""

from __future__ import annotations

import asyncio

import pytest

from identity.cache import CachedFlights, ExpiringLru, token_key
from identity.sealed import Sealer
from emulators.chosen import MAX_CUSTOM_STATE
from identity.state import FlowState, FlowStates, InvalidState


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


JWT = "eyJhbGciOiJSUzI1NiJ9." + "x" * 700 + "." + "s" * 342  # the size of a typical IdP ID token


def issue(states: FlowStates, ttl_seconds: float = 60) -> tuple[str, FlowState]:
    return states.issue(sub="alice@example.com", user_jwt=JWT, provider="dingtalk", purpose="Write a doc",
                        ttl_seconds=ttl_seconds)


def test_state_carries_the_flow_and_the_original_jwt_without_revealing_them() -> None:
    states = FlowStates("k" * 32)
    value, issued = issue(states)
    opened = states.open(value)
    assert opened == issued and opened.user_jwt == JWT and opened.sub == "alice@example.com"
    assert "alice" not in value and "dingtalk" not in value and JWT[:40] not in value
    assert JWT not in repr(opened)
    assert len(value) < MAX_CUSTOM_STATE  # Agent Identity's CustomState (AWS documents 4,096 characters)


@pytest.mark.parametrize("forge", [
    lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # tag changed
    lambda v: v[:40] + ("A" if v[40] != "A" else "B") + v[41:],  # ciphertext changed
    lambda v: "v2" + v[2:],  # unknown version
    lambda v: v + ".extra",
    lambda v: "",
    lambda v: "v1." + "x" * 20000,
])
def test_forged_states_are_rejected(forge) -> None:
    states = FlowStates("k" * 32)
    value, _ = issue(states)
    with pytest.raises(InvalidState):
        states.open(forge(value))


def test_state_sealed_with_another_secret_or_for_another_purpose_is_rejected() -> None:
    value, _ = issue(FlowStates("a" * 32))
    with pytest.raises(InvalidState):
        FlowStates("b" * 32).open(value)
    cookie = Sealer("a" * 32, "browser-session").seal({"sub": "alice"}, 60)
    with pytest.raises(InvalidState):
        FlowStates("a" * 32).open(cookie)


def test_expired_state_is_rejected() -> None:
    clock = Clock()
    states = FlowStates("k" * 32, clock=clock)
    value, _ = issue(states)
    clock.now += 61
    with pytest.raises(InvalidState, match="expired"):
        states.open(value)


def test_lru_is_bounded_and_entries_expire() -> None:
    clock = Clock()
    cache: ExpiringLru[str] = ExpiringLru(max_size=2, clock=clock)
    cache.put("a", "A", clock.now + 10)
    cache.put("b", "B", clock.now + 100)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C", clock.now + 100)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    clock.now += 11
    assert cache.get("a") is None and len(cache) == 1


def test_token_key_is_stable_and_does_not_contain_the_token() -> None:
    assert token_key("secret-token") == token_key("secret-token") != token_key("other")
    assert "secret" not in token_key("secret-token")


async def test_single_flight_shares_one_load_and_caches_it() -> None:
    flights: CachedFlights[str] = CachedFlights(max_size=10)
    calls = 0
    release = asyncio.Event()

    async def load() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await release.wait()
        return "value", 1e12

    waiters = [asyncio.create_task(flights.get("k", load)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == ["value"] * 20
    assert await flights.get("k", load) == "value"
    assert calls == 1


async def test_a_failed_flight_reaches_every_waiter_and_is_not_cached() -> None:
    flights: CachedFlights[str] = CachedFlights(max_size=10)
    calls = 0

    async def failing() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    results = await asyncio.gather(*(flights.get("k", failing) for _ in range(5)), return_exceptions=True)
    assert calls == 1 and all(isinstance(r, RuntimeError) for r in results)

    async def working() -> tuple[str, float]:
        return "ok", 1e12

    assert await flights.get("k", working) == "ok"


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load() -> None:
    flights: CachedFlights[str] = CachedFlights(max_size=10)
    release = asyncio.Event()

    async def load() -> tuple[str, float]:
        await release.wait()
        return "value", 1e12

    first = asyncio.create_task(flights.get("k", load))
    second = asyncio.create_task(flights.get("k", load))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "value"
    with pytest.raises(asyncio.CancelledError):
        await first
