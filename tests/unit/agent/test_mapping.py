from __future__ import annotations

import csv
import json
import string
import tempfile
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, create_engine, insert

from agent import _mapping
from agent._mapping import MappedRow, Mapping, RowProblem, count_rows, parse_mapping, read
from exchange.errors import ConfigError, InvalidInput, Unavailable

CSV_MAPPING = """\
profile = "nl-household"
[source]
format = "csv"
date_format = "%d-%m-%Y"
[fields]
case_ref = "dossiernummer"
bsn = "bsn"
surname = "achternaam"
date_of_birth = "geboortedatum"
[constants]
category = "youth_care"
region = "GM0014"
"""

HEADER = ["dossiernummer", "bsn", "achternaam", "geboortedatum"]


def _csv(tmp_path: Path, rows: list[list[str]], *, delimiter: str = ",",
         header: list[str] | None = None, bom: bool = False, name: str = "in.csv") -> Path:
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(HEADER if header is None else header)
        writer.writerows(rows)
    return path


def _rows(mapping: Mapping, path: Path | None) -> list[MappedRow | RowProblem]:
    return list(read(mapping, path))


def _values(mapping: Mapping, path: Path | None) -> list[dict[str, str]]:
    out = []
    for row in read(mapping, path):
        assert isinstance(row, MappedRow), str(row)
        out.append(row.values)
    return out


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_mapping(text, "m.toml")
    return str(caught.value)


# --- the mapping file ----------------------------------------------------------------------


def test_a_csv_mapping() -> None:
    mapping = parse_mapping(CSV_MAPPING, "m.toml")
    assert mapping == Mapping(
        profile="nl-household", format="csv", delimiter=None, encoding="utf-8",
        date_format="%d-%m-%Y", url=None, url_env=None, query=None,
        fields={"case_ref": "dossiernummer", "bsn": "bsn", "surname": "achternaam",
                "date_of_birth": "geboortedatum"},
        constants={"category": "youth_care", "region": "GM0014"})


def test_an_sql_mapping_with_url_env_and_a_multiline_query() -> None:
    mapping = parse_mapping('''\
profile = "nl-household"
[source]
format = "sql"
url_env = "PARTNER_DB_URL"
query = """
  SELECT d.nr, p.bsn
  FROM dossier d JOIN persoon p ON p.id = d.persoon  -- the client
"""
[fields]
case_ref = "nr"
bsn = "bsn"
''', "m.toml")
    assert (mapping.format, mapping.url, mapping.url_env) == ("sql", None, "PARTNER_DB_URL")
    assert mapping.query is not None and "JOIN persoon" in mapping.query
    assert mapping.fields == {"case_ref": "nr", "bsn": "bsn"}
    assert mapping.constants == {}


def test_jsonl_mapping_and_delimiter_encoding_options() -> None:
    mapping = parse_mapping('profile = "p"\n[source]\nformat = "jsonl"\nencoding = "cp1252"\n'
                            '[fields]\ncase_ref = "case.id"\n', "m.toml")
    assert (mapping.format, mapping.encoding, mapping.fields) == (
        "jsonl", "cp1252", {"case_ref": "case.id"})
    tab = parse_mapping('profile = "p"\n[source]\nformat = "csv"\ndelimiter = "tab"\n'
                        '[fields]\ncase_ref = " nr "\n', "m.toml")
    assert (tab.delimiter, tab.fields) == ("\t", {"case_ref": "nr"})


