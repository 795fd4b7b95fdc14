"""What the agent keeps about the hub's log: the pinned key and a checkpoint that only
moves forward, whatever the configuration or other processes sharing the state say."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import exc as sql_errors
from sqlalchemy import select

from agent import Agent, AgentSettings
from agent._models import Pin
from agent._witness import Seen
from exchange.db import make_engine, session_factory
from exchange.errors import IntegrityError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
Opener = Callable[..., Agent]


def _seen(size: int, fork: str = "") -> Seen:
    return Seen(size, hashlib.sha256(f"{fork}root {size}".encode()).digest(), f"note {size}")


@pytest.fixture
def state(database_url: str) -> str:
    """The agent's state database (SQLite, and PostgreSQL when configured)."""
    return database_url


@pytest.fixture
def open_agent(state: str) -> Iterator[Opener]:
    made: list[Agent] = []

    def open_(hub_key: str = "") -> Agent:
        # The hub and key service are never contacted by these tests.
        agent = Agent(AgentSettings(organisation="org-a", hub="127.0.0.1:9",
                                    keyservice="127.0.0.1:9", state_database=state,
                                    hub_key=hub_key))
        made.append(agent)
        return agent

    yield open_
    for agent in made:
        agent.close()


def _stored(state: str) -> dict[str, bytes]:
    engine = make_engine(state)
    try:
        with session_factory(engine)() as s:
            return {p.name: p.value for p in s.scalars(select(Pin))}
    finally:
        engine.dispose()


def _stored_checkpoint(state: str) -> Seen:
    return Seen.from_json(json.loads(_stored(state)["log:checkpoint"]))


def test_a_configured_hub_key_that_conflicts_with_the_pinned_one_is_refused(
        open_agent: Opener, state: str) -> None:
    first = open_agent()
    first._remember_log(KEY, _seen(3))  # pinned on first use
    first.close()
    with pytest.raises(IntegrityError) as refused:
        open_agent(hub_key=OTHER_KEY.hex())
    message = str(refused.value)
    assert "hub_key" in message and "resolve this" in message and "\n" not in message
    assert OTHER_KEY.hex() in message and KEY.hex() in message
    assert _stored(state)["key:hub"] == KEY  # the configured key was not adopted
    agrees = open_agent(hub_key=KEY.hex())  # the same key, configured: fine
    assert agrees.witness.trusted_key == KEY


def test_a_configured_hub_key_is_used_when_nothing_is_pinned(open_agent: Opener) -> None:
    assert open_agent(hub_key=OTHER_KEY.hex()).witness.trusted_key == OTHER_KEY
    assert open_agent().witness.trusted_key is None


def test_the_kept_checkpoint_never_moves_back(open_agent: Opener, state: str) -> None:
    fast, slow = open_agent(), open_agent()  # two processes sharing one state database
    fast._remember_log(KEY, _seen(10))
    slow._remember_log(KEY, _seen(5))  # verified earlier, written later
    assert _stored_checkpoint(state) == _seen(10)
    slow._remember_log(KEY, _seen(10))
    assert _stored_checkpoint(state) == _seen(10)
    slow._remember_log(KEY, _seen(12))
    assert _stored_checkpoint(state) == _seen(12)
    assert open_agent().witness.last == _seen(12)


def test_a_checkpoint_of_the_same_size_with_another_root_is_a_fork(
        open_agent: Opener, state: str) -> None:
    agent = open_agent()
    agent._remember_log(KEY, _seen(7))
    with pytest.raises(IntegrityError, match=r"CANNOT BE TRUSTED.*different roots"):
        open_agent()._remember_log(KEY, _seen(7, fork="forked "))
    assert _stored_checkpoint(state) == _seen(7)


def test_a_key_pinned_meanwhile_by_another_process_is_not_overwritten(
        open_agent: Opener, state: str) -> None:
    one, other = open_agent(), open_agent()  # both start before anything is pinned
    one._remember_log(KEY, _seen(2))
    with pytest.raises(IntegrityError, match=r"CANNOT BE TRUSTED.*pinned key"):
        other._remember_log(OTHER_KEY, _seen(4))
    assert _stored(state)["key:hub"] == KEY
    assert _stored_checkpoint(state) == _seen(2)


def test_concurrent_writers_keep_the_newest(open_agent: Opener, state: str) -> None:
    agents = [open_agent() for _ in range(4)]
    sizes = [i * 17 % 40 + 1 for i in range(40)]  # 1 to 40, shuffled
    errors: list[BaseException] = []

    def write(agent: Agent, mine: list[int]) -> None:
        try:
            for size in mine:
                agent._remember_log(KEY, _seen(size))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(agent, sizes[i::4]))
               for i, agent in enumerate(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _stored_checkpoint(state) == _seen(40)


def test_a_refused_start_closes_what_it_opened(open_agent: Opener,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    open_agent()._remember_log(KEY, _seen(1))
    closed: list[bool] = []
    close = Agent.close

    def counting_close(self: Agent) -> None:
        closed.append(True)
        close(self)

    monkeypatch.setattr(Agent, "close", counting_close)
    with pytest.raises(IntegrityError):
        open_agent(hub_key=OTHER_KEY.hex())
    assert closed == [True]


def test_a_first_pin_raced_by_another_process_is_decided_again(
        open_agent: Opener, state: str, monkeypatch: pytest.MonkeyPatch) -> None:
    slow, fast = open_agent(), open_agent()
    once = Agent._remember_log_once
    attempts: list[int] = []

    def raced(self: Agent, key: bytes, seen: Seen) -> None:
        attempts.append(seen.size)
        if len(attempts) == 1:  # another process inserts the first pins meanwhile
            once(fast, KEY, _seen(9))
            raise sql_errors.IntegrityError("INSERT INTO pins", {}, Exception("duplicate key"))
        once(self, key, seen)

    monkeypatch.setattr(Agent, "_remember_log_once", raced)
    slow._remember_log(KEY, _seen(5))
    assert attempts == [5, 5]
    assert _stored_checkpoint(state) == _seen(9)
