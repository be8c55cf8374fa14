"""Input tables: finding them, checking every schema before any data is read, reading them.

A table is a Parquet file, a directory of Parquet files, or a CSV file (`.csv`, `.csv.gz`),
local or on `s3://`. Everything goes through Beam's FileSystems, so listing and reading
honour the same options and the standard AWS credential chain (the customer's own storage,
never the partner's connection). The result is a list of `Table`s and the `ReadTask`s that
the pipeline reads in parallel, one per Parquet row-group range or CSV file; `read_task`
turns one task into Arrow record batches.
"""

import csv
import dataclasses
import fnmatch
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io.aws import s3io
from apache_beam.io.aws.clients.s3.messages import S3ClientError
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.config.settings import ATTRIBUTE_NAME_PATTERN
from pipeline.errors import SchemaError, StorageError, UsageError
from pipeline.krux.lines import LineRules, attribute_type_supported, is_string_type
from pipeline.storage.s3 import parse_s3_uri

BATCH_ROWS = 64 * 1024
CSV_BLOCK_BYTES = 8 * 1024 * 1024
CSV_SUFFIXES = (".csv.gz", ".csv")
PARQUET_SUFFIX = ".parquet"
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
class ReadTask:
    """One unit of parallel reading: row groups of one Parquet file, or one CSV file."""

    table: str
    path: str
    format: str  # "parquet" | "csv"
    row_groups: tuple[int, ...] = ()
    first_row: int | None = None  # row number in the table of the task's first row
    columns: tuple[str, ...] = ()  # CSV header: every column is read as a string
    rows: int | None = None  # from the Parquet footer; None for CSV (unknown until read)


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    uri: str
    tasks: tuple[ReadTask, ...]
    columns: tuple[str, ...]
    rows: int = 0  # counted by the Parquet footers; estimated from the file size for CSV


class TableBatch(NamedTuple):
    table: str
    first_row: int | None  # table row number of the batch's first row, when known
    batch: pa.RecordBatch


def tables_of(settings) -> list[Table]:
    """The run's tables (`RunSettings` sources and database), every schema checked."""
    rules = LineRules(settings.user_column, settings.segment_column, settings.segment_attribute)
    return load_tables(find_tables(settings.sources, settings.database, settings.table_prefix), rules)


def find_tables(sources, database, table_prefix) -> list[tuple[str, str]]:
    """(table name, uri) for every `--source` match and every database entry with the prefix."""
    found = []
    for source in sources:
        matches = _expand_glob(source)
        if not matches:
            raise UsageError(f"source {source}: no such file or directory")
        found.extend(matches)
    if database:
        entries = [uri for uri in _list_dir(database) if _base_name(uri).startswith(table_prefix)]
        entries = [uri for uri in entries if _is_table_entry(uri)]
        if not entries:
            raise UsageError(f"database {database}: no table whose name starts with {table_prefix!r}")
        found.extend(entries)
    if not found:
        raise UsageError("no tables: give --source or --database")
    named, seen = [], {}
    for uri in found:
        name = _table_name(uri)
        if name in seen:
            if seen[name] == uri:
                continue
            raise UsageError(f"two tables are named {name}: {seen[name]} and {uri}")
        seen[name] = uri
        named.append((name, uri))
    return named


def load_tables(named_uris, rules: LineRules) -> list[Table]:
    """Reads and checks each table's schema (every file's), and plans its read tasks.

    Every table's files are listed, then every footer (and CSV header) is read, by threads;
    the checks then go in table and file order, so the error reported is the same as if the
    files had been read one by one.
    """
    named_uris = list(named_uris)
    with ThreadPoolExecutor(FOOTER_THREADS) as pool:
        files = _in_order(pool, lambda named: _table_files(*named), named_uris)
        jobs = [(name, path) for (name, _), paths in zip(named_uris, files) if not isinstance(paths, Exception)
                for path in paths]
        heads = dict(zip(jobs, _in_order(pool, lambda job: _read_head(*job), jobs)))
    tables = []
    for (name, uri), paths in zip(named_uris, files):
        if isinstance(paths, Exception):
            raise paths
        tables.append(_load_table(name, uri, paths, [heads[(name, path)] for path in paths], rules))
    return tables


