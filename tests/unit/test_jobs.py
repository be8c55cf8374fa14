"""Job files (SPEC §6): what loads, what it means, and errors that name the key."""

import datetime
import re
import textwrap

import pytest

from pipeline.errors import ConfigError
from pipeline.config.jobs import Job, load_job, settings_with_overrides
from pipeline.config.notify import Notify
from pipeline.config.settings import RunSettings

SPEC_JOB = """\
name: daily_krux
timezone: UTC
schedule: "0 0 * * *"        # cron, @daily, @hourly; omitted: no schedule
delay: 10m                    # optional delay after each scheduled time
source: {database: ./warehouse/activate_to_krux, table_prefix: segment_,
         user_column: KUID, segment_column: segment_name}
result_connection: my_salesforce_dmp_connector
result_settings: {export_type: first_party_segment, skip_invalid_records: true,
                  append: false, group_by_user: true, compression: gzip}
"""

MINIMAL_JOB = """\
name: minimal
source: {database: db}
result_connection: dmp
result_settings: {export_type: first_party_segment}
"""


def write_job(tmp_path, text, name="job.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def with_line(text, old, new):
    """MINIMAL_JOB or SPEC_JOB with one line replaced (or added, when `old` is empty)."""
    if not old:
        return text + new + "\n"
    assert old in text
    return text.replace(old, new)


def test_spec_example_job_loads_into_the_settings_run_would_take(tmp_path):
    path = write_job(tmp_path, SPEC_JOB)
    job = load_job(path)
    assert job == Job(
        name="daily_krux",
        timezone="UTC",
        schedule="0 0 * * *",
        delay=datetime.timedelta(minutes=10),
        path=str(path),
        settings=RunSettings(
            database=str(tmp_path / "warehouse" / "activate_to_krux"),
            table_prefix="segment_",
            user_column="KUID",
            segment_column="segment_name",
            connection="my_salesforce_dmp_connector",
            skip_invalid_records=True,
            append=False,
            group_by_user=True,
            compression="gzip",
        ),
    )


def test_minimal_job_takes_run_defaults_and_has_no_schedule(tmp_path):
    job = load_job(write_job(tmp_path, MINIMAL_JOB))
    assert (job.timezone, job.schedule, job.delay) == ("UTC", None, datetime.timedelta(0))
    assert job.settings == RunSettings(database=str(tmp_path / "db"), connection="dmp")


def test_every_optional_key_lands_on_its_setting(tmp_path):
    job = load_job(write_job(tmp_path, """\
        name: full
        timezone: Asia/Tokyo
        schedule: "@hourly"
        delay: 1h30m
        source:
          sources: [tables/segment_a.parquet, "s3://in/segment_b/", /abs/segment_c.csv]
          user_column: KUID
          segment_column: seg
          segment_attribute: audience
        client_name: acme
        bucket: partner-bucket
        endpoint_url: http://127.0.0.1:9000
        region: eu-west-1
        output_root: out/uploads
        rejects: s3://mine/rejects/
        beam_args: ["--runner=FnApiRunner", "--direct_num_workers=4"]
        result_settings:
          export_type: first_party_segment
          skip_invalid_records: true
          append: true
          group_by_user: false
          compression: none
          export_name: weekly_dump
          allow_empty: true
          append_key: dag_run.export-1
          max_drop: 50
        """))
    assert (job.timezone, job.schedule, job.delay) == ("Asia/Tokyo", "@hourly", datetime.timedelta(hours=1, minutes=30))
    assert job.settings == RunSettings(
        sources=(str(tmp_path / "tables" / "segment_a.parquet"), "s3://in/segment_b/", "/abs/segment_c.csv"),
        user_column="KUID",
        segment_column="seg",
        segment_attribute="audience",
        client_name="acme",
        bucket="partner-bucket",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        output_root=str(tmp_path / "out" / "uploads"),
        rejects="s3://mine/rejects/",
        beam_args=("--runner=FnApiRunner", "--direct_num_workers=4"),
        skip_invalid_records=True,
        append=True,
        compression="none",
        export_name="weekly_dump",
        allow_empty=True,
        append_key="dag_run.export-1",
        max_drop=50.0,
    )


def test_paths_are_taken_from_the_job_files_folder_not_the_working_directory(tmp_path, monkeypatch):
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    path = write_job(jobs_dir, """\
        name: relative
        source: {source: ../data/segment_*.parquet}
        output_root: ./out
        rejects: rejects/
        result_settings: {export_type: first_party_segment, skip_invalid_records: true}
        """)
    monkeypatch.chdir(tmp_path)
    settings = load_job("jobs/job.yml").settings
    assert settings.sources == (str(tmp_path / "data" / "segment_*.parquet"),)
    assert settings.output_root == str(jobs_dir / "out")
    assert settings.rejects == str(jobs_dir / "rejects")
    assert load_job(path).settings == settings


def test_s3_output_root_is_left_as_it_is(tmp_path):
    job = load_job(write_job(tmp_path, with_line(MINIMAL_JOB, "result_connection: dmp", "output_root: s3://b/p")))
    assert job.settings.output_root == "s3://b/p"


@pytest.mark.parametrize("delay, expected", [
    ("30s", datetime.timedelta(seconds=30)),
    ("10m", datetime.timedelta(minutes=10)),
    ("1h", datetime.timedelta(hours=1)),
    ("1h30m", datetime.timedelta(hours=1, minutes=30)),
    ("2h0m15s", datetime.timedelta(hours=2, seconds=15)),
    ("0s", datetime.timedelta(0)),
])
def test_delay_units(tmp_path, delay, expected):
    assert load_job(write_job(tmp_path, with_line(MINIMAL_JOB, "", f"delay: {delay}"))).delay == expected


@pytest.mark.parametrize("schedule", [
    "0 0 * * *", "@daily", "@hourly", "@weekly", "@monthly", "@yearly", "30 8 * * mon-fri",
    "0 0 1 jan,jul *", "2,*/5,8-10 * * * *", "5,*/10,25 * * * *", "0 */6 * * 0-7", "0 0 29 2 *",
    "0 0 * * SUN", "0 0 */5 * *", "0 0 5,*/10,25 * *", "30 */2 * * *", "0 0 1 * 1",
])
def test_standard_cron_expressions_load(tmp_path, schedule):
    job = load_job(write_job(tmp_path, with_line(MINIMAL_JOB, "", f'schedule: "{schedule}"')))
    assert (job.schedule, job.cron_semantics) == (schedule, "treasure_data")


def test_vixie_semantics_take_stepped_ranges(tmp_path):
    job = load_job(write_job(tmp_path, MINIMAL_JOB + 'schedule: "0 9-17/2 1-15 * *"\ncron_semantics: vixie\n'))
    assert (job.schedule, job.cron_semantics) == ("0 9-17/2 1-15 * *", "vixie")


# Each case: the line changed or added, then the message expected after "job.yml: ".
ERRORS = [
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, append: yes please}",
     "result_settings.append must be true or false, got 'yes please'"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, group_by_user: 1}",
     "result_settings.group_by_user must be true or false, got 1"),
    ("source: {database: db}", "source: {database: db, tabel_prefix: x_}", "unknown key source.tabel_prefix"),
    ("", "schedul: '@daily'", "unknown key schedul"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, compresion: gzip}",
     "unknown key result_settings.compresion"),
    ("result_settings: {export_type: first_party_segment}", "result_settings: {export_type: audience}",
     "result_settings.export_type: 'audience' is not supported; only first_party_segment"),
    ("result_settings: {export_type: first_party_segment}", "result_settings: {append: true}",
     "result_settings.export_type is required"),
    ("result_settings: {export_type: first_party_segment}", "",
     "result_settings must be a mapping of keys to values, got nothing"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, compression: zip}",
     "result_settings.compression: must be one of gzip, none, got 'zip'"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, export_name: first-party}",
     "result_settings.export_name: export name 'first-party' must match [A-Za-z0-9_]+"),
    ("name: minimal", "name: [a, b]", "name must be a non-empty string, got ['a', 'b']"),
    ("name: minimal", "", "name is required"),
    ("source: {database: db}", "", "source must be a mapping of keys to values, got nothing"),
    ("source: {database: db}", "source: {table_prefix: segment_}",
     "source needs database (with table_prefix) or sources"),
    ("source: {database: db}", "source: {sources: a.parquet}",
     "source.sources must be a list of non-empty strings, got 'a.parquet'"),
    ("source: {database: db}", "source: {sources: [a], source: b}",
     "give source.sources (a list) or source.source (one), not both"),
    ("source: {database: db}", "source: {database: db, user_column: 7}",
     "source.user_column must be a non-empty string, got 7"),
    ("result_connection: dmp", "", "no destination: give result_connection, client_name or output_root"),
    ("result_connection: dmp", "client_name: ../other", "client_name: client name '../other' must match"),
    ("", "rejects: ./rejects",
     "rejects: needs result_settings.skip_invalid_records (without it the first invalid row stops the run)"),
    ("", "beam_args: --runner=FnApiRunner",
     "beam_args must be a list of non-empty strings, got '--runner=FnApiRunner'"),
    ("", "timezone: Mars/Olympus_Mons",
     "timezone must be an IANA time zone name such as UTC or Europe/Berlin, got 'Mars/Olympus_Mons'"),
    ("", "timezone: ../../etc/passwd", "timezone must be an IANA time zone name"),
    ("", "delay: 10 minutes", "delay must be a duration such as 30s, 10m, 1h or 1h30m, got '10 minutes'"),
    ("", "delay: 600", "delay must be a duration such as 30s, 10m, 1h or 1h30m, got 600"),
    ("", "delay: -5m", "delay must be a duration"),
    ("", "result_connection: other", "not valid YAML: key result_connection appears more than once (line 5, column 1)"),
    ("", "cron_semantics: quartz", "cron_semantics must be one of treasure_data, vixie, got 'quartz'"),
    ("", "notify: page me", "notify must be a mapping with webhook and/or command, and optionally on"),
    ("", "notify: {on: [failure]}", "notify needs webhook, command or both"),
    ("", "notify: {on: [failure, crash], command: [page]}",
     "notify.on must be a list of success, failure, disabled, got ['failure', 'crash']"),
    ("", "notify: {on: [], command: [page]}", "notify.on must be a list of success, failure, disabled, got []"),
    ("", "notify: {command: page --team x}", "notify.command must be a list, the program then its arguments"),
    ("", "notify: {command: [page], email: ops@example.com}", "unknown key notify.email"),
    ("", "notify: {webhook: 'ftp://hooks.example.com/T0KEN'}",
     "notify.webhook must be an http:// or https:// URL, or env:VARNAME"),
    ("", "notify: {webhook: 'env:'}", "notify.webhook says env: but names no variable"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, append: yes}",
     "result_settings.append must be true or false, got 'yes'"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, append_key: retry-1}",
     "result_settings.append_key: needs result_settings.append (a replace run's object always has the fixed name)"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, append: true, append_key: 'run 1/a'}",
     "result_settings.append_key: 'run 1/a' must match [A-Za-z0-9_.-]+"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, max_drop: 50%}",
     "result_settings.max_drop must be a number, got '50%'"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, max_drop: 150}",
     "result_settings.max_drop: must be a percentage from 0 to 100, such as 50, got 150"),
    ("result_settings: {export_type: first_party_segment}",
     "result_settings: {export_type: first_party_segment, max_drop: -5}",
     "result_settings.max_drop: must be a percentage from 0 to 100, such as 50, got -5"),
]


