"""The Krux line (SPEC §3): stripping, splitting, rendering, invalid records, line text.

Expected values are written by hand from SPEC §3 and Python's float repr, not taken from the
program's output.
"""

import math
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from pipeline.krux.lines import (
    InvalidReason,
    LineRules,
    NormalizedBatch,
    attribute_type_supported,
    build_lines,
    normalize,
)

RULES = LineRules("user_id", "td_segment", "segment")
MISSING = InvalidReason.MISSING_USER_ID.value
RESERVED = InvalidReason.RESERVED_CHARACTER.value
TOO_LONG = InvalidReason.VALUE_TOO_LONG.value
NOTHING = InvalidReason.NO_ATTRIBUTES.value


def normalize_columns(columns: dict, rules: LineRules = RULES) -> NormalizedBatch:
    """`normalize` over a batch with these columns, in this order."""
    return normalize(pa.RecordBatch.from_pydict(columns), rules)


def lines_of(columns: dict, rules: LineRules = RULES) -> list[str]:
    """The Krux line of every row (valid or not: the caller filters in production)."""
    return build_lines(normalize_columns(columns, rules), rules.segment_attribute).to_pylist()


def attribute_values(column: pa.Array) -> list[list[str]]:
    """The cleaned values `normalize` gives an attribute column `a`, row by row."""
    rows = len(column)
    norm = normalize_columns({"user_id": ["u"] * rows, "td_segment": ["s"] * rows, "a": column})
    return dict(norm.attributes)["a"].to_pylist()


def reasons_of(columns: dict) -> list[tuple]:
    norm = normalize_columns(columns)
    return list(zip(norm.reasons.to_pylist(), norm.reason_columns.to_pylist()))


# -- SPEC's example and line layout -------------------------------------------------------------


def test_spec_example_row_gives_the_spec_line():
    columns = {
        "user_id": ["uid1"],
        "td_segment": ["seg1,seg2"],
        "email": [""],
        "firstname": ["Britty"],
        "lastname": ["Morris"],
    }

    assert lines_of(columns) == ["uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris\n"]
    assert reasons_of(columns) == [(None, None)]


@pytest.mark.parametrize(
    "row, line",
    [
        pytest.param({"td_segment": "a", "x": "1", "y": "2"}, "u^segment:a;x:1;y:2\n", id="all-present"),
        pytest.param({"td_segment": None, "x": "1", "y": "2"}, "u^x:1;y:2\n", id="no-segments"),
        pytest.param({"td_segment": " , ", "x": None, "y": "2"}, "u^y:2\n", id="only-last"),
        pytest.param({"td_segment": "a,b", "x": "", "y": None}, "u^segment:a,b\n", id="only-segments"),
        pytest.param({"td_segment": "a", "x": None, "y": "2"}, "u^segment:a;y:2\n", id="gap"),
    ],
)
def test_line_writes_segments_first_then_attributes_in_column_order_omitting_empty_ones(row, line):
    columns = {"user_id": ["u"], "td_segment": [row["td_segment"]], "x": [row["x"]], "y": [row["y"]]}

    assert lines_of(columns) == [line]


def test_line_uses_the_configured_columns_and_segment_attribute_name():
    rules = LineRules(user_column="KUID", segment_column="segment_name", segment_attribute="seg")
    columns = {"city": ["Paris"], "segment_name": ["s1"], "KUID": ["k1"]}

    assert lines_of(columns, rules) == ["k1^seg:s1;city:Paris\n"]


def test_lines_data_buffer_is_the_concatenated_lines():
    columns = {"user_id": ["u1", "u2", "u3"], "td_segment": ["a", "b,c", "d"], "n": [1, None, 3]}
    norm = normalize_columns(columns).filter(pa.array([False, True, True]))

    lines = build_lines(norm, "segment")

    assert isinstance(lines, pa.Array) and lines.type == pa.string()
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    assert data == b"u2^segment:b,c\nu3^segment:d;n:3\n"


def test_lines_keep_one_entry_per_row_when_a_row_has_no_values():
    # pyarrow 25's binary_join_element_wise(null_handling="skip") drops such rows.
    columns = {"user_id": ["u1", "u2", "u3"], "td_segment": ["a", None, "c"], "x": ["1", None, None]}

    lines = lines_of(columns)

    assert len(lines) == 3
    assert lines[0] == "u1^segment:a;x:1\n" and lines[2] == "u3^segment:c\n"


