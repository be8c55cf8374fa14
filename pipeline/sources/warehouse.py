"""A query run in a warehouse through ADBC (SPEC §9): PostgreSQL, Snowflake, BigQuery, Flight SQL.

ADBC drivers hand results over as Arrow record batches, streamed, never a row object. Where the
driver splits a result into partitions (`execute_partitions`: Snowflake, BigQuery, Flight SQL),
each partition is read by a worker of its own; PostgreSQL's result streams from one reader.
The pipeline carries the connection's *name*: each process loads the entry itself (`env:`
resolved there), so the password is never in options, in the pickled pipeline or in a message.
"""

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import pyarrow as pa

from pipeline.config.connections import Warehouse, load_warehouse
from pipeline.errors import ExportError, SchemaError, StorageError, first_line
from pipeline.krux.lines import LineRules
from pipeline.sources.result import check_result_schema, query_rules

__all__ = ["WarehouseQuery", "connect", "execute_partitions", "plan_warehouse_query", "read_partition",
           "stream_result", "test_warehouse"]


PARTITIONED_SCHEMES = ("snowflake", "bigquery", "grpc", "grpc+tls", "grpc+tcp")
"""Warehouses whose ADBC drivers return result partitions (`execute_partitions`); PostgreSQL's
result comes from one reader."""


@dataclasses.dataclass(frozen=True)
class WarehouseQuery:
    """What a worker needs to run the query in the warehouse: picklable, the connection by name."""

    sql: str
    origin: str  # "--query", or the query file's path: where a SQL error points
    warehouse: str  # the connection's name in connections.yml
    rules: LineRules
    partitioned: bool = False  # its driver splits results into partitions, read by several workers
    tables: tuple = ()  # the run's own tables it reads: none (for the launcher's summary)


def plan_warehouse_query(sql: str, origin: str, warehouse: str, *, segment_attribute: str = "segment") -> WarehouseQuery:
    """Checks the SQL and its result's columns in the warehouse, without reading rows."""
    entry = load_warehouse(warehouse)
    query = WarehouseQuery(sql, origin, warehouse, query_rules(segment_attribute),
                           partitioned=entry.scheme in PARTITIONED_SCHEMES)
    with connect(entry) as connection:
        schema = _result_schema(connection, query)
    check_result_schema(schema, query)
    return query


def test_warehouse(name: str) -> None:
    """Runs `SELECT 1` in the warehouse: connection, credentials and driver all work."""
    with connect(load_warehouse(name)) as connection, _failures(name, "connection test"), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetch_arrow_table()


