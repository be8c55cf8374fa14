"""`WriteToKrux` in a pipeline of one's own: lines, publishing and its one summary element (SPEC §10)."""

import gzip
import pickle

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that

from pipeline.config.connections import Connection, save_connection
from pipeline.errors import ConfigError, UsageError
from transforms import WriteToKrux

DAY = "2026-11-28"
CLIENT = "client-treasure-data"
SECRET_VARIABLE = "KRUX_WRITE_TEST_SECRET"
SECRET = "Wr1te/To+Krux-secret-that-must-not-travel"

# SPEC §3's example row, a second row of the same user, and another user.
ROWS = [
    {"user_id": "uid1", "td_segment": "seg1,seg2", "email": "", "firstname": "Britty", "lastname": "Morris"},
    {"user_id": " uid1 ", "td_segment": "seg2, seg4"},
    {"user_id": "uid2", "td_segment": "seg3", "visits": 3},
]


def make_pipeline():
    return BeamTestPipeline(runner="FnApiRunner")


def the_summary(check):
    """A matcher: exactly one element, the summary dict, for which `check` holds."""

    def match(elements):
        if len(elements) != 1 or not check(elements[0]):
            raise BeamAssertException(f"unexpected summary: {elements}")

    return match


def day_lines(path):
    data = path.read_bytes()
    return sorted((gzip.decompress(data) if path.suffix == ".gz" else data).decode().splitlines())


def test_dicts_become_the_days_file_and_one_summary_element(tmp_path):
    out = tmp_path / "uploads"
    with make_pipeline() as p:
        summary = p | beam.Create(ROWS) | WriteToKrux(connection=None, date=DAY, output_root=str(out))
        assert_that(summary, the_summary(lambda s: (
            s["status"] == "succeeded"
            and s["date"] == DAY
            and s["object_uri"] == str(out / DAY / "first_party_segment.txt.gz")
            and s["rows_read"] == {"total": 3, "tables": {"input": 3}}
            and s["lines_written"] == 3
            and s["invalid"] == {}
            and s["replaced"] == []
            and s["bytes"] == (out / DAY / "first_party_segment.txt.gz").stat().st_size
        )))
    assert day_lines(out / DAY / "first_party_segment.txt.gz") == [
        "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris",
        "uid1^segment:seg2,seg4",
        "uid2^segment:seg3;visits:3",
    ]
    assert files_in(out) == ["first_party_segment.txt.gz"]  # no staging left


def test_record_batches_grouped_by_user_replace_the_days_objects(tmp_path):
    out = tmp_path / "uploads"
    (out / DAY).mkdir(parents=True)
    (out / DAY / "first_party_segment.txt.gz").write_bytes(b"yesterday's run")
    (out / DAY / "first_party_segment-20261128T010000Z-aaaa.txt.gz").write_bytes(b"an append run's")
    (out / DAY / "other_export.txt").write_bytes(b"another export's")
    batches = [
        pa.RecordBatch.from_pylist(ROWS[:2]),
        pa.RecordBatch.from_pydict({"user_id": ["uid2", "uid1"], "td_segment": ["seg3", "seg0"]}),
    ]
    with make_pipeline() as p:
        summary = p | beam.Create(batches) | WriteToKrux(
            connection=None, date=DAY, output_root=str(out), group_by_user=True, compression="none"
        )
        assert_that(summary, the_summary(lambda s: s["lines_written"] == 2 and sorted(s["replaced"]) == [
            str(out / DAY / "first_party_segment-20261128T010000Z-aaaa.txt.gz"),
            str(out / DAY / "first_party_segment.txt.gz"),
        ]))
    assert day_lines(out / DAY / "first_party_segment.txt") == [
        "uid1^segment:seg0,seg1,seg2,seg4;firstname:Britty;lastname:Morris",
        "uid2^segment:seg3",
    ]
    assert files_in(out / DAY) == ["first_party_segment.txt", "other_export.txt"]


def test_invalid_rows_are_dropped_and_counted_with_skip_invalid_records(tmp_path):
    rows = [*ROWS, {"user_id": "", "td_segment": "s"}, {"user_id": "u^3", "td_segment": "s"}]
    with make_pipeline() as p:
        summary = p | beam.Create(rows) | WriteToKrux(
            connection=None, date=DAY, output_root=str(tmp_path), skip_invalid_records=True
        )
        assert_that(summary, the_summary(lambda s: s["lines_written"] == 3 and s["invalid"] == {
            "missing_user_id": 1, "reserved_character": 1} and s["rows_read"]["total"] == 5))


def test_an_invalid_row_fails_the_pipeline_with_its_reason_and_publishes_nothing(tmp_path):
    (tmp_path / DAY).mkdir()
    (tmp_path / DAY / "first_party_segment.txt.gz").write_bytes(b"the day's earlier object")
    rows = [*ROWS, {"user_id": "uid3", "td_segment": "a^b"}]
    with pytest.raises(Exception, match=r"table input: reserved_character in column td_segment .*"
                                        r"--skip-invalid-records drops and counts invalid rows"):
        with make_pipeline() as p:
            _ = p | beam.Create(rows) | WriteToKrux(connection=None, date=DAY, output_root=str(tmp_path))
    assert (tmp_path / DAY / "first_party_segment.txt.gz").read_bytes() == b"the day's earlier object"


