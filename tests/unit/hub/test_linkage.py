"""Fuzzy linkage at the hub: profiles, persons without a BSN, members, moves, excluded
addresses, and households that do not depend on the order signals arrive in."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Select, select

from exchange import crypto, linkage
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import FailedPrecondition, InvalidInput, NotFound, PermissionDenied
from hub import _inputs, _linkage
from hub._core import Hub
from hub._models import Signal
from hub._server import MIGRATIONS
from tests.support import ADMIN, COVENANT, access, setup_registry, signal

PROFILE = 'id = "nl-household"\nname = "Dutch households"\n'
REF = "nl-household@v1"
COORD = access("gemeente", "coordinator", "coord-a")


def _covenant(profile: str = "nl-household") -> str:
    return COVENANT.replace('regions = ["GM0014"]\n',
                            f'regions = ["GM0014"]\nlinkage_profile = "{profile}"\n')


def _oprf(kind: crypto.KeyKind, value: bytes) -> bytes:
    """A stand-in for the OPRF: the hub compares bytes only (domains as the agent's)."""
    label = crypto._KIND_LABELS[kind]
    return hashlib.sha256(label + value).digest()


def person(hub: Hub, org: str, *, given: str = "", surname: str = "", birth: str = "",
           bsn: str = "", address: str = "", members: tuple[str, ...] = (),
           category: str = "youth_care", ref: str = REF, building: str = "",
           region: str = "GM0014") -> _inputs.SignalInput:
    """A signal about a person as an agent with the profile would send it."""
    items = linkage.tokens(linkage.DEFAULT_PROFILE,
                           linkage.name_parts(given_names=given, surname=surname), birth,
                           address=building)
    if bsn:
        items.append((crypto.KeyKind.PERSON, bsn.encode()))
    if address:
        items.append((crypto.KeyKind.ADDRESS, address.encode()))
    items += [(crypto.KeyKind.MEMBER, m.encode()) for m in members]
    keys = frozenset((int(k), _oprf(k, v)) for k, v in items)
    base = signal(hub, org, category=category, region=region)
    return dataclasses.replace(base, keys=keys, linkage_profile=ref)


@pytest.fixture
def reg(hub: Hub) -> Hub:
    setup_registry(hub, covenant=None)
    hub.register_profile(ADMIN, PROFILE)
    hub.register_covenant(ADMIN, _covenant())
    return hub


def _household(hub: Hub, signal_id: str) -> str:
    with session_factory(hub._engine)() as s:
        return s.get_one(Signal, signal_id).household_id


def test_a_partner_gets_its_covenants_profile(hub: Hub, reg: Hub) -> None:
    row = hub.profile_for(access("org-a"))
    assert row is not None and (row.id, row.version) == ("nl-household", 1)
    assert hub.profile_for(access("org-d")) is None  # not a party: no profile
    with pytest.raises(NotFound, match="linkage profile other is not registered"):
        hub.register_covenant(ADMIN, _covenant("other").replace("test-covenant", "second"))


def test_the_same_person_without_a_bsn_links_despite_a_typo(hub: Hub, reg: Hub) -> None:
    a, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Jan Pieter",
                                              surname="van der Berg", birth="2001-02-03"))
    b, _ = hub.submit(access("org-b"), person(hub, "org-b", given="Jna Pieter",
                                              surname="Berg, van der", birth="2001-02-03",
                                              category="housing"))
    assert _household(hub, a.id) == _household(hub, b.id)
    assert len(hub.list_alerts(COORD, ("new",), 10, "")[0]) == 1


def test_namesakes_born_on_other_days_stay_apart(hub: Hub, reg: Hub) -> None:
    a, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Jan", surname="Jansen",
                                              birth="1980-01-01", address="x"))
    b, _ = hub.submit(access("org-b"), person(hub, "org-b", given="Jan", surname="Jansen",
                                              birth="1999-07-14", address="y",
                                              category="housing"))
    assert _household(hub, a.id) != _household(hub, b.id)
    assert hub.list_alerts(COORD, ("new",), 10, "")[0] == []