@contextlib.contextmanager
def connect(warehouse: Warehouse):
    """An ADBC DB-API connection to the warehouse; a failure is one line naming it (exit 4)."""
    driver, uri, db_kwargs = _driver_arguments(warehouse)
    try:
        connection = driver.connect(uri, db_kwargs=db_kwargs) if uri is not None else driver.connect(db_kwargs=db_kwargs)
    except Exception as error:  # the driver's own kinds (OperationalError, ProgrammingError...)
        reason = _scrubbed(first_line(error), warehouse)
        raise StorageError(f"warehouse {warehouse.name}: cannot connect: {reason}") from None
    try:
        yield connection
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def stream_result(connection, query: WarehouseQuery, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The query's result from one reader, streamed as the driver fetches it."""
    cursor = connection.cursor()
    try:
        with _failures(query.warehouse, query.origin):
            cursor.execute(query.sql)
            reader = cursor.fetch_record_batch()
        check_result_schema(reader.schema, query)
        while True:
            with _failures(query.warehouse, query.origin):
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
            yield from _slices(batch, batch_rows)
    finally:
        with contextlib.suppress(Exception):
            cursor.close()


def execute_partitions(connection, query: WarehouseQuery) -> list[bytes] | None:
    """The result's partitions, for workers to read in parallel; None where the driver has none."""
    from adbc_driver_manager import NotSupportedError

    with connection.cursor() as cursor:
        try:
            with _failures(query.warehouse, query.origin):
                partitions, schema = cursor.adbc_execute_partitions(query.sql)
        except SchemaError as error:
            if isinstance(error.__cause__, NotSupportedError):
                return None
            raise
    if schema is not None:
        check_result_schema(schema, query)
    return list(partitions)


def read_partition(connection, query: WarehouseQuery, partition: bytes, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with connection.cursor() as cursor:
        with _failures(query.warehouse, query.origin):
            cursor.adbc_read_partition(partition)
            reader = cursor.fetch_record_batch()
        for batch in reader:
            yield from _slices(batch, batch_rows)


def _result_schema(connection, query: WarehouseQuery) -> pa.Schema:
    """The result's schema: ADBC's ExecuteSchema, else the query under `LIMIT 0`."""
    from adbc_driver_manager import NotSupportedError

    with connection.cursor() as cursor:
        try:
            with _failures(query.warehouse, query.origin):
                return cursor.adbc_execute_schema(query.sql)
        except SchemaError as error:
            if not isinstance(error.__cause__, NotSupportedError):
                raise
        with _failures(query.warehouse, query.origin):
            cursor.execute(f"SELECT * FROM ({query.sql}) AS krux_result LIMIT 0")
            return cursor.fetch_arrow_table().schema


@contextlib.contextmanager
def _failures(warehouse: str, origin: str):
    """A driver error as one line: the database's own message, after the query's origin (exit 2).

    A lost connection is a storage failure (exit 4). The text is the database's, which names
    no password; the connection's password is scrubbed from it all the same.
    """
    from adbc_driver_manager import DatabaseError, OperationalError

    try:
        yield
    except ExportError:
        raise
    except (DatabaseError, pa.ArrowException) as error:
        reason = _database_message(first_line(error))
        kind = StorageError if isinstance(error, OperationalError) and _is_connection_loss(reason) else SchemaError
        raise kind(f"{origin}: {reason} (warehouse {warehouse})") from error


def _database_message(line: str) -> str:
    """The database's words, without the driver's status prefix: libpq's `ERROR:  ...` from
    `NOT_FOUND: Failed to prepare query: ERROR:  column "x" does not exist`."""
    if "ERROR:" in line:
        line = "ERROR: " + line.split("ERROR:", 1)[1].strip()
    return re.sub(r"\s+", " ", line)


def _is_connection_loss(reason: str) -> bool:
    return any(word in reason.lower() for word in ("connection", "timeout", "timed out", "unavailable"))


def _driver_arguments(warehouse: Warehouse):
    """The driver module, the URI it takes and its database options, the password placed where
    that driver reads it."""
    options = dict(warehouse.options)
    scheme = warehouse.scheme
    if scheme in ("postgresql", "postgres"):
        import adbc_driver_postgresql.dbapi as driver

        return driver, _with_password(warehouse.uri, warehouse.password), options
    if warehouse.password is not None:
        options["password"] = warehouse.password  # ADBC's standard option
    if scheme == "snowflake":
        import adbc_driver_snowflake.dbapi as driver

        return driver, warehouse.uri, options
    if scheme == "bigquery":
        import adbc_driver_bigquery.dbapi as driver

        project = urlsplit(warehouse.uri).hostname
        if project:
            options.setdefault("adbc.bigquery.sql.project_id", project)
        return driver, None, options
    import adbc_driver_flightsql.dbapi as driver

    return driver, warehouse.uri, options


def _with_password(uri: str, password: str | None) -> str:
    """libpq reads the password from the URI: put it there, in memory only, just to connect."""
    if not password:
        return uri
    parts = urlsplit(uri)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def _slices(batch: pa.RecordBatch, batch_rows: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, batch_rows):
        yield batch.slice(start, batch_rows)



def _scrubbed(text: str, warehouse: Warehouse) -> str:
    if warehouse.password:
        text = text.replace(warehouse.password, "***").replace(quote(warehouse.password, safe=""), "***")
    return text
