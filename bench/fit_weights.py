"""Fit a linkage profile's weights to labelled data: logistic regression on decide()'s features.

The hub decides a pair of signals by adding up the weights of the features
``exchange.linkage.decide`` finds (given names alike, same date of birth, ...). Which
features a pair has does not depend on the weights, so the weights can be fitted: every
pair the hub would compare (sharing a blocking token or the building) in exports with a
truth file is one example, labelled by whether its two records are one person; an
L2-regularised logistic regression gives each feature its log-odds. The weights are
printed as a profile's ``[score]`` table, times three (the scale of the built-in
weights), placed so that the odds asked for (``--odds``) score 9: exactly one of the
birth-date features applies to every pair, so they absorb the intercept and the odds.
The table's threshold is the built-in one (7.5, below 9: persons are formed with
constraints, hub._linkage.persons) or ``--threshold``. Pairs that a rule decides
whatever the weights (two BSNs, twins, no name in common) are left out; the household
feature needs households, which pairs alone do not give, and keeps its weight.

The built-in weights (exchange/linkage.py) are this script's output, as printed, on seeds
4-9 of the hardest synthetic data with token scheme 4's one-typo tokens as first written
(commit 0d384a0, before they were padded and cut at 10 letters: run today, 15 weights
move by 0.1-0.2 and given_some by 0.5); seeds 1-3 measure them (docs/linkage.md):

    for s in 4 5 6 7 8 9; do samenloop synth --level hardest --seed $s --out /tmp/syn$s; done
    python bench/fit_weights.py /tmp/syn4 /tmp/syn5 /tmp/syn6 /tmp/syn7 /tmp/syn8 /tmp/syn9 \\
        --test /tmp/syn1 /tmp/syn2 /tmp/syn3

Nothing here is private: use synthetic data, or labelled data that may be read in the
clear.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# bench/ is no package: its sibling script is imported as a module from this directory
import clear_tokens

from exchange import linkage
from hub import _bench, _linkage

SCALE = 3.0  # the built-in weights are log-odds times three
ANCHOR = 9.0  # ... and the odds asked for score this
# decide() weighs exactly one of these per pair
BIRTH = ("birth_exact", "birth_near", "birth_differs", "birth_one", "birth_none")
Pattern = tuple[str, ...]


def examples(directory: Path, source: str) -> Counter[tuple[Pattern, bool]]:
    """(the features of a compared pair, whether it is one person): how many pairs."""
    found = clear_tokens.exports(directory, source)
    persons, _ = _bench._truth(found.truth)
    read = [_linkage.usable(keys, found.skip) for _, _, keys in found.signals]
    grouped = [_linkage.grouped(keys) for keys in read]
    groups = _linkage.compared_groups([ref for _, ref, _ in found.signals], read)
    pairs = {(i, j) for members in groups.values()
             for x, i in enumerate(members) for j in members[x + 1:]}
    out: Counter[tuple[Pattern, bool]] = Counter()
    for i, j in pairs:
        decision = linkage.decide(found.profile, grouped[i], grouped[j])
        if math.isinf(decision.score):  # two BSNs decide, or a rule (twins)
            continue
        same = persons[found.refs[i]] == persons[found.refs[j]]
        out[(tuple(sorted(name for name, _ in decision.parts)), same)] += 1
    return out


def fit(data: Counter[tuple[Pattern, bool]], fixed: dict[str, float], l2: float = 1.0,
        ) -> tuple[dict[str, float], float]:
    """Log-odds per feature and the intercept, by Newton's method over the distinct
    feature patterns; ``fixed`` features keep their log-odds."""
    names = sorted({n for pattern, _ in data for n in pattern} - set(fixed))
    index = {n: k + 1 for k, n in enumerate(names)}  # 0: the intercept
    rows: dict[Pattern, list[float]] = defaultdict(lambda: [0.0, 0.0])  # [ones, zeros]
    for (pattern, same), count in data.items():
        rows[pattern][0 if same else 1] += count
    size = len(names) + 1
    beta = [0.0] * size
    for _ in range(50):
        gradient = [0.0] * size
        hessian = [[0.0] * size for _ in range(size)]
        for pattern, (ones, zeros) in rows.items():
            active = [0] + [index[n] for n in pattern if n in index]
            z = sum(beta[k] for k in active) + sum(fixed.get(n, 0.0) for n in pattern)
            p = 1 / (1 + math.exp(-z))
            total = ones + zeros
            residual = ones - total * p
            weight = total * p * (1 - p)
            for a in active:
                gradient[a] += residual
                for b in active:
                    hessian[a][b] += weight
        for k in range(1, size):  # L2 on the features, not on the intercept
            gradient[k] -= l2 * beta[k]
            hessian[k][k] += l2
        step = _solve(hessian, gradient)
        beta = [b + s for b, s in zip(beta, step, strict=True)]
        if max(abs(s) for s in step) < 1e-9:
            break
    else:
        raise SystemExit("the fit did not converge in 50 steps: more data, or a larger --l2")
    return {n: beta[index[n]] for n in names} | fixed, beta[0]


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the Hessian is small, and positive
    definite with an L2 term: without one the birth features and the intercept are
    collinear)."""
    n = len(vector)
    a = [[*row, vector[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            for c in range(col, n + 1):
                a[r][c] -= factor * a[col][c]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (a[r][n] - sum(a[r][c] * out[c] for c in range(r + 1, n))) / a[r][r]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+",
                        help="exports with their *.mapping.toml and truth.csv (samenloop synth)")
    parser.add_argument("--profile", type=Path,
                        help="a linkage profile TOML (default: the built-in nl-household)")
    parser.add_argument("--fixed", action="append", default=[], metavar="FEATURE=WEIGHT",
                        help="keep a feature's weight (on the profile's scale), "
                             "e.g. region_differs=-12")
    parser.add_argument("--odds", type=float, default=1.4,
                        help="these log-odds score 9 (default 1.4: 4 to 1)")
    parser.add_argument("--l2", type=float, default=1.0,
                        help="the L2 penalty on the feature weights (default 1)")
    parser.add_argument("--threshold", type=float, default=linkage.DEFAULT_THRESHOLD,
                        help="the printed table's threshold (default: the built-in "
                        f"{linkage.DEFAULT_THRESHOLD}; the odds asked for score 9)")
    parser.add_argument("--test", type=Path, nargs="*", default=[],
                        help="score the fitted weights on these exports")
    args = parser.parse_args()
    source = args.profile.read_text() if args.profile else linkage.DEFAULT_PROFILE.source
    fixed = {}
    for item in args.fixed:
        name, _, value = item.partition("=")
        if name in BIRTH:
            parser.error(f"--fixed {name}: the birth features hold the intercept, fit them")
        fixed[name] = float(value) / SCALE
    started = time.perf_counter()
    data: Counter[tuple[Pattern, bool]] = Counter()
    for directory in args.directories:
        data.update(examples(directory, source))
    weights, intercept = fit(data, fixed, args.l2)
    # Exactly one birth feature applies to every pair: adding a constant to all of them
    # and to the threshold changes no decision. Shift them so that the odds score 9.
    shift = (ANCHOR / SCALE) - (args.odds - intercept)
    weights = {n: v + shift if n in BIRTH else v for n, v in weights.items()}
    threshold = args.threshold
    pairs = sum(data.values())
    ones = sum(n for (_, same), n in data.items() if same)
    print(f"# {pairs:,} compared pairs ({ones:,} one person) in {len(args.directories)} "
          f"directories, {time.perf_counter() - started:.1f} s; intercept {intercept:.3f}")
    base = linkage.parse_profile(source)
    unseen = sorted((set(base.weights) | set(linkage.DEFAULT_PROFILE_WEIGHTS)) - set(weights))
    if unseen:
        print(f"# not in the data, so left at the profile's weights: {', '.join(unseen)}")
    print("[score]")
    print(f"scheme = {linkage.DECISION_SCHEME}")
    print(f"threshold = {threshold:.1f}")
    for name, value in sorted(weights.items()):
        print(f"{name} = {SCALE * value:.1f}")
    if args.test:
        fitted = dataclasses.replace(base, threshold=threshold, weights={
            **base.weights, **{n: SCALE * v for n, v in weights.items()}})
        for directory in args.test:
            for what, got in clear_tokens.scores(directory, fitted).items():
                print(f"# {directory} {what:10} precision {got.precision:.4f}  "
                      f"recall {got.recall:.4f}")


if __name__ == "__main__":
    main()