def test_twins_are_two_persons_in_one_household(hub: Hub, reg: Hub) -> None:
    a, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Daan", surname="de Vries",
                                              birth="2012-05-05", address="home"))
    b, _ = hub.submit(access("org-b"), person(hub, "org-b", given="Sem", surname="de Vries",
                                              birth="2012-05-05", address="home",
                                              category="housing"))
    assert _household(hub, a.id) == _household(hub, b.id)  # by their address
    assert len(_persons(hub)) == 2  # but two people


def _persons(hub: Hub) -> list[set[str]]:
    with session_factory(hub._engine)() as s:
        rows = s.scalars(select(Signal)).all()
        keyed = [(r.id, r.profile, _linkage.with_region(((k.kind, k.value) for k in r.keys),
                                                         r.region)) for r in rows]
        parts = _linkage.persons(keyed, set(), hub._profile(s))
    return [{keyed[i][0] for i in part} for part in parts]


# -- persons within households -----------------------------------------------------------

Keyed = tuple[str, str | None, list[tuple[int, bytes]]]


def _keyed(sid: str, *, given: str = "", surname: str = "", full_name: str = "",
           birth: str = "", bsn: str = "", address: str = "", building: str = "",
           members: tuple[str, ...] = (), sex: str = "", region: str = "GM0014") -> Keyed:
    """A stored signal as persons() reads it (its keys, with its region)."""
    items = linkage.tokens(linkage.DEFAULT_PROFILE, linkage.name_parts(
        given_names=given, surname=surname, full_name=full_name), birth,
        address=building, sex=sex)
    items += [(crypto.KeyKind.PERSON, bsn.encode())] if bsn else []
    items += [(crypto.KeyKind.ADDRESS, address.encode())] if address else []
    items += [(crypto.KeyKind.MEMBER, m.encode()) for m in members]
    keys = sorted({(int(k), _oprf(k, v)) for k, v in items})
    return sid, REF, _linkage.with_region(keys, region)


def _people(signals: list[Keyed]) -> list[set[str]]:
    parts = _linkage.persons(signals, set(), {REF: linkage.DEFAULT_PROFILE}.get)
    return sorted(({signals[i][0] for i in part} for part in parts), key=sorted)


def _as_one(signals: list[Keyed]) -> list[set[str]]:
    """The persons if every link were taken, whatever it joins (connected components)."""
    parts = _linkage.components(signals, set(), {REF: linkage.DEFAULT_PROFILE}.get,
                                households=False)
    return sorted(({signals[i][0] for i in part} for part in parts), key=sorted)


# Mother and daughter of one name at one address, and a third record of that name with
# only initials and no date of birth: it links to either of them alike.
NAMESAKES = [
    _keyed("puck", given="Puck", surname="van Rijn", birth="2023-01-28", bsn="bsn-puck",
           address="3a", building="2012TX|3", sex="F", members=("bsn-petra",)),
    _keyed("p-van-rijn", full_name="van Rijn, P.", address="3a", building="2012TX|3",
           sex="F"),
    _keyed("petronella", given="Petronella", surname="van Rijn", birth="1984-04-03",
           bsn="bsn-petra", address="3a", building="2012TX|3", sex="F"),
]


def test_two_bsns_are_never_one_person() -> None:
    """A record without a BSN that links to two people with one (mother and daughter of
    one initial) joins one of them, never both: the links are taken strongest first, and
    one that would make one person of two BSNs is refused."""
    assert _as_one(NAMESAKES) == [{"p-van-rijn", "petronella", "puck"}]
    people = _people(NAMESAKES)
    assert len(people) == 2
    assert not any({"puck", "petronella"} <= p for p in people)


