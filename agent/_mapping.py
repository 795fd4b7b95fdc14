"""Reading a partner's own records through a mapping file: which of its columns hold
which field of a linkage profile, and where the records come from (CSV, JSON Lines, or
an SQL query against the partner's own database).

A mapping is TOML and holds no input path (that comes with the command)::

    profile = "nl-household"      # the linkage profile the fields belong to
    [source]
    format = "csv"                 # csv | jsonl | sql
    delimiter = ";"                # csv: optional, else taken from the header (, ; or tab)
    encoding = "utf-8"             # csv, jsonl: optional (default utf-8, a BOM is fine)
    date_format = "%d-%m-%Y"       # optional; else YYYY-MM-DD, DD-MM-YYYY, DD/MM/YYYY,
                                   # DD.MM.YYYY and YYYYMMDD are accepted
    url = "postgresql+psycopg://agent@casesys/db"   # sql: or url_env = "PARTNER_DB_URL"
    query = "SELECT ... FROM ..."                   # sql: one read-only SELECT (or WITH)
    [fields]                       # profile field = the partner's column (or JSON key;
    case_ref = "dossiernummer"     # a dotted path reaches into nested JSON objects)
    [constants]                    # optional: a profile field with one value for all rows
    region = "GM0014"

Also understood, as the synthetic-data generator (agent._synth) writes them: in [source],
``file`` (csv, jsonl: the input file, relative to the mapping file; an input path given
to :func:`read` wins), ``list_separator`` (what separates the BSNs in a related_bsns
text; they come out separated by ";") and ``full_name_order`` (surname_first or
given_first: how full_name is written; carried for whoever splits it); and tables
``[values.FIELD]`` that translate the partner's codes of a mapped field (``"V" = "F"``;
a code missing from the table is a row problem).

This module only reads and maps: it neither validates identifiers (agent._normalise does)
nor pseudonymises. Like the rest of the agent, it never puts a value it read into an
error, only row numbers, field and column names.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import math
import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from exchange import vocab
from exchange.errors import ConfigError, InvalidInput, Unavailable

__all__ = [
    "DATE_FIELDS",
    "FIELDS",
    "FORMATS",
    "MappedRow",
    "Mapping",
    "RowProblem",
    "check_query",
    "count_rows",
    "load_mapping",
    "parse_mapping",
    "read",
]

FIELDS = (
    "case_ref", "bsn", "given_names", "surname_prefix", "surname", "full_name", "initials",
    "date_of_birth", "sex", "postcode", "house_number", "house_addition", "street", "city",
    "category", "region", "professional_name", "professional_phone", "professional_email",
    "observed_on", "expires_on", "related_bsns",
)
DATE_FIELDS = frozenset({"date_of_birth", "observed_on", "expires_on"})
# The one field whose JSON or SQL value may be a list; its items are joined with ";".
LIST_FIELDS = frozenset({"related_bsns"})
FORMATS = ("csv", "jsonl", "sql")

_TOP_KEYS = ("profile", "source", "fields", "constants", "values")
_NAME_ORDERS = ("surname_first", "given_first")
_SOURCE_KEYS: dict[str, frozenset[str]] = {
    "format": frozenset(FORMATS),
    "date_format": frozenset(FORMATS),
    "delimiter": frozenset({"csv"}),
    "encoding": frozenset({"csv", "jsonl"}),
    "file": frozenset({"csv", "jsonl"}),
    "list_separator": frozenset(FORMATS),
    "full_name_order": frozenset(FORMATS),
    "url": frozenset({"sql"}),
    "url_env": frozenset({"sql"}),
    "query": frozenset({"sql"}),
}
_DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y%m%d")
_DEFAULT_DATE_TEXT = "YYYY-MM-DD (or DD-MM-YYYY, DD/MM/YYYY, DD.MM.YYYY, YYYYMMDD)"
_ISO_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DELIMITERS = (",", ";", "\t")
_SQL_BATCH = 500


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping file (see the module docstring)."""

    profile: str
    format: str
    delimiter: str | None
    encoding: str
    date_format: str | None
    url: str | None
    url_env: str | None
    query: str | None
    fields: dict[str, str]
    constants: dict[str, str]
    file: str | None = None
    list_separator: str | None = None
    full_name_order: str | None = None
    values: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class MappedRow:
    """One record: every mapped or constant profile field as a trimmed string ("" when
    missing), dates as YYYY-MM-DD. Row 1 is the first data row."""

    row: int
    values: dict[str, str]


