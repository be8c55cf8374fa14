"""When a job runs: its cron schedule in its time zone, plus its delay. Pure: no clock, no I/O.

Decisions, each with a test in tests/unit/test_cron_seed.py or tests/unit/test_schedule.py:
- By default, Treasure Data's rules (the seed's): `*/N` matches the multiples of N in the field
  (`*/5` in day of month: the 5th, 10th, ..., 30th); N runs from 1 to the field's highest
  value; a step after a range or a single value is refused. When both day fields are
  restricted (neither is `*`), only the one that matches more often is followed: day of week
  when 31 x (its days) >= 7 x (day of month's days), else day of month.
- `cron_semantics: vixie`: crontab(5)'s rules: `*/N` starts from the field's lowest value,
  `a-b/N` is allowed, and when both day fields are restricted a day matching either runs; a
  field starting with `*` (such as `*/2`) is not restricted, so then both must match.
- Clocks going back (a wall-clock time that happens twice): a job that names some hours runs
  once, at the first occurrence, so a daily job runs exactly once that day. A job whose hour
  field names all 24 hours runs in the repeated hour too: that is a real hour, and skipping
  it would lose runs.
- Clocks going forward (a time that never happens): the run happens when the clocks jump
  (02:30 becomes 03:00), once, so no day loses its run.
- The delay is real elapsed time, added in UTC: 01:30 EDT plus 45 minutes, on the night the
  clocks go back, is 01:15 EST.
"""

import dataclasses
import datetime
import itertools
import zoneinfo
from collections.abc import Iterator
from typing import Protocol

from croniter import CroniterBadDateError, croniter

__all__ = ["DEFAULT_SEMANTICS", "SEMANTICS", "Cron", "Timing", "cron_fields", "next_start_times", "parse_cron", "slots"]

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

SEMANTICS = ("treasure_data", "vixie")
"""`treasure_data` (the default): the rules of Treasure Data's scheduler, as the seed documents
them; `vixie`: standard cron (crontab(5)), as croniter runs it."""

DEFAULT_SEMANTICS = "treasure_data"


@dataclasses.dataclass(frozen=True)
class _Field:
    """One of the five fields: its name, its values, and the names or numbers standing for them."""

    name: str
    lowest: int
    highest: int
    names: tuple[str, ...] = ()
    aliases: tuple[tuple[int, int], ...] = ()  # (a number allowed beyond `highest`, the value it means)

    def values(self, text: str, semantics: str) -> frozenset[int]:
        """The values `text` matches; ValueError names the field and what was expected."""
        found = set()
        for item in text.split(","):
            body, slash, step_text = item.partition("/")
            step = self._step(step_text) if slash else 1
            every = range(self.lowest, self.highest + 1)
            if body == "*" and semantics == "treasure_data":
                found.update(value for value in every if value % step == 0)  # multiples of the step
                continue
            if body == "*":
                found.update(every[::step])  # every step-th value from the lowest
                continue
            first, dash, last = body.partition("-")
            if slash and semantics == "treasure_data":
                raise ValueError(f"has {item!r} in the {self.name} field; a step goes after * only (*/{step_text})")
            if slash and not dash:
                raise ValueError(
                    f"has {item!r} in the {self.name} field; a step goes after * or a range (a-b/{step_text})"
                )
            start = self._value(first)
            end = self._value(last) if dash else start
            if start > end:
                raise ValueError(f"has range {body!r} in the {self.name} field running backwards")
            found.update(range(start, end + 1, step))
        aliases = dict(self.aliases)
        return frozenset(aliases.get(value, value) for value in found)

    def _value(self, text: str) -> int:
        if text.isdigit() and (self.lowest <= int(text) <= self.highest or int(text) in dict(self.aliases)):
            return int(text)
        if text.lower() in self.names:
            return self.lowest + self.names.index(text.lower())
        top = max([self.highest, *dict(self.aliases)])
        allowed = f"{self.lowest}-{top}" + (f" or {self.names[0]}-{self.names[-1]}" if self.names else "")
        raise ValueError(f"has {text!r} in the {self.name} field, expected {allowed}")

    def _step(self, text: str) -> int:
        if not (text.isdigit() and 1 <= int(text) <= self.highest):
            raise ValueError(
                f"has step {text!r} in the {self.name} field, expected a whole number from 1 to {self.highest}"
            )
        return int(text)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 6, _DAYS, aliases=((7, 0),)),  # 7 is Sunday too
)
_HOUR, _DAY_OF_MONTH, _DAY_OF_WEEK = 1, 2, 4


