"""Triples runs on local disk: the shuffle of `GroupByUser` on a runner that has no shuffle service.

The local runners (FnApiRunner, DirectRunner) hold a GroupByKey's whole input in the runner
process, so a grouped export of 100M rows would need tens of GiB there. Instead each worker
appends its triples to one compressed Arrow IPC stream file per partition and bundle (a "run")
in a spill directory on the local disk, and only `(partition, (triples, path))` references go
through Beam. The directory is made and removed by the launcher; every worker of a local run
shares the machine, so they all see it.
"""

import errno
import os
import uuid

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.errors import StorageError
from pipeline.krux.grouping import split_by_partition, to_triples

__all__ = ["IPC_OPTIONS", "SpillTriplesFn", "pack_arrow", "read_run"]

IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")
# Triples held per worker before they are written to their partitions' runs: larger writes
# compress better; this bounds the memory (about 40 bytes a triple).
FLUSH_TRIPLES = 1_000_000


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


class SpillTriplesFn(beam.DoFn):
    """`CheckedBatch`es → triples in runs under `spill_dir`; outputs `(partition, (triples, path))`."""

    def __init__(self, segment_attribute: str, partitions: int, spill_dir: str):
        self._attribute = segment_attribute
        self._partitions = partitions
        self._spill_dir = spill_dir

    def start_bundle(self):
        self._writers = {}  # partition -> (writer, path, triples written)
        self._pending, self._pending_triples = {}, 0

    def process(self, checked):
        for partition, triples in split_by_partition(to_triples(checked.rows, self._attribute), self._partitions):
            self._pending.setdefault(partition, []).append(triples)
            self._pending_triples += triples.num_rows
        if self._pending_triples >= FLUSH_TRIPLES:
            self._flush()
        return ()

    def finish_bundle(self):
        self._flush()
        runs = sorted(self._writers.items())
        self._writers = {}
        for partition, (writer, path, count) in runs:
            try:
                writer.close()
            except OSError as error:
                raise _spill_error(self._spill_dir, error) from error
            yield WindowedValue((partition, (count, path)), 0, [GlobalWindow()])

    def _flush(self):
        try:
            self._write_pending()
        except OSError as error:  # a full disk, most likely
            raise _spill_error(self._spill_dir, error) from error

    def _write_pending(self):
        for partition, tables in self._pending.items():
            table = pa.concat_tables(tables)
            entry = self._writers.get(partition)
            if entry is None:
                path = os.path.join(self._spill_dir, f"{uuid.uuid4().hex}-{partition}.arrows")
                entry = [pa.ipc.new_stream(path, table.schema, options=IPC_OPTIONS), path, 0]
                self._writers[partition] = entry
            entry[0].write_table(table)
            entry[2] += table.num_rows
        self._pending, self._pending_triples = {}, 0

    def teardown(self):
        # Also run by the harness's shutdown while an abandoned bundle (a failed run) may still
        # add writers: close a snapshot of them.
        for writer, _, _ in list(getattr(self, "_writers", {}).values()):
            writer.close()  # a failed bundle's runs: the launcher removes the directory
