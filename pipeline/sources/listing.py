"""Finding tables: globs, database folders and table names, local or `s3://`.

Listing goes through Beam's FileSystems for `s3://` (directories end in "/"), so it honours
the same options and the standard AWS credential chain as reading.
"""

import fnmatch
import glob
import os

from apache_beam.io.filesystems import FileSystems

from pipeline.errors import StorageError, UsageError, first_line
from pipeline.sources.iceberg import ICEBERG_SCHEME, namespace_tables, table_exists
from pipeline.storage.s3 import parse_s3_uri

CSV_SUFFIXES = (".csv.gz", ".csv")
PARQUET_SUFFIX = ".parquet"


def find_tables(sources, database, table_prefix) -> list[tuple[str, str]]:
    """(table name, uri) for every `--source` match and every database entry with the prefix."""
    found = []
    for source in sources:
        matches = _iceberg_source(source) if source.startswith(ICEBERG_SCHEME) else expand_glob(source)
        if not matches:
            missing = "no such Iceberg table" if source.startswith(ICEBERG_SCHEME) else "no such file or directory"
            raise UsageError(f"source {source}: {missing}")
        found.extend(matches)
    if database:
        found.extend(database_tables(database, table_prefix))
    if not found:
        raise UsageError("no tables: give --source or --database")
    return unique_names((table_name(uri), uri) for uri in found)


def database_tables(database: str, table_prefix: str) -> list[str]:
    """The table entries directly under a database folder (or the tables of an Iceberg namespace)
    whose names start with the prefix."""
    if database.startswith(ICEBERG_SCHEME):

        entries = [uri for uri in namespace_tables(database) if table_name(uri).startswith(table_prefix)]
    else:
        entries = [uri for uri in list_dir(database) if base_name(uri).startswith(table_prefix)]
        entries = [uri for uri in entries if _is_table_entry(uri)]
    if not entries:
        raise UsageError(f"database {database}: no table whose name starts with {table_prefix!r}")
    return entries


def unique_names(named_uris) -> list[tuple[str, str]]:
    """The (name, uri) pairs with a repeat of the same pair dropped; two uris of one name refused."""
    named, seen = [], {}
    for name, uri in named_uris:
        if name in seen:
            if seen[name] == uri:
                continue
            raise UsageError(f"two tables are named {name}: {seen[name]} and {uri}")
        seen[name] = uri
        named.append((name, uri))
    return named


def table_name(uri: str) -> str:
    if uri.startswith(ICEBERG_SCHEME):  # iceberg://CATALOG/NAMESPACE.TABLE
        return uri.rstrip("/").rsplit(".", 1)[-1]
    name = base_name(uri)
    for suffix in (*CSV_SUFFIXES, PARQUET_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def base_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def is_csv(uri: str) -> bool:
    return uri.endswith(CSV_SUFFIXES)


def is_data_file(uri: str) -> bool:
    name = base_name(uri)
    return not uri.endswith("/") and not name.startswith(("_", ".")) and not is_csv(uri)


def _is_table_entry(uri: str) -> bool:
    return uri.endswith("/") or is_csv(uri) or uri.endswith(PARQUET_SUFFIX)


def _iceberg_source(uri: str) -> list[str]:

    return [uri] if table_exists(uri) else []


def expand_glob(pattern: str) -> list[str]:
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
        for uri in list_dir(f"s3://{bucket}/{parent}")
        if fnmatch.fnmatchcase(uri.rstrip("/").rsplit("/", 1)[-1], key.rsplit("/", 1)[-1])
    ]


def is_dir(uri: str) -> bool:
    return uri.endswith("/") or (not uri.startswith("s3://") and os.path.isdir(uri))


def list_dir(uri: str) -> list[str]:
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
        raise StorageError(f"cannot list {prefix}: {first_line(error)}") from error
    return sorted(metadata.path for result in results for metadata in result.metadata_list)
