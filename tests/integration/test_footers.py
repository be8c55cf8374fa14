"""Planning many input files: footers read by threads, tasks and errors as if read in order."""

import io
import threading
import time
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
# Loose: the timing target (1,000 files on S3 in seconds) is measured by benchmarks/footers.py.
PLAN_LIMIT_S = 60


def parquet_bytes(user: str) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"user_id": [user], "td_segment": ["s"]}), buffer)
    return buffer.getvalue()


@pytest.fixture
def reader_threads(monkeypatch):
    """The threads that read footers, recorded as they read."""
    seen = set()
    read = inputs._parquet_metadata

    def recording(table, path):
        seen.add(threading.get_ident())
        return read(table, path)

    monkeypatch.setattr(inputs, "_parquet_metadata", recording)
    return seen


def test_a_thousand_local_parquet_files_plan_in_file_order_from_footers_read_by_threads(tmp_path, reader_threads):
    table = tmp_path / "segment_a"
    table.mkdir()
    for number in range(1000):
        (table / f"part-{number:04d}.parquet").write_bytes(parquet_bytes(f"u{number}"))

    started = time.monotonic()
    (planned,) = inputs.load_tables([("segment_a", str(table))], RULES)

    assert time.monotonic() - started < PLAN_LIMIT_S
    assert [task.path for task in planned.tasks] == [f"{table}/part-{n:04d}.parquet" for n in range(1000)]
    assert [task.first_row for task in planned.tasks] == list(range(1, 1001))
    assert planned.rows == 1000
    assert len(reader_threads) > 1


@pytest.fixture
def s3_table(s3, bucket, s3_endpoint, monkeypatch):
    """A table of 200 one-row Parquet files on the S3 server, read through Beam's file system."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    configure_filesystems(PipelineOptions([]))
    keys = [f"warehouse/segment_a/part-{number:04d}.parquet" for number in range(200)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(key)), keys))
    return f"s3://{bucket}/warehouse/segment_a/", keys


def test_s3_footers_are_read_by_threads_and_plan_every_file_in_order(s3_table, bucket, reader_threads):
    uri, keys = s3_table

    started = time.monotonic()
    (planned,) = inputs.load_tables(inputs.find_tables([uri], None, "segment_"), RULES)

    assert time.monotonic() - started < PLAN_LIMIT_S
    assert [task.path for task in planned.tasks] == [f"s3://{bucket}/{key}" for key in keys]
    assert planned.rows == 200
    assert len(reader_threads) > 1


def test_the_first_bad_file_in_order_is_the_one_reported(s3_table, s3, bucket):
    uri, keys = s3_table
    s3.put_object(Bucket=bucket, Key=keys[150], Body=b"not parquet")
    s3.put_object(Bucket=bucket, Key=keys[170], Body=parquet_bytes("u").replace(b"user_id", b"userXid"))

    with pytest.raises(SchemaError, match=f"table segment_a: cannot read Parquet file s3://{bucket}/{keys[150]}"):
        inputs.load_tables(inputs.find_tables([uri], None, "segment_"), RULES)