def test_lines_are_large_string_when_the_text_would_not_fit_in_string():
    norm = normalize_columns({"user_id": ["u1", "u2"], "td_segment": ["a,b", "c"], "tags": [["x", "y"], []]})

    lines = build_lines(norm, "segment", max_string_bytes=10)

    assert lines.type == pa.large_string()
    assert lines.to_pylist() == ["u1^segment:a,b;tags:x,y\n", "u2^segment:c\n"]


def test_utf8_values_are_written_as_they_are():
    assert lines_of({"user_id": ["ユーザー"], "td_segment": ["été,😀"], "city": ["Zürich"]}) == [
        "ユーザー^segment:été,😀;city:Zürich\n"
    ]


# -- Stripping, omission, segments ----------------------------------------------------------------


def test_user_id_is_stripped_of_surrounding_white_space():
    norm = normalize_columns({"user_id": ["  uid1\t", "\u3000u2 "], "td_segment": ["a", "b"]})

    assert norm.user.to_pylist() == ["uid1", "u2"]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("  Britty ", ["Britty"]),
        ("a b", ["a b"]),
        ("", []),
        ("   ", []),
        ("\t\n", []),
        (None, []),
    ],
)
def test_string_attribute_is_stripped_and_null_or_empty_is_omitted(value, expected):
    assert attribute_values(pa.array([value], pa.string())) == [expected]


@pytest.mark.parametrize(
    "segment, expected",
    [
        ("seg1,seg2", ["seg1", "seg2"]),
        (" seg1 ,  seg2 ", ["seg1", "seg2"]),
        ("b,a,b,c,a", ["b", "a", "c"]),
        ("a, a ,a", ["a"]),
        ("A,a", ["A", "a"]),
        (",,a,,b,", ["a", "b"]),
        (" , ", []),
        ("", []),
        (None, []),
        ("x:y", ["x:y"]),
    ],
)
def test_segments_are_split_stripped_without_empties_or_repeats_first_kept(segment, expected):
    norm = normalize_columns({"user_id": ["u"], "td_segment": [segment]})

    assert norm.segments.to_pylist() == [expected]


def test_segment_repeats_are_dropped_within_a_row_not_across_rows():
    norm = normalize_columns({"user_id": ["u1", "u2", "u3"], "td_segment": ["a,b,a", "b,a,b", "a"]})

    assert norm.segments.to_pylist() == [["a", "b"], ["b", "a"], ["a"]]


def test_segment_repeats_keep_first_occurrence_order_on_long_rows():
    # Long rows, so that an unstable sort inside the de-duplication would show.
    rng = np.random.default_rng(7)
    rows = [[f"s{i}" for i in rng.integers(0, 30, size)] for size in rng.integers(1, 200, 50)]

    norm = normalize_columns({"user_id": ["u"] * len(rows), "td_segment": [",".join(row) for row in rows]})

    assert norm.segments.to_pylist() == [list(dict.fromkeys(row)) for row in rows]


# -- Invalid records ----------------------------------------------------------------------------

LONG_OK = "é" * 254  # 254 code points, 508 bytes
LONG_BAD = "é" * 255


