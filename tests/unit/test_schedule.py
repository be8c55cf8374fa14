"""Schedules (SPEC §6): start times in the job's time zone, and the run loop on a fake clock."""

import datetime
import logging
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from pipeline.errors import Terminated
from pipeline.errors import ConfigError, InvalidRecordsError, SchemaError, StorageError
from pipeline.config.jobs import Job
from pipeline.schedule.cron import ALIASES, next_start_times
from pipeline.schedule.loop import SystemClock, run_schedule
from pipeline.config.settings import RunSettings

UTC = datetime.timezone.utc
SETTINGS = RunSettings(database="/data/activate_to_krux", connection="dmp")


def make_job(schedule, timezone="UTC", delay=datetime.timedelta(0), cron_semantics="treasure_data"):
    return Job(name="test_job", settings=SETTINGS, path="job.yml", timezone=timezone, schedule=schedule, delay=delay,
               cron_semantics=cron_semantics)


def at(text):
    return datetime.datetime.fromisoformat(text)


def starts(job, after, count):
    return [start.isoformat() for _, start in next_start_times(job, at(after), count)]


def scheduled(job, after, count):
    return [time.isoformat() for time, _ in next_start_times(job, at(after), count)]


# --- start times --------------------------------------------------------------------------------

def test_daily_with_a_ten_minute_delay_starts_ten_minutes_after_midnight():
    job = make_job("0 0 * * *", delay=datetime.timedelta(minutes=10))
    assert next_start_times(job, at("2026-11-28T12:00:00+00:00"), 2) == [
        (at("2026-11-29T00:00:00+00:00"), at("2026-11-29T00:10:00+00:00")),
        (at("2026-11-30T00:00:00+00:00"), at("2026-11-30T00:10:00+00:00")),
    ]


def test_a_slot_whose_start_is_still_ahead_is_next_even_if_its_scheduled_time_passed():
    job = make_job("0 0 * * *", delay=datetime.timedelta(minutes=10))
    assert starts(job, "2026-11-29T00:05:00+00:00", 1) == ["2026-11-29T00:10:00+00:00"]
    assert starts(job, "2026-11-29T00:10:00+00:00", 1) == ["2026-11-30T00:10:00+00:00"]  # strictly after


