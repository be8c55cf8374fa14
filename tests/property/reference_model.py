"""A small, row-at-a-time model of SPEC §3, written from the SPEC text, to check the exporter against.

Deliberately naive: plain Python over row dicts, no Arrow. A table is a `ModelTable`: its name,
its columns in order as `(name, kind)`, and its rows as dicts from column name to a Python
value. Kinds and their values:

    "string"           str | None
    "int64"            int | None
    "float64"          float | None (NaN and ±inf included)
    "bool"             bool | None
    "date32"           int | None: days since 1970-01-01
    "timestamp[UNIT]"  int | None: UNIT (s, ms, us, ns) since 1970-01-01T00:00:00 UTC
    "list<string>"     list[str | None] | None
    "list<int64>"      list[int | None] | None
    "null"             None

"White space" is what Python's `str.strip()` removes (the `str.isspace()` characters); Arrow's
`utf8_trim_whitespace` removes exactly the same set (checked over every code point).

Dates and timestamps are proleptic Gregorian, whatever the year. SPEC's `YYYY-MM-DD` cannot hold
years outside 0000-9999 (int32 days reach year 5,881,580, int64 microseconds year 294,247):
those take ISO 8601's expanded form, a sign then the year (`+10000-01-01`, `-0001-12-31`).
"""

import dataclasses
import math
from collections import Counter

USER_RESERVED = "^\r\n"
VALUE_RESERVED = "^;,\r\n"
TOO_LONG_CHARS = 255  # SPEC §3: a value of 255 code points or more is value_too_long

_UNITS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


@dataclasses.dataclass(frozen=True)
class ModelTable:
    name: str
    columns: tuple  # ((name, kind), ...) in table order
    rows: tuple  # (dict, ...)


@dataclasses.dataclass(frozen=True)
class Rules:
    user_column: str = "user_id"
    segment_column: str = "td_segment"
    segment_attribute: str = "segment"


@dataclasses.dataclass(frozen=True)
class RowResult:
    """One row judged: its reason when invalid, else its user id and attributes with values."""

    reason: str | None
    user: str | None = None
    attributes: tuple = ()  # ((attribute name, (value, ...)), ...) in line order, no empty ones


@dataclasses.dataclass
class Expected:
    """What a run over some tables should produce."""

    lines: Counter  # ungrouped: every valid row's line (a multiset); grouped: one per user
    invalid: Counter  # reason -> rows
    invalid_rows: list  # (table, row number from 1, reason) of every invalid row, in table order
    rows_read: dict  # table -> rows


# --- Rendering ---------------------------------------------------------------------------------


def render(value, kind: str) -> str | None:
    """A non-list value as the text SPEC §3 writes for it; None when there is nothing to write."""
    if value is None:
        return None
    if kind == "string":
        return value
    if kind == "bool":
        return "true" if value else "false"
    if kind == "int64":
        return str(value)
    if kind == "float64":
        return None if math.isnan(value) else repr(value)
    if kind == "date32":
        return _date_text(value)
    if kind.startswith("timestamp["):
        return _timestamp_text(value, kind[len("timestamp[") : -1])
    raise ValueError(f"no rendering for kind {kind}")


def _timestamp_text(value: int, unit: str) -> str:
    per_second = _UNITS_PER_SECOND[unit]
    seconds, fraction = divmod(value, per_second)
    days, second = divmod(seconds, 86400)
    text = f"{_date_text(days)}T{second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}"
    digits = f"{fraction:0{len(str(per_second)) - 1}d}".rstrip("0") if per_second > 1 else ""
    return text + ("." + digits if digits else "") + "Z"


def _date_text(days: int) -> str:
    """The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`, for any year)."""
    z = days + 719468  # days since 0000-03-01, the start of a 400-year era
    era = z // 146097
    day_of_era = z - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)  # from March 1
    shifted_month = (5 * day_of_year + 2) // 153  # March is 0
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (month <= 2)
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return f"{year_text}-{month:02d}-{day:02d}"


def _cleaned(value, kind: str) -> list[str]:
    """A cell's values to write: rendered, stripped, nulls and empties dropped, order kept."""
    if kind.startswith("list<"):
        element_kind = kind[len("list<") : -1]
        texts = [render(element, element_kind) for element in (value or [])]
    else:
        texts = [render(value, kind)] if kind != "null" else []
    return [text.strip() for text in texts if text is not None and text.strip() != ""]


def _is_string_kind(kind: str) -> bool:
    return kind in ("string", "list<string>")


# --- One row -----------------------------------------------------------------------------------


def judge_row(row: dict, columns, rules: Rules) -> RowResult:
    """SPEC §3 for one row: the first reason that applies, or the line's parts."""
    raw_user = row.get(rules.user_column)
    user = raw_user.strip() if raw_user is not None else ""

    segments = []
    raw_segments = row.get(rules.segment_column)
    for piece in (raw_segments.split(",") if raw_segments is not None else []):
        piece = piece.strip()
        if piece and piece not in segments:
            segments.append(piece)

    attributes = []
    checked = list(segments)  # the strings from the data that the checks cover
    for name, kind in columns:
        if name in (rules.user_column, rules.segment_column):
            continue
        values = _cleaned(row.get(name), kind)
        if _is_string_kind(kind):
            checked.extend(values)
        if values:
            attributes.append((name, tuple(values)))

    if user == "":
        return RowResult("missing_user_id")
    if any(c in user for c in USER_RESERVED) or any(c in v for v in checked for c in VALUE_RESERVED):
        return RowResult("reserved_character")
    if any(len(v) >= TOO_LONG_CHARS for v in checked):
        return RowResult("value_too_long")
    if not segments and not attributes:
        return RowResult("no_attributes")
    if segments:
        attributes.insert(0, (rules.segment_attribute, tuple(segments)))
    return RowResult(None, user, tuple(attributes))


def line_of(user: str, attributes) -> str:
    """`<user>^<attr>:<v1>,<v2>;<attr>:<v1>` plus `\\n`."""
    return user + "^" + ";".join(name + ":" + ",".join(values) for name, values in attributes) + "\n"


# --- A run -------------------------------------------------------------------------------------


def expected_run(tables, rules: Rules = Rules(), *, group_by_user: bool = False) -> Expected:
    """The lines, invalid counts and invalid rows of a run over `tables`, in table order.

    Lines are those of the valid rows (`--skip-invalid-records`); without that flag a run with
    `invalid_rows` fails instead, naming the first of them that it finds (any of them: workers
    read the tables in parallel and in no fixed order).
    """
    lines, invalid, invalid_rows = Counter(), Counter(), []
    users: dict[str, dict[str, set]] = {}
    for table in tables:
        for number, row in enumerate(table.rows, start=1):
            result = judge_row(row, table.columns, rules)
            if result.reason:
                invalid[result.reason] += 1
                invalid_rows.append((table.name, number, result.reason))
            elif group_by_user:
                user = users.setdefault(result.user, {})
                for name, values in result.attributes:
                    user.setdefault(name, set()).update(values)
            else:
                lines[line_of(result.user, result.attributes)] += 1
    for user, attributes in users.items():
        names = sorted(attributes, key=lambda name: (name != rules.segment_attribute, name))
        lines[line_of(user, [(name, sorted(attributes[name])) for name in names])] += 1
    rows_read = {table.name: len(table.rows) for table in tables}
    return Expected(lines, invalid, invalid_rows, rows_read)