@pytest.mark.parametrize(
    "user, segment, name, expected",
    [
        pytest.param("u", "a", "x", (None, None), id="valid"),
        pytest.param(None, "a", "x", (MISSING, "user_id"), id="user-null"),
        pytest.param("", "a", "x", (MISSING, "user_id"), id="user-empty"),
        pytest.param(" \t ", "a", "x", (MISSING, "user_id"), id="user-blank"),
        pytest.param("a^b", "a", "x", (RESERVED, "user_id"), id="user-caret"),
        pytest.param("a\rb", "a", "x", (RESERVED, "user_id"), id="user-cr"),
        pytest.param("a\nb", "a", "x", (RESERVED, "user_id"), id="user-lf"),
        pytest.param("a;b,c:d", "a", "x", (None, None), id="user-may-hold-semicolon-comma-colon"),
        pytest.param("u" * 1000, "a", "x", (None, None), id="user-length-unchecked"),
        pytest.param("u", "a^b", "x", (RESERVED, "td_segment"), id="segment-caret"),
        pytest.param("u", "a;b", "x", (RESERVED, "td_segment"), id="segment-semicolon"),
        pytest.param("u", "a\rb", "x", (RESERVED, "td_segment"), id="segment-cr"),
        pytest.param("u", "a\nb", "x", (RESERVED, "td_segment"), id="segment-lf"),
        pytest.param("u", "a,b", "x", (None, None), id="segment-comma-splits"),
        pytest.param("u", "a:b", "x", (None, None), id="segment-colon"),
        pytest.param("u", "a", "x^y", (RESERVED, "name"), id="attribute-caret"),
        pytest.param("u", "a", "x;y", (RESERVED, "name"), id="attribute-semicolon"),
        pytest.param("u", "a", "x,y", (RESERVED, "name"), id="attribute-comma"),
        pytest.param("u", "a", "x\ry", (RESERVED, "name"), id="attribute-cr"),
        pytest.param("u", "a", "x\ny", (RESERVED, "name"), id="attribute-lf"),
        pytest.param("u", "a", " x\n", (None, None), id="attribute-lf-stripped-away"),
        pytest.param("u", "a", "https://x.example/a:b", (None, None), id="attribute-colon"),
        pytest.param("u", LONG_OK, "x", (None, None), id="segment-254-code-points"),
        pytest.param("u", LONG_BAD, "x", (TOO_LONG, "td_segment"), id="segment-255-code-points"),
        pytest.param("u", "😀" * 254, "x", (None, None), id="segment-254-four-byte"),
        pytest.param("u", "😀" * 255, "x", (TOO_LONG, "td_segment"), id="segment-255-four-byte"),
        pytest.param("u", f"  {LONG_OK}  ", "x", (None, None), id="segment-length-after-strip"),
        pytest.param("u", "a", LONG_OK, (None, None), id="attribute-254-code-points"),
        pytest.param("u", "a", LONG_BAD, (TOO_LONG, "name"), id="attribute-255-code-points"),
        pytest.param("u", "a" * 255, "x", (TOO_LONG, "td_segment"), id="segment-255-ascii"),
        pytest.param("u", None, None, (NOTHING, None), id="nothing-left"),
        pytest.param("u", " , ,", "  ", (NOTHING, None), id="nothing-left-after-strip"),
        pytest.param("u", None, "x", (None, None), id="attribute-alone-is-enough"),
    ],
)
def test_each_invalid_reason_at_its_edge(user, segment, name, expected):
    columns = {"user_id": [user], "td_segment": [segment], "name": [name], "n": pa.array([None], pa.int64())}

    assert reasons_of(columns) == [expected]


@pytest.mark.parametrize(
    "row, expected",
    [
        pytest.param(
            {"user_id": None, "td_segment": "a^b", "p": None, "q": None},
            (MISSING, "user_id"),
            id="missing-first",
        ),
        pytest.param(
            {"user_id": None, "td_segment": None, "p": None, "q": None},
            (MISSING, "user_id"),
            id="missing-over-nothing",
        ),
        pytest.param(
            {"user_id": "u^", "td_segment": LONG_BAD, "p": None, "q": None},
            (RESERVED, "user_id"),
            id="reserved-user-over-long",
        ),
        pytest.param(
            {"user_id": "u", "td_segment": LONG_BAD, "p": "x;y", "q": None},
            (RESERVED, "p"),
            id="reserved-over-long",
        ),
        pytest.param(
            {"user_id": "u", "td_segment": "a^", "p": "x;y", "q": None},
            (RESERVED, "td_segment"),
            id="segment-before-attributes",
        ),
        pytest.param(
            {"user_id": "u^", "td_segment": "a^", "p": None, "q": None},
            (RESERVED, "user_id"),
            id="user-before-segment",
        ),
        pytest.param(
            {"user_id": "u", "td_segment": None, "p": "x;y", "q": "x^y"}, (RESERVED, "p"), id="column-order"
        ),
        pytest.param(
            {"user_id": "u", "td_segment": None, "p": LONG_BAD, "q": LONG_BAD},
            (TOO_LONG, "p"),
            id="long-column-order",
        ),
        pytest.param(
            {"user_id": "u^", "td_segment": None, "p": None, "q": None},
            (RESERVED, "user_id"),
            id="reserved-over-nothing",
        ),
    ],
)
def test_the_first_reason_and_first_column_win_when_several_apply(row, expected):
    columns = {name: pa.array([value], pa.string()) for name, value in row.items()}

    assert reasons_of(columns) == [expected]


def test_attribute_columns_are_checked_in_batch_column_order():
    columns = {"q": ["x^y"], "user_id": ["u"], "p": ["x;y"], "td_segment": ["a"]}

    assert reasons_of(columns) == [(RESERVED, "q")]


