"""The loop that runs a job at each start time, until stopped or disabled.

It takes its clock and its one-run function as arguments, so tests never sleep.
- Runs never overlap. A slot whose start time passes while the previous run is still going is
  skipped, with a warning, as cron would; so every run starts at a time `schedule --next` lists.
- A run exports the UTC date of its scheduled time (not of its start time, not the local date).
- `max_config_failures` runs in a row failing with exit code 2 disable the schedule. Any other
  outcome (success, or a failure with exit code 1, 3 or 4) ends the run of configuration failures.
"""

import datetime
import itertools
import logging
import time
from collections.abc import Callable
from typing import NoReturn, Protocol

from pipeline.errors import ConfigError, UsageError, describe_failure
from pipeline.schedule.cron import Timing, next_start_times, slots

__all__ = ["Clock", "ScheduleDisabled", "SystemClock", "run_schedule"]

log = logging.getLogger(__name__)

UTC = datetime.timezone.utc


class ScheduleDisabled(ConfigError):
    """Too many configuration failures in a row: the schedule stops itself (exit code 2)."""


class ScheduledJob(Timing, Protocol):
    """What the loop needs of a job: its name, its timing, and the settings a run starts from."""

    name: str
    settings: object  # RunSettings: `settings.replace(date=...)` gives a run's settings


class Clock(Protocol):
    """What `run_schedule` needs of time: tests pass one that never sleeps."""

    def now(self) -> datetime.datetime:
        """The current time, time zone aware."""

    def sleep_until(self, moment: datetime.datetime) -> None:
        """Returns at `moment` or soon after (at once if it has passed)."""


class SystemClock:
    """The real clock, in UTC. `wall` and `sleep` are the system's unless given (tests give theirs)."""

    SLICE_SECONDS = 1.0
    """Longest single sleep: a clock stepped by NTP or a machine waking from suspend is noticed
    within this long, and SIGTERM/SIGINT are handled between slices at the latest."""

    def __init__(
        self,
        *,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._wall, self._sleep = wall, sleep

    def now(self) -> datetime.datetime:
        return self._wall()

    def sleep_until(self, moment: datetime.datetime) -> None:
        while (remaining := (moment - self.now()).total_seconds()) > 0:
            self._sleep(min(remaining, self.SLICE_SECONDS))


def run_schedule(
    job: ScheduledJob,
    run_once: Callable[[object], object],
    clock: Clock,
    *,
    max_config_failures: int = 3,
) -> NoReturn:
    """Runs the job at each start time until stopped or disabled.

    `run_once(settings)` runs one export: the job's settings with `date` set to the UTC date
    of the scheduled time. It returns anything (the summary) on success and raises an
    `ExportError` (or anything else, counted as exit code 1) on failure. Failures are logged
    and the loop goes on to the next slot, except that `max_config_failures` exit-2 failures
    in a row raise `ScheduleDisabled` (a `ConfigError`) with the last reason. `KeyboardInterrupt`
    and other BaseExceptions (the CLI's `Terminated`) from the clock or a run propagate at once.
    """
    strikes = 0
    after = clock.now()
    while True:
        scheduled, start = next_start_times(job, after, 1)[0]
        log.info("job %s: next run at %s (scheduled %s)", job.name, start.isoformat(), scheduled.isoformat())
        clock.sleep_until(start)
        date = scheduled.astimezone(UTC).date()
        log.info("job %s: running the export for %s (scheduled %s)", job.name, date, scheduled.isoformat())
        try:
            run_once(job.settings.replace(date=date))
        except Exception as error:
            exit_code, reason = describe_failure(error)
            log.error("job %s: the run scheduled %s failed (exit code %d): %s",
                      job.name, scheduled.isoformat(), exit_code, reason)
            strikes = strikes + 1 if exit_code == UsageError.exit_code else 0
            if strikes >= max_config_failures:
                raise ScheduleDisabled(
                    f"schedule disabled after {strikes} consecutive configuration failures: {reason}"
                ) from error
            if strikes:
                log.warning("job %s: configuration failure %d of %d in a row; at %d the schedule is disabled",
                            job.name, strikes, max_config_failures, max_config_failures)
        else:
            strikes = 0
            log.info("job %s: the run scheduled %s succeeded", job.name, scheduled.isoformat())
        ended = clock.now()
        _warn_of_missed_slots(job, start, ended)
        after = max(ended, start)


def _warn_of_missed_slots(job: ScheduledJob, last_start: datetime.datetime, ended: datetime.datetime) -> None:
    missed = list(itertools.takewhile(lambda slot: slot[1] <= ended, slots(job, last_start)))
    if missed:
        log.warning("job %s: skipped %d run(s) whose start time came while the last run was going (from %s to %s)",
                    job.name, len(missed), missed[0][1].isoformat(), missed[-1][1].isoformat())
