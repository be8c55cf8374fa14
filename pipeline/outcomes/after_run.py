"""After each run: its line goes into the export's history, and the job's `notify:` is told.

Both come after the run's outcome is decided and neither can change it: a history that cannot
be written, or a notification that fails, is a warning on stderr.
"""

import datetime
import logging

from pipeline.config.notify import Notify
from pipeline.krux.summary import FailedSummary, Summary
from pipeline.outcomes.history import history_file, record_run
from pipeline.outcomes.notify import send_notifications

__all__ = ["after_disabling", "after_run"]

log = logging.getLogger(__name__)


def after_run(
    summary: Summary | FailedSummary,
    *,
    export_name: str,
    started_at: datetime.datetime,
    job_name: str | None = None,
    notify: Notify | None = None,
    tell: bool = True,
) -> None:
    """Records the run; then, for a job, sends `success` or `failure` where its `notify:` says.

    `tell=False` records without notifying (a run stopped by a signal: someone chose to stop
    it, and the stop must stay prompt).
    """
    try:
        record_run(summary, export_name=export_name, started_at=started_at, job_name=job_name)
    except OSError as error:
        log.warning("the run was not added to the history %s: %s", history_file(export_name),
                    error.strerror or error)
    if tell and job_name is not None:
        event = "success" if isinstance(summary, Summary) else "failure"
        send_notifications(notify, summary, job=job_name, event=event)


def after_disabling(summary: FailedSummary, *, job_name: str, notify: Notify | None) -> None:
    """Sends `disabled` (after the last run's `failure`): the schedule has stopped itself."""
    send_notifications(notify, summary, job=job_name, event="disabled")
