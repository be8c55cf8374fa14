"""The DuckDB baseline: the same Krux lines as ``krux-export run`` (docs/line.md), in one SQL query.

    python benchmarks/duckdb_export.py --database DIR --out FILE.txt[.gz] \
        [--group-by-user] [--compression gzip|none] [--threads 2]

Reads every Parquet file directly under ``--database`` whose name starts with
``--table-prefix`` (columns unioned by name), applies docs/line.md's rules (strip, split and de-duplicate
segments keeping the first occurrence, omit null and empty values, drop invalid rows as
``--skip-invalid-records`` would) and writes one line per row, or with ``--group-by-user`` one
line per user (every value list the union, de-duplicated and sorted by code point, attributes
after the segment attribute sorted by name). Used by ``benchmarks/run.py`` as the reference
both for the lines (outputs must hold the same multiset of lines) and for speed.

Supported attribute types: strings, integers and booleans, which is all the benchmark
generator writes. White space stripped is ASCII white space (the generator writes spaces only).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

WHITE_SPACE = " \t\n\r\x0b\x0c"
STRING_TYPES = {"VARCHAR"}
INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                 "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
MAX_VALUE_CHARS = 254  # a value of 255 code points or more is value_too_long


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tables(database: Path, prefix: str) -> list[str]:
    paths = sorted(str(p) for p in database.iterdir() if p.name.startswith(prefix) and p.suffix == ".parquet")
    if not paths:
        raise SystemExit(f"no Parquet table under {database} starting with {prefix!r}")
    return paths


def build_query(
    con: duckdb.DuckDBPyConnection,
    paths: list[str],
    *,
    user_column: str = "user_id",
    segment_column: str = "td_segment",
    segment_attribute: str = "segment",
    group_by_user: bool = False,
) -> str:
    """The SELECT producing one column, ``line``, of Krux lines."""
    source = f"read_parquet([{', '.join(map(sql_string, paths))}], union_by_name = true)"
    columns = con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    ws = sql_string(WHITE_SPACE)
    reserved_user = "'[\\^\\r\\n]'"
    reserved_segment = "'[\\^;\\r\\n]'"  # split on ',' already
    reserved_value = "'[\\^;,\\r\\n]'"

    projections = [
        f"trim({ident(user_column)}, {ws}) AS u",
        f"list_transform(string_split({ident(segment_column)}, ','), lambda x: trim(x, {ws})) AS s0",
    ]
    attributes = []  # (name, alias, is_string)
    for name, data_type, *_ in columns:
        if name in (user_column, segment_column):
            continue
        alias = f"a{len(attributes)}"
        if data_type in STRING_TYPES:
            projections.append(f"nullif(trim({ident(name)}, {ws}), '') AS {alias}")
            attributes.append((name, alias, True))
        elif data_type in INTEGER_TYPES or data_type == "BOOLEAN":
            projections.append(f"CAST({ident(name)} AS VARCHAR) AS {alias}")
            attributes.append((name, alias, False))
        else:
            raise SystemExit(f"column {name!r}: type {data_type} is not supported by this baseline")

    # The checks of docs/line.md, in their order; a row failing any of them is dropped.
    invalid = [
        "u IS NULL OR u = ''",
        f"regexp_matches(u, {reserved_user})",
        f"regexp_matches(array_to_string(segs, ','), {reserved_segment})",
        *(f"regexp_matches({alias}, {reserved_value})" for _, alias, s in attributes if s),
        f"coalesce(list_max(list_transform(segs, lambda x: length(x))), 0) > {MAX_VALUE_CHARS}",
        *(f"length({alias}) > {MAX_VALUE_CHARS}" for _, alias, s in attributes if s),
        "(len(segs) = 0 OR segs IS NULL)"
        + "".join(f" AND {alias} IS NULL" for _, alias, _ in attributes),
    ]
    valid_rows = f"""
        WITH src AS (SELECT {', '.join(projections)} FROM {source}),
        rows AS (
            SELECT * EXCLUDE (s0),
                   list_filter(s0, lambda x, i: x <> '' AND list_position(s0, x) = i) AS segs
            FROM src
        ),
        valid AS (
            SELECT * FROM rows WHERE NOT coalesce({' OR '.join(f'({c})' for c in invalid)}, false)
        )"""
    segment_pair = f"CASE WHEN len(segs) > 0 THEN {sql_string(segment_attribute + ':')} || array_to_string(segs, ',') END"
    if not group_by_user:
        pairs = [segment_pair] + [f"{sql_string(name + ':')} || {alias}" for name, alias, _ in attributes]
        return f"{valid_rows} SELECT u || '^' || concat_ws(';', {', '.join(pairs)}) AS line FROM valid"

    grouped = ["list_sort(list_distinct(flatten(list(segs)))) AS segs"] + [
        f"list_sort(list_distinct(list({alias}))) AS {alias}" for _, alias, _ in attributes
    ]
    pairs = [segment_pair] + [
        f"CASE WHEN len({alias}) > 0 THEN {sql_string(name + ':')} || array_to_string({alias}, ',') END"
        for name, alias, _ in sorted(attributes)
    ]
    return f"""{valid_rows},
        users AS (SELECT u, {', '.join(grouped)} FROM valid GROUP BY u)
        SELECT u || '^' || concat_ws(';', {', '.join(pairs)}) AS line FROM users"""


def export(database: Path, out: Path, *, prefix: str, group_by_user: bool, compression: str,
           threads: int, memory_limit: str | None = None, **columns) -> dict:
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")  # krux-export promises no order either
    con.execute(f"SET temp_directory = {sql_string(str(out.parent / '.duckdb_tmp'))}")
    if memory_limit:
        con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
    query = build_query(con, tables(database, prefix), group_by_user=group_by_user, **columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    # One VARCHAR column, no header, no quoting, no escaping: each row is written verbatim
    # followed by '\n' (lines never hold a tab, the unused delimiter).
    con.execute(
        f"COPY ({query}) TO {sql_string(str(out))} (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', "
        f"DELIMITER '\t', NEW_LINE '\n', COMPRESSION {'gzip' if compression == 'gzip' else 'uncompressed'})"
    )
    return {"object_uri": str(out), "bytes": out.stat().st_size,
            "duration_s": round(time.perf_counter() - started, 3), "duckdb": duckdb.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, type=Path)
    parser.add_argument("--table-prefix", default="segment_")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--group-by-user", action="store_true")
    parser.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's)")
    parser.add_argument("--user-column", default="user_id")
    parser.add_argument("--segment-column", default="td_segment")
    parser.add_argument("--segment-attribute", default="segment")
    parser.add_argument("--print-query", action="store_true", help="print the SQL and exit")
    args = parser.parse_args(argv)
    columns = dict(user_column=args.user_column, segment_column=args.segment_column,
                   segment_attribute=args.segment_attribute)
    if args.print_query:
        print(build_query(duckdb.connect(), tables(args.database, args.table_prefix),
                          group_by_user=args.group_by_user, **columns))
        return
    summary = export(args.database, args.out, prefix=args.table_prefix, group_by_user=args.group_by_user,
                     compression=args.compression, threads=args.threads, memory_limit=args.memory_limit,
                     **columns)
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
