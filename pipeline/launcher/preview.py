"""`krux-export preview`: the first Krux lines a run would write, without touching storage.

Reads tables in order, a small batch at a time, and stops as soon as it has enough lines,
so a preview of a billion-row table costs one batch. With `--group-by-user` the lines group
only the first `GROUPED_PREVIEW_ROWS` rows, which the caller says. The first
`INVALID_EXAMPLES` invalid rows met are described as a failing run would describe its first
(table, row, reason, column, a redacted value), so the user can find them.
"""

import contextlib
import dataclasses
import datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.krux.grouping import group_lines, to_triples
from pipeline.krux.lines import LineRules, build_lines, normalize
from pipeline.krux.rejects import describe_invalid_row
from pipeline.sources.files import TableBatch, read_task
from pipeline.sources.query import QUERY_TABLE, open_engine, query_of, result_batches
from pipeline.sources.tables import tables_of
from transforms.shards import lines_buffer

PREVIEW_BATCH_ROWS = 4096
GROUPED_PREVIEW_ROWS = 200_000
INVALID_EXAMPLES = 5


@dataclasses.dataclass(frozen=True)
class Preview:
    """The first lines a run would write, and what reading them met."""

    lines: list[str]
    rows_read: int
    invalid: dict[str, int]  # reason -> rows, among those read
    invalid_examples: list[str]  # the first invalid rows, described with their values redacted


def preview(settings, limit: int) -> Preview:
    """Up to `limit` lines, and the rows read and invalid rows met on the way."""
    now = datetime.datetime.now(datetime.timezone.utc)
    query = query_of(settings, settings.date or now.date(), now)
    if query:
        rules = query.rules
    else:
        rules = LineRules(settings.user_column, settings.segment_column, settings.segment_attribute)
    lines, triples, invalid, examples, rows_read = [], [], {}, [], 0
    batches = _query_batches(query) if query else _table_batches(settings)
    with contextlib.closing(batches):
        for table, first_row, batch in batches:
            rows_read += batch.num_rows
            rows = normalize(batch, rules)
            for reason, count in rows.invalid_counts().items():
                invalid[reason] = invalid.get(reason, 0) + count
            valid = pc.is_null(rows.reasons)
            for index in pc.indices_nonzero(pc.invert(valid))[: INVALID_EXAMPLES - len(examples)].to_pylist():
                examples.append(describe_invalid_row(table, first_row, batch, rows, index))
            rows = rows.filter(valid)
            if settings.group_by_user:
                triples.append(to_triples(rows, rules.segment_attribute))
            else:
                lines += _text_lines(build_lines(rows, rules.segment_attribute))
            if len(lines) >= limit or rows_read >= GROUPED_PREVIEW_ROWS:
                break
    if triples:
        lines = _text_lines(group_lines(pa.concat_tables(triples), rules.segment_attribute))
    return Preview(lines[:limit], rows_read, dict(sorted(invalid.items())), examples)


def _table_batches(settings):
    for table in tables_of(settings):
        for task in table.tasks:
            yield from read_task(task, PREVIEW_BATCH_ROWS)


def _query_batches(query):
    """The query's first batches; DuckDB stops when the preview stops pulling."""
    row = 1
    with open_engine(query) as connection:
        for batch in result_batches(connection, query, PREVIEW_BATCH_ROWS):
            yield TableBatch(QUERY_TABLE, row, batch)
            row += batch.num_rows


def _text_lines(array) -> list[str]:
    return bytes(lines_buffer(array)).decode("utf-8").splitlines()
