"""Seeded segment tables for benchmarks: N rows over K Parquet tables, like real activations.

    python benchmarks/generate.py DIR --rows 1000000 --tables 8 [--seed 7] [--invalid-fraction 0.1]

Writes ``DIR/segment_00.parquet`` ... with columns, in this order:

- ``user_id`` (string): about ``rows / 3`` distinct users, so a user appears in about three
  rows spread over the tables; 1% carry surrounding white space (`` u123 ``), which a Krux
  line strips (and grouping then merges with ``u123``).
- ``td_segment`` (string): 1-5 segments per row drawn from 400 names with a skewed (Zipf-like)
  popularity, so a row sometimes repeats a segment; 10% of rows join them with ``", "``
  (white space to strip), 2% end with a trailing comma (an empty entry to drop).
- ``email`` (string): 30% null.
- ``country`` (string): some empty strings and some white-space-only strings (omitted), some
  padded values (`` US ``).
- ``visits`` (int64): 5% null.

Every row is valid under docs/line.md's rules (non-empty user, at least one segment, no reserved
characters, no value of 255 characters or more), so an export without
``--skip-invalid-records`` succeeds and writes one line per row. Same arguments, same bytes.

``--invalid-fraction F`` then makes about F of the rows invalid, a third for each of
``missing_user_id`` (empty user id), ``reserved_character`` (a ``;`` in a segment) and
``value_too_long`` (a 300-character email), for benchmarks of ``--skip-invalid-records``
and ``--rejects``. The choice draws on its own random stream: the other rows are the bytes
the same arguments give without it.

``--hot-user-rows N`` gives about N of the rows, spread over every table, the placeholder user
id ``0`` (issue 19: one user holding a large share of the rows, for the grouping's memory),
also on its own random stream.
"""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SEGMENTS = pa.array([f"segment_{i:03d}" for i in range(400)])
SEGMENT_WEIGHTS = 1.0 / np.arange(1, len(SEGMENTS) + 1) ** 0.8
SEGMENT_CDF = np.cumsum(SEGMENT_WEIGHTS / SEGMENT_WEIGHTS.sum())
COUNTRIES = pa.array(["US", "US", "DE", "FR", "JP", "BR", "", "GB", " US ", "  ", "IN"])
ROW_GROUP_ROWS = 256 * 1024


def _where(mask: np.ndarray, when_true: pa.Array, when_false: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(mask), when_true, when_false)


def make_table(rows: int, users: int, rng: np.random.Generator) -> pa.Table:
    user_ids = pc.binary_join_element_wise(
        "u", pa.array(rng.integers(0, users, rows)).cast(pa.string()), ""
    )
    padded_users = pc.binary_join_element_wise(" ", user_ids, " ", "")
    counts = rng.integers(1, 6, rows)
    picks = np.searchsorted(SEGMENT_CDF, rng.random(counts.sum()), side="right")
    picks = SEGMENTS.take(np.minimum(picks, len(SEGMENTS) - 1))
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    segments = pc.binary_join(pa.ListArray.from_arrays(offsets, picks), ",")
    segments = _where(rng.random(rows) < 0.10, pc.replace_substring(segments, ",", ", "), segments)
    segments = _where(
        rng.random(rows) < 0.02, pc.binary_join_element_wise(segments, ",", ""), segments
    )
    emails = pc.binary_join_element_wise(user_ids, "@example.com", "")
    visits = pa.array(rng.integers(0, 10_000, rows), pa.int64(), mask=rng.random(rows) < 0.05)
    return pa.table(
        {
            "user_id": _where(rng.random(rows) < 0.01, padded_users, user_ids),
            "td_segment": segments,
            "email": _where(rng.random(rows) < 0.3, pa.nulls(rows, pa.string()), emails),
            "country": COUNTRIES.take(rng.integers(0, len(COUNTRIES), rows)),
            "visits": visits,
        }
    )


def make_invalid(table: pa.Table, fraction: float, rng: np.random.Generator) -> pa.Table:
    """About `fraction` of the rows made invalid, one reason in three each (see the module doc)."""
    picked = rng.random(table.num_rows) < fraction
    kind = rng.integers(0, 3, table.num_rows)
    columns = {
        "user_id": (0, ""),
        "td_segment": (1, "segment_000;x"),
        "email": (2, "x" * 300),
    }
    for name, (which, bad_value) in columns.items():
        mask = picked & (kind == which)
        bad_values = pa.array(np.full(mask.sum(), bad_value, dtype=object), pa.string())
        column = pc.replace_with_mask(table.column(name).combine_chunks(), pa.array(mask), bad_values)
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table


def make_hot_user(table: pa.Table, fraction: float, rng: np.random.Generator) -> pa.Table:
    """About `fraction` of the rows given the user id ``0``."""
    picked = pa.array(rng.random(table.num_rows) < fraction)
    users = pc.if_else(picked, pa.scalar(HOT_USER), table.column("user_id").combine_chunks())
    return table.set_column(table.schema.get_field_index("user_id"), "user_id", users)


HOT_USER = "0"


def generate(
    directory: str | Path, rows: int, tables: int = 8, seed: int = 7, invalid_fraction: float = 0.0,
    hot_user_rows: int = 0,
) -> list[Path]:
    """Write the tables; returns their paths."""
    rng = np.random.default_rng(seed)
    invalid_rng = np.random.default_rng([seed, 1])
    hot_rng = np.random.default_rng([seed, 2])
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    users = max(1, rows // 3)  # each user in about three rows, across tables
    per_table = rows // tables
    paths = []
    for t in range(tables):
        n = per_table + (rows - per_table * tables if t == tables - 1 else 0)
        path = root / f"segment_{t:02d}.parquet"
        table = make_table(n, users, rng)
        if invalid_fraction:
            table = make_invalid(table, invalid_fraction, invalid_rng)
        if hot_user_rows:
            table = make_hot_user(table, hot_user_rows / rows, hot_rng)
        pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--invalid-fraction", type=float, default=0.0, help="share of rows made invalid")
    parser.add_argument("--hot-user-rows", type=int, default=0, help="rows given the placeholder user id 0")
    args = parser.parse_args()
    generate(args.directory, args.rows, args.tables, args.seed, args.invalid_fraction, args.hot_user_rows)


if __name__ == "__main__":
    main()
