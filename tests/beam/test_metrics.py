"""Beam counters of a run (rows read per table, invalid rows per reason, lines, shards, shard
bytes), read from the result as a runner UI reads them, on FnApiRunner."""

import os

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from pipeline.krux.lines import LineRules
from pipeline.launcher.progress import metrics_progress
from pipeline.sources.files import ReadTask
from pipeline.storage.stores import StoreSpec
from transforms import metrics
from transforms.check import CheckRecords, FormatLines
from transforms.progress import Progress
from transforms.read import ReadTables
from transforms.shards import WriteShards


def test_counters_count_rows_per_table_invalid_rows_per_reason_lines_shards_and_bytes(tmp_path):
    pq.write_table(pa.table({"user_id": ["a", "", "c", "d"], "td_segment": ["s1", "s2", "s3", "x^y"]}),
                   tmp_path / "t.parquet")
    pacsv.write_csv(pa.table({"user_id": ["x"], "td_segment": ["007"]}), tmp_path / "c.csv")
    tasks = [
        ReadTask("t", str(tmp_path / "t.parquet"), "parquet", (0,), 1, rows=4),
        ReadTask("c", str(tmp_path / "c.csv"), "csv", first_row=1, columns=("user_id", "td_segment")),
    ]
    out = tmp_path / "out"
    p = BeamTestPipeline(runner="FnApiRunner")
    rules = LineRules("user_id", "td_segment", "segment")
    checked = p | ReadTables(tasks) | CheckRecords(rules, keep_invalid=False)
    _ = checked.valid | FormatLines("segment") | WriteShards(StoreSpec(kind="local", local_root=str(out)), "", "none")
    result = p.run()
    result.wait_until_finish()

    shards = os.listdir(out)
    counters = metrics.query_counters(result)
    # Lines: "a^segment:s1\n", "c^segment:s3\n" (13 bytes each) and "x^segment:007\n" (14).
    assert counters == {
        "rows_read.t": 4,
        "rows_read.c": 1,
        "invalid_rows.missing_user_id": 1,
        "invalid_rows.reserved_character": 1,
        "lines_written": 3,
        "shards_written": len(shards),
        "shard_bytes": 40,
    }
    assert sum(os.path.getsize(out / name) for name in shards) == 40
    # A remote runner's progress comes from the same counters.
    assert metrics_progress(result)() == Progress(rows=5, shards=len(shards))
