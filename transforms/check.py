"""`CheckRecords` and `FormatLines`: the Beam side of docs/line.md's rules, a batch per call.

The Arrow work lives in `pipeline.krux.lines`; these transforms only route its results:
valid rows on the main output, invalid rows on `INVALID_ROWS`, counts on `REPORTS`. Without
`--skip-invalid-records` the first invalid row found stops the whole job (see `StopSignal`).
"""

import logging
import time
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import InvalidRecordsError, StorageError
from pipeline.krux.lines import InvalidReason, LineRules, NormalizedBatch, build_lines, normalize
from pipeline.krux.rejects import describe_invalid_row
from pipeline.krux.report import RunReport
from pipeline.storage.stores import StoreSpec
from transforms import metrics

__all__ = ["CheckRecords", "FormatLines", "CheckedBatch", "InvalidRows", "StopSignal"]

log = logging.getLogger(__name__)

STOP_CHECK_S = 1.0
"""How often each worker looks for another worker's `StopSignal`: one listing of one key."""

STOPPED = "stopped: another worker found an invalid row"


class StopSignal(NamedTuple):
    """Where the worker that finds the first invalid row leaves its one-line reason.

    Without `--skip-invalid-records` that row fails the run. Raising fails only the worker's own
    bundle, and a runner may let other bundles run to their end first (the local runner waits
    for them): so the reason is written here too, every other worker looks for it every
    `STOP_CHECK_S` and raises as well, and the launcher reports the reason found here.
    """

    store_spec: StoreSpec  # the export's root, where staging is
    key: str  # alone in its folder, so that looking for it lists nothing else


class CheckedBatch(NamedTuple):
    """The valid rows of one batch, normalized."""

    table: str
    rows: NormalizedBatch


class InvalidRows(NamedTuple):
    """The invalid rows of one batch as read, with their reasons (for `--rejects`)."""

    table: str
    batch: pa.RecordBatch
    reasons: pa.Array


class CheckRecords(beam.PTransform):
    """Splits `TableBatch`es into valid rows and invalid rows, counting both.

    Outputs: main (`CheckedBatch`), `INVALID_ROWS` (`InvalidRows`, only when `keep_invalid`),
    `REPORTS` (`RunReport`: rows read per table, invalid rows per reason).
    Invalid rows per reason are Beam counters too, for runner UIs.
    With `stop`, the first invalid row raises `InvalidRecordsError` instead (fail fast).
    """

    INVALID_ROWS = "invalid_rows"
    REPORTS = "reports"

    def __init__(self, rules: LineRules, *, keep_invalid: bool, stop: StopSignal | None = None):
        super().__init__()
        self._fn = _CheckRecordsFn(rules, keep_invalid, stop)

    def expand(self, batches):
        return batches | "CheckBatch" >> beam.ParDo(self._fn).with_outputs(
            self.INVALID_ROWS, self.REPORTS, main="valid"
        )


class _CheckRecordsFn(beam.DoFn):
    def __init__(self, rules: LineRules, keep_invalid: bool, stop: StopSignal | None):
        self._rules = rules
        self._keep_invalid = keep_invalid
        self._stop = stop
        self._invalid_rows = {reason.value: metrics.counter(metrics.INVALID_ROWS, reason) for reason in InvalidReason}

    def setup(self):
        self._stop_store = self._stop.store_spec.open() if self._stop else None
        self._next_stop_check = 0.0

    def process(self, element):
        table, first_row, batch = element
        rows = normalize(batch, self._rules)
        report = RunReport(rows={table: batch.num_rows})
        invalid = pc.is_valid(rows.reasons)
        invalid_count = pc.sum(invalid).as_py() or 0
        if self._stop:
            if invalid_count:
                index = pc.index(invalid, True).as_py()
                row = first_row + index if first_row is not None else None
                self._fail(describe_invalid_row(table, first_row, batch, rows, index), table=table, row=row)
            self._check_stop()
        if invalid_count:
            report.invalid = rows.invalid_counts()
            for reason, count in report.invalid.items():
                self._invalid_rows[reason].inc(count)
            if self._keep_invalid:
                yield beam.pvalue.TaggedOutput(
                    CheckRecords.INVALID_ROWS, InvalidRows(table, batch.filter(invalid), rows.reasons.filter(invalid))
                )
            rows = rows.filter(pc.invert(invalid))
        yield beam.pvalue.TaggedOutput(CheckRecords.REPORTS, report)
        if len(rows.user):
            yield CheckedBatch(table, rows)

    def _fail(self, detail: str, *, table: str, row: int | None):
        reason = f"{detail}; --skip-invalid-records drops and counts invalid rows"
        try:
            self._stop_store.put(self._stop.key, reason.encode())
        except StorageError as error:  # the other workers then run on; this bundle still fails
            log.warning("could not tell the other workers to stop: %s", error)
        raise InvalidRecordsError(reason, table=table, row=row)

    def _check_stop(self):
        """Raises if another worker found an invalid row (looks at most every `STOP_CHECK_S`)."""
        now = time.monotonic()
        if now < self._next_stop_check:
            return
        self._next_stop_check = now + STOP_CHECK_S
        try:
            found = bool(self._stop_store.list(self._stop.key))
        except StorageError as error:  # only a hint: a failed look must not fail the run
            log.debug("looking for a stop signal: %s", error)
            return
        if found:
            raise InvalidRecordsError(STOPPED)


class FormatLines(beam.PTransform):
    """`CheckedBatch`es into Krux lines, one Arrow string array (`\\n`-terminated) per batch."""

    def __init__(self, segment_attribute: str):
        super().__init__()
        self._segment_attribute = segment_attribute

    def expand(self, checked):
        attribute = self._segment_attribute
        return checked | "BuildLines" >> beam.Map(lambda c: build_lines(c.rows, attribute))
