"""Hostile tables against the reference model of SPEC §3 (issue #5): the pure layer, then the CLI.

Hypothesis draws tables with every attribute type, unicode up to astral characters, all of
SPEC's reserved characters, every white space character, nulls, empty values and values
around the 255 code point limit. The pure layer (`normalize`, `build_lines`, grouping) gets
most examples; whole CLI runs (about a second each) get a few dozen and must exit 0 with
exactly the model's lines, or 2/3 with the model's one-line reason, and never 1.

White space: Python's `str.strip()` and Arrow's `utf8_trim_whitespace` remove exactly the same
29 characters (`test_arrow_and_python_agree_on_white_space` checks all of them), so "white
space" in SPEC §3 means that set, and the strategies use all of it.
"""

import contextlib
import csv
import datetime
import gzip
import io
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.commands import cli
from reference_model import ModelTable, Rules, expected_run, judge_row, line_of, render
from pipeline.krux.grouping import group_lines, to_triples
from pipeline.krux.lines import LineRules, build_lines, normalize

DAY = "2026-11-28"

# --- Characters and strings --------------------------------------------------------------------

WHITE_SPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
NOT_WHITE_SPACE = "\u200b\ufeff\u180e\u2060"  # look blank, stripped by neither Python nor Arrow
RESERVED = "^;,\r\n"
ASTRAL = "\U0001f600\U0010ffff\U0001d11e\U00020000"
ORDINARY = "abZ09é字:\x00\"'\\\u0301-_."


def characters(excluded: str = "") -> st.SearchStrategy:
    """Any character but surrogates (not UTF-8) and `excluded`, the interesting ones often."""
    interesting = [c for c in WHITE_SPACE + NOT_WHITE_SPACE + RESERVED + ASTRAL + ORDINARY if c not in excluded]
    return st.one_of(st.sampled_from(interesting),
                     st.characters(exclude_categories=("Cs",), exclude_characters=excluded))


padding = st.text(st.sampled_from(WHITE_SPACE), max_size=2)


@st.composite
def long_strings(draw, lengths=(252, 257)):
    """One character repeated around 255 times, maybe padded with white space: the length limit."""
    core = draw(st.sampled_from(["x", "é", "\U0001f600", "字"])) * draw(st.integers(*lengths))
    return draw(padding) + core + draw(padding)


def string_strategies(hostile: bool) -> dict:
    """Strategies for string cells, user ids and segment cells.

    Hostile ones hold reserved characters and overlong values often enough that most rows of a
    table of a few rows have an invalid one; clean ones never do, so that runs without
    --skip-invalid-records get to write lines too. Both have nulls, empties and white space.
    """
    if hostile:
        inner = characters()
        long = long_strings()
        pool = ["a", " a ", "a\u3000", "b", "\U0001f600", "x:y", "é", "s;1", "u,1", "x^y"]
    else:
        inner = characters(excluded=RESERVED)
        long = long_strings((250, 254))
        pool = ["a", " a ", "a\u3000", "b", "\U0001f600", "x:y", "é"]
    texts = st.one_of(st.just(""), padding, st.sampled_from(pool), st.text(inner, max_size=8), long)
    strings = st.one_of(st.none(), texts)
    piece = st.one_of(st.sampled_from(["s1", " s1", "s2\t", "", " ", "\U0001f600", "a:b"]), texts)
    users = ["u1", " u1", "u1\u2003", "u2", "\U0001f600u", "u:1"]
    if hostile:
        user = st.one_of(st.sampled_from([*users, "u;1", "u^1", "u\n1"]), st.text(inner, min_size=1), strings)
        segment = st.one_of(strings, st.lists(piece, max_size=5).map(",".join))
    else:  # a user id and a segment on every row: no missing_user_id, no no_attributes
        user = st.one_of(st.sampled_from(users), st.text(inner, min_size=1).filter(str.strip))
        segment = st.lists(piece, max_size=4).map(lambda pieces: ",".join(["s1", *pieces]))
    return {
        "string": strings,
        "list<string>": st.one_of(st.none(), st.lists(strings, max_size=4)),
        "user": user,
        "segment": segment,
    }


HOSTILE, CLEAN = string_strategies(hostile=True), string_strategies(hostile=False)

