"""Covenants: the agreements that make a match disclosable without consent.

A covenant file is TOML::

    id = "samen-sterk-noord"
    name = "Convenant Samen Sterk Noord"
    legal_basis = "AVG art. 6 lid 1 sub e; Jeugdwet art. 7.1.1.1; Wmo 2015 art. 5.2.1"
    valid_from = 2026-01-01
    valid_until = 2027-12-31          # inclusive
    coordinator = "regie-noord"       # one coordinator, or [coordinators] / [[groups]]
    parties = ["jeugdzorg-noord", "woonstad-noord", "schuldhulp-noord"]
    purposes = ["care_coordination"]
    regions = ["GM0014"]

    article = "art. 5"                # optional: the covenant's article on disclosure
    match_notices = ["youth_care", "housing"]   # optional: categories whose professionals
                                                # get a match notice with the others' contacts
    linkage_profile = "nl-household"  # optional: the linkage profile partners use

    [categories]                      # per category: what the basis is
    youth_care = "covenant"           # the covenant itself is the basis
    housing = "covenant"
    mental_health = "consent"         # only with the household's consent

    [articles]                        # optional: a category's own article
    housing = "art. 5.3"

    [escalation]                      # optional; these are the defaults
    reminder_days = 5                 # remind the coordinator when no contact is recorded
    escalation_days = 10              # then tell the escalation contact
    contact = "teamleider-noord"      # a registered coordinator (optional)

Instead of ``coordinator``, a covenant may assign coordinators by region (a
``[coordinators]`` table naming one per region: a household goes to the coordinator of
the region of its most recent signal, and is handed over when it moves) or per partner
group (``[[groups]]`` tables with ``coordinator`` and ``parties``: a household goes to the
coordinator of the group whose party signalled it first).

A category not listed, or listed as "consent", is disclosed only with consent. Every
disclosure on the covenant's basis records the version and the article it rests on.
Dates without a time are whole UTC days. Errors name the line and the reason.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exchange import vocab
from exchange.errors import InvalidInput

CARE_COORDINATION = "care_coordination"
_BASES = ("covenant", "consent")
_KEYS = {
    "id", "name", "legal_basis", "valid_from", "valid_until", "coordinator",
    "parties", "purposes", "regions", "categories", "article", "articles",
    "coordinators", "groups", "escalation", "match_notices", "linkage_profile",
}
_ESCALATION_KEYS = {"reminder_days", "escalation_days", "contact"}
REMINDER_DAYS = 5
ESCALATION_DAYS = 10
_MAX_SOURCE = 64 * 1024


class CovenantError(InvalidInput):
    """A covenant file is invalid; the message names the line and the reason."""


@dataclass(frozen=True)
class Covenant:
    id: str
    name: str
    legal_basis: str
    valid_from: datetime
    valid_until: datetime  # exclusive
    # The single coordinator; "" when coordinators are assigned by region or group.
    coordinator_id: str
    parties: frozenset[str]
    purposes: frozenset[str]
    regions: frozenset[str]
    categories: dict[str, str]  # category -> "covenant" | "consent"
    source: str
    version: int = 0  # assigned by the hub when registered
    article: str = ""  # the covenant's article on disclosure
    articles: dict[str, str] = field(default_factory=dict)  # a category's own article
    by_region: dict[str, str] = field(default_factory=dict)  # region -> coordinator
    groups: tuple[tuple[str, frozenset[str]], ...] = ()  # (coordinator, parties)
    reminder_days: int = REMINDER_DAYS
    escalation_days: int = ESCALATION_DAYS
    escalation_contact: str = ""
    match_notices: frozenset[str] = frozenset()
    linkage_profile: str = ""

    @property
    def assignment(self) -> str:
        """How a household's coordinator is chosen: "single", "region" or "group"."""
        return "region" if self.by_region else "group" if self.groups else "single"

    @property
    def coordinators(self) -> tuple[str, ...]:
        """Every coordinator of the covenant, sorted."""
        found = {self.coordinator_id} | set(self.by_region.values()) | {
            c for c, _ in self.groups}
        return tuple(sorted(found - {""}))

    def regions_of(self, coordinator_id: str) -> tuple[str, ...]:
        """The regions whose households a coordinator may receive."""
        if self.by_region:
            return tuple(sorted(r for r, c in self.by_region.items() if c == coordinator_id))
        return tuple(sorted(self.regions)) if coordinator_id in self.coordinators else ()

    def coordinator_for(self, region: str, organisation_id: str) -> str:
        """The coordinator of a household, from the region of its most recent signal and
        the organisation that signalled it first ("" when none is assigned)."""
        if self.by_region:
            return self.by_region.get(region, "")
        for coordinator, parties in self.groups:
            if organisation_id in parties:
                return coordinator
        return self.coordinator_id

    def notices_for(self, category: str) -> bool:
        """Whether a professional who signalled this category gets match notices."""
        return category in self.match_notices

    def article_for(self, category: str) -> str:
        """The covenant article a disclosure of this category rests on ("" for none)."""
        return self.articles.get(category, self.article)

    @property
    def source_sha256(self) -> bytes:
        return hashlib.sha256(self.source.encode()).digest()

    @property
    def covered_categories(self) -> frozenset[str]:
        """Categories for which the covenant itself is a basis."""
        return frozenset(c for c, basis in self.categories.items() if basis == "covenant")

    def in_force(self, at: datetime) -> bool:
        return self.valid_from <= at < self.valid_until

    @property
    def ref(self) -> str:
        return f"covenant:{self.id}@v{self.version}"


