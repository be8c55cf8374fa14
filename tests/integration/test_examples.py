"""The examples in examples/ work as documented."""

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.commands import cli
from pipeline.config.connections import Connection, save_connection

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
