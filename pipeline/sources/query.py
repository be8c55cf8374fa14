"""A query over the run's tables in DuckDB: tables registered, result checked, result streamed.

DuckDB is the embedded engine: past its memory limit it spills to its temporary directory,
so a result (or a GROUP BY) may be larger than memory, and its result comes out as Arrow
record batches, never a Python object per row. Tables reach it as pyarrow datasets, local
and `s3://` alike: DuckDB's own S3 reader is an extension downloaded at run time, which an
offline worker cannot do, and pyarrow reads the same files the table-based run reads, CSV
columns as strings, with the standard AWS credential chain.
"""

from __future__ import annotations  # DuckDB's types in annotations: it loads only when a query runs

import contextlib
import dataclasses
import datetime
import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipeline.errors import ExportError, SchemaError, StorageError
from pipeline.krux.lines import LineRules
from pipeline.sources import delta, iceberg
from pipeline.sources.delta import DeltaSnapshot
from pipeline.sources.files import csv_options
from pipeline.sources.listing import find_tables, unique_names
from pipeline.sources.result import QUERY_TABLE, check_result_schema, query_rules
from pipeline.sources.s3_access import resolve_s3_access
from pipeline.sources.tables import lake_snapshot, snapshot_id, table_files
from pipeline.sources.warehouse import WarehouseQuery, plan_warehouse_query
from pipeline.storage.s3 import parse_s3_uri

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "QUERY_TABLE",
    "Query",
    "QueryTable",
    "open_engine",
    "plan_query",
    "query_of",
    "query_rules",
    "result_batches",
]

MEMORY_FRACTION = 4
"""Without `--query-memory-limit`, DuckDB may use 1/4 of the machine's memory before it spills."""

_LINE = re.compile(r"\bLINE (\d+):")


@dataclasses.dataclass(frozen=True)
class QueryTable:
    """A table a query can read: registered as `name`, and as `schema.name` for a database's.

    A lake table is registered as exactly its current version's files (a Delta file's partition
    values given to the dataset); where they cannot be read as they are (deletion vectors,
    delete files, column mapping), as its library's scan of that version.
    """

    name: str
    schema: str | None
    format: str  # "parquet" | "csv" | "delta" | "iceberg" (the last two: the library's scan)
    files: tuple[str, ...]
    columns: tuple[str, ...] = ()  # CSV header: every column is read as a string
    lake: str | None = None  # a lake table's URI
    snapshot: str | None = None  # its version read
    table_schema: pa.Schema | None = None  # a lake table's own (a Delta table's: partition columns included)
    partitions: tuple[tuple[tuple[str, pa.Scalar], ...], ...] = ()  # per file: Delta partition values


@dataclasses.dataclass(frozen=True)
class Query:
    """What a worker needs to run the query: picklable, no connection, no secret."""

    sql: str
    origin: str  # "--query", or the query file's path: where a SQL error points
    tables: tuple[QueryTable, ...]
    rules: LineRules
    memory_limit: str | None = None  # DuckDB's size text, e.g. "4GB"


def query_of(settings, date: datetime.date, moment: datetime.datetime) -> Query | WarehouseQuery | None:
    """The run's query, if it has one, checked: a workflow task's with its variables substituted;
    in DuckDB over the run's tables, or in the `--warehouse` (SPEC §9).

    `date` is the export's day and `moment` the run's start (`${session_date}`, `${session_time}`).
    """
    text = settings.query_text(date, moment)
    if text is None:
        return None
    if settings.warehouse is not None:
        return plan_warehouse_query(
            text.sql, text.origin, settings.warehouse, segment_attribute=settings.segment_attribute
        )
    return plan_query(
        text.sql,
        text.origin,
        sources=settings.sources,
        database=settings.database,
        segment_attribute=settings.segment_attribute,
        memory_limit=settings.query_memory_limit,
    )


def plan_query(
    sql: str,
    origin: str,
    *,
    sources=(),
    database: str | None = None,
    segment_attribute: str = "segment",
    memory_limit: str | None = None,
) -> Query:
    """Finds the tables, then checks the SQL and its result's columns without reading data.

    Every table entry of the database is registered, whatever its prefix: the query says
    which ones it reads.
    """
    tables = _query_tables(sources, database) if sources or database else ()
    query = Query(sql, origin, tables, query_rules(segment_attribute), memory_limit)
    with open_engine(query, threads=1) as connection:
        _check_statement(connection, query)
        schema = _run(query, lambda: connection.sql(sql).limit(0).to_arrow_table().schema)
    check_result_schema(schema, query)
    return query


