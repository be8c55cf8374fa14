"""The Polars baseline: the same Krux lines as ``krux-export run`` (docs/line.md), one lazy query.

    python benchmarks/polars_export.py --database DIR --out FILE.txt[.gz] \
        [--group-by-user] [--compression gzip|none] [--threads 2]

What a data engineer would write with Polars: a lazy scan of the Parquet tables, string and
list expressions for docs/line.md's rules (strip, split and de-duplicate segments keeping the
first occurrence, omit null and empty values, drop invalid rows as ``--skip-invalid-records``
would), ``group_by`` with list aggregations for ``--group-by-user`` (every value list the
union, de-duplicated and sorted by code point, attributes after the segment attribute sorted
by name), and Polars' own CSV sink with its gzip. Used by ``benchmarks/run.py`` beside DuckDB:
its lines must be the same multiset.

Supported attribute types: strings, integers and booleans, which is all the benchmark
generator writes. White space stripped is ASCII white space (the generator writes spaces only).
``--threads`` sets ``POLARS_MAX_THREADS`` before Polars is imported.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

WHITE_SPACE = " \t\n\r\x0b\x0c"
MAX_VALUE_CHARS = 254  # a value of 255 code points or more is value_too_long


def tables(database: Path, prefix: str) -> list[str]:
    paths = sorted(str(p) for p in database.iterdir() if p.name.startswith(prefix) and p.suffix == ".parquet")
    if not paths:
        raise SystemExit(f"no Parquet table under {database} starting with {prefix!r}")
    return paths


def build_query(pl, paths: list[str], *, user_column: str = "user_id", segment_column: str = "td_segment",
                segment_attribute: str = "segment", group_by_user: bool = False):
    """A LazyFrame of one column, ``line``, of Krux lines."""
    source = pl.scan_parquet(paths, missing_columns="insert")
    schema = source.collect_schema()
    element = pl.element()
    segments = (
        pl.col(segment_column).str.split(",")
        .list.eval(element.str.strip_chars(WHITE_SPACE))
        .list.eval(element.filter(element != ""))
        .list.unique(maintain_order=True)
        .fill_null([])
        .alias("segs")
    )
    columns = [pl.col(user_column).str.strip_chars(WHITE_SPACE).alias("u"), segments]
    attributes = []  # (name, alias, is_string)
    for name, data_type in schema.items():
        if name in (user_column, segment_column):
            continue
        alias = f"a{len(attributes)}"
        if data_type == pl.String:
            value = pl.col(name).str.strip_chars(WHITE_SPACE)
            columns.append(pl.when(value != "").then(value).alias(alias))
            attributes.append((name, alias, True))
        elif data_type.is_integer() or data_type == pl.Boolean:
            columns.append(pl.col(name).cast(pl.String).alias(alias))
            attributes.append((name, alias, False))
        else:
            raise SystemExit(f"column {name!r}: type {data_type} is not supported by this baseline")

    # The checks of docs/line.md; a row failing any of them is dropped.
    segs = pl.col("segs")
    invalid = [
        pl.col("u").is_null() | (pl.col("u") == ""),
        pl.col("u").str.contains(r"[\^\r\n]"),
        segs.list.eval(element.str.contains(r"[\^;\r\n]")).list.any(),
        *(pl.col(alias).str.contains(r"[\^;,\r\n]") for _, alias, s in attributes if s),
        segs.list.eval(element.str.len_chars() > MAX_VALUE_CHARS).list.any(),
        *(pl.col(alias).str.len_chars() > MAX_VALUE_CHARS for _, alias, s in attributes if s),
        pl.all_horizontal(segs.list.len() == 0, *(pl.col(alias).is_null() for _, alias, _ in attributes)),
    ]
    valid = source.select(columns).filter(~pl.any_horizontal(*invalid).fill_null(False))

    def pair(name: str, values: pl.Expr) -> pl.Expr:
        return pl.when(values.list.len() > 0).then(pl.lit(name + ":") + values.list.join(","))

    if not group_by_user:
        pairs = [pair(segment_attribute, segs)] + [pl.lit(name + ":") + pl.col(alias) for name, alias, _ in attributes]
    else:
        valid = valid.group_by("u").agg(
            segs.list.explode(keep_nulls=False, empty_as_null=False).unique().sort(),
            *(pl.col(alias).drop_nulls().unique().sort() for _, alias, _ in attributes),
        )
        pairs = [pair(segment_attribute, segs)] + [pair(name, pl.col(alias)) for name, alias, _ in sorted(attributes)]
    line = pl.col("u") + "^" + pl.concat_str(pairs, separator=";", ignore_nulls=True)
    return valid.select(line.alias("line"))


def export(database: Path, out: Path, *, prefix: str, group_by_user: bool, compression: str, **columns) -> dict:
    import polars as pl

    started = time.perf_counter()
    query = build_query(pl, tables(database, prefix), group_by_user=group_by_user, **columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    # No header, no quoting: each line verbatim, then '\n' (lines never hold the unused tab).
    query.sink_csv(out, include_header=False, separator="\t", quote_style="never", maintain_order=False,
                   compression="gzip" if compression == "gzip" else "uncompressed", check_extension=False)
    return {"object_uri": str(out), "bytes": out.stat().st_size,
            "duration_s": round(time.perf_counter() - started, 3), "polars": pl.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, type=Path)
    parser.add_argument("--table-prefix", default="segment_")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--group-by-user", action="store_true")
    parser.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--user-column", default="user_id")
    parser.add_argument("--segment-column", default="td_segment")
    parser.add_argument("--segment-attribute", default="segment")
    parser.add_argument("--explain", action="store_true", help="print Polars' optimized plan and exit")
    args = parser.parse_args(argv)
    os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # read once, when Polars is imported
    columns = dict(user_column=args.user_column, segment_column=args.segment_column,
                   segment_attribute=args.segment_attribute)
    if args.explain:
        import polars as pl

        print(build_query(pl, tables(args.database, args.table_prefix), group_by_user=args.group_by_user,
                          **columns).explain())
        return
    summary = export(args.database, args.out, prefix=args.table_prefix, group_by_user=args.group_by_user,
                     compression=args.compression, **columns)
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
