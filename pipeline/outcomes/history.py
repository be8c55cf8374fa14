"""Run history: one JSON line per run, per export, under $KRUX_EXPORT_HOME/history/.

Appends hold an exclusive `flock` on the file, so concurrent runs never interleave a line;
readers hold a shared one. The file keeps the last `KEEP_RUNS` runs: when it grows past
`TRIM_AT_RUNS` lines, the newest `KEEP_RUNS` replace it (a new file renamed into place, so a
crash mid-trim loses nothing). A run waiting for the lock of a file that was replaced
meanwhile opens the new one.
"""

import datetime
import fcntl
import json
import os
import tempfile
from pathlib import Path

from pipeline.config.connections import connections_home
from pipeline.krux.summary import FailedSummary, Summary

__all__ = ["KEEP_RUNS", "TRIM_AT_RUNS", "history_file", "read_history", "record_run"]

KEEP_RUNS = 10_000
"""Runs kept per export."""

TRIM_AT_RUNS = 11_000
"""Lines at which the file is cut back to `KEEP_RUNS`: trimming now and then, not on every run."""

HISTORY_DIR = "history"


def history_file(export_name: str, home: Path | str | None = None) -> Path:
    """`$KRUX_EXPORT_HOME/history/{export_name}.jsonl`; the name is checked by `RunSettings`."""
    return Path(home or connections_home()) / HISTORY_DIR / f"{export_name}.jsonl"


def record_run(
    summary: Summary | FailedSummary,
    *,
    export_name: str,
    started_at: datetime.datetime,
    job_name: str | None = None,
    home: Path | str | None = None,
    keep: int = KEEP_RUNS,
    trim_at: int = TRIM_AT_RUNS,
) -> Path:
    """Appends the run's summary line, with `started_at`, `export_name` and, for a job's run,
    `job` (its name: jobs may share an export name); returns the file.

    Raises OSError when the file cannot be written (the caller warns; a run's outcome stands).
    """
    job = {"job": job_name} if job_name is not None else {}
    line = json.dumps({"started_at": _utc_text(started_at), "export_name": export_name, **job, **summary.to_json()})
    path = history_file(export_name, home)
    # $KRUX_EXPORT_HOME too is created private (SPEC §7), as `connection add` creates it; a
    # folder that exists keeps the mode its owner gave it.
    if not path.parent.parent.exists():
        path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with _locked(path, fcntl.LOCK_EX, create=True) as handle:
        handle.seek(0, os.SEEK_END)
        handle.write((line + "\n").encode("utf-8"))
        handle.flush()
        if _count_lines(handle) > trim_at:
            _keep_last(handle, path, keep)
    return path


def read_history(export_name: str, last: int | None, home: Path | str | None = None) -> list[str]:
    """The last `last` lines (all when None) of the export's history, oldest first; [] when there is none."""
    path = history_file(export_name, home)
    try:
        with _locked(path, fcntl.LOCK_SH, create=False) as handle:
            handle.seek(0)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    lines = [line for line in lines if line.strip()]
    return lines[-last:] if last is not None else lines


class _locked:
    """The file at `path`, open and locked (appending when `create`); reopened if it was replaced."""

    def __init__(self, path: Path, operation: int, *, create: bool):
        self.path, self.operation, self.create = path, operation, create
        self.handle = None

    def __enter__(self):
        while True:
            if self.create:
                handle = os.fdopen(os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600), "r+b", buffering=0)
            else:
                handle = open(self.path, "rb", buffering=0)
            fcntl.flock(handle.fileno(), self.operation)
            try:
                same = os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.handle = handle
                return handle
            handle.close()  # trimmed (replaced) while we waited: the new file is the history

    def __exit__(self, *exc):
        self.handle.close()  # closing releases the lock
        return False


def _count_lines(handle) -> int:
    handle.seek(0)
    count = 0
    while block := handle.read(1 << 20):
        count += block.count(b"\n")
    return count


def _keep_last(handle, path: Path, keep: int) -> None:
    handle.seek(0)
    lines = handle.read().splitlines(keepends=True)[-keep:]
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.writelines(lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)  # while we hold the old file's lock: waiters then reopen
    except BaseException:
        os.unlink(temporary)
        raise


def _utc_text(moment: datetime.datetime) -> str:
    utc = moment.astimezone(datetime.timezone.utc)
    return utc.replace(microsecond=0).isoformat().replace("+00:00", "Z")
