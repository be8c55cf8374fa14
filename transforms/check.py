"""`CheckRecords` and `FormatLines`: the Beam side of SPEC §3, a batch per call.

The Arrow work lives in `transforms.krux_line`; these transforms only route its results:
valid rows on the main output, invalid rows on `INVALID_ROWS`, counts on `REPORTS`.
"""

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.krux.lines import InvalidReason, LineRules, NormalizedBatch, build_lines, normalize
from pipeline.krux.report import RunReport
from transforms import metrics

__all__ = ["CheckRecords", "FormatLines", "CheckedBatch", "InvalidRows"]

PREVIEW_CHARS = 2


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
    `REPORTS` (`RunReport`: rows read per table, invalid rows per reason, the first invalid row).
    Invalid rows per reason are Beam counters too, for runner UIs.
    """

    INVALID_ROWS = "invalid_rows"
    REPORTS = "reports"

    def __init__(self, rules: LineRules, table_order: list[str], *, keep_invalid: bool):
        super().__init__()
        self._fn = _CheckRecordsFn(rules, table_order, keep_invalid)

    def expand(self, batches):
        return batches | "CheckBatch" >> beam.ParDo(self._fn).with_outputs(
            self.INVALID_ROWS, self.REPORTS, main="valid"
        )


class _CheckRecordsFn(beam.DoFn):
    def __init__(self, rules: LineRules, table_order: list[str], keep_invalid: bool):
        self._rules = rules
        self._table_order = {name: index for index, name in enumerate(table_order)}
        self._keep_invalid = keep_invalid
        self._invalid_rows = {reason.value: metrics.counter(metrics.INVALID_ROWS, reason) for reason in InvalidReason}

    def process(self, element):
        table, first_row, batch = element
        rows = normalize(batch, self._rules)
        report = RunReport(rows={table: batch.num_rows})
        invalid = pc.is_valid(rows.reasons)
        invalid_count = pc.sum(invalid).as_py() or 0
        if invalid_count:
            report.invalid = rows.invalid_counts()
            for reason, count in report.invalid.items():
                self._invalid_rows[reason].inc(count)
            report.first_invalid = self._describe_first(table, first_row, batch, rows, invalid)
            if self._keep_invalid:
                yield beam.pvalue.TaggedOutput(
                    CheckRecords.INVALID_ROWS, InvalidRows(table, batch.filter(invalid), rows.reasons.filter(invalid))
                )
            rows = rows.filter(pc.invert(invalid))
        yield beam.pvalue.TaggedOutput(CheckRecords.REPORTS, report)
        if len(rows.user):
            yield CheckedBatch(table, rows)

    def _describe_first(self, table, first_row, batch, rows, invalid):
        index = pc.index(invalid, True).as_py()
        reason = rows.reasons[index].as_py()
        column = rows.reason_columns[index].as_py()
        where = f"table {table} row {first_row + index}" if first_row is not None else f"table {table}"
        detail = f"{where}: {reason}"
        if column is not None:
            detail += f" in column {column} ({redacted_preview(batch.column(column)[index].as_py())})"
        return [[self._table_order.get(table, 0), first_row + index if first_row else index], detail]


def redacted_preview(value) -> str:
    """Enough of a value to find it, not enough to leak it: `'Br…' (24 characters)`."""
    if value is None:
        return "value null"
    text = value if isinstance(value, str) else str(value)
    shown = text[:PREVIEW_CHARS].replace("\r", "\\r").replace("\n", "\\n")
    return f"value {shown!r}… ({len(text)} characters)" if len(text) > PREVIEW_CHARS else f"value {text!r}"


class FormatLines(beam.PTransform):
    """`CheckedBatch`es into Krux lines, one Arrow string array (`\\n`-terminated) per batch."""

    def __init__(self, segment_attribute: str):
        super().__init__()
        self._segment_attribute = segment_attribute

    def expand(self, checked):
        attribute = self._segment_attribute
        return checked | "BuildLines" >> beam.Map(lambda c: build_lines(c.rows, attribute))
