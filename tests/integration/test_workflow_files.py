"""`run --job FILE.dig` and `schedule FILE.dig`: the seed's workflow file, against moto's S3."""

import datetime
import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.config.connections import Connection, save_connection

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLIENT = "client-treasure-data"
DAY = "2026-11-28"

WORKFLOW = """\
timezone: Asia/Tokyo
schedule:
  daily>: 00:10:00
_export:
  td:
    database: activate_to_krux
  min_score: 10
+export_to_krux:
  td>: queries/consolidate.sql
  result_connection: dmp
  result_settings:
    export_type: first_party_segment
    compression: none
+export_high_scores:
  td>: queries/high_scores.sql
  result_connection: dmp
  result_settings:
    export_type: first_party_segment
    export_name: high_scores
    compression: none
"""

CONSOLIDATE = """SELECT KUID AS user_id, segment_name AS td_segment, '${session_date}' AS day
FROM activate_to_krux.segment_a
"""
HIGH_SCORES = """SELECT KUID AS user_id, segment_name AS td_segment, '${session_date_compact}' AS day
FROM segment_a WHERE score >= ${min_score}
"""


class FixedClock:
    def __init__(self):
        self.current = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.timezone.utc)

    def now(self):
        return self.current

    def sleep_until(self, moment):
        raise AssertionError("--next never sleeps")


@pytest.fixture
def workflow(tmp_path):
    """A workflow folder: the .dig file, its queries, and its activate_to_krux database."""
    database = tmp_path / "activate_to_krux"
    database.mkdir()
    pq.write_table(pa.table({"KUID": ["k1", "k2"], "segment_name": ["a", "b"], "score": [5, 20]}),
                   database / "segment_a.parquet")
    (tmp_path / "queries").mkdir()
    (tmp_path / "queries" / "consolidate.sql").write_text(CONSOLIDATE)
    (tmp_path / "queries" / "high_scores.sql").write_text(HIGH_SCORES)
    path = tmp_path / "daily_krux.dig"
    path.write_text(WORKFLOW)
    return path


@pytest.fixture
def connection(s3_endpoint, bucket, monkeypatch):
    monkeypatch.setenv("KRUX_TEST_SECRET", "not-a-real-secret-0123456789")
    save_connection(Connection(name="dmp", client_name=CLIENT, access_key_id="AKIAEXAMPLEKEY00",
                               secret_access_key="env:KRUX_TEST_SECRET", bucket=bucket, endpoint_url=s3_endpoint))
    return "dmp"


def run_workflow(capsys, path, *flags):
    code = cli.main(["run", "--job", str(path), "--date", DAY, "--runner=FnApiRunner", *flags])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def day_text(s3, bucket, name):
    key = f"{CLIENT}/uploads/{DAY}/{name}"
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_schedule_next_3_lists_a_two_task_workflows_start_times(workflow, capsys):
    code = cli.main(["schedule", str(workflow), "--next", "3"], runtime=cli.Runtime(clock=FixedClock()))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == "2026-11-29T00:10:00+09:00\n2026-11-30T00:10:00+09:00\n2026-12-01T00:10:00+09:00\n"


def test_run_job_runs_each_task_in_order_with_its_variables(workflow, connection, s3, bucket, capsys):
    code, summaries, err = run_workflow(capsys, workflow)
    assert code == 0, err
    assert [s["object_uri"].rsplit("/", 1)[-1] for s in summaries] == ["first_party_segment.txt", "high_scores.txt"]
    assert all(s["status"] == "succeeded" and s["rows_read"]["tables"].keys() == {"query"} for s in summaries)
    assert sorted(day_text(s3, bucket, "first_party_segment.txt").splitlines()) == [
        "k1^segment:a;day:2026-11-28",
        "k2^segment:b;day:2026-11-28",
    ]
    assert day_text(s3, bucket, "high_scores.txt") == "k2^segment:b;day:20261128\n"


def test_a_failing_task_stops_the_workflow_with_its_exit_code(workflow, connection, s3, bucket, capsys):
    (workflow.parent / "queries" / "consolidate.sql").write_text("SELECT KUID AS user_id\nFROM segment_gone")
    code, summaries, err = run_workflow(capsys, workflow)
    assert code == 2
    assert summaries == [{"status": "failed", "exit_code": 2, "error": summaries[0]["error"],
                          "run_id": summaries[0]["run_id"], "date": DAY}]
    missing = "consolidate.sql line 2: Catalog Error: Table with name segment_gone does not exist!"
    assert missing in summaries[0]["error"]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # the second task never ran


@pytest.mark.parametrize("old, new, message", [
    ("  td>: queries/high_scores.sql", "  py>: tasks.export", "daily_krux.dig: line 15: operator py> is not supported"),
    ("WHERE score >= ${min_score}", "WHERE score >= ${max_score}",
     "high_scores.sql line 2: unknown variable ${max_score}"),
], ids=["operator", "variable"])
def test_an_unknown_operator_or_variable_exits_2_naming_it(workflow, capsys, old, new, message):
    for path in (workflow, workflow.parent / "queries" / "high_scores.sql"):
        path.write_text(path.read_text().replace(old, new))
    code, summaries, err = run_workflow(capsys, workflow)
    assert code == 2
    assert message in summaries[-1]["error"]



def test_the_example_workflow_runs_as_documented(tmp_path, s3, bucket, s3_endpoint, capsys):
    save_connection(Connection(name="my_salesforce_dmp_connector", client_name=CLIENT, access_key_id="AKIAEXAMPLE",
                               secret_access_key="example", bucket=bucket, endpoint_url=s3_endpoint))
    shutil.copytree(EXAMPLES, tmp_path / "examples")  # with its sample activate_to_krux database
    code, summaries, err = run_workflow(capsys, tmp_path / "examples" / "daily_krux.dig", "--group-by-user")
    assert code == 0, err
    data = s3.get_object(Bucket=bucket, Key=f"{CLIENT}/uploads/{DAY}/first_party_segment.txt.gz")["Body"].read()
    assert sorted(gzip.decompress(data).decode().splitlines()) == [
        "k0001^segment:High Value;exported_on:2026-11-28",
        "k0002^segment:Churn Risk,High Value;exported_on:2026-11-28",
        "k0003^segment:High Value;exported_on:2026-11-28",
        "k0004^segment:Churn Risk;exported_on:2026-11-28",
        "k0005^segment:Churn Risk;exported_on:2026-11-28",
    ]
    assert summaries[0]["rows_read"] == {"total": 7, "tables": {"query": 7}}
    assert summaries[0]["invalid"] == {"missing_user_id": 1}