@dataclass(frozen=True)
class RowProblem:
    """A record that could not be mapped; ``field`` is "row" when the whole row is bad."""

    row: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field} {self.problem}"


# --- the mapping file ---------------------------------------------------------------------


def load_mapping(path: Path) -> Mapping:
    """Read and check a mapping file; ConfigError names the key and line, never a value."""
    try:
        source = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"mapping file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read mapping file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"mapping file {path} is not UTF-8 text") from None
    mapping = parse_mapping(source, str(path))
    if mapping.file is not None:
        resolved = str(path.parent / Path(mapping.file).expanduser())
        mapping = dataclasses.replace(mapping, file=resolved)
    return mapping


def parse_mapping(text: str, where: str) -> Mapping:
    """Parse and check a mapping; ``where`` (the file's name) starts every error."""
    lines = _Lines(text, where)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        twice = lines.duplicate_field()
        if twice:
            raise ConfigError(twice) from None
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None

    for key in data:
        if key not in _TOP_KEYS:
            table = isinstance(data[key], dict)
            raise lines.error(None, key, f"unknown {'table' if table else 'key'} "
                              f"{f'[{key}]' if table else repr(key)}; a mapping has "
                              "profile, [source], [fields], [constants] and [values.FIELD]")
    for name in ("source", "fields", "constants", "values"):
        if name in data and not isinstance(data[name], dict):
            raise lines.error(None, name, f"'{name}' must be a table: [{name}]")
    if "profile" not in data:
        raise ConfigError(f"{where}: 'profile' is missing: name the linkage profile "
                          "the fields belong to, e.g. profile = \"nl-household\"")
    try:
        profile = vocab.slug(data["profile"], "profile")
    except InvalidInput as exc:
        raise lines.error(None, "profile", str(exc)) from None

    source: dict[str, Any] = data.get("source", {})
    if "source" not in data:
        raise ConfigError(f"{where}: [source] is missing (with format = csv, jsonl or sql)")
    fmt = source.get("format")
    if fmt is None:
        raise lines.error("source", None, "'format' is missing from [source] "
                          "(csv, jsonl or sql)")
    if fmt not in FORMATS:
        raise lines.error("source", "format", "format must be csv, jsonl or sql")
    for key in source:
        if key not in _SOURCE_KEYS:
            raise lines.error("source", key, f"unknown key '{key}' in [source]; known: "
                              + ", ".join(sorted(_SOURCE_KEYS)))
        if fmt not in _SOURCE_KEYS[key]:
            allowed = " and ".join(sorted(_SOURCE_KEYS[key]))
            raise lines.error("source", key, f"'{key}' in [source] is for format "
                              f"{allowed}, not {fmt}")

    delimiter = _delimiter(source, lines)
    encoding = _encoding(source, lines)
    date_format = _date_format(source, lines)
    url, url_env, query = _sql_source(fmt, source, lines)
    fields = _fields(data, lines)
    constants = _constants(data, fields, date_format, lines)
    file = _string(source, "file", lines, "source")
    list_separator = source.get("list_separator")
    if list_separator is not None and (not isinstance(list_separator, str)
                                       or not list_separator):
        raise lines.error("source", "list_separator", "list_separator must be a non-empty "
                          "string, like \";\"")
    full_name_order = source.get("full_name_order")
    if full_name_order is not None and full_name_order not in _NAME_ORDERS:
        raise lines.error("source", "full_name_order", "full_name_order must be "
                          "surname_first or given_first")
    return Mapping(profile=profile, format=fmt, delimiter=delimiter, encoding=encoding,
                   date_format=date_format, url=url, url_env=url_env, query=query,
                   fields=fields, constants=constants,
                   file=file.strip() if file else None, list_separator=list_separator,
                   full_name_order=full_name_order, values=_values(data, fields, lines))


