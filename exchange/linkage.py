"""Linkage profiles: how every partner of a covenant turns identifiers into tokens, and
how the hub decides from those tokens alone that two signals concern one person.

A profile is TOML, registered by the covenant administrator and fetched by every agent,
so all partners derive identical tokens::

    id = "nl-household"
    name = "Dutch households"

    [fuzzy]                 # MinHash over letters and bigrams of the first given name
                            # and of the surname
    seed = "nl-household"   # public: the OPRF, not the hash, keeps tokens secret
    given_bands = 12        # bands of the given names, and of the surname
    surname_bands = 12
    rows = 1                # MinHash values per band

    [score]                 # a person link at the threshold; weights (log-odds x 3)
    threshold = 7.5         # may be set too, with "scheme = 3" (the decision they are for)

Every token is an OPRF output (exchange.crypto), so the hub compares tokens it cannot
compute, and a leaked hub database cannot be searched with a dictionary. A missing value
gives no token, so it can never agree; two signals that both carry a family of tokens but
share none of it disagree, and that counts against a link.

The decision per pair of signals (:func:`decide`) looks only at the two signals' tokens,
so the links, and the households they form, do not depend on the order of arrival.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

from exchange import vocab
from exchange.crypto import KeyKind
from exchange.errors import InvalidInput

__all__ = [
    "DECISION_SCHEME",
    "DEFAULT_PROFILE",
    "DEFAULT_PROFILE_WEIGHTS",
    "TOKEN_SCHEME",
    "Decision",
    "Name",
    "Profile",
    "ProfileError",
    "decide",
    "name_parts",
    "parse_profile",
    "profile_ref_of",
    "signal_ref",
    "tokens",
]

# Dutch surname particles ("tussenvoegsels"), longest first, and their abbreviations.
PARTICLES = ("van der", "van den", "van de", "van het", "van t", "in t", "in het",
             "op den", "op de", "op ten", "uit den", "uit de", "de la", "de le", "van",
             "de", "den", "der", "het", "t", "ten", "ter", "te", "op", "in", "la", "le",
             "du", "da", "di", "von", "zu", "el", "al")
# Particles also found written into the surname ("Vanderberg", "Devries", "Terhorst").
_MERGED = ("vander", "vanden", "vande", "vanhet", "van", "ter", "ten", "den", "der", "de")
_ABBREVIATIONS = {"vd": "van der", "v d": "van der", "vdn": "van den", "v": "van",
                  "vden": "van den", "vde": "van de"}
_SORTED_PARTICLES = sorted(PARTICLES, key=len, reverse=True)
_WORD = re.compile(r"[a-z0-9]+")
# The score from which two signals are one person (see _WEIGHTS).
DEFAULT_THRESHOLD = 7.5


class ProfileError(InvalidInput):
    """A linkage profile is invalid; the message names the key and the reason."""


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    seed: str = "nl-household"
    given_bands: int = 12
    surname_bands: int = 12
    rows: int = 1
    threshold: float = DEFAULT_THRESHOLD
    # log-odds weights: (agree, disagree) per feature, in decide()
    weights: Mapping[str, float] = field(default_factory=dict)
    source: str = ""
    version: int = 0  # assigned by the hub

    @property
    def ref(self) -> str:
        return f"{self.id}@v{self.version}"

    def weight(self, name: str) -> float:
        return float(self.weights.get(name, _WEIGHTS[name]))


# Agreement (positive) and disagreement (negative) weights: log-odds (natural log) times
# three, fitted by logistic regression on the pairs the hub compares in synthetic data
# (bench/fit_weights.py on seeds 4-9 of 'samenloop synth --level hardest'; seeds 1-3 are
# for measuring, docs/linkage.md), scaled so that odds of 4 to 1 among compared pairs
# score 9. A pair links when its weights add up to the threshold, by default 7.5 (odds of
# about 2.5 to 1): lower than the fit's 9 because persons are formed with constraints
# that catch most of what it lets through (two BSNs, or a person and a member they named,
# are never one person: hub._linkage.persons) — measured, docs/linkage.md. A profile may
# override any weight, and the threshold, under [score].
_WEIGHTS = {
    # the first given name's bands (or the other's surname's, when one system swapped
    # them): the share of bands in common, an estimate of the names' bigram similarity
    "given_exact": 7.1,      # every band
    "given_high": 6.3,       # from 0.65, or one typo apart (GIVEN_EDIT, token scheme 4)
    "given_some": 1.6,       # from 0.4
    "given_weak": -2.2,      # from 0.25
    "given_low": -7.8,       # below: another name
    "given_initial": 7.9,    # one side knows only initials, and the first initial agrees
    "initial_agrees": 4.1,   # both have given names, and the first initial agrees
    "surname_high": 4.7,     # surname bands, as above
    "surname_some": 5.0,
    "surname_weak": -0.9,
    "surname_low": -8.8,
    "swapped": 2.8,          # given name and surname agree crosswise
    "birth_exact": 13.2,
    "birth_near": 0.8,       # one part off, or day and month swapped
    "birth_differs": -25.3,  # both have a date of birth and no part of it agrees
    # one side has no date of birth, or neither has (exactly one of the birth features
    # applies to a pair: together they hold the fitted intercept)
    "birth_one": -7.1,
    "birth_none": -6.7,
    "address": 0.8,          # the same address key
    "building": 3.4,         # the same postcode and house number, another addition
    "address_differs": -2.5,  # both have an address, in other buildings
    # ... the same address, and the same first name (a member of one household rarely
    # shares another's), the same date of birth, or an initial that agrees
    "given_address": 6.3,
    "birth_address": 1.9,
    "initial_address": 5.2,
    "sex_agrees": 4.0,       # sex with the initial and surname or building, or the date
    "sex_differs": -6.9,     # same initial (and surname or building) or birth date, another sex
    # the signals' regions (municipalities, which the hub holds anyway) differ: namesakes
    # live anywhere, a person who moved mostly stays (the synthetic data: 75 %)
    "region_differs": -10.8,
    # in one household (which the hub formed from exact keys and links), and not at one
    # address or building: a household that moved, or a signal without an address; few
    # people to be a namesake of. Replaces address_differs and region_differs. Set by a
    # sweep (0, 3, 6, 9 on seeds 1-3, 5, 7, 9; docs/linkage.md), not fitted
    "household": 6.0,
}
# The features and scale of the weights above. A [score] table that sets weights says
# which it was written for ("scheme = 3"): weights of an earlier decision (hand-set, on
# another scale, some features gone) are refused, not read as if they were these.
DECISION_SCHEME = 3
_SCORE_KEYS = {"threshold", "scheme", *_WEIGHTS}
# The features decide() weighs, and their built-in weights.
DEFAULT_PROFILE_WEIGHTS: Mapping[str, float] = MappingProxyType(_WEIGHTS)
_FUZZY_KEYS = {"seed", "given_bands", "surname_bands", "rows"}


def parse_profile(source: str) -> Profile:
    """Parse and validate a profile; ProfileError names the key and the reason."""
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"invalid linkage profile: {exc}") from None
    unknown = sorted(set(data) - {"id", "name", "fuzzy", "score"})
    if unknown:
        raise ProfileError(f"invalid linkage profile: unknown key '{unknown[0]}'")
    try:
        profile_id = vocab.slug(data.get("id", ""), "id")
        name = vocab.text(data.get("name", ""), "name", max_len=200)
    except InvalidInput as exc:
        raise ProfileError(f"invalid linkage profile: {exc}") from None
    fuzzy, score = data.get("fuzzy", {}), data.get("score", {})
    if not isinstance(fuzzy, dict) or not isinstance(score, dict):
        raise ProfileError("invalid linkage profile: [fuzzy] and [score] must be tables")
    for table, known in ((fuzzy, _FUZZY_KEYS), (score, _SCORE_KEYS)):
        extra = sorted(set(table) - known)
        if extra:
            raise ProfileError(f"invalid linkage profile: unknown key '{extra[0]}'")
    seed = fuzzy.get("seed", "nl-household")
    if not isinstance(seed, str) or not 1 <= len(seed) <= 64:
        raise ProfileError("invalid linkage profile: seed must be 1-64 characters")
    counts = {}
    for key, low, high, default in (("given_bands", 1, 16, 12), ("surname_bands", 1, 16, 12),
                                    ("rows", 1, 4, 1)):
        value = fuzzy.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ProfileError(f"invalid linkage profile: {key} must be from {low} to {high}")
        counts[key] = value
    scheme = score.pop("scheme", None)
    if scheme is not None and (isinstance(scheme, bool) or scheme != DECISION_SCHEME):
        raise ProfileError(f"invalid linkage profile: [score] scheme {scheme!r} is not "
                           f"{DECISION_SCHEME}, the weights this hub decides with")
    if scheme is None and set(score) - {"threshold"}:
        raise ProfileError(
            f"invalid linkage profile: [score] sets weights without 'scheme = "
            f"{DECISION_SCHEME}': weights written for an earlier decision mean something "
            "else now (docs/linkage.md); review them and say which they are for")
    weights = {}
    for key, value in score.items():
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or abs(value) > 100):
            raise ProfileError(f"invalid linkage profile: {key} must be a number")
        weights[key] = float(value)
    threshold = weights.pop("threshold", DEFAULT_THRESHOLD)
    return Profile(id=profile_id, name=name, seed=seed, threshold=threshold,
                   weights=weights, source=source, **counts)


DEFAULT_PROFILE = parse_profile('id = "nl-household"\nname = "Dutch households"\n')

# How tokens() makes tokens from a profile. Raise it with every change that makes one
# record's tokens differ (normalisation, bands, near dates, blocks): the hub compares
# fuzzy tokens only between signals of one profile version and one scheme, and
# 'samenloop agent rekey' re-submits the cases whose tokens another scheme made.
# 0 is an agent from before schemes were counted.
TOKEN_SCHEME = 4
# 1: bands, dates, initial + surname, building, blocks; 2: also initial + building (and
# with sex), no initials from particles in lower case in the given-name field; 3: letters
# without a decomposition folded (a dotless i to i, "ø" to o), and given names written in
# capitals ("MATS JESSE") no longer read as initials; 4: the first given name within one
# typo (GIVEN_EDIT), and one capital after the comma ("Bos, T.") an initial, not "'t".


def signal_ref(profile_ref: str, scheme: int) -> str:
    """What a signal's tokens were made with, as the hub stores and compares it:
    "nl-household@v2/t1" (or "nl-household@v2" from an agent before token schemes)."""
    return f"{profile_ref}/t{scheme}" if scheme else profile_ref


def profile_ref_of(ref: str) -> str:
    """The profile version ("id@vN") of a signal_ref()."""
    return ref.partition("/t")[0]


# -- normalisation ---------------------------------------------------------------------


# Letters that Unicode does not decompose into a base letter and a diacritic (token
# scheme 3: before it, Yilmaz written with a dotless i folded to "y lmaz").
_LETTERS = str.maketrans({"ı": "i", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d",  # noqa: RUF001 - the letters folded
                          "Đ": "D", "ð": "d", "Ð": "D", "ħ": "h", "Ħ": "H", "ŧ": "t",
                          "Ŧ": "T", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                          "ß": "ss", "þ": "th", "Þ": "TH"})


def fold(value: str) -> str:
    """Lowercase ASCII letters and digits, single spaces: diacritics, case, punctuation
    and spacing differ between systems and must not matter ("'t Hart" -> "t hart")."""
    decomposed = unicodedata.normalize("NFKD", value.translate(_LETTERS))
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return " ".join(_WORD.findall(ascii_only.replace("'", " ")))


@dataclass(frozen=True)
class Name:
    """A person's name as linkage compares it."""

    given: tuple[str, ...]   # full given names, folded ("jan", "pieter")
    initials: str            # first letters of the given names ("jp")
    surname: tuple[str, ...]  # the surname without particles ("berg",)


