"""Input tables from CSV and s3://, and credentials from a named connection, end to end."""

import base64
import bz2
import gzip
import io
import json
import os
import pickle

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.commands import cli
from pipeline.sources import tables
from pipeline.config.connections import Connection, save_connection
from pipeline.launcher.graph import ExportPlan, build_pipeline
from transforms.write import ExportTarget
from pipeline.launcher.run import resolve_target
from pipeline.config.settings import RunSettings
from pipeline.krux.lines import LineRules

DAY = "2026-11-28"
SECRET = "Sk3cr3t/VALUE+that-must-never-leak"


def run_cli(capsys, *args):
    code = cli.main(["run", "--runner=FnApiRunner", "--date", DAY, *args])
    out, err = capsys.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), out + err


def object_lines(s3, bucket, key):
    return sorted(gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode().splitlines())


def test_csv_and_gzipped_csv_tables_are_read_as_strings(capsys, tmp_path):
    table = pa.table({"user_id": ["u1", "u2"], "td_segment": ["s1", "s2"], "zip": ["00501", ""]})
    pacsv.write_csv(table, tmp_path / "segment_plain.csv")
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    (tmp_path / "segment_zipped.csv.gz").write_bytes(gzip.compress(buffer.getvalue()))
    out = tmp_path / "out"
    code, summary, text = run_cli(capsys, "--source", str(tmp_path / "segment_*"), "--output-root", str(out),
                                  "--compression", "none")
    assert code == 0, text
    lines = sorted((out / DAY / "first_party_segment.txt").read_text().splitlines())
    # "00501" stays text (leading zeros kept); the empty zip is left out.
    assert lines == ["u1^segment:s1;zip:00501", "u1^segment:s1;zip:00501", "u2^segment:s2", "u2^segment:s2"]
    assert summary["rows_read"]["tables"] == {"segment_plain": 2, "segment_zipped": 2}


def test_s3_input_tables_are_read_with_the_standard_aws_chain(capsys, s3, bucket, s3_endpoint, monkeypatch, tmp_path):
    # The customer's warehouse bucket, reached through AWS_ENDPOINT_URL_S3 like any AWS setting.
    for name, users in (("segment_a", ["u1"]), ("segment_b", ["u2"])):
        buffer = io.BytesIO()
        pq.write_table(pa.table({"user_id": users, "td_segment": ["s"]}), buffer)
        s3.put_object(Bucket=bucket, Key=f"warehouse/activate_to_krux/{name}.parquet", Body=buffer.getvalue())
    s3.put_object(Bucket=bucket, Key="warehouse/activate_to_krux/ignored.parquet", Body=b"not read")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    code, summary, text = run_cli(capsys, "--database", f"s3://{bucket}/warehouse/activate_to_krux",
                                  "--client-name", "acme", "--bucket", bucket)
    assert code == 0, text
    assert object_lines(s3, bucket, f"acme/uploads/{DAY}/first_party_segment.txt.gz") == ["u1^segment:s", "u2^segment:s"]
    assert summary["rows_read"]["tables"] == {"segment_a": 1, "segment_b": 1}


@pytest.fixture
def connection(s3_endpoint, bucket, monkeypatch):
    """A connection whose secret lives in an environment variable, as SPEC §5 allows."""
    monkeypatch.setenv("KRUX_TEST_SECRET", SECRET)
    save_connection(Connection(name="dmp", client_name="client-treasure-data", access_key_id="AKIAEXAMPLEKEY00",
                               secret_access_key="env:KRUX_TEST_SECRET", bucket=bucket, endpoint_url=s3_endpoint))
    return "dmp"


def test_a_named_connection_publishes_without_the_secret_in_any_output(capsys, s3, bucket, connection, tmp_path):
    pq.write_table(pa.table({"user_id": ["u1"], "td_segment": ["s1"]}), tmp_path / "segment_a.parquet")
    code, summary, text = run_cli(capsys, "--source", str(tmp_path / "segment_a.parquet"), "--connection", connection,
                                  "--summary-json", str(tmp_path / "summary.json"))
    assert code == 0, text
    key = f"client-treasure-data/uploads/{DAY}/first_party_segment.txt.gz"
    assert object_lines(s3, bucket, key) == ["u1^segment:s1"]
    assert SECRET not in text and SECRET not in (tmp_path / "summary.json").read_text()


def test_the_secret_is_in_neither_pipeline_options_nor_the_pickled_graph(connection, tmp_path):
    pq.write_table(pa.table({"user_id": ["u1"], "td_segment": ["s1"]}), tmp_path / "segment_a.parquet")
    settings = RunSettings(sources=(str(tmp_path / "segment_a.parquet"),), connection=connection)
    spec, _ = resolve_target(settings)
    found = tables.find_tables(settings.sources, None, "segment_")
    target = ExportTarget(spec, "uploads/", "first_party_segment", "2026-11-28", "r")
    plan = ExportPlan(tables.load_tables(found, LineRules("user_id", "td_segment", "segment")), target)
    options = PipelineOptions(["--runner=FnApiRunner"])
    pipeline = build_pipeline(settings, plan, options)
    proto = pipeline.to_runner_api()
    graph = proto.SerializeToString() + b"".join(
        unpickled_payloads(t) for t in proto.components.transforms.values()
    )
    assert b"dmp" in graph  # the connection travels by name (inside the pickled DoFns)...
    assert SECRET.encode() not in graph  # ...and its secret does not
    assert SECRET not in json.dumps(options.get_all_options(), default=str)
    assert SECRET not in repr(spec) and SECRET.encode() not in pickle.dumps(spec)


def unpickled_payloads(transform) -> bytes:
    """A ParDo's DoFn as a raw pickle: Beam stores it base64-encoded and bz2-compressed."""
    if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
        return b""
    do_fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
    if do_fn.urn != "beam:dofn:pickled_python_info:v1":
        return b""
    return bz2.decompress(base64.b64decode(do_fn.payload))


def test_a_connection_file_readable_by_others_is_refused_with_exit_2(capsys, connection, tmp_path):
    path = os.path.join(os.environ["KRUX_EXPORT_HOME"], "connections.yml")
    os.chmod(path, 0o644)
    try:
        code, summary, _ = run_cli(capsys, "--source", str(tmp_path), "--connection", connection)
    finally:
        os.chmod(path, 0o600)
    assert code == 2 and "connections.yml" in summary["error"] and "group or others" in summary["error"]