@pytest.mark.parametrize("schedule, after, expected", [
    ("@hourly", "2026-11-28T22:30:00+00:00",
     ["2026-11-28T23:00:00+00:00", "2026-11-29T00:00:00+00:00", "2026-11-29T01:00:00+00:00"]),
    ("@daily", "2026-11-28T22:30:00+00:00",
     ["2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00", "2026-12-01T00:00:00+00:00"]),
    ("@weekly", "2026-11-28T22:30:00+00:00",  # Sundays
     ["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00", "2026-12-13T00:00:00+00:00"]),
    ("@monthly", "2026-11-28T22:30:00+00:00",
     ["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", "2027-02-01T00:00:00+00:00"]),
    ("@yearly", "2026-11-28T22:30:00+00:00",
     ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00", "2029-01-01T00:00:00+00:00"]),
    # Friday 27 November 2026, then the weekend is skipped.
    ("0 9 * * mon-fri", "2026-11-27T10:00:00+00:00",
     ["2026-11-30T09:00:00+00:00", "2026-12-01T09:00:00+00:00", "2026-12-02T09:00:00+00:00"]),
    ("0 9 * * MON-FRI", "2026-11-27T08:00:00+00:00",
     ["2026-11-27T09:00:00+00:00", "2026-11-30T09:00:00+00:00", "2026-12-01T09:00:00+00:00"]),
    ("0 0 1 jan,jul *", "2026-11-28T00:00:00+00:00",
     ["2027-01-01T00:00:00+00:00", "2027-07-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
    ("0 0 * * 7", "2026-11-28T00:00:00+00:00",  # 7 is Sunday, like 0
     ["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00", "2026-12-13T00:00:00+00:00"]),
    ("0 0 29 2 *", "2026-11-28T00:00:00+00:00",
     ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00", "2036-02-29T00:00:00+00:00"]),
])
def test_nicknames_names_and_fields(schedule, after, expected):
    assert starts(make_job(schedule), after, 3) == expected


@pytest.mark.parametrize("semantics", ["treasure_data", "vixie"])
@pytest.mark.parametrize("schedule, expected", [
    ("5,*/10,25 * * * *", ["10:05", "10:10", "10:20", "10:25", "10:30", "10:40", "10:50", "11:00", "11:05"]),
    ("2,*/5,8-10 * * * *", ["10:02", "10:05", "10:08", "10:09", "10:10", "10:15", "10:20", "10:25", "10:30"]),
])
def test_lists_of_steps_ranges_and_values(schedule, expected, semantics):
    """Minutes count from 0, so `*/N` is the multiples of N under both rule sets."""
    times = starts(make_job(schedule, cron_semantics=semantics), "2026-11-28T10:00:00+00:00", 9)
    assert [time[11:16] for time in times] == expected


@pytest.mark.parametrize("schedule, expected", [
    ("10-30/10,45 * * * *", ["10:10", "10:20", "10:30", "10:45", "11:10", "11:20", "11:30", "11:45", "12:10"]),
    ("0 9-17/4,22 * * *", ["13:00", "17:00", "22:00", "09:00", "13:00", "17:00", "22:00", "09:00", "13:00"]),
])
def test_vixie_stepped_ranges(schedule, expected):
    times = starts(make_job(schedule, cron_semantics="vixie"), "2026-11-28T10:00:00+00:00", 9)
    assert [time[11:16] for time in times] == expected


def test_vixie_day_of_month_or_day_of_week_when_both_are_restricted():
    """crontab(5): the 1st of the month or any Monday (the seed's rules: Mondays only, see test_cron_seed)."""
    assert scheduled(make_job("0 0 1 * mon", cron_semantics="vixie"), "2026-11-25T00:00:00+00:00", 3) == [
        "2026-11-30T00:00:00+00:00",  # a Monday
        "2026-12-01T00:00:00+00:00",  # a Tuesday, the 1st
        "2026-12-07T00:00:00+00:00",
    ]


def test_vixie_a_day_field_starting_with_star_is_not_restricted_so_both_must_match():
    """crontab(5), as Vixie cron and cronie run it: Mondays that fall on an odd day of the month."""
    assert scheduled(make_job("0 0 */2 * mon", cron_semantics="vixie"), "2026-11-25T00:00:00+00:00", 3) == [
        "2026-12-07T00:00:00+00:00",
        "2026-12-21T00:00:00+00:00",
        "2027-01-11T00:00:00+00:00",
    ]


@pytest.mark.parametrize("schedule", [
    "0 0 * * *", "@hourly", "*/7 * * * *", "5,*/10,25 * * * *", "2,*/5,8-10 * * * *", "15 3 * * mon-fri",
    "0 12 1 jan,jul *", "0 6,18 */3 * *", "59 23 31 * *", "0 0 1 * mon", "0 9-17/2 1-15 * *",
])
def test_vixie_times_in_utc_agree_with_croniter(schedule):
    after = at("2026-11-28T07:31:00+00:00")
    times = croniter(ALIASES.get(schedule, schedule), start_time=after, implement_cron_bug=True)
    expected = [times.get_next(datetime.datetime) for _ in range(40)]
    assert [time for time, _ in next_start_times(make_job(schedule, cron_semantics="vixie"), after, 40)] == expected


@pytest.mark.parametrize("schedule", [
    "0 0 * * *", "@hourly", "*/7 * * * *", "5,*/10,25 * * * *", "2,*/5,8-10 * * * *", "15 3 * * mon-fri",
    "0 12 1 jan,jul *", "59 23 31 * *", "0 */6 * * *",
])
def test_where_the_seeds_rules_and_vixies_agree_the_times_are_croniters(schedule):
    """Zero-based steps, one restricted day field: the two rule sets mean the same."""
    after = at("2026-11-28T07:31:00+00:00")
    times = croniter(ALIASES.get(schedule, schedule), start_time=after)
    expected = [times.get_next(datetime.datetime) for _ in range(40)]
    assert [time for time, _ in next_start_times(make_job(schedule), after, 40)] == expected


def test_times_are_in_the_jobs_zone_whatever_the_zone_of_after():
    job = make_job("0 8 * * *", "Asia/Tokyo", datetime.timedelta(minutes=30))
    assert starts(job, "2026-11-28T12:00:00+00:00", 2) == ["2026-11-29T08:30:00+09:00", "2026-11-30T08:30:00+09:00"]
    assert starts(job, "2026-11-28T23:15:00+00:00", 1) == ["2026-11-29T08:30:00+09:00"]  # 08:15 in Tokyo


def test_a_naive_after_is_refused():
    with pytest.raises(ValueError, match="time zone aware"):
        next_start_times(make_job("@daily"), datetime.datetime(2026, 11, 28), 1)


def test_a_job_without_schedule_has_no_start_times():
    with pytest.raises(ValueError, match="the job has no schedule"):
        next_start_times(make_job(None), at("2026-11-28T00:00:00+00:00"), 1)


# --- daylight saving time ------------------------------------------------------------------------

def test_new_york_spring_forward_runs_the_missing_0230_once_when_the_clocks_jump():
    job = make_job("30 2 * * *", "America/New_York")
    assert scheduled(job, "2026-03-06T12:00:00-05:00", 3) == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:00:00-04:00",  # 02:30 does not happen on 8 March
        "2026-03-09T02:30:00-04:00",
    ]


def test_new_york_fall_back_runs_the_twice_seen_0130_only_the_first_time():
    job = make_job("30 1 * * *", "America/New_York")
    assert scheduled(job, "2026-10-31T12:00:00-04:00", 3) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]
    # Asked in the repeated hour, after the first 01:30: not again the same night.
    assert scheduled(job, "2026-11-01T01:45:00-04:00", 1) == ["2026-11-02T01:30:00-05:00"]
    assert scheduled(job, "2026-11-01T01:10:00-05:00", 1) == ["2026-11-02T01:30:00-05:00"]


def test_berlin_changes_of_time_give_one_run_each_day():
    job = make_job("30 2 * * *", "Europe/Berlin")
    assert scheduled(job, "2026-03-28T12:00:00+01:00", 2) == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    assert scheduled(job, "2026-10-24T12:00:00+02:00", 2) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


@pytest.mark.parametrize("timezone", ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"])
@pytest.mark.parametrize("schedule", ["30 1 * * *", "30 2 * * *", "0 0 * * *", "59 23 * * *", "0 1,2 * * *"])
def test_over_a_year_every_calendar_day_gets_its_runs_exactly_once(timezone, schedule):
    zone = ZoneInfo(timezone)
    runs_a_day = len(schedule.split()[1].split(","))
    times = [t for t, _ in next_start_times(make_job(schedule, timezone), at("2026-01-01T00:00:00+14:00"), 800)]
    in_2026 = [t for t in times if t.year == 2026]
    days = [t.date() for t in in_2026]
    assert sorted(set(days)) == [datetime.date(2026, 1, 1) + datetime.timedelta(d) for d in range(365)]
    assert all(days.count(day) <= runs_a_day for day in set(days))
    assert len(in_2026) >= 365 * runs_a_day - 1  # on the day the clocks skip 02:00-03:00, 02:30 and 03:00 may be one
    instants = [t.astimezone(UTC) for t in times]
    assert instants == sorted(set(instants)) and all(t.tzinfo is zone for t in times)


def test_hourly_runs_every_real_hour_through_both_changes():
    job = make_job("0 * * * *", "America/New_York")
    assert scheduled(job, "2026-11-01T00:30:00-04:00", 3) == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00",
    ]
    assert scheduled(job, "2026-03-08T00:30:00-05:00", 3) == [
        "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00",
    ]
    day = next_start_times(job, at("2026-11-01T00:00:00-04:00"), 25)
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for (a, _), (b, _) in zip(day, day[1:])}
    assert gaps == {datetime.timedelta(hours=1)}


def test_the_delay_is_elapsed_time_even_across_the_clocks_going_back():
    job = make_job("30 1 * * *", "America/New_York", datetime.timedelta(minutes=45))
    assert starts(job, "2026-10-31T12:00:00-04:00", 3) == [
        "2026-11-01T01:15:00-05:00",  # 01:30 EDT is 05:30Z; 45 minutes later is 06:15Z, 01:15 EST
        "2026-11-02T02:15:00-05:00",
        "2026-11-03T02:15:00-05:00",
    ]


# --- the run loop --------------------------------------------------------------------------------

class FakeClock:
    """Jumps to each wake-up time at once; interrupts (as Ctrl-C) at the sleep numbered `stop_at`."""

    def __init__(self, now, stop_at=None, interrupt=KeyboardInterrupt):
        self.current = at(now)
        self.sleeps = []
        self.stop_at = stop_at
        self.interrupt = interrupt

    def now(self):
        return self.current

    def sleep_until(self, moment):
        self.sleeps.append(moment.isoformat())
        if len(self.sleeps) == self.stop_at:
            raise self.interrupt()
        self.current = max(self.current, moment)


class FakeRuns:
    """`run_once`: records each run, takes `duration` of fake time, and ends as `outcomes` say."""

    def __init__(self, clock, outcomes=(), duration=datetime.timedelta(minutes=5)):
        self.clock = clock
        self.outcomes = list(outcomes)
        self.duration = duration
        self.runs = []

    def __call__(self, settings):
        self.runs.append((self.clock.now().isoformat(), settings))
        self.clock.current += self.duration
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return {"status": "succeeded"}

    @property
    def dates(self):
        return [settings.date.isoformat() for _, settings in self.runs]

    @property
    def started(self):
        return [started for started, _ in self.runs]


def test_each_slot_runs_once_at_its_start_time_with_its_utc_date():
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=4)
    runs = FakeRuns(clock)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("0 0 * * *", delay=datetime.timedelta(minutes=10)), runs, clock)
    assert runs.started == ["2026-11-29T00:10:00+00:00", "2026-11-30T00:10:00+00:00", "2026-12-01T00:10:00+00:00"]
    assert runs.dates == ["2026-11-29", "2026-11-30", "2026-12-01"]
    assert [settings for _, settings in runs.runs][0] == SETTINGS.replace(date=datetime.date(2026, 11, 29))
    assert clock.sleeps[-1] == "2026-12-02T00:10:00+00:00"


