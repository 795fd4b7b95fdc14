"""``samenloop synth``: synthetic Dutch households and partner exports with a truth file.

For measuring record linkage. :func:`generate` builds a population of households (single
adults, couples, couples with 1-4 children, single parents, elderly couples and singles,
multigenerational households) at Dutch addresses, lets K partner organisations (2-6) each
know a subset of the households and of their members, and writes one record per known
person per partner in that partner's own columns and formats, corrupted as real exports
are. :func:`write` puts the files in a directory. Everything comes from one
``random.Random(seed)``: the same spec gives byte-identical files, on any machine.

Partners (the first K of these), each with its own file layout:

* partner1.csv, youth care (``youth_care``): minors and their parents. CSV with ``;``,
  Dutch headers (dossiernummer, voornamen, tussenvoegsel, achternaam, ...), DD-MM-YYYY,
  sex M/V/X, house number and addition in two columns. BSN: "low" missing rate.
* partner2.csv, housing corporation (``housing``): the main tenants, not in institutions.
  CSV with ``,``, English headers, ISO dates, the name in one column as "van der Berg, Jan
  Pieter", the addition with the number ("12-2"), "Den Haag" for 's-Gravenhage. BSN:
  "high"; at ``hard`` and ``hardest`` no BSN column at all.
* partner3.jsonl, debt counselling (``debt``): a debtor, sometimes the partner too. JSON
  Lines with nested objects (client.name.last_name, address.postcode, ...), ISO dates,
  the house number as a JSON number. BSN: "low".
* partner4.csv, social team (``social_support``): the adults, half of the children. CSV
  with tabs, headers with spaces, "Jan Pieter van der Berg" in one column plus an initials
  column, DD/MM/YYYY, BSNs written 1234.56.789. BSN: "high".
* partner5.csv, school (``education``): pupils of 4-17. CSV with ``;``, YYYYMMDD, initials
  and given names. BSN: "low".
* partner6.jsonl, mental health (``mental_health``): one adult or adolescent (sometimes
  two people). Flat JSON Lines, "Jan van der Berg" in one field, DD-MM-YYYY, sex as ISO
  5218 codes (1, 2, 9, 0). BSN: "high".

partner1, partner3 and partner4 also list the BSNs of the household members they know
about (``related_bsns``: ``;``-separated in CSV, an array in JSON; each is left out at the
partner's missing-BSN rate). Next to each file, ``partnerN.mapping.toml`` names the
linkage profile ("nl-household"), the source format (format, delimiter, encoding,
date_format, list_separator, full_name_order), the partner's column for each profile
field (a dotted path for nested JSON) and the partner's sex codes. Ages and signal dates
count from ``SynthSpec.reference_date`` (fixed by default, so that runs repeat); signals
are observed in the year before it.

Corruption rates per level. Each is the chance per record (or, where the table says so,
per eligible record or household), drawn independently from the seeded generator:

.. code-block:: text

    corruption                                                easy  medium   hard  hardest
    typo in a given name or the surname (records)               2%      5%    10%      18%
      ... of those, a second typo                               5%     10%    20%      25%
    given names and surname swapped                           0.1%    0.5%     1%       2%
    particle written differently (records with a particle)      5%     15%    30%      40%
    initials instead of the given names                         1%      3%     6%      10%
    only the first given name (persons with 2+)                 5%     15%    25%      35%
    diacritics folded or decomposed (names with them)          10%     25%    45%      60%
    case or whitespace noise in a name                          2%      5%    10%      15%
    partner's surname used (persons living with a partner)    0.5%      1%     2%       3%
    BSN missing at a "low" partner                              1%      3%     8%      12%
    BSN missing at a "high" partner                             2%     10%    25%      40%
    housing corporation without a BSN column                    no      no    yes      yes
    date of birth missing                                     0.5%      1%     3%       5%
    date of birth wrong (day/month swap or a digit)           0.2%    0.5%   1.5%       3%
    sex missing                                                 1%      2%     4%       6%
    sex recorded as X (when it is M or F)                       0%    0.2%   0.5%       1%
    postcode spelled differently                                5%     15%    30%      40%
    house-number addition spelled differently (with one)       10%     25%    45%      60%
    house-number addition left out (with one)                   0%      1%     3%       5%
    address missing (records that keep their BSN)               1%      2%     4%       5%
    household moved (households known to 2+ partners)           1%      3%     6%      10%
    a second record of the person at the same partner           0%    0.5%     1%       2%
    household living at an institution (households)           0.5%      1%     2%       3%

What the corruptions look like:

* typos: insertion or substitution of a neighbouring key (QWERTY), deletion, transposition;
* particles: "van der" in the surname column, "Van der"/"VAN DER", "vd"/"v.d."/"V.d.",
  "Berg, van der", "Vanderberg"/"VanderBerg", dropped ("Berg"), "van der berg";
* initials: "J.P.", "J. P." or "JP"; diacritics: "Zoë" as "Zoe", or in decomposed
  (NFD) form; case and whitespace: "JANSEN", "jansen", doubled or padding spaces;
* partner's surname: the partner's name, or a double name ("de Vries-Jansen");
* postcodes: "1234AB", "1234 AB", "1234ab", "1234 ab", "1234  AB";
* house numbers: "12-2", "12 2", "12 II", "12/2", "12bis", "12 bis", "12A", "12 a",
  "12-A"; in an addition column "-2", "II", "a", "BIS";
* a moved household has a newer address at some of its partners (never all); the truth
  links its records by person, never by address;
* a BSN is either right or missing, never wrong (partners validate it);
* a record always keeps a BSN or an address (an agent refuses a signal with neither).

Institutions (shelters, care homes, women's shelters, supported living) are addresses
shared by unrelated households; ``institutions.csv`` lists them so that linkage can
exclude them, as the Verwijsindex does.

The truth (``truth.csv``): one row per record with the partner, its case_ref and the
record's person_id and household_id. A *person link* is any two records (at different
partners or at the same one) with the same person_id; a *household link* is any two
records with the same household_id.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import textwrap
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, Generic, TypeVar

from agent import _synth_names as names
from exchange.errors import InvalidInput

T = TypeVar("T")
PROFILE = "nl-household"
DEFAULT_REFERENCE_DATE = date(2026, 12, 1)
MAX_HOUSEHOLDS = 1_000_000

# The canonical profile fields a mapping may name, in this order.
PROFILE_FIELDS = (
    "case_ref", "bsn", "given_names", "surname_prefix", "surname", "full_name", "initials",
    "date_of_birth", "sex", "postcode", "house_number", "house_addition", "street", "city",
    "category", "region", "professional_name", "professional_phone", "professional_email",
    "observed_on", "related_bsns",
)


# -- levels ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """The corruption rates of one level (see the module docstring)."""

    name: str
    typo: float
    typo_second: float
    swap_names: float
    particle_variant: float
    initials: float
    first_name_only: float
    diacritics: float
    case_noise: float
    married_name: float
    bsn_missing_low: float
    bsn_missing_high: float
    bsn_free_partner: bool
    dob_missing: float
    dob_error: float
    sex_missing: float
    sex_x: float
    postcode_variant: float
    addition_variant: float
    addition_dropped: float
    address_missing: float
    moved: float
    duplicate: float
    institution: float


LEVELS: dict[str, Level] = {
    "easy": Level("easy", 0.02, 0.05, 0.001, 0.05, 0.01, 0.05, 0.10, 0.02, 0.005, 0.01, 0.02,
                  False, 0.005, 0.002, 0.01, 0.0, 0.05, 0.10, 0.0, 0.01, 0.01, 0.0, 0.005),
    "medium": Level("medium", 0.05, 0.10, 0.005, 0.15, 0.03, 0.15, 0.25, 0.05, 0.01, 0.03,
                    0.10, False, 0.01, 0.005, 0.02, 0.002, 0.15, 0.25, 0.01, 0.02, 0.03,
                    0.005, 0.01),
    "hard": Level("hard", 0.10, 0.20, 0.01, 0.30, 0.06, 0.25, 0.45, 0.10, 0.02, 0.08, 0.25,
                  True, 0.03, 0.015, 0.04, 0.005, 0.30, 0.45, 0.03, 0.04, 0.06, 0.01, 0.02),
    "hardest": Level("hardest", 0.18, 0.25, 0.02, 0.40, 0.10, 0.35, 0.60, 0.15, 0.03, 0.12,
                     0.40, True, 0.05, 0.03, 0.06, 0.01, 0.40, 0.60, 0.05, 0.05, 0.10, 0.02,
                     0.03),
}

_RATE_ROWS: tuple[tuple[str, str], ...] = (
    ("typo", "typo in a given name or the surname (records)"),
    ("typo_second", "  ... of those, a second typo"),
    ("swap_names", "given names and surname swapped"),
    ("particle_variant", "particle written differently (records with a particle)"),
    ("initials", "initials instead of the given names"),
    ("first_name_only", "only the first given name (persons with 2+)"),
    ("diacritics", "diacritics folded or decomposed (names with them)"),
    ("case_noise", "case or whitespace noise in a name"),
    ("married_name", "partner's surname used (persons living with a partner)"),
    ("bsn_missing_low", 'BSN missing at a "low" partner'),
    ("bsn_missing_high", 'BSN missing at a "high" partner'),
    ("bsn_free_partner", "housing corporation without a BSN column"),
    ("dob_missing", "date of birth missing"),
    ("dob_error", "date of birth wrong (day/month swap or a digit)"),
    ("sex_missing", "sex missing"),
    ("sex_x", "sex recorded as X (when it is M or F)"),
    ("postcode_variant", "postcode spelled differently"),
    ("addition_variant", "house-number addition spelled differently (with one)"),
    ("addition_dropped", "house-number addition left out (with one)"),
    ("address_missing", "address missing (records that keep their BSN)"),
    ("moved", "household moved (households known to 2+ partners)"),
    ("duplicate", "a second record of the person at the same partner"),
    ("institution", "household living at an institution (households)"),
)


def _cell(value: float | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value * 100:g}%"


def rates_table() -> str:
    """The corruption rates of every level, as a fixed-width text table."""
    order = ("easy", "medium", "hard", "hardest")
    lines = [f"{'corruption':<56} {'easy':>5} {'medium':>7} {'hard':>6} {'hardest':>8}"]
    for attr, label in _RATE_ROWS:
        cells = [_cell(getattr(LEVELS[name], attr)) for name in order]
        lines.append(f"{label:<56} {cells[0]:>5} {cells[1]:>7} {cells[2]:>6} {cells[3]:>8}")
    return "\n".join(lines)


# -- partners ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PartnerProfile:
    """How one kind of partner organisation writes its export."""

    key: str
    organisation: str
    category: str
    file_format: str  # csv | jsonl
    delimiter: str
    date_format: str
    name_style: str  # split | sorted ("Surname, Given") | display ("Given prefix Surname")
    house_style: str  # split (number + addition columns) | combined ("12-2")
    postcode_space: bool
    city_alias: bool  # writes "Den Haag" for 's-Gravenhage
    sex_codes: tuple[tuple[str, str], ...]  # canonical (M, F, X, "") -> the partner's code
    bsn_rate: str  # low | high
    bsn_dotted: bool  # writes a BSN as 1234.56.789
    case_ref_format: str  # str.format with year and n
    domain: str
    columns: tuple[tuple[str, str], ...]  # profile field -> column (or dotted JSON path)
    knows: str  # description of whom the partner knows

    @property
    def extension(self) -> str:
        return "jsonl" if self.file_format == "jsonl" else "csv"


PARTNERS: tuple[PartnerProfile, ...] = (
    PartnerProfile(
        "youth_care", "Jeugdzorg Regio (youth care)", "youth_care", "csv", ";", "%d-%m-%Y",
        "split", "split", True, False, (("M", "M"), ("F", "V"), ("X", "X"), ("", "")),
        "low", False, "JZ-{year}-{n:05d}", "jeugdzorg-regio.example",
        (("case_ref", "dossiernummer"), ("bsn", "bsn"), ("given_names", "voornamen"),
         ("surname_prefix", "tussenvoegsel"), ("surname", "achternaam"),
         ("date_of_birth", "geboortedatum"), ("sex", "geslacht"), ("postcode", "postcode"),
         ("house_number", "huisnummer"), ("house_addition", "toevoeging"),
         ("street", "straat"), ("city", "woonplaats"), ("category", "categorie"),
         ("region", "gemeentecode"), ("professional_name", "jeugdprofessional"),
         ("professional_phone", "telefoon"), ("professional_email", "email"),
         ("observed_on", "signaaldatum"), ("related_bsns", "bsn_gezinsleden")),
        "minors and their parents"),
    PartnerProfile(
        "housing", "Woonstad (housing corporation)", "housing", "csv", ",", "%Y-%m-%d",
        "sorted", "combined", False, True,
        (("M", "male"), ("F", "female"), ("X", "other"), ("", "")),
        "high", False, "HUUR{n:07d}", "woonstad.example",
        (("case_ref", "tenancy_ref"), ("bsn", "citizen_service_number"),
         ("full_name", "tenant_name"), ("date_of_birth", "date_of_birth"),
         ("sex", "gender"), ("street", "street"), ("house_number", "house_no"),
         ("postcode", "zip_code"), ("city", "town"), ("category", "category"),
         ("region", "municipality_code"), ("professional_name", "housing_officer"),
         ("professional_phone", "officer_phone"), ("professional_email", "officer_email"),
         ("observed_on", "reported_on")),
        "the main tenants (not in institutions)"),
    PartnerProfile(
        "debt", "Schuldhulp (debt counselling)", "debt", "jsonl", "", "%Y-%m-%d",
        "split", "split", False, False, (("M", "M"), ("F", "F"), ("X", "X"), ("", "")),
        "low", False, "SH/{year}/{n:05d}", "schuldhulp.example",
        (("case_ref", "dossier"), ("bsn", "client.bsn"),
         ("given_names", "client.name.first_names"), ("surname_prefix", "client.name.prefix"),
         ("surname", "client.name.last_name"), ("date_of_birth", "client.born"),
         ("sex", "client.sex"), ("street", "address.street"),
         ("house_number", "address.number"), ("house_addition", "address.addition"),
         ("postcode", "address.postcode"), ("city", "address.city"),
         ("category", "signal.category"), ("region", "signal.region"),
         ("observed_on", "signal.date"), ("professional_name", "counsellor.name"),
         ("professional_phone", "counsellor.phone"),
         ("professional_email", "counsellor.email"), ("related_bsns", "household.bsns")),
        "a debtor, sometimes the partner too"),
    PartnerProfile(
        "social_support", "Sociaal Team (social support)", "social_support", "csv", "\t",
        "%d/%m/%Y", "display", "combined", True, False,
        (("M", "man"), ("F", "vrouw"), ("X", "anders"), ("", "")),
        "high", True, "ST{n:06d}", "sociaalteam.example",
        (("case_ref", "Registratienummer"), ("bsn", "BSN"), ("full_name", "Naam"),
         ("initials", "Voorletters"), ("date_of_birth", "Geboortedatum"),
         ("sex", "Geslacht"), ("street", "Straat"), ("house_number", "Huisnummer"),
         ("postcode", "Postcode"), ("city", "Plaats"), ("category", "Leefgebied"),
         ("region", "Gemeente"), ("professional_name", "Consulent"),
         ("professional_phone", "Telefoon consulent"),
         ("professional_email", "E-mail consulent"), ("observed_on", "Datum melding"),
         ("related_bsns", "BSN gezinsleden")),
        "the adults, half of the children"),
    PartnerProfile(
        "education", "Samenwerkingsverband Onderwijs (school)", "education", "csv", ";",
        "%Y%m%d", "split", "split", False, False,
        (("M", "m"), ("F", "v"), ("X", "x"), ("", "")),
        "low", False, "LL-{n:06d}", "swv-onderwijs.example",
        (("case_ref", "leerlingdossier"), ("bsn", "bsn_leerling"),
         ("initials", "voorletters"), ("given_names", "voornamen"),
         ("surname_prefix", "voorvoegsel"), ("surname", "geslachtsnaam"),
         ("date_of_birth", "geb_datum"), ("sex", "geslacht"), ("street", "straatnaam"),
         ("house_number", "huisnr"), ("house_addition", "huisnr_toev"), ("postcode", "pc"),
         ("city", "plaats"), ("category", "soort_signaal"), ("region", "cbs_gemeente"),
         ("professional_name", "zorgcoordinator"), ("professional_phone", "tel"),
         ("professional_email", "mail"), ("observed_on", "datum")),
        "pupils (4-17)"),
    PartnerProfile(
        "mental_health", "GGZ Regio (mental health)", "mental_health", "jsonl", "",
        "%d-%m-%Y", "display", "combined", True, True,
        (("M", "1"), ("F", "2"), ("X", "9"), ("", "0")),
        "high", False, "GGZ.{n:07d}", "ggz-regio.example",
        (("case_ref", "ref"), ("bsn", "bsn"), ("full_name", "naam"),
         ("date_of_birth", "geboortedatum"), ("sex", "geslacht_code"),
         ("street", "straat"), ("house_number", "huisnummer"), ("postcode", "postcode"),
         ("city", "woonplaats"), ("category", "zorgdomein"), ("region", "regio"),
         ("professional_name", "behandelaar"), ("professional_phone", "behandelaar_tel"),
         ("professional_email", "behandelaar_email"), ("observed_on", "aanmelddatum")),
        "one adult or adolescent (sometimes two people)"),
)


# -- the data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. The same spec always gives the same data."""

    households: int = 2000
    partners: int = 3
    level: str = "medium"
    seed: int = 1
    reference_date: date = DEFAULT_REFERENCE_DATE  # "today" for ages and signal dates

    def validate(self) -> Level:
        if not 1 <= self.households <= MAX_HOUSEHOLDS:
            raise InvalidInput(f"households must be between 1 and {MAX_HOUSEHOLDS}")
        if not 2 <= self.partners <= len(PARTNERS):
            raise InvalidInput(f"partners must be between 2 and {len(PARTNERS)}")
        if self.level not in LEVELS:
            raise InvalidInput(f"level must be one of: {', '.join(LEVELS)}")
        if not date(1990, 1, 1) <= self.reference_date <= date(2200, 1, 1):
            raise InvalidInput("the reference date must lie between 1990 and 2200")
        return LEVELS[self.level]


