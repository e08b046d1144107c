"""One process' shared state over a long run: expired counters and claims are swept (about
once a minute, by the calls themselves), so memory follows what is live, not what ever was."""

from __future__ import annotations

from ztgate.shared.memory import MemoryState


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_expired_entries_are_swept_within_a_minute_of_expiring() -> None:
    clock = Clock()
    state = MemoryState(clock)
    await state.add([(f"counter:{n}", 1, 30) for n in range(500)])
    for n in range(500):
        await state.claim(f"claim:{n}", "v", 30)
    assert state.size() == 1000
    clock.now += 31  # all expired, but the last sweep was less than a minute ago
    await state.add([("live", 1, 3600)])
    assert state.size() == 1001
    clock.now += 30  # a minute since the last sweep: the next call sweeps
    await state.claim("held", "me", 3600)
    assert state.size() == 2


async def test_live_entries_survive_every_sweep() -> None:
    clock = Clock()
    state = MemoryState(clock)
    assert await state.add([("budget", 5, 3600)]) == [5]
    assert await state.claim("token", "first", 3600) == "first"
    for _ in range(10):
        clock.now += 61
        await state.add([("other", 1, 10)])  # sweeps each time
    assert await state.add([("budget", 1, 3600)]) == [6]
    assert await state.claim("token", "second", 3600) == "first"
    assert await state.holder("token") == "first"


async def test_a_day_of_per_minute_counters_stays_at_a_few_minutes_worth() -> None:
    """As quotas use it: each principal adds a counter per minute window (a new key each
    minute); a day of that holds a few windows, not 1,440 of them."""
    clock = Clock()
    state = MemoryState(clock)
    principals = 20
    largest = 0
    for minute in range(24 * 60):
        for second in range(0, 60, 15):
            clock.now = 1_000_000.0 + minute * 60 + second
            await state.add(
                [(f"quota:p{p}:{minute}", 1, 60) for p in range(principals)]
                + [(f"quota:p{p}:day", 1, 86_400) for p in range(principals)]
            )
            largest = max(largest, state.size())
    assert largest <= principals * 3 + principals  # at most three windows, and the day's