def _in_order(pool: ThreadPoolExecutor, fn, items) -> list:
    """`fn` of each item on the pool, results in order; an exception is returned, not raised."""
    def attempt(item):
        try:
            return fn(item)
        except Exception as error:  # noqa: BLE001 (raised by the caller, in order)
            return error
    return list(pool.map(attempt, items))


def check_columns(table: str, schema: pa.Schema, rules: LineRules, where: str = "") -> None:
    """User and segment columns present and string-typed; attributes nameable and writable."""
    place = f"table {table}{where}"
    names = schema.names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaError(f"{place}: column {duplicates[0]} appears more than once")
    for column in (rules.user_column, rules.segment_column):
        if column not in names:
            raise SchemaError(f"{place}: no column {column} (columns: {', '.join(names)})")
        data_type = schema.field(column).type
        if not (is_string_type(data_type) or pa.types.is_null(data_type)):
            raise SchemaError(f"{place}: column {column} is {data_type}, expected a string column")
    for field in schema:
        if field.name in (rules.user_column, rules.segment_column):
            continue
        if not ATTRIBUTE_NAME_PATTERN.fullmatch(field.name):
            raise SchemaError(
                f"{place}: column {field.name!r} cannot be an attribute name "
                "(allowed: letters, digits, '_', '.', '-')"
            )
        if field.name == rules.segment_attribute:
            raise SchemaError(
                f"{place}: column {field.name} has the segment attribute's name; "
                "rename it or choose another --segment-attribute"
            )
        if not attribute_type_supported(field.type):
            raise SchemaError(f"{place}: column {field.name} is {field.type}, which cannot be written as text")


def table_files(name: str, uri: str) -> tuple[str, list[str], tuple[str, ...]]:
    """A table's format ("parquet" or "csv"), its data files in order, and a CSV's header."""
    files = _table_files(name, uri)
    if _is_csv(uri):
        return "csv", files, tuple(_csv_header(name, uri))
    return "parquet", files, ()


def _table_files(name: str, uri: str) -> list[str]:
    """The files of a table: a CSV file, a Parquet file, or a directory's Parquet files."""
    if _is_csv(uri) or not _is_dir(uri):
        return [uri]
    files = sorted(u for u in _list_dir(uri) if _is_data_file(u))
    if not files:
        raise SchemaError(f"table {name}: no Parquet files in {uri}")
    return files


def _read_head(name: str, path: str):
    """What planning needs of one file: a CSV's header and size, or a Parquet file's footer."""
    if _is_csv(path):
        return _csv_header(name, path), _file_size(name, path)
    return _parquet_metadata(name, path)


def _load_table(name: str, uri: str, paths: list[str], heads: list, rules: LineRules) -> Table:
    """Checks the schemas and plans the read tasks of a table from its files' heads."""
    for head in heads:
        if isinstance(head, Exception):
            raise head
    if _is_csv(uri):
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
        raise kind(f"table {table}: cannot read Parquet file {path}: {_first_line(error)}") from error


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
        raise kind(f"table {table}: cannot read CSV file {path}: {_first_line(error)}") from error


