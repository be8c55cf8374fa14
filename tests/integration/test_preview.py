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
    rows_read = int(err.split(" rows read")[0].rsplit(" ", 1)[1])
    assert rows_read < 10_000


def test_grouped_preview_unites_a_users_rows(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": ["u1", "u1"], "td_segment": ["b", "a,b"]}), tmp_path / "segment_a.parquet")
    assert cli.main(["preview", "--database", str(tmp_path), "--group-by-user"]) == 0
    assert capsys.readouterr().out.splitlines() == ["u1^segment:a,b"]


def test_preview_schema_errors_exit_2(tmp_path, capsys):
    pq.write_table(pa.table({"user_id": ["u1"]}), tmp_path / "segment_a.parquet")
    assert cli.main(["preview", "--database", str(tmp_path)]) == 2
    assert "table segment_a: no column td_segment" in capsys.readouterr().err
