"""Linkage decisions recomputed on clear tokens: for tuning a linkage profile quickly.

The OPRF is deterministic, so two records share a pseudonym exactly when they share the
clear token it was made from. This script makes each record's tokens as the agent does
(`agent._source.record` with the profile), skips the OPRF, and links them with the hub's
own code (`hub._linkage.components`): the person and household links it scores are those
of `samenloop bench linkage` on the same exports, in seconds instead of minutes, and at
100,000 records without onboarding them. Nothing here is private: use synthetic data.

    samenloop synth --households 2000 --level hardest --seed 1 --out /tmp/syn
    python bench/clear_tokens.py /tmp/syn [--profile profile.toml]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent import _mapping, _source
from agent import _normalise as norm
from exchange import linkage
from hub import _bench, _linkage

DEFAULT = 'id = "nl-household"\nname = "Dutch households"\n'


def _excluded(directory: Path) -> set[tuple[int, bytes]]:
    """The institutions' address keys (synth writes institutions.csv), as the hub's
    exclusion list."""
    path = directory / "institutions.csv"
    out: set[tuple[int, bytes]] = set()
    if not path.exists():
        return out
    for _, cells in _source.read_rows(path):
        try:
            number = norm.house_number(f"{cells.get('house_number', '')} "
                                       f"{cells.get('house_addition', '')}".strip())
            out.add((_linkage.ADDRESS,
                     norm.address_key(norm.postcode(cells.get("postcode", "")), number).encode()))
        except norm.FieldError:
            continue
    return out


def scores(directory: Path, source: str = DEFAULT) -> dict[str, _bench.Scores]:
    """Person and household links of the exports in ``directory`` under the profile
    ``source`` (TOML), scored against its truth.csv."""
    profile = linkage.Profile(**{**linkage.parse_profile(source).__dict__, "version": 1})
    ref = linkage.signal_ref(profile.ref, linkage.TOKEN_SCHEME)
    refs: list[tuple[str, str]] = []
    signals: list[tuple[str, str | None, list[tuple[int, bytes]]]] = []
    for mapping_path in sorted(directory.glob("*.mapping.toml")):
        mapping = _mapping.load_mapping(mapping_path)
        if not mapping.file:
            raise SystemExit(f"{mapping_path} reads an SQL query: export the rows to a file")
        export = mapping_path.parent / mapping.file
        label = export.stem.lower().replace("_", "-")
        for row in _mapping.read(mapping, export):
            if not isinstance(row, _mapping.MappedRow):
                continue
            record = _source.record(row.row, row.values, profile)
            if isinstance(record, _source.RowError):
                continue
            refs.append((label, record.case_ref))
            signals.append((str(len(signals)), ref,
                            [(int(kind), value) for kind, value in record.keys]))
    skip = _excluded(directory)
    profiles = {ref: profile}.get
    persons_truth, households_truth = _bench._truth(directory / "truth.csv")
    out = {}
    for what, households, truth in (("persons", False, persons_truth),
                                    ("households", True, households_truth)):
        parts = _linkage.components(signals, skip, profiles, households=households)
        predicted: dict[tuple[str, str], object] = {
            refs[i]: f"c{n}" for n, part in enumerate(parts) for i in part}
        out[what] = _bench.Scores.of(predicted, truth)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path,
                        help="exports with their *.mapping.toml and truth.csv (samenloop synth)")
    parser.add_argument("--profile", type=Path,
                        help="a linkage profile TOML (default: the built-in nl-household)")
    args = parser.parse_args()
    started = time.perf_counter()
    found = scores(args.directory, args.profile.read_text() if args.profile else DEFAULT)
    print(f"token scheme {linkage.TOKEN_SCHEME}")
    for what, got in found.items():
        print(f"{what:10} precision {got.precision:.4f}  recall {got.recall:.4f}  "
              f"f1 {got.f1:.4f}  ({got.true_pairs:,} true pairs)")
    print(f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
