"""Linkage decisions recomputed on clear tokens: for tuning a linkage profile quickly.

The OPRF is deterministic, so two records share a pseudonym exactly when they share the
clear token it was made from. This script makes each record's tokens as the agent does
(`agent._source.record` with the profile), skips the OPRF, and links them with the hub's
own code (`hub._linkage.persons` and `components`): the person and household links it
scores are those of `samenloop bench linkage` on the same exports, in seconds instead of
minutes, and at 100,000 records without onboarding them. Nothing here is private: use
synthetic data.

    samenloop synth --households 2000 --level hardest --seed 1 --out /tmp/syn
    python bench/clear_tokens.py /tmp/syn [--profile profile.toml]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from agent import _mapping, _source
from exchange import linkage
from hub import _bench, _linkage


@dataclass(frozen=True)
class Exports:
    """The records of a directory's exports as the hub would hold them (clear tokens)."""

    refs: list[tuple[str, str]]  # (partner, case_ref) per signal
    signals: list[tuple[str, str | None, list[tuple[int, bytes]]]]  # as components() takes
    skip: set[tuple[int, bytes]]  # the excluded (institutional) address keys
    profile: linkage.Profile
    ref: str  # the signals' profile ref, as the hub stores it
    truth: Path


def exports(directory: Path, source: str | linkage.Profile = linkage.DEFAULT_PROFILE.source
            ) -> Exports:
    """The exports in ``directory`` (with their *.mapping.toml and truth.csv) made into
    tokens under the profile ``source`` (TOML, or a parsed one), as the agents make them."""
    parsed = source if isinstance(source, linkage.Profile) else linkage.parse_profile(source)
    profile = linkage.Profile(**{**parsed.__dict__, "version": 1})
    ref = linkage.signal_ref(profile.ref, linkage.TOKEN_SCHEME)
    truth = directory / "truth.csv"
    refs: list[tuple[str, str]] = []
    signals: list[tuple[str, str | None, list[tuple[int, bytes]]]] = []
    for partner in _bench.partners(truth):
        for row in _mapping.read(_mapping.load_mapping(partner.mapping), partner.path):
            if not isinstance(row, _mapping.MappedRow):
                continue
            record = _source.record(row.row, row.values, profile)
            if isinstance(record, _source.RowError):
                continue
            refs.append((partner.label, record.case_ref))
            signals.append((str(len(signals)), ref, _linkage.with_region(
                ((int(kind), value) for kind, value in record.keys), record.region)))
    institutions = directory / "institutions.csv"
    skip = ({(_linkage.ADDRESS, key.encode())
             for key in _bench.excluded_addresses(institutions)}
            if institutions.exists() else set())
    return Exports(refs, signals, skip, profile, ref, truth)


def scores(directory: Path, source: str | linkage.Profile = linkage.DEFAULT_PROFILE.source
           ) -> dict[str, _bench.Scores]:
    """Person and household links of the exports in ``directory`` under the profile
    ``source`` (TOML), scored against its truth.csv."""
    found = exports(directory, source)
    profiles = {found.ref: found.profile}.get
    persons_truth, households_truth = _bench._truth(found.truth)
    out = {}
    for what, wanted in (("persons", persons_truth), ("households", households_truth)):
        parts = (_linkage.persons if what == "persons" else _linkage.components)(
            found.signals, found.skip, profiles)
        predicted: dict[tuple[str, str], object] = {
            found.refs[i]: f"c{n}" for n, part in enumerate(parts) for i in part}
        out[what] = _bench.Scores.of(predicted, wanted)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path,
                        help="exports with their *.mapping.toml and truth.csv (samenloop synth)")
    parser.add_argument("--profile", type=Path,
                        help="a linkage profile TOML (default: the built-in nl-household)")
    args = parser.parse_args()
    started = time.perf_counter()
    found = scores(args.directory, args.profile.read_text() if args.profile
                   else linkage.DEFAULT_PROFILE.source)
    print(f"token scheme {linkage.TOKEN_SCHEME}")
    for what, got in found.items():
        print(f"{what:10} precision {got.precision:.4f}  recall {got.recall:.4f}  "
              f"f1 {got.f1:.4f}  ({got.true_pairs:,} true pairs)")
    print(f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