def _split_particles(words: list[str]) -> list[str]:
    """The surname's words without its particles, wherever they stand."""
    text = " ".join(words)
    for short, long in _ABBREVIATIONS.items():
        text = re.sub(rf"(^| ){short}( |$)", rf"\1{long}\2", text)
    words = text.split()
    out = []
    i = 0
    while i < len(words):
        for particle in _SORTED_PARTICLES:
            parts = particle.split()
            if words[i:i + len(parts)] == parts:
                i += len(parts)
                break
        else:
            out.append(words[i])
            i += 1
    if not out:  # a surname that is only particles ("De") stays what it is
        return words
    if len(out) == 1:  # merged particles: "vanderberg", "devries"
        for joined in _MERGED:
            if out[0].startswith(joined) and len(out[0]) - len(joined) >= 3:
                return [out[0][len(joined):]]
    return out


_SINGLE_PARTICLES = frozenset(p for p in PARTICLES if " " not in p) | {"v", "vd"}


def _capital_initial(text: str) -> bool:
    """One letter in capitals, with or without its dot ("T.", "V"): after a surname and
    a comma an initial, not the particle "'t" or "v(an)", which are written in lower case
    there (token scheme 4: "Bos, T." lost its initial)."""
    letters = text.strip().rstrip(".")
    return len(letters) == 1 and letters.isupper()