def test_a_person_is_never_a_member_they_named() -> None:
    """A partner names the *other* members of a household: a record that names a BSN is
    not the person with that BSN, whatever the names say (Timo and Ton de Lange)."""
    timo = _keyed("timo", given="Timo", surname="de Lange", bsn="bsn-timo", address="38",
                  building="2516GP|38", sex="M")
    ton = _keyed("ton", given="Timo", surname="de Lange", birth="2015-05-06", address="38",
                 building="2516GP|38", sex="M", members=("bsn-timo", "bsn-mother"))
    assert _as_one([timo, ton]) == [{"timo", "ton"}]
    assert _people([timo, ton]) == [{"timo"}, {"ton"}]
    # without the member named, the same two records are one person
    same = _keyed("ton", given="Timo", surname="de Lange", birth="2015-05-06",
                  address="38", building="2516GP|38", sex="M", members=("bsn-mother",))
    assert _people([timo, same]) == [{"timo", "ton"}]


@settings(max_examples=30, deadline=None)
@given(order=st.permutations(range(len(NAMESAKES) + 2)))
def test_persons_do_not_depend_on_the_order_of_the_signals(order: list[int]) -> None:
    """The initials' two links score alike: which one is taken depends on the signals'
    keys, never on which arrived first."""
    signals = [*NAMESAKES,
               _keyed("puck-2", given="Puck", surname="Rijn", birth="2023-01-28",
                      address="3a", building="2012TX|3", sex="F"),
               _keyed("petra-2", full_name="Petronella van Rijn", birth="1984-04-03",
                      sex="F", region="GM0363")]
    expected = _people(signals)
    assert _people([signals[i] for i in order]) == expected


def test_persons_during_a_key_rotation_and_without_a_profile() -> None:
    """A signal made during a rotation carries its BSN under the old and the new key: it
    joins the signals made under either; a signal without a profile (exact keys only) or
    with one the hub cannot read is joined by its BSN alone."""
    def rekeyed(sid: str, key: str, ref: str | None = REF, **record: Any) -> Keyed:
        _, _, keys = _keyed(sid, **record)
        person = int(crypto.KeyKind.PERSON)
        keys = [(k, v) for k, v in keys if k != person]
        keys += [(person, f"{key}|{record['bsn']}".encode()) for key in key.split("+")]
        return sid, ref, keys

    eva = {"given": "Eva", "surname": "Smit", "birth": "1990-09-09", "bsn": "bsn-eva"}
    signals = [rekeyed("old", "old", **eva), rekeyed("both", "old+new", **eva),
               rekeyed("new", "new", **eva),
               rekeyed("exact-only", "new", None, bsn="bsn-eva"),
               rekeyed("unreadable", "old", "gone@v9", **eva),
               # another person's BSN under the new key, the same name and date
               rekeyed("namesake", "new", **{**eva, "bsn": "bsn-other"})]
    assert _people(signals) == [{"both", "exact-only", "new", "old", "unreadable"},
                                {"namesake"}]


def test_a_household_too_large_to_compare_pair_by_pair_still_links_by_blocks() -> None:
    """Beyond HOUSEHOLD_PAIRS signals a household's pairs are compared only where they
    share a block or building (an institution-sized chain): one address, no building
    token, and a second record of one resident still joins it by their blocks."""
    def word(seed: str) -> str:  # letters unlike any other's
        return "".join(chr(97 + b % 26) for b in hashlib.sha256(seed.encode()).digest()[:8])

    def resident(sid: str, i: int) -> Keyed:
        born = datetime.date(1950, 1, 1) + datetime.timedelta(days=97 * i)
        return _keyed(sid, given=word(f"g{i}"), surname=word(f"s{i}"),
                      birth=born.isoformat(), address="flat")

    many = [resident(f"s{i}", i) for i in range(_linkage.HOUSEHOLD_PAIRS + 1)]
    twice = [*many, resident("again", 0)]
    people = _people(twice)
    assert {"s0", "again"} in people
    assert len(people) == len(many)


