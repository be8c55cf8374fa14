"""`ReadTables`: every table's read tasks, spread over workers, as Arrow record batches.

Whatever the format (Parquet row groups or a CSV file, local or `s3://`), each element is a
`TableBatch`, so nothing downstream knows where rows came from. The reading itself is
`pipeline.storage.inputs.read_task`; this module only spreads it over workers.
"""

import apache_beam as beam

from pipeline.errors import SchemaError, StorageError
from pipeline.storage.inputs import BATCH_ROWS, is_storage_failure, read_task

__all__ = ["ReadTables"]


class ReadTables(beam.PTransform):
    """Reads `ReadTask`s in parallel into `TableBatch`es."""

    def __init__(self, tasks, *, batch_rows: int = BATCH_ROWS):
        super().__init__()
        self._tasks = list(tasks)
        self._batch_rows = batch_rows

    def expand(self, pbegin):
        # Create spreads the tasks over workers itself (its own reshuffle). A second reshuffle
        # only scrambled their order: in plan order, the local runner reads every table's first
        # rows first, so an invalid row near the start stops the run at once (fail fast).
        return (
            pbegin
            | "ListReadTasks" >> beam.Create(self._tasks)
            | "ReadTask" >> beam.ParDo(_ReadTaskFn(self._batch_rows))
        )


class _ReadTaskFn(beam.DoFn):
    def __init__(self, batch_rows: int):
        self._batch_rows = batch_rows

    def process(self, task):
        try:
            yield from read_task(task, self._batch_rows)
        except Exception as error:  # whatever breaks here, the file is what the user must check
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            kind = StorageError if is_storage_failure(error) else SchemaError
            raise kind(f"table {task.table}: cannot read {task.path}: {reason}") from error
