"""`krux-export preview`: the first Krux lines a run would write, without touching storage.

Reads tables in order, a small batch at a time, and stops as soon as it has enough lines,
so a preview of a billion-row table costs one batch. With `--group-by-user` the lines group
only the first `GROUPED_PREVIEW_ROWS` rows, which the caller says.
"""

import contextlib
import datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.krux.grouping import group_lines, to_triples
from pipeline.krux.lines import LineRules, build_lines, normalize
from pipeline.sources.files import read_task
from pipeline.sources.query import open_engine, query_of, result_batches
from pipeline.sources.tables import tables_of
from transforms.shards import lines_buffer

PREVIEW_BATCH_ROWS = 4096
GROUPED_PREVIEW_ROWS = 200_000


def preview(settings, limit: int) -> tuple[list[str], dict]:
    """Up to `limit` lines, and what was read: {"rows_read", "invalid": {reason: n}}."""
    now = datetime.datetime.now(datetime.timezone.utc)
    query = query_of(settings, settings.date or now.date(), now)
    if query:
        rules = query.rules
    else:
        rules = LineRules(settings.user_column, settings.segment_column, settings.segment_attribute)
    lines, triples, invalid, rows_read = [], [], {}, 0
    batches = _query_batches(query) if query else _table_batches(settings)
    with contextlib.closing(batches):
        for batch in batches:
            rows_read += batch.num_rows
            rows = normalize(batch, rules)
            for reason, count in rows.invalid_counts().items():
                invalid[reason] = invalid.get(reason, 0) + count
            rows = rows.filter(pc.is_null(rows.reasons))
            if settings.group_by_user:
                triples.append(to_triples(rows, rules.segment_attribute))
            else:
                lines += _text_lines(build_lines(rows, rules.segment_attribute))
            if len(lines) >= limit or rows_read >= GROUPED_PREVIEW_ROWS:
                break
    return _finish(lines, triples, rules, limit, rows_read, invalid)


def _table_batches(settings):
    for table in tables_of(settings):
        for task in table.tasks:
            for _, _, batch in read_task(task, PREVIEW_BATCH_ROWS):
                yield batch


def _query_batches(query):
    """The query's first batches; DuckDB stops when the preview stops pulling."""
    with open_engine(query) as connection:
        yield from result_batches(connection, query, PREVIEW_BATCH_ROWS)


def _finish(lines, triples, rules, limit, rows_read, invalid):
    if triples:
        lines = _text_lines(group_lines(pa.concat_tables(triples), rules.segment_attribute))
    return lines[:limit], {"rows_read": rows_read, "invalid": dict(sorted(invalid.items()))}


def _text_lines(array) -> list[str]:
    return bytes(lines_buffer(array)).decode("utf-8").splitlines()
