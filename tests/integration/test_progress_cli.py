"""Progress on stderr from a real run on the default local runner (two worker processes),
whose workers report through the progress channel, and `--quiet` turning it off."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline", "run", *args, "--date", "2026-11-28"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180, env={**os.environ})


def test_a_run_on_worker_processes_shows_rows_read_of_the_footers_total_and_shards(tmp_path):
    database = tmp_path / "db"
    database.mkdir()
    for name, rows in (("segment_a", 3000), ("segment_b", 1500)):
        users = [f"user-{name}-{i}" for i in range(rows)]
        pq.write_table(pa.table({"user_id": users, "td_segment": ["s1,s2"] * rows}), database / f"{name}.parquet",
                       row_group_size=500)
    done = run_cli("--database", str(database), "--output-root", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    progress = [line for line in done.stderr.splitlines() if "rows read" in line]
    # The last line gives the whole run: every row of both footers, the shards the workers wrote.
    last = re.fullmatch(r"krux-export: 4,500 of 4,500 rows read \(100%\), (\d+) shards? written, \d+:\d\d elapsed",
                        progress[-1])
    assert last, done.stderr
    assert int(last.group(1)) >= 1
    assert summary["lines_written"] == 4500


def test_quiet_shows_no_progress_and_a_csv_table_gives_no_total(tmp_path):
    pacsv.write_csv(pa.table({"user_id": ["u1", "u2"], "td_segment": ["s", "t"]}), tmp_path / "segment_c.csv")
    for quiet in (True, False):
        out = tmp_path / f"out-{quiet}"
        done = run_cli("--source", str(tmp_path / "segment_c.csv"), "--output-root", str(out), *(["--quiet"] * quiet))
        assert done.returncode == 0, done.stderr
        progress = [line for line in done.stderr.splitlines() if "rows read" in line]
        if quiet:
            assert progress == []
        else:
            assert re.fullmatch(r"krux-export: 2 rows read, 1 shard written, \d+:\d\d elapsed", progress[-1]), progress