def test_a_household_that_moved_links_its_members_across_addresses() -> None:
    """Within one household at two addresses (the mother's BSN at both), a child known
    without a date of birth at the old address and with it at the new one, in another
    municipality, is one person; the same two records in two households are not."""
    old = _keyed("child-old", given="Bauke", surname="van den Akker", address="old",
                 building="5612ST|184", sex="M", members=("bsn-mother",))
    new = _keyed("child-new", given="Bauke", surname="Akker", birth="2010-01-22",
                 address="new", building="6529XZ|6", sex="M", region="GM0268")
    apart = _people([old, new])
    assert apart == [{"child-new"}, {"child-old"}]
    mother = [_keyed("mother-old", given="Anna", surname="Akker", birth="1980-02-02",
                     bsn="bsn-mother", address="old", building="5612ST|184", sex="F"),
              _keyed("mother-new", given="Anna", surname="Akker", birth="1980-02-02",
                     bsn="bsn-mother", address="new", building="6529XZ|6", sex="F",
                     region="GM0268")]
    assert {"child-old", "child-new"} in _people([old, new, *mother])


def test_signals_in_one_building_are_compared_without_a_block_in_common(
        hub: Hub, reg: Hub) -> None:
    """Typos in both names and in the date of birth leave two records of Sterre Smits no
    blocking token in common; the building (token scheme 3) brings them together. Their
    flats' additions differ, so only the person links their households."""
    sterre = {"given": "Sterre", "surname": "Smits", "birth": "1996-09-13"}
    typos = {"given": "Sterfe", "surname": "mits", "birth": "1996-09-16"}
    first = person(hub, "org-a", **sterre, address="49-1", building="1503VK|49")
    item = person(hub, "org-b", **typos, address="49-2", building="1503VK|49",
                  category="housing")
    blocks = {v for k, v in first.keys if k == crypto.KeyKind.BLOCK}
    assert not blocks & {v for k, v in item.keys if k == crypto.KeyKind.BLOCK}
    a, _ = hub.submit(access("org-a"), first)
    b, _ = hub.submit(access("org-b"), item)
    assert _household(hub, a.id) == _household(hub, b.id)


def test_at_an_excluded_address_the_building_is_no_reason_to_compare() -> None:
    """An institution's residents are compared and weighed as if they lived apart: at an
    excluded address the building is neither compared by nor weighed."""
    shelter, building = (_linkage.ADDRESS, b"shelter"), (_linkage.BUILDING, b"1011AB|5")
    names = [(int(crypto.KeyKind.GIVEN_BAND), bytes([i])) for i in range(12)] + [
        (int(crypto.KeyKind.SURNAME_BAND), bytes([100 + i])) for i in range(12)] + [
        (int(crypto.KeyKind.BIRTH_DATE), b"2001-02-03")]
    keys = [*names, shelter, building]
    assert _linkage.usable(keys, {shelter}) == names
    assert _linkage.usable(keys, set()) == keys
    signals = [("a", REF, keys), ("b", REF, list(keys))]  # no blocking token in common
    profiles = {REF: linkage.DEFAULT_PROFILE}.get
    assert len(_linkage.components(signals, set(), profiles, households=False)) == 1
    assert len(_linkage.components(signals, {shelter}, profiles, households=False)) == 2


def test_namesakes_in_other_municipalities_need_more_than_a_name(hub: Hub, reg: Hub) -> None:
    """The same full name, one side without a date of birth: enough in one municipality,
    not across two (the signals' regions, which the hub holds anyway)."""
    eva = {"given": "Eva Maria", "surname": "Smit"}
    a, _ = hub.submit(access("org-a"), person(hub, "org-a", **eva, birth="1990-09-09"))
    b, _ = hub.submit(access("org-b"), person(hub, "org-b", **eva, category="housing"))
    assert _household(hub, a.id) == _household(hub, b.id)
    c, _ = hub.submit(access("org-c"), person(hub, "org-c", **eva, category="debt",
                                              region="GM0363"))
    assert _household(hub, c.id) != _household(hub, a.id)
    with session_factory(hub._engine)() as s:
        keys = {sid: _linkage.grouped(_linkage.with_region(
            ((k.kind, k.value) for k in s.get_one(Signal, sid).keys),
            s.get_one(Signal, sid).region)) for sid in (a.id, c.id)}
    decision = linkage.decide(linkage.DEFAULT_PROFILE, keys[a.id], keys[c.id])
    assert "region_differs" in {name for name, _ in decision.parts}


