"""Invalid rows as JSON lines: what `--rejects` writes, one line per row, read back by a JSON parser."""

import datetime
import decimal
import json

import pyarrow as pa
import pytest

from pipeline.krux.rejects import reject_lines


def parsed(table, columns: dict, reasons: list[str]) -> list[dict]:
    lines = reject_lines(table, pa.record_batch(columns), pa.array(reasons))
    text = "".join(line for block in lines for line in block.to_pylist()).encode()
    assert text.endswith(b"\n") and text.count(b"\n") == len(reasons)
    lines = text.decode("utf-8").splitlines()  # as a careless reader would: U+2028 must not split
    return [json.loads(line, parse_constant=pytest.fail) for line in lines]


def test_a_line_holds_table_reason_and_the_row_as_read():
    rows = parsed("segment_a", {"user_id": ["u3"], "td_segment": ["bad;segment"], "email": [None]},
                  ["reserved_character"])
    assert rows == [{"table": "segment_a", "reason": "reserved_character",
                     "row": {"user_id": "u3", "td_segment": "bad;segment", "email": None}}]


@pytest.mark.parametrize("value", [
    'say "hi"', "back\\slash", "line\nbreak\r", "tab\tnul\x00unit\x1f", "é😀\u2028", "", " padded ",
])
def test_strings_are_escaped_so_that_json_gives_them_back(value):
    assert parsed("t", {"user_id": [value]}, ["missing_user_id"])[0]["row"]["user_id"] == value


def test_names_of_tables_and_columns_are_escaped_too():
    row = parsed('seg"a\\', {'col"1': ["v"]}, ["no_attributes"])[0]
    assert row["table"] == 'seg"a\\' and row["row"] == {'col"1': "v"}


def test_numbers_booleans_and_nulls_are_json_values():
    rows = parsed("t", {
        "visits": pa.array([7, None], pa.int64()),
        "big": pa.array([2**64 - 1, 0], pa.uint64()),
        "ratio": pa.array([2.0, 1e-7]),
        "half": pa.array([0.1, None], pa.float16()),
        "price": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
        "opted_in": pa.array([True, None]),
        "nothing": pa.nulls(2),
    }, ["value_too_long", "value_too_long"])
    assert [r["row"] for r in rows] == [
        {"visits": 7, "big": 2**64 - 1, "ratio": 2.0, "half": 0.1, "price": 1.5, "opted_in": True, "nothing": None},
        {"visits": None, "big": 0, "ratio": 1e-7, "half": None, "price": None, "opted_in": None, "nothing": None},
    ]


def test_nan_and_infinity_are_null_because_json_has_no_such_numbers():
    rows = parsed("t", {"x": pa.array([float("nan"), float("inf"), float("-inf")])}, ["no_attributes"] * 3)
    assert [r["row"]["x"] for r in rows] == [None, None, None]


def test_dates_and_timestamps_are_the_text_a_krux_line_shows():
    utc = datetime.timezone.utc
    rows = parsed("t", {
        "day": pa.array([datetime.date(2026, 11, 28), None]),
        "at": pa.array([datetime.datetime(2026, 11, 28, 9, 30, 0, 500000, tzinfo=utc), None], pa.timestamp("us", "UTC")),
        "far": pa.array([2**40, None], pa.timestamp("s")),  # beyond year 9999, where Arrow's own text breaks
    }, ["no_attributes"] * 2)
    assert rows[0]["row"]["day"] == "2026-11-28" and rows[0]["row"]["at"] == "2026-11-28T09:30:00.5Z"
    # 2**40 s is about 34,842 years after 1970.
    assert rows[0]["row"]["far"].startswith("+36812-") and rows[0]["row"]["far"].endswith("Z")
    assert rows[1]["row"] == {"day": None, "at": None, "far": None}


def test_lists_are_arrays_with_their_nulls_and_a_null_list_is_null():
    values = pa.array([["a", None, 'q"'], [], None], pa.list_(pa.string()))
    numbers = pa.array([[1, None], None, []], pa.large_list(pa.int32()))
    rows = parsed("t", {"tags": values, "n": numbers}, ["no_attributes"] * 3)
    assert [r["row"] for r in rows] == [{"tags": ["a", None, 'q"'], "n": [1, None]},
                                       {"tags": [], "n": None}, {"tags": None, "n": []}]


def test_dictionary_encoded_columns_and_sliced_batches():
    batch = pa.record_batch({"td_segment": pa.array(["x", "y;", "x", "z"]).dictionary_encode(),
                             "tags": pa.array([["a"], ["b"], None, ["c", "d"]]),
                             "note": ["plain", "plain", 'say "hi"\n', "plain"]})
    lines = reject_lines("t", batch.slice(1, 3), pa.array(["r1", "r2", "r3"]).dictionary_encode())
    rows = [json.loads(line) for block in lines for line in block.to_pylist()]
    assert [(r["reason"], r["row"]) for r in rows] == [
        ("r1", {"td_segment": "y;", "tags": ["b"], "note": "plain"}),
        ("r2", {"td_segment": "x", "tags": None, "note": 'say "hi"\n'}),
        ("r3", {"td_segment": "z", "tags": ["c", "d"], "note": "plain"}),
    ]


def test_a_batch_of_huge_values_is_cut_into_blocks_holding_every_row_once():
    batch = pa.record_batch({"user_id": [f"u{i}" + "x" * 1000 for i in range(10)]})
    blocks = reject_lines("t", batch, pa.array(["value_too_long"] * 10), max_block_bytes=3000)
    assert len(blocks) > 1
    users = [json.loads(line)["row"]["user_id"] for block in blocks for line in block.to_pylist()]
    assert users == batch.column(0).to_pylist()