# --- Columns -----------------------------------------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _timestamps(unit):
    """Mostly years 1-9999; also anywhere in int64 (in microseconds, years -290,308 to 294,247).

    Parquet has no seconds: a seconds column is stored in milliseconds, so it stays in the
    int64 range of milliseconds.
    """
    per_second = _PER_SECOND[unit]
    limit = 2**63 // 1000 if unit == "s" else 2**63
    low = max(-62135596800 * per_second, -limit)  # 0001-01-01
    high = min(253402300800 * per_second - 1, limit - 1)  # the end of 9999
    edges = [0, -1, 1, per_second, 86400 * per_second + 10, low - 1, high + 1, -limit, limit - 1]
    edges = st.sampled_from([e for e in edges if -limit <= e < limit])
    return st.one_of(st.integers(low, high), edges, st.integers(-limit, limit - 1))


VALUES = {
    "int64": st.one_of(st.none(), INT64, st.sampled_from([0, -1, 2**63 - 1, -(2**63)])),
    "float64": st.one_of(
        st.none(),
        st.floats(),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 2.0, 1e16, 1e-5, 0.1, 1e15, 5e-324]),
    ),
    "bool": st.one_of(st.none(), st.booleans()),
    "date32": st.one_of(  # days since 1970-01-01, mostly years 1-9999
        st.none(),
        st.dates().map(lambda d: (d - datetime.date(1970, 1, 1)).days),
        st.sampled_from([-719163, 2932897, -(2**31), 2**31 - 1]),
        st.integers(-(2**31), 2**31 - 1),
    ),
    **{f"timestamp[{unit}]": st.one_of(st.none(), _timestamps(unit)) for unit in _PER_SECOND},
    "list<int64>": st.one_of(st.none(), st.lists(st.one_of(st.none(), INT64), max_size=3)),
    "null": st.none(),
}
KINDS = sorted([*VALUES, "string", "list<string>"])
TIME_ZONES = [None, "UTC", "America/New_York", "+05:30", "Asia/Kathmandu"]
NAME_POOL = ["email", "a.b", "x-1", "_", "9", "SEGMENT", "segment", "user_id", "KUID"]  # shared across tables
RULES = [Rules(), Rules("KUID", "segment_name", "segment"), Rules("user_id", "td_segment", "s.1")]
BIG_EXAMPLES = [HealthCheck.too_slow, HealthCheck.data_too_large]  # wide tables, 255-character values


def arrow_type(kind: str, variant: int) -> pa.DataType:
    """The Arrow type of a model kind; `variant` picks among equivalent encodings and zones."""
    if kind == "string":
        return [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())][variant % 3]
    if kind.startswith("timestamp["):
        return pa.timestamp(kind[len("timestamp[") : -1], TIME_ZONES[variant % len(TIME_ZONES)])
    if kind == "list<string>":
        return [pa.list_(pa.string()), pa.large_list(pa.string())][variant % 2]
    simple = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "date32": pa.date32(),
              "list<int64>": pa.list_(pa.int64()), "null": pa.null()}
    return simple[kind]


def arrow_array(values: list, data_type: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(data_type):
        return pa.array(values, data_type.value_type).dictionary_encode()
    return pa.array(values, data_type)


@st.composite
def model_tables(draw, name: str, rules: Rules, *, hostile=None, all_strings: bool = False, max_rows: int = 8):
    """A `ModelTable` and the Arrow type of each column (every column a string if `all_strings`).

    `hostile` picks the string strategies (see `string_strategies`); None lets Hypothesis pick.
    """
    taken = {rules.user_column, rules.segment_column, rules.segment_attribute}
    wide = draw(st.integers(0, 9)) == 5  # not 0: Hypothesis favours the bounds
    strings = HOSTILE if (draw(st.booleans()) if hostile is None else hostile) else CLEAN
    attribute_names = st.one_of(
        st.sampled_from([n for n in NAME_POOL if n not in taken]),
        st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True).filter(lambda n: n not in taken),
    )
    names = draw(st.lists(attribute_names, unique=True,
                          min_size=30 if wide else 0, max_size=40 if wide else 5))
    kinds = ["string" if all_strings else draw(st.sampled_from(KINDS)) for _ in names]
    columns = list(zip(names, kinds))
    for column in (rules.user_column, rules.segment_column):
        columns.insert(draw(st.integers(0, len(columns))), (column, "string"))
    types = {n: arrow_type(k, 0 if all_strings else draw(st.integers(0, 9))) for n, k in columns}
    value_strategies = {n: strings[k] if k in strings else VALUES[k] for n, k in columns}
    value_strategies[rules.user_column] = strings["user"]
    value_strategies[rules.segment_column] = strings["segment"]
    empty = draw(st.sampled_from([False, False, False, True]))  # else Hypothesis favours zero rows
    rows = draw(st.lists(st.fixed_dictionaries(value_strategies), min_size=0 if empty else 1,
                         max_size=0 if empty else max_rows))
    return ModelTable(name, tuple(columns), tuple(rows)), types


