"""Run history and notifications through the CLI: `run`, `run --job`, and `krux-export history`."""

import datetime
import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.errors import StorageError, Terminated
from pipeline.launcher.run import RunResult
from tests.summaries import succeeded

NOW = datetime.datetime(2026, 11, 28, 9, 30, 0, tzinfo=datetime.timezone.utc)
SUCCEEDED = {
    "status": "succeeded", "run_id": "20261128T093000Z-3f9a", "date": "2026-11-28",
    "object_uri": "s3://krux-partners/acme/uploads/2026-11-28/daily_krux.txt.gz", "bytes": 1234,
    "rows_read": {"total": 12, "tables": {"segment_a": 12}}, "lines_written": 10,
    "invalid": {"missing_user_id": 1, "value_too_long": 1}, "replaced": [], "duration_s": 12.345,
}
"""The summary line of `succeeded()`, written out from SPEC §7."""


class StillClock:
    """A clock that says NOW; runs in these tests never sleep."""

    def now(self):
        return NOW

    def sleep_until(self, moment):
        raise AssertionError("no run here waits")


@pytest.fixture
def home(tmp_path, monkeypatch):
    """$KRUX_EXPORT_HOME of this test alone."""
    path = tmp_path / "home"
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(path))
    return path


def krux(argv, run_export=None):
    return cli.main(argv, runtime=cli.Runtime(clock=StillClock(), run_export=run_export))


def succeeding(settings, **_):
    return RunResult(succeeded())


def failing_with(error):
    def run_export(settings, **_):
        raise error

    return run_export


def write_job(tmp_path, extra=""):
    (tmp_path / "warehouse").mkdir(exist_ok=True)
    path = tmp_path / "job.yml"
    path.write_text(textwrap.dedent("""\
        name: daily_krux
        source: {database: ./warehouse}
        output_root: ./out
        beam_args: ["--runner=FnApiRunner"]
        result_settings: {export_type: first_party_segment, export_name: daily_krux}
        """) + textwrap.dedent(extra), encoding="utf-8")
    return path


def history_lines(home, export_name="daily_krux"):
    return (home / "history" / f"{export_name}.jsonl").read_text().splitlines()


