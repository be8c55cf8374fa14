"""Input tables: every schema checked and every read task planned before any data is read.

A table is a Parquet file, a directory of Parquet files, a CSV file (`.csv`, `.csv.gz`), or a
lake table (a Delta folder, an `iceberg://` table), local or on `s3://`. A lake table's data
files are its current version's, from its log or catalog (sources/delta.py, sources/iceberg.py).
Planning reads each Parquet footer (and CSV header) by threads; the
result is a list of `Table`s and the `ReadTask`s that the pipeline reads in parallel, one per
Parquet row-group range or CSV file.
"""

import csv
import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.aws import s3io
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.errors import SchemaError, StorageError, first_line
from pipeline.krux.lines import LineRules
from pipeline.sources.delta import DeltaSnapshot, is_delta_table, open_delta
from pipeline.sources.files import ReadTask, TableBatch, is_storage_failure, open_csv_stream
from pipeline.sources.iceberg import IcebergSnapshot, is_iceberg, open_iceberg
from pipeline.sources.listing import find_tables, is_csv, is_data_file, is_dir, list_dir
from pipeline.sources.schema import check_columns

__all__ = ["ReadTask", "Table", "TableBatch", "find_tables", "load_tables", "table_files", "tables_of"]

# A read task covers whole row groups up to about this many rows: enough to keep Beam's
# per-element cost negligible, small enough to spread a big file over both cores.
TASK_ROWS = 500_000
# Footers and CSV headers are read by this many threads: each is one or two round trips to
# S3, so a thousand files plan in seconds rather than minutes.
FOOTER_THREADS = 16
# Rows a CSV table is taken to hold per byte of its file, to size the grouping (no footer
# counts them): an overestimate only adds partitions.
CSV_BYTES_PER_ROW = 40
GZIP_RATIO = 5


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    uri: str
    tasks: tuple[ReadTask, ...]
    columns: tuple[str, ...]
    rows: int = 0  # counted by the Parquet footers; estimated from the file size for CSV
    snapshot: str | None = None  # a lake table's version read (Delta version, Iceberg snapshot id)


def tables_of(settings) -> list[Table]:
    """The run's tables (`RunSettings` sources and database), every schema checked."""
    rules = LineRules(settings.user_column, settings.segment_column, settings.segment_attribute)
    return load_tables(find_tables(settings.sources, settings.database, settings.table_prefix), rules)


def load_tables(named_uris, rules: LineRules, *, threads: int = FOOTER_THREADS) -> list[Table]:
    """Reads and checks each table's schema (every file's), and plans its read tasks.

    Every table's files are listed, then every footer (and CSV header) is read, by threads;
    the checks then go in table and file order, so the error reported is the same as if the
    files had been read one by one.
    """
    named_uris = list(named_uris)
    with ThreadPoolExecutor(threads) as pool:
        listings = _in_order(pool, lambda named: _list_table(*named), named_uris)
        jobs = [(name, path) for (name, _), listing in zip(named_uris, listings)
                if not isinstance(listing, Exception) for path in listing.footers]
        heads = dict(zip(jobs, _in_order(pool, lambda job: _read_head(*job), jobs)))
    tables = []
    for (name, uri), listing in zip(named_uris, listings):
        if isinstance(listing, Exception):
            raise listing
        file_heads = [heads[(name, path)] for path in listing.footers]
        if listing.lake is None:
            tables.append(_load_table(name, uri, listing.footers, file_heads, rules))
        else:
            tables.append(_load_lake_table(name, uri, listing.lake, file_heads, rules))
    return tables


@dataclasses.dataclass(frozen=True)
class _Listing:
    """A table's files whose footers (or CSV header) planning reads, and a lake table's snapshot."""

    footers: list[str]
    lake: DeltaSnapshot | IcebergSnapshot | None = None


def _list_table(name: str, uri: str) -> _Listing:
    lake = lake_snapshot(name, uri)
    if lake is None:
        return _Listing(_table_files(name, uri))
    return _Listing(list(_direct_files(lake)) if lake.direct else [], lake)


def lake_snapshot(name: str, uri: str) -> DeltaSnapshot | IcebergSnapshot | None:
    """The current snapshot of a lake table (an `iceberg://` table, a Delta folder); None for files."""
    if is_iceberg(uri):
        return open_iceberg(name, uri)
    if is_dir(uri) and is_delta_table(uri):
        return open_delta(name, uri)
    return None


def _direct_files(lake) -> tuple[str, ...]:
    return tuple(f.uri for f in lake.files) if isinstance(lake, DeltaSnapshot) else lake.files


def snapshot_id(lake) -> str:
    return str(lake.version) if isinstance(lake, DeltaSnapshot) else lake.snapshot


def _in_order(pool: ThreadPoolExecutor, fn, items) -> list:
    """`fn` of each item on the pool, results in order; an exception is returned, not raised."""
    def attempt(item):
        try:
            return fn(item)
        except Exception as error:  # noqa: BLE001 (raised by the caller, in order)
            return error
    return list(pool.map(attempt, items))


def table_files(name: str, uri: str) -> tuple[str, list[str], tuple[str, ...]]:
    """A table's format ("parquet" or "csv"), its data files in order, and a CSV's header."""
    files = _table_files(name, uri)
    if is_csv(uri):
        return "csv", files, tuple(_csv_header(name, uri))
    return "parquet", files, ()


def _table_files(name: str, uri: str) -> list[str]:
    """The files of a table: a CSV file, a Parquet file, or a directory's Parquet files."""
    if is_csv(uri) or not is_dir(uri):
        return [uri]
    files = sorted(u for u in list_dir(uri) if is_data_file(u))
    if not files:
        raise SchemaError(f"table {name}: no Parquet files in {uri}")
    return files


