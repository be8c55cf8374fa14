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
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from pipeline.config.workflow import read_query_file, render_query
from pipeline.errors import ExportError, SchemaError, StorageError, UsageError
from pipeline.krux.lines import LineRules
from pipeline.sources.files import csv_options
from pipeline.sources.listing import find_tables, unique_names
from pipeline.sources.schema import check_columns
from pipeline.sources.tables import table_files
from pipeline.storage.s3 import CONNECT_TIMEOUT_S, READ_TIMEOUT_S, RETRY_ATTEMPTS, make_s3_client, parse_s3_uri

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

QUERY_TABLE = "query"
"""The table name a query's rows are counted under (`rows_read`) and named by in messages."""

USER_COLUMN, SEGMENT_COLUMN = "user_id", "td_segment"
"""A result's first two columns, by name and place, as the seed's query requirements say."""

MEMORY_FRACTION = 4
"""Without `--query-memory-limit`, DuckDB may use 1/4 of the machine's memory before it spills."""

_LINE = re.compile(r"\bLINE (\d+):")


@dataclasses.dataclass(frozen=True)
class QueryTable:
    """A table a query can read: registered as `name`, and as `schema.name` for a database's."""

    name: str
    schema: str | None
    format: str  # "parquet" | "csv"
    files: tuple[str, ...]
    columns: tuple[str, ...] = ()  # CSV header: every column is read as a string


@dataclasses.dataclass(frozen=True)
class Query:
    """What a worker needs to run the query: picklable, no connection, no secret."""

    sql: str
    origin: str  # "--query", or the query file's path: where a SQL error points
    tables: tuple[QueryTable, ...]
    rules: LineRules
    memory_limit: str | None = None  # DuckDB's size text, e.g. "4GB"


def query_of(settings, date: datetime.date, moment: datetime.datetime) -> Query | None:
    """The run's query, if it has one, checked: a workflow task's with its variables substituted.

    `date` is the export's day and `moment` the run's start (`${session_date}`, `${session_time}`).
    """
    if settings.query is None and settings.query_file is None:
        return None
    if settings.query is not None:
        sql, origin = settings.query, "--query"
    else:
        sql, origin = read_query_file(settings.query_file), settings.query_file
    if settings.query_context is not None:
        sql = render_query(sql, settings.query_context, date, moment, origin)
    return plan_query(
        sql,
        origin,
        sources=settings.sources,
        database=settings.database,
        segment_attribute=settings.segment_attribute,
        memory_limit=settings.query_memory_limit,
    )


def query_rules(segment_attribute: str) -> LineRules:
    """A result's lines: user id and segments from its first two columns, by their fixed names."""
    return LineRules(USER_COLUMN, SEGMENT_COLUMN, segment_attribute)


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


def check_result_schema(schema: pa.Schema, query: Query) -> None:
    """The seed's query requirements: `user_id` first, `td_segment` second, both strings;
    every further column an attribute that a line can hold."""
    names = schema.names
    if names[:2] != [USER_COLUMN, SEGMENT_COLUMN]:
        got = ", ".join(names[:2]) or "no columns"
        raise SchemaError(
            f"{query.origin}: the result's first two columns must be {USER_COLUMN} and {SEGMENT_COLUMN} "
            f"(in that order), got {got}"
        )
    check_columns(QUERY_TABLE, schema, query.rules, where=f" ({query.origin})")


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
        file_format, files, columns = table_files(name, uri)
        tables.append(QueryTable(name, schemas[uri], file_format, tuple(files), columns))
    return tuple(tables)


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


def _dataset(table: QueryTable, filesystems: dict) -> ds.Dataset:
    """All of a table's files as one dataset whose schema is the union of theirs, by name."""
    is_s3 = table.files[0].startswith("s3://")
    if is_s3 and "s3" not in filesystems:
        filesystems["s3"] = _s3_filesystem()
    filesystem = filesystems["s3"] if is_s3 else pafs.LocalFileSystem()
    paths = [_path(uri) for uri in table.files]
    try:
        factory = ds.FileSystemDatasetFactory(filesystem, paths, _file_format(table), ds.FileSystemFactoryOptions())
        return factory.finish(factory.inspect(fragments=None))
    except (pa.ArrowException, OSError) as error:
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        kind = StorageError if isinstance(error, OSError) and not isinstance(error, pa.ArrowInvalid) else SchemaError
        raise kind(f"table {table.name}: {message}") from error


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


def _s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 with what boto3's standard chain resolves: credentials, region, endpoint.

    Built where the tables are read (launcher or worker), never shipped: it holds the keys.
    """
    import boto3

    client = make_s3_client()
    credentials = boto3.session.Session().get_credentials()
    frozen = credentials.get_frozen_credentials() if credentials else None
    endpoint = urlparse(client.meta.endpoint_url)
    custom = not (endpoint.hostname or "").endswith("amazonaws.com")
    return pafs.S3FileSystem(
        access_key=frozen.access_key if frozen else None,
        secret_key=frozen.secret_key if frozen else None,
        session_token=frozen.token if frozen else None,
        anonymous=frozen is None,
        region=client.meta.region_name,
        endpoint_override=endpoint.netloc if custom else None,
        scheme=endpoint.scheme or "https",
        connect_timeout=CONNECT_TIMEOUT_S,
        request_timeout=READ_TIMEOUT_S,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=RETRY_ATTEMPTS),
    )


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _default_memory_limit() -> str:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{max(total // MEMORY_FRACTION // 2**20, 256)}MiB"