@dataclass(frozen=True)
class Address:
    postcode: str  # "1234AB"
    number: int
    addition: str  # "", "A".."D", "1".."4", "bis" or "hs"
    street: str
    city: str
    region: str
    institution: str = ""  # the institution's name, for an institutional address

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.postcode, self.number, self.addition)


@dataclass(frozen=True)
class Person:
    person_id: str
    household_id: str
    role: str  # adult | parent | child | grandparent | elderly
    bsn: str
    given_names: tuple[str, ...]
    surname_prefix: str
    surname: str
    date_of_birth: date
    sex: str  # M | F | X


@dataclass
class Household:
    household_id: str
    kind: str
    origin: str
    address: Address
    members: list[Person] = field(default_factory=list)
    new_address: Address | None = None  # a moved household's newer address
    moved_partners: tuple[str, ...] = ()  # the partners that know the newer address
    partners: tuple[str, ...] = ()  # the partners that know the household


@dataclass(frozen=True)
class Record:
    """One row of a partner's file, with what the truth knows about it."""

    partner: str  # partner1..partner6
    case_ref: str
    person_id: str
    household_id: str
    held_address: Address  # the address this partner holds (before it may go missing)
    corruptions: tuple[str, ...]
    row: dict[str, Any]  # as written: flat for CSV, nested for JSON Lines


