"""`--max-drop PCT` through the CLI against moto: a shrunken audience is not published (SPEC §4)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli

CLIENT = "client-treasure-data"
UPLOADS = f"{CLIENT}/uploads/"


def write_database(root, users: int):
    root.mkdir(exist_ok=True)
    ids = [f"uid{number}" for number in range(users)]
    pq.write_table(pa.table({"user_id": ids, "td_segment": ["seg1"] * users}), root / "segment_a.parquet")
    return root


@pytest.fixture
def run(s3_endpoint, bucket, tmp_path, capsys):
    """Runs the CLI on a database of `users` one-line users; returns (exit code, summary, stderr)."""

    def run_cli(users, date, *args):
        database = write_database(tmp_path / f"db{users}", users)
        argv = ["run", "--client-name", CLIENT, "--bucket", bucket, "--endpoint-url", s3_endpoint,
                "--database", str(database), "--date", date, "--runner=FnApiRunner", *args]
        code = cli.main(argv)
        out, err = capsys.readouterr()
        return code, json.loads(out.strip().splitlines()[-1]), err

    return run_cli


def objects(s3, bucket, prefix=UPLOADS):
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"][len(prefix):]: o["ETag"] for o in listing.get("Contents", [])}


def assert_nothing_left_over(s3, bucket):
    assert objects(s3, bucket, f"{CLIENT}/_staging/") == {}
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_run_far_below_the_last_days_lines_is_refused_and_the_day_left_as_it_was(run, s3, bucket):
    code, first, err = run(20, "2026-11-27")
    assert code == 0, err
    head = s3.head_object(Bucket=bucket, Key=f"{UPLOADS}2026-11-27/first_party_segment.txt.gz")
    assert head["Metadata"] == {"line-count": "20"}  # every published object records its lines

    code, summary, err = run(3, "2026-11-28", "--max-drop", "50")

    previous = f"s3://{bucket}/{UPLOADS}2026-11-27/first_party_segment.txt.gz"
    message = f"3 lines is 85% fewer than the 20 of {previous} (--max-drop 50)"
    assert code == 3
    assert err.strip().splitlines()[-1] == f"krux-export: error: {message}"
    assert summary["status"] == "failed" and summary["error"] == message
    assert list(objects(s3, bucket)) == ["2026-11-27/first_party_segment.txt.gz"]
    assert_nothing_left_over(s3, bucket)


def test_the_days_own_object_is_compared_and_kept_when_a_rerun_is_refused(run, s3, bucket):
    assert run(20, "2026-11-28")[0] == 0
    before = objects(s3, bucket)
    code, summary, _ = run(9, "2026-11-28", "--max-drop", "50")
    assert code == 3
    assert summary["error"].startswith("9 lines is 55% fewer than the 20 of s3://")
    assert objects(s3, bucket) == before
    assert_nothing_left_over(s3, bucket)


def test_a_drop_within_max_drop_is_published_with_its_line_count(run, s3, bucket):
    assert run(20, "2026-11-27")[0] == 0
    code, summary, err = run(10, "2026-11-28", "--max-drop", "50")  # exactly 50% fewer
    assert code == 0, err
    assert summary["lines_written"] == 10
    head = s3.head_object(Bucket=bucket, Key=f"{UPLOADS}2026-11-28/first_party_segment.txt.gz")
    assert head["Metadata"] == {"line-count": "10"}
    assert "--max-drop 50: 10 lines, 50% fewer than the 20 of s3://" in err


def test_an_object_without_a_line_count_is_not_compared_and_the_run_says_so(run, s3, bucket):
    key = f"{UPLOADS}2026-11-27/first_party_segment.txt.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=b"")  # published before line counts were recorded
    code, summary, err = run(1, "2026-11-28", "--max-drop", "10")
    assert code == 0, err
    assert (f"--max-drop not applied: s3://{bucket}/{key} has no line count (published before line counts "
            "were recorded); the next run compares with this run's object") in err


def test_an_empty_file_allowed_by_allow_empty_is_still_a_drop(run, s3, bucket):
    assert run(4, "2026-11-27")[0] == 0
    code, summary, _ = run(0, "2026-11-28", "--allow-empty", "--max-drop", "90")
    assert code == 3
    assert summary["error"] == (f"0 lines is 100% fewer than the 4 of s3://{bucket}/{UPLOADS}2026-11-27/"
                                "first_party_segment.txt.gz (--max-drop 90)")
    assert list(objects(s3, bucket)) == ["2026-11-27/first_party_segment.txt.gz"]
