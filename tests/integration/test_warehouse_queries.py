"""`--warehouse NAME`: the query runs in a warehouse through ADBC (SPEC §9), here a real PostgreSQL.

The password is read from the environment (`password: env:VAR`) where the connection is loaded,
and appears in no output, no pipeline option and no part of the pipeline shipped to workers.
"""

import datetime
import gzip
import json
import os
from pathlib import Path

import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.commands import cli
from pipeline.config.connections import Connection, save_connection
from pipeline.config.settings import RunSettings
from pipeline.launcher.graph import ExportPlan, build_pipeline
from pipeline.sources.query import query_of
from pipeline.storage.stores import StoreSpec
from transforms.write import ExportTarget

DAY = "2026-11-28"
PASSWORD = "pw-Sx93-never-shown"
AUDIENCE = """
DROP TABLE IF EXISTS audience;
CREATE TABLE audience (user_id text, td_segment text, visits int, score double precision, joined date);
INSERT INTO audience VALUES
  ('u1', 'sports,news', 3, 1.5, '2026-11-01'),
  ('u2', 'news', NULL, 2.25, '2026-11-02'),
  ('u3', 'travel', 7, NULL, NULL);
"""


@pytest.fixture
def home(tmp_path, monkeypatch, postgres):
    """connections.yml with warehouse `pg` (password from $PG_TEST_PASSWORD) and the audience table."""
    postgres.psql(AUDIENCE)
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PG_TEST_PASSWORD", PASSWORD)
    write_connections(tmp_path / "home", {"pg": {"uri": postgres.get_uri(), "password": "env:PG_TEST_PASSWORD"}})
    return tmp_path / "home"


def write_connections(home: Path, entries: dict) -> None:
    home.mkdir(exist_ok=True)
    path = home / "connections.yml"
    path.write_text(yaml.safe_dump(entries))
    os.chmod(path, 0o600)


@pytest.fixture
def run(tmp_path, capsys):
    """Runs `krux-export run` into a local output root: (exit code, summary, stdout+stderr, sorted lines)."""

    def run_cli(*args):
        out = tmp_path / "out"
        code = cli.main(["run", "--output-root", str(out), "--date", DAY, "--compression", "none", "--quiet",
                         "--runner=FnApiRunner", *args])
        stdout, err = capsys.readouterr()
        path = out / DAY / "first_party_segment.txt"
        lines = sorted(path.read_text().splitlines()) if code == 0 else []
        return code, json.loads(stdout.strip().splitlines()[-1]), stdout + err, lines

    return run_cli


def test_a_query_runs_in_postgresql_with_typed_attributes(home, run):
    code, summary, output, lines = run(
        "--warehouse", "pg", "--query", "SELECT user_id, td_segment, visits, score, joined FROM audience")
    assert code == 0, output
    assert lines == [
        "u1^segment:sports,news;visits:3;score:1.5;joined:2026-11-01",
        "u2^segment:news;score:2.25;joined:2026-11-02",
        "u3^segment:travel;visits:7",
    ]
    assert summary["rows_read"] == {"total": 3, "tables": {"query": 3}}
    assert "snapshots" not in summary
    assert PASSWORD not in output


def test_a_sql_error_is_the_databases_own_line(home, run):
    code, summary, output, _ = run("--warehouse", "pg", "--query", "SELECT nope AS user_id, td_segment FROM audience")
    assert code == 2
    assert summary["error"] == '--query: ERROR: column "nope" does not exist (warehouse pg)'


def test_a_result_without_user_id_first_is_refused_as_for_duckdb(home, run):
    code, summary, _, _ = run("--warehouse", "pg", "--query", "SELECT td_segment, user_id FROM audience")
    assert code == 2
    assert summary["error"] == ("--query: the result's first two columns must be user_id and td_segment "
                                "(in that order), got td_segment, user_id; rename them with AS, e.g. SELECT KUID AS "
                                "user_id, segment_name AS td_segment")