def _string(table: dict[str, Any], key: str, lines: _Lines, section: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise lines.error(section, key, f"'{key}' in [{section}] must be a non-empty string")
    return value


def _delimiter(source: dict[str, Any], lines: _Lines) -> str | None:
    value = source.get("delimiter")
    if value is None:
        return None
    if value == "tab":
        return "\t"
    if not isinstance(value, str) or len(value) != 1 or value in "\"\r\n" or value.isalnum():
        raise lines.error("source", "delimiter", "delimiter must be one character such as "
                          "\",\", \";\" or \"\\t\" (or \"tab\")")
    return value


def _encoding(source: dict[str, Any], lines: _Lines) -> str:
    value = _string(source, "encoding", lines, "source")
    if value is None:
        return "utf-8"
    try:
        codecs.lookup(value)
    except LookupError:
        raise lines.error("source", "encoding", "encoding is not an encoding Python "
                          "knows (e.g. utf-8, cp1252, latin-1)") from None
    return value


def _date_format(source: dict[str, Any], lines: _Lines) -> str | None:
    value = _string(source, "date_format", lines, "source")
    if value is None:
        return None
    if "%y" in value.replace("%%", ""):
        raise lines.error("source", "date_format", "date_format must have a four-digit "
                          "year (%Y), not %y: a two-digit year is ambiguous")
    sample = date(1987, 11, 23)
    try:
        back = datetime.strptime(sample.strftime(value), value).date()  # noqa: DTZ007 - a date
    except ValueError:
        back = None
    if back != sample:
        raise lines.error("source", "date_format", "date_format must be a strptime format "
                          "with a day, a month and a year, like %d-%m-%Y")
    return value


def _sql_source(fmt: str, source: dict[str, Any],
                lines: _Lines) -> tuple[str | None, str | None, str | None]:
    url = _string(source, "url", lines, "source")
    url_env = _string(source, "url_env", lines, "source")
    query = _string(source, "query", lines, "source")
    if fmt != "sql":
        return None, None, None
    if url is not None and url_env is not None:
        raise lines.error("source", "url_env", "give either url or url_env in [source], "
                          "not both")
    if url is None and url_env is None:
        raise lines.error("source", None, "an sql source needs url (a SQLAlchemy URL) or "
                          "url_env (the environment variable that holds it)")
    if url is not None:
        _parse_url(url, "url")
    if url_env is not None and not _ENV_NAME.fullmatch(url_env):
        raise lines.error("source", "url_env", "url_env must be the name of an environment "
                          "variable (letters, digits and '_')")
    if query is None:
        raise lines.error("source", None, "an sql source needs a query (one SELECT "
                          "statement)")
    try:
        check_query(query)
    except ConfigError as exc:
        raise lines.error("source", "query", str(exc)) from None
    return url, url_env, query


def _fields(data: dict[str, Any], lines: _Lines) -> dict[str, str]:
    table: dict[str, Any] = data.get("fields", {})
    if "fields" not in data:
        raise ConfigError(f"{lines.where}: [fields] is missing: map at least case_ref to "
                          "the column of your case reference")
    fields: dict[str, str] = {}
    for key, value in table.items():
        if key not in FIELDS:
            raise lines.error("fields", key, f"unknown profile field '{key}' in [fields]; "
                              "known: " + ", ".join(FIELDS))
        if not isinstance(value, str) or not value.strip():
            raise lines.error("fields", key, f"[fields] {key} must be a column name "
                              "(a non-empty string)")
        fields[key] = value.strip()
    if "case_ref" not in fields:
        raise ConfigError(f"{lines.where}: [fields] must map case_ref (the column of your "
                          "case reference)")
    return fields


def _constants(data: dict[str, Any], fields: dict[str, str], date_format: str | None,
               lines: _Lines) -> dict[str, str]:
    table: dict[str, Any] = data.get("constants", {})
    constants: dict[str, str] = {}
    for key, value in table.items():
        if key not in FIELDS:
            raise lines.error("constants", key, f"unknown profile field '{key}' in "
                              "[constants]; known: " + ", ".join(FIELDS))
        if key == "case_ref":
            raise lines.error("constants", key, "case_ref cannot be a constant: map it to "
                              "the column of your case reference in [fields]")
        if key in fields:
            first = lines.line("fields", key)
            raise lines.error("constants", key, f"field '{key}' is mapped twice: in [fields]"
                              + (f" (line {first})" if first else "") + " and in [constants]")
        if not isinstance(value, str):
            raise lines.error("constants", key, f"[constants] {key} must be a string")
        constants[key] = value.strip()
        if key in DATE_FIELDS and constants[key]:
            # Written in the partner's date_format or in one of the common formats.
            parsed = (date_format and _to_date(value.strip(), date_format)) or _to_date(
                value.strip(), None)
            if not parsed:
                raise lines.error("constants", key, f"[constants] {key} is not a date in "
                                  f"the format {_format_text(date_format)}")
            constants[key] = parsed.isoformat()
    return constants


def _values(data: dict[str, Any], fields: dict[str, str],
            lines: _Lines) -> dict[str, dict[str, str]]:
    tables: dict[str, Any] = data.get("values", {})
    out: dict[str, dict[str, str]] = {}
    for name, table in tables.items():
        section = f"values.{name}"
        if name not in fields:
            known = "a profile field" if name not in FIELDS else "mapped in [fields]"
            raise lines.error(section, None, f"[values.{name}] must name a field that is "
                              f"{known}")
        if name in DATE_FIELDS or name == "case_ref":
            raise lines.error(section, None, f"[values.{name}]: {name} cannot be translated")
        if not isinstance(table, dict):
            raise lines.error(None, "values", f"[values.{name}] must be a table")
        codes: dict[str, str] = {}
        for code, canonical in table.items():
            if not isinstance(canonical, str):
                raise lines.error(section, code, f"every value in [values.{name}] must be "
                                  "a string")
            codes[code.strip()] = canonical.strip()
        out[name] = codes
    return out


class _Lines:
    """Finds the line of a key in the mapping's text, for error messages (tomllib does
    not keep positions). Best effort: None when the key is written in an unusual way."""

    _HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\- ]+?)\s*\]\s*(?:#.*)?$")
    _KEY = re.compile(r"^\s*(?:\"([^\"]*)\"|'([^']*)'|([A-Za-z0-9_-]+))\s*=")

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self._keys: list[tuple[str | None, str, int]] = []  # (table, key, line)
        self._tables: dict[str, int] = {}
        table: str | None = None
        in_multiline = False
        for number, line in enumerate(text.splitlines(), start=1):
            # Skip the inside of multi-line strings (a query may span many lines).
            if in_multiline:
                if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                    in_multiline = False
                continue
            header = self._HEADER.match(line)
            if header:
                table = header.group(1).strip()
                self._tables.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                name = next(g for g in key.groups() if g is not None)
                self._keys.append((table, name, number))
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = True

    def line(self, table: str | None, key: str | None) -> int | None:
        if key is None:
            return self._tables.get(table) if table else None
        for found_table, found_key, number in self._keys:
            if found_table == table and found_key == key:
                return number
        if table is None:
            return self._tables.get(key)
        return None

    def error(self, table: str | None, key: str | None, message: str) -> ConfigError:
        number = self.line(table, key)
        line = f", line {number}" if number is not None else ""
        return ConfigError(f"{self.where}{line}: {message}")

    def duplicate_field(self) -> str | None:
        """The message for a profile field mapped twice in one table, if that is what
        made the TOML invalid."""
        seen: dict[tuple[str | None, str], int] = {}
        for table, key, number in self._keys:
            if table in ("fields", "constants") and (table, key) in seen:
                return (f"{self.where}: field '{key}' is mapped twice in [{table}] "
                        f"(lines {seen[table, key]} and {number})")
            seen.setdefault((table, key), number)
        return None


# --- SQL queries ---------------------------------------------------------------------------

# Words that make a statement write, lock or leave the statement; refused anywhere outside
# string literals, quoted identifiers and comments.
_FORBIDDEN = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "DROP", "ALTER", "CREATE", "TRUNCATE",
    "GRANT", "REVOKE", "CALL", "EXEC", "EXECUTE", "ATTACH", "DETACH", "PRAGMA",
    "VACUUM", "INTO", "LOCK",
})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def _skip(query: str, i: int, *, mysql: bool) -> tuple[bool, int] | None:
    """If a comment (False) or a literal or quoted identifier (True) starts at ``i``:
    which, and the offset after it."""
    ch, n = query[i], len(query)
    pair = query[i:i + 2]
    after = query[i + 2:i + 3]
    if (pair == "--" and (not mysql or after in ("", " ", "\t", "\n", "\r"))) or (
            mysql and ch == "#"):
        stop = query.find("\n", i)
        return False, n if stop < 0 else stop
    if pair == "/*":
        stop = query.find("*/", i + 2)
        return False, n if stop < 0 else stop + 2
    if not mysql and ch == "$" and (i == 0 or not (query[i - 1].isalnum()
                                                   or query[i - 1] in "_$")):
        dollar = _DOLLAR.match(query, i)
        if dollar:
            stop = query.find(dollar.group(0), dollar.end())
            return True, n if stop < 0 else stop + len(dollar.group(0))
    if ch in "'\"" or (mysql and ch == "`"):
        j = i + 1
        while j < n:
            if (mysql and query[j] == "\\") or query[j:j + 2] == ch * 2:
                j += 2  # an escaped character, or a doubled quote
            elif query[j] == ch:
                return True, j + 1
            else:
                j += 1
        return True, n
    return None


