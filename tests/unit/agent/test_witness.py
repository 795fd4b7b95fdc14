"""The witness catches every rewritten history, against proofs served from real storage.

A careful attacker who controls the hub edits, deletes, inserts or reorders one event and
rebuilds everything consistently (leaves, chain, tree, head) and signs with the hub's key.
A client holding a checkpoint from before must not accept the new history. Only the
transport is replaced here: proofs come from the tampered database, checks from the
client's code.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from agent._witness import Seen, Witness, newest
from exchange import auditlog, checkpoint, merkle
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import IntegrityError, VerificationError
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


def _root(size: int, fork: str = "") -> bytes:
    return hashlib.sha256(f"{fork}root of {size}".encode()).digest()


def test_the_checkpoint_kept_only_moves_forward() -> None:
    ten = Seen(10, _root(10), "ten")
    assert newest(None, ten) is ten
    assert newest(Seen(4, _root(4), "four"), ten) is ten
    assert newest(ten, Seen(4, _root(4), "four")) is ten  # an older one never replaces it
    again = Seen(10, _root(10), "ten, signed again")
    assert newest(ten, again) is again
    with pytest.raises(IntegrityError, match="different roots"):
        newest(ten, Seen(10, _root(10, fork="x"), "forked"))


class _Signed:
    """Checkpoints signed as the hub signs them, by a key of its own."""

    def __init__(self, origin: str = "t.example/hub") -> None:
        self.signer = checkpoint.CheckpointSigner(Ed25519PrivateKey.generate(), origin)

    def checkpoint(self, size: int, *, presented_key: bytes | None = None
                   ) -> audit_pb2.Checkpoint:
        signed = checkpoint.Checkpoint(self.signer.name, size, _root(size), Clock()())
        return audit_pb2.Checkpoint(note=self.signer.sign(signed), size=size,
                                    root_hash=_root(size),
                                    public_key=presented_key or self.signer.public_key)


def _first_use(remember: Any) -> Witness:
    return Witness(None, origin="t.example/hub", trusted_key=None,  # type: ignore[arg-type]
                   last=None, remember=remember)


def test_the_first_key_is_pinned_and_announced_once_kept() -> None:
    hub = _Signed()
    kept: list[tuple[bytes, Seen]] = []
    witness = _first_use(lambda key, seen: kept.append((key, seen)))
    witness.check(hub.checkpoint(3))
    assert [(key, seen.size) for key, seen in kept] == [(hub.signer.public_key, 3)]
    assert witness.notices == [
        f"pinned the hub's checkpoint key {hub.signer.public_key.hex()} on first use: "
        "compare it with the key 'samenloop hub serve' prints"]
    witness.check(hub.checkpoint(3))
    assert len(witness.notices) == 1


def test_a_first_key_whose_signature_fails_is_neither_trusted_nor_announced() -> None:
    hub, impostor = _Signed(), _Signed()
    kept: list[Seen] = []
    witness = _first_use(lambda _key, seen: kept.append(seen))
    with pytest.raises(VerificationError):
        witness.check(hub.checkpoint(3, presented_key=impostor.signer.public_key))
    assert (witness.trusted_key, witness.notices, kept) == (None, [], [])
    witness.check(hub.checkpoint(3))  # the real key is still accepted afterwards
    assert witness.trusted_key == hub.signer.public_key


def test_nothing_is_announced_when_keeping_the_key_failed() -> None:
    def refuse(_key: bytes, _seen: Seen) -> None:
        raise IntegrityError("kept elsewhere")

    witness = _first_use(refuse)
    with pytest.raises(IntegrityError, match="kept elsewhere"):
        witness.check(_Signed().checkpoint(3))
    assert witness.notices == [] and witness.last is None