def test_reasons_are_given_per_row():
    columns = {
        "user_id": ["u1", None, "u3", "u4", "u5"],
        "td_segment": ["a", "b", "c^", None, LONG_BAD],
        "name": ["x", "y", "z", None, "w"],
    }

    assert reasons_of(columns) == [
        (None, None),
        (MISSING, "user_id"),
        (RESERVED, "td_segment"),
        (NOTHING, None),
        (TOO_LONG, "td_segment"),
    ]


def test_reserved_characters_at_either_end_of_a_value_flag_only_its_own_row():
    columns = {
        "user_id": ["u1", "u2", "u3", "u4", "^u5", "u6^"],
        "td_segment": ["a", "^b", "c", "d;", "e", "f"],
        "name": ["x", "y", ",z", "w", "v", "t"],
    }

    assert reasons_of(columns) == [
        (None, None),
        (RESERVED, "td_segment"),
        (RESERVED, "name"),
        (RESERVED, "td_segment"),
        (RESERVED, "user_id"),
        (RESERVED, "user_id"),
    ]


def test_text_rendered_from_other_types_is_not_checked():
    when = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    columns = {"user_id": ["u"], "td_segment": [None], "at": pa.array([when], pa.timestamp("s", "UTC"))}

    assert reasons_of(columns) == [(None, None)]
    assert lines_of(columns) == ["u^at:2026-11-28T09:30:00Z\n"]


@pytest.mark.parametrize(
    "column, expected",
    [
        pytest.param(pa.array([["ok", "x^y"]]), (RESERVED, "a"), id="list-of-strings"),
        pytest.param(pa.array([["ok", LONG_BAD]]), (TOO_LONG, "a"), id="list-too-long"),
        pytest.param(pa.array(["x;y"]).dictionary_encode(), (RESERVED, "a"), id="dictionary-strings"),
        pytest.param(pa.array(["x\ny"], pa.large_string()), (RESERVED, "a"), id="large-string"),
        pytest.param(pa.array([LONG_BAD], pa.large_string()), (TOO_LONG, "a"), id="large-string-too-long"),
    ],
)
def test_string_typed_lists_dictionaries_and_large_strings_are_checked(column, expected):
    columns = {"user_id": ["u"], "td_segment": ["s"], "a": column}

    assert reasons_of(columns) == [expected]


def test_reason_strings_are_the_spec_names():
    assert [reason.value for reason in InvalidReason] == [
        "missing_user_id",
        "reserved_character",
        "value_too_long",
        "no_attributes",
    ]


# -- Lists ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, expected",
    [
        pytest.param(
            pa.array([[" b ", None, "", "a", "  ", "b"]]), [["b", "a", "b"]], id="strings-order-kept-no-dedup"
        ),
        pytest.param(
            pa.array([None, [], ["x"]], pa.list_(pa.string())), [[], [], ["x"]], id="null-and-empty-lists"
        ),
        pytest.param(pa.array([[3, None, 1]], pa.list_(pa.int64())), [["3", "1"]], id="ints"),
        pytest.param(pa.array([[2.0, math.nan, 1.5]]), [["2.0", "1.5"]], id="floats-nan-dropped"),
        pytest.param(pa.array([[True, False]]), [["true", "false"]], id="bools"),
        pytest.param(pa.array([["a", "b"]], pa.large_list(pa.large_string())), [["a", "b"]], id="large-list"),
        pytest.param(
            pa.array([["x", "y"]], pa.list_(pa.dictionary(pa.int32(), pa.string()))),
            [["x", "y"]],
            id="dictionary-values",
        ),
        pytest.param(pa.array([[None, None]], pa.list_(pa.null())), [[]], id="list-of-nulls"),
    ],
)
def test_list_columns_give_several_values_nulls_and_empties_dropped(column, expected):
    assert attribute_values(column) == expected


def test_list_line_joins_values_with_commas():
    columns = {"user_id": ["u"], "td_segment": ["s"], "tags": pa.array([["golf", "tennis", "golf"]])}

    assert lines_of(columns) == ["u^segment:s;tags:golf,tennis,golf\n"]


def test_null_list_spanning_values_contributes_nothing():
    # Arrow lets a null list's offsets span values; they are not the row's values.
    tags = pa.ListArray.from_arrays(
        pa.array([0, 1, 3, 4], pa.int32()),
        pa.array(["a", "hidden", "hidden", "d"]),
        mask=pa.array([False, True, False]),
    )

    assert attribute_values(tags) == [["a"], [], ["d"]]