def _only_particles(text: str) -> bool:
    words = fold(text).split()
    return bool(words) and all(w in _SINGLE_PARTICLES for w in words)


def name_parts(given_names: str = "", surname_prefix: str = "", surname: str = "",
               full_name: str = "", initials: str = "") -> Name:
    """Normalise a name given as separate fields or as one ("Berg, van der, Jan P.",
    "Jan P. van der Berg")."""
    if full_name and not (given_names or surname):
        if "," in full_name:  # "Berg, van der, Jan", "Berg, Jan", "Berg, van der"
            surname, _, rest = full_name.partition(",")
            if "," in rest:
                surname_prefix, _, given_names = rest.partition(",")
            elif _only_particles(rest) and not _capital_initial(rest):
                surname_prefix = rest
            else:
                given_names = rest
        else:  # "Jan Pieter van der Berg": the surname starts at its first particle
            words = full_name.split()
            start = len(words) - 1
            while start > 1 and _only_particles(words[start - 1]):
                start -= 1
            given_names, surname = " ".join(words[:start]), " ".join(words[start:])
    given_words: list[str] = []
    letters = []
    # Some systems write the surname in capitals and lower case and the initials as
    # capitals without dots ("De Lange, NP"): there, a short word in capitals is initials.
    mixed_case = any(c.islower() for c in surname_prefix + surname + given_names)
    # ... unless the given names themselves are written in capitals: a word in capitals
    # longer than initials are ("MATS JESSE PETRUS") makes the others names too (scheme 3)
    # ... or two of three letters or more ("NOAH BRAM"; initials with spaces are letters)
    upper = [w for w in given_names.split() if w.isalpha() and w.isupper()]
    capitals = any(len(w) > 4 for w in upper) or sum(len(w) >= 3 for w in upper) >= 2
    for raw in re.findall(r"[^\s.]+\.?", given_names):
        word = fold(raw)
        if not word:
            continue
        if len(word) == 1 or (raw.endswith(".") and word.isalpha() and len(word) <= 4):
            letters.append(word[0])  # "J", "J.P." (two), "Th." (Theodorus), "Chr."
        elif _initials(raw, word, mixed_case=mixed_case and not capitals):
            letters.extend(word)
        else:
            # particles in the given-name field: a swapped "van der Berg" gives no given
            # name, and in lower case, as particles are written, no initial either (token
            # scheme 2); "Van Thanh" keeps its V
            spelt = word.split()
            words = [w for w in spelt if w not in _SINGLE_PARTICLES]
            letters.extend(w[0] for w in (words if raw.islower() else spelt))
            given_words.extend(words)
    letters += list(fold(initials).replace(" ", ""))
    # "Berg, van der" keeps the particles after a comma; they are particles all the same
    surname_words = _split_particles((fold(surname_prefix) + " " + fold(surname)).split())
    return Name(given=tuple(given_words), initials="".join(letters)[:6],
                surname=tuple(surname_words))


