"""The examples in examples/ work as documented."""

import gzip
import importlib.util
import json
import runpy
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.config.connections import Connection, save_connection
from pipeline.config.settings import RunSettings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture
def example_connection(tmp_path, bucket, s3_endpoint, monkeypatch):
    """The connection the examples name, as `connection add` would save it, to the test's S3 server."""
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    save_connection(Connection(name="my_salesforce_dmp_connector", client_name="client-treasure-data",
                               access_key_id="AKIAEXAMPLE", secret_access_key="example", bucket=bucket,
                               endpoint_url=s3_endpoint))


def published_lines(s3, bucket, day):
    key = f"client-treasure-data/uploads/{day}/first_party_segment.txt.gz"
    return gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode().splitlines()


def test_the_shipped_activations_are_what_the_demo_writer_writes(tmp_path):
    demo = runpy.run_path(str(REPO / "tools" / "demo.py"))
    demo["write_activations"](str(tmp_path))
    shipped = EXAMPLES / "warehouse" / "activate_to_krux"
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in tmp_path.iterdir())
    for written in tmp_path.iterdir():
        assert (shipped / written.name).read_text() == written.read_text()


def test_the_daily_job_consolidates_the_shipped_activations_into_one_line_per_user(
    example_connection, s3, bucket, capsys
):
    code = cli.main(["run", "--job", str(EXAMPLES / "activate_to_krux.yml"), "--date", "2026-11-28",
                     "--runner=FnApiRunner"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert sorted(published_lines(s3, bucket, "2026-11-28")) == [
        "k0001^segment:High Value",
        "k0002^segment:Churn Risk,High Value",
        "k0003^segment:High Value",
        "k0004^segment:Churn Risk",
        "k0005^segment:Churn Risk",
    ]
    assert summary["invalid"] == {"missing_user_id": 1}
    assert summary["rows_read"] == {"total": 7, "tables": {"segment_churn_risk": 3, "segment_high_value": 4}}

    assert cli.main(["schedule", str(EXAMPLES / "activate_to_krux.yml"), "--next", "2"]) == 0
    times = capsys.readouterr().out.split()
    assert len(times) == 2 and all(t.endswith("T00:10:00+00:00") for t in times)


def test_the_workflow_file_exports_its_query_over_the_shipped_activations(example_connection, s3, bucket, capsys):
    code = cli.main(["run", "--job", str(EXAMPLES / "daily_krux.dig"), "--date", "2026-11-28",
                     "--runner=FnApiRunner"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert sorted(published_lines(s3, bucket, "2026-11-28")) == [
        f"{user}^segment:{segment};exported_on:2026-11-28"
        for user, segment in [("k0001", "High Value"), ("k0002", "Churn Risk"), ("k0002", "High Value"),
                              ("k0003", "High Value"), ("k0004", "Churn Risk"), ("k0005", "Churn Risk")]
    ]
    assert json.loads(out.splitlines()[-1])["invalid"] == {"missing_user_id": 1}


def test_the_examples_run_as_getting_started_says_into_a_local_folder(example_connection, tmp_path, capsys):
    out_root = tmp_path / "example_out"
    for job in ("activate_to_krux.yml", "daily_krux.dig"):
        code = cli.main(["run", "--job", str(EXAMPLES / job), "--output-root", str(out_root), "--date", "2026-11-28",
                         "--runner=FnApiRunner"])
        assert code == 0, capsys.readouterr().err
        lines = gzip.decompress((out_root / "2026-11-28" / "first_party_segment.txt.gz").read_bytes()).decode()
        assert len(lines.splitlines()) == (5 if job.endswith(".yml") else 6)
    assert not list(EXAMPLES.rglob("*.gz"))  # nothing written beside the examples


def test_the_airflow_dag_is_valid_python():
    source = (EXAMPLES / "airflow_dag.py").read_text()
    compile(source, "airflow_dag.py", "exec")  # Airflow itself is not installed in tests
    assert '"--date", ds' in source


def load_airflow_dag(monkeypatch):
    """The DAG file's functions, with just enough of Airflow stubbed to import it."""
    def dag(**_):  # a DAG is only declared when its function is called: declare nothing
        return lambda function: (lambda: None)

    stubs = {
        "airflow": types.ModuleType("airflow"),
        "airflow.decorators": types.SimpleNamespace(dag=dag, task=lambda function: function),
        "airflow.exceptions": types.SimpleNamespace(AirflowException=RuntimeError, AirflowFailException=ValueError),
    }
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    namespace = {"__name__": "airflow_dag"}
    exec(compile((EXAMPLES / "airflow_dag.py").read_text(), "airflow_dag.py", "exec"), namespace)
    return namespace


def test_the_airflow_append_key_is_a_valid_key_that_stays_the_same_across_tries(monkeypatch):
    append_key = load_airflow_dag(monkeypatch)["append_key"]
    key = append_key("scheduled__2026-11-28T10:00:00+00:00", "append_to_the_days_files")
    assert key == "scheduled__2026-11-28T10_00_00_00_00-append_to_the_days_files"
    assert RunSettings(append=True, append_key=key).append_key == key  # krux-export takes it
    assert append_key("manual__2026-11-28T10:30:12.5+00:00", "t", 3) == "manual__2026-11-28T10_30_12.5_00_00-t-3"
    assert key != append_key("scheduled__2026-11-28T11:00:00+00:00", "append_to_the_days_files")


def load_beam_example():
    spec = importlib.util.spec_from_file_location("beam_pipeline_example", EXAMPLES / "beam_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_activations(root: Path) -> None:
    """SPEC §3's example row, a user in two tables, an integer attribute."""
    root.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["uid1", "uid2"], "td_segment": ["seg1,seg2", "seg3"], "email": ["", None],
                             "firstname": ["Britty", None], "lastname": ["Morris", None]}),
                   root / "segment_a.parquet")
    pq.write_table(pa.table({"user_id": [" uid1 "], "td_segment": ["seg2, seg4"], "visits": [3]}),
                   root / "segment_b.parquet")


def day_file_lines(root: Path) -> list[str]:
    (path,) = (root / "2026-11-28").glob("[!.]*")  # not the line-count sidecar (docs/destination.md)
    data = path.read_bytes()
    return sorted((gzip.decompress(data) if path.suffix == ".gz" else data).decode().splitlines())


@pytest.mark.parametrize("flags, expected", [
    ([], ["uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris", "uid1^segment:seg2,seg4;visits:3",
          "uid2^segment:seg3"]),
    (["--group-by-user"], ["uid1^segment:seg1,seg2,seg4;firstname:Britty;lastname:Morris;visits:3",
                           "uid2^segment:seg3"]),
])
def test_the_beam_pipeline_example_writes_the_lines_run_writes(tmp_path, capsys, flags, expected):
    warehouse = tmp_path / "activate_to_krux"
    write_activations(warehouse)

    example = load_beam_example()
    example.build_pipeline(["--input", str(warehouse / "segment_*.parquet"), "--output-root", str(tmp_path / "beam"),
                            "--date", "2026-11-28", *flags, "--runner=FnApiRunner"]).run().wait_until_finish()
    code = cli.main(["run", "--database", str(warehouse), "--output-root", str(tmp_path / "cli"),
                     "--date", "2026-11-28", *flags, "--runner=FnApiRunner"])
    assert code == 0, capsys.readouterr().err

    assert day_file_lines(tmp_path / "beam") == day_file_lines(tmp_path / "cli") == expected
