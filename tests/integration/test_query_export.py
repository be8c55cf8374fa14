"""`krux-export run --query/--query-file`: a SQL query's result as the source, against moto's S3."""

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "client-treasure-data"
DAY = "2026-11-28"
DAY_PREFIX = f"{CLIENT}/uploads/{DAY}/"

SEED_QUERY = """SELECT user_id, td_segment, email, firstname, lastname
FROM (VALUES
  ('uid1', 'seg1,seg2', '', 'Britty', 'Morris'),
  ('uid2', 'seg1,seg2,seg3,seg4', '', 'David', 'Morris'),
  ('uid3', 'seg1', '', 'Halley', 'Morris')
   ) AS first_data(user_id, td_segment, email, firstname, lastname)"""

CONSOLIDATE = """SELECT KUID AS user_id, segment_name AS td_segment, country
FROM activate_to_krux.segment_high_value
UNION ALL
SELECT KUID, segment_name, country FROM activate_to_krux.segment_churn_risk
"""


@pytest.fixture
def run(s3_endpoint, bucket, capsys):
    """Runs the CLI in this process; returns (exit code, last stdout line as a dict, stderr)."""

    def run_cli(*args, command="run"):
        argv = [command, "--client-name", CLIENT, "--bucket", bucket, "--endpoint-url", s3_endpoint,
                "--date", DAY, "--runner=FnApiRunner", *args]
        code = cli.main(argv)
        out, err = capsys.readouterr()
        return code, json.loads(out.strip().splitlines()[-1]), err

    return run_cli


def object_text(s3, bucket, name="first_party_segment.txt.gz") -> str:
    data = s3.get_object(Bucket=bucket, Key=DAY_PREFIX + name)["Body"].read()
    return (gzip.decompress(data) if name.endswith(".gz") else data).decode()


def activation_tables():
    """Two Audience Studio activation tables: KUID and segment_name, plus an attribute."""
    return {
        "segment_high_value": pa.table({"KUID": ["k1", "k2", " k3 "], "segment_name": ["high_value"] * 3,
                                        "country": ["US", None, "DE"]}),
        "segment_churn_risk": pa.table({"KUID": ["k2", "k3"], "segment_name": ["churn_risk"] * 2,
                                        "country": ["", "DE"]}),
    }


@pytest.fixture
def activate_to_krux(tmp_path):
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    for name, table in activation_tables().items():
        pq.write_table(table, root / f"{name}.parquet")
    return root


def test_the_seeds_example_query_gives_its_exact_lines(run, s3, bucket):
    code, summary, err = run("--query", SEED_QUERY, "--compression", "none")
    assert code == 0, err
    assert object_text(s3, bucket, "first_party_segment.txt") == (
        "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris\n"
        "uid2^segment:seg1,seg2,seg3,seg4;firstname:David;lastname:Morris\n"
        "uid3^segment:seg1;firstname:Halley;lastname:Morris\n"
    )
    assert summary["rows_read"] == {"total": 3, "tables": {"query": 3}}
    assert summary["lines_written"] == 3


@pytest.mark.parametrize("grouped", [[], ["--group-by-user"]], ids=["rows", "grouped"])
def test_a_consolidation_query_writes_what_the_table_based_run_writes(run, s3, bucket, activate_to_krux, grouped):
    code, by_tables, err = run("--database", str(activate_to_krux), "--user-column", "KUID",
                               "--segment-column", "segment_name", "--compression", "none", *grouped)
    assert code == 0, err
    tables_text = object_text(s3, bucket, "first_party_segment.txt")

    code, by_query, err = run("--database", str(activate_to_krux), "--query", CONSOLIDATE,
                              "--compression", "none", *grouped)
    assert code == 0, err
    query_text = object_text(s3, bucket, "first_party_segment.txt")
    assert sorted(query_text.splitlines()) == sorted(tables_text.splitlines())
    assert by_query["lines_written"] == by_tables["lines_written"]
    assert by_query["rows_read"] == {"total": 5, "tables": {"query": 5}}
    if grouped:
        assert sorted(query_text.splitlines()) == [
            "k1^segment:high_value;country:US",
            "k2^segment:churn_risk,high_value",
            "k3^segment:churn_risk,high_value;country:DE",
        ]


