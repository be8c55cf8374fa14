"""A placeholder user id on many rows (`0`, `unknown`) under --group-by-user: refused by name (exit 3)
past --max-values-per-user, nothing published; below it, grouped as any user."""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.commands import cli

DAY = "2026-11-28"


def test_a_placeholder_user_over_max_values_per_user_is_refused_with_exit_3_and_nothing_published(tmp_path, capsys):
    root = tmp_path / "db"
    root.mkdir()
    pq.write_table(pa.table({
        "user_id": ["unknown"] * 6 + ["uid1"],
        "td_segment": [f"seg{i}" for i in range(6)] + ["seg1"],
        "email": [f"person{i}@example.com" for i in range(6)] + [None],
    }), root / "segment_a.parquet")
    out = tmp_path / "out"

    code = cli.main(["run", "--database", str(root), "--output-root", str(out), "--date", DAY,
                     "--group-by-user", "--max-values-per-user", "11"])
    stdout, stderr = capsys.readouterr()

    assert code == 3
    assert "user id 'unknown' has at least 12 distinct values, over --max-values-per-user 11" in stderr
    assert json.loads(stdout.strip().splitlines()[-1])["status"] == "failed"
    assert not (out / DAY).exists() or not list((out / DAY).iterdir())

    code = cli.main(["run", "--database", str(root), "--output-root", str(out), "--date", DAY,
                     "--group-by-user", "--max-values-per-user", "12", "--compression", "none"])
    assert code == 0, capsys.readouterr().err
    assert sorted((out / DAY / "first_party_segment.txt").read_text().splitlines())[0].startswith(
        "uid1^segment:seg1")


def test_max_values_per_user_must_be_at_least_one(tmp_path, capsys):
    code = cli.main(["run", "--database", str(tmp_path), "--output-root", str(tmp_path / "out"),
                     "--group-by-user", "--max-values-per-user", "0"])
    assert code == 2
    assert "--max-values-per-user: must be a whole number of at least 1, got 0" in capsys.readouterr().err
