"""Seeded segment tables for benchmarks: N rows over K Parquet tables, like real activations.

Users repeat across tables, rows carry 1-5 segments, attributes are sometimes empty or null,
and one column is an integer.

    python benchmarks/generate.py DIR --rows 1000000 --tables 8 [--seed 7]
"""

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SEGMENTS = np.array([f"segment_{i:03d}" for i in range(400)])
COUNTRIES = np.array(["US", "DE", "FR", "JP", "BR", "", "GB"])
ROW_GROUP_ROWS = 256 * 1024


def make_table(rows: int, users: int, rng: np.random.Generator) -> pa.Table:
    user_ids = pc.binary_join_element_wise(
        "u", pa.array(rng.integers(0, users, rows)).cast(pa.string()), ""
    )
    counts = rng.integers(1, 6, rows)
    picks = pa.array(SEGMENTS[rng.integers(0, len(SEGMENTS), counts.sum())])
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    segments = pc.binary_join(pa.ListArray.from_arrays(offsets, picks), ",")
    emails = pc.binary_join_element_wise(user_ids, "@example.com", "")
    email_mask = pa.array(rng.random(rows) < 0.3)
    return pa.table(
        {
            "user_id": user_ids,
            "td_segment": segments,
            "email": pc.if_else(email_mask, pa.scalar(None, pa.string()), emails),
            "country": pa.array(COUNTRIES[rng.integers(0, len(COUNTRIES), rows)]),
            "visits": pa.array(rng.integers(0, 10_000, rows), pa.int64()),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tables", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    root = Path(args.directory)
    root.mkdir(parents=True, exist_ok=True)
    users = max(1, args.rows // 3)  # each user in about three rows, across tables
    per_table = args.rows // args.tables
    for t in range(args.tables):
        rows = per_table + (args.rows - per_table * args.tables if t == args.tables - 1 else 0)
        pq.write_table(make_table(rows, users, rng), root / f"segment_{t:02d}.parquet", row_group_size=ROW_GROUP_ROWS)


if __name__ == "__main__":
    main()
