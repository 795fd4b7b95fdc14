"""`samenloop bench linkage`, a whole run of the real path (key service, hub and agents over
gRPC on loopback) and the plaintext baseline on synthetic data."""

from __future__ import annotations

import json
import math
import runpy
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exchange import checkpoint, linkage
from exchange.cli import main
from exchange.db import make_engine, migrate
from hub._core import Hub
from hub._server import MIGRATIONS
from tests.support import access, setup_registry, signal


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "data"
    assert main(["synth", "--households", "25", "--level", "easy", "--seed", "4",
                 "--out", str(out)]) == 0
    return out


def test_bench_linkage_runs_the_real_path_and_the_baseline(
        synthetic: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    keep = tmp_path / "run"
    assert main(["bench", "linkage", "--truth", str(synthetic / "truth.csv"),
                 "--data-dir", str(keep), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    truth_rows = len((synthetic / "truth.csv").read_text().splitlines()) - 1
    for side in ("private", "plaintext"):
        got = result[side]
        assert got["records"] == truth_rows
        assert got["persons"]["true_pairs"] > 0 and got["households"]["true_pairs"] > 0
        # easy data: both sides find nearly everything and invent nothing
        assert got["persons"]["precision"] >= 0.95 and got["persons"]["recall"] >= 0.9
        assert got["households"]["precision"] >= 0.95
        assert got["households"]["recall"] >= 0.9
    private = result["private"]
    assert 0 < private["floor_us_per_record"] <= private["pseudonymise_us_per_record"]
    assert private["elements_per_record"] >= 1
    # the run went through a real hub and agents, whose databases it kept as asked
    assert (keep / "hub.db").exists()
    assert sorted(p.name for p in keep.glob("partner*.db")) == [
        "partner1.db", "partner2.db", "partner3.db"]
    # the tuning tool, on clear tokens, finds exactly what the real path found
    clear = runpy.run_path(str(Path(__file__).parents[2] / "bench" / "clear_tokens.py"))
    for what, got in clear["scores"](synthetic).items():
        assert (got.precision, got.recall, got.predicted_pairs) == (
            private[what]["precision"], private[what]["recall"],
            private[what]["predicted_pairs"]), what


BENCH = Path(__file__).parents[2] / "bench"


def test_the_weight_fit_recovers_log_odds_and_keeps_fixed_weights() -> None:
    fit = runpy.run_path(str(BENCH / "fit_weights.py"))["fit"]
    # one pair in five is one person without feature "a", four in five with it
    data = Counter({(("a",), True): 80, (("a",), False): 20, ((), True): 20,
                    ((), False): 80})
    weights, intercept = fit(data, {}, l2=0.0)
    assert intercept == pytest.approx(math.log(20 / 80), abs=1e-6)
    assert weights["a"] == pytest.approx(math.log(80 / 20) - math.log(20 / 80), abs=1e-6)
    # a fixed feature keeps its log-odds and the others fit around it
    data[(("a", "b"), True)] += 50
    data[(("a", "b"), False)] += 50
    weights, _ = fit(data, {"b": -1.0}, l2=0.0)
    assert weights["b"] == -1.0 and weights["a"] > 0


def test_the_weight_fit_prints_a_profile_that_scores(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/fit_weights.py on synthetic exports: a [score] table the profile parser
    takes, scored on the same exports."""
    synthetic = tmp_path / "hard"
    assert main(["synth", "--households", "150", "--level", "hardest", "--seed", "2",
                 "--out", str(synthetic)]) == 0
    script = runpy.run_path(str(BENCH / "fit_weights.py"))
    found = script["examples"](synthetic, linkage.DEFAULT_PROFILE.source)
    assert sum(n for (_, same), n in found.items() if same) > 0
    assert all(not {"twins", "no_name", "bsn"} & set(p) for p, _ in found)  # rules
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["fit_weights.py", str(synthetic), "--test",
                                      str(synthetic)])
    script["main"]()
    out = capsys.readouterr().out
    table = out.split("[score]")[1].split("\n# ")[0]
    # every feature printed is one the profile knows (the parser refuses others), and the
    # fit finds what agreement and disagreement say
    profile = linkage.parse_profile('id = "x"\nname = "X"\n[score]' + table)
    assert len(profile.weights) > 5
    assert profile.weight("birth_exact") > 0 > profile.weight("birth_differs")
    assert profile.weight("given_exact") > 0 > profile.weight("given_low")
    assert "persons    precision" in out and "households precision" in out


def test_bench_linkage_says_what_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("partner,case_ref,person_id,household_id\n")
    assert main(["bench", "linkage", "--truth", str(truth)]) == 1
    err = capsys.readouterr().err
    assert "--mapping" in err and "beside the truth file" in err


@pytest.mark.postgres
def test_the_ingest_benchmarks_raw_side_writes_the_rows_the_hub_wrote(
        postgres_url: str, tmp_path: Path) -> None:
    """bench/ingest.py's ratio compares the hub with inserting the same rows raw: after a
    hub has ingested signals (matches, alerts, log events), its raw side must leave a
    fresh database holding exactly the rows the hub's holds, with executemany and COPY."""
    ingest = runpy.run_path(str(Path(__file__).parents[2] / "bench" / "ingest.py"))
    engine = make_engine(postgres_url)
    migrate(engine, MIGRATIONS)
    hub = Hub(engine, signer=checkpoint.CheckpointSigner.load_or_create(
        tmp_path / "cp.key", "test.example/hub"))
    setup_registry(hub)
    for org, category in (("org-a", "youth_care"), ("org-b", "housing")):
        items = [signal(hub, org, person=f"p{i}", category=category) for i in range(7)]
        assert all(isinstance(r, tuple) for r in hub.submit_many(access(org), items))
    hub.sign_if_due()
    hub.close()
    rows = ingest["written"](postgres_url)
    assert {name for name, r in rows.items() if r} >= {
        "households", "signals", "signal_keys", "envelopes", "matches", "alerts",
        "alert_signals", "alert_feed", "audit_events", "audit_nodes", "audit_checkpoints"}

    def canonical(tables: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
        return {name: sorted(repr(sorted(r.items())) for r in table)
                for name, table in tables.items()}

    for copy in (False, True):
        with ingest["fresh_database"](postgres_url, "raw") as raw_url:
            ingest["raw"](raw_url, rows, 3, 2, copy=copy)
            assert canonical(ingest["written"](raw_url)) == canonical(rows)
