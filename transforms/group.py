"""`GroupByUser`: one Krux line per user across all tables (SPEC §3, Grouping).

Rows become (user, attribute, value) triples in Arrow tables, split by a stable hash of the
user id into partitions; the shuffle moves one Arrow table per batch and partition, never a
Python object per row, and each worker groups its partitions with pyarrow. No worker holds
all users: a partition holds about 1/`partitions` of them.
"""

import apache_beam as beam
import pyarrow as pa

from transforms.grouping import group_lines, split_by_partition, to_triples

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
            | "ToTriples" >> beam.FlatMap(lambda c: split_by_partition(to_triples(c.rows, attribute), partitions))
            | "ShuffleByUser" >> beam.GroupByKey()
            | "BuildUserLines" >> beam.MapTuple(lambda _, tables: group_lines(_concat(tables), attribute))
        )


def _concat(tables) -> pa.Table:
    return pa.concat_tables(list(tables)).combine_chunks()
