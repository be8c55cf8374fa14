"""Triples split by partition, a few million at a time: the input of `GroupByUser`'s shuffle.

`PartitionTriplesFn` gathers a bundle's triples and splits them by partition about
`FLUSH_TRIPLES` at a time, so that each partition receives one chunk per flush, not one per
batch (at 100M rows and 134 partitions a batch's share of a partition is a few hundred rows:
per-chunk costs would dominate). Two ways to hand the chunks on:
- `PackTriplesFn`: each chunk as a compressed Arrow IPC stream through Beam's GroupByKey, on a
  runner with a shuffle service (Dataflow, Flink, portable);
- `SpillTriplesFn`: on the local runners (FnApiRunner, DirectRunner), which would hold a
  GroupByKey's whole input in the runner process (tens of GiB at 100M rows), each worker
  appends its chunks to one lz4-compressed Arrow IPC stream file per partition and bundle (a
  "run") in a spill directory on the local disk, and only `(partition, (triples, path))`
  references go through Beam. The directory is made and removed by the launcher; every
  worker of a local run shares the machine, so they all see it.
"""

import errno
import os
import uuid

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.errors import StorageError
from pipeline.krux.grouping import concat_triples, split_by_partition, to_triples

__all__ = ["IPC_OPTIONS", "SPILL_IPC_OPTIONS", "PackTriplesFn", "SpillTriplesFn", "pack_arrow", "read_run"]

# Through a runner's shuffle, bytes cost more than CPU: zstd (about 7 bytes a triple).
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
# To and from the local disk, CPU costs more than bytes: lz4 writes a triple in 34 ns against
# zstd's 46 and reads it in 10 against 26, for 11 bytes a triple instead of 7.
SPILL_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
# Triples a worker holds before they are split into their partitions' chunks (about 35 bytes
# a triple, twice that while splitting): larger chunks cost less per triple to write, read
# and group, and compress better.
FLUSH_TRIPLES = 4_000_000


def pack_arrow(data: pa.Table | pa.RecordBatch) -> bytes:
    """A table or batch as one zstd-compressed Arrow IPC stream, to travel through a shuffle."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema, options=IPC_OPTIONS) as writer:
        writer.write(data)
    return sink.getvalue().to_pybytes()


def read_run(source) -> pa.Table:
    """A run's triples: `source` is a spill file's path or the run's bytes (Beam's shuffle)."""
    if isinstance(source, str):
        try:
            with pa.input_stream(source) as stream:
                return pa.ipc.open_stream(stream).read_all()
        except OSError as error:
            raise _spill_error(os.path.dirname(source), error) from error
    return pa.ipc.open_stream(pa.py_buffer(source)).read_all()


def _spill_error(spill_dir: str, error: OSError) -> StorageError:
    reason = error.strerror or (str(error).strip().splitlines() or [type(error).__name__])[0]
    if error.errno == errno.ENOSPC:
        reason += " (the grouping needs about 70 bytes of disk a row: set TMPDIR to a disk with room)"
    return StorageError(f"grouping by user: local spill directory {spill_dir}: {reason}")


class PartitionTriplesFn(beam.DoFn):
    """`CheckedBatch`es → triples split by partition, `FLUSH_TRIPLES` at a time, handed to `_keep`."""

    def __init__(self, segment_attribute: str, partitions: int):
        self._attribute = segment_attribute
        self._partitions = partitions

    def start_bundle(self):
        self._pending, self._pending_triples = [], 0

    def process(self, checked):
        triples = to_triples(checked.rows, self._attribute)
        if triples.num_rows:
            self._pending.append(triples)
            self._pending_triples += triples.num_rows
        if self._pending_triples >= FLUSH_TRIPLES:
            yield from self._flush()

    def finish_bundle(self):
        for element in [*self._flush(), *self._finish()]:
            yield WindowedValue(element, 0, [GlobalWindow()])

    def _flush(self) -> list:
        if not self._pending:
            return []
        parts = split_by_partition(concat_triples(self._pending), self._partitions)
        self._pending, self._pending_triples = [], 0
        return self._keep(parts)

    def _keep(self, parts: list[tuple[int, pa.Table]]) -> list:
        """Elements for `(partition, triples)` chunks, now or (`_finish`) at the bundle's end."""
        raise NotImplementedError

    def _finish(self) -> list:
        return []


class PackTriplesFn(PartitionTriplesFn):
    """Outputs `(partition, (triples, IPC bytes))` for Beam's shuffle."""

    def _keep(self, parts):
        return [(partition, (triples.num_rows, pack_arrow(triples))) for partition, triples in parts]


class SpillTriplesFn(PartitionTriplesFn):
    """Appends the chunks to runs under `spill_dir`; outputs `(partition, (triples, path))` per run."""

    def __init__(self, segment_attribute: str, partitions: int, spill_dir: str):
        super().__init__(segment_attribute, partitions)
        self._spill_dir = spill_dir

    def start_bundle(self):
        super().start_bundle()
        self._writers = {}  # partition -> [writer, path, triples written]

    def _keep(self, parts):
        try:
            for partition, triples in parts:
                entry = self._writers.get(partition)
                if entry is None:
                    path = os.path.join(self._spill_dir, f"{uuid.uuid4().hex}-{partition}.arrows")
                    entry = [pa.ipc.new_stream(path, triples.schema, options=SPILL_IPC_OPTIONS), path, 0]
                    self._writers[partition] = entry
                entry[0].write_table(triples)
                entry[2] += triples.num_rows
        except OSError as error:  # a full disk, most likely
            raise _spill_error(self._spill_dir, error) from error
        return []

    def _finish(self):
        runs = sorted(self._writers.items())
        self._writers = {}
        for _, (writer, _, _) in runs:
            try:
                writer.close()
            except OSError as error:
                raise _spill_error(self._spill_dir, error) from error
        return [(partition, (count, path)) for partition, (_, path, count) in runs]

    def teardown(self):
        # Also run by the harness's shutdown while an abandoned bundle (a failed run) may still
        # add writers: close a snapshot of them.
        for writer, _, _ in list(getattr(self, "_writers", {}).values()):
            writer.close()  # a failed bundle's runs: the launcher removes the directory