@dataclasses.dataclass(frozen=True)
class Cron:
    """A checked cron expression: the five fields croniter evaluates, and the hours they name."""

    fields: str
    hours: frozenset[int]


class Timing(Protocol):
    """What decides a job's start times (a `Job` has these)."""

    schedule: str | None
    timezone: str
    delay: datetime.timedelta
    cron_semantics: str


def parse_cron(expression: str, semantics: str = DEFAULT_SEMANTICS) -> Cron:
    """`expression` checked, and put as croniter is to read it; ValueError says what is wrong.

    Standard cron syntax only: numbers, `sun`-`sat` and `jan`-`dec`, `*`, ranges, lists,
    steps, nicknames. croniter's extensions (seconds and years fields, `L`, `W`, `#`, `?`, `H`,
    ranges that wrap around) are refused, since another cron would read them differently.
    With Treasure Data's rules, every restricted field becomes the list of its values (so `*/N`
    is the multiples of N) and, when both day fields are restricted, the one matching less
    often becomes `*`: croniter, with its DST handling, then runs exactly those times.
    """
    if semantics not in SEMANTICS:
        raise ValueError(f"cron_semantics must be one of {', '.join(SEMANTICS)}, got {semantics!r}")
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ValueError(f"is not a cron nickname; use one of {', '.join(ALIASES)}")
        text = ALIASES[text.lower()]
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise ValueError(
            f"must have five fields (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    values = [spec.values(field, semantics) for field, spec in zip(fields, _FIELDS)]
    if semantics == "treasure_data":
        fields = [field if field == "*" else ",".join(map(str, sorted(v))) for field, v in zip(fields, values)]
        if fields[_DAY_OF_MONTH] != "*" and fields[_DAY_OF_WEEK] != "*":
            # Only the day field that matches more often counts (a month has up to 31 days, a week 7).
            weekly = 31 * len(values[_DAY_OF_WEEK]) >= 7 * len(values[_DAY_OF_MONTH])
            fields[_DAY_OF_MONTH if weekly else _DAY_OF_WEEK] = "*"
    fields_text = " ".join(fields)
    if not croniter.is_valid(fields_text):
        raise ValueError("is not a valid cron expression")
    try:
        _times(fields_text, datetime.datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime.datetime)
    except CroniterBadDateError:
        raise ValueError("never matches a date (that day does not occur in those months)") from None
    return Cron(fields_text, values[_HOUR])


def cron_fields(expression: str, semantics: str = DEFAULT_SEMANTICS) -> str:
    """The five fields croniter is to evaluate for `expression`; ValueError says what is wrong."""
    return parse_cron(expression, semantics).fields


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
    cron = parse_cron(job.schedule, job.cron_semantics)
    every_hour = len(cron.hours) == 24
    # A slot starts after `after` exactly when its scheduled time is after `after - delay`.
    times = _times(cron.fields, (after.astimezone(UTC) - job.delay).astimezone(zone))
    while True:
        scheduled = times.get_next(datetime.datetime).astimezone(zone)
        if _is_repeated_wall_time(scheduled) and not every_hour:
            continue  # its first occurrence, an hour earlier, was the run
        yield scheduled, (scheduled.astimezone(UTC) + job.delay).astimezone(zone)


def _times(fields: str, start: datetime.datetime) -> croniter:
    # implement_cron_bug: crontab(5)'s rule that a day field starting with `*` is not
    # "restricted", so `0 0 */2 * mon` means odd-numbered Mondays, as Vixie cron and cronie run it.
    # (Treasure Data's fields reach croniter as lists, or `*`, so the rule does not touch them.)
    return croniter(fields, start_time=start, implement_cron_bug=True)


def _is_repeated_wall_time(moment: datetime.datetime) -> bool:
    """True for the second occurrence of a wall-clock time, in the hour the clocks go back."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()
