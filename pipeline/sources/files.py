"""Reading one read task (Parquet row groups or a CSV file, local or `s3://`) as Arrow batches.

Files open through Beam's FileSystems, so reading honours the same options and the standard
AWS credential chain (the customer's own storage, never the partner's connection). The CSV
read options live here once: the table reader and the query engine read CSV alike.
"""

import dataclasses
from typing import NamedTuple

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.aws.clients.s3.messages import S3ClientError
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.sources import delta, iceberg

BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ReadTask:
    """One unit of parallel reading: row groups of one Parquet file, one CSV file, or a lake
    table's part that its own library reads (a Delta table whole, an Iceberg data file)."""

    table: str
    path: str
    format: str  # "parquet" | "csv" | "delta" (path: the table) | "iceberg" (path: a data file)
    row_groups: tuple[int, ...] = ()
    first_row: int | None = None  # row number in the table of the task's first row
    columns: tuple[str, ...] = ()  # CSV header: every column is read as a string; a Delta table's column order
    rows: int | None = None  # from the Parquet footer; None for CSV (unknown until read)
    partition: tuple[tuple[str, pa.Scalar], ...] = ()  # Delta partition columns: values not in the file
    lake: str | None = None  # the lake table's URI, where its library must be asked (deletes, scans)
    snapshot: str | None = None  # the lake table's version read
    deletes: bool = False  # a Delta deletion vector removes rows of this file


class TableBatch(NamedTuple):
    table: str
    first_row: int | None  # table row number of the batch's first row, when known
    batch: pa.RecordBatch


def csv_options(columns, block_bytes: int = CSV_BLOCK_BYTES):
    """(read, parse, convert) options: every column a string, line breaks allowed inside quotes.

    A quoted value may hold a line break (RFC 4180); without `newlines_in_values`, a block
    boundary after such a break fails the read ("CSV parser got out of sync with chunker").
    """
    return (
        pacsv.ReadOptions(block_size=block_bytes),
        pacsv.ParseOptions(newlines_in_values=True),
        pacsv.ConvertOptions(column_types={name: pa.string() for name in columns}, strings_can_be_null=False),
    )


def read_task(task: ReadTask, batch_rows: int = BATCH_ROWS, csv_block_bytes: int = CSV_BLOCK_BYTES):
    """The `TableBatch`es of one read task, in order, skipping empty batches."""
    row = task.first_row
    for batch in _batches(task, batch_rows, csv_block_bytes):
        if batch.num_rows:
            yield TableBatch(task.table, row, batch)
            row = row + batch.num_rows if row is not None else None


def _batches(task: ReadTask, batch_rows: int, csv_block_bytes: int):
    if task.format == "parquet":
        yield from _parquet_batches(task, batch_rows)
        return
    if task.format == "delta":
        yield from delta.scan_batches(task.lake, int(task.snapshot), batch_rows)
        return
    if task.format == "iceberg":
        yield from iceberg.scan_file(task.lake, task.snapshot, task.path, batch_rows)
        return
    read, parse, convert = csv_options(task.columns, csv_block_bytes)
    with open_csv_stream(task.path) as stream:
        yield from pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)


def _parquet_batches(task: ReadTask, batch_rows: int):
    """The task's row groups, with a Delta file's partition columns added and its deleted rows left out."""
    with FileSystems.open(task.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        parquet = pq.ParquetFile(handle)
        kept = delta.kept_rows(task.lake, int(task.snapshot), task.path) if task.deletes else None
        row = sum(parquet.metadata.row_group(i).num_rows for i in range(task.row_groups[0])) if task.row_groups else 0
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=list(task.row_groups)):
            _check_values(batch)
            rows = batch.num_rows
            for name, value in task.partition:
                if name in batch.schema.names:  # a writer that kept the column in the file too
                    continue
                batch = batch.append_column(pa.field(name, value.type), pa.repeat(value, rows))
            if task.partition:  # the table's column order, so attributes come in it, partition columns too
                batch = batch.select([name for name in task.columns if name in batch.schema.names])
            if kept is not None:
                batch = batch.filter(_kept_slice(kept, row, rows))
            row += rows
            yield batch


def _kept_slice(kept: pa.BooleanArray, start: int, rows: int) -> pa.BooleanArray:
    """Rows `start` to `start + rows` of a deletion vector's keep mask; rows past its end are kept."""
    part = kept.slice(start, rows)
    if len(part) < rows:
        part = pa.concat_arrays([part, pa.repeat(pa.scalar(True), rows - len(part))])
    return part


def _check_values(batch: pa.RecordBatch) -> None:
    """Raises, naming the column, if a Parquet batch holds text that is not UTF-8 (or worse).

    Parquet readers take the writer's word that text is UTF-8, and a file from another writer,
    or a damaged one, may hold other bytes: Arrow's string kernels would then fail later, far
    from the file. A full validation costs about 2 ms per 64k rows of text.
    """
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            column.validate(full=True)
        except pa.ArrowInvalid as error:
            raise pa.ArrowInvalid(f"column {name}: {error}") from error


def is_storage_failure(error: BaseException) -> bool:
    """An S3 error reading an input table (exit 4), rather than a bad file (exit 2)."""
    return isinstance(error, (S3ClientError, BotoCoreError, ClientError))


def open_csv_stream(path: str) -> pa.NativeFile:
    """A CSV file as an Arrow input stream, local or `s3://`; `.gz` decompressed by Arrow."""
    stream = pa.PythonFile(FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="r")
    return pa.CompressedInputStream(stream, "gzip") if path.endswith(".gz") else stream
