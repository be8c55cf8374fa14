"""Delta Lake and Iceberg tables (SPEC §9), written by `deltalake` and `pyiceberg` themselves.

An overwrite and a delete leave the old Parquet files on disk: the export must read the
table's current version only, so removed rows are never exported.
"""

import datetime
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline.commands import cli

DAY = "2026-11-28"


@pytest.fixture
def run(tmp_path, capsys):
    """Runs the CLI into a local output root; returns (exit code, summary, stderr, sorted lines)."""

    def run_cli(*args):
        out = tmp_path / "out"
        argv = ["run", "--output-root", str(out), "--date", DAY, "--compression", "none", "--quiet",
                "--runner=FnApiRunner", *args]
        code = cli.main(argv)
        stdout, err = capsys.readouterr()
        summary = json.loads(stdout.strip().splitlines()[-1])
        path = out / DAY / "first_party_segment.txt"
        lines = sorted(path.read_text().splitlines()) if code == 0 else []
        return code, summary, err, lines

    return run_cli


def segments(users, segment, **attributes):
    return pa.table({"user_id": users, "td_segment": [segment] * len(users), **attributes})


def overwritten_then_deleted(path: Path):
    """A Delta table: version 0 written, version 1 overwrites it, version 2 deletes u3."""
    write_deltalake(path, segments(["old1", "old2"], "stale"))
    write_deltalake(path, segments(["u1", "u2", "u3"], "fresh", country=["US", "FR", "US"]), mode="overwrite",
                    schema_mode="overwrite")
    DeltaTable(path).delete("user_id = 'u3'")


def test_a_delta_table_is_read_at_its_latest_version_only(run, tmp_path):
    overwritten_then_deleted(tmp_path / "segment_delta")
    assert len(list((tmp_path / "segment_delta").glob("*.parquet"))) > 1  # old files still on disk
    code, summary, err, lines = run("--source", str(tmp_path / "segment_delta"))
    assert code == 0, err
    assert lines == ["u1^segment:fresh;country:US", "u2^segment:fresh;country:FR"]
    assert summary["rows_read"]["tables"] == {"segment_delta": 2}
    assert summary["snapshots"] == {"segment_delta": "2"}


def test_delta_partition_columns_and_typed_attributes_come_back(run, tmp_path):
    table = segments(
        ["u1", "u2", "u3"], "s",
        day=pa.array([datetime.date(2026, 11, 1), datetime.date(2026, 11, 2), datetime.date(2026, 11, 2)]),
        score=pa.array([1.5, None, 3.0]),
        visits=pa.array([7, 8, 9], pa.int32()),
    )
    write_deltalake(tmp_path / "db" / "segment_p", table, partition_by=["day", "visits"])
    code, summary, err, lines = run("--database", str(tmp_path / "db"))
    assert code == 0, err
    assert [line.split("^")[0] for line in lines] == ["u1", "u2", "u3"]
    # Attributes in the table's column order: partition columns (not in the files) in their place.
    assert lines == ["u1^segment:s;day:2026-11-01;score:1.5;visits:7", "u2^segment:s;day:2026-11-02;visits:8",
                     "u3^segment:s;day:2026-11-02;score:3.0;visits:9"]
    assert summary["snapshots"] == {"segment_p": "0"}


def test_grouping_across_a_delta_table_and_a_parquet_file(run, tmp_path):
    overwritten_then_deleted(tmp_path / "segment_delta")
    pq.write_table(segments(["u1", "u9"], "plain"), tmp_path / "segment_plain.parquet")
    code, summary, err, lines = run("--source", str(tmp_path / "segment_delta"),
                                    "--source", str(tmp_path / "segment_plain.parquet"), "--group-by-user")
    assert code == 0, err
    users = {line.split("^")[0]: line for line in lines}
    assert sorted(users) == ["u1", "u2", "u9"]
    assert "fresh" in users["u1"] and "plain" in users["u1"] and "stale" not in "".join(lines)
    assert summary["rows_read"]["tables"] == {"segment_delta": 2, "segment_plain": 2}
    assert summary["snapshots"] == {"segment_delta": "2"}


