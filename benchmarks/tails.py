"""Shards a run publishes, and how many are small (under S3's 5 MiB part minimum): a small
shard cannot be copied as a part, so the launcher downloads and re-sends it.

    PYTHONPATH=. .venv/bin/python benchmarks/tails.py --database DIR [--group-by-user] [--compression gzip]

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
from pipeline.launcher import publish
from pipeline.launcher.run import run_export
from pipeline.storage.multipart import MIN_PART_BYTES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--group-by-user", action="store_true")
    parser.add_argument("--compression", default="gzip")
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
                               compression=args.compression, output_root=out)
        result = run_export(settings)
    print(json.dumps({"grouped": args.group_by_user, "lines": result.summary["lines_written"], **seen,
                      "load": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