def _read_head(name: str, path: str):
    """What planning needs of one file: a CSV's header and size, or a Parquet file's footer."""
    if is_csv(path):
        return _csv_header(name, path), _file_size(name, path)
    return _parquet_metadata(name, path)


def _load_table(name: str, uri: str, paths: list[str], heads: list, rules: LineRules) -> Table:
    """Checks the schemas and plans the read tasks of a table from its files' heads."""
    for head in heads:
        if isinstance(head, Exception):
            raise head
    if is_csv(uri):
        columns, size = heads[0]
        check_columns(name, pa.schema([(c, pa.string()) for c in columns]), rules)
        rows = size * (GZIP_RATIO if uri.endswith(".gz") else 1) // CSV_BYTES_PER_ROW
        task = ReadTask(name, uri, "csv", first_row=1, columns=tuple(columns))
        return Table(name, uri, (task,), tuple(columns), rows)
    tasks, columns, first_row = [], None, 1
    for path, metadata in zip(paths, heads):
        schema = metadata.schema.to_arrow_schema()
        check_columns(name, schema, rules, where=f" ({path})" if path != uri else "")
        columns = columns or tuple(schema.names)
        for group in _row_group_ranges(metadata):
            rows = sum(metadata.row_group(i).num_rows for i in group)
            tasks.append(ReadTask(name, path, "parquet", group, first_row, rows=rows))
            first_row += rows
    return Table(name, uri, tuple(tasks), columns, first_row - 1)


def _load_lake_table(name: str, uri: str, lake, heads: list, rules: LineRules) -> Table:
    """Checks the table's own schema, and plans its data files' read tasks: Parquet row groups
    where the files read as they are, else the tasks its library reads."""
    for head in heads:
        if isinstance(head, Exception):
            raise head
    check_columns(name, lake.schema, rules)
    columns, snapshot = tuple(lake.schema.names), snapshot_id(lake)
    if not lake.direct:  # rows: as the log or manifests count them, before deletes
        if isinstance(lake, DeltaSnapshot):
            tasks = (ReadTask(name, uri, "delta", lake=uri, snapshot=snapshot),)
        else:
            tasks = tuple(ReadTask(name, path, "iceberg", lake=uri, snapshot=snapshot) for path in lake.files)
        return Table(name, uri, tasks, columns, lake.rows, snapshot)
    if isinstance(lake, DeltaSnapshot):
        extras = [dict(partition=f.partition, lake=uri, snapshot=snapshot, deletes=f.has_deletion_vector,
                       columns=columns if f.partition else ()) for f in lake.files]
    else:
        extras = [{} for _ in lake.files]
    tasks, first_row = [], 1
    for path, metadata, extra in zip(_direct_files(lake), heads, extras):
        for group in _row_group_ranges(metadata):
            rows = sum(metadata.row_group(i).num_rows for i in group)
            tasks.append(ReadTask(name, path, "parquet", group, first_row, rows=rows, **extra))
            first_row += rows
    return Table(name, uri, tuple(tasks), columns, first_row - 1, snapshot)


def _row_group_ranges(metadata) -> list[tuple[int, ...]]:
    ranges, current, rows = [], [], 0
    for index in range(metadata.num_row_groups):
        current.append(index)
        rows += metadata.row_group(index).num_rows
        if rows >= TASK_ROWS:
            ranges.append(tuple(current))
            current, rows = [], 0
    if current or not ranges:
        ranges.append(tuple(current))
    return ranges


def _parquet_metadata(table: str, path: str):
    try:
        with _open_for_footer(path) as handle:
            return pq.ParquetFile(handle).metadata
    except Exception as error:
        kind = StorageError if is_storage_failure(error) else SchemaError
        raise kind(f"table {table}: cannot read Parquet file {path}: {first_line(error)}") from error


# Beam's S3 file system makes a new boto3 session for every file it opens (about 0.2 s of CPU),
# and its client keeps one download's state, so it cannot be shared between threads: each
# footer thread keeps its own.
_footer_thread = threading.local()


def _open_for_footer(path: str):
    if not path.startswith("s3://"):
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    reader = getattr(_footer_thread, "s3", None)
    if reader is None:
        # The options FileSystems was given (configure_filesystems), as its S3 file system uses.
        options = getattr(FileSystems, "_pipeline_options", None) or PipelineOptions([])
        reader = _footer_thread.s3 = s3io.S3IO(options=options)
    return reader.open(path, "rb")


def _file_size(table: str, path: str) -> int:
    try:
        return FileSystems.match([path])[0].metadata_list[0].size_in_bytes
    except Exception as error:
        kind = StorageError if is_storage_failure(error) else SchemaError
        raise kind(f"table {table}: cannot read CSV file {path}: {first_line(error)}") from error


def _csv_header(table: str, uri: str) -> list[str]:
    try:
        with open_csv_stream(uri) as stream:
            line = _read_line(stream)
        header = next(csv.reader([line.decode("utf-8-sig")]), None)
    except Exception as error:
        kind = StorageError if is_storage_failure(error) else SchemaError
        raise kind(f"table {table}: cannot read CSV file {uri}: {first_line(error)}") from error
    if not header:
        raise SchemaError(f"table {table}: CSV file {uri} has no header row")
    return header


def _read_line(handle, chunk_bytes: int = 64 * 1024, max_bytes: int = 16 * 1024 * 1024) -> bytes:
    """The first line of a stream, without reading it all."""
    data = b""
    while b"\n" not in data and len(data) < max_bytes:
        chunk = handle.read(chunk_bytes)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r")