@dataclass(frozen=True)
class PartnerFile:
    partner: str
    profile: PartnerProfile
    columns: tuple[tuple[str, str], ...]  # the profile's columns this file has
    records: tuple[Record, ...]

    @property
    def filename(self) -> str:
        return f"{self.partner}.{self.profile.extension}"


@dataclass(frozen=True)
class SynthData:
    spec: SynthSpec
    level: Level
    households: tuple[Household, ...]
    institutions: tuple[Address, ...]
    partners: tuple[PartnerFile, ...]

    @property
    def persons(self) -> list[Person]:
        return [p for hh in self.households for p in hh.members]

    def records(self) -> list[Record]:
        return [r for pf in self.partners for r in pf.records]

    def links(self) -> tuple[int, int]:
        """(person links, household links): pairs of records of one person / household."""
        people = Counter(r.person_id for r in self.records())
        homes = Counter(r.household_id for r in self.records())
        return (sum(n * (n - 1) // 2 for n in people.values()),
                sum(n * (n - 1) // 2 for n in homes.values()))


@dataclass
class _Draft:
    """A record before its case_ref: canonical values, already corrupted, and the tags."""

    person: Person
    household: Household
    held: Address
    values: dict[str, Any]
    tags: list[str]


# -- small helpers -----------------------------------------------------------------------

_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    near: dict[str, str] = {}
    for r, row in enumerate(_KEY_ROWS):
        for i, ch in enumerate(row):
            found = [row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)]
            for other, offsets in ((r - 1, (0, 1)), (r + 1, (-1, 0))):
                if 0 <= other < len(_KEY_ROWS):
                    found += [_KEY_ROWS[other][i + o] for o in offsets
                              if 0 <= i + o < len(_KEY_ROWS[other])]
            near[ch] = "".join(found)
    return near


_NEIGHBOURS = _keyboard_neighbours()
_FOLD = str.maketrans({"ı": "i", "İ": "I", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O",  # noqa: RUF001
                       "ß": "ss", "æ": "ae", "Æ": "AE"})
_POSTCODE_LETTERS = "ABCDEGHJKLMNPRSTVWXZ"
_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV"}
_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "van der": ("vd", "v.d.", "V.d.", "v/d"), "van den": ("vd", "v.d.", "v/d"),
    "van de": ("vd", "v.d."), "van": ("v.", "v"), "van 't": ("v. 't", "v't"),
    "op den": ("o.d.",),
}


class _Weights(Generic[T]):
    """A weighted choice with its cumulative weights computed once."""

    def __init__(self, options: Sequence[tuple[T, float]]) -> None:
        self.values = [value for value, _ in options]
        self.cumulative = list(accumulate(weight for _, weight in options))

    def pick(self, rng: random.Random) -> T:
        return self.values[bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


_PARTICLE_KINDS = (("in_surname", 30), ("capital", 20), ("abbrev", 15), ("after", 10),
                   ("merged", 8), ("dropped", 12), ("lower", 5))
_PARTICLES_BY_STYLE = {
    style: _Weights([(k, w) for k, w in _PARTICLE_KINDS
                     if not (style != "split" and k == "in_surname")
                     and not (style == "display" and k == "after")])
    for style in ("split", "sorted", "display")
}
_KINDS = _Weights((("single", 22), ("couple", 13), ("couple_children", 30),
                   ("single_parent", 18), ("elderly_couple", 7), ("elderly_single", 5),
                   ("multigenerational", 5)))
_INSTITUTION_KINDS = _Weights((("single", 50), ("single_parent", 25), ("elderly_single", 15),
                               ("elderly_couple", 10)))
_PARTNER_COUNTS = _Weights(((1, 30), (2, 35), (3, 20), (4, 10), (5, 3), (6, 2)))
_ORIGINS = _Weights([(o[0], o[4]) for o in names.ORIGINS])
_GIVEN_COUNT_NL = _Weights(((1, 45), (2, 38), (3, 17)))
_GIVEN_COUNT_OTHER = _Weights(((1, 80), (2, 20)))
_CHILDREN = _Weights(((1, 35), (2, 40), (3, 18), (4, 7)))
_COUPLE_SEXES = _Weights(((("M", "F"), 47), (("F", "M"), 47), (("M", "M"), 3),
                          (("F", "F"), 3)))


def ascii_fold(text: str) -> str:
    """Diacritics removed: 'Zoë' -> 'Zoe', 'Çelik' -> 'Celik' (and a dotless i to i)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def bsn_valid(value: str) -> bool:
    """The elfproef: 9 digits, weights 9..2 and -1, sum divisible by 11."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    return sum(int(d) * w for d, w in zip(value, weights, strict=True)) % 11 == 0


def _join(prefix: str, surname: str) -> str:
    return f"{prefix} {surname}" if prefix else surname


def _split_surname(full: str) -> tuple[str, str]:
    for particle in names.PARTICLES:
        if full.startswith(particle + " "):
            return particle, full[len(particle) + 1:]
    return "", full


def _age(person: Person, today: date) -> int:
    years = today.year - person.date_of_birth.year
    if (today.month, today.day) < (person.date_of_birth.month, person.date_of_birth.day):
        years -= 1
    return years


def _typo(rng: random.Random, word: str) -> str:
    """One keyboard typo: insertion, deletion, substitution (neighbouring key) or
    transposition. Always returns a different, non-empty string."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if not letters:
        return word + "x"
    for _ in range(20):
        op = rng.choice(("insert", "delete", "substitute", "transpose"))
        i = rng.choice(letters)
        ch = word[i]
        if op == "delete":
            if len(letters) < 3:
                continue
            new = word[:i] + word[i + 1:]
        elif op == "transpose":
            if i + 1 >= len(word) or not word[i + 1].isalpha():
                continue
            a, b = word[i + 1], word[i]
            if i == 0 and b.isupper():
                a, b = a.upper(), b.lower()
            new = word[:i] + a + b + word[i + 2:]
        else:
            near = _NEIGHBOURS.get(ascii_fold(ch).lower(), "")
            if not near:
                continue
            key = rng.choice(near)
            key = key.upper() if ch.isupper() else key
            new = word[:i] + key + word[i + 1:] if op == "substitute" else (
                word[:i + 1] + key + word[i + 1:])
        if new != word:
            return new
    return word[:1] + word


def _dob_error(rng: random.Random, dob: date, today: date) -> tuple[date, str]:
    """A wrong date of birth: day and month swapped, or one digit off."""
    if dob.day <= 12 and dob.day != dob.month and rng.random() < 0.5:
        return date(dob.year, dob.day, dob.month), "swap"
    digits = dob.strftime("%Y%m%d")
    for _ in range(50):
        i = rng.randrange(2, 8)
        digit = str(rng.randrange(10))
        if digit == digits[i]:
            continue
        text = digits[:i] + digit + digits[i + 1:]
        try:
            new = date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            continue
        if date(1900, 1, 1) <= new <= today:
            return new, "digit"
    return (dob - timedelta(days=1)), "digit"


def _initials_text(rng: random.Random, given: Sequence[str]) -> str:
    letters = [g[0].upper() for g in given if g]
    style = rng.random()
    if style < 0.6:
        return "".join(f"{c}." for c in letters)
    if style < 0.8:
        return " ".join(f"{c}." for c in letters)
    return "".join(letters)


def _particle_variant(rng: random.Random, prefix: str, surname: str, style: str,
                      ) -> tuple[str, str, str, str]:
    """(kind, prefix, surname, position): the particle written another way."""
    kind = _PARTICLES_BY_STYLE[style].pick(rng)
    if kind == "abbrev" and prefix not in _ABBREVIATIONS:
        kind = "capital"
    if kind == "in_surname":
        return kind, "", f"{prefix} {surname}", "before"
    if kind == "capital":
        options = (prefix[0].upper() + prefix[1:], prefix.title(), prefix.upper())
        return kind, rng.choice(options), surname, "before"
    if kind == "abbrev":
        return kind, rng.choice(_ABBREVIATIONS[prefix]), surname, "before"
    if kind == "after":
        if style == "split":
            return kind, "", rng.choice((f"{surname}, {prefix}", f"{surname} {prefix}")), "before"
        return kind, prefix, surname, "after"
    if kind == "merged":
        letters = "".join(ch for ch in prefix if ch.isalpha())
        merged = rng.choice(((letters + surname.lower()).capitalize(),
                             letters.capitalize() + surname))
        return kind, "", merged, "before"
    if kind == "dropped":
        return kind, "", surname, "before"
    return kind, prefix, surname.lower(), "before"


def _case_noise(rng: random.Random, value: str) -> str:
    op = rng.choice(("upper", "lower", "spaces", "pad"))
    if op == "upper":
        return value.upper()
    if op == "lower":
        return value.lower()
    if op == "spaces" and " " in value:
        return value.replace(" ", "  ", 1)
    return f" {value} " if rng.random() < 0.5 else f"{value} "


def _name_fields(style: str, given: str, prefix: str, surname: str, *, after: bool,
                 swapped: bool) -> dict[str, str]:
    """The name in a partner's layout: split columns, "Surname, Given" or "Given Surname"."""
    family = _join(prefix, surname)
    if style == "split":
        first, last = (surname, given) if swapped else (given, surname)
        return {"given_names": first, "surname_prefix": prefix, "surname": last}
    if style == "sorted":
        if swapped:
            return {"full_name": f"{given}, {family}"}
        if after:
            return {"full_name": f"{surname}, {given} {prefix}"}
        return {"full_name": f"{family}, {given}"}
    return {"full_name": f"{family} {given}" if swapped else f"{given} {family}"}


def _postcode_text(code: str, space: bool) -> str:
    return f"{code[:4]} {code[4:]}" if space else code


# -- the generator -----------------------------------------------------------------------


class _Generator:
    def __init__(self, spec: SynthSpec, level: Level) -> None:
        self.spec = spec
        self.level = level
        self.today = spec.reference_date
        self.rng = random.Random(spec.seed)  # noqa: S311 - synthetic data, seeded on purpose
        self.bsns: set[str] = set()
        self.addresses: set[tuple[str, int, str]] = set()
        self.buildings: dict[str, list[Address]] = {}  # per region: flats to add to
        self.building_keys: set[tuple[str, int]] = set()
        self.streets: dict[str, str] = {}  # postcode -> its street
        self.persons = 0
        self.origins = {o[0]: o for o in names.ORIGINS}
        self.profiles = PARTNERS[:spec.partners]
        self.professionals: dict[str, list[tuple[str, str, str]]] = {}
        self.with_relations = {p.key for p in self.profiles
                               if any(f == "related_bsns" for f, _ in p.columns)}

    # population

    def bsn(self) -> str:
        rng = self.rng
        while True:
            head = str(rng.randrange(10_000_000, 80_000_000))
            check = sum(int(d) * w for d, w in zip(head, range(9, 1, -1), strict=True)) % 11
            if check == 10:
                continue
            value = head + str(check)
            if value not in self.bsns:
                self.bsns.add(value)
                return value

    def municipality(self) -> tuple[str, str, int, int, int]:
        result: tuple[str, str, int, int, int] = self.rng.choices(
            names.MUNICIPALITIES, weights=[m[4] for m in names.MUNICIPALITIES])[0]
        return result

    def address(self, municipality: tuple[str, str, int, int, int] | None = None,
                *, institution: str = "") -> Address:
        """A new address, unused so far. A postcode belongs to one street; flats (numeric
        additions) share a building with other households half of the time."""
        rng = self.rng
        muni = municipality or self.municipality()
        while True:
            r = rng.random()
            addition = ("" if r < 0.80 or institution else rng.choice("ABCD") if r < 0.90
                        else str(rng.randint(1, 4)) if r < 0.96 else "bis" if r < 0.98
                        else "hs")
            buildings = self.buildings.setdefault(muni[0], [])
            if addition.isdigit() and buildings and rng.random() < 0.5:
                building = rng.choice(buildings)
                candidate = Address(building.postcode, building.number, addition,
                                    building.street, building.city, building.region)
            else:
                while True:
                    letters = rng.choice(_POSTCODE_LETTERS) + rng.choice(_POSTCODE_LETTERS)
                    if letters not in ("SA", "SD", "SS"):
                        break
                postcode = f"{rng.randint(muni[2], muni[3])}{letters}"
                number = rng.randint(1, 60) if rng.random() < 0.7 else rng.randint(61, 300)
                street = self.streets.get(postcode) or rng.choice(names.STREETS)
                self.streets[postcode] = street
                candidate = Address(postcode, number, addition, street, muni[1], muni[0],
                                    institution)
            if candidate.key in self.addresses:
                continue
            self.addresses.add(candidate.key)
            if addition.isdigit() and (candidate.postcode, candidate.number) not in (
                    self.building_keys):
                self.building_keys.add((candidate.postcode, candidate.number))
                buildings.append(candidate)
            return candidate

    def surname(self, origin: str) -> tuple[str, str]:
        return _split_surname(self.rng.choice(self.origins[origin][3]))

    def person(self, hh: Household, role: str, sex: str, age: int, origin: str,
               surname: tuple[str, str] | None = None, dob: date | None = None) -> Person:
        rng = self.rng
        _, male, female, _, _ = self.origins[origin]
        pool = male if sex == "M" else female
        count = (_GIVEN_COUNT_NL if origin == "nl" else _GIVEN_COUNT_OTHER).pick(rng)
        given = tuple(rng.sample(pool, count))
        if rng.random() < 0.002:
            sex = "X"
        prefix, core = surname or self.surname(origin)
        if dob is None:
            dob = self.today - timedelta(days=int(age * 365.25) + rng.randint(0, 364))
        self.persons += 1
        person = Person(f"P{self.persons:07d}", hh.household_id, role, self.bsn(), given,
                        prefix, core, dob, sex)
        hh.members.append(person)
        return person

    def couple_sexes(self) -> tuple[str, str]:
        return _COUPLE_SEXES.pick(self.rng)

    def children(self, hh: Household, parents: list[Person], count: int, eldest: int,
                 origin: str) -> None:
        rng = self.rng
        fathers = [p for p in parents if p.sex == "M"]
        if len(parents) == 2 and len(fathers) == 1 and rng.random() < 0.8:
            name = (fathers[0].surname_prefix, fathers[0].surname)
        elif len(parents) == 2 or rng.random() < 0.75:
            other = next((p for p in parents if p not in fathers), parents[0])
            name = (other.surname_prefix, other.surname)
        else:
            name = self.surname(origin)  # a single parent's children with the other's name
        age = eldest
        previous: Person | None = None
        for _ in range(count):
            if age < 0:
                break
            twin = previous is not None and rng.random() < 0.015
            sex = rng.choice("MF")
            previous = self.person(hh, "child", sex, age, origin, name,
                                   dob=previous.date_of_birth if twin and previous else None)
            if not twin:
                age -= rng.randint(1, 4)

    def parents(self, hh: Household, count: int, eldest_child: int, origin: str
                ) -> list[Person]:
        rng = self.rng
        age = eldest_child + rng.randint(20, 40)
        if count == 1:
            sex = "F" if rng.random() < 0.85 else "M"
            return [self.person(hh, "parent", sex, age, origin)]
        sexes = self.couple_sexes()
        other_age = max(eldest_child + 18, age + rng.randint(-5, 5))
        other_origin = self.other_origin(origin)
        return [self.person(hh, "parent", sexes[0], age, origin),
                self.person(hh, "parent", sexes[1], other_age, other_origin)]

    def other_origin(self, origin: str) -> str:
        if self.rng.random() < 0.12:
            return _ORIGINS.pick(self.rng)
        return origin

    def household(self, index: int, institutions: dict[str, list[Address]]) -> Household:
        rng = self.rng
        institutional = rng.random() < self.level.institution
        kind = (_INSTITUTION_KINDS if institutional else _KINDS).pick(rng)
        origin = _ORIGINS.pick(rng)
        if institutional:
            place = {"single": rng.choice(("shelter", "supported_living")),
                     "single_parent": "womens_shelter"}.get(kind, "care_home")
            address = rng.choice(institutions[place])
        else:
            address = self.address()
        hh = Household(f"H{index:06d}", kind, origin, address)
        if kind == "single":
            self.person(hh, "adult", rng.choice("MF"), rng.randint(18, 64), origin)
        elif kind == "couple":
            age = rng.randint(20, 64)
            sexes = self.couple_sexes()
            self.person(hh, "adult", sexes[0], age, origin)
            self.person(hh, "adult", sexes[1], max(18, age + rng.randint(-6, 6)),
                        self.other_origin(origin))
        elif kind in ("couple_children", "single_parent"):
            count = _CHILDREN.pick(rng)
            eldest = rng.randint(0, 17) if rng.random() < 0.9 else rng.randint(18, 23)
            parents = self.parents(hh, 2 if kind == "couple_children" else 1, eldest, origin)
            self.children(hh, parents, count, eldest, origin)
        elif kind == "elderly_couple":
            age = rng.randint(66, 90)
            sexes = self.couple_sexes()
            self.person(hh, "elderly", sexes[0], age, origin)
            self.person(hh, "elderly", sexes[1], max(60, age + rng.randint(-5, 5)), origin)
        elif kind == "elderly_single":
            self.person(hh, "elderly", rng.choice("MF"), rng.randint(66, 94), origin)
        else:  # multigenerational: grandparent(s), parent(s), children
            count = rng.randint(1, 3)
            eldest = rng.randint(0, 17)
            parents = self.parents(hh, 2 if rng.random() < 0.6 else 1, eldest, origin)
            own = rng.choice(parents)  # the grandparents' child
            oldest = max(_age(p, self.today) for p in parents) + 17  # older than an in-law
            gp_age = max(oldest, _age(own, self.today) + rng.randint(20, 35))
            self.person(hh, "grandparent", rng.choice("MF"), gp_age, origin,
                        (own.surname_prefix, own.surname))
            if rng.random() < 0.5:
                self.person(hh, "grandparent", rng.choice("MF"),
                            max(oldest, gp_age + rng.randint(-4, 4)), origin)
            self.children(hh, parents, count, eldest, origin)
        return hh

    def institutions(self) -> dict[str, list[Address]]:
        count = max(len(names.INSTITUTION_KINDS),
                    round(self.spec.households * self.level.institution / 8))
        found: dict[str, list[Address]] = {kind: [] for kind, _ in names.INSTITUTION_KINDS}
        for i in range(count):
            kind, titles = names.INSTITUTION_KINDS[i % len(names.INSTITUTION_KINDS)]
            n = len(found[kind])
            title = titles[n % len(titles)] + (f" (locatie {n // len(titles) + 1})"
                                               if n >= len(titles) else "")
            found[kind].append(self.address(institution=title))
        return found

    # partners and records

    def professional_pool(self, profile: PartnerProfile) -> list[tuple[str, str, str]]:
        rng = self.rng
        pool = []
        for _ in range(12):
            origin = "nl" if rng.random() < 0.8 else rng.choice(("tr", "ma", "sr"))
            _, male, female, surnames, _ = self.origins[origin]
            given = rng.choice(male if rng.random() < 0.4 else female)
            prefix, core = _split_surname(rng.choice(surnames))
            local = ascii_fold(given[0] + "." + prefix + core).lower()
            local = "".join(ch for ch in local if ch.isalnum() or ch == ".")
            if rng.random() < 0.7:
                phone = (f"0{rng.randint(10, 79)} {rng.randint(100, 999)} "
                         f"{rng.randint(1000, 9999)}")
            else:
                phone = f"06-{rng.randint(10_000_000, 99_999_999)}"
            pool.append((f"{given} {_join(prefix, core)}", phone, f"{local}@{profile.domain}"))
        return pool

    def eligible(self, profile: PartnerProfile, hh: Household) -> bool:
        """Whether the household is of a kind the partner works with."""
        if profile.key == "housing":
            return not hh.address.institution
        if profile.key in ("youth_care", "education"):
            lowest = 4 if profile.key == "education" else 0
            return any(p.role == "child" and lowest <= _age(p, self.today) < 18
                       for p in hh.members)
        return True

    def known_persons(self, profile: PartnerProfile, hh: Household) -> list[Person]:
        """Whom the partner knows in an eligible household: at least one person."""
        rng = self.rng
        members = hh.members
        minors = [p for p in members if p.role == "child" and _age(p, self.today) < 18]
        adults = [p for p in members if _age(p, self.today) >= 18]
        heads = ([p for p in members if p.role == "parent"]
                 or [p for p in members if p.role in ("adult", "elderly")] or adults)

        def some(people: list[Person], chance: float) -> list[Person]:
            chosen = [p for p in people if rng.random() < chance]
            return chosen or [rng.choice(people)]

        if profile.key == "youth_care":
            parents = [p for p in members if p.role == "parent"]
            return some(minors, 0.9) + ([p for p in parents if rng.random() < 0.75])
        if profile.key == "housing":
            return list(heads) if len(heads) == 2 and rng.random() < 0.55 else [
                rng.choice(heads)]
        if profile.key == "debt":
            debtor = rng.choice(heads)
            others = [p for p in heads if p is not debtor and rng.random() < 0.4]
            return [debtor, *others]
        if profile.key == "social_support":
            return some(adults, 0.9) + [p for p in minors if rng.random() < 0.5]
        if profile.key == "education":
            return some([p for p in minors if _age(p, self.today) >= 4], 0.9)
        candidates = adults + [p for p in minors if _age(p, self.today) >= 12]
        first = rng.choice(candidates)
        rest = [p for p in candidates if p is not first]
        return [first] + ([rng.choice(rest)] if rest and rng.random() < 0.1 else [])

    def relations(self, profile: PartnerProfile, hh: Household, person: Person) -> list[Person]:
        if profile.key == "youth_care":
            scope = [p for p in hh.members if p.role == "parent"
                     or (p.role == "child" and _age(p, self.today) < 18)]
        elif profile.key == "debt":
            scope = [p for p in hh.members if p.role in ("parent", "adult", "elderly")]
        else:
            scope = list(hh.members)
        return [p for p in scope if p is not person]

    def bsn_rate(self, profile: PartnerProfile) -> float:
        lv = self.level
        return lv.bsn_missing_low if profile.bsn_rate == "low" else lv.bsn_missing_high

    def has_bsn_column(self, profile: PartnerProfile) -> bool:
        return not (profile.key == "housing" and self.level.bsn_free_partner)

    def family_name(self, person: Person, partner: Person | None, tags: list[str]
                    ) -> tuple[str, str]:
        """(prefix, surname): the person's own, or (naamgebruik) the partner's or both."""
        rng = self.rng
        own = (person.surname_prefix, person.surname)
        if partner is None or (partner.surname_prefix, partner.surname) == own or (
                rng.random() >= self.level.married_name):
            return own
        tags.append("married_name")
        if rng.random() < 0.5:
            return partner.surname_prefix, partner.surname
        return partner.surname_prefix, f"{partner.surname}-{_join(*own)}"

    def names_of(self, profile: PartnerProfile, person: Person, partner: Person | None,
                 tags: list[str]) -> dict[str, str]:
        """The name fields as this partner writes them, corrupted per the level."""
        rng, lv = self.rng, self.level
        given = list(person.given_names)
        prefix, surname = self.family_name(person, partner, tags)
        use_initials = rng.random() < lv.initials
        if use_initials:
            tags.append("initials")
        elif len(given) > 1 and rng.random() < lv.first_name_only:
            given = given[:1]
            tags.append("first_name_only")
        decompose = False
        all_names = " ".join([*given, prefix, surname])
        if not all_names.isascii() and ascii_fold(all_names) != all_names and (
                rng.random() < lv.diacritics):
            decompose = rng.random() < 0.2
            tags.append("diacritics:nfd" if decompose else "diacritics:fold")
            if not decompose:
                given = [ascii_fold(g) for g in given]
                prefix, surname = ascii_fold(prefix), ascii_fold(surname)
        initials = "".join(f"{g[0].upper()}." for g in given)
        if rng.random() < lv.typo:
            count = 2 if rng.random() < lv.typo_second else 1
            tags.append("typo" if count == 1 else "typo2")
            for _ in range(count):
                if not use_initials and rng.random() < 0.5:
                    i = rng.randrange(len(given))
                    given[i] = _typo(rng, given[i])
                else:
                    surname = _typo(rng, surname)
        given_text = _initials_text(rng, given) if use_initials else " ".join(given)
        position = "before"
        if prefix and rng.random() < lv.particle_variant:
            kind, prefix, surname, position = _particle_variant(
                rng, prefix, surname, profile.name_style)
            tags.append(f"particle:{kind}")
        swapped = rng.random() < lv.swap_names
        if swapped:
            tags.append("swap_names")
        out = _name_fields(profile.name_style, given_text, prefix, surname,
                           after=position == "after", swapped=swapped)
        if rng.random() < lv.case_noise:
            tags.append("case_noise")
            target = rng.choice([k for k, v in out.items() if v])
            out[target] = _case_noise(rng, out[target])
        if decompose:
            out = {k: unicodedata.normalize("NFD", v) for k, v in out.items()}
        out["initials"] = initials
        return out

    def address_of(self, profile: PartnerProfile, addr: Address, tags: list[str]
                   ) -> dict[str, str]:
        rng, lv = self.rng, self.level
        postcode = _postcode_text(addr.postcode, profile.postcode_space)
        if rng.random() < lv.postcode_variant:
            tags.append("postcode_variant")
            code = addr.postcode
            postcode = rng.choice([v for v in (code, f"{code[:4]} {code[4:]}", code.lower(),
                                               f"{code[:4]} {code[4:].lower()}",
                                               f"{code[:4]}  {code[4:]}") if v != postcode])
        number, addition = str(addr.number), addr.addition
        shown = addition
        if addition:
            r = rng.random()
            if r < lv.addition_dropped:
                tags.append("addition_dropped")
                shown = ""
            elif r < lv.addition_dropped + lv.addition_variant:
                tags.append("addition_variant")
                shown = self.addition_variant(profile, number, addition)
        if profile.house_style == "split":
            house, extra = number, shown
        else:
            house, extra = (shown if shown.startswith(number) else
                            self.combined(number, shown)), ""
        city = names.CITY_ALIASES.get(addr.city, addr.city) if profile.city_alias else addr.city
        return {"postcode": postcode, "house_number": house, "house_addition": extra,
                "street": addr.street, "city": city}

    @staticmethod
    def combined(number: str, addition: str) -> str:
        if not addition:
            return number
        if addition.isdigit():
            return f"{number}-{addition}"
        if addition == "hs":
            return f"{number} hs"
        return number + addition

    def addition_variant(self, profile: PartnerProfile, number: str, addition: str) -> str:
        """Another spelling of an addition: in its own column, or with the number."""
        rng = self.rng
        if profile.house_style == "split":
            if addition.isdigit():
                return rng.choice((f"-{addition}", _ROMAN[addition]))
            if len(addition) == 1:
                return rng.choice((addition.lower(), f"-{addition}"))
            return rng.choice((addition.upper(), addition.capitalize()))
        if addition.isdigit():
            return rng.choice((f"{number} {addition}", f"{number} {_ROMAN[addition]}",
                               f"{number}/{addition}"))
        if len(addition) == 1:
            return rng.choice((f"{number} {addition}", f"{number}{addition.lower()}",
                               f"{number} {addition.lower()}", f"{number}-{addition}"))
        if addition == "bis":
            return rng.choice((f"{number} bis", f"{number}-bis", f"{number} BIS"))
        return rng.choice((f"{number}hs", f"{number}-hs", f"{number} HS"))

    def draft(self, profile: PartnerProfile, hh: Household, person: Person, held: Address,
              professional: tuple[str, str, str], signal_day: date) -> _Draft:
        """A record's canonical values (corrupted) and its tags; the case_ref comes later."""
        rng, lv = self.rng, self.level
        tags: list[str] = []
        partner = next((p for p in hh.members if p is not person and p.role == person.role
                        and person.role in ("parent", "adult", "elderly")), None)
        values: dict[str, Any] = dict(self.names_of(profile, person, partner, tags))
        bsn: str | None = person.bsn
        if not self.has_bsn_column(profile):
            bsn = None
        elif rng.random() < self.bsn_rate(profile):
            bsn = None
            tags.append("bsn_missing")
        values["bsn"] = bsn
        r = rng.random()
        dob: date | None = person.date_of_birth
        if r < lv.dob_missing:
            dob = None
            tags.append("dob_missing")
        elif r < lv.dob_missing + lv.dob_error:
            dob, how = _dob_error(rng, person.date_of_birth, self.today)
            tags.append(f"dob_error:{how}")
        values["date_of_birth"] = dob
        sex = person.sex
        if rng.random() < lv.sex_missing:
            sex = ""
            tags.append("sex_missing")
        elif sex != "X" and rng.random() < lv.sex_x:
            sex = "X"
            tags.append("sex_x")
        values["sex"] = sex
        values.update(self.address_of(profile, held, tags))
        if bsn is not None and rng.random() < lv.address_missing:
            tags.append("address_missing")
            for key in ("postcode", "house_number", "house_addition", "street", "city"):
                values[key] = None
        if profile.key in self.with_relations:
            rate = self.bsn_rate(profile)
            values["related_bsns"] = [p.bsn for p in self.relations(profile, hh, person)
                                      if rng.random() >= rate]
        values["category"] = profile.category
        values["region"] = held.region
        values["professional_name"], values["professional_phone"], values[
            "professional_email"] = professional
        observed = signal_day + timedelta(days=rng.randint(0, 14))
        values["observed_on"] = min(observed, self.today)
        return _Draft(person, hh, held, values, tags)

    def run(self, progress: Callable[[int], None] | None) -> SynthData:
        rng, lv = self.rng, self.level
        institutions = self.institutions()
        households = [self.household(i + 1, institutions) for i in range(self.spec.households)]
        partner_ids = [f"partner{i + 1}" for i in range(len(self.profiles))]
        for profile in self.profiles:
            self.professionals[profile.key] = self.professional_pool(profile)
        drafts: dict[str, list[_Draft]] = {pid: [] for pid in partner_ids}
        for hh in households:
            known: dict[str, list[Person]] = {}
            eligible = [pid for pid, profile in zip(partner_ids, self.profiles, strict=True)
                        if self.eligible(profile, hh)]
            wanted = _PARTNER_COUNTS.pick(rng)
            chosen = sorted(rng.sample(eligible, min(wanted, len(eligible))),
                            key=partner_ids.index)
            for pid in chosen:
                profile = self.profiles[partner_ids.index(pid)]
                known[pid] = self.known_persons(profile, hh)
            hh.partners = tuple(chosen)
            if len(chosen) >= 2 and not hh.address.institution and rng.random() < lv.moved:
                same_city = rng.random() < 0.75
                muni = next(m for m in names.MUNICIPALITIES if m[0] == hh.address.region)
                hh.new_address = self.address(muni if same_city else None)
                hh.moved_partners = tuple(sorted(
                    rng.sample(chosen, rng.randint(1, len(chosen) - 1)),
                    key=partner_ids.index))
            for pid in chosen:
                profile = self.profiles[partner_ids.index(pid)]
                held = (hh.new_address if hh.new_address and pid in hh.moved_partners
                        else hh.address)
                professional = rng.choice(self.professionals[profile.key])
                signal_day = self.today - timedelta(days=rng.randint(14, 364))
                for person in known[pid]:
                    drafts[pid].append(self.draft(profile, hh, person, held, professional,
                                                  signal_day))
                    if rng.random() < lv.duplicate:
                        extra = self.draft(profile, hh, person, held,
                                           rng.choice(self.professionals[profile.key]),
                                           self.today - timedelta(days=rng.randint(14, 364)))
                        extra.tags.append("duplicate")
                        drafts[pid].append(extra)
            if progress is not None:
                progress(1)
        files = []
        for pid, profile in zip(partner_ids, self.profiles, strict=True):
            columns = tuple((f, c) for f, c in profile.columns
                            if f != "bsn" or self.has_bsn_column(profile))
            batch = drafts[pid]
            rng.shuffle(batch)
            batch.sort(key=lambda d: d.values["observed_on"])
            records = []
            for n, d in enumerate(batch, start=1):
                values = d.values
                values["case_ref"] = profile.case_ref_format.format(
                    year=values["observed_on"].year, n=n)
                records.append(Record(pid, values["case_ref"], d.person.person_id,
                                      d.household.household_id, d.held, tuple(d.tags),
                                      _row(profile, columns, values)))
            files.append(PartnerFile(pid, profile, columns, tuple(records)))
        flat = tuple(a for kind, _ in names.INSTITUTION_KINDS for a in institutions[kind])
        return SynthData(self.spec, self.level, tuple(households), flat, tuple(files))


def _row(profile: PartnerProfile, columns: Sequence[tuple[str, str]],
         values: dict[str, Any]) -> dict[str, Any]:
    """The record as the partner writes it: its columns, codes and formats."""
    jsonl = profile.file_format == "jsonl"
    codes = dict(profile.sex_codes)
    row: dict[str, Any] = {}
    for name, column in columns:
        value: Any = values.get(name)
        if name in ("date_of_birth", "observed_on"):
            value = _format_date(value, profile.date_format) if value is not None else None
        elif name == "sex":
            value = codes[value] if value or codes[""] else None
        elif name == "bsn" and value is not None and profile.bsn_dotted:
            value = f"{value[:4]}.{value[4:6]}.{value[6:]}"
        elif name == "related_bsns":
            if profile.bsn_dotted:
                value = [f"{v[:4]}.{v[4:6]}.{v[6:]}" for v in value]
            value = value if jsonl else ";".join(value)
        elif name == "house_number" and jsonl and profile.house_style == "split":
            value = int(value) if value else None
        elif value == "" and jsonl:
            value = None
        if not jsonl:
            row[column] = "" if value is None else value
            continue
        target = row
        *parents, leaf = column.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return row


def _format_date(day: date, fmt: str) -> str:
    """strftime for the %Y, %m and %d formats the partners use (and faster)."""
    return (fmt.replace("%Y", f"{day.year:04d}").replace("%m", f"{day.month:02d}")
            .replace("%d", f"{day.day:02d}"))


def generate(spec: SynthSpec, progress: Callable[[int], None] | None = None) -> SynthData:
    """Households, persons and partner records for a spec; deterministic in the spec.

    ``progress`` is called with 1 after each household's records are drafted.
    """
    level = spec.validate()
    return _Generator(spec, level).run(progress)


# -- files ---------------------------------------------------------------------------------


def _csv_bytes(header: Sequence[str], rows: Sequence[Sequence[Any]],
               delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _toml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def mapping_toml(pf: PartnerFile) -> str:
    """The mapping file: this partner's columns for the canonical profile fields."""
    profile = pf.profile
    jsonl = profile.file_format == "jsonl"
    lines = [
        f"# {pf.filename}: {profile.organisation}. Written by samenloop synth.",
        "# [fields]: profile field = the partner's column"
        + (" (a dotted path into a line's nested objects)." if jsonl else "."),
        "# [values.sex]: the partner's code = the profile's (M, F, X; \"\" is unknown).",
        f"profile = {_toml(PROFILE)}",
        "",
        "[source]",
        f"file = {_toml(pf.filename)}",
        f"format = {_toml(profile.file_format)}",
    ]
    if not jsonl:
        lines.append(f"delimiter = {_toml(profile.delimiter)}")
    lines += ['encoding = "utf-8"', f"date_format = {_toml(profile.date_format)}"]
    fields_present = [f for f, _ in pf.columns]
    if "related_bsns" in fields_present:
        lines.append('list_separator = ";"' if not jsonl else
                     '# related_bsns is a JSON array of strings')
    if "full_name" in fields_present:
        order = "surname_first" if profile.name_style == "sorted" else "given_first"
        example = ("van der Berg, Jan Pieter" if order == "surname_first"
                   else "Jan Pieter van der Berg")
        lines.append(f"full_name_order = {_toml(order)}  # like {_toml(example)}")
    if "house_number" in fields_present and "house_addition" not in fields_present:
        lines.append("# house_number carries the addition too (\"12-2\", \"12 bis\", \"12A\")")
    lines += ["", "[fields]"]
    lines += [f"{name} = {_toml(column)}" for name, column in pf.columns]
    lines += ["", "[values.sex]"]
    lines += [f"{_toml(code)} = {_toml(canonical)}" for canonical, code in profile.sex_codes
              if code]
    return "\n".join(lines) + "\n"


def _partner_bytes(pf: PartnerFile) -> bytes:
    if pf.profile.file_format == "jsonl":
        return "".join(json.dumps(r.row, ensure_ascii=False) + "\n"
                       for r in pf.records).encode("utf-8")
    header = [column for _, column in pf.columns]
    return _csv_bytes(header, [[r.row[c] for c in header] for r in pf.records],
                      pf.profile.delimiter)


def render(data: SynthData) -> dict[str, bytes]:
    """Every file, by name, as the bytes :func:`write` puts on disk."""
    files: dict[str, bytes] = {}
    for pf in data.partners:
        files[pf.filename] = _partner_bytes(pf)
        files[f"{pf.partner}.mapping.toml"] = mapping_toml(pf).encode("utf-8")
    files["truth.csv"] = _csv_bytes(
        ("partner", "case_ref", "person_id", "household_id"),
        [(r.partner, r.case_ref, r.person_id, r.household_id) for r in data.records()])
    files["households.csv"] = _csv_bytes(
        ("household_id", "kind", "members", "partners", "moved_at", "institution"),
        [(hh.household_id, hh.kind, ";".join(p.person_id for p in hh.members),
          ";".join(hh.partners), ";".join(hh.moved_partners), hh.address.institution)
         for hh in data.households])
    files["persons.csv"] = _csv_bytes(
        ("person_id", "household_id", "role", "bsn", "given_names", "surname_prefix",
         "surname", "date_of_birth", "sex", "postcode", "house_number", "house_addition",
         "street", "city", "region", "new_postcode", "new_house_number", "new_house_addition"),
        [(p.person_id, p.household_id, p.role, p.bsn, " ".join(p.given_names),
          p.surname_prefix, p.surname, p.date_of_birth.isoformat(), p.sex,
          hh.address.postcode, hh.address.number, hh.address.addition, hh.address.street,
          hh.address.city, hh.address.region,
          *((hh.new_address.postcode, hh.new_address.number, hh.new_address.addition)
            if hh.new_address else ("", "", "")))
         for hh in data.households for p in hh.members])
    files["institutions.csv"] = _csv_bytes(
        ("name", "postcode", "house_number", "house_addition", "street", "city", "region"),
        [(a.institution, a.postcode, a.number, a.addition, a.street, a.city, a.region)
         for a in data.institutions])
    files["README.txt"] = readme(data).encode("utf-8")
    return files


def write(data: SynthData, directory: Path) -> list[Path]:
    """Write every file into a new or empty directory; returns the paths written."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise InvalidInput(f"{directory} is not empty: give a new or empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in render(data).items():
        path = directory / name
        path.write_bytes(content)
        paths.append(path)
    return paths


def summary(data: SynthData, *, pointer: bool = True) -> str:
    """One paragraph: what was generated (counts only, never a name)."""
    person_links, household_links = data.links()
    per_partner = ", ".join(
        f"{pf.partner} ({pf.profile.category}, {pf.filename}) {len(pf.records)}"
        for pf in data.partners)
    known = sum(1 for hh in data.households if hh.partners)
    moved = sum(1 for hh in data.households if hh.new_address)
    institutional = sum(1 for hh in data.households if hh.address.institution)
    spec = data.spec
    return (
        f"{spec.households} households ({known} known to a partner) with "
        f"{len(data.persons)} persons, level {spec.level}, seed {spec.seed}, reference date "
        f"{spec.reference_date.isoformat()}. Records per partner: {per_partner}. The truth "
        f"(truth.csv) has {len(data.records())} records, {person_links} person links and "
        f"{household_links} household links (pairs of records of one person or one "
        f"household); {moved} households moved between their partners' records and "
        f"{institutional} live at one of {len(data.institutions)} institutional addresses "
        "(institutions.csv)." + (" README.txt describes the files and the corruption rates."
                                 if pointer else ""))


def readme(data: SynthData) -> str:
    spec, level = data.spec, data.level
    partner_lines = "\n".join(
        f"  {pf.filename:<15} {pf.profile.organisation}: {pf.profile.file_format}"
        + (f" ({_delimiter_name(pf.profile.delimiter)})" if pf.profile.delimiter else "")
        + f", dates {pf.profile.date_format}, {len(pf.records)} records; knows "
        f"{pf.profile.knows}"
        + ("" if any(f == "bsn" for f, _ in pf.columns) else "; no BSN column")
        for pf in data.partners)
    level_lines = "\n".join(f"  {label.strip():<56} {_cell(getattr(level, attr))}"
                            for attr, label in _RATE_ROWS)
    return f"""Synthetic data written by `samenloop synth` (agent/_synth.py).

Nothing here describes a real person: names, addresses and BSNs are drawn at random
(the BSNs pass the elfproef and are unique per person).

Spec: households={spec.households} partners={spec.partners} level={spec.level} \
seed={spec.seed} reference_date={spec.reference_date.isoformat()}
The same spec always produces byte-identical files.

{textwrap.fill(summary(data, pointer=False), width=88)}

Partner files (each with partnerN.mapping.toml: source format and the column of each
profile field of the "{PROFILE}" linkage profile):
{partner_lines}

Other files:
  truth.csv         partner, case_ref, person_id, household_id: one row per record
  households.csv    household_id, kind, members, partners that know it, partners that
                    hold the newer address (moved households), institution
  persons.csv       the clean identity of every person (the records derive from it);
                    new_* is a moved household's newer address
  institutions.csv  shared institutional addresses; linkage should not link by them

Links: a person link is any two records (at different partners or at the same one)
with the same person_id; a household link is any two records with the same
household_id. A moved household's records are linked by person, never by address.

Corruption rates at level {spec.level}:
{level_lines}

All levels:
{rates_table()}
"""


def _delimiter_name(delimiter: str) -> str:
    return {";": "semicolons", ",": "commas", "\t": "tabs"}[delimiter]


# -- the command ---------------------------------------------------------------------------


def _households(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None
    if not 1 <= number <= MAX_HOUSEHOLDS:
        raise argparse.ArgumentTypeError(f"give 1 to {MAX_HOUSEHOLDS} households")
    return number


def _reference_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date like 2026-12-01") from None


def register(sub: Any) -> None:
    partners = "\n".join(f"  partner{i + 1}  {p.organisation}: {p.file_format}, knows {p.knows}"
                         for i, p in enumerate(PARTNERS))
    synth = sub.add_parser(
        "synth", help="generate synthetic households and partner exports with a truth file",
        description=textwrap.fill(
            "Generate Dutch synthetic households and the exports of 2-6 partner "
            "organisations that know them, each in its own columns and formats with seeded, "
            "realistic corruption (typos, swapped and missing fields, missing BSNs, moves, "
            "surname particles), a mapping file per partner and a truth file, for measuring "
            "record linkage. The same flags always give byte-identical files.", width=88,
            break_on_hyphens=False),
        epilog=f"Partners (the first K):\n{partners}\n\nCorruption rates per level "
        f"(per record unless noted):\n{rates_table()}\n\nFiles: partnerN.csv|jsonl, "
        "partnerN.mapping.toml, truth.csv, households.csv, persons.csv, institutions.csv, "
        "README.txt.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    synth.add_argument("--households", type=_households, default=2000, metavar="N",
                       help="how many households (default 2000)")
    synth.add_argument("--partners", type=int, choices=range(2, len(PARTNERS) + 1),
                       default=3, metavar="K", help="how many partner files, 2-6 (default 3)")
    synth.add_argument("--level", choices=tuple(LEVELS), default="medium",
                       help="how much corruption (default medium; see the table below)")
    synth.add_argument("--seed", type=int, default=1, metavar="S",
                       help="the random seed (default 1)")
    synth.add_argument("--reference-date", type=_reference_date,
                       default=DEFAULT_REFERENCE_DATE, metavar="YYYY-MM-DD",
                       help="'today' for ages and signal dates (default "
                       f"{DEFAULT_REFERENCE_DATE.isoformat()}, so runs repeat exactly)")
    synth.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="a new or empty directory for the files")
    synth.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from exchange.cli import Progress

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"{out} is not empty: give a new or empty directory")
    spec = SynthSpec(households=args.households, partners=args.partners, level=args.level,
                     seed=args.seed, reference_date=args.reference_date)
    with Progress(spec.households, "generating") as bar:
        data = generate(spec, bar.advance)
    write(data, out)
    print(f"Wrote {out}: {summary(data)}", file=sys.stdout)
    return 0


__all__ = [
    "LEVELS", "PARTNERS", "PROFILE_FIELDS", "Address", "Household", "Level", "PartnerFile",
    "PartnerProfile", "Person", "Record", "SynthData", "SynthSpec", "ascii_fold",
    "bsn_valid", "generate", "mapping_toml", "rates_table", "readme", "register", "render",
    "summary", "write",
]

