"""`WriteShards`: blocks of Krux lines into shard objects under the run's staging prefix.

Each bundle writes its own shards, rolling over at `target_bytes`, so memory stays flat
however big the audience. Compressed shards are one gzip member each (igzip level 1, about
ten times zlib level 6's speed), so their concatenation is one valid gzip file.
Each shard is a single PUT: a killed worker leaves no open multipart upload. A retried
bundle's shards have fresh names and are never in the manifest, so they are never merged.
"""

import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue
from isal import isal_zlib

from pipeline.krux.report import RunReport
from transforms import metrics
from transforms.progress import ProgressChannel

__all__ = ["WriteShards", "lines_buffer"]

# Memory per worker is about twice this (buffered parts, then one joined body); 32 MiB parts
# keep 10,000 parts (S3's cap) above 300 GiB of compressed lines.
SHARD_TARGET_BYTES = 32 * 1024 * 1024
GZIP_LEVEL = 1
GZIP_WBITS = 31  # zlib's "gzip container" window bits
# The compressor holds back output until its buffers fill, so a shard also rolls over after
# this many times `target_bytes` of input (Krux lines compress about 4-6x at level 1).
MAX_RATIO = 8


def lines_buffer(lines: pa.Array) -> memoryview:
    """The bytes of `\\n`-terminated lines, straight from the Arrow data buffer (no copy per line)."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return memoryview(b"")
    offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=offset_type)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return memoryview(lines.buffers()[2])[start:end]


class WriteShards(beam.PTransform):
    """Writes line arrays as shards; outputs one `RunReport` (shards, lines) per shard.

    Counts lines, shards and their bytes (Beam counters), and reports shards to `progress`.
    """

    def __init__(
        self,
        store_spec,
        prefix: str,
        compression: str,
        *,
        target_bytes: int = SHARD_TARGET_BYTES,
        progress: ProgressChannel | None = None,
    ):
        super().__init__()
        self._fn = _WriteShardsFn(store_spec, prefix, compression, target_bytes, progress)

    def expand(self, lines):
        return lines | "PutShards" >> beam.ParDo(self._fn)


class _WriteShardsFn(beam.DoFn):
    def __init__(self, store_spec, prefix, compression, target_bytes, progress):
        self._store_spec = store_spec
        self._prefix = prefix
        self._gzip = compression == "gzip"
        self._target_bytes = target_bytes
        self._progress = progress
        self._progress_writer = None
        self._lines_written = metrics.counter(metrics.LINES_WRITTEN)
        self._shards_written = metrics.counter(metrics.SHARDS_WRITTEN)
        self._shard_bytes = metrics.counter(metrics.SHARD_BYTES)

    def setup(self):
        self._store = self._store_spec.open()
        self._progress_writer = self._progress.writer() if self._progress else None

    def teardown(self):
        if self._progress_writer:
            self._progress_writer.close()

    def start_bundle(self):
        self._start_shard()

    def process(self, lines):
        data = lines_buffer(lines)
        if not len(data):
            return
        self._parts.append(self._compressor.compress(data) if self._gzip else bytes(data))
        self._size += len(self._parts[-1])
        self._input_size += len(data)
        self._lines += len(lines)
        if self._size >= self._target_bytes or self._input_size >= MAX_RATIO * self._target_bytes:
            yield self._put_shard()
            self._start_shard()

    def finish_bundle(self):
        if self._lines:
            yield WindowedValue(self._put_shard(), 0, [GlobalWindow()])

    def _start_shard(self):
        self._compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS) if self._gzip else None
        self._parts, self._size, self._input_size, self._lines = [], 0, 0, 0

    def _put_shard(self) -> RunReport:
        if self._gzip:
            self._parts.append(self._compressor.flush())
        data = b"".join(self._parts)
        key = f"{self._prefix}{uuid.uuid4().hex}{'.gz' if self._gzip else '.txt'}"
        self._store.put(key, data)
        self._lines_written.inc(self._lines)
        self._shards_written.inc()
        self._shard_bytes.inc(len(data))
        if self._progress_writer:
            self._progress_writer.add(shards=1)
        report = RunReport(shards=[[key, len(data)]], lines=self._lines)
        self._parts = []
        return report
