"""Broken, odd and huge input files (issue #5): a clear exit 2 or 3 naming the path, never exit 1.

Every run here goes through `krux-export run` in this process, except the unreadable-file
case when the tests run as root (see `test_unreadable_file_is_exit_2_naming_it`).
"""

import contextlib
import csv
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.commands import cli
from pipeline.sources.files import ReadTask, read_task

DAY = "2026-11-28"
TEN_MB = 10 * 1024 * 1024


def run_cli(*args, output: str) -> tuple[int, dict, str]:
    """`krux-export run` in this process: (exit code, last stdout line as JSON, stderr)."""
    argv = ["run", *args, "--output-root", output, "--date", DAY, "--compression", "none", "--runner=FnApiRunner"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, json.loads(out.getvalue().strip().splitlines()[-1]), err.getvalue()


def assert_fails(result, exit_code: int, *named: str) -> str:
    """The run failed with `exit_code` and one line naming each of `named`; returns that line."""
    code, summary, stderr = result
    assert "Traceback" not in stderr, stderr
    assert (code, summary.get("exit_code")) == (exit_code, exit_code), summary
    error = summary["error"]
    assert "\n" not in error and stderr.strip().splitlines()[-1] == f"krux-export: error: {error}"
    for text in named:
        assert text in error, (text, error)
    return error


def published_lines(output: str) -> list[str]:
    with open(os.path.join(output, DAY, "first_party_segment.txt"), "rb") as handle:
        return handle.read().decode("utf-8").split("\n")[:-1]


def write_csv(path, rows, *, encoding="utf-8") -> str:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding=encoding, newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return str(path)


def write_parquet(path, columns: dict) -> str:
    pq.write_table(pa.table(columns), path)
    return str(path)


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "out")


SMALL_TABLE = {"user_id": ["u1", "u2", " u3 "], "td_segment": ["s1,s2", "s3", "s4"], "n": [1, None, 3]}
# tmp_path is shared by a test's examples: each example overwrites the one file it writes.
TOLERATED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
BAD_FILE_SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=TOLERATED)


# --- Files that are not what their name says ---------------------------------------------------


@BAD_FILE_SETTINGS
@given(data=st.one_of(
    st.binary(max_size=600),
    # Magic bytes at both ends and a plausible footer length: the reader gets as far as thrift.
    st.builds(lambda body, size: b"PAR1" + body + struct.pack("<i", size) + b"PAR1",
              st.binary(max_size=600), st.integers(-10, 700)),
))
def test_random_bytes_named_parquet_are_exit_2_naming_the_file(tmp_path, data):
    path = tmp_path / "segment_junk.parquet"
    path.write_bytes(data)
    with tempfile.TemporaryDirectory() as output:
        error = assert_fails(run_cli("--source", str(path), output=output), 2, "segment_junk")
    assert str(path) in error or "table segment_junk:" in error