def record_batch(table: ModelTable, types: dict) -> pa.RecordBatch:
    arrays = [arrow_array([row[n] for row in table.rows], types[n]) for n, _ in table.columns]
    return pa.RecordBatch.from_arrays(arrays, names=[n for n, _ in table.columns])


# --- The model itself, against SPEC's words ----------------------------------------------------


def test_model_gives_specs_example_line():
    columns = tuple((n, "string") for n in ["user_id", "td_segment", "email", "firstname", "lastname"])
    row = dict(zip([n for n, _ in columns], ["uid1", "seg1,seg2", "", "Britty", "Morris"]))
    result = judge_row(row, columns, Rules())
    assert line_of(result.user, result.attributes) == "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris\n"


def test_model_checks_reasons_in_specs_order_and_renders_types():
    columns = (("user_id", "string"), ("td_segment", "string"), ("n", "float64"), ("t", "timestamp[ns]"))
    judge = lambda **row: judge_row({"n": None, "t": None, **row}, columns, Rules())  # noqa: E731
    assert judge(user_id=" ", td_segment="a;b").reason == "missing_user_id"
    assert judge(user_id="u^", td_segment="x" * 300).reason == "reserved_character"
    assert judge(user_id="u", td_segment=" x , " + "y" * 255).reason == "value_too_long"
    assert judge(user_id="u", td_segment=" , ", n=math.nan).reason == "no_attributes"
    valid = judge(user_id=" u ", td_segment="b, a,b ," + "y" * 254, n=2.0, t=1_500_000_000)
    assert line_of(valid.user, valid.attributes) == f"u^segment:b,a,{'y' * 254};n:2.0;t:1970-01-01T00:00:01.5Z\n"


def test_model_dates_match_pythons_calendar_and_go_beyond_it():
    for days in range(-719162, 2932897, 997):  # 0001-01-01 to 9999-12-31, every 997th day
        assert render(days, "date32") == (datetime.date(1970, 1, 1) + datetime.timedelta(days=days)).isoformat()
    assert render(-719163, "date32") == "0000-12-31"
    assert render(-719163 - 366, "date32") == "-0001-12-31"  # year 0 is a leap year
    assert render(2932897, "date32") == "+10000-01-01"
    assert render(-(10**9) - 1, "timestamp[s]") == "1938-04-24T22:13:19Z"
    assert render(2**63 - 1, "timestamp[us]") == "+294247-01-10T04:00:54.775807Z"  # numpy agrees


def test_arrow_and_python_agree_on_white_space():
    everything = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    padded = pa.array([c + "x" + c for c in everything])
    stripped_by_arrow = {c for c, s in zip(everything, pc.utf8_trim_whitespace(padded).to_pylist()) if s == "x"}
    assert stripped_by_arrow == set(WHITE_SPACE)
    assert len(WHITE_SPACE) == 29


# --- The pure layer ----------------------------------------------------------------------------


@st.composite
def pure_cases(draw):
    rules = draw(st.sampled_from(RULES))
    count = draw(st.integers(1, 3))
    tables = [draw(model_tables(f"t{i}", rules, max_rows=12)) for i in range(count)]
    cuts = [draw(st.integers(0, len(table.rows))) for table, _ in tables]
    return rules, tables, cuts


def _line_rules(rules: Rules) -> LineRules:
    return LineRules(rules.user_column, rules.segment_column, rules.segment_attribute)