@contextlib.contextmanager
def open_engine(query: Query, *, threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with the query's tables registered; its spill files go when it closes.

    Memory: `query.memory_limit`, else a quarter of the machine's (DuckDB's own default, 80%,
    would starve the Beam workers beside it); past it DuckDB spills to a temporary directory.
    """
    import duckdb  # only a run with a query pays its import

    temp_dir = tempfile.mkdtemp(prefix="krux-export-duckdb-")
    try:
        connection = duckdb.connect(
            config={
                "memory_limit": query.memory_limit or _default_memory_limit(),
                "temp_directory": temp_dir,
                "threads": threads or os.cpu_count() or 1,
            }
        )
        try:
            # Time functions and TIMESTAMPTZ casts in a query mean the same on every worker.
            connection.execute("SET TimeZone = 'UTC'")
            connection.execute("SET enable_progress_bar = false")  # stderr is the run's progress, in our words
            _register(connection, query.tables)
            yield connection
        finally:
            connection.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def result_batches(connection, query: Query, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The query's result, streamed: DuckDB produces each batch as it is pulled."""
    # `sql()` streams; `execute()` materializes the whole result before the first batch.
    reader = _run(query, lambda: connection.sql(query.sql).to_arrow_reader(batch_rows))
    check_result_schema(reader.schema, query)
    while True:
        batch = _run(query, lambda: _next(reader))
        if batch is None:
            return
        if batch.num_rows:
            yield batch


def _next(reader):
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


def _run(query: Query, action):
    import duckdb

    try:
        return action()
    except (duckdb.Error, pa.ArrowException) as error:
        raise query_failure(error, query) from error


def query_failure(error: BaseException, query: Query) -> ExportError:
    """DuckDB's one-line message, with the query's origin and, where known, its line."""
    import duckdb

    text = str(error).strip()
    lines = text.splitlines() or [type(error).__name__]
    line = _error_line(text, query.sql)
    where = f"{query.origin} line {line}" if line else query.origin
    reason = f"{where}: {lines[0]}"
    if isinstance(error, duckdb.OutOfMemoryException):
        return ExportError(f"{reason} (raise --query-memory-limit, or free disk space for DuckDB's spill files)")
    if isinstance(error, (duckdb.IOException, duckdb.HTTPException, OSError)) or "IOError" in lines[0]:
        return StorageError(reason)
    return SchemaError(reason)


def _error_line(text: str, sql: str) -> int | None:
    """DuckDB's `LINE n:`; else, for a missing table or column, the first line naming it."""
    match = _LINE.search(text)
    if match:
        return int(match.group(1))
    named = re.search(r'Table with name (\S+) does not exist|column "([^"]+)" not found', text)
    if named:
        name = (named.group(1) or named.group(2)).rstrip("!")
        word = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)", re.IGNORECASE)
        for number, source_line in enumerate(sql.splitlines(), start=1):
            if word.search(source_line):
                return number
    return None


def _check_statement(connection, query: Query) -> None:
    import duckdb

    try:
        statements = connection.extract_statements(query.sql)
    except duckdb.Error as error:
        raise query_failure(error, query) from error
    if not statements:
        raise SchemaError(f"{query.origin}: the query is empty")
    if len(statements) != 1:
        raise SchemaError(f"{query.origin}: expected one SELECT statement, found {len(statements)} statements")
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        raise SchemaError(f"{query.origin}: expected a SELECT statement, found {kind}")


# --- Tables ------------------------------------------------------------------------------------


def _query_tables(sources, database) -> tuple[QueryTable, ...]:
    """Each `--source` match under its name; each database entry also under `folder.name`."""
    named = [(name, uri, None) for name, uri in (find_tables(sources, None, "") if sources else [])]
    if database:
        folder = database.rstrip("/").rsplit("/", 1)[-1]
        named += [(name, uri, folder) for name, uri in find_tables((), database, "")]
    schemas = {uri: schema for _, uri, schema in named}
    tables = []
    for name, uri in unique_names((name, uri) for name, uri, _ in named):
        lake = lake_snapshot(name, uri)
        if lake is not None:
            tables.append(_lake_query_table(name, schemas[uri], uri, lake))
            continue
        file_format, files, columns = table_files(name, uri)
        tables.append(QueryTable(name, schemas[uri], file_format, tuple(files), columns))
    return tuple(tables)


