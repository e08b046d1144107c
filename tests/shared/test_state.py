"""Every place the shared state can live keeps the same promises, against the real stores:
counters add up and expire, and of many processes claiming a key exactly one wins."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.audit.store.backends import postgres_database
from tests.redis_server import PrivateRedis
from ztgate.audit.store.factory import open_store
from ztgate.config import GatewayConfig
from ztgate.core.errors import ServiceUnavailable
from ztgate.shared.base import SharedState
from ztgate.shared.factory import shared_state
from ztgate.shared.memory import MemoryState
from ztgate.shared.postgres import PostgresState
from ztgate.shared.redis import RedisState
from ztgate.shared.sqlite import SQLiteState

BACKENDS = ["memory", "sqlite", "postgresql", "redis"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def pg_shared() -> Iterator[str]:
    """A PostgreSQL database with the store's migrations (which create the shared tables)."""
    with postgres_database() as url:

        async def migrate() -> None:
            store = open_store(url)
            await store.migrate()
            await store.close()

        asyncio.run(migrate())
        yield url


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Which store, and where (its servers are set up here, outside any event loop)."""
    kind: str = request.param
    if kind == "postgresql":
        return kind, request.getfixturevalue("pg_shared")
    if kind == "redis":
        return kind, request.getfixturevalue("redis_url")
    return kind, str(tmp_path / "shared.db")


@pytest.fixture
async def make_state(
    backend: tuple[str, str],
) -> AsyncIterator[Callable[[Clock | None], SharedState]]:
    """``make_state(clock)``: a new handle on one store per call, as each process opens its
    own (memory: one process, so one instance)."""
    kind, where = backend
    made: list[SharedState] = []
    single = MemoryState()

    def make(clock: Clock | None = None) -> SharedState:
        state: SharedState
        timed = {"clock": clock} if clock is not None else {}
        if kind == "memory":
            state = MemoryState(clock) if clock is not None else single
        elif kind == "sqlite":
            state = SQLiteState(where, **timed)
        elif kind == "postgresql":
            state = PostgresState(where, **timed)
        else:
            state = RedisState(where)
        made.append(state)
        return state

    yield make
    for state in {id(s): s for s in made}.values():
        await state.close()


def _key() -> str:
    return "test:" + secrets.token_hex(8)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
async def test_counters_add_up_in_order(make_state: Callable[[Clock | None], SharedState]) -> None:
    state = make_state(None)
    a, b = _key(), _key()
    assert await state.add([(a, 1, 60), (b, 5, 60)]) == [1, 5]
    assert await state.add([(a, 2, 60), (a, 3, 60)]) == [3, 6]
    assert await state.add([(b, -5, 60)]) == [0]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
async def test_of_many_processes_claiming_one_key_exactly_one_wins(
    make_state: Callable[[Clock | None], SharedState],
) -> None:
    key = _key()
    handles = [make_state(None) for _ in range(6)]
    values = [f"claimant-{n}" for n in range(len(handles) * 3)]
    held = await asyncio.gather(
        *(handles[n % len(handles)].claim(key, value, 60) for n, value in enumerate(values))
    )
    winners = [value for value, got in zip(values, held, strict=True) if got == value]
    assert len(winners) == 1
    assert set(held) == {winners[0]}
    assert await handles[0].holder(key) == winners[0]
    assert await handles[0].holder(_key()) is None


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
async def test_counters_from_many_processes_lose_no_addition(
    make_state: Callable[[Clock | None], SharedState],
) -> None:
    key = _key()
    handles = [make_state(None) for _ in range(4)]
    results = await asyncio.gather(*(handles[n % 4].add([(key, 1, 60)]) for n in range(40)))
    assert sorted(r[0] for r in results) == list(range(1, 41))


@pytest.mark.parametrize("backend", ["memory", "sqlite", "postgresql"], indirect=True)
async def test_counters_and_claims_expire(
    make_state: Callable[[Clock | None], SharedState],
) -> None:
    clock = Clock()
    state = make_state(clock)
    key = _key()
    assert await state.add([(key, 4, 60)]) == [4]
    assert await state.claim(key, "first", 60) == "first"
    clock.now += 59
    assert await state.add([(key, 1, 60)]) == [5]
    assert await state.claim(key, "second", 60) == "first"
    clock.now += 2  # the window is over: the counter starts again, the claim is free
    assert await state.add([(key, 1, 60)]) == [1]
    assert await state.holder(key) is None
    assert await state.claim(key, "second", 60) == "second"


async def test_redis_claims_expire_with_their_ttl(redis_url: str) -> None:
    state = RedisState(redis_url)
    key = _key()
    try:
        assert await state.claim(key, "first", 0.2) == "first"
        assert await state.claim(key, "second", 0.2) == "first"
        await asyncio.sleep(0.3)
        assert await state.holder(key) is None
        assert await state.claim(key, "second", 60) == "second"
    finally:
        await state.close()


async def test_an_unreachable_store_fails_closed(tmp_path: Path) -> None:
    """A quota or a one-time token that cannot be checked is refused, never waved through."""
    redis = RedisState("redis://127.0.0.1:1/0")
    postgres = PostgresState("postgresql://postgres@127.0.0.1:1/none")
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    sqlite = SQLiteState(blocked / "shared.db")
    for state in (redis, postgres, sqlite):
        with pytest.raises(ServiceUnavailable):
            await state.claim("k", "v", 60)
        with pytest.raises(ServiceUnavailable):
            await state.add([("k", 1, 60)])
        await state.close()


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abc"), st.integers(-3, 5), st.just(0.0)),
        st.tuples(st.just("claim"), st.sampled_from("abc"), st.integers(0, 3), st.just(0.0)),
        st.tuples(st.just("holder"), st.sampled_from("abc"), st.just(0), st.just(0.0)),
        st.tuples(st.just("wait"), st.just(""), st.just(0), st.floats(0, 40)),
    ),
    max_size=30,
)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS)
def test_the_stores_behave_as_the_memory_model(
    kind: str,
    ops: list[tuple[str, str, int, float]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Any sequence of additions, claims, look-ups and waits gives what one process' memory
    gives: the SQL stores implement exactly the model (expiry included)."""
    clock = Clock()
    prefix = secrets.token_hex(6)
    model = MemoryState(clock)
    real: SharedState
    if kind == "sqlite":
        real = SQLiteState(tmp_path / f"{prefix}.db", clock=clock)
    else:
        real = PostgresState(request.getfixturevalue("pg_shared"), clock=clock)

    async def run() -> None:
        try:
            for op, name, number, wait in ops:
                key = f"{prefix}:{name}"
                if op == "add":
                    assert await real.add([(key, number, 30)]) == await model.add(
                        [(key, number, 30)]
                    )
                elif op == "claim":
                    value = f"v{number}"
                    assert await real.claim(key, value, 30) == await model.claim(key, value, 30)
                elif op == "holder":
                    assert await real.holder(key) == await model.holder(key)
                else:
                    clock.now += wait
        finally:
            await real.close()

    asyncio.run(run())


def test_the_deployment_picks_where_state_lives(tmp_path: Path) -> None:
    base = {"upstream": {"api_key": "k"}, "policy": {"rules": []}}
    one = GatewayConfig.model_validate(base)
    assert isinstance(shared_state(one), MemoryState)
    workers = GatewayConfig.model_validate(
        {**base, "store": {"url": f"sqlite:///{tmp_path}/z.db"}, "server": {"workers": 3}}
    )
    state = shared_state(workers)
    assert isinstance(state, SQLiteState)
    assert state.path == tmp_path / "z.db.shared"
    postgres = GatewayConfig.model_validate({**base, "store": {"url": "postgresql://h/db"}})
    assert isinstance(shared_state(postgres), PostgresState)
    redis = GatewayConfig.model_validate(
        {**base, "store": {"url": "postgresql://h/db"}, "quotas": {"redis_url": "redis://h/0"}}
    )
    assert isinstance(shared_state(redis), RedisState)
