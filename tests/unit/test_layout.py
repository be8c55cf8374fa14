import datetime

import pytest

from pipeline.config import settings
from pipeline.krux import layout
from pipeline.errors import UsageError


@pytest.mark.parametrize("name", ["client-treasure-data", "acme.eu_1", "A-b.c_d"])
def test_client_names_of_the_allowed_characters_pass(name):
    assert settings.check_client_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "a..b", "acme/other", "../x", "a b", ".", "ü"])
def test_client_names_that_could_leave_their_folder_are_refused(name):
    with pytest.raises(UsageError, match="client name"):
        settings.check_client_name(name)


@pytest.mark.parametrize("name", ["", "first-party", "a.b", "x/y", "seg ment"])
def test_export_names_outside_letters_digits_underscore_are_refused(name):
    with pytest.raises(UsageError, match="export name"):
        settings.check_export_name(name)


def test_run_id_sorts_by_start_time_and_keeps_two_runs_apart():
    morning = datetime.datetime(2026, 11, 28, 9, 30, tzinfo=datetime.timezone.utc)
    first, second = layout.new_run_id(morning), layout.new_run_id(morning)
    later = layout.new_run_id(morning + datetime.timedelta(seconds=1))
    assert first.startswith("20261128T093000Z-") and len(first) == len("20261128T093000Z-3f9a")
    assert first != second
    assert max(first, second) < later


def test_run_id_is_taken_in_utc():
    paris = datetime.timezone(datetime.timedelta(hours=1))
    assert layout.new_run_id(datetime.datetime(2026, 11, 28, 0, 30, tzinfo=paris)).startswith("20261127T233000Z")


@pytest.mark.parametrize(
    "compression, run_id, expected",
    [
        ("gzip", None, "first_party_segment.txt.gz"),
        ("none", None, "first_party_segment.txt"),
        ("gzip", "20261128T093000Z-3f9a", "first_party_segment-20261128T093000Z-3f9a.txt.gz"),
        ("none", "scheduled__2026-11-28T00.10.00_00.00-export", "first_party_segment-scheduled__2026-11-28T00.10.00_00.00-export.txt"),
    ],
)
def test_final_name_is_fixed_in_replace_mode_and_per_run_or_key_in_append_mode(compression, run_id, expected):
    assert layout.final_name("first_party_segment", compression, run_id) == expected


def test_day_and_staging_folders_follow_spec_layout():
    day = layout.day_dir("uploads/", datetime.date(2026, 11, 28))
    assert day == "uploads/2026-11-28/"
    assert layout.staging_dir("first_party_segment", "R1") == "_staging/first_party_segment/R1/"


@pytest.mark.parametrize(
    "file_name, belongs",
    [
        ("first_party_segment.txt.gz", True),
        ("first_party_segment.txt", True),
        ("first_party_segment-20261128T093000Z-3f9a.txt.gz", True),
        ("first_party_segment_v2.txt.gz", False),
        ("other.txt.gz", False),
        ("first_party_segment.txt.gz.bak", False),
    ],
)
def test_only_the_exports_own_day_objects_are_superseded(file_name, belongs):
    assert layout.belongs_to_export(file_name, "first_party_segment") is belongs


@pytest.mark.parametrize("text", ["28/11/2026", "yesterday", "2026-2-3"])
def test_dates_not_written_as_yyyy_mm_dd_are_usage_errors(text):
    with pytest.raises(UsageError, match="is not of the form YYYY-MM-DD"):
        settings.parse_date(text)


@pytest.mark.parametrize("text, why", [
    ("2026-02-30", "February 2026 has 28 days"),
    ("2026-04-31", "April 2026 has 30 days"),
    ("2026-13-01", "there is no month 13"),
    ("2026-11-00", "November 2026 has 30 days"),
])
def test_days_the_calendar_does_not_have_are_refused_as_such(text, why):
    with pytest.raises(UsageError, match=f"(?m)date '{text}' is not a real day: {why}$"):
        settings.parse_date(text)


def test_a_leap_day_is_a_real_day():
    assert settings.parse_date("2028-02-29") == datetime.date(2028, 2, 29)
