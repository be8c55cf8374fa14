"""Progress on stderr while the pipeline runs: a live bar on a terminal, plain lines otherwise.

It shows rows read of the total the Parquet footers give (CSV tables give none: then rows
without a percent), shards written, elapsed and remaining time. The numbers come from the
workers' `ProgressChannel` on local runners, or from Beam's metrics on remote ones when the
runner reports them mid-run; from neither, only the time goes by.

tqdm draws the bar: a small pure-Python library with no dependencies, which handles unknown
totals, rates and remaining time, and terminal widths.
"""

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

from pipeline.config.wording import plural
from pipeline.launcher.beam_options import is_local_runner
from transforms import metrics
from transforms.progress import Progress, ProgressChannel

__all__ = ["ProgressDisplay", "RunProgress", "metrics_progress"]

log = logging.getLogger(__name__)

BAR_INTERVAL_S = 1.0
PLAIN_INTERVAL_S = 5.0


class RunProgress:
    """A run's progress: the workers' channel (local runners) and the display, around the run.

    All off when disabled (`--quiet`). On a failure the display just ends: the error says the rest.
    """

    def __init__(self, tasks, options, *, enabled: bool):
        self.channel: ProgressChannel | None = None
        self._display: ProgressDisplay | None = None
        self._local = is_local_runner(options)
        rows = [task.rows for task in tasks]
        self.total_rows: int | None = sum(rows) if rows and None not in rows else None  # CSV, query: unknown
        if not enabled:
            return
        if self._local:
            self.channel = ProgressChannel(tempfile.mkdtemp(prefix="krux-export-progress-"))
        self._display = ProgressDisplay(self.total_rows)

    def __enter__(self) -> "RunProgress":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if self._display is not None:
            self._display.stop(final=error_type is None)
        if self.channel is not None:
            shutil.rmtree(self.channel.directory, ignore_errors=True)

    def start(self) -> None:
        if self._display is not None:
            self._display.start(self.channel.reader().read if self.channel else None)

    def follow(self, result) -> None:
        """A remote job, once submitted: its metrics, if its runner reports them mid-run."""
        if self._display is not None and not self._local:
            self._display.follow(metrics_progress(result))


class ProgressDisplay:
    """Polls a progress source on a thread of its own and shows it, until `stop()`.

    Made before stderr is redirected (the local runner filters its workers' stderr through a
    pipe, which would hold back the bar's carriage returns): the bar writes to a copy of the
    terminal's descriptor taken here.
    """

    def __init__(self, total_rows: int | None, *, stream=None, interval_s: float | None = None):
        self._total_rows = total_rows
        self._stream, self._own_stream = (stream, False) if stream is not None else _stderr_copy()
        self._live = _is_terminal(self._stream)
        self._interval_s = interval_s or (BAR_INTERVAL_S if self._live else PLAIN_INTERVAL_S)
        self._source: Callable[[], Progress | None] = lambda: None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="krux-export-progress", daemon=True)
        self._bar = None
        self._started = 0.0
        self._last = Progress()
        self._shown: Progress | None = None  # in the last plain line

    def start(self, source: Callable[[], Progress | None] | None = None) -> "ProgressDisplay":
        if source is not None:
            self._source = source
        self._started = time.monotonic()
        if self._live:
            self._bar = tqdm(total=self._total_rows, file=self._stream, unit=" rows", unit_scale=True,
                             desc="reading", dynamic_ncols=True, mininterval=0, miniters=1)
        self._thread.start()
        return self

    def follow(self, source: Callable[[], Progress | None]) -> None:
        """Read from `source` from now on (a remote job's metrics, once it is submitted)."""
        self._source = source

    def stop(self, *, final: bool = True) -> None:
        """Ends the display; `final` shows the last numbers first (a record of the run in a log)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)
        try:
            progress = self._poll() if final and self._thread.ident is not None else None
            if progress is not None and (self._bar is not None or progress != self._shown):
                self._show(progress)
            if self._bar is not None:
                self._bar.close()
        except Exception as error:  # progress must never fail the export
            log.debug("progress: %s", error)
        if self._own_stream:
            with contextlib.suppress(OSError):
                self._stream.close()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._show(self._poll())
            except Exception as error:  # progress must never fail the export
                log.debug("progress: %s", error)

    def _poll(self) -> Progress:
        progress = self._source()
        if progress is not None:
            self._last = progress
        return self._last

    def _show(self, progress: Progress) -> None:
        if self._bar is not None:
            self._bar.update(max(0, progress.rows - self._bar.n))
            self._bar.set_postfix_str(_shards(progress.shards), refresh=False)
            self._bar.refresh()
        else:
            line = self.describe(progress, time.monotonic() - self._started)
            print(f"krux-export: {line}", file=self._stream, flush=True)
            self._shown = progress

    def describe(self, progress: Progress, elapsed: float) -> str:
        """One plain line: `3,276,800 of 10,000,000 rows read (32%), 12 shards written, ...`."""
        total, rows = self._total_rows, progress.rows
        read = f"{rows:,} of {plural(total, 'row')} read ({min(100, 100 * rows // total)}%)" if total else \
            f"{plural(rows, 'row')} read"
        text = f"{read}, {_shards(progress.shards)}, {_duration(elapsed)} elapsed"
        if total and 0 < rows < total:
            text += f", about {_duration(elapsed * max(0, total - rows) / rows)} left"
        return text


def metrics_progress(result) -> Callable[[], Progress | None]:
    """A source reading a submitted job's counters (None while the runner reports none)."""

    def read() -> Progress | None:
        try:
            counters = metrics.query_counters(result)
        except Exception:  # a runner without mid-run metrics
            return None
        if not counters:
            return None
        rows = sum(value for name, value in counters.items() if name.startswith(metrics.ROWS_READ))
        return Progress(rows, counters.get(metrics.SHARDS_WRITTEN, 0))

    return read


def _stderr_copy():
    """(stream, owned): a copy of stderr's descriptor, or stderr itself if it has none (tests)."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1), True
    except (AttributeError, OSError, ValueError):
        return sys.stderr, False


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _shards(count: int) -> str:
    return f"{plural(count, 'shard')} written"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