def test_load_mapping_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(CSV_MAPPING, encoding="utf-8-sig")
    assert _mapping.load_mapping(path).fields["case_ref"] == "dossiernummer"
    with pytest.raises(ConfigError, match=r"mapping file .*nope.toml does not exist"):
        _mapping.load_mapping(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_bytes(b"profile = \"\xff\"")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        _mapping.load_mapping(tmp_path / "bad.toml")


def test_date_constants_are_stored_as_iso() -> None:
    mapping = parse_mapping(CSV_MAPPING + 'observed_on = "03-02-2026"\n'
                            'expires_on = "2027-01-31"\n', "m.toml")
    assert mapping.constants["observed_on"] == "2026-02-03"
    assert mapping.constants["expires_on"] == "2027-01-31"


def test_the_generators_extra_keys(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "partner1.mapping.toml"
    path.write_text('''\
# partner1.csv: written by samenloop synth.
profile = "nl-household"

[source]
file = "partner1.csv"
format = "csv"
delimiter = ";"
encoding = "utf-8"
date_format = "%d-%m-%Y"
list_separator = ","
full_name_order = "surname_first"  # like "van der Berg, Jan Pieter"

[fields]
case_ref = "dossiernummer"
full_name = "naam"
sex = "geslacht"
related_bsns = "gezin"

[values.sex]
"M" = "M"
"V" = "F"
"O" = ""
''', encoding="utf-8")
    mapping = _mapping.load_mapping(path)
    assert mapping.file == str(tmp_path / "sub" / "partner1.csv")
    assert (mapping.list_separator, mapping.full_name_order) == (",", "surname_first")
    assert mapping.values == {"sex": {"M": "M", "V": "F", "O": ""}}
    _csv(tmp_path / "sub", [["JZ-1", "Berg, van der, Jan", "v", " 111222333 , 123456782,"],
                            ["JZ-2", "", "O", ""], ["JZ-3", "", "W", ""], ["JZ-4", "", "", ""]],
         header=["dossiernummer", "naam", "geslacht", "gezin"], delimiter=";",
         name="partner1.csv")
    rows = _rows(mapping, None)  # no input path: the mapping's file
    assert rows[0] == MappedRow(1, {"case_ref": "JZ-1", "full_name": "Berg, van der, Jan",
                                    "sex": "F", "related_bsns": "111222333;123456782"})
    assert isinstance(rows[1], MappedRow) and rows[1].values["sex"] == ""
    assert rows[2] == RowProblem(3, "sex", "is not one of the codes in [values.sex]")
    assert isinstance(rows[3], MappedRow) and rows[3].values["sex"] == ""
    # An explicit input path wins over the mapping's file.
    other = _csv(tmp_path, [["JZ-9", "", "M", ""]],
                 header=["dossiernummer", "naam", "geslacht", "gezin"], delimiter=";")
    assert _values(mapping, other)[0]["case_ref"] == "JZ-9"


def test_files_the_generator_writes_are_read_without_problems(tmp_path: Path) -> None:
    synth = pytest.importorskip("agent._synth")
    files = synth.render(synth.generate(synth.SynthSpec(households=40, partners=3)))
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    mappings = sorted(tmp_path.glob("*.mapping.toml"))
    assert mappings
    for path in mappings:
        mapping = _mapping.load_mapping(path)
        rows = _rows(mapping, None)
        assert rows and all(isinstance(r, MappedRow) for r in rows), [str(r) for r in rows]
        assert count_rows(mapping, None) == len(rows)


SQL_HEAD = 'profile = "p"\n[source]\nformat = "sql"\n'
CSV_HEAD = 'profile = "p"\n[source]\nformat = "csv"\n'
CASE = '[fields]\ncase_ref = "nr"\n'


@pytest.mark.parametrize(("text", "expected"), [
    ('profiel = "p"\n' + CSV_HEAD + CASE, ["unknown key 'profiel'", ", line 1: "]),
    (CSV_HEAD + CASE + "[field]\nbsn = \"x\"\n", ["unknown table [field]", ", line 6: "]),
    (CSV_HEAD + 'delimeter = ";"\n' + CASE,
     ["unknown key 'delimeter' in [source]", ", line 4: ", "known: date_format, delimiter"]),
    (CSV_HEAD + CASE + 'naam = "naam"\n', ["unknown profile field 'naam' in [fields]",
                                           ", line 6: ", "known: case_ref, bsn"]),
    (CSV_HEAD + CASE + 'bsn = "a"\nbsn = "b"\n',
     ["field 'bsn' is mapped twice in [fields] (lines 6 and 7)"]),
    (CSV_HEAD + CASE + 'region = "regio"\n[constants]\nregion = "GM0014"\n',
     ["m.toml, line 8: field 'region' is mapped twice: in [fields] (line 6) and in [constants]"]),
    (CSV_HEAD + '[fields]\nbsn = "bsn"\n', ["[fields] must map case_ref"]),
    (CSV_HEAD, ["[fields] is missing"]),
    (CSV_HEAD + 'query = "SELECT 1"\n' + CASE,
     ["'query' in [source] is for format sql, not csv", ", line 4: "]),
    (CSV_HEAD + 'url = "sqlite:///x.db"\n' + CASE, ["'url' in [source] is for format sql"]),
    (CSV_HEAD.replace("csv", "jsonl") + 'delimiter = ";"\n' + CASE,
     ["'delimiter' in [source] is for format csv, not jsonl", ", line 4: "]),
    (SQL_HEAD + 'encoding = "utf-8"\nurl = "sqlite:///x.db"\nquery = "SELECT 1"\n' + CASE,
     ["'encoding' in [source] is for format csv and jsonl, not sql"]),
    ('profile = "p"\n[source]\n' + CASE, ["'format' is missing from [source]", ", line 2: "]),
    ('profile = "p"\n[source]\nformat = "xlsx"\n' + CASE,
     ["format must be csv, jsonl or sql", ", line 3: "]),
    ('profile = "p"\n' + CASE, ["[source] is missing"]),
    ("[source]\nformat = 'csv'\n" + CASE, ["'profile' is missing"]),
    ('profile = "NL Household"\n[source]\nformat = "csv"\n' + CASE,
     ["profile must be 1-64 lowercase", ", line 1: "]),
    ('profile = "p"\nsource = "csv"\n' + CASE, ["'source' must be a table", ", line 2: "]),
    (CSV_HEAD + 'delimiter = "ab"\n' + CASE, ["delimiter must be one character", ", line 4: "]),
    (CSV_HEAD + 'encoding = "klingon"\n' + CASE, ["encoding is not an encoding", ", line 4: "]),
    (CSV_HEAD + 'date_format = "%d-%m"\n' + CASE,
     ["date_format must be a strptime format with a day, a month and a year", ", line 4: "]),
    (CSV_HEAD + 'date_format = "%d-%m-%y"\n' + CASE, ["four-digit year (%Y), not %y"]),
    (CSV_HEAD + CASE + "bsn = 5\n", ["[fields] bsn must be a column name", ", line 6: "]),
    (CSV_HEAD + CASE + '[constants]\ncase_ref = "X"\n', ["case_ref cannot be a constant"]),
    (CSV_HEAD + CASE + "[constants]\nregion = 14\n", ["[constants] region must be a string"]),
    (CSV_HEAD + CASE + '[constants]\nobserved_on = "gisteren"\n',
     ["[constants] observed_on is not a date in the format YYYY-MM-DD", ", line 7: "]),
    (CSV_HEAD + CASE + '[constants]\nsurnaam = "x"\n', ["unknown profile field 'surnaam'"]),
    (CSV_HEAD + "[fields\n", ["m.toml: not valid TOML", "line 4"]),
    (SQL_HEAD + 'query = "SELECT 1"\n' + CASE, ["needs url", "or url_env", ", line 2: "]),
    (SQL_HEAD + 'url = "sqlite:///x.db"\nurl_env = "DB"\nquery = "SELECT 1"\n' + CASE,
     ["either url or url_env", ", line 5: "]),
    (SQL_HEAD + 'url_env = "MY-DB"\nquery = "SELECT 1"\n' + CASE,
     ["url_env must be the name of an environment variable", ", line 4: "]),
    (SQL_HEAD + 'url = "sqlite:///x.db"\n' + CASE, ["needs a query"]),
    (SQL_HEAD + 'url = "sqlite:///x.db"\nquery = "DELETE FROM x"\n' + CASE,
     ["query must be a SELECT (or WITH ... SELECT) statement, not DELETE", ", line 5: "]),
    (SQL_HEAD + 'url = "sqlite:///x.db"\nquery = "SELECT 1; DROP TABLE x"\n' + CASE,
     ["query must be a single statement", ", line 5: "]),
    (SQL_HEAD + 'url = "sqlite:///x.db"\nquery = "SELECT * FROM x FOR UPDATE"\n' + CASE,
     ["query must only read: it contains UPDATE"]),
    (SQL_HEAD + 'url = "sqlite:///x.db"\nquery = "-- nothing"\n' + CASE, ["query is empty"]),
    (SQL_HEAD + 'file = "x.csv"\n' + CASE, ["'file' in [source] is for format csv and jsonl"]),
    (CSV_HEAD + 'list_separator = ""\n' + CASE, ["list_separator must be a non-empty"]),
    (CSV_HEAD + 'full_name_order = "sideways"\n' + CASE,
     ["full_name_order must be surname_first or given_first", ", line 4: "]),
    (CSV_HEAD + CASE + '[values.sex]\n"V" = "F"\n',
     ["[values.sex] must name a field that is mapped in [fields]", ", line 6: "]),
    (CSV_HEAD + CASE + '[values.gender]\n"V" = "F"\n',
     ["[values.gender] must name a field that is a profile field"]),
    (CSV_HEAD + CASE + 'sex = "g"\n[values.sex]\n"V" = 2\n',
     ["every value in [values.sex] must be a string", ", line 8: "]),
])
def test_mapping_errors_name_the_key_and_line(text: str, expected: list[str]) -> None:
    message = _error(text)
    assert message.startswith("m.toml")
    for part in expected:
        assert part in message


def test_mapping_errors_never_repeat_a_value() -> None:
    secret = "hunter2"
    message = _error(SQL_HEAD + f'url = "postgresql://agent:{secret}@db:port/x"\n'
                     'query = "SELECT 1"\n' + CASE)
    assert "url is not a valid SQLAlchemy URL" in message and secret not in message
    message = _error(CSV_HEAD + CASE + f'[constants]\ndate_of_birth = "{secret}"\n')
    assert "date_of_birth is not a date" in message and secret not in message
    message = _error(CSV_HEAD + f'format_ = "{secret}"\n' + CASE)
    assert secret not in message


@pytest.mark.parametrize("query", [
    "SELECT 1", "select a from t;", "SELECT a FROM t; -- the end",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x", "(SELECT 1) UNION (SELECT 2)",
    "SELECT 'a;b', \"delete\" FROM t", "SELECT 1 /* ; drop */", "SELECT replace(a, ':', '%')",
    "SELECT copy, created, updated_at, deleted FROM x",
])
def test_queries_that_only_read(query: str) -> None:
    assert not _mapping.check_query(query).rstrip().endswith(";")


@pytest.mark.parametrize(("query", "problem"), [
    ("DELETE FROM x", "not DELETE"),
    ("SELECT 1; DROP TABLE x", "single statement"),
    ("select 1;\ndrop table x;", "single statement"),
    ("UPDATE x SET a = 1", "not UPDATE"),
    ("WITH d AS (DELETE FROM x RETURNING *) SELECT * FROM d", "contains DELETE"),
    ("SELECT * INTO kopie FROM x", "contains INTO"),
    ("SELECT 1 EXEC xp_cmdshell 'dir'", "contains EXEC"),  # T-SQL needs no ';'
    ("SELECT * FROM x LOCK IN SHARE MODE", "contains LOCK"),
    ("SELECT '\\''; DROP TABLE x; -- '", "single statement"),   # MySQL's backslash escape
    ("SELECT 1--1; DROP TABLE x", "single statement"),           # MySQL's '-- ' comment
    ("SELECT $$'$$; DROP TABLE x; --'", "single statement"),     # PostgreSQL's $$ quotes
    ("PRAGMA query_only=OFF", "not PRAGMA"),
    ("", "empty"),
])
def test_queries_that_are_refused(query: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        _mapping.check_query(query)


# --- CSV -----------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_delimiter_is_taken_from_the_header(tmp_path: Path, delimiter: str) -> None:
    mapping = parse_mapping(CSV_MAPPING, "m.toml")
    path = _csv(tmp_path, [["JZ-1", " 111222333 ", "Vries, de; jr", "09-12-1986"],
                           ["JZ-2", "", "Bakker", ""]], delimiter=delimiter)
    assert _values(mapping, path) == [
        {"case_ref": "JZ-1", "bsn": "111222333", "surname": "Vries, de; jr",
         "date_of_birth": "1986-12-09", "category": "youth_care", "region": "GM0014"},
        {"case_ref": "JZ-2", "bsn": "", "surname": "Bakker", "date_of_birth": "",
         "category": "youth_care", "region": "GM0014"},
    ]
    assert count_rows(mapping, path) == 2


def test_csv_explicit_delimiter_bom_and_quoted_newlines(tmp_path: Path) -> None:
    mapping = parse_mapping(CSV_MAPPING.replace('format = "csv"',
                                                'format = "csv"\ndelimiter = "|"'), "m.toml")
    path = _csv(tmp_path, [["JZ-1", "111222333", "line one\nline two", "01-02-2003"],
                           ["JZ-2", "", "Bakker\r\nJansen", ""],
                           ["JZ-3", "", "X", "31-12-1999"]], delimiter="|", bom=True)
    rows = _rows(mapping, path)
    assert [r.row for r in rows] == [1, 2, 3]
    assert isinstance(rows[0], MappedRow) and rows[0].values["surname"] == "line one\nline two"
    assert isinstance(rows[0], MappedRow) and rows[0].values["case_ref"] == "JZ-1"
    assert isinstance(rows[1], MappedRow) and rows[1].values["surname"] == "Bakker\r\nJansen"
    assert isinstance(rows[2], MappedRow) and rows[2].values["date_of_birth"] == "1999-12-31"


def test_csv_header_with_a_bom_and_semicolons_from_a_spreadsheet(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffdossiernummer;bsn;achternaam;geboortedatum\r\n"
                     "JZ-1;111222333;Vries;9-12-1986\r\n;;;\r\n\r\nJZ-4;;Ünal;\r\n"
                     .encode())
    rows = _rows(parse_mapping(CSV_MAPPING, "m.toml"), path)
    # A row of empty cells and a blank line are no records, but they are counted.
    assert [(r.row, r.values["case_ref"]) for r in rows if isinstance(r, MappedRow)] == [
        (1, "JZ-1"), (4, "JZ-4")]
    assert isinstance(rows[1], MappedRow) and rows[1].values["surname"] == "Ünal"


@pytest.mark.parametrize(("date_format", "written", "iso"), [
    (None, "1986-12-09", "1986-12-09"),
    (None, "09-12-1986", "1986-12-09"),
    (None, "9/12/1986", "1986-12-09"),
    (None, "09.12.1986", "1986-12-09"),
    (None, "19861209", "1986-12-09"),
    (None, "1986-12-09T08:30:00", "1986-12-09"),
    ("%d-%m-%Y", "09-12-1986", "1986-12-09"),
    ("%m/%d/%Y", "12/09/1986", "1986-12-09"),
    ("%Y%m%d", "19861209", "1986-12-09"),
    ("%d %B %Y", "9 December 1986", "1986-12-09"),
    ("%d-%m-%Y %H:%M", "09-12-1986 13:45", "1986-12-09"),
])
def test_dates_in_the_partners_format(tmp_path: Path, date_format: str | None, written: str,
                                      iso: str) -> None:
    text = CSV_MAPPING.replace('date_format = "%d-%m-%Y"\n', "" if date_format is None
                               else f'date_format = "{date_format}"\n')
    text = text.replace('[constants]', '[constants]\nobserved_on = "2026-01-05"')
    mapping = parse_mapping(text, "m.toml")
    (values,) = _values(mapping, _csv(tmp_path, [["JZ-1", "", "", written]]))
    assert values["date_of_birth"] == iso
    assert values["observed_on"] == "2026-01-05"


@pytest.mark.parametrize(("date_format", "written", "shown"), [
    ("%d-%m-%Y", "1986-12-09", "DD-MM-YYYY"),
    ("%d-%m-%Y", "31-02-1986", "DD-MM-YYYY"),
    ("%m/%d/%Y", "31/12/1986", "MM/DD/YYYY"),
    ("%d %B %Y", "9 Dec 1986", "DD Month YYYY"),
    (None, "9 december 1986", "YYYY-MM-DD (or DD-MM-YYYY, DD/MM/YYYY, DD.MM.YYYY, YYYYMMDD)"),
])
def test_a_date_that_does_not_parse_names_row_field_and_format_never_the_value(
        tmp_path: Path, date_format: str | None, written: str, shown: str) -> None:
    text = CSV_MAPPING.replace('"%d-%m-%Y"', f'"{date_format}"') if date_format else \
        CSV_MAPPING.replace('date_format = "%d-%m-%Y"\n', "")
    mapping = parse_mapping(text, "m.toml")
    rows = _rows(mapping, _csv(tmp_path, [["JZ-1", "", "", "01-01-2000" if date_format ==
                                           "%d-%m-%Y" else ""], ["JZ-2", "", "", written]]))
    assert isinstance(rows[0], MappedRow)
    assert rows[1] == RowProblem(2, "date_of_birth", f"is not a date in the format {shown}")
    assert str(rows[1]) == f"row 2: date_of_birth is not a date in the format {shown}"
    assert written not in str(rows[1])


def test_extra_values_are_a_row_problem_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("dossiernummer,bsn,achternaam,geboortedatum\n"
                    "JZ-1,111222333,Vries,01-01-2000,geheim\n"
                    "JZ-2,,Bakker,,\n"   # a trailing empty value is harmless
                    "JZ-3,,Jansen\n", encoding="utf-8")  # missing values are empty
    rows = _rows(parse_mapping(CSV_MAPPING, "m.toml"), path)
    assert rows[0] == RowProblem(1, "row", "has more values (5) than the header has "
                                           "columns (4)")
    assert "geheim" not in str(rows[0])
    assert isinstance(rows[1], MappedRow) and rows[1].values["surname"] == "Bakker"
    assert isinstance(rows[2], MappedRow) and rows[2].row == 3
    assert rows[2].values["date_of_birth"] == "" and rows[2].values["surname"] == "Jansen"


def test_a_missing_mapped_column_lists_the_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, [["JZ-1", "111222333", "Vries", "x"]],
                header=["dossiernummer", "BSN", "achternaam", "geboortedatum"], delimiter=";")
    with pytest.raises(InvalidInput) as caught:
        list(read(parse_mapping(CSV_MAPPING, "m.toml"), path))
    assert str(caught.value) == (
        f"{path}: the header has no column 'bsn' (mapped to bsn); the columns are: "
        "dossiernummer, BSN, achternaam, geboortedatum")


def test_a_file_without_a_header_row_is_not_repeated(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("JZ-1;111222333;Vries;09-12-1986\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        list(read(parse_mapping(CSV_MAPPING, "m.toml"), path))
    message = str(caught.value)
    assert "none of the mapped columns" in message and "4 column(s) separated by ';'" in message
    assert "111222333" not in message and "Vries" not in message


def test_a_duplicate_mapped_column_in_the_header(tmp_path: Path) -> None:
    path = _csv(tmp_path, [], header=[*HEADER, "bsn"])
    with pytest.raises(InvalidInput, match="column 'bsn' more than once"):
        list(read(parse_mapping(CSV_MAPPING, "m.toml"), path))


def test_unreadable_inputs_name_the_path_not_the_content(tmp_path: Path) -> None:
    mapping = parse_mapping(CSV_MAPPING, "m.toml")
    with pytest.raises(InvalidInput, match=r"cannot read .*missing.csv"):
        list(read(mapping, tmp_path / "missing.csv"))
    with pytest.raises(InvalidInput, match="it is a directory"):
        list(read(mapping, tmp_path))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InvalidInput, match="is empty"):
        list(read(mapping, empty))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"dossiernummer,bsn,achternaam,geboortedatum\nJZ-1,,M\xfcller,\n")
    with pytest.raises(InvalidInput) as caught:
        list(read(mapping, latin))
    assert str(caught.value) == f"{latin} is not a readable UTF-8 CSV file"
    cp1252 = parse_mapping(CSV_MAPPING.replace('format = "csv"',
                                               'format = "csv"\nencoding = "cp1252"'), "m")
    assert _values(cp1252, latin)[0]["surname"] == "Müller"
    huge = tmp_path / "huge.csv"
    huge.write_text("dossiernummer,bsn,achternaam,geboortedatum\nJZ-1,,\"" + "x" * 200_000
                    + "\",\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as caught:
        list(read(mapping, huge))
    assert str(caught.value) == (f"{huge} is not a readable CSV file (the record ending on "
                                 "line 2 is malformed)")


def test_an_input_file_is_needed_for_files_and_refused_for_sql(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an input file"):
        list(read(parse_mapping(CSV_MAPPING, "m.toml"), None))
    with pytest.raises(ConfigError, match="give no input file"):
        list(read(_sql_mapping("sqlite:///x.db", "SELECT 1 AS nr", {"case_ref": "nr"}),
                  tmp_path / "in.csv"))


# --- JSON Lines ----------------------------------------------------------------------------

JSONL_MAPPING = """\
profile = "nl-household"
[source]
format = "jsonl"
[fields]
case_ref = "id"
bsn = "person.bsn"
given_names = "person.name.given"
full_name = "person.name.full"
house_number = "address.number"
postcode = "address.postcode"
date_of_birth = "person.born"
related_bsns = "household"
sex = "flags.female"
professional_name = "worker.name"
[constants]
category = "debt"
"""


def _jsonl(tmp_path: Path, lines: list[object | str]) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def test_jsonl_flat_and_nested_keys_numbers_and_lists(tmp_path: Path) -> None:
    mapping = parse_mapping(JSONL_MAPPING, "m.toml")
    path = _jsonl(tmp_path, [
        {"id": "SD-1", "person": {"bsn": 111222333, "born": "1986-12-09",
                                  "name": {"given": " Anna Maria ", "full": "A.M. de Vries"}},
         "address": {"number": 12.0, "postcode": "9711 AB"},
         "household": ["123456782", 111222333, None, ""], "flags": {"female": True},
         "worker.name": "Petra Visser"},
        {"id": 7, "person": None, "address": {"number": 12.5}, "household": [],
         "flags": {"female": False}},
    ])
    assert _values(mapping, path) == [
        {"case_ref": "SD-1", "bsn": "111222333", "given_names": "Anna Maria",
         "full_name": "A.M. de Vries", "house_number": "12", "postcode": "9711 AB",
         "date_of_birth": "1986-12-09", "related_bsns": "123456782;111222333",
         "sex": "true", "professional_name": "Petra Visser", "category": "debt"},
        {"case_ref": "7", "bsn": "", "given_names": "", "full_name": "", "house_number": "12.5",
         "postcode": "", "date_of_birth": "", "related_bsns": "", "sex": "false",
         "professional_name": "", "category": "debt"},
    ]
    assert count_rows(mapping, path) == 2


def test_jsonl_bad_lines_are_row_problems_and_reading_goes_on(tmp_path: Path) -> None:
    mapping = parse_mapping(JSONL_MAPPING, "m.toml")
    path = _jsonl(tmp_path, [
        '{"id": "SD-1", "person": {"bsn": "111222333"',    # 1: cut off
        '["SD-2", "111222333"]',                            # 2: not an object
        "",                                                 # 3: blank
        {"id": "SD-4", "person": {"name": ["Anna", "Maria"]}},          # 4: list not allowed
        {"id": "SD-5", "person": {"name": {"given": {"first": "A"}}}},  # 5: an object
        {"id": "SD-6", "person": "Anna de Vries"},          # 6: path through a string
        '{"id": "SD-7", "address": {"number": NaN}}',       # 7: not JSON
        {"id": "SD-8", "person": {"born": "09-12-1986"}},   # 8: good
        {"id": "SD-9", "person": {"born": "9 dec 1986"}},   # 9: not a date
    ])
    rows = _rows(mapping, path)
    assert [str(r) for r in rows if isinstance(r, RowProblem)] == [
        "row 1: row is not valid JSON",
        "row 2: row is not a JSON object",
        "row 4: given_names cannot be found: 'person.name.given' leads through a value "
        "that is not a JSON object",
        "row 5: given_names is a JSON object, not a value (map a dotted path into it)",
        "row 6: bsn cannot be found: 'person.bsn' leads through a value that is not a JSON "
        "object",
        "row 7: row is not valid JSON",
        "row 9: date_of_birth is not a date in the format YYYY-MM-DD (or DD-MM-YYYY, "
        "DD/MM/YYYY, DD.MM.YYYY, YYYYMMDD)",
    ]
    good = [r for r in rows if isinstance(r, MappedRow)]
    assert [(r.row, r.values["date_of_birth"]) for r in good] == [(8, "1986-12-09")]
    assert all("Anna" not in str(r) and "111222333" not in str(r) for r in rows)


def test_jsonl_lists_only_for_related_bsns(tmp_path: Path) -> None:
    mapping = parse_mapping(JSONL_MAPPING, "m.toml")
    rows = _rows(mapping, _jsonl(tmp_path, [{"id": "SD-1", "worker": {"name": ["A", "B"]}},
                                            {"id": "SD-2", "household": [["111222333"]]}]))
    assert [str(r) for r in rows] == [
        "row 1: professional_name is a list; only related_bsns may be one",
        "row 2: related_bsns is a list of lists"]


def test_jsonl_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "M\xfcller"}\n')
    with pytest.raises(InvalidInput) as caught:
        list(read(parse_mapping(JSONL_MAPPING, "m.toml"), path))
    assert str(caught.value) == f"{path} is not a readable UTF-8 JSON Lines file"


# --- SQL -----------------------------------------------------------------------------------


def _sql_mapping(url: str | None, query: str, fields: dict[str, str], *,
                 url_env: str | None = None, date_format: str | None = None,
                 constants: dict[str, str] | None = None) -> Mapping:
    return Mapping(profile="nl-household", format="sql", delimiter=None, encoding="utf-8",
                   date_format=date_format, url=url, url_env=url_env, query=query,
                   fields=fields, constants=constants or {})


def _partner_database(url: str) -> None:
    engine = create_engine(url)
    meta = MetaData()
    dossier = Table("dossier", meta, Column("id", Integer, primary_key=True),
                    Column("nr", String(20)), Column("bsn", String(9)),
                    Column("geboren", Date), Column("geboren_tekst", String(10)),
                    Column("huisnummer", Integer), Column("Achternaam", String(50)))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(dossier), [
            {"id": i, "nr": f"JZ-{i}", "bsn": "111222333" if i == 1 else None,
             "geboren": date(1986, 12, 9) if i == 1 else None,
             "geboren_tekst": "09-12-1986" if i != 3 else "1986/12/09",
             "huisnummer": 12 if i == 1 else None, "Achternaam": " de Vries "}
            for i in range(1, 4)])
    engine.dispose()


SQL_FIELDS = {"case_ref": "nr", "bsn": "bsn", "date_of_birth": "geboren",
              "observed_on": "geboren_tekst", "house_number": "huisnummer",
              "surname": "Achternaam"}


def test_sql_reads_maps_and_streams(database_url: str) -> None:
    _partner_database(database_url)
    mapping = _sql_mapping(database_url, 'SELECT * FROM dossier WHERE nr LIKE \'JZ-%\' '
                           "AND nr <> 'x:y' ORDER BY id;", SQL_FIELDS, date_format="%d-%m-%Y",
                           constants={"region": "GM0014"})
    rows = _rows(mapping, None)
    assert rows[0] == MappedRow(1, {
        "case_ref": "JZ-1", "bsn": "111222333", "date_of_birth": "1986-12-09",
        "observed_on": "1986-12-09", "house_number": "12", "surname": "de Vries",
        "region": "GM0014"})
    assert isinstance(rows[1], MappedRow) and rows[1].values["bsn"] == ""
    assert rows[1].values["date_of_birth"] == "" and rows[1].values["house_number"] == ""
    assert rows[2] == RowProblem(3, "observed_on", "is not a date in the format DD-MM-YYYY")
    assert count_rows(mapping, None) == 3
    # Stopping early closes the cursor and the connection.
    stream = read(mapping, None)
    assert isinstance(next(stream), MappedRow)
    stream.close()  # type: ignore[attr-defined]


def test_sql_transaction_is_read_only(database_url: str) -> None:
    _partner_database(database_url)
    if database_url.startswith("postgresql"):
        setting = "current_setting('transaction_read_only')"
        expected = "on"
    else:
        setting = "(SELECT query_only FROM pragma_query_only())"
        expected = "1"
    mapping = _sql_mapping(database_url, f"SELECT nr, {setting} AS ro FROM dossier",
                           {"case_ref": "nr", "category": "ro"})
    assert {v["category"] for v in _values(mapping, None)} == {expected}
    assert _mapping.read_only_statement("postgresql") == "SET TRANSACTION READ ONLY"
    assert _mapping.read_only_statement("sqlite") == "PRAGMA query_only=ON"
    # A statement that writes is refused before it reaches the database.
    for query in ("DELETE FROM dossier", "SELECT 1 AS nr; DROP TABLE dossier"):
        with pytest.raises(ConfigError, match=r"SELECT|single statement"):
            list(read(_sql_mapping(database_url, query, {"case_ref": "nr"}), None))
    still = _sql_mapping(database_url, "SELECT nr FROM dossier", {"case_ref": "nr"})
    assert count_rows(still, None) == 3
    if database_url.startswith("postgresql"):
        # A SELECT that writes (a sequence advances) fails: the transaction is read-only.
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE SEQUENCE teller")
        engine.dispose()
        writing = _sql_mapping(database_url, "SELECT nextval('teller')::text AS nr",
                               {"case_ref": "nr"})
        with pytest.raises(InvalidInput, match=r"SQLSTATE 25006"):
            list(read(writing, None))


def test_sql_url_from_the_environment_and_column_checks(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _partner_database(database_url)
    mapping = _sql_mapping(None, "SELECT nr, bsn AS burgerservicenummer FROM dossier",
                           {"case_ref": "nr", "bsn": "burgerservicenummer"},
                           url_env="PARTNER_DB_URL", constants={"category": "housing"})
    monkeypatch.delenv("PARTNER_DB_URL", raising=False)
    with pytest.raises(ConfigError, match=r"PARTNER_DB_URL .* is not set"):
        list(read(mapping, None))
    monkeypatch.setenv("PARTNER_DB_URL", database_url)
    assert [v["category"] for v in _values(mapping, None)] == ["housing"] * 3
    missing = _sql_mapping(database_url, "SELECT nr, bsn FROM dossier",
                           {"case_ref": "nr", "surname": "achternaam"})
    with pytest.raises(InvalidInput) as caught:
        list(read(missing, None))
    assert str(caught.value) == ("the query's result has no column 'achternaam' (mapped to "
                                 "surname); its columns are: nr, bsn")
    # PostgreSQL folds unquoted names to lower case: a name differing in case still matches.
    folded = _sql_mapping(database_url, "SELECT nr AS Dossier FROM dossier",
                          {"case_ref": "DOSSIER"})
    assert len(_values(folded, None)) == 3


def test_sql_errors_never_show_values(tmp_path: Path) -> None:
    db = tmp_path / "partner.db"
    _partner_database(f"sqlite:///{db}")
    failing = _sql_mapping(f"sqlite:///{db}", "SELECT nr FROM nowhere WHERE x = 'geheim'",
                           {"case_ref": "nr"})
    with pytest.raises(InvalidInput) as caught:
        list(read(failing, None))
    assert str(caught.value) == ("the mapping's query failed in the partner database "
                                 "(OperationalError); run it there to see why")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(InvalidInput, match="there is no SQLite database at"):
        list(read(_sql_mapping(f"sqlite:///{tmp_path / 'none.db'}", "SELECT 1 AS nr",
                               {"case_ref": "nr"}), None))
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(ConfigError, match="no SQLAlchemy driver for 'mssql\\+nosuchdriver'"):
        list(read(_sql_mapping("mssql+nosuchdriver://h/db", "SELECT 1 AS nr",
                               {"case_ref": "nr"}), None))


def test_sql_connection_failure_hides_the_password() -> None:
    mapping = _sql_mapping("postgresql://agent:hunter2@127.0.0.1:1/partner", "SELECT 1 AS nr",
                           {"case_ref": "nr"})
    with pytest.raises(Unavailable) as caught:
        list(read(mapping, None))
    assert str(caught.value).startswith("cannot connect to the partner database (postgresql "
                                        "at 127.0.0.1)")
    assert "hunter2" not in str(caught.value)


# --- the round trip ------------------------------------------------------------------------

_NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                       blacklist_characters="\x00"),
                min_size=1, max_size=12).map(str.strip).filter(bool)
_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                        blacklist_characters="\x00"), max_size=20)
_DATE_FORMATS = [None, "%d-%m-%Y", "%Y%m%d", "%d/%m/%Y", "%m.%d.%Y"]