@pytest.mark.parametrize("old, new, message", ERRORS, ids=[case[2][:40] for case in ERRORS])
def test_each_mistake_is_one_line_naming_the_file_and_key(tmp_path, old, new, message):
    path = write_job(tmp_path, with_line(MINIMAL_JOB, old, new))
    with pytest.raises(ConfigError) as raised:
        load_job(path)
    text = str(raised.value)
    assert text.startswith(f"{path}: {message}")
    assert "\n" not in text and raised.value.exit_code == 2


@pytest.mark.parametrize("schedule, reason", [
    ("0 0 * * * *", "must have five fields (minute hour day-of-month month day-of-week), got 6"),
    ("0 0 0 * * * 2026", "must have five fields (minute hour day-of-month month day-of-week), got 7"),
    ("0 0 *", "must have five fields (minute hour day-of-month month day-of-week), got 3"),
    ("60 * * * *", "has '60' in the minute field, expected 0-59"),
    ("0 24 * * *", "has '24' in the hour field, expected 0-23"),
    ("0 0 0 * *", "has '0' in the day of month field, expected 1-31"),
    ("0 0 * 13 *", "has '13' in the month field, expected 1-12 or jan-dec"),
    ("0 0 * * 8", "has '8' in the day of week field, expected 0-7 or sun-sat"),
    ("0 0 * * monday", "has 'monday' in the day of week field"),
    ("0 0 * jan-mon *", "has 'mon' in the month field"),
    ("0 0 L * *", "has 'L' in the day of month field"),
    ("0 0 15W * *", "has '15W' in the day of month field"),
    ("0 0 * * 1#2", "has '1#2' in the day of week field"),
    ("0 0 ? * *", "has '?' in the day of month field"),
    ("H * * * *", "has 'H' in the minute field"),
    ("*/0 * * * *", "has step '0' in the minute field, expected a whole number from 1 to 59"),
    ("0 0 */32 * *", "has step '32' in the day of month field, expected a whole number from 1 to 31"),
    ("5/10 * * * *", "has '5/10' in the minute field; a step goes after * only (*/10)"),
    ("0 0 1-20/5 * *", "has '1-20/5' in the day of month field; a step goes after * only (*/5)"),
    ("50-10 * * * *", "has range '50-10' in the minute field running backwards"),
    ("0 0 * * fri-mon", "has range 'fri-mon' in the day of week field running backwards"),
    ("1,,2 * * * *", "has '' in the minute field"),
    ("0 0 30 2 *", "never matches a date"),
    ("0 0 31 4,6 *", "never matches a date"),
    ("@reboot", "is not a cron nickname; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
    ("", "schedule must be a non-empty string, got ''"),
])
def test_cron_outside_standard_five_fields_is_refused_at_load(tmp_path, schedule, reason):
    path = write_job(tmp_path, with_line(MINIMAL_JOB, "", f'schedule: "{schedule}"'))
    prefix = "" if reason.startswith("schedule must") else f"schedule {schedule!r} "
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {prefix}{reason}")):
        load_job(path)


@pytest.mark.parametrize("rule, column", [("*/5 * * * *", 12), ("@daily", 11)])
def test_an_unquoted_cron_rule_is_reported_with_its_line_and_how_to_quote_it(tmp_path, rule, column):
    path = write_job(tmp_path, with_line(MINIMAL_JOB, "", f"schedule: {rule}   # every day"))
    with pytest.raises(ConfigError) as raised:
        load_job(path)
    text = str(raised.value)
    assert text.startswith(f"{path}: not valid YAML: ")
    assert text.endswith(f'(line 5, column {column}); quote the value: schedule: "{rule}"')


@pytest.mark.parametrize("rule", ["daily", "Hourly"])
def test_a_shortcut_without_its_at_sign_hints_at_the_shortcut(tmp_path, rule):
    path = write_job(tmp_path, with_line(MINIMAL_JOB, "", f'schedule: "{rule}"'))
    with pytest.raises(ConfigError, match=re.escape(f'(did you mean "@{rule.lower()}"?)')):
        load_job(path)


@pytest.mark.parametrize("old, new, message", [
    ("", "scheduel: '@daily'", "unknown key scheduel (did you mean schedule? allowed: name, timezone, schedule,"),
    ("source: {database: db}", "source: {database: db, user_col: KUID}",
     "unknown key source.user_col (did you mean source.user_column? allowed: database, table_prefix, sources,"),
    ("", "colour: blue", "unknown key colour (allowed: name, timezone, schedule, delay, source,"),
])
def test_an_unknown_key_lists_the_allowed_keys_and_the_closest(tmp_path, old, new, message):
    path = write_job(tmp_path, with_line(MINIMAL_JOB, old, new))
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_job(path)


@pytest.mark.parametrize("text, message", [
    ("- name: a\n", "must hold a mapping of keys to values, got a list"),
    ("", "must hold a mapping of keys to values, got nothing"),
])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text, message):
    path = write_job(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        load_job(path)


def test_a_missing_file_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.yml'}: cannot read the job file: ")):
        load_job(tmp_path / "nope.yml")


def test_overrides_replace_given_values_and_append_beam_args():
    job_settings = RunSettings(database="/db", connection="dmp", beam_args=("--runner=FnApiRunner",))
    settings = settings_with_overrides(job_settings, {
        "date": datetime.date(2026, 11, 28), "append": True, "connection": None,
        "beam_args": ["--direct_num_workers=4"],
    })
    assert settings == RunSettings(
        database="/db", connection="dmp", date=datetime.date(2026, 11, 28), append=True,
        beam_args=("--runner=FnApiRunner", "--direct_num_workers=4"),
    )


def test_notify_as_the_spec_writes_it_with_an_unquoted_on_key(tmp_path, monkeypatch):
    """YAML 1.1 reads an unquoted `on` as True; the job file means the key `on`."""
    path = write_job(tmp_path, MINIMAL_JOB + textwrap.dedent("""\
        notify:
          on: [failure, disabled, success]
          webhook: env:KRUX_WEBHOOK_URL
          command: [/usr/local/bin/page-oncall, --team, audiences]
        """))
    job = load_job(path)
    assert job.notify == Notify(
        events=frozenset({"failure", "disabled", "success"}),
        webhook="env:KRUX_WEBHOOK_URL",
        command=("/usr/local/bin/page-oncall", "--team", "audiences"),
    )


def test_notify_defaults_to_failure_and_disabled_and_a_relative_command_is_taken_from_the_jobs_folder(tmp_path):
    job = load_job(write_job(tmp_path, MINIMAL_JOB + "notify: {command: [./hooks/page.sh, on-call], on: failure}\n"))
    assert job.notify == Notify(events=frozenset({"failure"}), command=(str(tmp_path / "hooks" / "page.sh"), "on-call"))
    job = load_job(write_job(tmp_path, MINIMAL_JOB + "notify: {command: [page-oncall]}\n"))
    assert job.notify.events == {"failure", "disabled"} and job.notify.command == ("page-oncall",)
    assert load_job(write_job(tmp_path, MINIMAL_JOB)).notify is None


def test_a_webhook_url_never_shows_in_the_jobs_repr_or_an_error(tmp_path):
    secret = "https://hooks.example.com/services/T0KEN-s3cret"
    job = load_job(write_job(tmp_path, MINIMAL_JOB + f"notify: {{webhook: '{secret}'}}\n"))
    assert job.notify.webhook == secret
    assert "s3cret" not in repr(job) and "hooks.example.com" not in repr(job)
    assert "webhook='<hidden>'" in repr(job.notify)
    with pytest.raises(ConfigError) as raised:
        load_job(write_job(tmp_path, MINIMAL_JOB + "notify: {webhook: 'hooks.example.com/T0KEN-s3cret'}\n"))
    assert "s3cret" not in str(raised.value)


def test_unquoted_times_and_words_stay_text(tmp_path):
    """`delay: 00:10:00` is not 600 seconds in disguise: it is refused as what it is, text."""
    path = write_job(tmp_path, MINIMAL_JOB + "delay: 10:00:00\n")
    with pytest.raises(ConfigError, match=re.escape("delay must be a duration such as 30s, 10m, 1h or 1h30m, got '10:00:00'")):
        load_job(path)
    job = load_job(write_job(tmp_path, MINIMAL_JOB.replace("name: minimal", "name: off")))
    assert job.name == "off"