def _initials(raw: str, word: str, *, mixed_case: bool) -> bool:
    """Whether a word of the given-name field is initials written together: two to four
    letters that no given name is, in capitals beside lower case ("NP") or without a
    vowel ("JBF")."""
    if not (word.isalpha() and 2 <= len(word) <= 4):
        return False
    return (mixed_case and raw.isupper()) or not any(c in "aeiou" for c in word)


def birth_parts(value: str) -> tuple[int, int, int] | None:
    """(year, month, day) of an ISO date, None when empty."""
    if not value:
        return None
    parsed = date.fromisoformat(value)
    return parsed.year, parsed.month, parsed.day


# -- tokens ----------------------------------------------------------------------------


def _grams(words: Iterable[str]) -> set[str]:
    """Letters and padded bigrams: a transposition in a short name ("Jna") keeps most of
    them, two different names share few."""
    grams: set[str] = set()
    for word in words:
        padded = f"^{word}$"
        grams.update(padded[i:i + 2] for i in range(len(padded) - 1))
        grams.update(word)
    return grams


# Given names shorter than this give no names with a letter left out (one letter left
# out of "Bo" and "Jo" is the same letter), only themselves.
_EDIT_MIN = 3
# Letters of a name that give tokens: a typo after them leaves these letters as they are.
_EDIT_MAX = 10
# Every first given name gives this many GIVEN_EDIT tokens, made up with tokens that
# agree only with the same name: how many a signal carries says nothing of the name's
# length, nor of doubled letters.
EDIT_TOKENS = _EDIT_MAX + 1


