"""The `krux-export run` command end to end, against moto's S3 server over HTTP."""

import gzip
import json
import os
import subprocess
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.launcher import run as launcher_run
from pipeline.launcher.tunables import Tunables
from pipeline.storage import stores

CLIENT = "client-treasure-data"
DAY = "2026-11-28"
DAY_PREFIX = f"{CLIENT}/uploads/{DAY}/"
SPEC_COLUMNS = ["user_id", "td_segment", "email", "firstname", "lastname"]


def write_parquet(path, columns, rows):
    pq.write_table(pa.table({name: [row[i] for row in rows] for i, name in enumerate(columns)}), path)
    return path


@pytest.fixture
def database(tmp_path):
    """An activate_to_krux database: SPEC §3's example row, another table, a non-segment table."""
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    write_parquet(root / "segment_a.parquet", SPEC_COLUMNS, [("uid1", "seg1,seg2", "", "Britty", "Morris")])
    write_parquet(root / "segment_b.parquet", ["user_id", "td_segment"], [("uid2", "seg3"), (" uid1 ", "seg2, seg4")])
    write_parquet(root / "other.parquet", ["user_id", "td_segment"], [("uid9", "not-exported")])
    return root


@pytest.fixture
def run(s3_endpoint, bucket, capsys):
    """Runs the CLI in this process; returns (exit code, summary dict, stderr)."""

    def run_cli(*args, date=DAY, client=CLIENT, tunables=None):
        argv = ["run", "--client-name", client, "--bucket", bucket, "--endpoint-url", s3_endpoint,
                "--runner=FnApiRunner", *args]
        if date:
            argv += ["--date", date]
        code = cli.main(argv, runtime=cli.Runtime(tunables=tunables))
        out, err = capsys.readouterr()
        return code, json.loads(out.strip().splitlines()[-1]), err

    return run_cli


def day_objects(s3, bucket, prefix=DAY_PREFIX):
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for o in listing.get("Contents", []))


def read_lines(s3, bucket, key):
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    text = gzip.decompress(data) if key.endswith(".gz") else data
    return sorted(text.decode().splitlines()), data


def assert_nothing_left_over(s3, bucket):
    assert day_objects(s3, bucket, f"{CLIENT}/_staging/") == []
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_export_publishes_the_days_file_with_spec_lines_and_summary(run, s3, bucket, database):
    code, summary, err = run("--database", str(database))
    assert code == 0, err
    lines, data = read_lines(s3, bucket, DAY_PREFIX + "first_party_segment.txt.gz")
    assert lines == sorted([
        "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris",
        "uid2^segment:seg3",
        "uid1^segment:seg2,seg4",
    ])
    assert summary["status"] == "succeeded"
    assert summary["object_uri"] == f"s3://{bucket}/{DAY_PREFIX}first_party_segment.txt.gz"
    assert summary["bytes"] == len(data)
    assert summary["date"] == DAY
    assert summary["rows_read"] == {"total": 3, "tables": {"segment_a": 1, "segment_b": 2}}
    assert summary["lines_written"] == 3
    assert summary["invalid"] == {} and summary["replaced"] == []
    assert_nothing_left_over(s3, bucket)


def test_group_by_user_writes_one_sorted_line_per_user_across_tables(run, s3, bucket, database, monkeypatch):
    spill_dirs = []
    real_build = launcher_run.build_pipeline

    def recording_build(settings, plan, options):
        spill_dirs.append((plan.spill_dir, os.path.isdir(plan.spill_dir)))
        return real_build(settings, plan, options)

    monkeypatch.setattr(launcher_run, "build_pipeline", recording_build)
    code, summary, err = run("--database", str(database), "--group-by-user", "--compression", "none")
    assert code == 0, err
    lines, _ = read_lines(s3, bucket, DAY_PREFIX + "first_party_segment.txt")
    assert lines == [
        "uid1^segment:seg1,seg2,seg4;firstname:Britty;lastname:Morris",
        "uid2^segment:seg3",
    ]
    assert summary["lines_written"] == 2
    # The local runner's grouping went through a spill directory, made for the run and removed.
    [(spill_dir, existed)] = spill_dirs
    assert existed and not os.path.exists(spill_dir)


def test_replace_then_append_then_replace_leaves_one_object_and_spares_neighbours(run, s3, bucket, database):
    neighbours = [
        f"{DAY_PREFIX}first_party_segment_v2.txt.gz",  # another export name
        f"{CLIENT}/uploads/2026-11-27/first_party_segment.txt.gz",  # another day
        f"other-client/uploads/{DAY}/first_party_segment.txt.gz",  # another client
    ]
    for key in neighbours:
        s3.put_object(Bucket=bucket, Key=key, Body=b"keep me")

    assert run("--database", str(database))[0] == 0
    code, appended, _ = run("--database", str(database), "--append")
    assert code == 0
    append_name = f"first_party_segment-{appended['run_id']}.txt.gz"
    assert day_objects(s3, bucket) == sorted(["first_party_segment.txt.gz", append_name, "first_party_segment_v2.txt.gz"])
    assert appended["replaced"] == []

    code, replaced, _ = run("--database", str(database), "--compression", "none")
    assert code == 0
    assert day_objects(s3, bucket) == ["first_party_segment.txt", "first_party_segment_v2.txt.gz"]
    assert sorted(replaced["replaced"]) == sorted(
        f"s3://{bucket}/{DAY_PREFIX}{name}" for name in ["first_party_segment.txt.gz", append_name]
    )
    for key in neighbours:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"keep me"
    assert_nothing_left_over(s3, bucket)