def _code(query: str, *, mysql: bool) -> tuple[list[tuple[int, str]], int]:
    """The parts of ``query`` outside literals, quoted identifiers and comments, with their
    offsets (a literal is a part "''"), and the offset just after the last part.

    Dialects disagree on the details, so the check scans twice: standard SQL (with
    PostgreSQL's dollar quotes) and MySQL's rules (backslash escapes, '#' comments,
    backticks). A query must pass both, so no dialect can see a statement that one of the
    scans missed.
    """
    parts: list[tuple[int, str]] = []
    end = start = i = 0
    while i <= len(query):
        skip = _skip(query, i, mysql=mysql) if i < len(query) else (False, i + 1)
        if skip is None:
            i += 1
            continue
        chunk = query[start:i]
        if chunk.strip():
            parts.append((start, chunk))
            end = start + len(chunk.rstrip())
        literal, i = skip
        if literal:
            parts.append((i, "\'\'"))
            end = i
        start = i
    return parts, end


def check_query(query: str) -> str:
    """The query without a trailing ';' or comment, if it is one SELECT (or WITH)
    statement that neither writes nor locks; else ConfigError naming what is wrong."""
    ends = []
    for mysql in (False, True):
        parts, end = _code(query, mysql=mysql)
        words = [w.upper() for _, chunk in parts for w in _WORD.findall(chunk)]
        if not words:
            raise ConfigError("query is empty")
        code = "".join(chunk for _, chunk in parts).lstrip("( \t\r\n")
        if words[0] not in ("SELECT", "WITH") or not code.upper().startswith(words[0]):
            first = f", not {words[0]}" if code.upper().startswith(words[0]) else ""
            raise ConfigError(f"query must be a SELECT (or WITH ... SELECT) statement{first}")
        # Everything significant, with its offset: one ';' may end the statement.
        significant = [(offset + k, ch) for offset, chunk in parts
                       for k, ch in enumerate(chunk) if not ch.isspace()]
        stops = [pos for pos, ch in significant if ch == ";"]
        if stops and any(pos > stops[0] and ch != ";" for pos, ch in significant):
            raise ConfigError("query must be a single statement (it has a ';' before "
                              "its end)")
        forbidden = sorted(set(words) & _FORBIDDEN)
        if forbidden:
            raise ConfigError(f"query must only read: it contains {forbidden[0]}")
        ends.append(stops[0] if stops else end)
    return query[:min(ends)].rstrip()


