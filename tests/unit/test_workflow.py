"""`.dig` workflow files: the seed's syntax read into jobs, and query variables."""

import datetime
import textwrap

import pytest

from pipeline.config.jobs import load_job
from pipeline.config.workflow import QueryContext, read_workflow, render_query
from pipeline.errors import ConfigError

SPEC_EXAMPLE = """\
timezone: UTC
schedule:
  daily>: 00:10:00
_export:
  td:
    database: activate_to_krux      # a folder next to the file
  min_score: 10
+export_to_krux:
  td>: queries/consolidate.sql
  result_connection: my_salesforce_dmp_connector
  result_settings:
    export_type: first_party_segment
    skip_invalid_records: true
"""


def write(tmp_path, text, name="daily_krux.dig", query="SELECT user_id, td_segment FROM segment_a"):
    (tmp_path / "queries").mkdir(exist_ok=True)
    (tmp_path / "queries" / "consolidate.sql").write_text(query)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_the_spec_example_becomes_a_job_with_one_task(tmp_path):
    job = load_job(write(tmp_path, SPEC_EXAMPLE))
    assert (job.name, job.timezone, job.schedule) == ("daily_krux", "UTC", "10 0 * * *")
    assert job.delay == datetime.timedelta(0)
    [(task, settings)] = job.tasks
    assert task == "export_to_krux"
    assert settings.query_file == str(tmp_path / "queries" / "consolidate.sql")
    assert settings.database == str(tmp_path / "activate_to_krux")
    assert settings.connection == "my_salesforce_dmp_connector"
    assert settings.skip_invalid_records is True
    assert settings.query_context == QueryContext("UTC", (("min_score", "10"),))


@pytest.mark.parametrize("schedule, cron", [
    ("cron>: \"0 0 */5 * *\"", "0 0 */5 * *"),
    ("hourly>: 30:00", "30 * * * *"),
    ("daily>: 07:05:00", "5 7 * * *"),
    ("weekly>: Sun,09:00:00", "0 9 * * sun"),
    ("monthly>: 1,09:30:00", "30 9 1 * *"),
])
def test_schedule_operators_become_cron_expressions(tmp_path, schedule, cron):
    text = SPEC_EXAMPLE.replace("daily>: 00:10:00", schedule + "\n  delay: 10m")
    job = load_job(write(tmp_path, text))
    assert job.schedule == cron
    assert job.delay == datetime.timedelta(minutes=10)


@pytest.mark.parametrize("old, new, message", [
    ("  td>: queries/consolidate.sql", "  sh>: run.sh", "daily_krux.dig: line 9: operator sh> is not supported"),
    ("+export_to_krux:", "echo>: hi\n+export_to_krux:", "daily_krux.dig: line 8: operator echo> is not supported"),
    ("  daily>: 00:10:00", "  minutes_interval>: 5", "daily_krux.dig: line 3: schedule operator minutes_interval> "),
    ("  daily>: 00:10:00", "  daily>: 25:00:00", "daily_krux.dig: line 3: schedule daily> '25:00:00': expected a time"),
    ("  daily>: 00:10:00", "  daily>: 00:10:30", "seconds must be 00"),
    ("  daily>: 00:10:00", "  cron>: 0 0 * *", "daily_krux.dig: line 3: schedule cron> '0 0 * *'"),
    ("  daily>: 00:10:00", "  weekly>: Someday,09:00:00", "expected a day and a time such as Sun,09:00:00"),
    ("    export_type: first_party_segment", "    export_type: third_party",
     "task +export_to_krux: result_settings.export_type: 'third_party' is not supported"),
    ("  min_score: 10", "  min_score: 10\n  min_score: 11", "line 8: key min_score appears more than once"),
], ids=["task_operator", "top_operator", "schedule_operator", "bad_time", "seconds", "bad_cron", "bad_day",
        "export_type", "repeated_key"])
def test_mistakes_exit_2_naming_the_key_and_its_line(tmp_path, old, new, message):
    with pytest.raises(ConfigError) as error:
        load_job(write(tmp_path, SPEC_EXAMPLE.replace(old, new)))
    assert message in str(error.value)


def test_an_unknown_variable_in_a_query_is_refused_when_the_file_is_read(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_job(write(tmp_path, SPEC_EXAMPLE, query="SELECT user_id, td_segment\nFROM t WHERE d = '${yesterday}'"))
    assert "consolidate.sql line 2: unknown variable ${yesterday}" in str(error.value)


def test_session_and_export_variables_are_substituted():
    context = QueryContext("Asia/Tokyo", (("min_score", "10"), ("region", "apac")))
    sql = "SELECT '${session_date}', '${session_date_compact}', '${session_time}', ${min_score}, '${ region }'"
    moment = datetime.datetime(2026, 11, 28, 15, 10, tzinfo=datetime.timezone.utc)
    assert render_query(sql, context, datetime.date(2026, 11, 28), moment, "q.sql") == (
        "SELECT '2026-11-28', '20261128', '2026-11-29T00:10:00+09:00', 10, 'apac'"
    )


def test_values_keep_the_text_written_and_tasks_keep_file_order(tmp_path):
    text = SPEC_EXAMPLE.replace("  min_score: 10", "  min_score: 0.50\n  since: 2026-01-01") + textwrap.dedent("""\
        +second:
          td>: queries/consolidate.sql
          result_connection: other
          result_settings:
            export_type: first_party_segment
            export_name: second
        """)
    workflow = read_workflow(str(write(tmp_path, text)))
    assert workflow.context.variables == (("min_score", "0.50"), ("since", "2026-01-01"))
    assert [task.name for task in workflow.tasks] == ["export_to_krux", "second"]
    assert [name for name, _ in load_job(write(tmp_path, text)).tasks] == ["export_to_krux", "second"]


def test_a_workflow_tasks_max_drop_is_read_as_a_number(tmp_path):
    (tmp_path / "q.sql").write_text("SELECT user_id, td_segment FROM segment_a\n")
    (tmp_path / "db").mkdir()
    path = tmp_path / "daily.dig"
    path.write_text(
        "_export:\n  td:\n    database: db\n"
        "+export:\n  td>: q.sql\n  result_connection: dmp\n"
        "  result_settings:\n    export_type: first_party_segment\n    max_drop: 12.5\n"
    )
    [(_, settings)] = load_job(path).tasks
    assert settings.max_drop == 12.5
