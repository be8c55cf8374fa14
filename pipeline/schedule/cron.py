"""When a job runs: its cron schedule in its time zone, plus its delay. Pure: no clock, no I/O.

Decisions, each with a test in tests/unit/test_schedule.py:
- Cron semantics are crontab(5)'s: when both day fields are restricted, a day matching either
  runs; a field starting with `*` (such as `*/2`) is not restricted, so then both must match.
- Clocks going back (a wall-clock time that happens twice): a job that names its hours runs
  once, at the first occurrence, so a daily job runs exactly once that day. A job whose hour
  field is `*` runs in the repeated hour too: that is a real hour, and skipping it would lose runs.
- Clocks going forward (a time that never happens): the run happens when the clocks jump
  (02:30 becomes 03:00), once, so no day loses its run.
- The delay is real elapsed time, added in UTC: 01:30 EDT plus 45 minutes, on the night the
  clocks go back, is 01:15 EST.
"""

import datetime
import itertools
import zoneinfo
from collections.abc import Iterator
from typing import Protocol

from croniter import CroniterBadDateError, croniter

__all__ = ["Timing", "cron_fields", "next_start_times", "slots"]

UTC = datetime.timezone.utc

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""crontab(5)'s nicknames, except @reboot, which is no time at all."""

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (  # name, lowest, highest, names for lowest, lowest + 1, ...
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),  # 0 and 7 are both Sunday
)


class Timing(Protocol):
    """What decides a job's start times (a `Job` has these)."""

    schedule: str | None
    timezone: str
    delay: datetime.timedelta


def cron_fields(expression: str) -> str:
    """The five cron fields of `expression` (a nickname is expanded); ValueError says what is wrong.

    Standard cron only: numbers, `sun`-`sat` and `jan`-`dec`, `*`, ranges, lists, and steps
    after `*` or a range. croniter's extensions (seconds and years fields, `L`, `W`, `#`, `?`,
    `H`, ranges that wrap around) are refused, since another cron would read them differently.
    """
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ValueError(f"is not a cron nickname; use one of {', '.join(ALIASES)}")
        return ALIASES[text.lower()]
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise ValueError(
            f"must have five fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    for field, spec in zip(fields, _FIELDS):
        _check_field(field, *spec)
    fields_text = " ".join(fields)
    if not croniter.is_valid(fields_text):
        raise ValueError("is not a valid cron expression")
    try:
        _times(fields_text, datetime.datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime.datetime)
    except CroniterBadDateError:
        raise ValueError("never matches a date (that day does not occur in those months)") from None
    return fields_text


def next_start_times(
    job: Timing, after: datetime.datetime, count: int
) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """The next `count` (scheduled time, start time) pairs whose start time is after `after`.

    Start time = scheduled time + the job's delay. Both are aware datetimes in the job's zone.
    """
    return list(itertools.islice(slots(job, after), count))


def slots(job: Timing, after: datetime.datetime) -> Iterator[tuple[datetime.datetime, datetime.datetime]]:
    """(scheduled, start) pairs with start after `after`, in order, without end."""
    if job.schedule is None:
        raise ValueError("the job has no schedule")
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"after must be a time zone aware datetime, got {after!r}")
    zone = zoneinfo.ZoneInfo(job.timezone)
    fields = cron_fields(job.schedule)
    every_hour = fields.split()[1] == "*"
    # A slot starts after `after` exactly when its scheduled time is after `after - delay`.
    times = _times(fields, (after.astimezone(UTC) - job.delay).astimezone(zone))
    while True:
        scheduled = times.get_next(datetime.datetime).astimezone(zone)
        if _is_repeated_wall_time(scheduled) and not every_hour:
            continue  # its first occurrence, an hour earlier, was the run
        yield scheduled, (scheduled.astimezone(UTC) + job.delay).astimezone(zone)


def _times(fields: str, start: datetime.datetime) -> croniter:
    # implement_cron_bug: crontab(5)'s rule that a day field starting with `*` is not
    # "restricted", so `0 0 */2 * mon` means odd-numbered Mondays, as Vixie cron and cronie run it.
    return croniter(fields, start_time=start, implement_cron_bug=True)


def _is_repeated_wall_time(moment: datetime.datetime) -> bool:
    """True for the second occurrence of a wall-clock time, in the hour the clocks go back."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def _check_field(field: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> None:
    def value(text: str) -> int:
        if text.isdigit() and lowest <= int(text) <= highest:
            return int(text)
        if text.lower() in names:
            return lowest + names.index(text.lower())
        allowed = f"{lowest}-{highest}" + (f" or {names[0]}-{names[-1]}" if names else "")
        raise ValueError(f"has {text!r} in the {name} field, expected {allowed}")

    for item in field.split(","):
        body, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) >= 1):
            raise ValueError(f"has step {step!r} in the {name} field, expected a whole number of 1 or more")
        if body == "*":
            continue
        first, dash, last = body.partition("-")
        if not dash:
            value(first)
            if slash:
                raise ValueError(f"has {item!r} in the {name} field; a step goes after * or a range (a-b/{step})")
        elif value(first) > value(last):
            raise ValueError(f"has range {body!r} in the {name} field running backwards")