def test_a_named_member_links_households_without_an_address(hub: Hub, reg: Hub) -> None:
    child, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Lotte", surname="Bos",
                                                  birth="2015-03-03", address="school-flat",
                                                  members=("mother-bsn",)))
    mother, _ = hub.submit(access("org-b"), person(hub, "org-b", given="Anna", surname="Bos",
                                                   birth="1985-01-01", bsn="mother-bsn",
                                                   address="elsewhere", category="housing"))
    assert _household(hub, child.id) == _household(hub, mother.id)


def test_a_move_links_old_and_new_address_through_the_person(hub: Hub, reg: Hub) -> None:
    old, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Eva", surname="Smit",
                                                birth="1990-09-09", address="old-home"))
    new, _ = hub.submit(access("org-b"), person(hub, "org-b", given="Eva", surname="Smit",
                                                birth="1990-09-09", address="new-home",
                                                category="housing"))
    neighbour, _ = hub.submit(access("org-c"), person(hub, "org-c", given="Piet",
                                                      surname="Smit", birth="1960-01-01",
                                                      address="old-home", category="debt"))
    assert _household(hub, old.id) == _household(hub, new.id) == _household(hub, neighbour.id)
    # without the person, two addresses never link by themselves
    other, _ = hub.submit(access("org-c"), person(hub, "org-c", given="Kees", surname="Kok",
                                                  birth="1950-01-01", address="new-home-2",
                                                  category="debt"))
    assert _household(hub, other.id) != _household(hub, new.id)


def test_an_excluded_address_links_no_one(hub: Hub) -> None:
    setup_registry(hub, covenant=None)
    oversight = Hub(hub._engine, signer=hub._signer, clock=hub._clock,
                    oversight=frozenset({"gemeente"}))
    oversight.register_profile(ADMIN, PROFILE)
    oversight.register_covenant(ADMIN, _covenant())
    shelter = _oprf(crypto.KeyKind.ADDRESS, b"shelter")
    a, _ = oversight.submit(access("org-a"), person(oversight, "org-a", given="Jan",
                                                    surname="Kok", birth="1970-01-01",
                                                    address="shelter"))
    b, _ = oversight.submit(access("org-b"), person(oversight, "org-b", given="Ali",
                                                    surname="Demir", birth="1988-08-08",
                                                    address="shelter", category="housing"))
    assert _household(oversight, a.id) == _household(oversight, b.id)
    with pytest.raises(PermissionDenied, match="municipality"):
        oversight.exclude_addresses(access("org-a"), [shelter])
    assert oversight.exclude_addresses(access("gemeente"), [shelter]) == (1, 1)
    assert _household(oversight, a.id) != _household(oversight, b.id)  # fell apart
    assert oversight.list_alerts(COORD, ("new",), 10, "")[0] == []
    assert oversight.exclude_addresses(access("gemeente"), [shelter]) == (0, 1)
    c, _ = oversight.submit(access("org-c"), person(oversight, "org-c", given="Mia",
                                                    surname="Vos", birth="2000-02-02",
                                                    address="shelter", category="debt"))
    assert _household(oversight, c.id) not in {_household(oversight, a.id),
                                               _household(oversight, b.id)}