def _line_of(source: str, key: str, section: str | None = None) -> int | None:
    start = 0
    if section is not None:
        header = re.search(rf"^\s*\[{re.escape(section)}\]", source, re.MULTILINE)
        start = header.end() if header else 0
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=", re.MULTILINE)
    found = pattern.search(source, start)
    return source.count("\n", 0, found.start()) + 1 if found else None


def _fail(source: str, key: str | None, reason: str,
          section: str | None = None) -> CovenantError:
    line = _line_of(source, key, section) if key else None
    where = f"line {line}: " if line else ""
    return CovenantError(f"invalid covenant: {where}{reason}")


def _moment(value: Any, key: str, source: str, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise _fail(source, key, f"{key} needs a UTC offset, or give a date")
        if not 2000 <= value.year <= 2200:
            raise _fail(source, key, f"{key} must be a year between 2000 and 2200")
        return value.astimezone(UTC)
    if isinstance(value, date):
        if not 2000 <= value.year <= 2200:
            raise _fail(source, key, f"{key} must be a year between 2000 and 2200")
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start + timedelta(days=1) if end else start
    raise _fail(source, key, f"{key} must be a date like 2026-01-01")


def _str_list(data: dict[str, Any], key: str, source: str, check: Any) -> frozenset[str]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise _fail(source, key, f"{key} must be a non-empty list of strings")
    items = []
    for item in value:
        if not isinstance(item, str):
            raise _fail(source, key, f"{key} must be a non-empty list of strings")
        try:
            items.append(check(item, key))
        except InvalidInput as exc:
            raise _fail(source, key, f"{key}: '{item}': {exc}") from None
    if len(set(items)) != len(items):
        raise _fail(source, key, f"{key} lists an entry twice")
    return frozenset(items)


def parse_covenant(source: str) -> Covenant:
    """Parse and validate a covenant file's text."""
    if not isinstance(source, str) or not source.strip():
        raise CovenantError("invalid covenant: the file is empty")
    if len(source) > _MAX_SOURCE:
        raise CovenantError(f"invalid covenant: larger than {_MAX_SOURCE} characters")
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise CovenantError(f"invalid covenant: {exc}") from None
    for key in data:
        if key not in _KEYS:
            raise _fail(source, key, f"unknown key '{key}'")
    for key in ("id", "name", "legal_basis"):
        if not isinstance(data.get(key), str):
            raise _fail(source, key if key in data else None, f"{key} is required (a string)")
    checks: dict[str, Callable[[str], str]] = {
        "id": lambda v: vocab.slug(v, "id"),
        "name": lambda v: vocab.text(v, "name", max_len=200),
        "legal_basis": lambda v: vocab.text(v, "legal_basis", max_len=1000),
    }
    for key, check in checks.items():
        try:
            check(data[key])
        except InvalidInput as exc:
            raise _fail(source, key, str(exc)) from None
    for key in ("valid_from", "valid_until"):
        if key not in data:
            raise _fail(source, None, f"{key} is required")
    valid_from = _moment(data["valid_from"], "valid_from", source, end=False)
    valid_until = _moment(data["valid_until"], "valid_until", source, end=True)
    if valid_until <= valid_from:
        raise _fail(source, "valid_until", "valid_until must be after valid_from")
    parties = _str_list(data, "parties", source, vocab.slug)
    if len(parties) < 2:
        raise _fail(source, "parties", "a covenant needs at least two parties")
    purposes = _str_list(data, "purposes", source, vocab.code)
    regions = _str_list(data, "regions", source, vocab.region)
    table = data.get("categories")
    if not isinstance(table, dict) or not table:
        raise _fail(source, None, "a [categories] table with at least one category is required")
    categories: dict[str, str] = {}
    for cat, basis in table.items():
        if cat not in vocab.CATEGORIES:
            raise _fail(source, cat, f"unknown category '{cat}'")
        if basis not in _BASES:
            raise _fail(source, cat, f"category '{cat}' must be \"covenant\" or \"consent\"")
        categories[cat] = basis
    article, articles = _articles(data, source, categories)
    coordinator, by_region, groups = _assignment(data, source, parties, regions)
    reminder, escalation, contact = _escalation(data, source)
    notices, profile = _notices_and_profile(data, source, categories)
    return Covenant(
        id=data["id"], name=data["name"], legal_basis=data["legal_basis"],
        valid_from=valid_from, valid_until=valid_until,
        coordinator_id=coordinator, parties=parties,
        purposes=purposes, regions=regions, categories=categories, source=source,
        article=article, articles=articles, by_region=by_region, groups=groups,
        reminder_days=reminder, escalation_days=escalation, escalation_contact=contact,
        match_notices=notices, linkage_profile=profile,
    )


def _notices_and_profile(data: dict[str, Any], source: str,
                         categories: dict[str, str]) -> tuple[frozenset[str], str]:
    notices: frozenset[str] = frozenset()
    if "match_notices" in data:
        def listed(category: str, _key: str) -> str:
            if category not in categories:
                raise InvalidInput("not a category of this covenant")
            return category
        notices = _str_list(data, "match_notices", source, listed)
    profile = ""
    if "linkage_profile" in data:
        if not isinstance(data["linkage_profile"], str):
            raise _fail(source, "linkage_profile", "linkage_profile must be a string")
        try:
            profile = vocab.slug(data["linkage_profile"], "linkage_profile")
        except InvalidInput as exc:
            raise _fail(source, "linkage_profile", str(exc)) from None
    return notices, profile


def _coordinator_id(value: Any, key: str, source: str, section: str | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(source, key, f"{key} must be a coordinator id (a string)", section)
    try:
        return vocab.slug(value, key)
    except InvalidInput as exc:
        raise _fail(source, key, str(exc), section) from None


def _assignment(data: dict[str, Any], source: str, parties: frozenset[str],
                regions: frozenset[str]) -> tuple[str, dict[str, str],
                                                  tuple[tuple[str, frozenset[str]], ...]]:
    """Who coordinates: one ``coordinator``, ``[coordinators]`` by region, or ``[[groups]]``."""
    given = [k for k in ("coordinator", "coordinators", "groups") if k in data]
    if len(given) != 1:
        raise _fail(source, given[1] if len(given) > 1 else None,
                    "coordinator is required: give exactly one of coordinator, "
                    "[coordinators] (by region) or [[groups]] (by partner group)")
    if "coordinator" in data:
        return _coordinator_id(data["coordinator"], "coordinator", source), {}, ()
    if "coordinators" in data:
        table = data["coordinators"]
        if not isinstance(table, dict):
            raise _fail(source, "coordinators", "[coordinators] must be a table of "
                        "region = coordinator")
        by_region = {}
        for region, coordinator in table.items():
            if region not in regions:
                raise _fail(source, region, f"[coordinators] names region '{region}', which "
                            "is not in regions", "coordinators")
            by_region[region] = _coordinator_id(coordinator, region, source, "coordinators")
        missing = sorted(regions - set(by_region))
        if missing:
            raise _fail(source, None, f"[coordinators] has no coordinator for region "
                        f"'{missing[0]}'")
        return "", by_region, ()
    items = data["groups"]
    if not isinstance(items, list) or not items or not all(isinstance(g, dict) for g in items):
        raise _fail(source, None, "[[groups]] must be tables with coordinator and parties")
    groups = []
    seen: set[str] = set()
    for group in items:
        unknown = sorted(set(group) - {"coordinator", "parties"})
        if unknown:
            raise _fail(source, unknown[0], f"unknown key '{unknown[0]}' in [[groups]]")
        if "coordinator" not in group:
            raise _fail(source, None, "every [[groups]] table needs a coordinator")
        coordinator = _coordinator_id(group["coordinator"], "coordinator", source)
        members = _str_list(group, "parties", source, vocab.slug)
        outside = sorted(members - parties)
        if outside:
            raise _fail(source, None, f"[[groups]] names '{outside[0]}', which is not a party")
        twice = sorted(members & seen)
        if twice:
            raise _fail(source, None, f"[[groups]]: party '{twice[0]}' is in two groups")
        seen |= members
        groups.append((coordinator, members))
    missing = sorted(parties - seen)
    if missing:
        raise _fail(source, None, f"[[groups]]: party '{missing[0]}' is in no group")
    return "", {}, tuple(groups)


def _escalation(data: dict[str, Any], source: str) -> tuple[int, int, str]:
    table = data.get("escalation", {})
    if not isinstance(table, dict):
        raise _fail(source, "escalation", "[escalation] must be a table")
    for key in table:
        if key not in _ESCALATION_KEYS:
            raise _fail(source, key, f"unknown key '{key}' in [escalation]", "escalation")
    days = []
    for key, default in (("reminder_days", REMINDER_DAYS), ("escalation_days", ESCALATION_DAYS)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 365:
            raise _fail(source, key, f"{key} must be a whole number of days from 1 to 365",
                        "escalation")
        days.append(value)
    if days[1] <= days[0]:
        raise _fail(source, "escalation_days", "escalation_days must be after reminder_days",
                    "escalation")
    contact = ""
    if "contact" in table:
        contact = _coordinator_id(table["contact"], "contact", source, "escalation")
    return days[0], days[1], contact


def _article(value: Any, key: str, source: str, section: str | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(source, key, f"{key} must be a string, like \"art. 5\"", section)
    try:
        return vocab.text(value, key, max_len=100)
    except InvalidInput as exc:
        raise _fail(source, key, str(exc), section) from None


def _articles(data: dict[str, Any], source: str,
              categories: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The optional article on disclosure, and per-category articles."""
    article = _article(data["article"], "article", source) if "article" in data else ""
    table = data.get("articles", {})
    if not isinstance(table, dict):
        raise _fail(source, "articles", "[articles] must be a table of category = article")
    articles = {}
    for cat, value in table.items():
        if categories.get(cat) != "covenant":
            raise _fail(source, cat, f"[articles] names '{cat}', which is not a \"covenant\" "
                        "category", "articles")
        articles[cat] = _article(value, cat, source, "articles")
    return article, articles
