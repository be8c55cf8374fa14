"""Shards a run publishes, and how many are small (under S3's 5 MiB part minimum): a small
shard cannot be copied as a part, so the launcher downloads and re-sends it.

    PYTHONPATH=. .venv/bin/python benchmarks/tails.py --database DIR [--group-by-user] [--compression gzip] \
        [--beam-arg=--runner=FnApiRunner --beam-arg=--direct_running_mode=multi_threading \
         --beam-arg=--direct_num_workers=8]

Measured (1M benchmark rows, ungrouped gzip, 8 FnApiRunner threads, so 8 bundles): before the
tails were gathered, 8 shards, all 8 small (19.7 MB through the launcher); after, 3 shards, 2
small (9.9 MB). The default runner (2 worker processes) makes 2 bundles a stage: 2 shards at
1M rows, none small, before and after.

Runs one export in this process (default runner: FnApiRunner, 2 worker processes) to a
temporary local output root and prints the shard counts as JSON.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config.settings import RunSettings
from pipeline.storage import publish
from pipeline.launcher.run import run_export
from pipeline.storage.multipart import MIN_PART_BYTES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--group-by-user", action="store_true")
    parser.add_argument("--compression", default="gzip")
    parser.add_argument("--beam-arg", action="append", default=[], help="e.g. --beam-arg=--direct_num_workers=8")
    args = parser.parse_args()
    seen = {}
    original = publish.publish

    def counting(store, *, shards, **kwargs):
        seen["shards"] = len(shards)
        seen["small_shards"] = sum(shard.size < MIN_PART_BYTES for shard in shards)
        seen["small_bytes"] = sum(shard.size for shard in shards if shard.size < MIN_PART_BYTES)
        return original(store, shards=shards, **kwargs)

    publish.publish = counting
    with tempfile.TemporaryDirectory(prefix="krux-tails-") as out:
        settings = RunSettings(database=args.database, group_by_user=args.group_by_user,
                               compression=args.compression, output_root=out, beam_args=tuple(args.beam_arg))
        result = run_export(settings)
    print(json.dumps({"grouped": args.group_by_user, "lines": result.summary["lines_written"], **seen,
                      "load": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
