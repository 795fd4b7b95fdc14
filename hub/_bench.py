"""``samenloop bench linkage``: linkage quality and speed through the real path, next to a
plaintext baseline over the same files, in one run.

The private path is the product's: each partner's agent reads its export through its
mapping file, pseudonymises through a key service and submits to a hub over gRPC on
loopback; the hub links signals from their tokens alone. Person links are pairs of
records the hub holds to concern one person; household links, pairs in one household.
Both are scored against the truth file (precision, recall, F1 over pairs of records).
The plaintext baseline (hub._baseline) links the same rows in the clear.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exchange import crypto, linkage, log
from exchange.errors import InvalidInput

_log = log.get("bench")
MUNICIPALITY = "gemeente"


def register(sub: Any) -> None:
    bench = sub.add_parser("bench", help="measure linkage quality and speed",
                           description="Benchmarks that run the real product.")
    b_sub = bench.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = b_sub.add_parser(
        "linkage", help="precision, recall and speed of linkage against a truth file",
        description="Run each export through the real path (agent -> key service -> hub "
        "over gRPC, with the linkage profile), score the hub's person and household links "
        "against the truth file, and do the same with a plaintext baseline (no privacy) "
        "over the same rows. Prints precision, recall and F1, seconds and records per "
        "second, and the pseudonymisation cost per record next to its floor (the time "
        "spent in the group operations themselves). Files made by 'samenloop synth' work "
        "as they are; any data set works with a mapping file per export.")
    for letter in "abcdef":
        run.add_argument(f"--{letter}", type=Path, metavar="FILE",
                         help="a partner's export" if letter == "a" else argparse.SUPPRESS)
    run.add_argument("--mapping", type=Path, action="append", default=[], metavar="M.toml",
                     help="the mapping of each export, in the order of --a, --b, ... "
                     "(default: FILE's name with .mapping.toml; without --a, each mapping's "
                     "own 'file'; with neither, every *.mapping.toml beside the truth file)")
    run.add_argument("--truth", type=Path, required=True, metavar="TRUTH.csv",
                     help="partner (the export's name without suffix), case_ref, person_id, "
                     "household_id per record")
    run.add_argument("--institutions", type=Path, metavar="FILE.csv",
                     help="addresses to exclude (default: institutions.csv beside the truth)")
    run.add_argument("--profile", type=Path, metavar="PROFILE.toml",
                     help="the linkage profile (default: the built-in nl-household)")
    run.add_argument("--data-dir", type=Path, metavar="DIR",
                     help="keep the hub database and agents' state here (default: temporary)")
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    run.set_defaults(func=_main)


@dataclass(frozen=True)
class Partner:
    label: str  # the organisation id, and the truth file's partner column
    mapping: Path
    path: Path | None


def _partners(args: argparse.Namespace) -> list[Partner]:
    files = [getattr(args, letter) for letter in "abcdef" if getattr(args, letter)]
    return partners(args.truth, files, args.mapping or [])


def partners(truth: Path, files: list[Path] | None = None,
             mappings: list[Path] | None = None) -> list[Partner]:
    """The exports and their mapping files: ``files`` with ``mappings`` (default: the
    mapping beside each), or the files the ``mappings`` name (default: every mapping
    beside the truth file)."""
    from agent import _mapping

    if files:
        mappings = mappings or [f.with_name(f.stem + ".mapping.toml") for f in files]
        if len(mappings) != len(files):
            raise InvalidInput("give one --mapping per export, in the same order")
        pairs = list(zip(files, mappings, strict=True))
    else:
        found = mappings or sorted(truth.parent.glob("*.mapping.toml"))
        if not found:
            raise InvalidInput("give the exports (--a, --b, ...) or their --mapping files "
                               "(none lies beside the truth file)")
        pairs = []
        for mapping in found:
            described = _mapping.load_mapping(mapping)
            if not described.file:
                raise InvalidInput(f"{mapping} names no file: give the export with --a")
            pairs.append((mapping.parent / described.file, mapping))
    if len(pairs) < 2:
        raise InvalidInput("linkage needs at least two exports")
    return [Partner(path.stem.lower().replace("_", "-"), mapping, path)
            for path, mapping in pairs]


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float
    predicted_pairs: int
    true_pairs: int

    @staticmethod
    def of(predicted: dict[tuple[str, str], object],
           truth: dict[tuple[str, str], str]) -> Scores:
        def pairs(counts: Counter[Any]) -> int:
            return sum(n * (n - 1) // 2 for n in counts.values())

        true_pairs = pairs(Counter(truth.values()))
        known = {r: c for r, c in predicted.items() if r in truth}
        predicted_pairs = pairs(Counter(known.values()))
        both = pairs(Counter((c, truth[r]) for r, c in known.items()))
        precision = both / predicted_pairs if predicted_pairs else 1.0
        recall = both / true_pairs if true_pairs else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return Scores(precision, recall, f1, predicted_pairs, true_pairs)


@dataclass
class Result:
    records: int = 0
    invalid: int = 0
    seconds: float = 0.0
    persons: Scores | None = None
    households: Scores | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@contextmanager
def _group_timer() -> Iterator[dict[str, float]]:
    """Time spent inside libsodium's group operations (exchange._group), in any thread."""
    from exchange import _group

    names = ("hash_to_group", "scalar_mult", "scalar_mult_base", "scalar_invert",
             "element_add", "hash_to_scalar", "scalar_random", "scalar_mul", "scalar_sub")
    spent = {"seconds": 0.0, "calls": 0.0}
    lock = threading.Lock()
    originals = {n: getattr(_group, n) for n in names}

    def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                took = time.perf_counter() - start
                with lock:
                    spent["seconds"] += took
                    spent["calls"] += 1
        return run

    for n in names:
        setattr(_group, n, timed(originals[n]))
    try:
        yield spent
    finally:
        for n, fn in originals.items():
            setattr(_group, n, fn)


