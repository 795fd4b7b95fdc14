"""Which signals belong together: the hub's side of exchange.linkage.

* **Exact keys.** A shared person key (from the BSN) is one person. A member key (a
  household member the partner named) meets that member's person key, or the same
  member named elsewhere: one household. A shared address key is one household, unless
  the address is on the exclusion list (shelters, care homes: ``excluded_keys``).
* **Fuzzy tokens.** Two signals whose tokens were made with the same linkage profile and
  that share a blocking token are compared with the profile's decision
  (:func:`exchange.linkage.decide`); a link is one person.

Every link depends only on the two signals, so the households (the connected
components) do not depend on the order in which signals arrive.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVarTuple

from sqlalchemy import Boolean, ColumnElement, Row, Select, and_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from exchange import linkage
from exchange.crypto import KeyKind
from exchange.db import one_of, pairs_in
from hub._models import ExcludedKey, Signal, SignalKey

Key = tuple[int, bytes]
PERSON, ADDRESS, MEMBER, BLOCK, BUILDING = (
    int(KeyKind.PERSON), int(KeyKind.ADDRESS), int(KeyKind.MEMBER), int(KeyKind.BLOCK),
    int(KeyKind.BUILDING))
FUZZY = frozenset(int(k) for k in KeyKind) - {PERSON, ADDRESS, MEMBER}
# What decide() reads of a signal: its fuzzy tokens, person and address keys.
_DECIDED_BY = FUZZY | {PERSON, ADDRESS}
# Signals sharing one of these are compared: blocking tokens, and (token scheme 3) the
# building, where typos in both names and a missing birth date leave no block in common.
COMPARED_BY = frozenset({BLOCK, BUILDING})
REGION = linkage.REGION
Profiles = Callable[[str], linkage.Profile | None]  # a profile ref ("id@vN") -> profile


def with_region(keys: Iterable[Key], region: str) -> list[Key]:
    """A signal's keys, with its region as decide() reads it (never stored as a key)."""
    return [*keys, (REGION, region.encode())]


def usable(keys: Iterable[Key], skip: Set[Key]) -> list[Key]:
    """A signal's keys as fuzzy linkage reads them: at an excluded address (``skip``)
    without that address and without its building — an institution's residents are
    compared and weighed as if they lived apart."""
    keys = list(keys)
    if not any(k in skip for k in keys):
        return keys
    return [k for k in keys if k not in skip and k[0] != BUILDING]


def active(now: datetime) -> ColumnElement[bool]:
    return and_(Signal.state == "active", Signal.expires_at > now)


# Signal ids per query when looking signals up by id (SQLite allows 32766 parameters).
CHUNK = 900
_Ts = TypeVarTuple("_Ts")


def keyed(session: Session, condition: ColumnElement[bool]) -> list[str]:
    """The ids of the signals with a key that meets ``condition`` (on SignalKey).

    Callers then fetch those signals with :func:`among` instead of joining: without
    statistics SQLite's planner may start a join from the signals' state index and scan
    every active signal for each lookup, a cost that grows with the database.
    """
    return sorted(set(session.scalars(select(SignalKey.signal_id).where(condition))))


class _Likely(FunctionElement[bool]):
    """``likely(condition)`` on SQLite, the bare condition elsewhere. Wrapped in a
    function, the condition is no index's to use, so SQLite finds the rows by primary key;
    without statistics its planner would rather range-scan the index on (state,
    expires_at), every active signal, for each lookup by id."""

    type = Boolean()
    name = "likely"
    inherit_cache = True


@compiles(_Likely)
def _likely(element: _Likely, compiler: SQLCompiler, **kw: Any) -> str:
    return f"likely({compiler.process(element.clauses, **kw)})"


@compiles(_Likely, "postgresql")
def _bare(element: _Likely, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses.self_group(), **kw))


def among(session: Session, stmt: Select[*_Ts], ids: list[str],
          *conditions: ColumnElement[bool]) -> list[Row[*_Ts]]:
    """The rows of ``stmt`` (a select over Signal) for the signals with these ids that
    meet ``conditions``, found by id."""
    return rows_in(session, _by_id_only(stmt, conditions), Signal.id, ids)


def rows_in(session: Session, stmt: Select[*_Ts], column: Any, values: Sequence[Any]
            ) -> list[Row[*_Ts]]:
    """The rows of ``stmt`` whose ``column`` is one of ``values``, CHUNK values a query."""
    rows: list[Row[*_Ts]] = []
    for i in range(0, len(values), CHUNK):
        rows.extend(session.execute(stmt.where(one_of(session, column,
                                                      values[i:i + CHUNK]))).all())
    return rows