def test_a_morning_run_in_tokyo_exports_the_previous_utc_day():
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=3)
    runs = FakeRuns(clock)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("0 8 * * *", "Asia/Tokyo"), runs, clock)
    assert runs.started == ["2026-11-29T08:00:00+09:00", "2026-11-30T08:00:00+09:00"]
    assert runs.dates == ["2026-11-28", "2026-11-29"]


def test_the_date_is_that_of_the_scheduled_time_not_of_the_delayed_start():
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=2)
    runs = FakeRuns(clock)
    with pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("30 23 * * *", delay=datetime.timedelta(hours=1)), runs, clock)
    assert runs.started == ["2026-11-29T00:30:00+00:00"] and runs.dates == ["2026-11-28"]


def test_three_configuration_failures_in_a_row_disable_the_schedule_with_the_reason():
    clock = FakeClock("2026-11-28T12:00:00+00:00")
    failures = [ConfigError("unknown connection 'dmp'")] * 2 + [SchemaError("table segment_a: no column KUID")]
    runs = FakeRuns(clock, failures)
    with pytest.raises(ConfigError) as raised:
        run_schedule(make_job("@hourly"), runs, clock)
    assert str(raised.value) == (
        "schedule disabled after 3 consecutive configuration failures: table segment_a: no column KUID"
    )
    assert raised.value.exit_code == 2
    assert runs.started == ["2026-11-28T13:00:00+00:00", "2026-11-28T14:00:00+00:00", "2026-11-28T15:00:00+00:00"]