def test_a_query_reads_a_delta_tables_current_version(run, tmp_path):
    overwritten_then_deleted(tmp_path / "db" / "segment_delta")
    write_deltalake(tmp_path / "db" / "segment_parted", segments(["p1", "p2"], "parted", region=["eu", "us"]),
                    partition_by=["region"])
    sql = ("SELECT user_id, td_segment || '_' || country AS td_segment FROM db.segment_delta "
           "UNION ALL SELECT user_id, region AS td_segment FROM segment_parted")
    code, summary, err, lines = run("--database", str(tmp_path / "db"), "--query", sql)
    assert code == 0, err
    assert lines == ["p1^segment:eu", "p2^segment:us", "u1^segment:fresh_US", "u2^segment:fresh_FR"]
    assert summary["snapshots"] == {"segment_delta": "2", "segment_parted": "0"}


def test_a_delta_table_on_s3(run, s3, bucket, s3_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    uri = f"s3://{bucket}/lake/segment_delta"
    options = {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_FORCE_PATH_STYLE": "true"}
    write_deltalake(uri, segments(["old"], "stale"), storage_options=options)
    write_deltalake(uri, segments(["u1", "u2"], "fresh"), mode="overwrite", storage_options=options)
    code, summary, err, lines = run("--database", f"s3://{bucket}/lake")
    assert code == 0, err
    assert lines == ["u1^segment:fresh", "u2^segment:fresh"]
    assert summary["snapshots"] == {"segment_delta": "1"}


def test_a_delta_table_with_reader_features_beyond_plain_files_is_read_through_its_scan(run, tmp_path):
    # Deletion vectors enabled: its protocol names reader features (deletionVectors, and with
    # delta-rs 1.x variantType) that plain Parquet reads may not honour; the scan applies them.
    write_deltalake(tmp_path / "segment_dv", segments(["u1", "u2", "u3"], "s"),
                    configuration={"delta.enableDeletionVectors": "true"})
    DeltaTable(tmp_path / "segment_dv").delete("user_id = 'u2'")
    assert "deletionVectors" in DeltaTable(tmp_path / "segment_dv").protocol().reader_features
    code, summary, err, lines = run("--source", str(tmp_path / "segment_dv"), "--group-by-user")
    assert code == 0, err
    assert lines == ["u1^segment:s", "u3^segment:s"]
    assert summary["rows_read"]["tables"] == {"segment_dv": 2}
    assert summary["snapshots"] == {"segment_dv": "1"}


def test_a_delta_table_without_the_user_column_is_refused_naming_it(run, tmp_path):
    write_deltalake(tmp_path / "segment_bad", pa.table({"uid": ["u1"], "td_segment": ["s"]}))
    code, summary, err, _ = run("--source", str(tmp_path / "segment_bad"))
    assert code == 2
    assert summary["error"].startswith("table segment_bad: no column user_id")


# --- Iceberg ------------------------------------------------------------------------------------


@pytest.fixture
def iceberg_catalog(tmp_path, monkeypatch):
    """A SQL catalog on SQLite, which the export finds as pyiceberg users configure it: by
    PYICEBERG_CATALOG__ variables."""
    return sql_catalog(monkeypatch, "lake", {"uri": f"sqlite:///{tmp_path}/catalog.db",
                                             "warehouse": f"file://{tmp_path}/warehouse"})


def sql_catalog(monkeypatch, name: str, properties: dict):
    from pyiceberg.catalog.sql import SqlCatalog

    for key, value in {"type": "sql", **properties}.items():
        monkeypatch.setenv(f"PYICEBERG_CATALOG__{name.upper()}__{key.replace('.', '__').replace('-', '_').upper()}", value)
    catalog = SqlCatalog(name, **properties)
    catalog.create_namespace("activate")
    return catalog


def iceberg_table(catalog, identifier, table):
    created = catalog.create_table(identifier, schema=table.schema)
    created.append(table)
    return created


def test_an_iceberg_table_is_read_at_its_current_snapshot(run, iceberg_catalog):
    table = iceberg_table(iceberg_catalog, "activate.segment_ice", segments(["old1", "old2"], "stale"))
    table.overwrite(segments(["u1", "u2", "u3"], "fresh"))
    table.delete("user_id == 'u3'")
    snapshot = str(iceberg_catalog.load_table("activate.segment_ice").current_snapshot().snapshot_id)
    code, summary, err, lines = run("--source", "iceberg://lake/activate.segment_ice")
    assert code == 0, err
    assert lines == ["u1^segment:fresh", "u2^segment:fresh"]
    assert summary["rows_read"]["tables"] == {"segment_ice": 2}
    assert summary["snapshots"] == {"segment_ice": snapshot}


def test_an_iceberg_namespace_is_a_database_with_its_prefix(run, iceberg_catalog):
    iceberg_table(iceberg_catalog, "activate.segment_a", segments(["u1"], "a", visits=pa.array([3], pa.int32())))
    iceberg_table(iceberg_catalog, "activate.other_b", segments(["u2"], "b"))
    code, summary, err, lines = run("--database", "iceberg://lake/activate")
    assert code == 0, err
    assert lines == ["u1^segment:a;visits:3"]
    assert list(summary["snapshots"]) == ["segment_a"]

    query = "SELECT user_id, td_segment FROM activate.segment_a UNION ALL SELECT user_id, td_segment FROM other_b"
    code, summary, err, lines = run("--database", "iceberg://lake/activate", "--query", query)
    assert code == 0, err
    assert lines == ["u1^segment:a", "u2^segment:b"]
    assert sorted(summary["snapshots"]) == ["other_b", "segment_a"]


def test_a_renamed_iceberg_column_is_read_under_its_new_name(run, iceberg_catalog):
    # The data file still holds "uid": read as Parquet, the column would be missing; pyiceberg's
    # scan maps it by field id.
    table = iceberg_table(iceberg_catalog, "activate.segment_renamed", pa.table({"uid": ["u1"], "td_segment": ["s"]}))
    with table.update_schema() as update:
        update.rename_column("uid", "user_id")
    code, summary, err, lines = run("--source", "iceberg://lake/activate.segment_renamed")
    assert code == 0, err
    assert lines == ["u1^segment:s"]


def test_an_unknown_iceberg_table_or_catalog_is_refused_naming_it(run, iceberg_catalog):
    code, summary, _, _ = run("--source", "iceberg://lake/activate.nothing")
    assert (code, summary["error"]) == (2, "source iceberg://lake/activate.nothing: no such Iceberg table")
    code, summary, _, _ = run("--source", "iceberg://nowhere/activate.segment_a")
    assert code == 2
    assert summary["error"] == ("iceberg catalog nowhere: not configured (configure it in .pyiceberg.yaml, "
                                "or by variables such as PYICEBERG_CATALOG__NOWHERE__URI)")


def test_an_iceberg_table_on_s3(run, s3, bucket, s3_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    catalog = sql_catalog(monkeypatch, "ons3", {
        "uri": f"sqlite:///{tmp_path}/s3catalog.db", "warehouse": f"s3://{bucket}/wh", "s3.endpoint": s3_endpoint,
        "s3.access-key-id": "testing", "s3.secret-access-key": "testing", "s3.region": "us-east-1"})
    table = iceberg_table(catalog, "activate.segment_s3", segments(["old"], "stale"))
    table.overwrite(segments(["u1", "u2"], "fresh"))
    code, summary, err, lines = run("--database", "iceberg://ons3/activate")
    assert code == 0, err
    assert lines == ["u1^segment:fresh", "u2^segment:fresh"]
