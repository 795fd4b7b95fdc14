"""The witness catches every rewritten history, against proofs served from real storage.

A careful attacker who controls the hub edits, deletes, inserts or reorders one event and
rebuilds everything consistently (leaves, chain, tree, head) and signs with the hub's key.
A client holding a checkpoint from before must not accept the new history. Only the
transport is replaced here: proofs come from the tampered database, checks from the
client's code.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from agent._witness import Seen, Witness
from exchange import auditlog, checkpoint, merkle
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import IntegrityError
from exchange.v1 import audit_pb2
from hub import _audit
from hub._core import Hub
from hub._models import AuditEvent, AuditHead, AuditNode
from hub._server import MIGRATIONS
from tests.support import ADMIN, Clock

EVENTS = 12


class _Transport:
    """Serves a database's proofs the way the hub's RPCs would."""

    def __init__(self, path: Path) -> None:
        self.engine = make_engine(f"sqlite:///{path}")
        self.audit = self

    def call(self, method: Any, request: Any, timeout: float = 0) -> Any:
        return method(request)

    def GetConsistencyProof(self, request: Any) -> audit_pb2.ConsistencyProof:
        with session_factory(self.engine)() as s:
            proof = _audit.consistency_proof(s, request.from_size, request.to_size)
        return audit_pb2.ConsistencyProof(hashes=proof)

    def state(self) -> Seen:
        with session_factory(self.engine)() as s:
            size, root = _audit.head(s)
        return Seen(size, root, "")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("log") / "hub.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine, MIGRATIONS)
    hub = Hub(engine, signer=checkpoint.CheckpointSigner.load_or_create(
        path.with_suffix(".key"), "t.example/hub"), clock=Clock())
    for i in range(EVENTS):
        hub.register_organisation(ADMIN, f"org-{i}", f"Organisation {i}")
    hub.close()
    return path


def _rewrite(path: Path, change: str, index: int) -> None:
    """Tamper with one event and rebuild the whole log consistently, as an attacker would."""
    engine = make_engine(f"sqlite:///{path}")
    with session_factory(engine).begin() as s:
        rows = [r.as_dict() for r in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
        if change == "edit":
            rows[index]["reason"] = "rewritten"
        elif change == "delete":
            del rows[index]
        elif change == "insert":
            rows.insert(index, {**rows[index], "event_id": "forged-event"})
        else:  # reorder
            rows[index], rows[index + 1] = rows[index + 1], rows[index]
        s.execute(delete(AuditEvent))
        s.execute(delete(AuditNode))
        tree, previous = merkle.MemoryTree(), _audit.ZERO
        for seq, row in enumerate(rows):
            row["seq"] = seq
            row["leaf_hash"] = auditlog.leaf_hash(row)
            row["chain_hash"] = previous = _audit.chain(previous, row["leaf_hash"])
            s.add(AuditEvent(**row))
            tree.append(row["leaf_hash"])
        for level, hashes in enumerate(tree.levels):
            if level:
                s.add_all(AuditNode(level=level, index=i, hash=h) for i, h in enumerate(hashes))
        walk = _audit._Walk(0, _audit.ZERO, set())
        for leaf in tree.levels[0]:
            walk.push(leaf)
        head = s.get_one(AuditHead, 1)
        head.size, head.root_hash = len(rows), tree.root()
        head.frontier, head.chain_hash = b"".join(walk.stack), previous
    engine.dispose()


@pytest.fixture
def copies(template: Path) -> Iterator[Any]:
    made: list[_Transport] = []

    def copy(into: Path) -> _Transport:
        shutil.copy(template, into)
        made.append(_Transport(into))
        return made[-1]

    yield copy
    for transport in made:
        transport.engine.dispose()


def _witness(transport: _Transport, last: Seen) -> Witness:
    return Witness(transport, origin="t.example/hub", trusted_key=None,  # type: ignore[arg-type]
                   last=last, remember=lambda _key, _seen: None)


@settings(max_examples=40, deadline=None)
@given(change=st.sampled_from(["edit", "delete", "insert", "reorder"]),
       held=st.integers(2, EVENTS), data=st.data())
def test_any_rewrite_is_caught_by_an_earlier_checkpoint(template: Path, change: str,
                                                        held: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, held - 2))  # the change touches what the client holds
    with tempfile.TemporaryDirectory() as tmp:
        honest = _Transport(Path(shutil.copy(template, Path(tmp) / "honest.db")))
        with session_factory(honest.engine)() as s:
            earlier = Seen(held, _audit.root_at(s, held), "")
        shutil.copy(template, Path(tmp) / "rewritten.db")
        _rewrite(Path(tmp) / "rewritten.db", change, index)
        rewritten = _Transport(Path(tmp) / "rewritten.db")
        try:
            _witness(honest, earlier).consistent(earlier, honest.state())  # honest: fine
            with pytest.raises(IntegrityError, match="CANNOT BE TRUSTED"):
                _witness(rewritten, earlier).consistent(earlier, rewritten.state())
        finally:
            honest.engine.dispose()
            rewritten.engine.dispose()


def test_a_split_view_is_caught_when_two_clients_compare(copies: Any, tmp_path: Path) -> None:
    shown_to_a = copies(tmp_path / "a.db")
    shown_to_b = copies(tmp_path / "b.db")
    shown_to_b.engine.dispose()
    _rewrite(tmp_path / "b.db", "edit", 3)
    shown_to_b = _Transport(tmp_path / "b.db")
    a_sees, b_sees = shown_to_a.state(), shown_to_b.state()
    assert a_sees.size == b_sees.size and a_sees.root != b_sees.root
    # each client alone is happy with what it was shown ...
    _witness(shown_to_a, a_sees).consistent(a_sees, a_sees)
    # ... but comparing their checkpoints exposes the fork, at any sizes
    with pytest.raises(IntegrityError, match="different roots"):
        _witness(shown_to_a, a_sees).consistent(a_sees, b_sees)
    with session_factory(shown_to_b.engine)() as s:
        b_before = Seen(8, _audit.root_at(s, 8), "")
    with pytest.raises(IntegrityError, match="does not extend"):
        _witness(shown_to_a, b_before).consistent(b_before, a_sees)
    shown_to_b.engine.dispose()


def test_a_shrunken_log_is_caught(copies: Any, tmp_path: Path) -> None:
    transport = copies(tmp_path / "h.db")
    now = transport.state()
    with pytest.raises(IntegrityError, match="shrank"):
        _witness(transport, now).consistent(now, Seen(now.size - 1, now.root, ""))