@pytest.fixture(scope="module")
def real_parquet(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("real") / "t.parquet"
    pq.write_table(pa.table(SMALL_TABLE), path, row_group_size=2)
    return path.read_bytes()


@BAD_FILE_SETTINGS
@given(fraction=st.floats(0, 1, exclude_max=True))
def test_truncated_parquet_is_exit_2_naming_the_file(tmp_path, real_parquet, fraction):
    path = tmp_path / "segment_cut.parquet"
    path.write_bytes(real_parquet[: int(len(real_parquet) * fraction)])
    with tempfile.TemporaryDirectory() as output:
        assert_fails(run_cli("--source", str(path), output=output), 2, str(path))


@settings(max_examples=10, deadline=None, suppress_health_check=TOLERATED)
@given(data=st.data())
def test_parquet_with_corrupt_data_pages_never_exits_1(tmp_path, real_parquet, data):
    """Bytes overwritten before the footer: the schema reads, the data may not.

    Parquet pages carry no checksum by default, so a corruption can also decode as other
    values; the run must then still end as a run does (0 or 3), or exit 2 naming the file.
    """
    footer = 8 + struct.unpack("<i", real_parquet[-8:-4])[0]
    start = data.draw(st.integers(4, len(real_parquet) - footer - 1))
    junk = data.draw(st.binary(min_size=1, max_size=len(real_parquet) - footer - start))
    path = tmp_path / "segment_rot.parquet"
    path.write_bytes(real_parquet[:start] + junk + real_parquet[start + len(junk) :])
    with tempfile.TemporaryDirectory() as output:
        code, summary, stderr = result = run_cli("--source", str(path), "--skip-invalid-records", output=output)
        assert code in (0, 2, 3) and "Traceback" not in stderr, (code, summary)
        if code == 2:
            assert_fails(result, 2, str(path))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_gzip_csv_is_exit_2_naming_the_file(tmp_path, out, keep):
    rows = [["user_id", "td_segment"]] + [[f"user-{i}", f"seg-{i % 7}"] for i in range(20_000)]
    path = write_csv(tmp_path / "segment_gz.csv.gz", rows)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])
    assert_fails(run_cli("--source", path, output=out), 2, path)


def test_csv_with_invalid_utf8_is_exit_2_naming_the_file(tmp_path, out):
    path = tmp_path / "segment_latin1.csv"
    path.write_bytes("user_id,td_segment\nu1,s1\nu2,caf\xe9\n".encode("latin-1"))
    assert_fails(run_cli("--source", str(path), output=out), 2, str(path))


@pytest.mark.parametrize("column", ["user_id", "td_segment", "note"])
def test_parquet_text_that_is_not_utf8_is_exit_2_naming_file_and_column(tmp_path, out, column):
    """Parquet readers trust the writer: a file from another writer may hold Latin-1 as text."""
    columns = {name: pa.array(["a", "b"]) for name in ("user_id", "td_segment", "note")}
    columns[column] = pa.array([b"ok", b"caf\xe9"], pa.binary()).view(pa.string())  # unchecked
    path = write_parquet(tmp_path / "segment_latin1.parquet", columns)
    assert_fails(run_cli("--source", path, output=out), 2, path, f"column {column}")


def test_csv_row_with_too_many_fields_is_exit_2_naming_the_file(tmp_path, out):
    rows = [["user_id", "td_segment"], ["u1", "s1"], ["u2", "s2", "extra"]]
    path = write_csv(tmp_path / "segment_ragged.csv", rows)
    assert_fails(run_cli("--source", path, output=out), 2, path)


