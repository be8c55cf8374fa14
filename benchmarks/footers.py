"""Planning time of a table of many small Parquet files on a local S3 server (moto, its own process).

    .venv/bin/python benchmarks/footers.py [--files 1000] [--threads 16]

Puts FILES one-row Parquet files under one table prefix, then times `load_tables` (listing,
every footer, the checks, the read tasks) with FOOTER_THREADS threads, and with one thread
(the same reader per thread), and the earlier way on the first 100 files: one thread, Beam's
`FileSystems.open` per file, which makes a new boto3 session each time. Target: 1,000 files
plan in seconds.
"""

import argparse
import io
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import pyarrow as pa
import pyarrow.parquet as pq
import run
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.krux.lines import LineRules
from pipeline.launcher.beam_options import configure_filesystems
from pipeline.sources import tables as inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=inputs.FOOTER_THREADS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/krux-bench"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.update(run.s3_env())
    server = run.S3Server(args.work)
    try:
        os.environ["AWS_ENDPOINT_URL_S3"] = server.url
        buffer = io.BytesIO()
        pq.write_table(pa.table({"user_id": ["u1"], "td_segment": ["s"]}), buffer)
        keys = [f"footers/segment_a/part-{n:05d}.parquet" for n in range(args.files)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda key: server.client.put_object(Bucket=run.BUCKET, Key=key, Body=buffer.getvalue()), keys))
        configure_filesystems(PipelineOptions([]))
        rules = LineRules("user_id", "td_segment", "segment")
        for threads in (args.threads, 1):
            inputs.FOOTER_THREADS = threads
            load = os.getloadavg()[0]
            started, cpu = time.perf_counter(), time.process_time()
            (table,) = inputs.load_tables([("segment_a", f"s3://{run.BUCKET}/footers/segment_a/")], rules)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert len(table.tasks) == args.files and table.rows == args.files
            print(f"{args.files} files, {threads} threads: {wall:.1f} s wall, {cpu:.1f} s CPU (load {load:.1f})",
                  flush=True)
        inputs.FOOTER_THREADS = 1
        open_for_footer = inputs._open_for_footer
        inputs._open_for_footer = lambda path: FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
        started, cpu = time.perf_counter(), time.process_time()
        for key in keys[:100]:
            inputs._parquet_metadata("segment_a", f"s3://{run.BUCKET}/{key}")
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        inputs._open_for_footer = open_for_footer
        print(f"100 files one by one through FileSystems.open (before): {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        server.close()


if __name__ == "__main__":
    main()