def test_a_sliced_batch_gives_the_same_rows_as_a_fresh_one():
    batch = pa.RecordBatch.from_pydict(
        {
            "user_id": ["u0", "u1", "u^2", "u3"],
            "td_segment": ["a,a", "b;", "c", "d, e ,d"],
            "tags": pa.array([["x"], None, ["y", ""], [" z ", "w"]]),
            "n": [1, 2, None, 4],
        }
    )

    norm = normalize(batch.slice(1), RULES)

    assert norm.user.to_pylist() == ["u1", "u^2", "u3"]
    assert norm.segments.to_pylist() == [["b;"], ["c"], ["d", "e"]]
    assert dict(norm.attributes)["tags"].to_pylist() == [[], ["y"], ["z", "w"]]
    assert list(zip(norm.reasons.to_pylist(), norm.reason_columns.to_pylist())) == [
        (RESERVED, "td_segment"),
        (RESERVED, "user_id"),
        (None, None),
    ]
    assert build_lines(norm.filter(pa.array([False, False, True])), "segment").to_pylist() == [
        "u3^segment:d,e;tags:z,w;n:4\n"
    ]


# -- Rendering of non-string types ----------------------------------------------------------------


@pytest.mark.parametrize(
    "column, expected",
    [
        pytest.param(pa.array([-5], pa.int8()), "-5", id="int8"),
        pytest.param(pa.array([0], pa.int64()), "0", id="int64-zero"),
        pytest.param(pa.array([1234567890123], pa.int64()), "1234567890123", id="int64"),
        pytest.param(pa.array([2**64 - 1], pa.uint64()), "18446744073709551615", id="uint64-max"),
        pytest.param(pa.array([True]), "true", id="bool-true"),
        pytest.param(pa.array([False]), "false", id="bool-false"),
        pytest.param(pa.array([2.0]), "2.0", id="float-integral"),
        pytest.param(pa.array([1.5]), "1.5", id="float-fraction"),
        pytest.param(pa.array([100.0]), "100.0", id="float-hundred"),
        pytest.param(pa.array([0.0]), "0.0", id="float-zero"),
        pytest.param(pa.array([-0.0]), "-0.0", id="float-negative-zero"),
        pytest.param(pa.array([-2.5]), "-2.5", id="float-negative"),
        pytest.param(pa.array([0.1]), "0.1", id="float-tenth"),
        pytest.param(pa.array([1 / 3]), "0.3333333333333333", id="float-third"),
        pytest.param(pa.array([1e16]), "1e+16", id="float-1e16"),
        pytest.param(pa.array([1.5e16]), "1.5e+16", id="float-1.5e16"),
        pytest.param(pa.array([1e15]), "1000000000000000.0", id="float-1e15"),
        pytest.param(pa.array([123456789012345.6]), "123456789012345.6", id="float-15-digits"),
        pytest.param(pa.array([1234567890123456.8]), "1234567890123456.8", id="float-just-under-1e16"),
        pytest.param(pa.array([1e22]), "1e+22", id="float-1e22"),
        pytest.param(pa.array([-1.5e300]), "-1.5e+300", id="float-huge-negative"),
        pytest.param(pa.array([1e-05]), "1e-05", id="float-1e-05"),
        pytest.param(pa.array([0.0001]), "0.0001", id="float-0.0001"),
        pytest.param(pa.array([0.00012]), "0.00012", id="float-0.00012"),
        pytest.param(pa.array([1.5e-07]), "1.5e-07", id="float-1.5e-07"),
        pytest.param(pa.array([5e-324]), "5e-324", id="float-smallest"),
        pytest.param(pa.array([math.inf]), "inf", id="float-inf"),
        pytest.param(pa.array([-math.inf]), "-inf", id="float-minus-inf"),
        pytest.param(pa.array([1.5], pa.float32()), "1.5", id="float32"),
        pytest.param(pa.array([2.0], pa.float32()), "2.0", id="float32-integral"),
        pytest.param(pa.array([0.1], pa.float32()), "0.1", id="float32-own-shortest-digits"),
        pytest.param(pa.array([1e16], pa.float32()), "1e+16", id="float32-1e16"),
        pytest.param(pa.array(np.array([0.1], np.float16)), "0.1", id="float16-own-shortest-digits"),
        pytest.param(pa.array(np.array([2.0], np.float16)), "2.0", id="float16-integral"),
        pytest.param(pa.array([date(2026, 11, 28)], pa.date32()), "2026-11-28", id="date32"),
        pytest.param(pa.array([date(2026, 1, 2)], pa.date64()), "2026-01-02", id="date64"),
        pytest.param(pa.array([Decimal("1.50")], pa.decimal128(10, 2)), "1.50", id="decimal"),
        pytest.param(pa.array([Decimal(-3)], pa.decimal128(5, 0)), "-3", id="decimal-integer"),
        pytest.param(pa.array([Decimal("12.345")], pa.decimal256(40, 3)), "12.345", id="decimal256"),
        pytest.param(pa.array([7], pa.int32()).dictionary_encode(), "7", id="dictionary-int"),
        pytest.param(pa.array(["  x "]).dictionary_encode(), "x", id="dictionary-string-stripped"),
        pytest.param(pa.array([" x "], pa.large_string()), "x", id="large-string"),
        pytest.param(pa.array([" x "], pa.string_view()), "x", id="string-view"),
    ],
)
def test_non_string_values_are_rendered_as_spec_text(column, expected):
    assert attribute_values(column) == [[expected]]


