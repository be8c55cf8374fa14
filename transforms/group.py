"""`GroupByUser`: one Krux line per user across all tables (docs/line.md, Grouping).

Rows become (user, attribute, value) triples in Arrow tables, split by a stable hash of the
user id into partitions sized from the input (`plan_partitions`: about 750k rows each, so a
500M-row export has hundreds). The shuffle never moves a Python object per row:
- on a runner with a shuffle service (Dataflow, Flink, portable), Beam's GroupByKey moves one
  compressed Arrow IPC stream per partition and flush of a few million triples;
- on a local runner, whose GroupByKey would hold everything in the launcher, the triples go to
  compressed runs on the local disk (`transforms.spill`) and only their paths are shuffled.
Each partition is then grouped with pyarrow in passes of about `GROUP_TRIPLES` triples (a user
with more, a placeholder id on millions of rows, has its repeats dropped as its runs are read:
`PassTriples`), and its lines leave in blocks of a few MiB, so `WriteShards` rolls them into
several shards.
"""

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipeline.krux.arrow_strings import value_offsets
from pipeline.krux.grouping import (
    GROUP_TRIPLES,
    MAX_VALUES_PER_USER,
    PassTriples,
    group_lines,
    in_pass,
    passes_for,
)
from transforms.spill import PackTriplesFn, SpillTriplesFn, read_run

__all__ = ["GroupByUser", "line_blocks"]

# Lines leave the grouping in blocks of about this many bytes.
LINE_BLOCK_BYTES = 4 * 1024 * 1024


class GroupByUser(beam.PTransform):
    """`CheckedBatch`es into line arrays of a few MiB, every user's line in exactly one."""

    def __init__(self, segment_attribute: str, *, partitions: int, spill_dir: str | None = None,
                 pass_triples: int = GROUP_TRIPLES, max_values_per_user: int = MAX_VALUES_PER_USER):
        super().__init__()
        self._segment_attribute = segment_attribute
        self.partitions = partitions
        self.spill_dir = spill_dir
        self._pass_triples = pass_triples
        self._max_values_per_user = max_values_per_user

    def expand(self, checked):
        attribute, partitions = self._segment_attribute, self.partitions
        if self.spill_dir is None:
            runs = checked | "ToTriples" >> beam.ParDo(PackTriplesFn(attribute, partitions))
        else:
            runs = checked | "SpillTriples" >> beam.ParDo(SpillTriplesFn(attribute, partitions, self.spill_dir))
        return (
            runs
            | "ShuffleByUser" >> beam.GroupByKey()
            | "BuildUserLines"
            >> beam.ParDo(_GroupPartitionFn(attribute, self._pass_triples, self._max_values_per_user))
        )


class _GroupPartitionFn(beam.DoFn):
    """A partition's lines from its runs (`(triples, path or bytes)` pairs), read once per pass."""

    def __init__(self, segment_attribute: str, pass_triples: int, max_values_per_user: int):
        self._attribute = segment_attribute
        self._pass_triples = pass_triples
        self._max_values_per_user = max_values_per_user

    def process(self, element):
        _, runs = element
        passes = passes_for(sum(count for count, _ in runs), self._pass_triples)
        for number in range(passes):
            triples = PassTriples(self._pass_triples, self._max_values_per_user)
            for _, source in runs:
                triples.add(in_pass(read_run(source), number, passes))
            lines = group_lines(triples.table(), self._attribute, self._max_values_per_user)
            del triples  # before the lines go downstream
            yield from line_blocks(lines)


def line_blocks(lines: pa.Array, block_bytes: int = LINE_BLOCK_BYTES):
    """Copies of `lines` cut into arrays of about `block_bytes` of text each (at least a line).

    Copies, not slices: Beam samples its elements' sizes by pickling them, and a slice
    pickles with its whole parent's buffers (a partition's lines: 130 MB at 10M rows, for each
    of dozens of samples a worker takes).
    """
    if len(lines) == 0:
        return
    offsets = value_offsets(lines).astype(np.int64)
    start = 0
    while start < len(lines):
        end = int(np.searchsorted(offsets, offsets[start] + block_bytes, side="right")) - 1
        end = max(end, start + 1)
        yield pa.concat_arrays([lines.slice(start, end - start)])
        start = end
