"""Cron with the seed's rules (Treasure Data's scheduler), the default, against Vixie cron's.

Expected times are written by hand from the calendar: November 2026 starts on a Sunday,
30 November is a Monday, 1 December a Tuesday.
"""

import datetime

import pytest

from pipeline.config.jobs import Job
from pipeline.config.settings import RunSettings
from pipeline.schedule.cron import cron_fields, next_start_times, parse_cron

AFTER = "2026-11-28T12:00:00+00:00"  # a Saturday


def scheduled(schedule, count, *, after=AFTER, semantics="treasure_data", timezone="UTC"):
    job = Job(name="j", settings=RunSettings(), path="job.yml", schedule=schedule, timezone=timezone,
              cron_semantics=semantics)
    return [time.isoformat() for time, _ in next_start_times(job, datetime.datetime.fromisoformat(after), count)]


def days(schedule, count, **kwargs):
    return [time[:10] for time in scheduled(schedule, count, **kwargs)]


# --- the seed's examples -------------------------------------------------------------------------

def test_a_day_step_runs_on_multiples_of_it():
    assert days("0 0 */5 * *", 8) == [
        "2026-11-30", "2026-12-05", "2026-12-10", "2026-12-15", "2026-12-20", "2026-12-25", "2026-12-30",
        "2027-01-05",
    ]


def test_a_day_step_in_a_list_with_single_days():
    assert days("0 0 5,*/10,25 * *", 6, after="2026-11-30T12:00:00+00:00") == [
        "2026-12-05", "2026-12-10", "2026-12-20", "2026-12-25", "2026-12-30", "2027-01-05",
    ]


def test_an_hour_step_runs_on_even_hours():
    times = scheduled("30 */2 * * *", 4, after="2026-11-28T23:00:00+00:00")
    assert times == [
        "2026-11-29T00:30:00+00:00", "2026-11-29T02:30:00+00:00", "2026-11-29T04:30:00+00:00",
        "2026-11-29T06:30:00+00:00",
    ]


def test_day_of_week_wins_over_a_single_day_of_month():
    """`0 0 1 * 1`: 31 x 1 >= 7 x 1, so every Monday, and not the 1st (a Tuesday in December)."""
    assert days("0 0 1 * 1", 4) == ["2026-11-30", "2026-12-07", "2026-12-14", "2026-12-21"]


def test_day_of_month_wins_when_it_matches_more_often():
    """`1-5` (5 days a month) against Monday (about 4.4 a month): 31 x 1 < 7 x 5, so the 1st to the 5th."""
    assert days("0 0 1-5 * mon", 6) == [
        "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04", "2026-12-05", "2027-01-01",
    ]


def test_day_of_week_wins_a_tie():
    """Every day of the week (7) against 31 days of the month: 31 x 7 >= 7 x 31."""
    assert parse_cron("0 0 1-31 * 0-6").fields == "0 0 * * 0,1,2,3,4,5,6"


def test_a_month_step_runs_in_months_that_are_multiples():
    assert [day[:7] for day in days("0 0 1 */4 *", 4)] == ["2026-12", "2027-04", "2027-08", "2027-12"]


def test_a_step_in_day_of_month_restricts_it_against_day_of_week():
    """`*/10` is 10, 20, 30: three days, against Sundays: 31 x 1 >= 7 x 3, so Sundays."""
    assert days("0 0 */10 * sun", 3) == ["2026-11-29", "2026-12-06", "2026-12-13"]


@pytest.mark.parametrize("expression, fields", [
    ("*/15 * * * *", "0,15,30,45 * * * *"),
    ("0 */6 * * *", "0 0,6,12,18 * * *"),
    ("0 0 */5 * *", "0 0 5,10,15,20,25,30 * *"),
    ("0 0 5,*/10,25 * *", "0 0 5,10,20,25,30 * *"),
    ("0 0 1 */3 *", "0 0 1 3,6,9,12 *"),
    ("0 0 * * */3", "0 0 * * 0,3,6"),
    ("0 0 * jan-mar sun,SAT", "0 0 * 1,2,3 0,6"),
    ("0 0 * * 7", "0 0 * * 0"),
    ("0 0 1 * 1", "0 0 * * 1"),
    ("0 0 1-10 * 1", "0 0 1,2,3,4,5,6,7,8,9,10 * *"),
    ("0 0 * * *", "0 0 * * *"),
])
def test_the_expression_croniter_evaluates(expression, fields):
    assert cron_fields(expression) == fields


# --- both rule sets side by side -----------------------------------------------------------------

@pytest.mark.parametrize("schedule, seed, vixie", [
    ("0 0 */5 * *",
     ["2026-11-30", "2026-12-05", "2026-12-10"], ["2026-12-01", "2026-12-06", "2026-12-11"]),
    ("0 0 5,*/10,25 * *",
     ["2026-11-30", "2026-12-05", "2026-12-10"], ["2026-12-01", "2026-12-05", "2026-12-11"]),
    ("0 0 1 * 1",  # Vixie: the 1st or a Monday
     ["2026-11-30", "2026-12-07", "2026-12-14"], ["2026-11-30", "2026-12-01", "2026-12-07"]),
    ("0 0 */2 * mon",  # seed: 15 even days beat Mondays; Vixie: Mondays on odd days (`*/2` is unrestricted)
     ["2026-11-30", "2026-12-02", "2026-12-04"], ["2026-12-07", "2026-12-21", "2027-01-11"]),
    ("0 0 1 */5 *",
     ["2027-05-01", "2027-10-01", "2028-05-01"], ["2027-01-01", "2027-06-01", "2027-11-01"]),
])
def test_the_seeds_rules_and_vixies_differ_where_the_spec_says(schedule, seed, vixie):
    assert days(schedule, 3) == seed
    assert days(schedule, 3, semantics="vixie") == vixie