@settings(max_examples=300, deadline=None, suppress_health_check=BIG_EXAMPLES)
@given(case=pure_cases())
def test_normalize_and_build_lines_agree_with_the_model_row_by_row(case):
    rules, tables, cuts = case
    triples, grouped_expected = [], expected_run([t for t, _ in tables], rules, group_by_user=True)
    for (table, types), cut in zip(tables, cuts):
        batch = record_batch(table, types)
        # Sliced batches carry array offsets, as batches cut from a bigger read do.
        for part, rows in ((batch.slice(0, cut), table.rows[:cut]), (batch.slice(cut), table.rows[cut:])):
            norm = normalize(part, _line_rules(rules))
            results = [judge_row(row, table.columns, rules) for row in rows]
            assert norm.reasons.to_pylist() == [r.reason for r in results]
            valid = norm.filter(pc.is_null(norm.reasons))
            lines = build_lines(valid, rules.segment_attribute).to_pylist()
            assert lines == [line_of(r.user, r.attributes) for r in results if r.reason is None]
            triples.append(to_triples(valid, rules.segment_attribute))
    grouped = group_lines(pa.concat_tables(triples), rules.segment_attribute).to_pylist()
    assert Counter(grouped) == grouped_expected.lines


# --- Whole runs through the CLI ----------------------------------------------------------------

LAYOUTS = ["parquet", "parquet", "parquet_dir", "csv", "csv.gz"]
BAD_COLUMNS = ["a:b", "é", "a b", "", "int_user"]


class TableFile(NamedTuple):
    """A model table as the test writes it to disk."""

    table: ModelTable
    types: dict  # column -> Arrow type (Parquet)
    layout: str  # one of LAYOUTS
    bad_column: str | None  # a column that makes the schema invalid, or "int_user", or None
    variant: int  # Parquet: rows per row group; CSV: odd for \r\n and minimal quoting


@st.composite
def cli_cases(draw):
    """Tables to write (with a layout each), the rules, the flags, and maybe schema errors.

    A third of the cases have clean tables only, so that runs without --skip-invalid-records
    write lines too; a third hostile ones only; in the rest each table is either.
    """
    rules = draw(st.sampled_from(RULES))
    count = draw(st.integers(1, 3))
    hostile = draw(st.sampled_from([False, True, None]))
    event(f"hostile tables: {hostile}")
    files = []
    for i in range(count):
        layout = draw(st.sampled_from(LAYOUTS))
        is_csv = layout.startswith("csv")
        table, types = draw(model_tables(f"segment_{i}", rules, hostile=hostile, all_strings=is_csv))
        if is_csv:  # CSV has no nulls: a missing value is an empty one
            rows = tuple({k: "" if v is None else v for k, v in row.items()} for row in table.rows)
            table = ModelTable(table.name, table.columns, rows)
        bad = draw(st.sampled_from([None] * 80 + BAD_COLUMNS))
        if bad == "int_user" and is_csv:
            bad = "a:b"  # every CSV column is a string: a bad name instead
        files.append(TableFile(table, types, layout, bad, draw(st.integers(1, 4))))
    group_first = draw(st.booleans())  # which of the two runs groups
    return rules, files, group_first


def write_table(directory: str, file: TableFile, user_column: str) -> str:
    """Writes `file` under `directory`; returns the `--source` path."""
    table, types, layout, bad, variant = file
    names = [n for n, _ in table.columns]
    rows = [[row[n] for n in names] for row in table.rows]
    if bad == "int_user":  # the user column holds integers
        user = names.index(user_column)
        types = {**types, user_column: pa.int64()}
        rows = [[*r[:user], i, *r[user + 1 :]] for i, r in enumerate(rows)]
    elif bad is not None:
        names, rows = names + [bad], [r + [None] for r in rows]
        types = {**types, bad: pa.string()}
    if layout.startswith("csv"):
        path = os.path.join(directory, f"{table.name}.{layout}")
        opener = gzip.open if layout.endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8", newline="") as handle:
            # Python quotes a value holding \r or \n only if the line terminator holds it: with
            # "\n" alone it would write a bare \r, which ends a row in CSV.
            dialect = ("\r\n", csv.QUOTE_MINIMAL) if variant % 2 else ("\n", csv.QUOTE_ALL)
            writer = csv.writer(handle, lineterminator=dialect[0], quoting=dialect[1])
            writer.writerow(names)
            writer.writerows([["" if v is None else v for v in r] for r in rows])
        return path
    arrow_table = pa.Table.from_arrays(
        [arrow_array([r[i] for r in rows], types[n]) for i, n in enumerate(names)], names=names
    )
    if layout == "parquet":
        path = os.path.join(directory, f"{table.name}.parquet")
        pq.write_table(arrow_table, path, row_group_size=variant)
        return path
    path = os.path.join(directory, table.name)  # a directory of two files, rows split between them
    os.mkdir(path)
    cut = len(rows) // 2
    pq.write_table(arrow_table.slice(0, cut), os.path.join(path, "part-0.parquet"), row_group_size=variant)
    pq.write_table(arrow_table.slice(cut), os.path.join(path, "part-1.parquet"), row_group_size=variant)
    return path


