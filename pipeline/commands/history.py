"""`krux-export history [--job FILE | --export-name N] [--last K] [--json]`: an export's past runs.

Newest last, as a table or, with `--json`, as the stored lines.
"""

import argparse
import json
import logging

from pipeline.config.jobs import load_job
from pipeline.config.settings import DEFAULT_EXPORT_NAME, check_export_name
from pipeline.errors import UsageError
from pipeline.outcomes.history import history_file, read_history

__all__ = ["register"]

log = logging.getLogger(__name__)

DEFAULT_LAST = 20

_COLUMNS = ("start", "day", "status", "lines", "invalid", "bytes", "seconds", "object or reason")
_NUMERIC = {"lines", "invalid", "bytes", "seconds"}


def register(commands) -> None:
    parser = commands.add_parser(
        "history",
        help="show an export's last runs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show the last runs of an export, newest last: when each started, its day,\n"
        "status, counts and the object it published or why it failed. Every run of run, run --job\n"
        "and schedule is recorded under $KRUX_EXPORT_HOME/history/.",
        epilog="examples:\n"
        "  krux-export history --job daily_krux.yml --last 5\n"
        "  krux-export history --export-name first_party_segment --json\n\n"
        "reference: docs/jobs.md, History",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--job", metavar="FILE", help="the runs of this job file (by its name)")
    which.add_argument("--export-name", metavar="N", help=f"default: {DEFAULT_EXPORT_NAME}")
    parser.add_argument("--last", type=_count, default=DEFAULT_LAST, metavar="K",
                        help=f"how many runs (default {DEFAULT_LAST})")
    parser.add_argument("--json", action="store_true", help="print the stored JSON lines as they are")
    parser.set_defaults(handler=_history_command)


def _history_command(args, beam_args, runtime) -> int:
    job = load_job(args.job) if args.job else None
    export_name = job.settings.export_name if job else _export_name(args)
    if job:  # another job, or a run by hand, may write the same export
        lines = [line for line in read_history(export_name, None) if _job_of(line) == job.name][-args.last :]
    else:
        lines = read_history(export_name, args.last)
    if args.json:
        for line in lines:
            print(line)
        return 0
    if not lines:
        whose = f"job {job.name} (export {export_name})" if job else f"export {export_name}"
        log.info("no runs recorded for %s (%s)", whose, history_file(export_name))
        return 0
    print(format_table([_row(line) for line in lines]))
    return 0


def _job_of(line: str) -> str | None:
    """The `job` of a stored run line, or None (a run by hand, or a line that is not JSON)."""
    try:
        run = json.loads(line)
    except ValueError:
        return None
    return run.get("job") if isinstance(run, dict) else None


def _export_name(args) -> str:
    if args.export_name is None:
        return DEFAULT_EXPORT_NAME
    try:
        return check_export_name(args.export_name)
    except UsageError as error:
        raise UsageError(f"--export-name: {error}") from error


def format_table(rows: list[dict]) -> str:
    """Columns padded to their widest cell; numbers right-aligned; the last column as it is."""
    cells = [list(_COLUMNS)] + [[row[column] for column in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS) - 1)]
    out = []
    for line in cells:
        padded = [
            cell.rjust(width) if column in _NUMERIC else cell.ljust(width)
            for cell, width, column in zip(line, widths, _COLUMNS)
        ]
        out.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(out)


def _row(line: str) -> dict:
    """One stored run as table cells; a line that is not a run's JSON shows as unreadable."""
    try:
        run = json.loads(line)
        if not isinstance(run, dict):
            raise ValueError
    except ValueError:
        return dict.fromkeys(_COLUMNS, "-") | {"status": "unreadable", "object or reason": line[:80]}
    succeeded = run.get("status") == "succeeded"
    invalid = run.get("invalid")
    return {
        "start": str(run.get("started_at", "-")),
        "day": str(run.get("date", "-")),
        "status": "succeeded" if succeeded else f"failed ({run.get('exit_code', '?')})",
        "lines": _number(run.get("lines_written")),
        "invalid": _number(sum(invalid.values()) if isinstance(invalid, dict) else None),
        "bytes": _number(run.get("bytes")),
        "seconds": _number(run.get("duration_s")),
        "object or reason": str(run.get("object_uri") if succeeded else run.get("error", "-")),
    }


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--last: expected a whole number of 1 or more, got {text!r}")
    return int(text)
