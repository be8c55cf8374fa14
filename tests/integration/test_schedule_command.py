"""`krux-export schedule FILE [--next N]` through `pipeline.commands.cli.main`, on a fake clock."""

import datetime
import gzip
import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.errors import Terminated
from pipeline.launcher.run import RunResult
from tests.summaries import succeeded

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.timezone.utc)


class FakeClock:
    """Starts at NOW, jumps to each wake-up time, and stops the loop (as Ctrl-C) at sleep `stop_at`."""

    def __init__(self, stop_at=None):
        self.current = NOW
        self.sleeps = []
        self.stop_at = stop_at

    def now(self):
        return self.current

    def sleep_until(self, moment):
        self.sleeps.append(moment)
        if len(self.sleeps) == self.stop_at:
            raise KeyboardInterrupt
        self.current = max(self.current, moment)


@pytest.fixture
def clock():
    return FakeClock()


def schedule_cli(argv, clock, run_export=None):
    """The command, given the fake clock (and a stand-in for the export, where a test has one)."""
    return cli.main(argv, runtime=cli.Runtime(clock=clock, run_export=run_export))


def write_job(tmp_path, text):
    (tmp_path / "warehouse").mkdir(exist_ok=True)  # the database the jobs here name, when they do not name ./missing
    path = tmp_path / "job.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_next_3_prints_start_times_in_the_jobs_zone_with_the_delay(tmp_path, clock, capsys):
    path = write_job(tmp_path, """\
        name: tokyo_morning
        timezone: Asia/Tokyo
        schedule: "0 8 * * *"
        delay: 1h30m
        source: {database: ./warehouse}
        result_connection: dmp
        result_settings: {export_type: first_party_segment}
        """)
    assert schedule_cli(["schedule", str(path), "--next", "3"], clock) == 0
    out, err = capsys.readouterr()
    assert out == "2026-11-29T09:30:00+09:00\n2026-11-30T09:30:00+09:00\n2026-12-01T09:30:00+09:00\n"
    assert err == ""


def test_next_3_for_the_spec_example_job(tmp_path, clock, capsys):
    path = write_job(tmp_path, """\
        name: daily_krux
        timezone: UTC
        schedule: "0 0 * * *"
        delay: 10m
        source: {database: ./warehouse/activate_to_krux, table_prefix: segment_,
                 user_column: KUID, segment_column: segment_name}
        result_connection: my_salesforce_dmp_connector
        result_settings: {export_type: first_party_segment, skip_invalid_records: true,
                          append: false, group_by_user: true, compression: gzip}
        """)
    assert schedule_cli(["schedule", str(path), "--next", "3"], clock) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-11-29T00:10:00+00:00", "2026-11-30T00:10:00+00:00", "2026-12-01T00:10:00+00:00",
    ]


@pytest.mark.parametrize("semantics_line, expected", [
    ("", ["2026-11-30T00:00:00+00:00", "2026-12-05T00:00:00+00:00", "2026-12-10T00:00:00+00:00"]),
    ("cron_semantics: vixie", ["2026-12-01T00:00:00+00:00", "2026-12-06T00:00:00+00:00", "2026-12-11T00:00:00+00:00"]),
], ids=["treasure-data-by-default", "vixie"])
def test_next_shows_the_seeds_day_steps_unless_the_job_asks_for_vixie(tmp_path, clock, capsys, semantics_line, expected):
    path = write_job(tmp_path, f"""\
        name: every_fifth
        schedule: "0 0 */5 * *"
        {semantics_line}
        source: {{database: ./warehouse}}
        result_connection: dmp
        result_settings: {{export_type: first_party_segment}}
        """)
    assert schedule_cli(["schedule", str(path), "--next", "3"], clock) == 0
    assert capsys.readouterr().out.splitlines() == expected


def test_next_for_a_day_of_month_and_a_day_of_week_follows_the_weekday(tmp_path, clock, capsys):
    """`0 0 1 * 1` runs every Monday; not on Tuesday 1 December."""
    path = write_job(tmp_path, """\
        name: mondays
        schedule: "0 0 1 * 1"
        source: {database: ./warehouse}
        result_connection: dmp
        result_settings: {export_type: first_party_segment}
        """)
    assert schedule_cli(["schedule", str(path), "--next", "3"], clock) == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-11-30T00:00:00+00:00", "2026-12-07T00:00:00+00:00", "2026-12-14T00:00:00+00:00",
    ]