def _one_typo(word: str) -> list[str]:
    """A name and the name with each one of its letters left out (a deletion
    neighbourhood): two names one typo apart — a letter left out, added, mistyped, or two
    letters transposed — share one of these, whatever MinHash bands happen to share.
    Always EDIT_TOKENS of them for a name (none without one)."""
    word = word[:_EDIT_MAX]
    if not word:
        return []
    out = {word}
    if len(word) >= _EDIT_MIN:
        out |= {word[:i] + word[i + 1:] for i in range(len(word))}
    # made-up tokens to the fixed count: "#" is no letter, so they meet only the same name
    out |= {f"#{i}|{word}" for i in range(EDIT_TOKENS - len(out))}
    return sorted(out)


def _minhash_bands(profile: Profile, grams: set[str], bands: int) -> list[bytes]:
    """One value per band: ``rows`` MinHash values over the bigrams, with the band's
    index, so equal bands of two names (given or surname alike) are equal bytes."""
    if not grams:
        return []
    seed = profile.seed.encode()
    out = []
    for band in range(bands):
        values = []
        for row in range(profile.rows):
            salt = seed + bytes([band, row])
            values.append(min(hashlib.blake2b(g.encode(), digest_size=8, key=salt[:64],
                                              person=b"samenloop-mh").digest()
                              for g in sorted(grams)))
        out.append(b"band" + bytes([band]) + b"".join(values))
    return out


