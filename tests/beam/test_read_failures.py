"""What a failed read says: a bad file (exit 2), storage (exit 4), anything else a bug (exit 1),
each naming the table and the path; never a bug dressed as "fix the file"."""

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from pipeline.errors import ExportError, SchemaError, StorageError, UnexpectedError
from pipeline.sources.files import ReadTask
from transforms.read import ReadTables


def read_failure(task: ReadTask) -> ExportError:
    with pytest.raises(ExportError) as raised:
        with BeamTestPipeline(runner="FnApiRunner") as p:
            p | ReadTables([task]) | beam.Map(lambda batch: batch)
    return raised.value


@pytest.fixture
def parquet(tmp_path):
    path = tmp_path / "segment_a.parquet"
    pq.write_table(pa.table({"user_id": ["u1"], "td_segment": ["s1"]}), path)
    return str(path)


def test_a_bug_while_reading_is_exit_1_with_its_class_and_message(parquet):
    error = read_failure(ReadTask("segment_a", parquet, "parquet", row_groups=("first",), first_row=0))
    assert type(error) is UnexpectedError and error.exit_code == 1
    assert str(error).startswith(f"table segment_a: reading {parquet}: unexpected error, likely a bug")
    # The class and its message (pyarrow's words for a row group that is not a number).
    assert "(--verbose shows the traceback): TypeError: " in str(error) and "integer" in str(error)


def test_a_file_gone_since_the_check_is_a_storage_failure(tmp_path):
    path = str(tmp_path / "segment_gone.parquet")
    error = read_failure(ReadTask("segment_gone", path, "parquet", row_groups=(0,), first_row=0))
    assert type(error) is StorageError and error.exit_code == 4
    assert str(error).startswith(f"table segment_gone: cannot read {path}: ")
    assert (error.table, error.path) == ("segment_gone", path)


def test_a_file_that_is_not_utf8_is_a_schema_error(tmp_path):
    path = tmp_path / "segment_latin1.csv"
    path.write_bytes(b"user_id,td_segment\nu1,caf\xe9\n")
    error = read_failure(ReadTask("segment_latin1", str(path), "csv", columns=("user_id", "td_segment")))
    assert type(error) is SchemaError and error.exit_code == 2
    assert str(error).startswith(f"table segment_latin1: cannot read {path}: ") and "UTF8" in str(error)