@pytest.mark.parametrize(
    "column",
    [
        pytest.param(pa.array([math.nan]), id="float64-nan"),
        pytest.param(pa.array([math.nan], pa.float32()), id="float32-nan"),
        pytest.param(pa.array(np.array([np.nan], np.float16)), id="float16-nan"),
        pytest.param(pa.array([None], pa.float16()), id="float16-null"),
        pytest.param(pa.array([None], pa.float64()), id="float-null"),
        pytest.param(pa.array([None], pa.int64()), id="int-null"),
        pytest.param(pa.array([None], pa.bool_()), id="bool-null"),
        pytest.param(pa.array([None], pa.timestamp("ms")), id="timestamp-null"),
        pytest.param(pa.nulls(1), id="null-type"),
        pytest.param(pa.nulls(1, pa.string()).dictionary_encode(), id="dictionary-all-null"),
    ],
)
def test_nan_and_nulls_omit_the_attribute(column):
    assert attribute_values(column) == [[]]


def test_floats_render_row_by_row_in_a_mixed_column():
    column = pa.array([2.0, None, 1e15, 1.5, math.nan, 1e-05, 7.25, 1e16])

    assert attribute_values(column) == [
        ["2.0"],
        [],
        ["1000000000000000.0"],
        ["1.5"],
        [],
        ["1e-05"],
        ["7.25"],
        ["1e+16"],
    ]


def test_floats_of_every_magnitude_match_python_repr():
    rng = np.random.default_rng(11)
    numbers = rng.standard_normal(5000) * 10.0 ** rng.integers(-30, 30, 5000)
    numbers = np.concatenate([numbers, np.round(numbers), 10.0 ** np.arange(-20, 23)])

    assert attribute_values(pa.array(numbers)) == [[repr(float(x))] for x in numbers]


TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")


def timestamps(text: str, unit: str) -> pa.Array:
    """A naive timestamp column holding one value, written as ISO text."""
    return pa.array([np.datetime64(text, unit)], pa.timestamp(unit))


