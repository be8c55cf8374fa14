"""Delta Lake tables: a folder holding `_delta_log/` is read at its latest version, through its log.

Every Parquet file under the folder is not the table: an overwrite or a delete leaves the old
files on disk until a vacuum, so reading them all would export removed rows. delta-rs (the
`deltalake` package) reads the log; the version's data files are then read as Parquet read
tasks like any other table (row groups planned from footers, in parallel), with the partition
columns (values in the log, not in the files) added and deletion vectors applied. A table whose
files cannot be read as they are (column mapping, or a reader feature this module does not
know) is read whole through delta-rs's own scan, which applies them: never read wrong.
"""

import dataclasses
import functools
import os
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import SchemaError, StorageError, first_line
from pipeline.sources.listing import expand_glob
from pipeline.sources.s3_access import resolve_s3_access

__all__ = ["DELTA_LOG", "DeltaFile", "DeltaSnapshot", "is_delta_table", "kept_rows", "open_delta", "scan_batches"]

DELTA_LOG = "_delta_log"

DIRECT_READER_FEATURES = frozenset({"deletionVectors", "timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"})
"""Reader features whose data files still read correctly as plain Parquet: deletion vectors are
applied here, the others change only the log or a type Arrow reads the same."""


@dataclasses.dataclass(frozen=True)
class DeltaFile:
    uri: str
    partition: tuple[tuple[str, pa.Scalar], ...]  # partition columns: values from the log
    has_deletion_vector: bool


@dataclasses.dataclass(frozen=True)
class DeltaSnapshot:
    version: int
    schema: pa.Schema  # the table's, partition columns included
    files: tuple[DeltaFile, ...]  # empty when `direct` is False
    direct: bool  # the files are read as Parquet; otherwise the table is read through delta-rs's scan
    rows: int = 0  # as the log counts them (before deletion vectors); to size the grouping


def is_delta_table(uri: str) -> bool:
    """A folder holding `_delta_log/` (local or `s3://`, listed through Beam as every table is)."""
    if not uri.startswith("s3://"):
        return os.path.isdir(os.path.join(uri, DELTA_LOG))
    return bool(expand_glob(uri.rstrip("/") + "/" + DELTA_LOG))


def open_delta(name: str, uri: str) -> DeltaSnapshot:
    """The table's latest version: its schema and, where they can be read as Parquet, its files."""
    table = _open(name, uri)
    schema = pa.schema(table.schema().to_arrow())
    version = table.version()
    protocol = table.protocol()
    features = set(protocol.reader_features or ())
    mapped = table.metadata().configuration.get("delta.columnMapping.mode", "none") != "none"
    actions = pa.table(table.get_add_actions(flatten=True))
    counted = actions.column("num_records") if "num_records" in actions.column_names else None
    rows = (pc.sum(counted).as_py() or 0) if counted is not None else 0
    if mapped or not features <= DIRECT_READER_FEATURES:
        return DeltaSnapshot(version, schema, (), direct=False, rows=rows)
    uris = [_local(u) for u in table.file_uris()]
    if len(uris) != actions.num_rows:
        raise StorageError(f"table {name}: the Delta log of {uri} lists {actions.num_rows} files, "
                           f"delta-rs gave {len(uris)}")
    partition_columns = table.metadata().partition_columns
    with_vectors = _deletion_vector_files(table) if "deletionVectors" in features else set()
    files = []
    for index, file_uri in enumerate(uris):
        partition = tuple(
            (column, actions.column(f"partition.{column}")[index].cast(schema.field(column).type))
            for column in partition_columns
        )
        files.append(DeltaFile(file_uri, partition, file_uri in with_vectors))
    return DeltaSnapshot(version, schema, tuple(files), direct=True, rows=rows)


def scan_batches(uri: str, version: int, batch_rows: int):
    """The whole table at `version`, through delta-rs's scan (column mapping, deletion vectors applied)."""
    table = _open(uri, uri, version)
    reader = pa.RecordBatchReader.from_stream(table.scan())
    for batch in reader:
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def kept_rows(uri: str, version: int, file_uri: str) -> pa.BooleanArray:
    """The keep mask (True: the row is in the table) of one data file's deletion vector."""
    return _vectors(uri, version)[file_uri]


@functools.lru_cache(maxsize=4)
def _vectors(uri: str, version: int) -> dict[str, pa.BooleanArray]:
    """Every deletion vector of a version, read once per worker process and table."""
    table = _open(uri, uri, version)
    vectors = {}
    for batch in pa.RecordBatchReader.from_stream(table.deletion_vectors()):
        for path, mask in zip(batch.column("filepath").to_pylist(), batch.column("selection_vector")):
            vectors[_local(path)] = pc.cast(mask.values, pa.bool_())
    return vectors


def _deletion_vector_files(table) -> set[str]:
    reader = pa.RecordBatchReader.from_stream(table.deletion_vectors())
    return {_local(path) for batch in reader for path in batch.column("filepath").to_pylist()}


def _open(name: str, uri: str, version: int | None = None):
    from deltalake import DeltaTable  # a Rust extension: loaded only for Delta tables

    options = resolve_s3_access().object_store_options() if uri.startswith("s3://") else None
    try:
        return DeltaTable(uri.rstrip("/"), version=version, storage_options=options)
    except Exception as error:  # delta-rs raises its own kinds, and OSError for storage
        kind = StorageError if isinstance(error, OSError) else SchemaError
        raise kind(f"table {name}: cannot read the Delta table {uri}: {first_line(error)}") from error


def _local(uri: str) -> str:
    """A local file URI as a path (what Beam's FileSystems opens); `s3://` URIs unchanged."""
    return unquote(uri[len("file://"):]) if uri.startswith("file://") else uri
