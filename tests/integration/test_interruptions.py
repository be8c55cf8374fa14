"""SIGTERM and SIGINT during a run, and the sweep of what a killed run left (SPEC §4)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli

CLIENT = "client-treasure-data"
DAY = "2026-11-28"
KEY = f"{CLIENT}/uploads/{DAY}/first_party_segment.txt.gz"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def slow_database(tmp_path):
    """Enough rows that the pipeline is still writing shards a second or two after it starts."""
    root = tmp_path / "db"
    root.mkdir()
    rows = 400_000
    for t in range(4):
        users = pa.array([f"user-{t}-{i}" for i in range(rows)])
        pq.write_table(pa.table({"user_id": users, "td_segment": pa.array(["seg_a,seg_b"] * rows)}),
                       root / f"segment_{t}.parquet", row_group_size=50_000)
    return root


def staging_and_uploads(s3, bucket):
    staged = s3.list_objects_v2(Bucket=bucket, Prefix=f"{CLIENT}/_staging/").get("KeyCount", 0)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return staged, len(uploads)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_keeps_the_previous_object_and_cleans_staging(s3, bucket, s3_endpoint, slow_database, signum):
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"yesterday's run")
    command = [sys.executable, "-m", "pipeline", "run", "--database", str(slow_database), "--client-name", CLIENT,
               "--bucket", bucket, "--endpoint-url", s3_endpoint, "--date", DAY]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while staging_and_uploads(s3, bucket)[0] == 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # wait for the first shard: the run is in its writing phase
    assert process.poll() is None, "the run finished before it could be interrupted"
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert process.returncode == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum]
    assert summary["status"] == "failed" and "nothing was published" in summary["error"]
    assert s3.get_object(Bucket=bucket, Key=KEY)["Body"].read() == b"yesterday's run"
    time.sleep(0.5)  # a worker that outlived the launcher would write now
    assert staging_and_uploads(s3, bucket) == (0, 0)
    assert "Traceback" not in err.decode()


def test_next_run_removes_a_killed_runs_staging_and_open_uploads_of_its_keys_only(s3, bucket, s3_endpoint, tmp_path, capsys):
    stale_shard = f"{CLIENT}/_staging/first_party_segment/20261127T000000Z-dead/shards/x.gz"
    other_export_shard = f"{CLIENT}/_staging/other_export/20261127T000000Z-dead/shards/x.gz"
    for key in (stale_shard, other_export_shard):
        s3.put_object(Bucket=bucket, Key=key, Body=b"left by a killed run")
    ours = s3.create_multipart_upload(Bucket=bucket, Key=KEY)["UploadId"]
    neighbour_key = f"{CLIENT}/uploads/{DAY}/first_party_segment_v2.txt.gz"
    neighbours = s3.create_multipart_upload(Bucket=bucket, Key=neighbour_key)["UploadId"]
    pq.write_table(pa.table({"user_id": ["u1"], "td_segment": ["s"]}), tmp_path / "segment_a.parquet")

    code = cli.main(["run", "--source", str(tmp_path / "segment_a.parquet"), "--client-name", CLIENT, "--bucket", bucket,
                     "--endpoint-url", s3_endpoint, "--date", DAY, "--runner=FnApiRunner"])
    assert code == 0, capsys.readouterr().err
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{CLIENT}/_staging/").get("Contents", [])]
    assert remaining == [other_export_shard]
    uploads = {(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    assert uploads == {(neighbour_key, neighbours)}
    assert ours not in {upload_id for _, upload_id in uploads}


def test_two_runs_of_one_export_started_together_end_with_one_object_and_no_debris(s3, bucket, s3_endpoint, slow_database):
    command = [sys.executable, "-m", "pipeline", "run", "--database", str(slow_database), "--client-name", CLIENT,
               "--bucket", bucket, "--endpoint-url", s3_endpoint, "--date", DAY]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(run.wait(timeout=180), run.stdout.read().decode()) for run in runs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for _, out in results]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 4]), summaries
    for code, summary in zip((c for c, _ in results), summaries):
        if code == 4:
            assert "another run of export first_party_segment" in summary["error"]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{CLIENT}/uploads/{DAY}/")
    assert [o["Key"] for o in listing["Contents"]] == [KEY]
    assert staging_and_uploads(s3, bucket) == (0, 0)
