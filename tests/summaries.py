"""Run summaries for tests that stand in for a run (a fake `run_export`, history, notifications)."""

import dataclasses

from pipeline.krux.summary import FailedSummary, Summary

__all__ = ["FailedSummary", "succeeded"]

_SUCCEEDED = Summary(
    run_id="20261128T093000Z-3f9a",
    date="2026-11-28",
    object_uri="s3://krux-partners/acme/uploads/2026-11-28/daily_krux.txt.gz",
    bytes=1234,
    rows_read={"segment_a": 12},
    lines_written=10,
    invalid={"missing_user_id": 1, "value_too_long": 1},
    replaced=(),
    duration_s=12.345,
)


def succeeded(**fields) -> Summary:
    """A succeeded run's summary, with `fields` replacing the defaults."""
    return dataclasses.replace(_SUCCEEDED, **fields)