def test_no_valid_line_fails_unless_allow_empty(tmp_path):
    with pytest.raises(Exception, match="no valid lines to export"):
        with make_pipeline() as p:
            _ = p | beam.Create([]) | WriteToKrux(connection=None, date=DAY, output_root=str(tmp_path))
    assert not (tmp_path / DAY).exists()
    with make_pipeline() as p:
        summary = p | beam.Create([]) | WriteToKrux(
            connection=None, date=DAY, output_root=str(tmp_path), allow_empty=True, compression="none"
        )
        assert_that(summary, the_summary(lambda s: s["lines_written"] == 0 and s["bytes"] == 0))
    assert (tmp_path / DAY / "first_party_segment.txt").read_bytes() == b""


def test_append_adds_an_object_beside_the_days_others(tmp_path):
    (tmp_path / DAY).mkdir()
    (tmp_path / DAY / "first_party_segment.txt.gz").write_bytes(b"kept")
    with make_pipeline() as p:
        summary = p | beam.Create(ROWS[2:]) | WriteToKrux(
            connection=None, date=DAY, output_root=str(tmp_path), append=True
        )
        assert_that(summary, the_summary(lambda s: s["replaced"] == [] and s["object_uri"].endswith(".txt.gz")
                                         and "/first_party_segment-" in s["object_uri"]))
    names = files_in(tmp_path / DAY)
    assert len(names) == 2 and names[1] == "first_party_segment.txt.gz" and names[0].startswith("first_party_segment-")


def files_in(folder) -> list[str]:
    """The files under `folder`, without the local store's line-count sidecars (docs/destination.md)."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".metadata.json"))


@pytest.fixture
def named_connection(s3_endpoint, bucket, monkeypatch):
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    save_connection(Connection(name="my_dmp", client_name=CLIENT, access_key_id="AKIAWRITETEST000",
                               secret_access_key=f"env:{SECRET_VARIABLE}", bucket=bucket, endpoint_url=s3_endpoint))
    return "my_dmp"


def test_a_named_connection_publishes_to_the_partners_bucket_and_its_secret_never_travels(
    named_connection, s3, bucket
):
    write = WriteToKrux(connection=named_connection, date=DAY)
    with make_pipeline() as p:
        summary = p | beam.Create(ROWS) | write
        key = f"{CLIENT}/uploads/{DAY}/first_party_segment.txt.gz"
        assert_that(summary, the_summary(lambda s: s["object_uri"] == f"s3://{bucket}/{key}"))
        graph = p.to_runner_api(use_fake_coders=True).SerializeToString()
    assert SECRET.encode() not in pickle.dumps(write) + graph
    assert named_connection.encode() in pickle.dumps(write)  # workers resolve it by name
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(gzip.decompress(data).decode().splitlines()) == 3
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"{CLIENT}/_staging/").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_connection_mapping_reads_its_keys_from_the_workers_environment(s3_endpoint, s3, bucket, monkeypatch):
    monkeypatch.setenv("WRITE_TEST_KEY_ID", "AKIAWRITETEST001")
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    connection = {"client_name": CLIENT, "bucket": bucket, "endpoint_url": s3_endpoint,
                  "access_key_id": "env:WRITE_TEST_KEY_ID", "secret_access_key": f"env:{SECRET_VARIABLE}"}
    write = WriteToKrux(connection=connection, date=DAY, export_name="audience_b", compression="none")
    with make_pipeline() as p:
        _ = p | beam.Create(ROWS) | write
    assert SECRET.encode() not in pickle.dumps(write)
    body = s3.get_object(Bucket=bucket, Key=f"{CLIENT}/uploads/{DAY}/audience_b.txt")["Body"].read()
    assert len(body.decode().splitlines()) == 3


@pytest.mark.parametrize(
    "connection, message",
    [
        ({"client_name": CLIENT, "access_key_id": "env:K", "secret_access_key": SECRET},
         "connection: write secret_access_key as env:VARNAME"),
        ({"client_name": CLIENT, "password": "x"}, "connection: unknown field 'password'"),
        ({"bucket": "b"}, "connection: no client_name"),
    ],
)
def test_a_connection_mapping_that_would_carry_a_secret_or_lacks_a_field_is_refused(connection, message):
    with pytest.raises(ConfigError, match=message) as raised:
        WriteToKrux(connection=connection, date=DAY)
    assert SECRET not in str(raised.value)


def test_settings_are_checked_as_the_cli_checks_them():
    with pytest.raises(ConfigError, match="export_name: export name 'first-party' must match"):
        WriteToKrux(connection=None, date=DAY, output_root="/tmp/x", export_name="first-party")
    with pytest.raises(UsageError, match="date '28/11/2026' is not of the form YYYY-MM-DD"):
        WriteToKrux(connection=None, date="28/11/2026", output_root="/tmp/x")