def test_a_stored_profile_with_weights_of_an_earlier_decision_links_nothing_fuzzy(
        hub: Hub, reg: Hub) -> None:
    """A profile registered before token scheme 3 with its own weights (hand-set, another
    scale) is not read as if its numbers were today's: the hub keeps storing signals made
    with it, links them by exact keys, and makes no fuzzy link by it (fail closed)."""
    from hub._models import LinkageProfileVersion

    with session_factory(hub._engine)() as s, s.begin():
        s.get_one(LinkageProfileVersion, ("nl-household", 1)).source = (
            PROFILE + "[score]\nbirth_differs = -8\ngiven_high = 4\n")
    hub._profiles.clear()
    jan = {"given": "Jan Pieter", "surname": "van der Berg", "birth": "2001-02-03"}
    a, _ = hub.submit(access("org-a"), person(hub, "org-a", **jan))
    b, _ = hub.submit(access("org-b"), person(hub, "org-b", **jan, category="housing"))
    assert _household(hub, a.id) != _household(hub, b.id)  # no fuzzy link
    c, _ = hub.submit(access("org-c"), person(hub, "org-c", **jan, address="home",
                                              category="debt"))
    d, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Eva", surname="Smit",
                                              address="home"))
    assert _household(hub, c.id) == _household(hub, d.id)  # exact keys still link
    with pytest.raises(linkage.ProfileError, match="scheme = 3"):
        linkage.parse_profile(PROFILE + "[score]\nbirth_differs = -8\n")


def test_tokens_of_an_outdated_profile_are_refused(hub: Hub, reg: Hub) -> None:
    hub.register_profile(ADMIN, PROFILE + "[score]\nthreshold = 10\n")
    with pytest.raises(FailedPrecondition, match="is at version 2, not 1"):
        hub.submit(access("org-a"), person(hub, "org-a", given="Jan", surname="Kok",
                                           birth="1970-01-01"))
    stored, _ = hub.submit(access("org-a"), person(hub, "org-a", given="Jan", surname="Kok",
                                                   birth="1970-01-01",
                                                   ref="nl-household@v2"))
    assert stored.profile == "nl-household@v2"


def test_tokens_of_another_token_scheme_are_not_compared(hub: Hub, reg: Hub) -> None:
    """The same tokens from an agent before token schemes ("@v1") and from a current one
    ("@v1/tN") are not compared: either might have been made another way. Exact keys
    still link them."""
    scheme = linkage.signal_ref(REF, linkage.TOKEN_SCHEME)
    jan = {"given": "Jan Pieter", "surname": "van der Berg", "birth": "2001-02-03"}
    old, _ = hub.submit(access("org-a"), person(hub, "org-a", **jan))
    new, _ = hub.submit(access("org-b"), person(hub, "org-b", **jan, ref=scheme,
                                                category="housing"))
    assert _household(hub, old.id) != _household(hub, new.id)
    same, _ = hub.submit(access("org-c"), person(hub, "org-c", **jan, ref=scheme,
                                                 category="debt"))
    assert _household(hub, same.id) == _household(hub, new.id)
    assert (old.profile, new.profile) == (REF, scheme)
    bsn, _ = hub.submit(access("org-a"), person(hub, "org-a", **jan, ref=scheme,
                                                bsn="111222333"))
    sure, _ = hub.submit(access("org-b"), person(hub, "org-b", bsn="111222333",
                                                 address="home", category="housing"))
    assert _household(hub, bsn.id) == _household(hub, sure.id)