def by_id(session: Session, stmt: Select[*_Ts], ids: list[str],
          *conditions: ColumnElement[bool]) -> Select[*_Ts]:
    """``stmt`` for the signals with these ids that meet ``conditions`` (one query of
    :func:`among`)."""
    return _by_id_only(stmt, conditions).where(one_of(session, Signal.id, ids))


def _by_id_only(stmt: Select[*_Ts], conditions: Sequence[ColumnElement[bool]]
                ) -> Select[*_Ts]:
    """``stmt`` with ``conditions`` that no index may serve: the rows are found by primary
    key."""
    return stmt.where(unindexed(*conditions)) if conditions else stmt


def unindexed(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """``conditions``, checked on rows that another condition finds (by id, by
    household): no index may serve them (see _Likely)."""
    return _Likely(and_(*conditions))


def excluded(session: Session, keys: Iterable[Key]) -> set[Key]:
    """The address keys among ``keys`` on the exclusion list."""
    addresses = [value for kind, value in keys if kind == ADDRESS]
    if not addresses:
        return set()
    return {(ADDRESS, v) for v in session.scalars(select(ExcludedKey.value).where(
        ExcludedKey.kind == ADDRESS, one_of(session, ExcludedKey.value, addresses)))}


def exact_lookups(keys: Iterable[Key], skip: set[Key]) -> list[Key]:
    """The stored keys that link to a signal with these keys."""
    out: set[Key] = set()
    for kind, value in keys:
        if kind in (PERSON, MEMBER):
            out |= {(PERSON, value), (MEMBER, value)}
        elif kind == ADDRESS and (kind, value) not in skip:
            out.add((ADDRESS, value))
    return sorted(out)


def lock_values(keys: Iterable[Key]) -> list[Key]:
    """The keys whose advisory locks serialise transactions that could link through
    them: exact keys (a member as the person it names), blocking tokens and buildings."""
    out = {(PERSON if kind == MEMBER else kind, value) for kind, value in keys
           if kind in (PERSON, ADDRESS, MEMBER) or kind in COMPARED_BY}
    return sorted(out)


def grouped(keys: Iterable[Key]) -> dict[int, frozenset[bytes]]:
    by_kind: dict[int, set[bytes]] = defaultdict(set)
    for kind, value in keys:
        by_kind[kind].add(value)
    return {kind: frozenset(values) for kind, values in by_kind.items()}


@dataclass(frozen=True)
class Neighbours:
    """The stored signals a new signal links to, by id. Keys never change, and the
    advisory key locks keep others from adding a signal with one of ours meanwhile, so
    only which households these signals are in (and whether they are active) can move."""

    exact: list[str]   # sharing a person, member or (non-excluded) address key; any state
    fuzzy: list[str]   # active, same profile, sharing a block, and the profile links them
    skip: frozenset[Key]  # the new signal's excluded address keys


def neighbours(session: Session, signals: Sequence[tuple[frozenset[Key], str | None]],
               profiles: Profiles, now: datetime) -> list[Neighbours]:
    """The stored signals that each new signal (its keys, its profile ref) links to,
    looked up for all of them at once: a few queries however many signals."""
    mine = [keys for keys, _ in signals]
    skip = excluded(session, {k for keys in mine for k in keys})
    lookups = exact_lookups({k for keys in mine for k in keys}, skip)
    holders: dict[Key, set[str]] = defaultdict(set)
    for i in range(0, len(lookups), CHUNK):
        for sid, kind, value in session.execute(select(
                SignalKey.signal_id, SignalKey.kind, SignalKey.value).where(
                pairs_in(SignalKey.kind, SignalKey.value, lookups[i:i + CHUNK],
                         session))):
            holders[(kind, value)].add(sid)
    exact = [sorted({sid for k in exact_lookups(keys, skip) for sid in holders[k]})
             for keys in mine]
    # Fuzzy: active signals made with the same profile that share a blocking token or
    # the building.
    wanted = [(i, ref, profile) for i, (keys, ref) in enumerate(signals)
              if ref and (profile := profiles(ref)) is not None]
    read = [usable(keys, skip) for keys in mine]
    blocks = sorted({(kind, value) for i, _, _ in wanted for kind, value in read[i]
                     if kind in COMPARED_BY})
    sharing: dict[Key, set[str]] = defaultdict(set)
    for i in range(0, len(blocks), CHUNK):
        for sid, kind, value in session.execute(select(
                SignalKey.signal_id, SignalKey.kind, SignalKey.value).where(
                pairs_in(SignalKey.kind, SignalKey.value, blocks[i:i + CHUNK], session))):
            sharing[(kind, value)].add(sid)
    candidates = {i: {sid for key in read[i] if key[0] in COMPARED_BY
                      for sid in sharing[key]} - set(exact[i]) for i, _, _ in wanted}
    rows = among(session, select(Signal.id, Signal.profile, Signal.region),
                 sorted(set().union(*candidates.values())), active(now))
    made_with = {sid: profile for sid, profile, _ in rows}
    region_of = {sid: frozenset({region.encode()}) for sid, _, region in rows}
    theirs = _keys_of(session, sorted(sid for i, ref, _ in wanted for sid in candidates[i]
                                      if made_with.get(sid) == ref))
    fuzzy: dict[int, list[str]] = {}
    for i, ref, profile in wanted:
        own = grouped(read[i])
        fuzzy[i] = sorted(sid for sid in candidates[i] if made_with.get(sid) == ref
                          and sid in theirs and _compared(own, theirs[sid])
                          and linkage.decide(profile, own, {
                              **theirs[sid], REGION: region_of[sid]}).link)
    return [Neighbours(exact[i], fuzzy.get(i, []), frozenset(skip & keys))
            for i, keys in enumerate(mine)]


def households_of(session: Session, signal_ids: Iterable[str], now: datetime
                  ) -> dict[str, str]:
    """The households of those of these signals that are active, by signal id."""
    return dict(among(session, select(Signal.id, Signal.household_id),
                      sorted(set(signal_ids)), active(now)))


def _keys_of(session: Session, signal_ids: list[str]) -> dict[str, dict[int, frozenset[bytes]]]:
    """What decide() reads of these stored signals (their excluded addresses, and
    buildings there, left out: :func:`usable`)."""
    by_signal: dict[str, list[Key]] = defaultdict(list)
    for sid, kind, value in rows_in(session, select(
            SignalKey.signal_id, SignalKey.kind, SignalKey.value).where(
            SignalKey.kind.in_(sorted(_DECIDED_BY))), SignalKey.signal_id, signal_ids):
        by_signal[sid].append((kind, value))
    skip = excluded(session, {k for keys in by_signal.values() for k in keys})
    return {sid: grouped(usable(keys, skip)) for sid, keys in by_signal.items()}


def _compared(a: Mapping[int, frozenset[bytes]], b: Mapping[int, frozenset[bytes]]) -> bool:
    """Whether two signals (their usable keys, grouped) share what makes the hub compare
    them: a blocking token or the building."""
    return any(a.get(kind, frozenset()) & b.get(kind, frozenset()) for kind in COMPARED_BY)


def components(signals: list[tuple[str, str | None, list[Key]]], skip: set[Key],
               profiles: Profiles, *, households: bool = True,
               shared: Sequence[Iterable[str]] = ()) -> list[list[int]]:
    """Connected components (indexes into ``signals``, each (id, profile ref, keys))
    under exact links and the profiles' fuzzy decisions; with ``households`` False, person
    links only (no address or member links). ``shared``, by index, names other things a
    signal is linked to (the stored households of new signals): sharing one links too."""
    linked = _People.unconstrained(len(signals))
    find = linked.find
    owner: dict[tuple[str, bytes], int] = {}
    read = [usable(keys, skip) for _, _, keys in signals]
    for i, (_, _, keys) in enumerate(signals):
        for kind, value in keys:
            if kind == PERSON or (kind == MEMBER and households):
                token = ("person", value)
            elif kind == ADDRESS and households and (kind, value) not in skip:
                token = ("address", value)
            else:
                continue
            if token in owner:
                linked.join(i, owner[token])
            else:
                owner[token] = i
    blocks = compared_groups([ref for _, ref, _ in signals], read)
    for i, names in enumerate(shared):
        for name in names:
            linked.join(i, owner.setdefault(("shared", name.encode()), i))
    grouped_keys = [grouped(keys) for keys in read]
    compared: set[tuple[int, int]] = set()
    for (ref, _), members in blocks.items():
        profile = profiles(ref)
        if profile is None:
            continue
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if find(i) == find(j) or (i, j) in compared:
                    continue
                compared.add((i, j))
                if linkage.decide(profile, grouped_keys[i], grouped_keys[j]).link:
                    linked.join(i, j)
    out: dict[int, list[int]] = defaultdict(list)
    for i in range(len(signals)):
        out[find(i)].append(i)
    return list(out.values())


# Households with more signals than this are not compared pair by pair for persons (their
# signals still are where they share a block or building): a household is a few people.
HOUSEHOLD_PAIRS = 64
HOUSEHOLD = linkage.HOUSEHOLD


def persons(signals: list[tuple[str, str | None, list[Key]]], skip: set[Key],
            profiles: Profiles) -> list[list[int]]:
    """The persons among ``signals`` (each (id, profile ref, keys)): indexes grouped.

    Persons are found within what the hub knows of households. First the households
    (:func:`components`); then every pair in one household (in a household too large,
    those the hub compares: a shared block or building) is decided with the household
    known
    (:func:`exchange.linkage.decide` weighs a household that moved instead of two
    addresses). Signals with one person key are one person. The links are then taken
    strongest first, and one that would make one person of two BSNs, or of a person and
    a household member they named (a partner lists the *others* in a household), is
    refused: a wrong link between two signals without a BSN stays a wrong link, but the
    links that would chain it into a second person are not made.

    The order is by score, then by the signals' keys (never their order of arrival),
    so the persons depend only on the signals.
    """
    read = [usable(keys, skip) for _, _, keys in signals]
    household = {i: str(n).encode() for n, part in enumerate(
        components(signals, skip, profiles)) for i in part}
    keys = [{**grouped(k), HOUSEHOLD: frozenset({household[i]})} for i, k in enumerate(read)]
    refs = [ref for _, ref, _ in signals]
    # Only a pair in one household can link: one in two was decided by components() on
    # the same features (the household weighs only within one) and did not link.
    by_household: dict[bytes, list[int]] = defaultdict(list)
    for i, name in household.items():
        by_household[name].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in by_household.values():
        if len(members) <= HOUSEHOLD_PAIRS:
            members.sort()
            pairs.update((i, j) for x, i in enumerate(members) for j in members[x + 1:]
                         if refs[i] and refs[i] == refs[j])
        else:
            for group in compared_groups([refs[i] for i in members],
                                         [read[i] for i in members]).values():
                pairs.update((members[x], members[y]) for n, x in enumerate(group)
                             for y in group[n + 1:])
    links: list[tuple[float, bytes, bytes, int, int]] = []
    digest: dict[int, bytes] = {}

    def content(i: int) -> bytes:
        if i not in digest:
            digest[i] = hashlib.sha256(b"".join(
                bytes([kind % 256]) + len(value).to_bytes(2, "big") + value
                for kind, value in sorted(set(read[i])))).digest()
        return digest[i]

    for i, j in pairs:
        profile = profiles(refs[i] or "")
        if profile is None:
            continue
        decision = linkage.decide(profile, keys[i], keys[j])
        if decision.link:
            first, second = sorted((content(i), content(j)))
            links.append((-decision.score, first, second, i, j))
    people = _People([keys[i].get(PERSON, frozenset()) for i in range(len(signals))],
                     [keys[i].get(MEMBER, frozenset()) for i in range(len(signals))])
    owner: dict[bytes, int] = {}
    for i, own in enumerate(keys):
        for value in own.get(PERSON, ()):
            people.join(i, owner.setdefault(value, i), check=False)
    for _, _, _, i, j in sorted(links):
        people.join(i, j)
    out: dict[int, list[int]] = defaultdict(list)
    for i in range(len(signals)):
        out[people.find(i)].append(i)
    return list(out.values())


class _People:
    """Union-find over signals that keeps, per person, the BSNs (person keys) and the
    household members named, and refuses a join that would mix two BSNs or make a person
    their own named member."""

    def __init__(self, bsns: list[frozenset[bytes]], members: list[frozenset[bytes]]
                 ) -> None:
        self.parent = list(range(len(bsns)))
        self.bsns = [set(b) for b in bsns]
        self.members = [set(m) for m in members]

    @classmethod
    def unconstrained(cls, count: int) -> _People:
        """Plain connected components: no BSNs or members to keep apart."""
        return cls([frozenset()] * count, [frozenset()] * count)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int, *, check: bool = True) -> bool:
        a, b = self.find(i), self.find(j)
        if a == b:
            return True
        if check and ((self.bsns[a] and self.bsns[b] and not self.bsns[a] & self.bsns[b])
                      or self.bsns[a] & self.members[b] or self.bsns[b] & self.members[a]):
            return False
        self.parent[a] = b
        self.bsns[b] |= self.bsns[a]
        self.members[b] |= self.members[a]
        return True


def compared_groups(refs: Sequence[str | None], read: Sequence[Iterable[Key]]
                    ) -> dict[tuple[str, bytes], list[int]]:
    """The signals (indexes) the hub compares with each other: by profile ref, those
    that share a blocking token or the building among their usable keys (``read``, by
    :func:`usable`)."""
    groups: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    for i, (ref, keys) in enumerate(zip(refs, read, strict=True)):
        if ref:
            for kind, value in keys:
                if kind in COMPARED_BY:
                    groups[(ref, bytes([kind]) + value)].append(i)
    return groups


def as_profiles(by_ref: Mapping[str, linkage.Profile]) -> Profiles:
    return by_ref.get
