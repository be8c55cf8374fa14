"""Planning many input files: footers read by threads, tasks and errors as if read in order.

The plan must not depend on how many threads read the footers: each test plans with one
thread and with many and expects the same. (How fast 1,000 files on S3 plan is measured by
benchmarks/footers.py, not asserted here.)
"""

import io
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.errors import SchemaError
from pipeline.krux.lines import LineRules
from pipeline.launcher.beam_options import configure_filesystems
from pipeline.sources import tables as inputs

RULES = LineRules("user_id", "td_segment", "segment")
THREADS = (1, 16)


def parquet_bytes(user: str) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"user_id": [user], "td_segment": ["s"]}), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("threads", THREADS)
def test_a_thousand_local_parquet_files_plan_in_file_order(tmp_path, threads):
    table = tmp_path / "segment_a"
    table.mkdir()
    for number in range(1000):
        (table / f"part-{number:04d}.parquet").write_bytes(parquet_bytes(f"u{number}"))

    (planned,) = inputs.load_tables([("segment_a", str(table))], RULES, threads=threads)

    assert [task.path for task in planned.tasks] == [f"{table}/part-{n:04d}.parquet" for n in range(1000)]
    assert [task.first_row for task in planned.tasks] == list(range(1, 1001))
    assert planned.rows == 1000


@pytest.fixture
def s3_table(s3, bucket, s3_endpoint, monkeypatch):
    """A table of 200 one-row Parquet files on the S3 server, read through Beam's file system."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    configure_filesystems(PipelineOptions([]))
    keys = [f"warehouse/segment_a/part-{number:04d}.parquet" for number in range(200)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(key)), keys))
    return f"s3://{bucket}/warehouse/segment_a/", keys


@pytest.mark.parametrize("threads", THREADS)
def test_s3_footers_plan_every_file_in_order(s3_table, bucket, threads):
    uri, keys = s3_table

    (planned,) = inputs.load_tables(inputs.find_tables([uri], None, "segment_"), RULES, threads=threads)

    assert [task.path for task in planned.tasks] == [f"s3://{bucket}/{key}" for key in keys]
    assert [task.first_row for task in planned.tasks] == list(range(1, 201))
    assert planned.rows == 200


@pytest.mark.parametrize("threads", THREADS)
def test_the_first_bad_file_in_order_is_the_one_reported(s3_table, s3, bucket, threads):
    uri, keys = s3_table
    s3.put_object(Bucket=bucket, Key=keys[150], Body=b"not parquet")
    s3.put_object(Bucket=bucket, Key=keys[170], Body=parquet_bytes("u").replace(b"user_id", b"userXid"))

    with pytest.raises(SchemaError, match=f"table segment_a: cannot read Parquet file s3://{bucket}/{keys[150]}"):
        inputs.load_tables(inputs.find_tables([uri], None, "segment_"), RULES, threads=threads)