@pytest.mark.parametrize(
    "column, expected",
    [
        pytest.param(timestamps("2026-11-28T09:30:00", "s"), "2026-11-28T09:30:00Z", id="naive-seconds"),
        pytest.param(timestamps("2026-11-28T09:30:00", "ms"), "2026-11-28T09:30:00Z", id="ms-zero-fraction"),
        pytest.param(
            timestamps("2026-11-28T09:30:10", "us"), "2026-11-28T09:30:10Z", id="us-zero-fraction-tens"
        ),
        pytest.param(timestamps("2026-11-28T09:30:00", "ns"), "2026-11-28T09:30:00Z", id="ns-zero-fraction"),
        pytest.param(timestamps("2026-11-28T09:30:00.5", "ms"), "2026-11-28T09:30:00.5Z", id="ms-half"),
        pytest.param(
            timestamps("2026-11-28T09:30:00.120", "ms"), "2026-11-28T09:30:00.12Z", id="ms-trailing-zero"
        ),
        pytest.param(timestamps("2026-11-28T09:30:00.5", "us"), "2026-11-28T09:30:00.5Z", id="us-half"),
        pytest.param(
            timestamps("2026-11-28T09:30:00.123456", "us"), "2026-11-28T09:30:00.123456Z", id="us-micros"
        ),
        pytest.param(
            timestamps("2026-11-28T09:30:00.000001", "us"), "2026-11-28T09:30:00.000001Z", id="us-one-micro"
        ),
        pytest.param(
            timestamps("2026-11-28T09:30:00.123456789", "ns"), "2026-11-28T09:30:00.123456789Z", id="ns-nanos"
        ),
        pytest.param(timestamps("1969-12-31T23:59:59.5", "ms"), "1969-12-31T23:59:59.5Z", id="before-epoch"),
        pytest.param(
            pa.array([datetime(2026, 11, 28, 9, 30, tzinfo=UTC)], pa.timestamp("s", "UTC")),
            "2026-11-28T09:30:00Z",
            id="utc",
        ),
        pytest.param(
            pa.array([datetime(2026, 11, 28, 18, 30, tzinfo=TOKYO)], pa.timestamp("ms", "Asia/Tokyo")),
            "2026-11-28T09:30:00Z",
            id="tokyo-to-utc",
        ),
        pytest.param(
            pa.array(
                [datetime(2026, 11, 28, 23, 30, 0, 500000, tzinfo=NEW_YORK)],
                pa.timestamp("us", "America/New_York"),
            ),
            "2026-11-29T04:30:00.5Z",
            id="new-york-to-utc-next-day",
        ),
        pytest.param(
            pa.array([datetime(2026, 11, 28, 15, 0, tzinfo=TOKYO)], pa.timestamp("ns", "+05:30")),
            "2026-11-28T06:00:00Z",
            id="fixed-offset-zone",
        ),
    ],
)
def test_timestamps_are_iso_8601_utc_with_z_and_trimmed_fractions(column, expected):
    assert attribute_values(column) == [[expected]]


@pytest.mark.parametrize(
    "column, expected",
    [
        # Python's date range ends here; Arrow writes up to it itself.
        pytest.param(pa.array([-719_162, 2_932_896], pa.date32()), ["0001-01-01", "9999-12-31"], id="date-ends"),
        pytest.param(pa.array([-719_163], pa.date32()), ["0000-12-31"], id="date-year-0"),
        pytest.param(pa.array([-719_529], pa.date32()), ["-0001-12-31"], id="date-year-minus-1"),
        pytest.param(pa.array([2_932_897], pa.date32()), ["+10000-01-01"], id="date-year-10000"),
        # The far ones as numpy writes them: np.datetime64(2**31 - 1, "D") is 5881580-07-11,
        # np.datetime64(2**35, "D") 94075738-06-09, np.datetime64(971_891_007_696, "s")
        # 32768-01-01T12:21:36 and np.datetime64(2**40, "s") 36812-02-20T00:36:16 (past year
        # 32767, where Arrow's strftime fails or wraps the year), np.datetime64(2**63 - 1, "us")
        # 294247-01-10T04:00:54.775807.
        pytest.param(pa.array([2**31 - 1], pa.date32()), ["+5881580-07-11"], id="date32-max"),
        pytest.param(pa.array([2**35 * 86_400_000], pa.date64()), ["+94075738-06-09"], id="date64-far"),
        pytest.param(
            pa.array([971_891_007_696], pa.timestamp("s")), ["+32768-01-01T12:21:36Z"], id="year-32768"
        ),
        pytest.param(pa.array([2**40], pa.timestamp("s")), ["+36812-02-20T00:36:16Z"], id="year-36812"),
        pytest.param(
            pa.array([2**63 - 1], pa.timestamp("us", "UTC")), ["+294247-01-10T04:00:54.775807Z"], id="us-max"
        ),
        pytest.param(
            pa.array([-62_135_596_801_500], pa.timestamp("ms")), ["0000-12-31T23:59:58.5Z"], id="before-year-1"
        ),
    ],
)
def test_dates_and_timestamps_outside_years_1_to_9999_keep_their_true_year(column, expected):
    """ISO 8601's expanded years (a sign, then the year) beyond 0000-9999: never a wrapped year."""
    assert attribute_values(column) == [[text] for text in expected]


# -- String-like user and segment columns ---------------------------------------------------------


def test_dictionary_and_large_string_user_and_segment_columns_are_decoded():
    columns = {
        "user_id": pa.array([" u1 ", "u2"]).dictionary_encode(),
        "td_segment": pa.array(["a, b", "b,b"], pa.large_string()),
        "x": pa.array(["1", None]).dictionary_encode(),
    }

    assert lines_of(columns) == ["u1^segment:a,b;x:1\n", "u2^segment:b\n"]