def test_max_config_failures_sets_the_number_of_strikes():
    clock = FakeClock("2026-11-28T12:00:00+00:00")
    runs = FakeRuns(clock, [ConfigError("bad")] * 5)
    with pytest.raises(ConfigError, match="after 5 consecutive"):
        run_schedule(make_job("@hourly"), runs, clock, max_config_failures=5)
    assert len(runs.runs) == 5


def test_a_storage_failure_is_logged_and_the_next_slot_runs(caplog):
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=3)
    runs = FakeRuns(clock, [StorageError("s3://krux-partners: access denied")])
    with caplog.at_level(logging.INFO, logger="pipeline"), pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("@daily"), runs, clock)
    assert runs.dates == ["2026-11-29", "2026-11-30"]
    assert ("job test_job: the run scheduled 2026-11-29T00:00:00+00:00 failed (exit code 4): "
            "s3://krux-partners: access denied") in caplog.messages
    assert "job test_job: the run scheduled 2026-11-30T00:00:00+00:00 succeeded" in caplog.messages


@pytest.mark.parametrize("breaker", [
    None,  # a success
    StorageError("storage down"),
    InvalidRecordsError("3 invalid rows"),
    RuntimeError("something unexpected"),
], ids=["success", "storage", "invalid-records", "unexpected"])
def test_any_other_outcome_ends_a_run_of_configuration_failures(breaker):
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=6)
    config = ConfigError("bad")
    runs = FakeRuns(clock, [config, config, breaker, config, config])
    with pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("@hourly"), runs, clock)
    assert len(runs.runs) == 5