def test_the_token_scheme_is_checked() -> None:
    from exchange.v1 import common_pb2, signal_pb2

    request = signal_pb2.SubmitSignalRequest(
        signal_id=str(uuid.uuid4()), category="housing", region="GM0014",
        keys=[common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_BIRTH_DATE,
                                         value=bytes(32))],
        professional=common_pb2.Contact(name="Pat", phone="050 1234567"),
        linkage_profile=REF, token_scheme=linkage.TOKEN_SCHEME)
    assert _inputs.signal(request).linkage_profile == f"{REF}/t{linkage.TOKEN_SCHEME}"
    request.token_scheme = 0  # an agent from before token schemes
    assert _inputs.signal(request).linkage_profile == REF
    request.token_scheme = linkage.TOKEN_SCHEME + 1
    with pytest.raises(FailedPrecondition, match="upgrade the hub"):
        _inputs.signal(request)
    del request.keys[:]
    request.keys.append(common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_PERSON,
                                                   value=bytes(32)))
    request.linkage_profile, request.token_scheme = "", 1
    with pytest.raises(InvalidInput, match="token_scheme is given without linkage_profile"):
        _inputs.signal(request)


def test_fuzzy_tokens_need_a_profile_reference() -> None:
    from exchange.v1 import common_pb2, signal_pb2

    request = signal_pb2.SubmitSignalRequest(
        signal_id=str(uuid.uuid4()), category="housing", region="GM0014",
        keys=[common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_BIRTH_DATE,
                                         value=bytes(32))],
        professional=common_pb2.Contact(name="Pat", phone="050 1234567"))
    with pytest.raises(InvalidInput, match="linkage_profile is required"):
        _inputs.signal(request)
    request.linkage_profile = "nl-household@1"
    with pytest.raises(InvalidInput, match="like nl-household@v1"):
        _inputs.signal(request)


# -- households do not depend on the order of arrival --------------------------------

FAMILY = [  # (org, given, surname, birth, bsn, address, members)
    ("org-a", "Jan Pieter", "van der Berg", "1980-04-04", "", "home", ()),
    ("org-b", "Jna Pieter", "Berg, van der", "1980-04-04", "", "", ()),
    ("org-c", "Lotte", "van der Berg", "2012-12-12", "lotte", "new-home", ("jan",)),
    ("org-a", "Jan", "Vanderberg", "1980-04-04", "jan", "", ()),
    ("org-b", "Eva", "Smit", "1990-09-09", "", "elsewhere", ()),
    ("org-c", "Eva", "Smit", "1990-09-09", "", "shelter-2", ()),
    ("org-a", "Piet", "Kok", "1955-05-05", "", "shelter-2", ()),
    # Linked only to each other, both from one organisation: if they arrive in one
    # chunk, the link is inside it.
    ("org-a", "Kees", "Bakker", "1970-01-01", "kees", "", ()),
    ("org-a", "Kees", "Bakker", "1970-01-01", "kees", "", ()),
    ("org-b", "Anna Maria", "de Vries", "1985-03-03", "", "", ()),
    ("org-b", "Ana Maria", "Vries, de", "1985-03-03", "", "", ()),
]


def _arrive(hub: Hub, order: list[int], cuts: set[int]) -> dict[int, str]:
    """Submit FAMILY's signals in this order, in batches split at ``cuts``; each batch
    as one chunk per organisation (submit_many decides a chunk together)."""
    ids: dict[int, str] = {}
    bounds = [0, *sorted(cuts), len(order)]
    for start, end in itertools.pairwise(bounds):
        batch = order[start:end]
        for org in sorted({FAMILY[i][0] for i in batch}):
            mine = [i for i in batch if FAMILY[i][0] == org]
            items = []
            for i in mine:
                _, given_name, surname, birth, bsn, address, members = FAMILY[i]
                items.append(person(hub, org, given=given_name, surname=surname, birth=birth,
                                    bsn=bsn, address=address, members=members))
            results = hub.submit_many(access(org), list(items))
            for i, item, result in zip(mine, items, results, strict=True):
                assert isinstance(result, tuple), result
                ids[i] = item.signal_id
    return ids


def _partition(hub: Hub, ids: dict[int, str]) -> list[list[int]]:
    partition: dict[str, set[int]] = {}
    for i, sid in ids.items():
        partition.setdefault(_household(hub, sid), set()).add(i)
    return sorted(map(sorted, partition.values()))