@st.composite
def _export(draw: st.DrawFn) -> tuple[dict[str, str], list[dict[str, str]], str, str | None,
                                       bool]:
    plain = [f for f in _mapping.FIELDS if f not in _mapping.DATE_FIELDS and f != "case_ref"]
    chosen = ["case_ref", *draw(st.lists(st.sampled_from([*plain, *_mapping.DATE_FIELDS]),
                                         unique=True, max_size=8))]
    names = draw(st.lists(_NAME, min_size=len(chosen), max_size=len(chosen),
                          unique=True))
    fields = dict(zip(chosen, names, strict=True))
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        row = {}
        for field in chosen:
            if field in _mapping.DATE_FIELDS:
                row[field] = draw(st.one_of(st.just(""), st.dates(date(1900, 1, 1),
                                                                  date(2099, 12, 31)).map(
                                                                      date.isoformat)))
            elif field == "case_ref":
                row[field] = draw(st.text(string.ascii_letters + string.digits + "-",
                                          min_size=1, max_size=10))
            else:
                row[field] = draw(_VALUE)
        rows.append(row)
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    return (fields, rows, delimiter, draw(st.sampled_from(_DATE_FORMATS)),
            draw(st.booleans()))


def _toml_string(value: str) -> str:
    """A TOML basic string, as the data generator writes them."""
    escaped = "".join(f"\\{ch}" if ch in '"\\' else f"\\u{ord(ch):04x}"
                      if ord(ch) < 0x20 or ord(ch) == 0x7F else ch for ch in value)
    return f'"{escaped}"'


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_export())
def test_csv_round_trip(export: tuple[dict[str, str], list[dict[str, str]], str, str | None,
                                      bool]) -> None:
    fields, rows, delimiter, date_format, say_delimiter = export
    source = ['format = "csv"']
    if say_delimiter:
        source.append(f"delimiter = {_toml_string(delimiter)}")
    if date_format:
        source.append(f"date_format = {_toml_string(date_format)}")
    text = ('profile = "nl-household"\n[source]\n' + "\n".join(source) + "\n[fields]\n"
            + "".join(f"{f} = {_toml_string(c)}\n" for f, c in fields.items()))
    mapping = parse_mapping(text, "m.toml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=delimiter)
            writer.writerow(fields.values())
            for row in rows:
                writer.writerow([
                    date.fromisoformat(row[f]).strftime(date_format or "%Y-%m-%d")
                    if f in _mapping.DATE_FIELDS and row[f] else row[f] for f in fields])
        got = _values(mapping, path)
    assert got == [{f: v.strip() for f, v in row.items()} for row in rows]