def _csv_header(table: str, uri: str) -> list[str]:
    try:
        with open_csv_stream(uri) as stream:
            first_line = _read_line(stream)
        header = next(csv.reader([first_line.decode("utf-8-sig")]), None)
    except Exception as error:
        kind = StorageError if is_storage_failure(error) else SchemaError
        raise kind(f"table {table}: cannot read CSV file {uri}: {_first_line(error)}") from error
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _table_name(uri: str) -> str:
    name = _base_name(uri)
    for suffix in (*CSV_SUFFIXES, PARQUET_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _base_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def _is_csv(uri: str) -> bool:
    return uri.endswith(CSV_SUFFIXES)


def _is_data_file(uri: str) -> bool:
    name = _base_name(uri)
    return not uri.endswith("/") and not name.startswith(("_", ".")) and not _is_csv(uri)


def _is_table_entry(uri: str) -> bool:
    return uri.endswith("/") or _is_csv(uri) or uri.endswith(PARQUET_SUFFIX)


# Listing: local paths with os/glob; s3:// through Beam's FileSystems (directories end in "/").


def _expand_glob(pattern: str) -> list[str]:
    if not pattern.startswith("s3://"):
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        return [m + "/" if os.path.isdir(m) else m for m in matches if os.path.exists(m)]
    bucket, key = parse_s3_uri(pattern)
    if not glob.has_magic(key):
        entries = _s3_keys(f"s3://{bucket}/{key}")
        if any(uri == pattern for uri in entries):
            return [pattern]
        folder = f"s3://{bucket}/{key.rstrip('/')}/"
        return [folder] if any(uri.startswith(folder) for uri in entries) else []
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    if glob.has_magic(parent):
        raise UsageError(f"source {pattern}: a glob may only be in the last part of the path")
    return [
        uri
        for uri in _list_dir(f"s3://{bucket}/{parent}")
        if fnmatch.fnmatchcase(uri.rstrip("/").rsplit("/", 1)[-1], key.rsplit("/", 1)[-1])
    ]


def _is_dir(uri: str) -> bool:
    return uri.endswith("/") or (not uri.startswith("s3://") and os.path.isdir(uri))


def _list_dir(uri: str) -> list[str]:
    """The entries directly under a directory: files, and folders ending in "/"."""
    if not uri.startswith("s3://"):
        if not os.path.isdir(uri):
            raise UsageError(f"{uri}: no such directory")
        root = uri.rstrip("/")
        entries = sorted(os.listdir(root))
        return [f"{root}/{e}/" if os.path.isdir(f"{root}/{e}") else f"{root}/{e}" for e in entries]
    folder = uri.rstrip("/") + "/" if parse_s3_uri(uri)[1] else uri
    children = set()
    for key_uri in _s3_keys(folder):
        rest = key_uri[len(folder) :]
        if rest:
            name, slash, _ = rest.partition("/")
            children.add(folder + name + slash)
    return sorted(children)


def _s3_keys(prefix: str) -> list[str]:
    """Every object URI starting with `prefix`."""
    try:
        results = FileSystems.match([prefix + "**"])  # Beam's `*` stops at "/": folders need `**`
    except Exception as error:
        raise StorageError(f"cannot list {prefix}: {_first_line(error)}") from error
    return sorted(metadata.path for result in results for metadata in result.metadata_list)


# Reading one task into Arrow record batches.


def read_task(task, batch_rows: int = BATCH_ROWS, csv_block_bytes: int = CSV_BLOCK_BYTES):
    """The `TableBatch`es of one read task, in order, skipping empty batches."""
    row = task.first_row
    for batch in _batches(task, batch_rows, csv_block_bytes):
        if batch.num_rows:
            yield TableBatch(task.table, row, batch)
            row = row + batch.num_rows if row is not None else None


def _batches(task, batch_rows: int, csv_block_bytes: int):
    if task.format == "parquet":
        with FileSystems.open(task.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=list(task.row_groups)):
                _check_values(batch)
                yield batch
        return
    with open_csv_stream(task.path) as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=csv_block_bytes),
            # A quoted value may hold a line break (RFC 4180); without this, a block boundary
            # after such a break fails the read ("CSV parser got out of sync with chunker").
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in task.columns},
                strings_can_be_null=False,
            ),
        )
        yield from reader


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