FAMILY_HOUSEHOLDS = [[0, 1, 2, 3], [4, 5, 6], [7, 8], [9, 10]]


@settings(max_examples=16, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(FAMILY))),
       cuts=st.sets(st.integers(1, len(FAMILY) - 1)))
def test_households_do_not_depend_on_the_order_of_arrival(tmp_path_factory: pytest.TempPathFactory,
                                                          order: list[int],
                                                          cuts: set[int]) -> None:
    """... nor on which signals arrive together: one at a time (every cut) or in chunks
    that link among themselves and bridge households stored before."""
    from exchange import checkpoint

    root = tmp_path_factory.mktemp("order")
    hub = Hub(make_engine(f"sqlite:///{root / 'h.db'}"),
              signer=checkpoint.CheckpointSigner.load_or_create(root / "cp.key", "t"))
    migrate(hub._engine, MIGRATIONS)
    setup_registry(hub, covenant=None)
    hub.register_profile(ADMIN, PROFILE)
    hub.register_covenant(ADMIN, _covenant())
    try:
        assert _partition(hub, _arrive(hub, list(order), cuts)) == FAMILY_HOUSEHOLDS
    finally:
        hub.close()


@pytest.mark.parametrize("cuts", [set(), {3}], ids=["all-at-once", "bridging"])
def test_signals_arriving_together_form_the_same_households(hub: Hub, reg: Hub,
                                                            cuts: set[int]) -> None:
    """On both databases: every organisation's signals in one chunk (Kees's exact and
    Anna's fuzzy links are inside a chunk), and two batches where the second bridges
    households the first made (Eva at shelter-2 joins Eva and Piet)."""
    order = [4, 6, 1, 2, 0, 3, 5, 7, 8, 9, 10]
    assert _partition(hub, _arrive(hub, order, cuts)) == FAMILY_HOUSEHOLDS


def test_signals_looked_up_by_id_use_the_primary_key_on_sqlite(tmp_path: Path) -> None:
    # Without statistics SQLite's planner would range-scan the index on (state,
    # expires_at) for every lookup by id: a cost that grows with every signal stored.
    engine = make_engine(f"sqlite:///{tmp_path}/hub.db")
    migrate(engine, MIGRATIONS)

    def plan(stmt: Select[Any]) -> str:
        compiled = stmt.compile(dialect=engine.dialect,
                                compile_kwargs={"render_postcompile": True})
        params = [compiled.params[name] for name in compiled.positiontup or ()]
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(params))
            return " ".join(str(row[-1]) for row in rows)

    ids = ["a", "b", "c"]
    bare = select(Signal.id).where(Signal.state == "active", Signal.id.in_(ids))
    assert "ix_signals_state" in plan(bare)  # what the wrapper is there to prevent
    with session_factory(engine)() as session:
        wrapped = _linkage.by_id(session, select(Signal.id), ids, Signal.state == "active",
                                 Signal.profile == "nl-household@v1")
    assert "USING INDEX sqlite_autoindex_signals_1 (id=?)" in plan(wrapped)
    engine.dispose()


@pytest.mark.postgres
def test_lookups_by_many_ids_are_one_statement_text_on_postgresql(postgres_url: str) -> None:
    """On PostgreSQL a lookup by ids binds one array, so the statement's text is the same
    for 3 ids or 900 (neither SQLAlchemy nor psycopg re-renders it); every other test on
    PostgreSQL shows that it finds what it should."""
    engine = make_engine(postgres_url)
    migrate(engine, MIGRATIONS)
    texts = set()
    with session_factory(engine)() as session:
        for n in (3, 900):
            stmt = _linkage.by_id(session, select(Signal.id), [f"id-{i}" for i in range(n)],
                                  Signal.state == "active")
            texts.add(str(stmt.compile(dialect=engine.dialect)))
            assert session.execute(stmt).all() == []
    assert len(texts) == 1, texts
    assert "ANY" in texts.pop()
    engine.dispose()
