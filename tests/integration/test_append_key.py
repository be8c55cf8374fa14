"""`--append --append-key KEY` through the CLI against moto: an orchestrator's retry replaces its own append."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli

CLIENT = "client-treasure-data"
DAY = "2026-11-28"
DAY_PREFIX = f"{CLIENT}/uploads/{DAY}/"


@pytest.fixture
def database(tmp_path):
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    pq.write_table(pa.table({"user_id": ["uid1", "uid2"], "td_segment": ["seg1", "seg2,seg3"]}),
                   root / "segment_a.parquet")
    return root


@pytest.fixture
def run(s3_endpoint, bucket, database, capsys):
    """Runs `run --append` on the database in this process; returns (exit code, summary, stderr)."""

    def run_cli(*args):
        argv = ["run", "--client-name", CLIENT, "--bucket", bucket, "--endpoint-url", s3_endpoint,
                "--database", str(database), "--date", DAY, "--append", "--runner=FnApiRunner", *args]
        code = cli.main(argv)
        out, err = capsys.readouterr()
        return code, json.loads(out.strip().splitlines()[-1]), err

    return run_cli


def day_objects(s3, bucket):
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=DAY_PREFIX)
    return sorted(o["Key"][len(DAY_PREFIX):] for o in listing.get("Contents", []))


def day_lines(s3, bucket):
    return sorted(
        line
        for name in day_objects(s3, bucket)
        for line in gzip.decompress(s3.get_object(Bucket=bucket, Key=DAY_PREFIX + name)["Body"].read())
        .decode().splitlines()
    )


def test_a_retried_append_with_the_same_key_replaces_its_own_object(run, s3, bucket):
    key = "scheduled__2026-11-28T00.10.00-export_to_krux"
    first = run("--append-key", key)
    retry = run("--append-key", key)
    assert (first[0], retry[0]) == (0, 0), retry[2]
    assert day_objects(s3, bucket) == [f"first_party_segment-{key}.txt.gz"]
    assert retry[1]["object_uri"] == f"s3://{bucket}/{DAY_PREFIX}first_party_segment-{key}.txt.gz"
    # The day holds the lines once, not twice.
    assert day_lines(s3, bucket) == ["uid1^segment:seg1", "uid2^segment:seg2,seg3"]
    assert retry[1]["replaced"] == []


def test_appends_with_different_keys_are_two_objects(run, s3, bucket):
    assert run("--append-key", "task_a")[0] == 0
    assert run("--append-key", "task_b")[0] == 0
    assert day_objects(s3, bucket) == ["first_party_segment-task_a.txt.gz", "first_party_segment-task_b.txt.gz"]
    assert len(day_lines(s3, bucket)) == 4


def test_an_append_without_a_key_still_names_its_object_by_run_id(run, s3, bucket):
    code, summary, err = run()
    assert code == 0, err
    assert day_objects(s3, bucket) == [f"first_party_segment-{summary['run_id']}.txt.gz"]