def _truth(path: Path) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    persons, households = {}, {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ref = (row["partner"].lower().replace("_", "-"), row["case_ref"].strip())
            persons[ref], households[ref] = row["person_id"], row["household_id"]
    return persons, households


def _main(args: argparse.Namespace) -> int:
    partners = _partners(args)
    persons, households = _truth(args.truth)
    institutions = args.institutions or args.truth.with_name("institutions.csv")
    profile_text = (args.profile.read_text(encoding="utf-8") if args.profile else
                    linkage.DEFAULT_PROFILE.source)
    with ExitStack() as stack:
        data_dir = args.data_dir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="samenloop-bench-")))
        data_dir.mkdir(parents=True, exist_ok=True)
        private = _private(partners, profile_text,
                           institutions if institutions.exists() else None, data_dir)
    private.persons = Scores.of(private.extra.pop("_persons"),  # type: ignore[arg-type]
                                persons)
    private.households = Scores.of(private.extra.pop("_households"),  # type: ignore[arg-type]
                                   households)
    clear = _plaintext(partners, institutions if institutions.exists() else None)
    clear.persons = Scores.of(clear.extra.pop("_persons"), persons)  # type: ignore[arg-type]
    clear.households = Scores.of(clear.extra.pop("_households"),  # type: ignore[arg-type]
                                 households)
    if args.json:
        print(json.dumps({"private": _as_dict(private), "plaintext": _as_dict(clear)},
                         indent=2))
        return 0
    _print(private, clear, len(persons))
    return 0


def _as_dict(result: Result) -> dict[str, Any]:
    return {"records": result.records, "invalid": result.invalid,
            "seconds": round(result.seconds, 3), "records_per_second": round(result.rate(), 1),
            "persons": result.persons.__dict__ if result.persons else None,
            "households": result.households.__dict__ if result.households else None,
            **{k: round(v, 3) for k, v in result.extra.items()}}