def test_all_null_user_column_is_missing_user_id_for_every_row():
    columns = {"user_id": pa.nulls(2), "td_segment": ["a", "b"]}

    assert reasons_of(columns) == [(MISSING, "user_id"), (MISSING, "user_id")]


def test_all_null_segment_column_gives_no_segments():
    norm = normalize_columns({"user_id": ["u1", "u2"], "td_segment": pa.nulls(2), "x": ["1", None]})

    assert norm.segments.to_pylist() == [[], []]
    assert norm.reasons.to_pylist() == [None, NOTHING]
    assert build_lines(norm.filter(pa.array([True, False])), "segment").to_pylist() == ["u1^x:1\n"]


def test_all_null_attribute_column_is_omitted_from_lines():
    columns = {"user_id": ["u"], "td_segment": ["a"], "gone": pa.nulls(1), "x": ["1"]}

    assert lines_of(columns) == ["u^segment:a;x:1\n"]


# -- Shape of NormalizedBatch -------------------------------------------------------------------


def test_normalized_batch_has_one_list_per_row_and_attributes_in_column_order():
    norm = normalize_columns(
        {"z": [1, 2], "user_id": ["u1", "u2"], "a": ["x", ""], "td_segment": ["s", None], "m": [[], ["q"]]}
    )

    assert [name for name, _ in norm.attributes] == ["z", "a", "m"]
    assert norm.segments.type == pa.list_(pa.string())
    assert all(values.type == pa.list_(pa.string()) for _, values in norm.attributes)
    assert [values.to_pylist() for _, values in norm.attributes] == [[["1"], ["2"]], [["x"], []], [[], ["q"]]]
    assert norm.user.type == pa.string()


def test_filter_keeps_the_rows_where_the_mask_is_true_in_every_field():
    norm = normalize_columns(
        {"user_id": ["u1", None, "u3"], "td_segment": ["a", "b", "c,d"], "x": ["1", "2", None]}
    )

    kept = norm.filter(pa.array([True, False, True]))

    assert kept.user.to_pylist() == ["u1", "u3"]
    assert kept.segments.to_pylist() == [["a"], ["c", "d"]]
    assert kept.attributes[0][0] == "x"
    assert kept.attributes[0][1].to_pylist() == [["1"], []]
    assert kept.reasons.to_pylist() == [None, None]
    assert kept.reason_columns.to_pylist() == [None, None]


def test_empty_batch_gives_empty_arrays_and_no_lines():
    schema = pa.schema([("user_id", pa.string()), ("td_segment", pa.string()), ("n", pa.int64())])
    norm = normalize(pa.RecordBatch.from_pylist([], schema=schema), RULES)

    assert len(norm.user) == len(norm.segments) == len(norm.reasons) == len(norm.reason_columns) == 0
    assert build_lines(norm, "segment").to_pylist() == []


# -- Supported attribute types --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data_type",
    [
        pa.string(),
        pa.large_string(),
        pa.string_view(),
        pa.dictionary(pa.int32(), pa.string()),
        pa.int8(),
        pa.uint64(),
        pa.float16(),
        pa.float32(),
        pa.float64(),
        pa.bool_(),
        pa.date32(),
        pa.date64(),
        pa.timestamp("s"),
        pa.timestamp("ns", "Asia/Tokyo"),
        pa.decimal128(10, 2),
        pa.decimal256(40, 3),
        pa.null(),
        pa.list_(pa.string()),
        pa.list_(pa.int64()),
        pa.large_list(pa.timestamp("us", "UTC")),
        pa.list_(pa.dictionary(pa.int8(), pa.string())),
    ],
    ids=str,
)
def test_attribute_types_normalize_can_render_are_supported(data_type):
    assert attribute_type_supported(data_type)


@pytest.mark.parametrize(
    "data_type",
    [
        pa.binary(),
        pa.large_binary(),
        pa.binary(4),
        pa.struct([("a", pa.string())]),
        pa.map_(pa.string(), pa.string()),
        pa.list_(pa.list_(pa.string())),
        pa.list_(pa.struct([("a", pa.int64())])),
        pa.time32("s"),
        pa.duration("s"),
        pa.dictionary(pa.int32(), pa.binary()),
    ],
    ids=str,
)
def test_types_without_a_text_form_are_not_supported(data_type):
    assert not attribute_type_supported(data_type)