def run_cli(argv: list) -> tuple[int, dict, str]:
    """`krux-export run` in this process: (exit code, last stdout line as JSON, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, json.loads(out.getvalue().strip().splitlines()[-1]), err.getvalue()


def assert_one_line_failure(code: int, summary: dict, stderr: str, output: str) -> str:
    assert summary == {"status": "failed", "exit_code": code, "error": summary["error"],
                       "run_id": summary["run_id"], "date": DAY}
    assert "\n" not in summary["error"] and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == f"krux-export: error: {summary['error']}"
    assert not os.path.exists(os.path.join(output, DAY))  # nothing published
    return summary["error"]


def check_run(files: list, rules: Rules, *, skip: bool, group: bool, sources: list, workdir: str) -> None:
    output = tempfile.mkdtemp(dir=workdir)
    argv = ["run", *[a for s in sources for a in ("--source", s)], "--output-root", output, "--date", DAY,
            "--compression", "none", "--user-column", rules.user_column, "--segment-column", rules.segment_column,
            "--segment-attribute", rules.segment_attribute, "--runner=FnApiRunner"]
    argv += ["--skip-invalid-records"] * skip + ["--group-by-user"] * group
    code, summary, stderr = run_cli(argv)
    event(f"{'skip' if skip else 'no skip'}: exit {code}")
    assert code != 1 and "Traceback" not in stderr, stderr

    schema_errors = [(f.table.name, f.bad_column) for f in files if f.bad_column is not None]
    expected = expected_run([f.table for f in files], rules, group_by_user=group)
    if schema_errors:
        name, bad = schema_errors[0]
        error = assert_one_line_failure(code, summary, stderr, output)
        assert code == 2 and error.startswith(f"table {name}"), error
        assert (rules.user_column if bad == "int_user" else bad) in error
    elif expected.invalid_rows and not skip:
        error = assert_one_line_failure(code, summary, stderr, output)
        named = [f"table {table} row {row}: {reason}" for table, row, reason in expected.invalid_rows]
        assert code == 3 and any(error.startswith(text) for text in named), error
    elif not expected.lines:
        error = assert_one_line_failure(code, summary, stderr, output)
        assert code == 3 and "no valid lines" in error
    else:
        assert code == 0, summary
        with open(os.path.join(output, DAY, "first_party_segment.txt"), "rb") as handle:
            data = handle.read()
        # Split on \n only: values may hold U+2028, U+0085 and others that splitlines() cuts at.
        assert data.endswith(b"\n")
        assert Counter(line + "\n" for line in data.decode("utf-8").split("\n")[:-1]) == expected.lines
        assert summary["rows_read"] == {"total": sum(expected.rows_read.values()), "tables": expected.rows_read}
        assert summary["lines_written"] == sum(expected.lines.values())
        assert summary["invalid"] == dict(expected.invalid)


@settings(max_examples=40, deadline=None, suppress_health_check=BIG_EXAMPLES)
@given(case=cli_cases())
def test_cli_run_writes_exactly_the_models_lines_or_fails_with_its_one_line_reason(case):
    rules, files, group_first = case
    workdir = tempfile.mkdtemp(prefix="krux-hostile-")
    try:
        sources = [write_table(workdir, file, rules.user_column) for file in files]
        check_run(files, rules, skip=False, group=group_first, sources=sources, workdir=workdir)
        check_run(files, rules, skip=True, group=not group_first, sources=sources, workdir=workdir)
    finally:
        shutil.rmtree(workdir)