def _print(private: Result, clear: Result, truth_records: int) -> None:
    assert private.persons is not None
    assert private.households is not None
    assert clear.persons is not None
    assert clear.households is not None
    print(f"{truth_records} records in the truth; {private.invalid} rows the agents could "
          "not use (reported by row and field)")
    print(f"{'':26}{'private (OPRF tokens)':>24}{'plaintext baseline':>22}")
    for label, a, b in (("person links", private.persons, clear.persons),
                        ("household links", private.households, clear.households)):
        for metric in ("precision", "recall", "f1"):
            print(f"{label + ' ' + metric:26}{getattr(a, metric):24.4f}"
                  f"{getattr(b, metric):22.4f}")
    print(f"{'seconds':26}{private.seconds:24.2f}{clear.seconds:22.2f}")
    print(f"{'records per second':26}{private.rate():24.1f}{clear.rate():22.1f}")
    print(f"cost of privacy: {private.seconds / max(clear.seconds, 1e-9):.1f} x the "
          "plaintext time")
    per = private.extra
    print(f"pseudonymisation: {per['pseudonymise_us_per_record']:.0f} us per record, floor "
          f"(group operations) {per['floor_us_per_record']:.0f} us, ratio "
          f"{per['pseudonymise_us_per_record'] / max(per['floor_us_per_record'], 1e-9):.2f}; "
          f"{per['elements_per_record']:.1f} OPRF elements per record after the run's cache")


def survey(partners: list[Partner]) -> tuple[set[str], set[str], int]:
    """The regions and categories the exports' rows name, and how many rows there are."""
    from agent import _mapping

    regions, categories, rows = set(), set(), 0
    for partner in partners:
        for row in _mapping.read(_mapping.load_mapping(partner.mapping), partner.path):
            rows += 1
            if isinstance(row, _mapping.MappedRow):
                regions.add(row.values.get("region", ""))
                categories.add(row.values.get("category", ""))
    return regions, categories, rows


def _private(partners: list[Partner], profile: str, institutions: Path | None,
             root: Path) -> Result:
    from agent import Admin, AdminSettings, Agent, AgentSettings
    from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice

    regions, categories, rows = survey(partners)
    keyservice = start_keyservice(KeyServiceSettings(
        listen="127.0.0.1:0", rate_per_minute=10**9, rate_burst=10**9),
        key=crypto.OprfKey.generate())
    hub = start_hub(HubSettings(listen="127.0.0.1:0", database_url=f"sqlite:///{root}/hub.db",
                                checkpoint_key=root / "hub-checkpoint.key", migrate=True,
                                oversight_organisations=(MUNICIPALITY,), sweep_seconds=0))
    result = Result(records=rows)
    try:
        coordinator = crypto.EnvelopeKey.generate()
        with Admin(AdminSettings(organisation=MUNICIPALITY, hub=hub.address)) as admin:
            admin.organisation(MUNICIPALITY, "Gemeente")
            for partner in partners:
                admin.organisation(partner.label, partner.label)
            admin.coordinator("regie", MUNICIPALITY, "Regie", "050 1234567", "",
                              coordinator.public_key)
            (root / "profile.toml").write_text(profile)
            made, _ = admin.profile(root / "profile.toml")
            (root / "covenant.toml").write_text(_covenant(
                [p.label for p in partners], sorted(regions - {""}),
                sorted(categories - {""}), made.profile_id))
            admin.covenant(root / "covenant.toml")

        def agent(org: str) -> Agent:
            return Agent(AgentSettings(organisation=org, hub=hub.address,
                                       keyservice=keyservice.address, batch_size=256,
                                       state_database=f"sqlite:///{root}/{org}.db"))

        if institutions is not None:
            with agent(MUNICIPALITY) as municipality:
                municipality.exclude_addresses(institutions)
        elements = 0.0
        with _group_timer() as spent:
            start = time.perf_counter()
            pseudonymising = 0.0
            for partner in partners:
                with agent(partner.label) as a:
                    summary = a.submit_file(partner.path, mapping=partner.mapping)
                    result.invalid += len(summary.invalid)
                    elements += a.stats["elements"]
                    pseudonymising += a.stats["seconds"]
                _log.info("partner submitted", partner=partner.label,
                          submitted=summary.submitted)
            result.seconds = time.perf_counter() - start
        submitted = max(rows - result.invalid, 1)
        result.extra.update(
            pseudonymise_us_per_record=pseudonymising / submitted * 1e6,
            floor_us_per_record=spent["seconds"] / submitted * 1e6,
            elements_per_record=elements / submitted)
        persons, households = _predictions(root, partners)
        result.extra["_persons"] = persons  # type: ignore[assignment]
        result.extra["_households"] = households  # type: ignore[assignment]
    finally:
        hub.stop(grace=1)
        keyservice.stop(grace=1)
    return result