@pytest.mark.parametrize("name", ["segment_empty.csv", "segment_empty.csv.gz", "segment_empty.parquet"])
def test_empty_file_is_exit_2_naming_it(tmp_path, out, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    assert_fails(run_cli("--source", str(path), output=out), 2, str(path))


# --- Files that are missing or cannot be read --------------------------------------------------


def test_missing_source_is_exit_2_naming_it(tmp_path, out):
    missing = str(tmp_path / "segment_gone.parquet")
    assert_fails(run_cli("--source", missing, output=out), 2, missing)
    dangling = tmp_path / "segment_link.csv"
    dangling.symlink_to(tmp_path / "nowhere.csv")
    assert_fails(run_cli("--source", str(dangling), output=out), 2, str(dangling))


def test_directory_named_like_a_csv_file_is_exit_2_naming_it(tmp_path, out):
    (tmp_path / "segment_dir.csv").mkdir()
    assert_fails(run_cli("--source", str(tmp_path / "segment_dir.csv"), output=out), 2, "segment_dir")


@pytest.mark.parametrize("name", ["segment_locked.parquet", "segment_locked.csv"])
def test_unreadable_file_is_exit_2_naming_it(tmp_path, out, name):
    """A file the run may not read (mode 000).

    Root reads any file whatever its mode (CAP_DAC_OVERRIDE), and these tests often run as
    root, where the interpreter itself lives under /root and cannot be run as another user.
    So as root, the run is a subprocess whose capability bounding set lacks the two
    permission overrides (util-linux `setpriv`): a root without them is refused like anyone.
    """
    path = tmp_path / name
    if name.endswith(".csv"):
        write_csv(path, [["user_id", "td_segment"], ["u1", "s1"]])
    else:
        write_parquet(path, SMALL_TABLE)
    path.chmod(0)
    try:
        if os.geteuid() != 0:
            result = run_cli("--source", str(path), output=out)
        else:
            result = _run_without_permission_override("--source", str(path), output=out)
    finally:
        path.chmod(0o644)
    assert_fails(result, 2, str(path), "Permission denied")


def _run_without_permission_override(*args, output: str):
    drop = "-dac_override,-dac_read_search"
    command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable, "-m", "pipeline", "run",
               *args, "--output-root", output, "--date", DAY, "--runner=FnApiRunner"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_database_without_tables_is_exit_2_naming_it(tmp_path, out):
    database = tmp_path / "activate_to_krux"
    database.mkdir()
    assert_fails(run_cli("--database", str(database), output=out), 2, str(database))
    write_parquet(database / "other_a.parquet", SMALL_TABLE)  # no name with the prefix
    (database / "segment_notes.txt").write_text("not a table")  # the prefix, but not a table
    assert_fails(run_cli("--database", str(database), output=out), 2, str(database), "segment_")
    assert_fails(run_cli("--database", str(tmp_path / "nowhere"), output=out), 2, str(tmp_path / "nowhere"))


def test_table_directory_without_parquet_files_is_exit_2_naming_it(tmp_path, out):
    table = tmp_path / "segment_hollow"
    table.mkdir()
    (table / "_SUCCESS").write_text("")
    assert_fails(run_cli("--source", str(table), output=out), 2, "segment_hollow")


# --- Schemas that cannot be exported -----------------------------------------------------------


@pytest.mark.parametrize("header", [
    ["user_id", "td_segment", "email", "email"],
    ["user_id", "td_segment", "user_id"],
])
def test_csv_with_a_repeated_column_name_is_exit_2_naming_table_and_column(tmp_path, out, header):
    path = write_csv(tmp_path / "segment_dup.csv", [header, ["u1", "s1", "x", "y"][: len(header)]])
    repeated = header[-1]
    assert_fails(run_cli("--source", path, output=out), 2, "table segment_dup", f"column {repeated}")


def test_parquet_with_a_repeated_field_name_is_exit_2_naming_table_and_column(tmp_path, out):
    arrays = [pa.array(["u1"]), pa.array(["s1"]), pa.array(["a"]), pa.array([1])]
    table = pa.Table.from_arrays(arrays, names=["user_id", "td_segment", "email", "email"])
    pq.write_table(table, tmp_path / "segment_dup.parquet")
    assert_fails(run_cli("--source", str(tmp_path / "segment_dup.parquet"), output=out), 2,
                 "table segment_dup", "column email")


@pytest.mark.parametrize("attribute", ["seg;x", "", "a:b", "s^"])
def test_segment_attribute_that_cannot_be_an_attribute_name_is_exit_2(tmp_path, out, attribute):
    path = write_parquet(tmp_path / "segment_a.parquet", SMALL_TABLE)
    assert_fails(run_cli("--source", path, "--segment-attribute", attribute, output=out), 2,
                 repr(attribute), "--segment-attribute")


# --- Odd but valid files -----------------------------------------------------------------------


def test_csv_with_a_byte_order_mark_reads_its_first_column_by_name(tmp_path, out):
    path = write_csv(tmp_path / "segment_bom.csv", [["user_id", "td_segment"], ["u1", "s1"]], encoding="utf-8-sig")
    assert open(path, "rb").read(3) == b"\xef\xbb\xbf"
    code, summary, stderr = run_cli("--source", path, output=out)
    assert code == 0, stderr
    assert published_lines(out) == ["u1^segment:s1"]


def test_csv_with_a_header_only_has_no_valid_lines_and_zero_rows_read(tmp_path, out):
    header_only = write_csv(tmp_path / "segment_h.csv", [["user_id", "td_segment", "email"]])
    assert_fails(run_cli("--source", header_only, output=out), 3, "no valid lines")
    other = write_parquet(tmp_path / "segment_p.parquet", SMALL_TABLE)
    code, summary, stderr = run_cli("--source", header_only, "--source", other, output=out)
    assert code == 0, stderr
    assert summary["rows_read"] == {"total": 3, "tables": {"segment_h": 0, "segment_p": 3}}
    code, summary, stderr = run_cli("--source", header_only, "--allow-empty", output=out)
    assert code == 0 and summary["rows_read"] == {"total": 0, "tables": {"segment_h": 0}}, stderr


def test_csv_values_spanning_lines_survive_any_block_boundary(tmp_path):
    """RFC 4180 allows a line break inside a quoted value; Arrow's chunker must know it may."""
    rows = [["user_id", "td_segment", "note"]] + [[f"u{i}", "s1", "two\nlines,\"q\"" if i % 3 else "one"]
                                                  for i in range(300)]
    path = write_csv(tmp_path / "segment_nl.csv", rows)
    task = ReadTask("segment_nl", path, "csv", first_row=1, columns=tuple(rows[0]))
    batches = list(read_task(task, csv_block_bytes=256))
    assert [r for b in batches for r in b.batch.to_pylist()] == [dict(zip(rows[0], r)) for r in rows[1:]]


# --- Huge values -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["parquet", "csv"])
def test_ten_mb_string_value_makes_its_row_value_too_long(tmp_path, out, layout):
    columns = {"user_id": ["u1", "u2"], "td_segment": ["s1", "s2"], "note": ["fine", "v" * TEN_MB]}
    if layout == "csv":
        path = write_csv(tmp_path / "segment_big.csv", [list(columns), *zip(*columns.values())])
    else:
        path = write_parquet(tmp_path / "segment_big.parquet", columns)
    error = assert_fails(run_cli("--source", path, output=out), 3,
                         "table segment_big row 2: value_too_long in column note")
    assert len(error) < 300  # a redacted preview, not the value
    code, summary, stderr = run_cli("--source", path, "--skip-invalid-records", output=out)
    assert code == 0, stderr
    assert summary["invalid"] == {"value_too_long": 1} and published_lines(out) == ["u1^segment:s1;note:fine"]


@pytest.mark.parametrize("group", [False, True])
def test_ten_mb_user_id_is_exported_quickly(tmp_path, out, group):
    """SPEC §3 limits segment and string values, not user ids: a 10 MB id is a valid line."""
    user = "\U0001f600" * (TEN_MB // 4)  # 10 MiB of UTF-8, 2.6 million code points
    columns = {"user_id": [f" {user} ", "u2"], "td_segment": ["s1", "s2"]}
    path = write_parquet(tmp_path / "segment_uid.parquet", columns)
    started = time.monotonic()
    code, summary, stderr = run_cli("--source", path, *["--group-by-user"] * group, output=out)
    assert code == 0, stderr
    assert time.monotonic() - started < 30
    assert sorted(published_lines(out)) == sorted([f"{user}^segment:s1", "u2^segment:s2"])


def test_output_left_empty_after_every_failure(tmp_path, out):
    """A failed run publishes nothing and leaves no staging behind in the output root."""
    path = tmp_path / "segment_junk.parquet"
    path.write_bytes(b"not parquet")
    assert_fails(run_cli("--source", str(path), output=out), 2, str(path))
    bad_row = write_parquet(tmp_path / "segment_bad.parquet", {"user_id": ["u^1"], "td_segment": ["s"]})
    assert_fails(run_cli("--source", bad_row, output=out), 3, "reserved_character")
    assert not os.path.exists(out) or sorted(os.listdir(out)) == []
