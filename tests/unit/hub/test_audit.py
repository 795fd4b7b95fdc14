"""The hash-chained access log: every edit, deletion, reordering or truncation is caught."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import DBAPIError

from exchange import auditlog, checkpoint, merkle
from exchange.db import make_engine, migrate, session_factory, snapshot
from hub import _audit, _logops, verify_database
from hub._core import Hub
from hub._models import AuditCheckpoint, AuditEvent, AuditHead
from hub._server import MIGRATIONS
from tests.support import ADMIN, Clock

COLUMNS = [c.name for c in AuditEvent.__table__.columns if c.name != "seq"]


def _fill(hub: Hub, n: int = 6) -> None:
    for i in range(n):
        hub.register_organisation(ADMIN, f"org-{i}", f"Organisation {i}")


def _verify(engine: Engine, hub: Hub | None = None) -> _audit.VerifyResult:
    with session_factory(engine)() as s:
        if hub is None:
            return _audit.verify(s)
        return _audit.verify(s, public_key=hub.checkpoint_public_key, origin=hub.origin)


def _row(engine: Engine, seq: int) -> dict[str, Any]:
    with session_factory(engine)() as s:
        return s.get_one(AuditEvent, seq).as_dict()


def _set(engine: Engine, seq: int, **values: Any) -> None:
    with session_factory(engine).begin() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == seq).values(**values))


def test_a_fresh_log_verifies(hub: Hub) -> None:
    _fill(hub)
    result = _verify(hub._engine, hub)
    assert result.ok and result.size == 6
    assert "6 events" in result.describe()


def test_events_chain_and_carry_no_personal_fields(hub: Hub) -> None:
    _fill(hub, 3)
    rows = [_row(hub._engine, i) for i in range(3)]
    assert rows[0]["chain_hash"] == _audit.chain(_audit.ZERO, rows[0]["leaf_hash"])
    assert rows[2]["chain_hash"] == _audit.chain(rows[1]["chain_hash"], rows[2]["leaf_hash"])
    assert all(r["leaf_hash"] == auditlog.leaf_hash(r) for r in rows)
    assert rows[0]["actor_org"] == "gemeente" and rows[0]["actor_role"] == "administrator"


@pytest.mark.parametrize("column", COLUMNS)
def test_editing_any_column_names_that_event(hub: Hub, column: str) -> None:
    _fill(hub)
    original = _row(hub._engine, 3)
    value = original[column]
    if isinstance(value, bool):
        changed: Any = not value
    elif isinstance(value, bytes):
        changed = bytes([value[0] ^ 1]) + value[1:]
    elif isinstance(value, str) and value:
        changed = value[:-1] + ("y" if value[-1] == "x" else "x")
    elif isinstance(value, str):
        changed = "x"
    else:
        changed = value.replace(microsecond=(value.microsecond + 1) % 1_000_000)
    _set(hub._engine, 3, **{column: changed})
    result = _verify(hub._engine)
    assert not result.ok
    assert result.first_bad_index == 3
    assert result.first_bad_event_id == (changed if column == "event_id" else original["event_id"])
    assert "FAILED at event #3" in result.describe()


def test_deleting_an_event_names_the_gap(hub: Hub) -> None:
    _fill(hub)
    with session_factory(hub._engine).begin() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    result = _verify(hub._engine)
    assert not result.ok and result.first_bad_index == 2
    assert "event #2 is missing" in (result.problem or "")


def test_reordering_two_events_is_caught(hub: Hub) -> None:
    _fill(hub)
    a, b = _row(hub._engine, 2), _row(hub._engine, 3)
    _set(hub._engine, 2, event_id="tmp")
    _set(hub._engine, 3, **{k: a[k] for k in COLUMNS})
    _set(hub._engine, 2, **{k: b[k] for k in COLUMNS})
    result = _verify(hub._engine)
    assert not result.ok and result.first_bad_index == 2


def test_truncating_the_end_is_caught_by_the_head(hub: Hub) -> None:
    _fill(hub)
    with session_factory(hub._engine).begin() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    result = _verify(hub._engine)
    assert not result.ok and "head says 6 events but 5 verify" in (result.problem or "")


def test_truncating_and_rewriting_the_head_is_caught_by_a_checkpoint(hub: Hub) -> None:
    _fill(hub)
    cp = hub.checkpoint(ADMIN)  # appends its own event, then signs size 7
    assert cp.size == 7
    with session_factory(hub._engine).begin() as s:
        kept = [s.get_one(AuditEvent, i) for i in range(6)]
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 6))
        # a careful attacker rewrites the head to match the shorter log exactly
        walk = _audit._Walk(0, _audit.ZERO, set())
        for row in kept:
            walk.push(row.leaf_hash)
        s.execute(update(AuditHead).values(
            size=6, chain_hash=kept[-1].chain_hash, root_hash=_audit._fold(walk.stack),
            frontier=b"".join(walk.stack)))
    result = _verify(hub._engine)
    assert not result.ok and "checkpoint at size 7" in (result.problem or "")


def test_a_forged_checkpoint_signature_is_caught(hub: Hub) -> None:
    _fill(hub)
    cp = hub.checkpoint(ADMIN)
    forged = cp.note.replace(cp.note.split("\n")[3], "time 2030-01-01T00:00:00.000000Z")
    with session_factory(hub._engine).begin() as s:
        s.execute(update(AuditCheckpoint).values(note=forged))
    assert _verify(hub._engine).ok  # without the hub's key only consistency is checked
    result = _verify(hub._engine, hub)
    assert not result.ok and "no valid signature" in (result.problem or "")


def _rebuild(engine: Engine) -> None:
    """What an attacker with database access does after editing events: recompute every
    leaf, chain hash, stored subtree hash and the head, so the log agrees with itself."""
    from hub._models import AuditNode

    with session_factory(engine).begin() as s:
        tree, previous = merkle.MemoryTree(), _audit.ZERO
        for row in s.scalars(select(AuditEvent).order_by(AuditEvent.seq)):
            row.leaf_hash = auditlog.leaf_hash(row.as_dict())
            row.chain_hash = previous = _audit.chain(previous, row.leaf_hash)
            tree.append(row.leaf_hash)
        s.flush()
        s.execute(delete(AuditNode))
        s.add_all(AuditNode(level=level, index=i, hash=h)
                  for level in range(1, len(tree.levels)) for i, h in enumerate(tree.levels[level]))
        walk = _audit._Walk(0, _audit.ZERO, set())
        for leaf in tree.levels[0]:
            walk.push(leaf)
        s.execute(update(AuditHead).values(size=tree.size, root_hash=tree.root(),
                                           frontier=b"".join(walk.stack), chain_hash=previous))


def _trusting(engine: Engine, hub: Hub, *seen: AuditCheckpoint) -> _audit.VerifyResult:
    with snapshot(engine) as s:
        return _audit.verify(s, public_key=hub.checkpoint_public_key, origin=hub.origin,
                             trusted=[_audit.Trusted(c.size, c.root_hash, "state file")
                                      for c in seen])


def test_a_rebuilt_history_is_caught_by_a_checkpoint_seen_before(hub: Hub) -> None:
    _fill(hub, 3)
    early = hub.checkpoint(ADMIN)      # size 4
    _fill(hub, 5)
    seen = hub.checkpoint(ADMIN)       # size 10: what an officer's client kept
    _set(hub._engine, 6, actor_user="someone-else")
    _rebuild(hub._engine)
    with session_factory(hub._engine).begin() as s:
        s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size > early.size))
    alone = _trusting(hub._engine, hub)
    assert alone.ok  # the database agrees with itself ...
    assert "NO trusted checkpoint" in alone.describe()
    result = _trusting(hub._engine, hub, seen)  # ... but not with what was seen before
    assert not result.ok and result.first_bad_index == early.size
    assert "the checkpoint you trust at size 10 (state file) does not match" in (
        result.problem or "")
    assert "the change lies in events #4 to #9" in (result.problem or "")


def test_a_shortened_history_is_caught_by_a_checkpoint_seen_before(hub: Hub) -> None:
    _fill(hub, 8)
    seen = hub.checkpoint(ADMIN)
    with session_factory(hub._engine).begin() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq >= 6))
        s.execute(delete(AuditCheckpoint))
    _rebuild(hub._engine)
    assert _trusting(hub._engine, hub).ok
    result = _trusting(hub._engine, hub, seen)
    assert not result.ok and "covers more events than the 6" in (result.problem or "")


def test_a_stored_checkpoint_that_no_longer_matches_names_the_range(hub: Hub) -> None:
    _fill(hub, 3)
    hub.checkpoint(ADMIN)              # size 4
    _fill(hub, 2)
    hub.checkpoint(ADMIN)              # size 7
    _set(hub._engine, 5, reason="edited")
    _rebuild(hub._engine)
    result = _verify(hub._engine, hub)
    assert not result.ok and result.first_bad_index == 4
    assert "checkpoint at size 7 stored in the database does not match" in (
        result.problem or "")
    assert "events #4 to #6" in (result.problem or "")


def test_a_verified_log_says_what_it_rests_on(hub: Hub) -> None:
    _fill(hub, 3)
    cp = hub.checkpoint(ADMIN)
    _fill(hub, 2)
    result = _trusting(hub._engine, hub, cp)
    assert result.ok and result.anchors == ((cp.size, "state file"),)
    assert result.unsigned == 2 and result.signatures_checked
    text = result.describe()
    assert "extends the checkpoint you trust at size 4" in text
    assert "newest 2 event(s) are not yet covered" in text
    assert "signatures NOT checked" in _verify(hub._engine).describe()


def test_verifying_reads_one_snapshot_and_lets_writers_go_on(hub: Hub) -> None:
    _fill(hub, 3)
    with snapshot(hub._engine) as s:
        before = _audit.head(s)
        done = threading.Event()
        writer = threading.Thread(target=lambda: (_fill(hub, 2), done.set()))
        writer.start()
        writer.join(timeout=20)
        assert done.is_set()  # the append committed while the snapshot was open
        assert _audit.head(s) == before  # and the snapshot did not see it
        assert _audit.verify(s).ok
        with pytest.raises(DBAPIError):
            s.execute(update(AuditHead).values(size=0))
    assert _verify(hub._engine).size == 5


def test_checkpoints_verify_and_are_signed(hub: Hub) -> None:
    _fill(hub, 2)
    cp = hub.checkpoint(ADMIN)
    signed = checkpoint.verify(cp.note, hub.checkpoint_public_key, hub.origin)
    assert (signed.size, signed.root_hash) == (cp.size, cp.root_hash)
    result, cp2 = hub.verify(ADMIN)
    assert result.ok and result.checkpoints_checked == 1
    assert cp2.size == cp.size + 1  # the verification is itself an event


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "hub.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine, MIGRATIONS)
    signer = checkpoint.CheckpointSigner.load_or_create(path.with_suffix(".key"), "t.example/h")
    hub = Hub(engine, signer=signer, clock=Clock())
    _fill(hub, 8)
    hub.close()
    return path


@settings(max_examples=40, deadline=None)
@given(seq=st.integers(0, 7), column=st.sampled_from(COLUMNS), data=st.data())
def test_any_byte_edited_in_any_event_is_caught(template: Path, seq: int, column: str,
                                                data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hub.db"
        shutil.copy(template, path)
        engine = make_engine(f"sqlite:///{path}")
        value = _row(engine, seq)[column]
        if isinstance(value, bool):
            changed: Any = not value
        elif isinstance(value, bytes | str):
            raw = bytearray(value.encode() if isinstance(value, str) else value)
            i = data.draw(st.integers(0, len(raw) - 1)) if raw else 0
            if raw:
                raw[i] = (raw[i] + data.draw(st.integers(1, 94))) % 95 + 32
            else:
                raw = bytearray(b"x")
            changed = raw.decode() if isinstance(value, str) else bytes(raw)
        else:
            changed = value.replace(second=(value.second + 1) % 60)
        if changed == value:
            engine.dispose()
            return
        _set(engine, seq, **{column: changed})
        result = verify_database(f"sqlite:///{path}")
        engine.dispose()
        assert not result.ok
        assert result.first_bad_index == seq


def test_concurrent_appends_form_one_chain(hub: Hub) -> None:
    import threading

    def work(i: int) -> None:
        for j in range(10):
            hub.register_organisation(ADMIN, f"t{i}-{j}", "x")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = _verify(hub._engine)
    assert result.ok and result.size == 40
    with session_factory(hub._engine)() as s:
        assert list(s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq))) == list(range(40))


def test_the_stored_tree_matches_a_tree_built_from_the_leaves(hub: Hub) -> None:
    from exchange import merkle
    from hub._models import AuditNode

    _fill(hub, 13)
    with session_factory(hub._engine)() as s:
        leaves = list(s.scalars(select(AuditEvent.leaf_hash).order_by(AuditEvent.seq)))
        reference = merkle.MemoryTree()
        for leaf in leaves:
            reference.append(leaf)
        size, root = _audit.head(s)
        assert (size, root) == (13, reference.root())
        stored = {(n.level, n.index): n.hash for n in s.scalars(select(AuditNode))}
        assert stored == {(lvl, i): h for lvl, hashes in enumerate(reference.levels)
                          for i, h in enumerate(hashes) if lvl > 0}
        for old in range(1, 14):
            proof = _audit.consistency_proof(s, old, 13)
            merkle.verify_consistency(old, 13, proof, reference.root(old), root)
            assert _audit.root_at(s, old) == reference.root(old)
        for index in range(13):
            leaf, proof = _audit.inclusion_proof(s, index, 13)
            merkle.verify_inclusion(index, 13, leaf, proof, root)


def test_a_tampered_subtree_hash_is_caught(hub: Hub) -> None:
    from hub._models import AuditNode

    _fill(hub, 8)
    with session_factory(hub._engine).begin() as s:
        s.execute(update(AuditNode).where(AuditNode.level == 1, AuditNode.index == 2)
                  .values(hash=bytes(32)))
    result = _verify(hub._engine)
    assert not result.ok and result.first_bad_index == 4
    assert "subtree hash over events #4 to #5" in (result.problem or "")


def test_every_event_names_a_purpose_and_who_asked(hub: Hub) -> None:
    from tests.support import access

    _fill(hub, 2)
    hub.checkpoint(access("org-a", "partner", "agent"))
    rows = [_row(hub._engine, i) for i in range(3)]
    assert [r["purpose"] for r in rows] == ["administration", "administration", "oversight"]
    assert all(r["requested"] for r in rows)
    assert rows[0]["actor_name"] == "admin"  # the user id when no display name was given


def test_a_rolled_back_savepoint_takes_only_its_own_events(hub: Hub) -> None:
    from tests.support import access

    who = access("org-a")
    with session_factory(hub._engine).begin() as s:
        _audit.append(s, who, _audit.Event("t.one", "read"), hub.now())
        _audit.append(s, who, _audit.Event("t.two", "read"), hub.now())
        def failing_item() -> None:
            with s.begin_nested():
                _audit.append(s, who, _audit.Event("t.gone", "read"), hub.now())
                raise RuntimeError("this item fails after logging")

        with pytest.raises(RuntimeError):
            failing_item()
        _audit.append(s, who, _audit.Event("t.three", "read"), hub.now())
        with s.begin_nested():
            _audit.append(s, who, _audit.Event("t.four", "read"), hub.now())
        # appending after a released savepoint, as a bulk submission's decisions do
        _audit.append(s, who, _audit.Event("t.five", "read"), hub.now())
    with session_factory(hub._engine).begin() as s:
        _audit.append(s, who, _audit.Event("t.six", "read"), hub.now())
    with session_factory(hub._engine)() as s:
        assert (_audit.queued(s), _audit.head(s)[0]) == (6, 0)  # committed, not in the tree
    assert hub.integrate() == 6
    with session_factory(hub._engine)() as s:
        types = list(s.scalars(select(AuditEvent.event_type).order_by(AuditEvent.seq)))
        assert types == ["t.one", "t.two", "t.three", "t.four", "t.five", "t.six"]
        assert (_audit.queued(s), _audit.head(s)[0]) == (0, 6)
    result = _verify(hub._engine)
    assert result.ok, result.describe()


def test_a_failed_transaction_leaves_the_head_as_it_was(hub: Hub) -> None:
    from tests.support import access

    _fill(hub, 2)

    def failing_request() -> None:
        with session_factory(hub._engine).begin() as s:
            _audit.append(s, access("org-a"), _audit.Event("t.lost", "read"), hub.now())
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_request()
    _fill(hub, 1)
    result = _verify(hub._engine)
    assert result.ok and result.size == 3


def _deferred(hub: Hub) -> Hub:
    """The same hub as a server runs it: events wait in the queue until integrated."""
    return Hub(hub._engine, signer=hub._signer, clock=hub._clock, integrate_on_commit=False)


def test_a_server_hub_queues_events_and_signs_them_within_its_interval(hub: Hub) -> None:
    server = _deferred(hub)
    _fill(server, 3)
    queued = _verify(hub._engine, hub)
    assert queued.ok and (queued.size, queued.queued) == (0, 3)
    assert "3 newer event(s) wait in the queue" in queued.describe()
    cp = server.sign_if_due()  # what the checkpoint thread runs
    assert cp is not None and cp.size == 3
    assert server.sign_if_due() is None  # nothing new
    after = _verify(hub._engine, hub)
    assert after.ok and (after.size, after.queued, after.unsigned) == (3, 0, 0)
    assert "wait in the queue" not in after.describe()
    # a privacy officer's query sees every committed event, queued or not
    server.register_organisation(ADMIN, "gemeente", "Gemeente")
    page = server.query_events(ADMIN, _logops.AuditFilter(), 100, "")
    assert [e.seq for e in page.events] == [0, 1, 2, 3]


def test_events_queued_by_an_older_hub_integrate_with_the_right_leaf(hub: Hub) -> None:
    """Hubs before this format queued the time as isoformat (+00:00); an upgraded hub
    integrating them hashes the canonical time all the same."""
    from hub._models import AuditQueued

    server = _deferred(hub)
    _fill(server, 3)
    with session_factory(hub._engine).begin() as s:
        for queued in s.scalars(select(AuditQueued)):
            fields = json.loads(queued.payload)
            assert fields["occurred_at"].endswith("Z")
            moment = datetime.fromisoformat(fields["occurred_at"])
            fields["occurred_at"] = moment.isoformat()
            queued.payload = json.dumps(fields)
    assert server.sign_if_due() is not None
    rows = [_row(hub._engine, i) for i in range(3)]
    assert all(r["leaf_hash"] == auditlog.leaf_hash(r) for r in rows)
    assert _verify(hub._engine, hub).ok


def test_concurrent_writers_and_the_integrator_lose_and_reorder_nothing(hub: Hub) -> None:
    server = _deferred(hub)
    writers_done = threading.Event()
    signed: list[int] = []

    def write(i: int) -> None:
        for j in range(15):
            server.register_organisation(ADMIN, f"w{i}-{j}", "x")

    def integrate() -> None:
        while not writers_done.is_set():
            cp = server.sign_if_due()
            if cp is not None:
                signed.append(cp.size)

    integrator = threading.Thread(target=integrate)
    integrator.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    writers_done.set()
    integrator.join()
    server.integrate()
    result = _verify(hub._engine, hub)
    assert result.ok and (result.size, result.queued) == (60, 0), result.describe()
    assert signed == sorted(signed) and len(set(signed)) == len(signed)
    with session_factory(hub._engine)() as s:
        rows = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    assert [r.seq for r in rows] == list(range(60))
    # each writer's own events keep their order
    orgs = [json.loads(r.detail)["organisation"] for r in rows]
    for i in range(4):
        assert [o for o in orgs if o.startswith(f"w{i}-")] == [f"w{i}-{j}" for j in range(15)]


def test_integrating_in_a_transaction_that_rolls_back_changes_nothing(hub: Hub) -> None:
    from tests.support import access

    server = _deferred(hub)
    _fill(server, 2)

    def failing_request() -> None:
        with session_factory(hub._engine).begin() as s:
            _audit.append(s, access("org-a"), _audit.Event("t.lost", "read"), hub.now())
            assert _audit.integrate(s) == 3  # the two queued and its own
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_request()
    with session_factory(hub._engine)() as s:
        assert (_audit.queued(s), _audit.head(s)[0]) == (2, 0)
    assert server.integrate() == 2
    assert _verify(hub._engine).size == 2


def test_a_request_that_committed_succeeds_even_if_adding_its_events_fails(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(session: object) -> int:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(_audit, "integrate", broken)
        hub.register_organisation(ADMIN, "org-x", "X")  # no error: it committed
    with session_factory(hub._engine)() as s:
        assert (_audit.queued(s), _audit.head(s)[0]) == (1, 0)
    hub.register_organisation(ADMIN, "org-y", "Y")  # the next commit adds both
    assert _verify(hub._engine).size == 2


def test_an_event_that_cannot_be_stored_is_refused_with_its_request(hub: Hub) -> None:
    from tests.support import access

    with pytest.raises(ValueError, match="subject_ref"), \
            session_factory(hub._engine).begin() as s:
        _audit.append(s, access("org-a"), _audit.Event("t.bad", "read", subject_ref="x" * 65),
                      hub.now())
    with pytest.raises(ValueError, match="timezone"), session_factory(hub._engine).begin() as s:
        _audit.append(s, access("org-a"), _audit.Event("t.naive", "read"),
                      hub.now().replace(tzinfo=None))
    long = _audit.Access("o" * 64, "u" * 128, "partner", "r")
    with session_factory(hub._engine).begin() as s:  # a system event on behalf of it fits
        _audit.append(s, _audit.Access.system(long), _audit.Event("t.ok", "read"), hub.now())
    with session_factory(hub._engine)() as s:
        assert _audit.queued(s) == 1
    assert hub.integrate() == 1


def test_a_savepoint_rolled_back_by_a_failed_flush_takes_its_events(hub: Hub) -> None:
    from sqlalchemy.exc import IntegrityError

    from hub._models import Organisation
    from tests.support import access

    hub.register_organisation(ADMIN, "org-a", "A")
    with session_factory(hub._engine).begin() as s:

        def failing_item() -> None:
            with s.begin_nested():
                _audit.append(s, access("org-a"), _audit.Event("t.gone", "read"), hub.now())
                s.add(Organisation(id="org-a", name="again"))
                s.flush()

        with pytest.raises(IntegrityError):
            failing_item()
        _audit.append(s, access("org-a"), _audit.Event("t.kept", "read"), hub.now())
    hub.integrate()
    with session_factory(hub._engine)() as s:
        types = list(s.scalars(select(AuditEvent.event_type).order_by(AuditEvent.seq)))
    assert types[-1] == "t.kept" and "t.gone" not in types
