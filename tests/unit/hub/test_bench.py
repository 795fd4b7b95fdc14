"""`samenloop bench linkage`: its scoring and the plaintext baseline (the whole command:
tests/integration/test_bench.py)."""

from __future__ import annotations

import pytest

from hub import _baseline
from hub._bench import Scores

# -- scoring over pairs of records -------------------------------------------------------


def test_scores_count_pairs_of_records() -> None:
    truth = {("a", "1"): "X", ("b", "1"): "X", ("c", "1"): "X", ("a", "2"): "Y"}
    # one of the three true pairs found, and one false pair (a/2 with c/1)
    predicted = {("a", "1"): 1, ("b", "1"): 1, ("c", "1"): 2, ("a", "2"): 2}
    scores = Scores.of(predicted, truth)
    assert (scores.true_pairs, scores.predicted_pairs) == (3, 2)
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_scores_ignore_records_outside_the_truth_and_nothing_found_is_not_precise_loss(
) -> None:
    truth = {("a", "1"): "X", ("b", "1"): "X"}
    assert Scores.of({("a", "1"): 1, ("b", "1"): 1, ("z", "9"): 1}, truth).precision == 1.0
    nothing = Scores.of({("a", "1"): 1, ("b", "1"): 2}, truth)
    assert (nothing.precision, nothing.recall, nothing.f1) == (1.0, 0.0, 0.0)


# -- the plaintext baseline ---------------------------------------------------------------


def _row(case: str, **values: str) -> dict[str, str]:
    return {"case_ref": case, **values}


def test_the_baseline_links_a_typo_and_a_missing_bsn_but_not_a_namesake() -> None:
    a = _baseline.clear_record("p1", _row("1", bsn="111222333", given_names="Johanna",
                                          surname="Jansen", date_of_birth="1980-04-02",
                                          postcode="1234AB", house_number="5"))
    typo = _baseline.clear_record("p2", _row("1", given_names="Johnana", surname="Jansen",
                                             date_of_birth="1980-04-02"))
    namesake = _baseline.clear_record("p3", _row("1", given_names="Johanna",
                                                 surname="Jansen",
                                                 date_of_birth="1966-11-19"))
    assert a is not None and typo is not None and namesake is not None
    assert _baseline.same_person(a, typo)
    assert not _baseline.same_person(a, namesake)
    persons, _ = _baseline.link([a, typo, namesake], set())
    assert persons[0] == persons[1] != persons[2]


def test_the_baseline_refuses_what_the_agent_refuses() -> None:
    assert _baseline.clear_record("p1", _row("1", bsn="123456789")) is None  # elfproef
    assert _baseline.clear_record("p1", _row("1", given_names="Jan")) is None  # nothing