@pytest.fixture
def big_database(tmp_path):
    """About 1.5 MiB of gzip across four tables: several shards above the lowered part minimum."""
    root = tmp_path / "big"
    root.mkdir()
    for t in range(4):
        users = [f"user-{t}-{i:07d}-{(i * 7919) % 100003:05d}" for i in range(60_000)]
        segments = [f"seg_{(i * 31) % 977},seg_{(i * 17) % 409}" for i in range(60_000)]
        pq.write_table(pa.table({"user_id": users, "td_segment": segments}), root / f"segment_{t}.parquet")
    return root


def test_large_export_is_merged_from_several_copied_parts_into_one_gzip_stream(
    run, s3, bucket, big_database, min_part_bytes
):
    tunables = Tunables(shard_target_bytes=min_part_bytes, min_part_bytes=min_part_bytes)
    code, summary, err = run("--database", str(big_database), tunables=tunables)
    assert code == 0, err
    key = DAY_PREFIX + "first_party_segment.txt.gz"
    head = s3.head_object(Bucket=bucket, Key=key)
    parts = int(head["ETag"].strip('"').rsplit("-", 1)[1])  # a multipart ETag ends in -<parts>
    assert parts >= 3
    lines, data = read_lines(s3, bucket, key)
    assert len(lines) == summary["lines_written"] == 240_000
    assert lines[0] == "user-0-0000000-00000^segment:seg_0"
    assert summary["bytes"] == len(data)
    # One stream for gzip -t and for Python; a single zlib object would stop after one member.
    subprocess.run(["gzip", "-t"], input=data, check=True)
    assert len(zlib.decompressobj(wbits=31).decompress(data)) < len(gzip.decompress(data))
    assert_nothing_left_over(s3, bucket)


def test_failure_during_merge_keeps_the_previous_object_and_leaves_no_debris(run, s3, bucket, database, monkeypatch):
    assert run("--database", str(database))[0] == 0
    key = DAY_PREFIX + "first_party_segment.txt.gz"
    before = s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    real_compose = stores.S3Store.compose

    def compose_with_a_vanished_shard(self, key, sources, **kwargs):
        # A shard that is gone by merge time: UploadPartCopy fails half way through the upload.
        return real_compose(self, key, [*sources, stores.ObjectInfo(sources[0].key + ".gone", 10)], **kwargs)

    monkeypatch.setattr(stores.S3Store, "compose", compose_with_a_vanished_shard)
    code, summary, err = run("--database", str(database), "--group-by-user")
    assert code == 4
    assert summary["status"] == "failed" and summary["exit_code"] == 4
    assert "gone" in summary["error"]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == before
    assert day_objects(s3, bucket) == ["first_party_segment.txt.gz"]
    assert_nothing_left_over(s3, bucket)


def test_missing_segment_column_is_a_schema_error_naming_table_and_column(run, s3, bucket, tmp_path):
    write_parquet(tmp_path / "segment_x.parquet", ["user_id", "segments"], [("u1", "s1")])
    code, summary, err = run("--source", str(tmp_path / "segment_x.parquet"))
    assert code == 2
    assert "table segment_x" in summary["error"] and "td_segment" in summary["error"]
    assert err.strip().splitlines()[-1].startswith("krux-export: error:")
    assert day_objects(s3, bucket, "") == []


def test_non_string_user_column_is_a_schema_error(run, tmp_path):
    pq.write_table(pa.table({"user_id": [1, 2], "td_segment": ["a", "b"]}), tmp_path / "segment_n.parquet")
    code, summary, _ = run("--source", str(tmp_path / "segment_n.parquet"))
    assert code == 2
    assert summary["error"] == "table segment_n: column user_id is int64, expected a string column"


def test_invalid_row_fails_the_run_naming_table_row_and_reason_and_publishes_nothing(run, s3, bucket, tmp_path):
    write_parquet(tmp_path / "segment_bad.parquet", ["user_id", "td_segment"],
                  [("u1", "ok"), ("u2", "ok"), ("u3", "bad;segment")])
    code, summary, _ = run("--source", str(tmp_path / "segment_bad.parquet"))
    assert code == 3
    assert summary["error"].startswith("table segment_bad row 3: reserved_character in column td_segment")
    assert "bad;segment" not in summary["error"]  # the preview is redacted
    assert day_objects(s3, bucket, "") == []