# --- reading -------------------------------------------------------------------------------


def read(mapping: Mapping, path: Path | None) -> Iterator[MappedRow | RowProblem]:
    """Yield a MappedRow or a RowProblem per record. ``path`` is the input file of a csv
    or jsonl mapping (None: the mapping's ``file``), None for sql. InvalidInput when the
    input cannot be read at all."""
    path = _check_path(mapping, path)
    if mapping.format == "csv":
        assert path is not None
        rows: Iterator[tuple[int, dict[str, Any] | RowProblem]] = _csv_rows(mapping, path)
    elif mapping.format == "jsonl":
        assert path is not None
        rows = _jsonl_rows(mapping, path)
    else:
        rows = _sql_rows(mapping)
    for number, raw in rows:
        if isinstance(raw, RowProblem):
            yield raw
        else:
            yield _map(mapping, number, raw)


def count_rows(mapping: Mapping, path: Path | None) -> int:
    """About how many records ``read`` yields, for a progress bar: non-blank lines (minus
    the header) for csv and jsonl, ``count(*)`` of the query for sql."""
    path = _check_path(mapping, path)
    if mapping.format == "sql":
        # The query passed check_query: one read-only SELECT, run read-only.
        statement = f"SELECT count(*) FROM (\n{check_query(_query(mapping))}\n) AS q"  # noqa: S608
        with _sql_result(mapping, statement, stream=False) as result:
            value = result.scalar()
        return int(value or 0)
    assert path is not None
    lines = 0
    try:
        with path.open("rb") as fh:
            lines = sum(1 for line in fh if line.strip())
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    return max(0, lines - 1) if mapping.format == "csv" else lines


def _check_path(mapping: Mapping, path: Path | None) -> Path | None:
    if mapping.format == "sql" and path is not None:
        raise ConfigError("an sql mapping reads from its database: give no input file")
    if mapping.format != "sql" and path is None:
        if mapping.file is None:
            raise ConfigError(f"a {mapping.format} mapping needs an input file (--input)")
        return Path(mapping.file)
    return path