def test_a_job_without_schedule_exits_2_saying_so(tmp_path, clock, capsys):
    path = write_job(tmp_path, """\
        name: once
        source: {database: ./warehouse}
        result_connection: dmp
        result_settings: {export_type: first_party_segment}
        """)
    assert schedule_cli(["schedule", str(path), "--next", "3"], clock) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f'krux-export: error: {path}: the job has no schedule (add schedule: such as "0 0 * * *")\n'


@pytest.mark.parametrize("argv, message", [
    (["--next", "0"], "--next: expected a whole number of 1 or more, got '0'"),
    (["--next", "x"], "--next: expected a whole number of 1 or more, got 'x'"),
])
def test_bad_next_is_a_usage_error(tmp_path, clock, capsys, argv, message):
    assert schedule_cli(["schedule", str(tmp_path / "job.yml"), *argv], clock) == 2
    assert capsys.readouterr().err == f"krux-export: error: {message}\n"


def test_a_bad_job_file_exits_2_naming_the_key(tmp_path, clock, capsys):
    path = write_job(tmp_path, """\
        name: bad
        schedule: "0 0 * * * *"
        source: {database: ./warehouse}
        result_connection: dmp
        result_settings: {export_type: first_party_segment}
        """)
    assert schedule_cli(["schedule", str(path)], clock) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"krux-export: error: {path}: schedule '0 0 * * * *' must have five fields")


def test_schedule_runs_the_export_for_the_utc_date_and_prints_its_summary(tmp_path, clock, capsys):
    """A real export to a local output root; the second sleep is interrupted as by Ctrl-C."""
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    pq.write_table(pa.table({"user_id": ["uid1", "uid2"], "td_segment": ["seg1,seg2", "seg3"]}),
                   warehouse / "segment_a.parquet")
    path = write_job(tmp_path, """\
        name: tokyo_morning
        timezone: Asia/Tokyo
        schedule: "0 8 * * *"
        source: {database: ./warehouse}
        output_root: ./out
        beam_args: ["--runner=FnApiRunner"]
        result_settings: {export_type: first_party_segment}
        """)
    clock.stop_at = 2
    assert schedule_cli(["schedule", str(path)], clock) == 0  # stopping is how a schedule ends
    out, err = capsys.readouterr()
    summary = json.loads(out.strip())
    # 08:00 in Tokyo on 29 November is 23:00 UTC on the 28th.
    published = tmp_path / "out" / "2026-11-28" / "first_party_segment.txt.gz"
    assert summary["status"] == "succeeded" and summary["date"] == "2026-11-28"
    assert summary["object_uri"] == str(published)
    assert sorted(gzip.decompress(published.read_bytes()).decode().splitlines()) == [
        "uid1^segment:seg1,seg2", "uid2^segment:seg3",
    ]
    assert [t.isoformat() for t in clock.sleeps] == ["2026-11-29T08:00:00+09:00", "2026-11-30T08:00:00+09:00"]
    assert "job tokyo_morning: the run scheduled 2026-11-29T08:00:00+09:00 succeeded" in err
    assert err.rstrip().endswith("schedule tokyo_morning stopped by SIGINT")


def without_run_id(line: dict) -> dict:
    """A failed line without its run id (new each run), which must be there if the run started."""
    assert "run_id" in line or line.get("event") == "disabled", line
    return {key: value for key, value in line.items() if key != "run_id"}


def test_three_configuration_failures_print_three_failed_lines_then_exit_2(tmp_path, clock, capsys):
    path = write_job(tmp_path, """\
        name: hourly
        schedule: "@hourly"
        source: {database: ./missing}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        """)
    assert schedule_cli(["schedule", str(path)], clock) == 2
    out, err = capsys.readouterr()
    reason = f"{path}: source.database: {tmp_path / 'missing'}: no such directory"
    # Each failed run names the day it exported (its scheduled time's date); no run id: none started.
    assert [json.loads(line) for line in out.splitlines()] == [
        {"status": "failed", "exit_code": 2, "error": reason, "date": "2026-11-28"},
    ] * 3
    assert [t.isoformat() for t in clock.sleeps] == [
        "2026-11-28T13:00:00+00:00", "2026-11-28T14:00:00+00:00", "2026-11-28T15:00:00+00:00",
    ]
    assert err.splitlines()[-1] == (
        f"krux-export: error: schedule disabled after 3 consecutive configuration failures: {reason}"
    )