def tokens(profile: Profile, name: Name, birth: str, *, address: str = "",
           sex: str = "") -> list[tuple[KeyKind, bytes]]:
    """The fuzzy tokens of one person, before pseudonymisation (never sent as such).

    Given names known only by their initials give no given-name bands (a missing value
    must not disagree); the first initial with the surname, and with the building, give
    INITIAL_SURNAME tokens. ``address`` is postcode and house number without the addition
    (the building: flats' additions are written in many ways, or left out); ``sex`` is M
    or F (else unknown), only ever combined with the initial and surname or building, or
    with the date of birth.
    """
    out: list[tuple[KeyKind, bytes]] = []
    # The first given name only: systems often leave out the others.
    for band in _minhash_bands(profile, _grams(name.given[:1]), profile.given_bands):
        out.append((KeyKind.GIVEN_BAND, band))
    for band in _minhash_bands(profile, _grams(name.surname), profile.surname_bands):
        out.append((KeyKind.SURNAME_BAND, band))
    out += [(KeyKind.GIVEN_EDIT, variant.encode())
            for variant in _one_typo(name.given[0] if name.given else "")]
    parts = birth_parts(birth)
    if parts is not None:
        year, month, day = parts
        out.append((KeyKind.BIRTH_DATE, f"{year:04d}-{month:02d}-{day:02d}".encode()))
        low, high = sorted((month, day))
        out += [(KeyKind.BIRTH_NEAR, f"ym:{year:04d}-{month:02d}".encode()),
                (KeyKind.BIRTH_NEAR, f"yd:{year:04d}-{day:02d}".encode()),
                (KeyKind.BIRTH_NEAR, f"sw:{year:04d}-{low:02d}-{high:02d}".encode())]
        # the year with one error: its last digit, its decade digit, or the two swapped
        tens, units = divmod(year % 100, 10)
        out += [(KeyKind.BIRTH_NEAR, f"md:{year // 10}|{month:02d}-{day:02d}".encode()),
                (KeyKind.BIRTH_NEAR, f"mu:{year // 100}|{units}|{month:02d}-{day:02d}"
                 .encode()),
                (KeyKind.BIRTH_NEAR, f"mt:{year // 100}|{min(tens, units)}{max(tens, units)}|"
                 f"{month:02d}-{day:02d}".encode())]
    surname = " ".join(name.surname)
    initial = name.initials[:1]
    if initial and surname:
        out.append((KeyKind.INITIAL_SURNAME, f"{initial}|{surname}".encode()))
    # The first initial with the building (token scheme 2): the initial agrees at home
    # although the surname has a typo (decide()).
    if initial and address:
        out.append((KeyKind.INITIAL_SURNAME, f"ia:{initial}|{address}".encode()))
    if initial and surname and sex in ("M", "F"):
        out.append((KeyKind.SEX, f"{sex}|{initial}|{surname}".encode()))
    if parts is not None and sex in ("M", "F"):
        out.append((KeyKind.SEX, "{}|{:04d}-{:02d}-{:02d}".format(sex, *parts).encode()))
    if initial and address and sex in ("M", "F"):
        out.append((KeyKind.SEX, f"{sex}|ia:{initial}|{address}".encode()))
    if address:
        out.append((KeyKind.BUILDING, address.encode()))
    out += [(KeyKind.BLOCK, block.encode()) for block in _blocks(name, parts, address)]
    return out


def _blocks(name: Name, birth: tuple[int, int, int] | None, address: str) -> list[str]:
    """Exact combinations that a true pair almost always shares at least one of, despite
    one error: the hub compares only signals that share one (no block, no comparison)."""
    surname = " ".join(name.surname)
    first = name.given[0] if name.given else ""
    initial = name.initials[:1]
    out = []
    if address:  # the same building: typos in both names, or no date of birth
        if birth is not None:
            out.append("ba:{}|{}-{}-{}".format(address, *birth))
        if first:
            out.append(f"ga:{first}|{address}")
        if surname:
            out.append(f"sa:{surname}|{address}")
    if initial and surname:
        out.append(f"is:{initial}|{surname}")
    if birth is not None:
        year, month, day = birth
        if surname:
            out.append(f"sy:{surname}|{year}")
        if first:
            out.append(f"gd:{first}|{year}-{month}-{day}")
        if initial and surname:
            out.append(f"id:{initial}|{surname[:3]}|{month}-{day}")
        if initial:
            out.append(f"dd:{initial}|{year}-{month}-{day}")
    if first and surname:
        out.append("gs:" + "|".join(sorted((first, surname))))  # also when swapped
    # given name and surname swapped in one system ("Smit, Pepijn" read as surname
    # Pepijn), with a typo in either: the two first letters, in either order
    letters = "".join(sorted(initial + surname[:1])) if initial and surname else ""
    if letters and address:
        out.append(f"xa:{letters}|{address}")
    if letters and birth is not None:
        out.append("xd:{}|{}-{}-{}".format(letters, *birth))
    return out


# -- the decision on a pair ------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    link: bool
    score: float
    # why, for tests and tuning: feature -> weight applied
    parts: tuple[tuple[str, float], ...] = ()