def _map(mapping: Mapping, number: int, raw: dict[str, Any]) -> MappedRow | RowProblem:
    values: dict[str, str] = {}
    for name, column in mapping.fields.items():
        try:
            value = _text(raw.get(column), name)
        except _Problem as problem:
            return RowProblem(number, name, str(problem))
        if value and name in mapping.values:
            codes = mapping.values[name]
            if value not in codes:
                folded = [c for c in codes if c.casefold() == value.casefold()]
                if len(folded) != 1:
                    return RowProblem(number, name, f"is not one of the codes in "
                                      f"[values.{name}]")
                value = folded[0]
            value = codes[value]
        if value and name in LIST_FIELDS:
            items = (item.strip() for item in value.split(mapping.list_separator or ";"))
            value = ";".join(item for item in items if item)
        values[name] = value
    for name in sorted(DATE_FIELDS & values.keys()):
        if not values[name]:
            continue
        original = raw.get(mapping.fields[name])
        if isinstance(original, date):  # a DATE or TIMESTAMP column: no format involved
            values[name] = (original.date() if isinstance(original, datetime)
                            else original).isoformat()
            continue
        parsed = _to_date(values[name], mapping.date_format)
        if parsed is None and mapping.format == "sql":
            # A database gives ISO dates for its DATE columns (SQLite: as text).
            parsed = _to_date(values[name], None, iso_only=True)
        if parsed is None:
            return RowProblem(number, name, "is not a date in the format "
                              + _format_text(mapping.date_format))
        values[name] = parsed.isoformat()
    values.update(mapping.constants)  # dates among them are ISO already
    return MappedRow(number, values)


class _Problem(Exception):
    """A value cannot be mapped; the message names the problem, never the value."""


