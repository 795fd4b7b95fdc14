"""`samenloop demo`, run through the real command, and what it leaves behind."""

from __future__ import annotations

import csv
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.integration.conftest import samenloop

SENSITIVE = ("bsn", "given_names", "surname", "date_of_birth", "street", "postcode")


def _personal_values(demo_dir: Path) -> set[str]:
    values: set[str] = set()
    for path in (demo_dir / "partners").glob("*.csv"):
        with path.open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for row in rows:
            for field in SENSITIVE:
                value = row[field].strip()
                if len(value) >= 3:
                    values |= {value, value.replace(" ", ""), value.upper().replace(" ", "")}
            if row["date_of_birth"]:
                day = row["date_of_birth"]
                # the date as the demo's agent normalises it, whatever the export's spelling
                parts = day.split("-")
                if len(parts[0]) == 2:
                    values.add("-".join(reversed(parts)))
    return values


def test_the_demo_tells_the_whole_story(demo_dir: Path) -> None:
    out = (demo_dir.parent / "stdout.txt").read_text()
    for phrase in ("is known at 2 organisations", "opens alert",
                   "so the hub holds the match", "category_not_covered",
                   "appeared on the coordinator's screen", "withdraws its signal",
                   "was closed (dissolved)", "access log verified",
                   "consistency proof", "intact", "who received data about her",
                   "opened her identity"):
        assert phrase in out
    assert "BSN " in out  # the coordinator's opened envelope shows the identity
    assert (demo_dir / "hub.db").exists()
    assert sorted(p.name for p in (demo_dir / "logs").iterdir()) == [
        "agent.log", "coordinator.log", "hub.log", "keyservice.log"]
    assert len(list((demo_dir / "partners").glob("*.csv"))) == 3


def _finder(values: set[str]) -> re.Pattern[str]:
    """Any of the values, a word of letters only where it stands on its own: a short
    name such as "Sem" turns up inside base64 (signatures, pseudonyms) by chance."""
    alone = "(?<![A-Za-z0-9+/]){}(?![A-Za-z0-9])"
    return re.compile("|".join(
        alone.format(re.escape(v)) if v.replace(" ", "").isalpha() else re.escape(v)
        for v in sorted(values, key=len, reverse=True)))


def test_the_privacy_check_finds_a_name_but_not_base64() -> None:
    found = _finder({"Sem", "123456782"})
    assert found.search('{"name": "Sem"}') and found.search("Sem de Vries")
    assert found.search("bsn=123456782") and found.search("x123456782y")
    assert not found.search("IBEsZhvhTTSemhsT4UNG") and not found.search("ab/Sem+")


def test_no_personal_data_in_the_hub_database_or_the_logs(demo_dir: Path) -> None:
    values = _personal_values(demo_dir)
    assert len(values) > 30
    found = _finder(values)
    assert (demo_dir / "logs" / "hub.log").stat().st_size > 0
    for path in (demo_dir / "logs").iterdir():
        text = path.read_text(encoding="utf-8")
        assert not found.search(text), f"{path.name} contains personal data"
    # every text stored in the hub's database (its binary columns hold pseudonyms,
    # hashes and ciphertexts, where a short name's bytes turn up by chance)
    with sqlite3.connect(demo_dir / "hub.db") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = "
                                           "'table'")]
        texts = [v for t in tables for row in db.execute(f'SELECT * FROM "{t}"')
                 for v in row if isinstance(v, str)]
    assert len(texts) > 100
    for text in texts:
        assert not found.search(text), "the hub database holds personal data"
    # and the raw files, for every value too long to turn up by chance
    for path in [demo_dir / "hub.db", *demo_dir.glob("hub.db-*")]:
        blob = path.read_bytes()
        for value in values:
            if len(value.encode()) >= 8:
                assert value.encode() not in blob, f"{path.name} contains personal data"
    stderr = (demo_dir.parent / "stderr.txt").read_text()
    assert not found.search(stderr)


def test_the_demo_database_verifies_offline(demo_dir: Path) -> None:
    result = samenloop("audit", "verify", "--database", f"sqlite:///{demo_dir / 'hub.db'}")
    assert result.returncode == 0, result.stderr
    assert "access log verified" in result.stdout


def _tampered(demo_dir: Path, tmp_path: Path, sql: str) -> tuple[int, str, list[str]]:
    copy = tmp_path / "hub.db"
    shutil.copy(demo_dir / "hub.db", copy)
    with sqlite3.connect(copy) as db:
        ids = [r[0] for r in db.execute("SELECT event_id FROM audit_events ORDER BY seq")]
        db.executescript(sql)
    result = samenloop("audit", "verify", "--database", f"sqlite:///{copy}")
    return result.returncode, result.stdout + result.stderr, ids


def test_editing_one_byte_of_an_audit_row_is_named(demo_dir: Path, tmp_path: Path) -> None:
    code, out, ids = _tampered(demo_dir, tmp_path, """
        UPDATE audit_events SET actor_user = substr(actor_user, 1, length(actor_user) - 1)
            || char(unicode(substr(actor_user, -1)) + 1) WHERE seq = 7;""")
    assert code == 1
    assert f"FAILED at event #7 (id {ids[7]})" in out


def test_deleting_an_audit_row_is_named(demo_dir: Path, tmp_path: Path) -> None:
    code, out, ids = _tampered(demo_dir, tmp_path, "DELETE FROM audit_events WHERE seq = 11;")
    assert code == 1
    assert "FAILED at event #11" in out and f"id {ids[12]}" in out


def test_reordering_audit_rows_is_named(demo_dir: Path, tmp_path: Path) -> None:
    code, out, ids = _tampered(demo_dir, tmp_path, """
        UPDATE audit_events SET seq = -1 WHERE seq = 4;
        UPDATE audit_events SET seq = 4 WHERE seq = 5;
        UPDATE audit_events SET seq = 5 WHERE seq = -1;""")
    assert code == 1
    assert f"FAILED at event #4 (id {ids[5]})" in out


@pytest.mark.parametrize("column", ["leaf_hash", "chain_hash", "detail", "occurred_at"])
def test_other_columns_are_covered_too(demo_dir: Path, tmp_path: Path, column: str) -> None:
    value = {"leaf_hash": "zeroblob(32)", "chain_hash": "zeroblob(32)",
             "detail": "'{}'", "occurred_at": "'2020-01-01 00:00:00.000000'"}[column]
    code, out, ids = _tampered(demo_dir, tmp_path,
                               f"UPDATE audit_events SET {column} = {value} WHERE seq = 9;")
    assert code == 1
    assert f"FAILED at event #9 (id {ids[9]})" in out