Keys = Mapping[int, frozenset[bytes]]  # kind -> the signal's pseudonyms of that kind
# Under this kind, which no token has, decide() finds a signal's region (its CBS
# municipality code, which the hub holds in the clear), when the caller adds it.
REGION = 0
# ... and under this one the household the hub already placed it in (by exact keys and
# links), when deciding persons within households (hub._linkage.persons).
HOUSEHOLD = -1


def _bands(keys: Keys, kind: KeyKind) -> frozenset[bytes]:
    return keys.get(int(kind), frozenset())


def _share(a: frozenset[bytes], b: frozenset[bytes], count: int) -> float:
    """The share of ``count`` bands two names have in common. During a key rotation a
    signal may carry every band twice (under the old and the new key): out of as many as
    the smaller side holds, so that two such signals do not count each band twice."""
    if not (a and b and count):
        return 0.0
    return len(a & b) / max(count, min(len(a), len(b)))


def decide(profile: Profile, a: Keys, b: Keys) -> Decision:
    """Whether two signals concern one person, from their pseudonymous keys alone (and
    their regions, under :data:`REGION`).

    Both carry a BSN-derived person key: they link exactly when it is the same (two
    different BSNs are two people, whatever the names say). Otherwise the weights of
    the features below are summed and compared with the profile's threshold. ``a`` and
    ``b`` map each key kind to that signal's pseudonyms.
    """
    person_a, person_b = a.get(int(KeyKind.PERSON)), b.get(int(KeyKind.PERSON))
    if person_a and person_b:
        same = bool(person_a & person_b)
        return Decision(same, float("inf") if same else float("-inf"), (("bsn", 0.0),))
    names: list[str] = []
    given, initial_agrees = _name_features(profile, a, b, names)
    birth_a, birth_b = _bands(a, KeyKind.BIRTH_DATE), _bands(b, KeyKind.BIRTH_DATE)
    if birth_a and birth_b:
        names.append("birth_exact" if birth_a & birth_b else "birth_near"
                     if _bands(a, KeyKind.BIRTH_NEAR) & _bands(b, KeyKind.BIRTH_NEAR)
                     else "birth_differs")
    else:
        names.append("birth_one" if birth_a or birth_b else "birth_none")
    sex_a, sex_b = _bands(a, KeyKind.SEX), _bands(b, KeyKind.SEX)
    if sex_a and sex_b:
        if sex_a & sex_b:
            names.append("sex_agrees")
        elif initial_agrees or birth_a & birth_b:
            # the same initial and surname or building, or the same date of birth, and
            # another sex: father and daughter, or twins, not one person
            names.append("sex_differs")
    if "birth_exact" in names and (given == "low" or "sex_differs" in names):
        # the same date of birth and given names unlike each other, or another sex:
        # twins (rarely a name garbled beyond recognition). No weight: one wrong link
        # would make two children one person, and the synthetic data has too few twins
        # to weigh them against garbled names (a household is linked by its address
        # all the same)
        return Decision(False, float("-inf"), (*_weighed(profile, names), ("twins", 0.0)))
    _place_features(a, b, names, given)
    if not _NAMED & set(names):
        # no name agrees: a date of birth or an address alone is no person (namesakes by
        # date are many), whatever the weights
        return Decision(False, float("-inf"), (*_weighed(profile, names), ("no_name", 0.0)))
    parts = _weighed(profile, names)
    score = sum(weight for _, weight in parts)
    return Decision(score >= profile.threshold, score, parts)