def _text(value: Any, field: str) -> str:
    """A JSON or SQL value as a trimmed string ("" for None)."""
    if isinstance(value, list | tuple) and not isinstance(value, str):
        if field not in LIST_FIELDS:
            raise _Problem("is a list; only related_bsns may be one")
        items = (_scalar(item) for item in value)
        return ";".join(item for item in items if item)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Problem("is not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Problem("is not a finite number")
        if value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _Problem("is binary data, not text") from None
    if isinstance(value, dict):
        raise _Problem("is a JSON object, not a value (map a dotted path into it)")
    if isinstance(value, list | tuple):
        raise _Problem("is a list of lists")
    return str(value).strip()


def _to_date(value: str, fmt: str | None, *, iso_only: bool = False) -> date | None:
    formats = ("%Y-%m-%d",) if iso_only else (fmt,) if fmt else _DEFAULT_DATE_FORMATS
    for candidate in formats:
        try:
            return datetime.strptime(value, candidate).date()  # noqa: DTZ007 - a date
        except ValueError:
            continue
    if (fmt is None or iso_only) and _ISO_DATETIME.match(value):
        try:
            return datetime.fromisoformat(value).date()
        except ValueError:
            return None
    return None


_DIRECTIVES = {"%d": "DD", "%m": "MM", "%Y": "YYYY", "%H": "hh", "%M": "mm", "%S": "ss",
               "%b": "Mon", "%B": "Month", "%j": "DDD", "%%": "%", "%e": "D"}


def _format_text(fmt: str | None) -> str:
    """A date format as people write it: %d-%m-%Y -> DD-MM-YYYY."""
    if fmt is None:
        return _DEFAULT_DATE_TEXT
    parts = re.split(r"(%.)", fmt)
    if any(p.startswith("%") and len(p) == 2 and p not in _DIRECTIVES for p in parts):
        return fmt
    return "".join(_DIRECTIVES.get(p, p) for p in parts)


# --- CSV -----------------------------------------------------------------------------------


def _codec(mapping: Mapping) -> str:
    # Tolerate the byte order mark spreadsheets write in front of UTF-8.
    return "utf-8-sig" if codecs.lookup(mapping.encoding).name == "utf-8" else mapping.encoding


def _open(path: Path, mapping: Mapping) -> IO[str]:
    try:
        return path.open(newline="", encoding=_codec(mapping))
    except IsADirectoryError:
        raise InvalidInput(f"cannot read {path}: it is a directory") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _not_text(path: Path, mapping: Mapping, kind: str) -> InvalidInput:
    encoding = "UTF-8" if _codec(mapping) == "utf-8-sig" else mapping.encoding
    return InvalidInput(f"{path} is not a readable {encoding} {kind} file")


def _header_text(fh: IO[str]) -> str:
    """The header record's text: its first line, and more while a quote is open."""
    text = fh.readline()
    while text.count('"') % 2 == 1:
        more = fh.readline()
        if not more:
            break
        text += more
    return text


def _split(header: str, delimiter: str) -> list[str]:
    try:
        fields = next(csv.reader(io.StringIO(header), delimiter=delimiter), [])
    except csv.Error:
        return []
    return [name.strip() for name in fields]


def _sniff(header: str, columns: Iterable[str]) -> str:
    """The delimiter the header uses: the one that splits it into columns that include
    every mapped one (the most columns, if several do), else the most frequent."""
    wanted = set(columns)
    fitting = [d for d in _DELIMITERS if wanted <= set(_split(header, d))]
    if fitting:
        return max(fitting, key=lambda d: len(_split(header, d)))
    return max(_DELIMITERS, key=lambda d: len(_split(header, d)))


def _csv_rows(mapping: Mapping, path: Path) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    fh = _open(path, mapping)
    reader: Any = None
    with fh:
        try:
            header_text = _header_text(fh)
            if not header_text.strip():
                raise InvalidInput(f"{path} is empty: it needs a header row with the "
                                   "column names")
            delimiter = mapping.delimiter or _sniff(header_text, mapping.fields.values())
            fh.seek(0)
            reader = csv.reader(fh, delimiter=delimiter)
            header = [name.strip() for name in next(reader)]
            _check_header(path, mapping, header, delimiter)
            width = len(header)
            number = 0
            for values in reader:
                number += 1
                if not any(v.strip() for v in values):
                    continue  # a blank line, or a row of empty cells: no record
                if len(values) > width and any(v.strip() for v in values[width:]):
                    yield number, RowProblem(number, "row", f"has more values ({len(values)}) "
                                             f"than the header has columns ({width})")
                    continue
                yield number, {name: value for name, value in zip(header, values,
                                                                   strict=False) if name}
        except UnicodeDecodeError:
            raise _not_text(path, mapping, "CSV") from None
        except csv.Error:
            raise InvalidInput(f"{path} is not a readable CSV file (the record ending on "
                               f"line {reader.line_num if reader else 1} is malformed)"
                               ) from None


def _check_header(path: Path, mapping: Mapping, header: list[str], delimiter: str) -> None:
    present = set(header)
    missing = [(f, c) for f, c in mapping.fields.items() if c not in present]
    if not missing:
        twice = sorted({c for c in mapping.fields.values() if header.count(c) > 1})
        if twice:
            raise InvalidInput(f"{path}: the header has column '{twice[0]}' more than once")
        return
    shown = {"\t": "tab"}.get(delimiter, f"'{delimiter}'")
    if len(missing) == len(mapping.fields):
        # None of the mapped columns: perhaps the first line is a record, not a header,
        # so it is not repeated here.
        raise InvalidInput(
            f"{path}: the first line has none of the mapped columns (it reads as "
            f"{len(header)} column(s) separated by {shown}): is it the header row, and are "
            "the mapping's column names and delimiter right?")
    field, column = missing[0]
    raise InvalidInput(
        f"{path}: the header has no column '{column}' (mapped to {field}); the columns "
        f"are: {', '.join(name for name in header if name)}")


# --- JSON Lines ----------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _lookup(data: dict[str, Any], key: str) -> Any:
    """A key, or a dotted path into nested objects; None when it is absent."""
    if key in data:
        return data[key]
    current: Any = data
    for part in key.split("."):
        if current is None:
            return None
        if not isinstance(current, dict):
            raise _Problem(f"cannot be found: '{key}' leads through a value that is not "
                           "a JSON object")
        current = current.get(part)
    return current


def _jsonl_rows(mapping: Mapping,
                path: Path) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    fh = _open(path, mapping)
    with fh:
        try:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    data = json.loads(line, parse_constant=_reject_constant)
                except ValueError:
                    yield number, RowProblem(number, "row", "is not valid JSON")
                    continue
                if not isinstance(data, dict):
                    yield number, RowProblem(number, "row", "is not a JSON object")
                    continue
                record: dict[str, Any] = {}
                for field, key in mapping.fields.items():
                    try:
                        record[key] = _lookup(data, key)
                    except _Problem as problem:
                        yield number, RowProblem(number, field, str(problem))
                        break
                else:
                    yield number, record
        except UnicodeDecodeError:
            raise _not_text(path, mapping, "JSON Lines") from None


# --- SQL -----------------------------------------------------------------------------------


def _query(mapping: Mapping) -> str:
    if not mapping.query:
        raise ConfigError("an sql mapping needs a query")
    return mapping.query


def _url(mapping: Mapping) -> str:
    if mapping.url:
        return mapping.url
    if not mapping.url_env:
        raise ConfigError("an sql mapping needs url or url_env")
    value = os.environ.get(mapping.url_env, "")
    if not value.strip():
        raise ConfigError(f"the environment variable {mapping.url_env} (url_env of the "
                          "mapping) is not set")
    return value


def _parse_url(url: str, what: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        # Never repeat the URL: it may hold a password.
        raise ConfigError(f"{what} is not a valid SQLAlchemy URL "
                          "(dialect+driver://user@host/database)") from None


def read_only_statement(backend: str) -> str | None:
    """What makes the transaction read-only on a backend (None: the query check alone)."""
    return {
        "postgresql": "SET TRANSACTION READ ONLY",
        "oracle": "SET TRANSACTION READ ONLY",
        "mysql": "SET SESSION TRANSACTION READ ONLY",
        "mariadb": "SET SESSION TRANSACTION READ ONLY",
        "sqlite": "PRAGMA query_only=ON",
    }.get(backend)


@contextmanager
def _sql_result(mapping: Mapping, statement: str, *, stream: bool) -> Iterator[Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    where = f"the url in {mapping.url_env}" if mapping.url_env else "url"
    url = _parse_url(_url(mapping), where)
    backend = url.get_backend_name()
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")  # the driver Samenloop installs
    if backend == "sqlite":
        if url.database in (None, "", ":memory:") or "mode=memory" in str(url.query):
            raise ConfigError("an sql mapping needs a SQLite database file, not memory")
        if not url.query.get("uri") and not Path(url.database).expanduser().is_file():
            raise InvalidInput(f"there is no SQLite database at {url.database}")
    try:
        engine = create_engine(url, poolclass=NullPool, hide_parameters=True)
    except (NoSuchModuleError, ImportError):
        raise ConfigError(f"no SQLAlchemy driver for '{url.drivername}' is installed") from None
    except (ArgumentError, ValueError):
        raise ConfigError(f"{where} is not usable by SQLAlchemy") from None
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise Unavailable(f"cannot connect to the partner database ({backend}"
                              f"{' at ' + url.host if url.host else ''}): "
                              f"{_connect_reason(exc, url.password)}") from None
        with conn:
            try:
                guard = read_only_statement(backend)
                if guard:
                    conn.exec_driver_sql(guard)
                if stream:
                    conn = conn.execution_options(yield_per=_SQL_BATCH)
                # Escape ':' so that SQLAlchemy takes nothing in the query for a parameter.
                result = conn.execute(text(statement.replace(":", "\\:")))
            except DBAPIError as exc:
                raise _query_failed(exc) from None
            try:
                yield result
            except DBAPIError as exc:
                raise _query_failed(exc) from None
            finally:
                result.close()
                conn.rollback()
    finally:
        engine.dispose()


def _connect_reason(exc: Exception, password: str | None) -> str:
    orig = getattr(exc, "orig", None) or exc
    reason = " ".join(str(orig).split()) or type(orig).__name__
    if password:
        reason = reason.replace(password, "***")
    return reason[:300]


def _query_failed(exc: Exception) -> InvalidInput:
    # The database's message can quote a value of the partner's data (e.g. a failed cast),
    # so only its class and SQLSTATE are shown.
    orig = getattr(exc, "orig", None) or exc
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    detail = type(orig).__name__ + (f", SQLSTATE {sqlstate}" if sqlstate else "")
    return InvalidInput(f"the mapping's query failed in the partner database ({detail}); "
                        "run it there to see why")


def _sql_rows(mapping: Mapping) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    statement = check_query(_query(mapping))
    with _sql_result(mapping, statement, stream=True) as result:
        keys = [str(k) for k in result.keys()]  # noqa: SIM118 - a Result, not a dict
        columns = _sql_columns(mapping, keys)
        for number, row in enumerate(result, start=1):
            yield number, {column: row[index] for column, index in columns.items()}


def _sql_columns(mapping: Mapping, keys: list[str]) -> dict[str, int]:
    """Each mapped column's index in the result; a name that differs only in case matches
    when it is the only one (PostgreSQL folds unquoted names to lower case)."""
    columns: dict[str, int] = {}
    for field, column in mapping.fields.items():
        if column in keys:
            columns[column] = keys.index(column)
            continue
        folded = [i for i, k in enumerate(keys) if k.casefold() == column.casefold()]
        if len(folded) != 1:
            raise InvalidInput(f"the query's result has no column '{column}' (mapped to "
                               f"{field}); its columns are: {', '.join(keys)}")
        columns[column] = folded[0]
    return columns
