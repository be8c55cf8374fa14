"""`WriteShards`: blocks of Krux lines into shard objects under the run's staging prefix.

Each bundle writes its own shards, rolling over at `target_bytes`, so memory stays flat
however big the audience. Compressed shards are one gzip member each (igzip level 1, about
ten times zlib level 6's speed), so their concatenation is one valid gzip file. Each shard is
a single PUT: a killed worker leaves no open multipart upload. A retried bundle's shards have
fresh names and are never in the manifest, so they are never merged.

A bundle's last shard is usually small, and a small shard cannot be a part of the day's
multipart object, so the launcher would have to download and send it again. So a bundle's
tail under `MIN_TAIL_BYTES` is not written: it leaves the bundle as bytes (a complete gzip
member, or plain text), tails are gathered under `TAIL_KEYS` keys and each key's tails are
concatenated into shards. A run has at most `TAIL_KEYS` small shards, however many bundles.
"""

import uuid
import zlib

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue
from isal import isal_zlib

from pipeline.krux.arrow_strings import value_bytes
from pipeline.krux.report import RunReport, StagedObject
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
# S3's smallest multipart part: a bundle's last shard under this is merged with others.
MIN_TAIL_BYTES = 5 * 1024 * 1024
# Keys the tails are gathered under: at most this many small shards per run, merged in parallel.
TAIL_KEYS = 4


def lines_buffer(lines: pa.Array) -> memoryview:
    """The bytes of `\\n`-terminated lines, straight from the Arrow data buffer (no copy per line)."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    return memoryview(value_bytes(lines))


class WriteShards(beam.PTransform):
    """Writes line arrays as shards; outputs one `RunReport` (shards, lines) per shard.

    Counts lines, shards and their bytes (Beam counters), and reports shards to `progress`.
    """

    TAILS = "tails"

    def __init__(
        self,
        store_spec,
        prefix: str,
        compression: str,
        *,
        target_bytes: int = SHARD_TARGET_BYTES,
        min_tail_bytes: int = MIN_TAIL_BYTES,
        progress: ProgressChannel | None = None,
    ):
        super().__init__()
        self._fn = _WriteShardsFn(store_spec, prefix, compression, target_bytes, progress, min_tail_bytes)
        self._merge = _MergeTailsFn(store_spec, prefix, compression, target_bytes, progress)

    def expand(self, lines):
        written = lines | "PutShards" >> beam.ParDo(self._fn).with_outputs(self.TAILS, main="reports")
        merged = (
            written[self.TAILS]
            | "KeyTails" >> beam.Map(lambda tail: (zlib.crc32(tail[1]) % TAIL_KEYS, tail))
            | "GatherTails" >> beam.GroupByKey()
            | "PutTails" >> beam.ParDo(self._merge)
        )
        return (written.reports, merged) | "ShardReports" >> beam.Flatten()


class _ShardWriter:
    """One shard being filled: compressed parts, their size, the input's size and line count."""

    def __init__(self, store, prefix: str, gzip: bool, *, compress: bool = True):
        self._store, self._prefix, self._gzip = store, prefix, gzip
        compress = gzip and compress
        self._compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS) if compress else None
        self.parts, self.size, self.input_size, self.lines = [], 0, 0, 0

    def add(self, data, lines: int) -> None:
        self.parts.append(self._compressor.compress(data) if self._compressor else bytes(data))
        self.size += len(self.parts[-1])
        self.input_size += len(data)
        self.lines += lines

    def add_member(self, data: bytes, lines: int) -> None:
        """A complete gzip member or plain text, appended as it is."""
        self.parts.append(data)
        self.size += len(data)
        self.input_size += len(data)
        self.lines += lines

    def body(self) -> bytes:
        if self._compressor is not None:
            self.parts.append(self._compressor.flush())
            self._compressor = None
        return b"".join(self.parts)

    def put(self, data: bytes | None = None) -> RunReport:
        data = self.body() if data is None else data
        key = f"{self._prefix}{uuid.uuid4().hex}{'.gz' if self._gzip else '.txt'}"
        self._store.put(key, data)
        return RunReport(shards=[StagedObject(key, len(data))], lines=self.lines)


class _PutsShards(beam.DoFn):
    """What both shard writers share: the store, the counters and the progress of their shards."""

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

    def _put(self, shard: "_ShardWriter", data: bytes | None = None) -> RunReport:
        report = shard.put(data)
        self._lines_written.inc(report.lines)
        self._shards_written.inc()
        self._shard_bytes.inc(report.shards[0].bytes)
        if self._progress_writer:
            self._progress_writer.add(shards=1)
        return report


class _WriteShardsFn(_PutsShards):
    def __init__(self, store_spec, prefix, compression, target_bytes, progress, min_tail_bytes):
        super().__init__(store_spec, prefix, compression, target_bytes, progress)
        self._min_tail_bytes = min_tail_bytes

    def start_bundle(self):
        self._shard = self._new_shard()

    def process(self, lines):
        data = lines_buffer(lines)
        if not len(data):
            return
        self._shard.add(data, len(lines))
        if self._shard.size >= self._target_bytes or self._shard.input_size >= MAX_RATIO * self._target_bytes:
            yield self._put(self._shard)
            self._shard = self._new_shard()

    def finish_bundle(self):
        shard, self._shard = self._shard, None
        if not shard.lines:
            return
        data = shard.body()
        if len(data) >= self._min_tail_bytes:
            yield WindowedValue(self._put(shard, data), 0, [GlobalWindow()])
        else:
            yield beam.pvalue.TaggedOutput(
                WriteShards.TAILS, WindowedValue((shard.lines, data), 0, [GlobalWindow()])
            )

    def _new_shard(self):
        return _ShardWriter(self._store, self._prefix, self._gzip)


class _MergeTailsFn(_PutsShards):
    """One key's bundle tails, concatenated into shards rolled at the target size."""

    def process(self, element):
        _, tails = element
        shard = self._new_shard()
        for lines, data in tails:
            shard.add_member(data, lines)
            if shard.size >= self._target_bytes:
                yield self._put(shard)
                shard = self._new_shard()
        if shard.lines:
            yield self._put(shard)

    def _new_shard(self):
        # Tails are complete gzip members (or plain text): concatenated as they are.
        return _ShardWriter(self._store, self._prefix, self._gzip, compress=False)
