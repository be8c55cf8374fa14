"""`GroupByUser`: one Krux line per user across all tables (SPEC §3, Grouping).

Rows become (user, attribute, value) triples in Arrow tables, split by a stable hash of the
user id into partitions; the shuffle moves one compressed Arrow IPC stream per batch and
partition, never a Python object per row, and each worker groups its partitions with pyarrow.
No worker holds all users: a partition holds about 1/`partitions` of them. Compression matters
on one machine, where the DirectRunner keeps the whole shuffle in memory.
"""

import apache_beam as beam
import pyarrow as pa

from pipeline.krux.grouping import group_lines, split_by_partition, to_triples

__all__ = ["GroupByUser"]

DEFAULT_PARTITIONS = 32


class GroupByUser(beam.PTransform):
    """`CheckedBatch`es into line arrays, one per partition of users."""

    def __init__(self, segment_attribute: str, *, partitions: int = DEFAULT_PARTITIONS):
        super().__init__()
        self._segment_attribute = segment_attribute
        self._partitions = partitions

    def expand(self, checked):
        attribute, partitions = self._segment_attribute, self._partitions
        return (
            checked
            | "ToTriples" >> beam.FlatMap(_partitioned_triples, attribute, partitions)
            | "ShuffleByUser" >> beam.GroupByKey()
            | "BuildUserLines" >> beam.MapTuple(lambda _, packed: group_lines(_unpack(packed), attribute))
        )


def _partitioned_triples(checked, attribute: str, partitions: int):
    for partition, triples in split_by_partition(to_triples(checked.rows, attribute), partitions):
        yield partition, _pack(triples)


_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


def _pack(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _unpack(packed) -> pa.Table:
    tables = [pa.ipc.open_stream(pa.py_buffer(data)).read_all() for data in packed]
    return pa.concat_tables(tables).combine_chunks()