def test_a_password_inside_the_uri_is_refused_without_being_shown(tmp_path, monkeypatch, postgres, run):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    write_connections(tmp_path / "home", {"pg": {"uri": f"postgresql://postgres:{PASSWORD}@localhost/postgres"}})
    code, summary, output, _ = run("--warehouse", "pg", "--query", "SELECT user_id, td_segment FROM audience")
    assert code == 2
    assert summary["error"].startswith("connection 'pg' in ")
    assert "the uri holds a password" in summary["error"]
    assert PASSWORD not in output


def test_the_password_is_in_no_option_and_no_part_of_the_shipped_pipeline(home):
    settings = RunSettings(warehouse="pg", query="SELECT user_id, td_segment FROM audience", output_root="/tmp/x")
    query = query_of(settings, datetime.date(2026, 11, 28), datetime.datetime.now(datetime.timezone.utc))
    options = PipelineOptions(["--runner=FnApiRunner"])
    target = ExportTarget(StoreSpec.from_uri("/tmp/x"), "", "first_party_segment", "2026-11-28", "run")
    plan = ExportPlan([], target, query=query)
    pipeline = build_pipeline(settings, plan, options)
    shipped = pipeline.to_runner_api().SerializeToString()
    assert b"ReadQuery" in shipped and PASSWORD.encode() not in shipped
    assert PASSWORD not in json.dumps(options.get_all_options(), default=str)
    assert PASSWORD not in repr(query)


def test_a_workflow_runs_its_queries_in_the_warehouse(home, s3, bucket, s3_endpoint, tmp_path, capsys):
    save_connection(Connection(name="dmp", client_name="acme", access_key_id="testing",
                               secret_access_key="testing", bucket=bucket, endpoint_url=s3_endpoint))
    (tmp_path / "audience.sql").write_text("SELECT user_id, td_segment FROM audience WHERE visits > ${min_visits}\n")
    (tmp_path / "daily.dig").write_text(
        "_export:\n  td:\n    warehouse: pg\n  min_visits: 5\n"
        "+export_to_krux:\n  td>: audience.sql\n  result_connection: dmp\n"
        "  result_settings:\n    export_type: first_party_segment\n")
    code = cli.main(["run", "--job", str(tmp_path / "daily.dig"), "--date", DAY, "--quiet", "--runner=FnApiRunner"])
    out, err = capsys.readouterr()
    assert code == 0, err
    body = s3.get_object(Bucket=bucket, Key=f"acme/uploads/{DAY}/first_party_segment.txt.gz")["Body"].read()
    assert gzip.decompress(body).decode() == "u3^segment:travel\n"


def test_connection_list_and_test_on_a_warehouse(home, postgres, capsys):
    assert cli.main(["connection", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"pg  warehouse  {postgres.get_uri()}" in listed and PASSWORD not in listed
    assert cli.main(["connection", "test", "pg"]) == 0
    assert capsys.readouterr().out.startswith("connection pg works: SELECT 1 ran in warehouse postgresql://")


@pytest.mark.parametrize("partitioned", [False, True], ids=["streamed", "partitions"])
def test_read_query_reads_a_warehouse_result_streamed_or_by_partitions(home, partitioned):
    # PostgreSQL's driver has no partitions: asked for them, it gives the one whole-result
    # "partition", read after the reshuffle as Snowflake's or BigQuery's partitions are.
    import dataclasses

    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from pipeline.sources.warehouse import plan_warehouse_query
    from transforms.query import ReadQuery

    query = plan_warehouse_query("SELECT user_id, td_segment, visits FROM audience", "--query", "pg")
    assert query.partitioned is False  # PostgreSQL
    with TestPipeline(runner="FnApiRunner") as p:
        batches = p | ReadQuery(dataclasses.replace(query, partitioned=partitioned), spread=True, batch_rows=2)
        rows = batches | beam.FlatMap(lambda b: [(b.table, row["user_id"], row["visits"]) for row in b.batch.to_pylist()])
        assert_that(rows, equal_to([("query", "u1", 3), ("query", "u2", None), ("query", "u3", 7)]))
