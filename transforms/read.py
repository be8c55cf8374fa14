"""`ReadTables`: every table's read tasks, spread over workers, as Arrow record batches.

Whatever the format (Parquet row groups or a CSV file, local or `s3://`), each element is a
`TableBatch`, so nothing downstream knows where rows came from. The reading itself is
`pipeline.sources.files.read_task`; this module only spreads it over workers.
"""

import apache_beam as beam
import pyarrow as pa

from pipeline.errors import ExportError, SchemaError, StorageError, UnexpectedError, first_line
from pipeline.sources.files import BATCH_ROWS, is_storage_failure, read_task
from transforms import metrics
from transforms.progress import ProgressChannel

__all__ = ["ReadTables"]


class ReadTables(beam.PTransform):
    """Reads `ReadTask`s in parallel into `TableBatch`es.

    Counts rows read per table (Beam counters), and reports them to `progress` if given.
    """

    def __init__(self, tasks, *, batch_rows: int = BATCH_ROWS, progress: ProgressChannel | None = None):
        super().__init__()
        self._tasks = list(tasks)
        self._batch_rows = batch_rows
        self._progress = progress

    def expand(self, pbegin):
        tables = sorted({task.table for task in self._tasks})
        # Create spreads the tasks over workers itself (its own reshuffle). A second reshuffle
        # only scrambled their order: in plan order, the local runner reads every table's first
        # rows first, so an invalid row near the start stops the run at once (fail fast).
        return (
            pbegin
            | "ListReadTasks" >> beam.Create(self._tasks)
            | "ReadTask" >> beam.ParDo(_ReadTaskFn(self._batch_rows, tables, self._progress))
        )


class _ReadTaskFn(beam.DoFn):
    def __init__(self, batch_rows: int, tables: list[str], progress: ProgressChannel | None):
        self._batch_rows = batch_rows
        self._rows_read = {table: metrics.counter(metrics.ROWS_READ, table) for table in tables}
        self._progress = progress
        self._progress_writer = None

    def setup(self):
        self._progress_writer = self._progress.writer() if self._progress else None

    def teardown(self):
        if self._progress_writer:
            self._progress_writer.close()

    def process(self, task):
        try:
            for table_batch in read_task(task, self._batch_rows):
                rows = table_batch.batch.num_rows
                self._rows_read[task.table].inc(rows)
                if self._progress_writer:
                    self._progress_writer.add(rows=rows)
                yield table_batch
        except Exception as error:
            raise _read_failure(error, task) from error


def _read_failure(error: Exception, task) -> ExportError:
    """What stopped reading a task: a bad file (exit 2), storage (exit 4), or anything else (exit 1).

    Only Arrow's verdict on the bytes (not Parquet, not UTF-8, a CSV it cannot parse) blames
    the file; a bug or exhausted memory says so, with its class, rather than "fix the file".
    """
    where = dict(table=task.table, path=task.path)
    reason = f"table {task.table}: cannot read {task.path}: {first_line(error)}"
    if isinstance(error, ExportError):
        return error
    if is_storage_failure(error) or isinstance(error, OSError) and error.errno is not None:
        return StorageError(reason, **where)  # S3, or the file system (gone, no permission)
    if isinstance(error, MemoryError):
        return UnexpectedError.of(error, f"table {task.table}: reading {task.path}")
    if isinstance(error, pa.ArrowException | OSError | UnicodeDecodeError | EOFError):
        return SchemaError(reason, **where)  # Arrow's verdict on the bytes (its IOError has no errno)
    return UnexpectedError.of(error, f"table {task.table}: reading {task.path}")

