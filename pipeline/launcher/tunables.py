"""`Tunables`: sizes a run may be given instead of its defaults (tests and benchmarks do).

Amazon's limits stay constants where they are enforced; these are the knobs below them.
"""

import dataclasses

# Tables whose footers count at most this many rows in all are exported in this process
# (`beam_options(in_process=True)`): below it, starting two worker processes costs more than
# they save (benchmarks/README.md, "Small exports").
IN_PROCESS_ROWS = 1_000_000

from pipeline.storage.multipart import MIN_PART_BYTES
from transforms.rejects import PART_TARGET_BYTES
from transforms.shards import SHARD_TARGET_BYTES

__all__ = ["Tunables"]


@dataclasses.dataclass(frozen=True)
class Tunables:
    shard_target_bytes: int = SHARD_TARGET_BYTES
    """A shard rolls over at this size (compressed, or plain text)."""
    min_part_bytes: int = MIN_PART_BYTES
    """Smallest part of the day's multipart upload but the last (S3's minimum by default)."""
    group_partitions: int | None = None
    """Partitions of users for `--group-by-user`; None: from the input's row count."""
    rejects_part_bytes: int = PART_TARGET_BYTES
    """A part of the rejects file rolls over at this size."""
    in_process_rows: int = IN_PROCESS_ROWS
    """Inputs of at most this many rows (by their footers) run in this process, unless `--runner` is given."""
