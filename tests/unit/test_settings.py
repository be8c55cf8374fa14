"""`RunSettings`'s rules, worded for the entry point that gave the setting, and its query text."""

import datetime

import pytest

from pipeline.config.settings import QueryText, RunSettings, Setting, SettingError
from pipeline.config.workflow import QueryContext
from pipeline.config.wording import plural, shown

MOMENT = datetime.datetime(2026, 11, 28, 0, 10, tzinfo=datetime.timezone.utc)


def test_every_field_with_a_flag_is_a_setting():
    fields = {name for name in RunSettings.__dataclass_fields__ if name not in ("beam_args", "query_context")}
    assert {setting.field for setting in Setting} == fields


@pytest.mark.parametrize("given, flag_words, key_words", [
    (dict(rejects="r.jsonl"),
     "--rejects: needs --skip-invalid-records", "rejects: needs result_settings.skip_invalid_records"),
    (dict(export_name="a-b"),
     "--export-name: export name 'a-b' must match", "result_settings.export_name: export name 'a-b' must match"),
    (dict(query_file="q.sql", user_column="KUID"),
     "--user-column: does not apply to a query", "source.user_column: does not apply to a query"),
    (dict(segment_attribute="a:b"), "--segment-attribute: 'a:b' cannot", "source.segment_attribute: 'a:b' cannot"),
])
def test_a_broken_rule_is_worded_with_the_flag_or_the_job_key(given, flag_words, key_words):
    with pytest.raises(SettingError) as raised:
        RunSettings(**given)
    assert raised.value.worded(lambda setting: setting.flag).startswith(flag_words)
    assert raised.value.worded(lambda setting: setting.job_key).startswith(key_words)


def test_a_setting_error_says_the_fields_when_no_entry_point_words_it():
    with pytest.raises(SettingError, match="^rejects: needs skip_invalid_records"):
        RunSettings(rejects="r.jsonl")


def test_a_query_given_as_text_is_its_own_origin():
    assert RunSettings(query="SELECT 1").query_text(MOMENT.date(), MOMENT) == QueryText("SELECT 1", "--query")


def test_a_workflow_query_file_is_read_and_its_variables_substituted(tmp_path):
    path = tmp_path / "q.sql"
    path.write_text("SELECT '${session_date}', ${min_score}\n")
    settings = RunSettings(query_file=str(path), query_context=QueryContext("UTC", (("min_score", "10"),)))
    assert settings.query_text(datetime.date(2026, 11, 27), MOMENT) == QueryText("SELECT '2026-11-27', 10\n", str(path))


def test_settings_without_a_query_have_no_query_text():
    assert RunSettings(sources=("a.parquet",)).query_text(MOMENT.date(), MOMENT) is None


@pytest.mark.parametrize("count, words", [(0, "0 shards"), (1, "1 shard"), (2, "2 shards"), (1234, "1,234 shards")])
def test_counts_take_the_plural_but_for_one(count, words):
    assert plural(count, "shard") == words


@pytest.mark.parametrize("value, words", [
    (None, "nothing"), ({"a": 1}, "a mapping"), (["a", "b"], "['a', 'b']"), ([{"a": 1}], "a list"),
    (["x" * 100], "a list"), ("yes please", "'yes please'"), (3, "3"),
])
def test_values_from_a_file_are_shown_short(value, words):
    assert shown(value) == words