def _covenant(parties: list[str], regions: list[str], categories: list[str],
              profile: str) -> str:
    quoted = ", ".join(f'"{p}"' for p in parties)
    return (f'id = "bench"\nname = "Benchmark covenant"\nlegal_basis = "benchmark"\n'
            f"valid_from = 2000-01-01\nvalid_until = 2199-12-31\ncoordinator = \"regie\"\n"
            f"parties = [{quoted}]\npurposes = [\"care_coordination\"]\n"
            f"regions = [{', '.join(repr(r).replace(chr(39), chr(34)) for r in regions)}]\n"
            f'linkage_profile = "{profile}"\n\n[categories]\n'
            + "".join(f'{c} = "covenant"\n' for c in categories))


def _predictions(root: Path, partners: list[Partner], hub_url: str | None = None) -> tuple[
        dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Each submitted record's person cluster and household, from the hub's database
    (``hub_url``, else root/hub.db) and the agents' state databases (root/LABEL.db)."""
    from sqlalchemy import select

    from agent._models import Submission
    from exchange.db import make_engine, session_factory
    from hub import _linkage
    from hub._models import ExcludedKey, LinkageProfileVersion, Signal

    case_of: dict[str, tuple[str, str]] = {}
    for partner in partners:
        engine = make_engine(f"sqlite:///{root}/{partner.label}.db")
        with session_factory(engine)() as s:
            for sid, case in s.execute(select(Submission.signal_id, Submission.case_ref)
                                       .where(Submission.state == "submitted")):
                case_of[sid] = (partner.label, case)
        engine.dispose()
    engine = make_engine(hub_url or f"sqlite:///{root}/hub.db")
    try:
        with session_factory(engine)() as s:
            profiles = {f"{r.id}@v{r.version}": linkage.Profile(
                **{**linkage.parse_profile(r.source).__dict__, "version": r.version})
                for r in s.scalars(select(LinkageProfileVersion))}
            skip = {(int(k), v) for k, v in s.execute(select(ExcludedKey.kind,
                                                             ExcludedKey.value))}
            signals = s.scalars(select(Signal)).all()
            keyed = [(sig.id, sig.profile, _linkage.with_region(
                ((k.kind, k.value) for k in sig.keys), sig.region)) for sig in signals]
            households = {case_of[sig.id]: sig.household_id for sig in signals
                          if sig.id in case_of}
    finally:
        engine.dispose()
    persons: dict[tuple[str, str], str] = {}
    def profile(ref: str) -> linkage.Profile | None:
        return profiles.get(linkage.profile_ref_of(ref))

    for n, part in enumerate(_linkage.persons(keyed, skip, profile)):
        for i in part:
            if keyed[i][0] in case_of:
                persons[case_of[keyed[i][0]]] = f"p{n}"
    return persons, households


def excluded_addresses(institutions: Path) -> set[str]:
    """The address keys (in the clear) of the institutions' CSV; rows without a valid
    address are left out."""
    from agent import _normalise as norm
    from agent import _source

    excluded: set[str] = set()
    for _, cells in _source.read_rows(institutions):
        try:
            excluded.add(norm.address_key(norm.postcode(cells.get("postcode", "")),
                                          norm.house_number(
                f"{cells.get('house_number', '')} "
                f"{cells.get('house_addition', '')}".strip())))
        except norm.FieldError:
            continue
    return excluded


def _plaintext(partners: list[Partner], institutions: Path | None) -> Result:
    from agent import _mapping
    from hub import _baseline

    excluded = excluded_addresses(institutions) if institutions is not None else set()
    result = Result()
    records = []
    start = time.perf_counter()
    for partner in partners:
        for row in _mapping.read(_mapping.load_mapping(partner.mapping), partner.path):
            result.records += 1
            clear = (_baseline.clear_record(partner.label, row.values)
                     if isinstance(row, _mapping.MappedRow) else None)
            if clear is None:
                result.invalid += 1
            else:
                records.append(clear)
    person_of, household_of = _baseline.link(records, excluded)
    result.seconds = time.perf_counter() - start
    result.extra["_persons"] = {r.ref: f"p{c}" for r, c in  # type: ignore[assignment]
                                zip(records, person_of, strict=True)}
    result.extra["_households"] = {r.ref: f"h{c}" for r, c in  # type: ignore[assignment]
                                   zip(records, household_of, strict=True)}
    return result

