"""Iceberg tables: `iceberg://CATALOG/NAMESPACE.TABLE`, read at the current snapshot.

The catalog is configured as pyiceberg users already do (`.pyiceberg.yaml`, or
`PYICEBERG_CATALOG__<NAME>__URI`-style variables), where the table is read: on the launcher to
plan, on each worker to read through pyiceberg. Only the catalog's name travels in the pipeline.
Where the snapshot has no delete files and its Parquet files hold the columns under their
current names, the data files are read as Parquet read tasks like any other table (row groups
planned from footers, in parallel). Otherwise each data file is a read task of its own, read
through pyiceberg's scan, which applies the delete files and the schema's renames.
"""

import dataclasses
import functools
from urllib.parse import unquote

import pyarrow as pa

from pipeline.errors import ConfigError, SchemaError, StorageError, UsageError, first_line

__all__ = ["ICEBERG_SCHEME", "IcebergSnapshot", "is_iceberg", "namespace_tables", "open_iceberg", "scan_file"]

ICEBERG_SCHEME = "iceberg://"


@dataclasses.dataclass(frozen=True)
class IcebergSnapshot:
    snapshot: str  # the snapshot id, or "none" for a table never written
    schema: pa.Schema
    files: tuple[str, ...]  # the snapshot's data files
    direct: bool  # the files are read as Parquet; otherwise each through pyiceberg's scan
    rows: int = 0  # as the manifests count them (before delete files); to size the grouping


def is_iceberg(uri: str) -> bool:
    return uri.startswith(ICEBERG_SCHEME)


def split_uri(uri: str) -> tuple[str, str]:
    """(catalog, identifier) of `iceberg://CATALOG/IDENTIFIER`."""
    catalog, _, identifier = uri[len(ICEBERG_SCHEME):].partition("/")
    identifier = identifier.strip("/")
    if not catalog or not identifier:
        raise UsageError(f"{uri}: expected iceberg://CATALOG/NAMESPACE.TABLE or iceberg://CATALOG/NAMESPACE")
    return catalog, identifier


def table_exists(uri: str) -> bool:
    catalog, identifier = split_uri(uri)
    return "." in identifier and _catalog(catalog).table_exists(identifier)


def namespace_tables(uri: str) -> list[str]:
    """The `iceberg://` URIs of a namespace's tables, sorted."""
    catalog, namespace = split_uri(uri)
    try:
        identifiers = _catalog(catalog).list_tables(namespace)
    except Exception as error:  # pyiceberg's NoSuchNamespaceError, or the catalog's own
        raise UsageError(f"database {uri}: {first_line(error)}") from error
    return sorted(f"{ICEBERG_SCHEME}{catalog}/{'.'.join(parts)}" for parts in identifiers)


def open_iceberg(name: str, uri: str) -> IcebergSnapshot:
    """The table's current snapshot: its schema, its data files, and whether they read as Parquet."""
    table = _table(name, uri)
    schema = table.schema().as_arrow()
    snapshot = table.current_snapshot()
    if snapshot is None:
        return IcebergSnapshot("none", schema, (), direct=True)
    try:
        tasks = list(table.scan(snapshot_id=snapshot.snapshot_id).plan_files())
    except Exception as error:
        raise StorageError(f"table {name}: cannot plan the Iceberg table {uri}: {first_line(error)}") from error
    files = tuple(_path(task.file.file_path) for task in tasks)
    direct = (
        not any(task.delete_files for task in tasks)
        and all(str(task.file.file_format).upper().endswith("PARQUET") for task in tasks)
        and all(path.startswith(("s3://", "/")) for path in files)
        and not _renamed(table)
    )
    rows = sum(task.file.record_count for task in tasks)
    return IcebergSnapshot(str(snapshot.snapshot_id), schema, files, direct, rows)


def scan_file(uri: str, snapshot: str, path: str, batch_rows: int):
    """One data file's rows through pyiceberg's scan: delete files applied, columns as now named."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    table, tasks = _planned(uri, snapshot)
    scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    for batch in scan.to_record_batches([tasks[path]]):
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


@functools.lru_cache(maxsize=4)
def _planned(uri: str, snapshot: str):
    """The table and its snapshot's scan tasks by file, planned once per worker process."""
    table = _table(uri, uri)
    tasks = table.scan(snapshot_id=int(snapshot)).plan_files()
    return table, {_path(task.file.file_path): task for task in tasks}


def _renamed(table) -> bool:
    """A column that had another name in an earlier schema: its files hold the old name."""
    current = {field.field_id: field.name for field in table.schema().fields}
    return any(
        field.field_id in current and current[field.field_id] != field.name
        for schema in table.metadata.schemas
        for field in schema.fields
    )


def _table(name: str, uri: str):
    catalog, identifier = split_uri(uri)
    try:
        return _catalog(catalog).load_table(identifier)
    except ConfigError:
        raise
    except Exception as error:  # NoSuchTableError, or the catalog's own
        raise SchemaError(f"table {name}: cannot load the Iceberg table {uri}: {first_line(error)}") from error


def _catalog(name: str):
    """The catalog `name` as configured now: pyiceberg reads its configuration once, when it is
    imported; read here each time, a catalog configured later in the process is found too."""
    from pyiceberg.catalog import load_catalog  # loaded only for Iceberg tables
    from pyiceberg.utils.config import Config

    try:
        return load_catalog(name, **(Config().get_catalog_config(name) or {}))
    except Exception as error:  # pyiceberg's ValueError for a catalog it cannot find or configure
        reason = "not configured" if "URI missing" in str(error) else first_line(error)
        raise ConfigError(
            f"iceberg catalog {name}: {reason} (configure it in .pyiceberg.yaml, or by variables such as "
            f"PYICEBERG_CATALOG__{name.upper()}__URI)"
        ) from error


def _path(uri: str) -> str:
    """A data file's path as Beam's FileSystems opens it: `file://` as a path, `s3a://` as `s3://`."""
    if uri.startswith("file://"):
        return unquote(uri[len("file://"):])
    if uri.startswith(("s3a://", "s3n://")):
        return "s3://" + uri.split("://", 1)[1]
    return uri
