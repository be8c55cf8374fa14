"""The examples in examples/ work as documented."""

import gzip
import importlib.util
import json
import shutil
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.config.connections import Connection, save_connection
from pipeline.config.settings import RunSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_daily_activate_to_krux_job_consolidates_activations_into_one_file(
    tmp_path, s3, bucket, s3_endpoint, capsys, monkeypatch
):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    save_connection(Connection(name="my_salesforce_dmp_connector", client_name="client-treasure-data",
                               access_key_id="AKIAEXAMPLE", secret_access_key="example", bucket=bucket,
                               endpoint_url=s3_endpoint))
    job = tmp_path / "activate_to_krux.yml"
    shutil.copy(EXAMPLES / "activate_to_krux.yml", job)
    warehouse = tmp_path / "warehouse" / "activate_to_krux"
    warehouse.mkdir(parents=True)
    # Two Audience Studio activations (KUID, segment_name), one user in both, one bad row.
    pq.write_table(pa.table({"KUID": ["k1", "k2"], "segment_name": ["Luxury Buyers", "Golfers"]}),
                   warehouse / "segment_activation_1.parquet")
    pq.write_table(pa.table({"KUID": ["k1", ""], "segment_name": ["Golfers", "Golfers"]}),
                   warehouse / "segment_activation_2.parquet")

    code = cli.main(["run", "--job", str(job), "--date", "2026-11-28", "--runner=FnApiRunner"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    key = "client-treasure-data/uploads/2026-11-28/first_party_segment.txt.gz"
    lines = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).decode().splitlines()
    assert sorted(lines) == ["k1^segment:Golfers,Luxury Buyers", "k2^segment:Golfers"]
    assert summary["invalid"] == {"missing_user_id": 1}

    assert cli.main(["schedule", str(job), "--next", "2"]) == 0
    times = capsys.readouterr().out.split()
    assert len(times) == 2 and all(t.endswith("T00:10:00+00:00") for t in times)


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