def _name_features(profile: Profile, a: Keys, b: Keys, names: list[str]
                   ) -> tuple[str, bool]:
    """Add the name features of a pair to ``names``; return the given names' tier ("" when
    they cannot be compared) and whether the first initials agree."""
    given_a, given_b = _bands(a, KeyKind.GIVEN_BAND), _bands(b, KeyKind.GIVEN_BAND)
    surname_a, surname_b = _bands(a, KeyKind.SURNAME_BAND), _bands(b, KeyKind.SURNAME_BAND)
    straight = (_share(given_a, given_b, profile.given_bands),
                _share(surname_a, surname_b, profile.surname_bands))
    # given name and surname swapped in one of the systems (ordered, so that the decision
    # is the same whichever signal comes first)
    bands = min(profile.given_bands, profile.surname_bands)
    crossed = tuple(sorted((_share(given_a, surname_b, bands),
                            _share(surname_a, given_b, bands)), reverse=True))
    # (and the crossed given name alike at least in part: one band in common by chance
    # is no swap)
    swapped = sum(crossed) > sum(straight) and crossed[0] >= _SOME
    given_share, surname_share = crossed if swapped else straight
    if swapped and not (given_a and given_b):
        # one side has no given name ("J. Oosting" against "Jasper, Oosting" read the
        # other way round): the one crossing there is compares the surnames
        surname_share = crossed[0]
    # the first initial agrees with the surname, or at the same building (scheme 2)
    initial_agrees = bool(_bands(a, KeyKind.INITIAL_SURNAME)
                          & _bands(b, KeyKind.INITIAL_SURNAME))
    given = ""
    if given_a and given_b:
        given = _tier(given_share, exact=True)
        if given in ("some", "weak", "low") and not swapped and (
                _bands(a, KeyKind.GIVEN_EDIT) & _bands(b, KeyKind.GIVEN_EDIT)):
            # one typo apart (token scheme 4): MinHash's 12 bands may by chance keep
            # only two of a transposed name ("Volkan", "Ovlkan"), which read as another
            # name beside the same date of birth is the twins rule
            given = "high"
        names.append(f"given_{given}")
        if initial_agrees and given != "low":  # twins Lars and Luuk share an initial
            names.append("initial_agrees")
    elif initial_agrees:  # one of them knows only the initials
        names.append("given_initial")
    if surname_a and surname_b:
        names.append(f"surname_{_tier(surname_share, exact=False)}")
    if swapped:
        names.append("swapped")
    return given, initial_agrees


def _place_features(a: Keys, b: Keys, names: list[str], given: str) -> None:
    """Add where the pair lives to ``names``: the same address (and what agrees there),
    the same building, other buildings, other municipalities."""
    address_a, address_b = _bands(a, KeyKind.ADDRESS), _bands(b, KeyKind.ADDRESS)
    if address_a & address_b:
        names.append("address")
        if given in ("exact", "high"):
            names.append("given_address")
        if "birth_exact" in names:
            names.append("birth_address")
        if "given_initial" in names:
            names.append("initial_address")
    elif _bands(a, KeyKind.BUILDING) & _bands(b, KeyKind.BUILDING):
        names.append("building")
    elif address_a and address_b:
        names.append("address_differs")
    household_a, household_b = a.get(HOUSEHOLD), b.get(HOUSEHOLD)
    if household_a and household_b and household_a & household_b and not (
            address_a & address_b or "building" in names):
        # in one household, not at one address: a household that moved, as exact keys
        # (a member's BSN at both) tell the hub, or one signal without an address; a
        # name agrees among a few people, and neither another building nor another
        # municipality counts against the pair
        names[:] = [n for n in names if n != "address_differs"]
        names.append("household")
        return
    region_a, region_b = a.get(REGION), b.get(REGION)
    if region_a and region_b and not region_a & region_b:
        names.append("region_differs")


# The features that say some name agrees.
_NAMED = frozenset({"given_exact", "given_high", "given_some", "given_initial",
                    "surname_high", "surname_some"})


def _weighed(profile: Profile, names: list[str]) -> tuple[tuple[str, float], ...]:
    return tuple((name, profile.weight(name)) for name in names)


_SOME = 0.4  # the share from which two names are alike in part


def _tier(share: float, *, exact: bool) -> str:
    """A name field's tier by its share of bands in common (an estimate of its bigram
    Jaccard similarity)."""
    if share >= 1.0 and exact:
        return "exact"
    if share >= 0.65:
        return "high"
    if share >= _SOME:
        return "some"
    if share >= 0.25:
        return "weak"
    return "low"


def profile_summary(profile: Profile) -> dict[str, Any]:
    return {"id": profile.id, "version": profile.version, "given_bands": profile.given_bands,
            "surname_bands": profile.surname_bands, "rows": profile.rows,
            "threshold": profile.threshold}
