"""`krux-export preview`: the first lines a run would write, read cheaply, no storage touched."""

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.commands import cli

SPEC_ROW = {"user_id": ["uid1"], "td_segment": ["seg1,seg2"], "email": [""], "firstname": ["Britty"],
            "lastname": ["Morris"]}


def test_preview_prints_spec_lines_and_invalid_counts_without_a_destination(tmp_path, capsys):
    pq.write_table(pa.table(SPEC_ROW), tmp_path / "segment_a.parquet")
    pq.write_table(pa.table({"user_id": ["", "u2"], "td_segment": ["s", "x^y"]}), tmp_path / "segment_b.parquet")
    assert cli.main(["preview", "--database", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris"]
    assert "3 rows read" in err and "missing_user_id: 1, reserved_character: 1" in err


def test_preview_of_a_big_table_reads_one_small_batch(tmp_path, capsys):
    rows = 300_000
    pq.write_table(pa.table({"user_id": [f"u{i}" for i in range(rows)], "td_segment": ["s"] * rows}),
                   tmp_path / "segment_big.parquet")
    assert cli.main(["preview", "--source", str(tmp_path / "segment_big.parquet"), "--limit", "3"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["u0^segment:s", "u1^segment:s", "u2^segment:s"]
    rows_read = int(err.split(" rows read")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert rows_read < 10_000


def test_grouped_preview_unites_a_users_rows(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": ["u1", "u1"], "td_segment": ["b", "a,b"]}), tmp_path / "segment_a.parquet")
    assert cli.main(["preview", "--database", str(tmp_path), "--group-by-user"]) == 0
    assert capsys.readouterr().out.splitlines() == ["u1^segment:a,b"]


def test_preview_schema_errors_exit_2(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": ["u1"]}), tmp_path / "segment_a.parquet")
    assert cli.main(["preview", "--database", str(tmp_path)]) == 2
    assert "table segment_a: no column td_segment" in capsys.readouterr().err


def test_preview_shows_the_first_invalid_rows_with_their_values_redacted(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": ["u1", "", "u3", "u4"],
                             "td_segment": ["s", "s", "Secret;Segment", "s"],
                             "email": ["a@example.com", "b@example.com", "c@example.com", "x" * 300]}),
                   tmp_path / "segment_a.parquet")
    assert cli.main(["preview", "--database", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["u1^segment:s;email:a@example.com"]
    assert "1 line from 4 rows read; invalid rows: missing_user_id: 1, reserved_character: 1, value_too_long: 1" in err
    assert "invalid: table segment_a row 2: missing_user_id" in err
    assert "invalid: table segment_a row 3: reserved_character in column td_segment (value 'Se'… (14 characters))" in err
    assert "invalid: table segment_a row 4: value_too_long in column email (value 'xx'… (300 characters))" in err
    assert "Secret" not in err and "x" * 3 not in err


def test_preview_shows_at_most_five_invalid_rows(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": [""] * 8, "td_segment": ["s"] * 8}), tmp_path / "segment_a.parquet")
    assert cli.main(["preview", "--database", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "invalid rows: missing_user_id: 8" in err
    assert [line.split(": ", 2)[2] for line in err.splitlines() if "invalid: table" in line] == [
        f"table segment_a row {row}: missing_user_id in column user_id (value '')" for row in range(1, 6)
    ]