def test_beam_options_given_to_the_command_follow_the_jobs_own(tmp_path, clock):
    """Flags argparse leaves over go to Beam, after the job file's own."""
    path = write_job(tmp_path, """\
        name: daily
        schedule: "@daily"
        source: {database: ./warehouse}
        output_root: ./out
        beam_args: ["--runner=FnApiRunner"]
        result_settings: {export_type: first_party_segment}
        """)
    seen = []
    clock.stop_at = 2

    def run_export(settings, **_):
        seen.append(settings)
        return RunResult(succeeded())

    assert schedule_cli(["schedule", str(path), "--direct_num_workers=3"], clock, run_export) == 0
    assert [(s.date, s.beam_args) for s in seen] == [
        (datetime.date(2026, 11, 29), ("--runner=FnApiRunner", "--direct_num_workers=3")),
    ]


def test_sigterm_during_a_run_ends_that_run_as_failed_and_stops_the_schedule(tmp_path, clock, capsys):
    def terminated_mid_run(settings, **_):
        raise Terminated()

    path = write_job(tmp_path, """\
        name: j
        schedule: "@hourly"
        source: {database: .}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        """)
    assert schedule_cli(["schedule", str(path)], clock, terminated_mid_run) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip()) == {"status": "failed", "exit_code": 143, "error": "interrupted by SIGTERM"}
    assert err.rstrip().endswith("schedule j stopped by SIGTERM")
    assert len(clock.sleeps) == 1  # no further slot was waited for


def test_a_disabled_schedule_tells_each_failure_then_disabled_and_records_each_run(tmp_path, clock, capsys, webhook,
                                                                                   monkeypatch):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KRUX_WEBHOOK_URL", webhook.url)
    path = write_job(tmp_path, """\
        name: hourly
        schedule: "@hourly"
        source: {database: ./missing}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        notify:
          on: [failure, disabled]
          webhook: env:KRUX_WEBHOOK_URL
        """)
    assert schedule_cli(["schedule", str(path)], clock) == 2
    out, err = capsys.readouterr()
    failed = {"status": "failed", "exit_code": 2,
              "error": f"{path}: source.database: {tmp_path / 'missing'}: no such directory", "date": "2026-11-28"}
    disabled = {"status": "failed", "exit_code": 2,
                "error": f"schedule disabled after 3 consecutive configuration failures: {failed['error']}"}
    assert [(body["event"], body) for _, _, body in webhook.received] == [
        *[("failure", {**failed, "job": "hourly", "event": "failure",
                       "text": f"hourly: failure, 2026-11-28: {failed['error']}"})] * 3,
        ("disabled", {**disabled, "job": "hourly", "event": "disabled",  # no run of its own
                      "text": f"hourly: schedule disabled after 3 consecutive configuration failures: {failed['error']}"}),
    ]
    history = (tmp_path / "home" / "history" / "first_party_segment.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in history] == [
        {"started_at": f"2026-11-28T{hour}:00:00Z", "export_name": "first_party_segment", "job": "hourly", **failed}
        for hour in (13, 14, 15)
    ]
    assert webhook.token not in out + err


def test_a_failing_notification_does_not_change_the_schedule(tmp_path, clock, capsys, webhook, monkeypatch):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    webhook.status = 503
    path = write_job(tmp_path, f"""\
        name: daily
        schedule: "@daily"
        source: {{database: ./warehouse}}
        output_root: ./out
        result_settings: {{export_type: first_party_segment}}
        notify: {{on: [success], webhook: "{webhook.url}"}}
        """)
    clock.stop_at = 3

    def run_export(settings, **_):
        return RunResult(succeeded(date=settings.date.isoformat()))

    assert schedule_cli(["schedule", str(path)], clock, run_export) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["date"] for line in out.splitlines()] == ["2026-11-29", "2026-11-30"]
    assert [body["date"] for _, _, body in webhook.received] == ["2026-11-29", "2026-11-30"]
    warnings = [line for line in err.splitlines() if "notification" in line]
    assert warnings == ["krux-export: job daily: success notification by webhook failed: the webhook answered HTTP 503"] * 2
    assert webhook.token not in out + err


def test_a_schedule_whose_webhook_variable_is_unset_says_so_when_it_starts(tmp_path, clock, capsys, monkeypatch):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KRUX_WEBHOOK_URL", raising=False)
    path = write_job(tmp_path, """\
        name: daily
        schedule: "@daily"
        source: {database: ./warehouse}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        notify: {webhook: env:KRUX_WEBHOOK_URL}
        """)
    clock.stop_at = 1
    assert schedule_cli(["schedule", str(path)], clock, lambda settings, **_: None) == 0
    assert ("krux-export: job daily: notify.webhook refers to $KRUX_WEBHOOK_URL, which is not set or empty: "
            "notifications by webhook will fail") in capsys.readouterr().err.splitlines()
