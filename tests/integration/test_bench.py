"""`samenloop bench linkage`, a whole run of the real path (key service, hub and agents over
gRPC on loopback) and the plaintext baseline on synthetic data."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from exchange.cli import main


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


def test_bench_linkage_says_what_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("partner,case_ref,person_id,household_id\n")
    assert main(["bench", "linkage", "--truth", str(truth)]) == 1
    err = capsys.readouterr().err
    assert "--mapping" in err and "beside the truth file" in err