def test_a_real_run_and_a_failed_one_are_recorded_and_told(tmp_path, home, webhook, capsys):
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    pq.write_table(pa.table({"user_id": ["uid1", "uid2"], "td_segment": ["seg1", "seg2"]}),
                   warehouse / "segment_a.parquet")
    job = write_job(tmp_path, f"""\
        notify:
          on: [success, failure]
          webhook: {webhook.url}
        """)
    assert krux(["run", "--job", str(job), "--date", "2026-11-28"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert krux(["run", "--job", str(job), "--database", str(tmp_path / "missing"), "--date", "2026-11-29"]) == 2
    out, err = capsys.readouterr()
    failed = json.loads(out.splitlines()[-1])
    # The failure names its day (SPEC §7), in the line, the history and the notification; no run
    # id: the run never started.
    assert failed == {"status": "failed", "exit_code": 2,
                      "error": f"--database: {tmp_path / 'missing'}: no such directory", "date": "2026-11-29"}

    stored = [json.loads(line) for line in history_lines(home)]
    started = {"started_at": "2026-11-28T09:30:00Z", "export_name": "daily_krux", "job": "daily_krux"}
    assert stored == [{**started, **summary}, {**started, **failed}]
    assert [body for _, _, body in webhook.received] == [
        {**summary, "job": "daily_krux", "event": "success",
         "text": f"daily_krux: success, 2026-11-28, 2 lines to {summary['object_uri']}"},
        {**failed, "job": "daily_krux", "event": "failure", "text": f"daily_krux: failure, 2026-11-29: {failed['error']}"},
    ]
    assert webhook.token not in out + err
    assert krux(["history", "--job", str(job)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[:4] == ["2026-11-28T09:30:00Z", "2026-11-29", "failed", "(2)"]


def test_a_run_without_a_job_is_recorded_under_its_export_name_and_tells_nobody(tmp_path, home, capsys):
    argv = ["run", "--database", str(tmp_path), "--output-root", str(tmp_path / "out"), "--export-name", "weekly"]
    assert krux(argv, failing_with(StorageError("s3://krux-partners: access denied"))) == 4
    assert [json.loads(line) for line in history_lines(home, "weekly")] == [{
        "started_at": "2026-11-28T09:30:00Z", "export_name": "weekly",
        "status": "failed", "exit_code": 4, "error": "s3://krux-partners: access denied",
    }]


def test_a_run_stopped_by_a_signal_is_recorded_but_not_told(tmp_path, home, webhook, capsys):
    job = write_job(tmp_path, f"notify: {{webhook: '{webhook.url}'}}\n")
    assert krux(["run", "--job", str(job)], failing_with(Terminated())) == 143
    assert json.loads(history_lines(home)[0])["error"] == "interrupted by SIGTERM"
    assert webhook.received == []


def test_a_failing_webhook_is_one_warning_and_keeps_the_exit_code(tmp_path, home, webhook, capsys):
    webhook.status = 500
    job = write_job(tmp_path, f"notify: {{webhook: '{webhook.url}'}}\n")
    assert krux(["run", "--job", str(job)], failing_with(StorageError("bucket gone"))) == 4
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "krux-export: job daily_krux: failure notification by webhook failed: the webhook answered HTTP 500",
        "krux-export: error: bucket gone",
    ]
    assert json.loads(out.splitlines()[-1]) == {"status": "failed", "exit_code": 4, "error": "bucket gone"}
    assert webhook.token not in out + err


def test_a_success_is_not_told_unless_asked(tmp_path, home, webhook, capsys):
    job = write_job(tmp_path, f"notify: {{webhook: '{webhook.url}'}}\n")
    assert krux(["run", "--job", str(job)], succeeding) == 0
    assert webhook.received == [] and len(history_lines(home)) == 1


def test_a_history_that_cannot_be_written_is_a_warning_and_the_run_still_succeeds(tmp_path, monkeypatch, capsys):
    not_a_folder = tmp_path / "home"
    not_a_folder.write_text("a file where the home folder should be")
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(not_a_folder))
    assert krux(["run", "--job", str(write_job(tmp_path))], succeeding) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[-1]) == SUCCEEDED
    assert err.splitlines() == [
        f"krux-export: the run was not added to the history {not_a_folder}/history/daily_krux.jsonl: Not a directory",
        "krux-export: published s3://krux-partners/acme/uploads/2026-11-28/daily_krux.txt.gz (1,234 bytes, 10 lines)",
    ]


def write_history(home, export_name, runs):
    (home / "history").mkdir(parents=True)
    (home / "history" / f"{export_name}.jsonl").write_text("".join(json.dumps(run) + "\n" for run in runs))


RUNS = [
    {"started_at": "2026-11-27T00:10:04Z", "export_name": "first_party_segment",
     **SUCCEEDED, "date": "2026-11-27", "lines_written": 9, "invalid": {}, "bytes": 999, "duration_s": 8.04,
     "object_uri": "s3://krux-partners/acme/uploads/2026-11-27/first_party_segment.txt.gz"},
    {"started_at": "2026-11-28T00:10:05Z", "export_name": "first_party_segment",
     "status": "failed", "exit_code": 4, "error": "s3://krux-partners: access denied"},
    {"started_at": "2026-11-28T01:02:03Z", "export_name": "first_party_segment",
     **SUCCEEDED, "object_uri": "s3://krux-partners/acme/uploads/2026-11-28/first_party_segment.txt.gz"},
]


def test_history_prints_a_table_newest_last(home, capsys):
    write_history(home, "first_party_segment", RUNS)
    assert krux(["history"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "start                 day         status      lines  invalid  bytes  seconds  object or reason",
        "2026-11-27T00:10:04Z  2026-11-27  succeeded       9        0    999      8.0  "
        "s3://krux-partners/acme/uploads/2026-11-27/first_party_segment.txt.gz",
        "2026-11-28T00:10:05Z  -           failed (4)      -        -      -        -  "
        "s3://krux-partners: access denied",
        "2026-11-28T01:02:03Z  2026-11-28  succeeded      10        2   1234     12.3  "
        "s3://krux-partners/acme/uploads/2026-11-28/first_party_segment.txt.gz",
    ]


def test_history_json_prints_the_last_stored_lines_as_they_are(home, capsys):
    write_history(home, "first_party_segment", RUNS)
    assert krux(["history", "--json", "--last", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [json.dumps(run) for run in RUNS[1:]]


def test_history_of_a_job_shows_its_own_runs_not_those_of_another_job_of_the_same_export(tmp_path, home, capsys):
    ours, theirs, by_hand = ({**RUNS[0], "export_name": "daily_krux", "job": "daily_krux"},
                             {**RUNS[1], "export_name": "daily_krux", "job": "hourly_krux"},
                             {**RUNS[2], "export_name": "daily_krux"})
    write_history(home, "daily_krux", [ours, theirs, by_hand, {**ours, "started_at": "2026-11-29T00:10:04Z"}])
    job = str(write_job(tmp_path))

    assert krux(["history", "--job", job, "--json"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        json.dumps(ours), json.dumps({**ours, "started_at": "2026-11-29T00:10:04Z"})
    ]
    assert krux(["history", "--job", job, "--json", "--last", "1"]) == 0
    assert [json.loads(line)["started_at"] for line in capsys.readouterr().out.splitlines()] == ["2026-11-29T00:10:04Z"]
    assert krux(["history", "--export-name", "daily_krux", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4  # the export's: every job's, and by hand


def test_a_jobs_runs_are_recorded_with_the_jobs_name(tmp_path, home, capsys):
    assert krux(["run", "--job", str(write_job(tmp_path)), "--date", "2026-11-28"], succeeding) == 0
    assert krux(["run", "--database", str(tmp_path / "warehouse"), "--output-root", str(tmp_path / "out"),
                 "--export-name", "daily_krux"], succeeding) == 0
    assert [json.loads(line).get("job") for line in history_lines(home)] == ["daily_krux", None]


def test_history_of_an_export_without_runs_says_so_on_stderr(home, capsys):
    assert krux(["history", "--export-name", "weekly"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"krux-export: no runs recorded for export weekly ({home}/history/weekly.jsonl)\n"


@pytest.mark.parametrize("argv, message", [
    (["--export-name", "weekly-dump"], "--export-name: export name 'weekly-dump' must match [A-Za-z0-9_]+"),
    (["--last", "0"], "--last: expected a whole number of 1 or more, got '0'"),
    (["--job", "a.yml", "--export-name", "b"], "argument --export-name: not allowed with argument --job"),
])
def test_history_usage_errors_exit_2(home, capsys, argv, message):
    assert krux(["history", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"krux-export: error: {message}\n"