@pytest.mark.parametrize("semantics", ["treasure_data", "vixie"])
@pytest.mark.parametrize("schedule, expected", [
    ("@hourly", ["2026-11-28T13:00:00+00:00", "2026-11-28T14:00:00+00:00"]),
    ("@daily", ["2026-11-29T00:00:00+00:00", "2026-11-30T00:00:00+00:00"]),
    ("@weekly", ["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00"]),  # Sundays
    ("@monthly", ["2026-12-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
    ("@yearly", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
    ("@annually", ["2027-01-01T00:00:00+00:00", "2028-01-01T00:00:00+00:00"]),
    ("*/20 9 * * *", ["2026-11-29T09:00:00+00:00", "2026-11-29T09:20:00+00:00"]),
])
def test_nicknames_and_zero_based_steps_mean_the_same_under_both(semantics, schedule, expected):
    assert scheduled(schedule, 2, semantics=semantics) == expected


def test_an_hour_step_across_the_clocks_going_back_runs_each_listed_hour_once():
    """New York, 1 November 2026: 01:00-02:00 happens twice; `*/2` does not name 1, so nothing repeats."""
    assert scheduled("0 */2 * * *", 3, after="2026-10-31T23:30:00-04:00", timezone="America/New_York") == [
        "2026-11-01T00:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T04:00:00-05:00",
    ]


def test_every_hour_as_a_step_of_one_runs_in_the_repeated_hour_too():
    """`*/1` names all 24 hours, as `*` does: the hour seen twice is run twice (it is a real hour)."""
    assert scheduled("0 */1 * * *", 3, after="2026-11-01T00:30:00-04:00", timezone="America/New_York") == [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00",
    ]


@pytest.mark.parametrize("semantics, second", [("treasure_data", "2026-04-05"), ("vixie", "2026-04-01")])
def test_the_missing_0230_of_a_sunday_runs_when_the_clocks_jump_under_both(semantics, second):
    """Berlin, Sunday 29 March 2026: 02:00-03:00 never happens. `1 * sun`: Sundays (seed), or Sundays and the 1st."""
    assert scheduled("30 2 1 * sun", 2, after="2026-03-27T12:00:00+01:00", timezone="Europe/Berlin",
                     semantics=semantics) == ["2026-03-29T03:00:00+02:00", f"{second}T02:30:00+02:00"]


# --- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("expression, message", [
    ("*/0 * * * *", "has step '0' in the minute field, expected a whole number from 1 to 59"),
    ("*/60 * * * *", "has step '60' in the minute field, expected a whole number from 1 to 59"),
    ("0 */24 * * *", "has step '24' in the hour field, expected a whole number from 1 to 23"),
    ("0 0 */32 * *", "has step '32' in the day of month field, expected a whole number from 1 to 31"),
    ("0 0 1 */13 *", "has step '13' in the month field, expected a whole number from 1 to 12"),
    ("0 0 * * */7", "has step '7' in the day of week field, expected a whole number from 1 to 6"),
    ("0 0 1-20/5 * *", "has '1-20/5' in the day of month field; a step goes after * only (*/5)"),
    ("0 9-17/2 * * *", "has '9-17/2' in the hour field; a step goes after * only (*/2)"),
    ("0 0 * * mon-fri/2", "has 'mon-fri/2' in the day of week field; a step goes after * only (*/2)"),
    ("5/15 * * * *", "has '5/15' in the minute field; a step goes after * only (*/15)"),
    ("0 0 */x * *", "has step 'x' in the day of month field, expected a whole number from 1 to 31"),
])
def test_refused_steps_name_the_field(expression, message):
    with pytest.raises(ValueError) as raised:
        parse_cron(expression)
    assert str(raised.value) == message


@pytest.mark.parametrize("expression, message", [
    ("*/0 * * * *", "has step '0' in the minute field, expected a whole number from 1 to 59"),
    ("0 0 */40 * *", "has step '40' in the day of month field, expected a whole number from 1 to 31"),
    ("5/15 * * * *", "has '5/15' in the minute field; a step goes after * or a range (a-b/15)"),
])
def test_vixie_refuses_steps_of_zero_beyond_the_field_or_after_a_single_value(expression, message):
    with pytest.raises(ValueError) as raised:
        parse_cron(expression, "vixie")
    assert str(raised.value) == message


def test_vixie_still_takes_stepped_ranges():
    assert cron_fields("10-30/10,45 9-17/4 * * *", "vixie") == "10-30/10,45 9-17/4 * * *"


def test_unknown_semantics_are_refused():
    with pytest.raises(ValueError, match="cron_semantics must be one of treasure_data, vixie, got 'quartz'"):
        parse_cron("@daily", "quartz")