def test_skip_invalid_records_counts_them_and_writes_rejects(run, s3, bucket, tmp_path):
    write_parquet(tmp_path / "segment_bad.parquet", ["user_id", "td_segment"],
                  [("u1", "ok"), ("", "ok"), ("u3", "bad;segment"), ("u4", " , ")])
    rejects = tmp_path / "rejects.jsonl"
    code, summary, err = run("--source", str(tmp_path / "segment_bad.parquet"), "--skip-invalid-records",
                             "--rejects", str(rejects))
    assert code == 0, err
    assert summary["invalid"] == {"missing_user_id": 1, "no_attributes": 1, "reserved_character": 1}
    assert summary["lines_written"] == 1 and summary["rows_read"]["total"] == 4
    records = sorted((json.loads(line) for line in rejects.read_text().splitlines()), key=lambda r: r["reason"])
    assert [r["reason"] for r in records] == ["missing_user_id", "no_attributes", "reserved_character"]
    assert records[2] == {"table": "segment_bad", "reason": "reserved_character",
                          "row": {"user_id": "u3", "td_segment": "bad;segment"}}


def test_zero_valid_lines_exits_3_unless_allow_empty(run, s3, bucket, tmp_path):
    write_parquet(tmp_path / "segment_e.parquet", ["user_id", "td_segment"], [("", "x")])
    source = ["--source", str(tmp_path / "segment_e.parquet"), "--skip-invalid-records"]
    code, summary, _ = run(*source)
    assert code == 3 and "no valid lines" in summary["error"]
    assert day_objects(s3, bucket, "") == []

    code, summary, _ = run(*source, "--allow-empty")
    assert code == 0
    data = s3.get_object(Bucket=bucket, Key=DAY_PREFIX + "first_party_segment.txt.gz")["Body"].read()
    assert gzip.decompress(data) == b"" and summary["bytes"] == len(data) > 0


def test_usage_errors_exit_2_with_the_failed_summary_line(run):
    code, summary, err = run("--source", "/nonexistent/segment_a.parquet")
    # The run knew its day and id when it checked the tables: the line carries them (SPEC §7).
    assert code == 2 and summary == {"status": "failed", "exit_code": 2, "error": summary["error"],
                                     "run_id": summary["run_id"], "date": DAY}
    assert "/nonexistent/segment_a.parquet" in summary["error"]
    code, summary, _ = run("--source", "x", "--skip-invalid-record")  # neither an abbreviation nor a Beam option
    assert code == 2 and summary["error"].startswith("unknown option --skip-invalid-record ")
    code, summary, err = run("--source", "x", "--secret-access-key=TOPSECRET")  # never echoed back
    assert code == 2 and "--secret-access-key" in summary["error"]
    assert "TOPSECRET" not in summary["error"] + err


def test_output_root_writes_the_same_layout_to_a_local_directory(capsys, database, tmp_path):
    out = tmp_path / "out"
    code = cli.main(["run", "--database", str(database), "--output-root", str(out), "--date", DAY,
                     "--runner=FnApiRunner"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    published = out / DAY / "first_party_segment.txt.gz"
    assert summary["object_uri"] == str(published)
    assert sorted(gzip.decompress(published.read_bytes()).decode().splitlines()) == sorted([
        "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris", "uid2^segment:seg3", "uid1^segment:seg2,seg4"])
    assert sorted(p.name for p in out.iterdir()) == [DAY]  # staging removed


def test_run_job_file_with_a_flag_that_overrides_it(run, s3, bucket, database, tmp_path):
    job = tmp_path / "job.yml"
    job.write_text(
        "name: daily_krux\n"
        f"source: {{database: {database.name}}}\n"  # relative to the job file
        f"client_name: {CLIENT}\n"
        "result_settings: {export_type: first_party_segment, group_by_user: true, compression: gzip}\n"
    )
    code, summary, err = run("--job", str(job), "--compression", "none")
    assert code == 0, err
    lines, _ = read_lines(s3, bucket, DAY_PREFIX + "first_party_segment.txt")  # the flag won
    assert lines == ["uid1^segment:seg1,seg2,seg4;firstname:Britty;lastname:Morris", "uid2^segment:seg3"]


def test_run_job_file_with_an_unsupported_export_type_exits_2(run, tmp_path):
    job = tmp_path / "job.yml"
    job.write_text("name: j\nsource: {database: .}\nclient_name: c\nresult_settings: {export_type: audience}\n")
    code, summary, _ = run("--job", str(job))
    assert code == 2 and "export_type" in summary["error"] and "first_party_segment" in summary["error"]


def test_a_beam_dry_run_is_refused_because_nothing_could_be_published(run, s3, bucket, database):
    code, summary, _ = run("--database", str(database), "--dry_run=True")
    assert code == 2 and "--dry_run" in summary["error"]
    assert day_objects(s3, bucket, "") == []


def test_output_root_on_s3_writes_the_same_layout_under_that_prefix(run, s3, bucket, database):
    code, summary, err = run("--database", str(database), "--output-root", f"s3://{bucket}/dry-run/uploads")
    assert code == 0, err
    key = f"dry-run/uploads/{DAY}/first_party_segment.txt.gz"
    assert summary["object_uri"] == f"s3://{bucket}/{key}"
    assert len(read_lines(s3, bucket, key)[0]) == 3
    assert day_objects(s3, bucket, "") == [key]  # staging under the prefix is gone too
    assert_nothing_left_over(s3, bucket)
