"""A plaintext record linkage over the same exports, to show what privacy costs.

No pseudonyms, no key service: the clear values, normalised as the agent normalises
them, compared with a classic Fellegi-Sunter rule — Jaro-Winkler similarity of the first
given name and of the surname, the date of birth exact or with one part off, the address,
and the BSN as the final word when both records have one. Candidate pairs come from the
same blocks the private path uses, in the clear. Persons then form households through
shared (non-institutional) addresses and named household members, as at the hub.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from agent import _normalise as norm
from exchange import linkage
from exchange.crypto import KeyKind


@dataclass(frozen=True)
class Clear:
    """One record's clear, normalised values."""

    ref: tuple[str, str]  # (partner, case_ref)
    bsn: str
    name: linkage.Name
    birth: tuple[int, int, int] | None
    address: str
    members: frozenset[str]


def clear_record(partner: str, values: dict[str, str]) -> Clear | None:
    """The clear values of a mapped row; None when the agent would refuse the row too."""
    try:
        bsn = norm.bsn(values["bsn"]) if values.get("bsn", "").strip() else ""
        members = frozenset(norm.bsn(b) for b in values.get("related_bsns", "").split(";")
                            if b.strip()) - {bsn}
        address = ""
        if values.get("postcode", "").strip() or values.get("house_number", "").strip():
            number = norm.house_number(f"{values.get('house_number', '')} "
                                       f"{values.get('house_addition', '')}".strip())
            address = norm.address_key(norm.postcode(values.get("postcode", "")), number)
        dob = (norm.birth_date(values["date_of_birth"])
               if values.get("date_of_birth", "").strip() else "")
    except norm.FieldError:
        return None
    name = linkage.name_parts(
        given_names=values.get("given_names", ""), surname_prefix=values.get(
            "surname_prefix", ""), surname=values.get("surname", ""),
        full_name=values.get("full_name", ""), initials=values.get("initials", ""))
    if not (bsn or address or (name.surname and dob)):
        return None
    return Clear((partner, values.get("case_ref", "").strip()), bsn, name,
                 linkage.birth_parts(dob), address, members)


def jaro_winkler(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    window = max(len(a), len(b)) // 2 - 1
    matched_b = [False] * len(b)
    matches_a = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not matched_b[j] and b[j] == ch:
                matched_b[j] = True
                matches_a.append(ch)
                break
    if not matches_a:
        return 0.0
    matches_b = [b[j] for j in range(len(b)) if matched_b[j]]
    transpositions = sum(x != y for x, y in zip(matches_a, matches_b, strict=True)) / 2
    m = len(matches_a)
    jaro = (m / len(a) + m / len(b) + (m - transpositions) / m) / 3
    prefix = 0
    for x, y in zip(a[:4], b[:4], strict=False):
        if x != y:
            break
        prefix += 1
    return jaro + prefix * 0.1 * (1 - jaro)


def same_person(a: Clear, b: Clear) -> bool:
    """The Fellegi-Sunter rule on clear values (weights in log-odds, threshold 9)."""
    if a.bsn and b.bsn:
        return a.bsn == b.bsn
    score = 0.0
    given_a, given_b = a.name.given[:1], b.name.given[:1]
    surname_a, surname_b = " ".join(a.name.surname), " ".join(b.name.surname)
    if given_a and given_b:
        # also when given name and surname were swapped in one of the systems
        similarity = max(jaro_winkler(given_a[0], given_b[0]),
                         min(jaro_winkler(given_a[0], surname_b),
                             jaro_winkler(surname_a, given_b[0])))
        score += 4.0 if similarity >= 0.9 else 2.0 if similarity >= 0.8 else (
            -6.0 if similarity < 0.6 else 0.0)
    elif a.name.initials[:1] and a.name.initials[:1] == b.name.initials[:1]:
        score += 1.0
    if surname_a and surname_b:
        similarity = jaro_winkler(surname_a, surname_b)
        score += 4.0 if similarity >= 0.9 else 2.0 if similarity >= 0.8 else (
            -3.0 if similarity < 0.6 else 0.0)
    if a.birth and b.birth:
        if a.birth == b.birth:
            score += 6.0
        elif _near(a.birth, b.birth):
            score += 3.0
        else:
            score -= 8.0
    if a.address and a.address == b.address:
        score += 2.0
    return score >= 9.0


def _near(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    ya, ma, da = a
    yb, mb, db = b
    return ((ya, ma) == (yb, mb) or (ya, da) == (yb, db) or (ma, da) == (mb, db)
            or (ya, sorted((ma, da))) == (yb, sorted((mb, db))))


def _blocks(record: Clear) -> Iterable[str]:
    if record.bsn:
        yield f"bsn:{record.bsn}"
    for kind, value in linkage.tokens(linkage.DEFAULT_PROFILE, record.name,
                                      "" if record.birth is None else
                                      "{:04d}-{:02d}-{:02d}".format(*record.birth)):
        if kind == KeyKind.BLOCK:
            yield value.decode()


class _Sets:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)


def link(records: list[Clear], institutions: set[str]) -> tuple[list[int], list[int]]:
    """(person cluster, household cluster) of each record."""
    persons = _Sets(len(records))
    by_block: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        for block in _blocks(record):
            by_block[block].append(i)
    for members in by_block.values():
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if persons.find(i) != persons.find(j) and same_person(records[i], records[j]):
                    persons.union(i, j)
    households = _Sets(len(records))
    for i in range(len(records)):
        households.union(i, persons.find(i))
    owner: dict[str, int] = {}
    for i, record in enumerate(records):
        tokens = [f"person:{b}" for b in ({record.bsn} | record.members) - {""}]
        if record.address and record.address not in institutions:
            tokens.append(f"address:{record.address}")
        for token in tokens:
            if token in owner:
                households.union(i, owner[token])
            else:
                owner[token] = i
    return ([persons.find(i) for i in range(len(records))],
            [households.find(i) for i in range(len(records))])
