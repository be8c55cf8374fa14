"""`--rejects`: invalid rows as JSON lines in the one file the user named, local or on S3.

Workers write parts beside the file; the launcher assembles them before it publishes the day's
object. Rejects hold personal data: a local file is mode 0600, and nothing of them (parts, a
half-written file, this run's file) is left behind by a failed run.
"""

import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.launcher.tunables import Tunables

DAY = "2026-11-28"
CLIENT = "client-treasure-data"
OBJECT = f"{CLIENT}/uploads/{DAY}/first_party_segment.txt.gz"


@pytest.fixture
def run(s3_endpoint, bucket, capsys):
    """`krux-export run` in this process against moto; returns (exit code, summary, stderr)."""

    def run_cli(*args, tunables=None):
        argv = ["run", "--client-name", CLIENT, "--bucket", bucket, "--endpoint-url", s3_endpoint,
                "--runner=FnApiRunner", "--date", DAY, "--skip-invalid-records", *args]
        code = cli.main(argv, runtime=cli.Runtime(tunables=tunables))
        out, err = capsys.readouterr()
        return code, json.loads(out.strip().splitlines()[-1]), err

    return run_cli


def write_table(path, rows):
    pq.write_table(pa.table({"user_id": [r[0] for r in rows], "td_segment": [r[1] for r in rows]}), path)
    return str(path)


@pytest.fixture
def table(tmp_path):
    """Two valid rows and three invalid ones, one per reason that applies to them."""
    return write_table(tmp_path / "segment_a.parquet", [
        ("u1", "s1"), ("", "s2"), ("u3", "bad;segment"), ("u4", "x" * 300), ("u5", "s5"),
    ])


EXPECTED = [
    {"table": "segment_a", "reason": "missing_user_id", "row": {"user_id": "", "td_segment": "s2"}},
    {"table": "segment_a", "reason": "reserved_character", "row": {"user_id": "u3", "td_segment": "bad;segment"}},
    {"table": "segment_a", "reason": "value_too_long", "row": {"user_id": "u4", "td_segment": "x" * 300}},
]


def records(data: bytes) -> list[dict]:
    return sorted((json.loads(line) for line in data.decode().split("\n")[:-1]), key=lambda r: r["reason"])


def test_a_local_rejects_file_holds_the_invalid_rows_and_only_its_owner_may_read_it(run, s3, bucket, table,
                                                                                       tmp_path):
    rejects = tmp_path / "out" / "rejects.jsonl"
    rejects.parent.mkdir()
    rejects.write_text("an earlier run's rows\n")
    rejects.chmod(0o644)
    previous_umask = os.umask(0o022)
    try:
        code, summary, err = run("--source", table, "--rejects", str(rejects))
    finally:
        os.umask(previous_umask)
    assert code == 0, err
    assert summary["invalid"] == {"missing_user_id": 1, "reserved_character": 1, "value_too_long": 1}
    assert records(rejects.read_bytes()) == EXPECTED
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    assert sorted(p.name for p in rejects.parent.iterdir()) == ["rejects.jsonl"]  # no parts left
    s3.head_object(Bucket=bucket, Key=OBJECT)


def test_no_invalid_rows_still_writes_the_file_so_it_never_shows_an_earlier_runs_rows(run, tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text("an earlier run's rows\n")
    code, _, err = run("--source", write_table(tmp_path / "segment_a.parquet", [("u1", "s1")]),
                       "--rejects", str(rejects))
    assert code == 0, err
    assert rejects.read_bytes() == b"" and stat.S_IMODE(rejects.stat().st_mode) == 0o600


def test_s3_rejects_are_assembled_from_parts_in_the_users_bucket(run, s3, bucket, s3_endpoint, monkeypatch,
                                                                 min_part_bytes, tmp_path):
    # Four tables, each a batch of invalid rows bigger than the part minimum: four parts, which
    # the launcher joins by server-side copies.
    users = [f"u{i}" for i in range(6000)]
    for t in range(4):
        write_table(tmp_path / f"segment_{t}.parquet",
                    [(user, f"{user};" + "v" * 200) for user in users[t::4]] + [(f"ok{t}", "s")])
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)  # the user's own storage: the standard chain
    tunables = Tunables(min_part_bytes=min_part_bytes, rejects_part_bytes=min_part_bytes)
    code, summary, err = run("--source", str(tmp_path / "segment_*"), "--rejects", f"s3://{bucket}/mine/rejects.jsonl",
                             tunables=tunables)
    assert code == 0, err
    data = s3.get_object(Bucket=bucket, Key="mine/rejects.jsonl")["Body"].read()
    assert len(data) > 4 * min_part_bytes
    assert sorted(r["row"]["user_id"] for r in records(data)) == sorted(users)
    assert summary["invalid"] == {"reserved_character": 6000}
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="mine/")
    assert [o["Key"] for o in listing["Contents"]] == ["mine/rejects.jsonl"]  # parts removed
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_failed_run_leaves_no_rejects_parts_and_no_rejects_file(run, s3, bucket, tmp_path):
    # Every row invalid: the run fails with zero lines (exit 3) after the workers wrote parts.
    source = write_table(tmp_path / "segment_a.parquet", [("", "s1"), ("u2", "bad;segment")])
    rejects = tmp_path / "out" / "rejects.jsonl"
    rejects.parent.mkdir()
    code, summary, _ = run("--source", source, "--rejects", str(rejects))
    assert code == 3 and "no valid lines" in summary["error"]
    assert list(rejects.parent.iterdir()) == []
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_a_run_that_cannot_publish_the_days_object_removes_the_rejects_file_it_wrote(capsys, table, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / DAY).write_text("a file where the day's folder should be")  # publishing fails
    rejects = tmp_path / "rejects" / "rejects.jsonl"
    rejects.parent.mkdir()
    code = cli.main(["run", "--source", table, "--output-root", str(out), "--date", DAY, "--runner=FnApiRunner",
                     "--skip-invalid-records", "--rejects", str(rejects)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 4 and str(out / DAY) in summary["error"]
    assert list(rejects.parent.iterdir()) == []  # exit 4: neither the object nor the rejects


def test_leftovers_of_a_killed_run_beside_the_rejects_file_are_removed_by_the_next_run(run, table, tmp_path):
    rejects = tmp_path / "out" / "rejects.jsonl"
    killed_parts = tmp_path / "out" / "rejects.jsonl.parts" / "20261127T093000Z-dead"
    killed_parts.mkdir(parents=True)
    (killed_parts / "part-0.jsonl").write_text('{"table": "segment_a"}\n')
    (tmp_path / "out" / ".rejects.jsonl.0123456789abcdef.partial").write_text("half an assembly")
    other = tmp_path / "out" / "other.jsonl.parts"  # another file's parts: not this run's to touch
    other.mkdir()
    code, _, err = run("--source", table, "--rejects", str(rejects))
    assert code == 0, err
    assert sorted(p.name for p in rejects.parent.iterdir()) == ["other.jsonl.parts", "rejects.jsonl"]
    assert records(rejects.read_bytes()) == EXPECTED


@pytest.mark.parametrize("target, expected", [
    ("s3://bucket/rejects/", "name a file"), ("{tmp}", "name a file"), ("s3://bucket", "s3://bucket/key"),
])
def test_rejects_must_name_a_file_not_a_folder(run, s3, bucket, table, tmp_path, target, expected):
    code, summary, _ = run("--source", table, "--rejects", target.format(tmp=tmp_path))
    assert code == 2 and expected in summary["error"]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # refused before anything was written