def _lake_query_table(name: str, schema: str | None, uri: str, lake) -> QueryTable:
    common = dict(lake=uri, snapshot=snapshot_id(lake), table_schema=lake.schema)
    if isinstance(lake, DeltaSnapshot):
        if not lake.direct or any(f.has_deletion_vector for f in lake.files):
            return QueryTable(name, schema, "delta", (), **common)
        files = tuple(f.uri for f in lake.files)
        return QueryTable(name, schema, "parquet", files, partitions=tuple(f.partition for f in lake.files), **common)
    return QueryTable(name, schema, "parquet" if lake.direct else "iceberg", lake.files, **common)


def _register(connection, tables) -> None:
    filesystems = {}
    for table in tables:
        dataset = _dataset(table, filesystems)
        connection.register(table.name, dataset)
        if table.schema:
            connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(table.schema)}")
            connection.execute(
                f"CREATE VIEW {_quoted(table.schema)}.{_quoted(table.name)} AS SELECT * FROM {_quoted(table.name)}"
            )


def _dataset(table: QueryTable, filesystems: dict) -> ds.Dataset | pa.RecordBatchReader:
    """All of a table's files as one dataset whose schema is the union of theirs, by name (a lake
    table's: its own schema); or a lake table's scan by its library, as a stream."""
    if table.format in ("delta", "iceberg"):
        return _lake_reader(table)
    if not table.files:  # a lake table with no data files yet
        return table.table_schema.empty_table()
    is_s3 = table.files[0].startswith("s3://")
    if is_s3 and "s3" not in filesystems:
        filesystems["s3"] = resolve_s3_access().pyarrow_filesystem()
    filesystem = filesystems["s3"] if is_s3 else pafs.LocalFileSystem()
    paths = [_path(uri) for uri in table.files]
    try:
        if table.lake is not None:
            return _lake_dataset(table, filesystem, paths)
        factory = ds.FileSystemDatasetFactory(filesystem, paths, _file_format(table), ds.FileSystemFactoryOptions())
        return factory.finish(factory.inspect(fragments=None))
    except (pa.ArrowException, OSError) as error:
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        kind = StorageError if isinstance(error, OSError) and not isinstance(error, pa.ArrowInvalid) else SchemaError
        raise kind(f"table {table.name}: {message}") from error


def _lake_dataset(table: QueryTable, filesystem, paths: list[str]) -> ds.Dataset:
    """Exactly the version's files, under the table's schema; a Delta file's partition values
    (not in the file) given as its fragment's partition expression, which fills those columns."""
    parquet = ds.ParquetFileFormat()
    partitions = table.partitions or [()] * len(paths)
    fragments = [
        parquet.make_fragment(path, filesystem, partition_expression=_partition_expression(values))
        for path, values in zip(paths, partitions)
    ]
    return ds.FileSystemDataset(fragments, schema=table.table_schema, format=parquet, filesystem=filesystem)


def _partition_expression(values) -> ds.Expression:
    expression = ds.scalar(True)
    for name, value in values:
        expression &= ds.field(name).is_null() if not value.is_valid else ds.field(name) == value
    return expression


def _lake_reader(table: QueryTable) -> pa.RecordBatchReader:
    """A Delta or Iceberg table's version read by its own library, which applies its deletes."""
    if table.format == "delta":
        batches = delta.scan_batches(table.lake, int(table.snapshot), 64 * 1024)
    else:
        batches = (batch for path in table.files for batch in iceberg.scan_file(table.lake, table.snapshot, path, 64 * 1024))
    batches = iter(batches)
    first = next(batches, None)  # the library's own schema: the scan may type a column its way
    if first is None:
        return table.table_schema.empty_table()
    return pa.RecordBatchReader.from_batches(first.schema, itertools.chain([first], batches))


def _file_format(table: QueryTable):
    if table.format == "parquet":
        return ds.ParquetFileFormat()
    read, parse, convert = csv_options(table.columns)  # as the table-based reader reads CSV
    return ds.CsvFileFormat(parse_options=parse, convert_options=convert, read_options=read)


def _path(uri: str) -> str:
    if uri.startswith("s3://"):
        bucket, key = parse_s3_uri(uri)
        return f"{bucket}/{key}"
    return os.path.abspath(uri)


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _default_memory_limit() -> str:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(total // MEMORY_FRACTION // 2**20, 256)}MiB"