def test_tables_are_named_plainly_too_and_a_query_file_may_filter_them(run, s3, bucket, activate_to_krux, tmp_path):
    query_file = tmp_path / "consolidate.sql"
    query_file.write_text("SELECT KUID AS user_id, segment_name AS td_segment\nFROM segment_churn_risk\n"
                          "WHERE country <> ''\n")
    code, summary, err = run("--database", str(activate_to_krux), "--query-file", str(query_file),
                             "--compression", "none")
    assert code == 0, err
    assert object_text(s3, bucket, "first_party_segment.txt") == "k3^segment:churn_risk\n"
    assert summary["rows_read"] == {"total": 1, "tables": {"query": 1}}


def test_a_query_reads_s3_tables_with_the_standard_aws_chain(s3, bucket, s3_endpoint, tmp_path):
    # The customer's warehouse: another bucket, reached through AWS_ENDPOINT_URL_S3 like any AWS setting.
    s3.create_bucket(Bucket=bucket + "-warehouse")
    tables = activation_tables()
    churn_risk = tables.pop("segment_churn_risk")
    parts = {f"{name}.parquet": table for name, table in tables.items()}
    # A table that is a folder of Parquet files.
    parts |= {"segment_churn_risk/part-0.parquet": churn_risk.slice(0, 1),
              "segment_churn_risk/part-1.parquet": churn_risk.slice(1)}
    for key, table in parts.items():
        sink = io.BytesIO()
        pq.write_table(table, sink)
        s3.put_object(Bucket=bucket + "-warehouse", Key=f"activate_to_krux/{key}", Body=sink.getvalue())
    s3.put_object(Bucket=bucket + "-warehouse", Key="activate_to_krux/segment_new.csv",
                  Body=b"KUID,segment_name,country\nk9,new,FR\n")
    query = CONSOLIDATE + "UNION ALL SELECT KUID, segment_name, country FROM segment_new"
    # Its own process, as in use: pyarrow's S3 reads block with the GIL held, which would stall
    # the moto server threads of this test process.
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--client-name", CLIENT, "--bucket", bucket,
         "--endpoint-url", s3_endpoint, "--date", DAY, "--runner=FnApiRunner",
         "--database", f"s3://{bucket}-warehouse/activate_to_krux", "--query", query,
         "--group-by-user", "--compression", "none"],
        env={**os.environ, "AWS_ENDPOINT_URL_S3": s3_endpoint, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(object_text(s3, bucket, "first_party_segment.txt").splitlines()) == [
        "k1^segment:high_value;country:US",
        "k2^segment:churn_risk,high_value",
        "k3^segment:churn_risk,high_value;country:DE",
        "k9^segment:new;country:FR",
    ]
    assert json.loads(done.stdout.splitlines()[-1])["rows_read"] == {"total": 6, "tables": {"query": 6}}


def test_duckdb_types_are_written_by_the_line_rules(run, s3, bucket):
    query = """SELECT 'u1' AS user_id, 's1' AS td_segment, 1.50::DECIMAL(10, 2) AS price,
        DATE '2026-11-28' AS day, TIMESTAMPTZ '2026-11-28 10:30:00+01' AS seen,
        true AS active, [3, NULL, 4] AS scores, ['a', ' b ', ''] AS tags, 2::DOUBLE AS ratio,
        123456789012345678901234567890::HUGEINT AS big"""
    code, _, err = run("--query", query, "--compression", "none")
    assert code == 0, err
    assert object_text(s3, bucket, "first_party_segment.txt") == (
        "u1^segment:s1;price:1.50;day:2026-11-28;seen:2026-11-28T09:30:00Z;active:true;scores:3,4;"
        "tags:a,b;ratio:2.0;big:123456789012345678901234567890\n"
    )


def test_invalid_rows_of_a_query_are_counted_under_the_query(run, s3, bucket):
    query = "SELECT * FROM (VALUES ('u1', 's1'), ('', 's2'), ('u3', 'bad^seg')) AS t(user_id, td_segment)"
    code, summary, err = run("--query", query, "--skip-invalid-records", "--compression", "none")
    assert code == 0, err
    assert summary["invalid"] == {"missing_user_id": 1, "reserved_character": 1}
    assert summary["rows_read"] == {"total": 3, "tables": {"query": 3}}

    code, failed, _ = run("--query", query)
    assert code == 3
    assert failed["error"].startswith("table query row 2: missing_user_id")


@pytest.mark.parametrize("sql, line, message", [
    ("SELECT KUID AS user_id,\n  segment_name AS td_segment\nFORM segment_churn_risk", 3, "Parser Error: syntax error"),
    ("SELECT KUID AS user_id, segment_name AS td_segment\nFROM segment_nope", 2,
     "Catalog Error: Table with name segment_nope does not exist!"),
    ("SELECT KUID AS user_id,\n  nope AS td_segment\nFROM segment_churn_risk", 2,
     'Binder Error: Referenced column "nope" not found'),
], ids=["syntax", "missing_table", "missing_column"])
def test_a_sql_error_exits_2_naming_the_file_and_line(run, s3, bucket, activate_to_krux, tmp_path, sql, line, message):
    query_file = tmp_path / "consolidate.sql"
    query_file.write_text(sql)
    code, failed, err = run("--database", str(activate_to_krux), "--query-file", str(query_file))
    assert code == 2
    assert failed["error"].startswith(f"{query_file} line {line}: {message}")
    assert "\n" not in failed["error"]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize("sql, message", [
    ("SELECT 'u' AS td_segment, 's' AS user_id",
     "--query: the result's first two columns must be user_id and td_segment (in that order), got td_segment, user_id"),
    ("SELECT 1 AS user_id, 's' AS td_segment",
     "table query (--query): column user_id is int32, expected a string column"),
    ("SELECT 'u' AS user_id, 's' AS td_segment, TIME '10:00' AS at",
     "table query (--query): column at is time64[us], which cannot be written as text"),
    ("SELECT 'u' AS user_id, 's' AS td_segment, 1 AS \"a:b\"",
     "table query (--query): column 'a:b' cannot be an attribute name"),
    ("SELECT 1; SELECT 2", "--query: expected one SELECT statement, found 2 statements"),
    ("COPY (SELECT 1) TO 'x.csv'", "--query: expected a SELECT statement, found COPY"),
], ids=["order", "type", "unwritable", "name", "two_statements", "not_a_select"])
def test_a_result_that_breaks_the_requirements_exits_2_before_any_line(run, s3, bucket, sql, message):
    code, failed, _ = run("--query", sql)
    assert code == 2
    assert failed["error"].startswith(message)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_query_failing_while_it_runs_exits_2_with_duckdbs_line(run, s3, bucket):
    query = "SELECT 'u' || i AS user_id,\n  CAST('x' || i AS INTEGER)::VARCHAR AS td_segment\nFROM range(3) t(i)"
    code, failed, _ = run("--query", query)
    assert code == 2
    assert failed["error"] == "--query line 2: Conversion Error: Could not convert string 'x0' to INT32"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_user_and_segment_columns_do_not_apply_to_a_query(run):
    code, failed, _ = run("--query", SEED_QUERY, "--user-column", "KUID")
    assert code == 2
    assert failed["error"].startswith("--user-column: does not apply to a query")


def test_preview_prints_a_querys_first_lines_and_touches_no_storage(capsys, s3, bucket):
    code = cli.main(["preview", "--query", SEED_QUERY, "--limit", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines() == [
        "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris",
        "uid2^segment:seg1,seg2,seg3,seg4;firstname:David;lastname:Morris",
    ]


def test_a_query_needing_more_than_its_memory_limit_spills_and_succeeds(run, tmp_path):
    # One million groups need several times 30 MB: DuckDB spills them to its temporary directory.
    query = ("SELECT 'user-' || (i % 1000000) AS user_id, max('s' || (i % 7)) AS td_segment "
             "FROM range(3000000) t(i) GROUP BY 1")
    code, summary, err = run("--query", query, "--query-memory-limit", "30MB", "--output-root", str(tmp_path))
    assert code == 0, err
    assert summary["lines_written"] == 1_000_000


def test_a_memory_limit_that_is_not_a_size_exits_2(run):
    code, failed, _ = run("--query", SEED_QUERY, "--query-memory-limit", "lots")
    assert code == 2
    assert failed["error"] == "--query-memory-limit: must be a size such as 512MB or 4GB, got 'lots'"