def test_a_run_going_past_the_next_slots_is_not_started_again_and_they_are_skipped(caplog):
    clock = FakeClock("2026-11-28T10:30:00+00:00", stop_at=3)
    runs = FakeRuns(clock, duration=datetime.timedelta(hours=2, minutes=30))
    with caplog.at_level(logging.WARNING, logger="pipeline"), pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("@hourly"), runs, clock)
    assert runs.started == ["2026-11-28T11:00:00+00:00", "2026-11-28T14:00:00+00:00"]  # 12:00 and 13:00 skipped
    assert clock.sleeps == ["2026-11-28T11:00:00+00:00", "2026-11-28T14:00:00+00:00", "2026-11-28T17:00:00+00:00"]
    assert ("job test_job: skipped 2 run(s) whose start time came while the last run was going "
            "(from 2026-11-28T12:00:00+00:00 to 2026-11-28T13:00:00+00:00)") in caplog.messages


def test_a_clock_stepped_back_during_a_run_does_not_repeat_the_slot():
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=3)
    runs = FakeRuns(clock, duration=-datetime.timedelta(hours=3))
    with pytest.raises(KeyboardInterrupt):
        run_schedule(make_job("@daily"), runs, clock)
    assert runs.dates == ["2026-11-29", "2026-11-30"]


def test_terminated_while_sleeping_propagates_before_any_run():
    clock = FakeClock("2026-11-28T12:00:00+00:00", stop_at=1, interrupt=Terminated)
    runs = FakeRuns(clock)
    with pytest.raises(Terminated):
        run_schedule(make_job("@daily"), runs, clock)
    assert runs.runs == []


def test_terminated_during_a_run_propagates_and_is_not_counted_as_a_failure():
    clock = FakeClock("2026-11-28T12:00:00+00:00")
    runs = FakeRuns(clock, [Terminated()])
    with pytest.raises(Terminated):
        run_schedule(make_job("@daily"), runs, clock)
    assert len(runs.runs) == 1


def test_system_clock_sleeps_in_short_slices_until_the_time():
    """No real sleep: the clock is given a sleep that advances its wall clock."""
    wall = [at("2026-11-28T12:00:00+00:00")]
    slept = []

    def fake_sleep(seconds):
        slept.append(seconds)
        wall[0] += datetime.timedelta(seconds=seconds)

    clock = SystemClock(wall=lambda: wall[0], sleep=fake_sleep)
    clock.sleep_until(at("2026-11-28T12:00:02.500000+00:00"))
    assert slept == [1.0, 1.0, 0.5]
    clock.sleep_until(at("2026-11-28T11:00:00+00:00"))  # passed: returns at once
    assert slept == [1.0, 1.0, 0.5]


def test_system_clock_now_is_aware_utc():
    assert SystemClock().now().tzinfo is UTC
