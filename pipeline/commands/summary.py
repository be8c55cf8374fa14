"""The last line a run prints on stdout: its summary, or why it failed, as one JSON object."""

import json
import sys

from pipeline.errors import ExportError, Interrupted, describe_failure
from pipeline.krux.summary import FailedSummary, Summary

__all__ = ["emit_line", "failed_summary", "report_failure"]


def failed_summary(error: BaseException) -> FailedSummary:
    """`{"status": "failed", "exit_code": N, "error": "<one line>"}` for whatever was raised,
    plus `run_id` and `date` when the run knew them (the launcher sets them on what escapes)."""
    exit_code, reason = describe_failure(error)
    known = error if isinstance(error, ExportError | Interrupted) else None
    return FailedSummary(exit_code, reason, run_id=known and known.run_id, date=known and known.date)


def emit_line(summary: Summary | FailedSummary, path: str | None = None) -> None:
    """Prints `summary` as one JSON line on stdout, and writes it to `path` too when given.

    A summary file that cannot be written does not hide the line on stdout.
    """
    line = json.dumps(summary.to_json())
    try:
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(line + "\n")
    finally:
        print(line, flush=True)


def report_failure(summary: FailedSummary) -> None:
    """The one line on stderr that says why a command failed."""
    print(f"krux-export: error: {summary.error}", file=sys.stderr, flush=True)
