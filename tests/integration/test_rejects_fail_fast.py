"""Without `--skip-invalid-records`, the first invalid row found stops the whole job at once.

The run exits 3 naming table, row, reason, column and a redacted preview, publishes nothing
and leaves no staging; and it stops where the row is found, not after the job: the bucket keeps
every version of every object, so the test can see that no shard was ever written.
"""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CLIENT = "client-treasure-data"
DAY = "2026-11-28"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = 300_000


@pytest.mark.parametrize("grouping", [[], ["--group-by-user"]], ids=["ungrouped", "grouped"])
def test_the_first_invalid_row_stops_the_run_before_the_rest_is_exported(s3, bucket, s3_endpoint, tmp_path, grouping):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    users = pa.array([f"u{i}" for i in range(ROWS)])
    segments = pa.array(["s1,s2"] * 2 + ["bad;segment"] + ["s1,s2"] * (ROWS - 3))
    # One row group: one read task, whatever the task size, read as several batches.
    pq.write_table(pa.table({"user_id": users, "td_segment": segments}), tmp_path / "segment_big.parquet",
                   row_group_size=ROWS)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--source", str(tmp_path / "segment_big.parquet"),
         "--client-name", CLIENT, "--bucket", bucket, "--endpoint-url", s3_endpoint, "--date", DAY, *grouping],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # Beam's defaults of a real run: two worker processes

    assert done.returncode == 3, done.stderr
    error = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    assert error == ("table segment_big row 3: reserved_character in column td_segment (value 'ba'… (11 characters)); "
                     "--skip-invalid-records drops and counts invalid rows")
    assert done.stderr.strip().splitlines()[-1] == f"krux-export: error: {error}"
    assert "Traceback" not in done.stderr and "[while running" not in done.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # nothing published, no staging
    written = [v["Key"] for v in s3.list_object_versions(Bucket=bucket).get("Versions", [])]
    assert [key.rpartition("/_staging/")[2].split("/", 2)[2] for key in written] == ["stop/invalid_row.txt"]
