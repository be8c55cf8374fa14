"""How a failure reaches the person who reads it (SPEC §7): from a worker on each local runner,
as one line with the right exit code, the run's id and day, and the traceback with --verbose."""

import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.launcher.tunables import Tunables

DAY = "2026-11-28"
LOCAL_RUNNERS = [
    pytest.param(["--direct_running_mode=in_memory"], id="in-process"),
    pytest.param(["--direct_running_mode=multi_processing", "--direct_num_workers=2"], id="multi-processing"),
]


def run_cli(capfd, *args, tunables=None):
    """`krux-export run` in this process: (exit code, last stdout line as JSON, stderr)."""
    code = cli.main(["run", *args], runtime=cli.Runtime(tunables=tunables))
    out, err = capfd.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


@pytest.fixture
def good_table(tmp_path):
    path = tmp_path / "segment_a.parquet"
    pq.write_table(pa.table({"user_id": ["u1", "u2"], "td_segment": ["s1", "s2"]}), path)
    return path


@pytest.fixture
def not_utf8_csv(tmp_path):
    """A CSV table whose header is fine (the launcher's check passes) and whose second row is
    not UTF-8: only the worker reading it finds out."""
    path = tmp_path / "segment_latin1.csv"
    path.write_bytes(b"user_id,td_segment\nu1,s1\nu2,caf\xe9\n")
    return path


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_a_bad_file_found_by_a_worker_is_exit_2_naming_table_and_path(capfd, tmp_path, not_utf8_csv, runner):
    code, summary, err = run_cli(capfd, "--source", str(not_utf8_csv), "--output-root", str(tmp_path / "out"),
                                 "--date", DAY, "--runner=FnApiRunner", *runner)
    assert code == 2 and summary["exit_code"] == 2, err
    error = summary["error"]
    assert error.startswith(f"table segment_latin1: cannot read {not_utf8_csv}: ") and "UTF8" in error, error
    assert "[while running" not in error and "krux-export-error" not in error
    assert summary["date"] == DAY and summary["run_id"].startswith(("2026", "2027"))
    assert err.strip().splitlines()[-1] == f"krux-export: error: {error}"
    assert "Traceback" not in err


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_a_bug_in_a_worker_is_exit_1_with_its_class_and_message(capfd, tmp_path, good_table, runner):
    # A shard size of the wrong type: the shard writer's comparison fails in the worker, as a bug would.
    code, summary, err = run_cli(capfd, "--source", str(good_table), "--output-root", str(tmp_path / "out"),
                                 "--date", DAY, "--runner=FnApiRunner", *runner,
                                 tunables=Tunables(shard_target_bytes="64MB"))
    assert code == 1 and summary["exit_code"] == 1, err
    error = summary["error"]
    assert "likely a bug" in error and "--verbose" in error, error
    assert "TypeError: '>=' not supported between instances of 'int' and 'str'" in error, error
    assert "Traceback" not in err
    assert not (tmp_path / "out" / DAY).exists()


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_verbose_shows_a_workers_traceback(capfd, tmp_path, good_table, monkeypatch, how):
    if how == "variable":
        monkeypatch.setenv("KRUX_EXPORT_LOG", "debug")
    verbose = ["--verbose"] if how == "flag" else []
    code, summary, err = run_cli(capfd, "--source", str(good_table), "--output-root", str(tmp_path / "out"),
                                 "--date", DAY, "--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                                 "--direct_num_workers=2", *verbose, tunables=Tunables(shard_target_bytes="64MB"))
    assert code == 1, err
    # The worker's own frames, as the worker process printed them and as the launcher got them.
    assert "Traceback (most recent call last)" in err
    assert os.path.join("transforms", "shards.py") in err and "TypeError" in err
    assert err.strip().splitlines()[-1] == f"krux-export: error: {summary['error']}"


def test_verbose_is_taken_by_every_command(capfd, tmp_path):
    assert cli.main(["history", "--export-name", "weekly", "--verbose"]) == 0
    assert cli.main(["--verbose", "connection", "list"]) == 0
    assert cli.main(["connection", "list", "--verbose"]) == 0
    assert "unknown option" not in capfd.readouterr().err


def test_a_mistyped_runner_is_a_usage_error_before_any_table_is_read(capfd, tmp_path):
    code, summary, err = run_cli(capfd, "--source", str(tmp_path / "missing.parquet"), "--output-root",
                                 str(tmp_path / "out"), "--runner=FnApiRuner")
    assert code == 2 and summary == {"status": "failed", "exit_code": 2, "error": summary["error"]}
    error = summary["error"]
    assert error.startswith("--runner=FnApiRuner: no such Beam runner; known runners: "), error
    assert "FnApiRunner" in error and "PortableRunner" in error and "DataflowRunner" in error
    assert "missing.parquet" not in error and "ValueError" not in error


def test_options_the_runner_refuses_are_a_usage_error(capfd, tmp_path, good_table):
    code, summary, _ = run_cli(capfd, "--source", str(good_table), "--output-root", str(tmp_path / "out"),
                               "--runner=DataflowRunner")
    assert code == 2 and summary["error"].startswith("Beam options: ")
    assert "project" in summary["error"]


def test_a_run_before_any_connection_creates_the_home_folder_private(capfd, tmp_path, good_table, monkeypatch):
    home = tmp_path / "krux-home"
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(home))
    code, _, err = run_cli(capfd, "--source", str(good_table), "--output-root", str(tmp_path / "out"),
                           "--date", DAY, "--runner=FnApiRunner")
    assert code == 0, err
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "history").stat().st_mode) == 0o700


def test_a_home_folder_the_user_made_keeps_its_mode(capfd, tmp_path, good_table, monkeypatch):
    home = tmp_path / "krux-home"
    home.mkdir()
    home.chmod(0o750)
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(home))
    code, _, err = run_cli(capfd, "--source", str(good_table), "--output-root", str(tmp_path / "out"),
                           "--date", DAY, "--runner=FnApiRunner")
    assert code == 0, err
    assert stat.S_IMODE(home.stat().st_mode) == 0o750
    assert stat.S_IMODE((home / "history").stat().st_mode) == 0o700


def test_a_mistyped_runner_in_a_job_file_is_a_usage_error_of_that_run(capfd, tmp_path, good_table):
    job = tmp_path / "job.yml"
    job.write_text(
        f"name: daily_krux\nsource: {{database: {good_table.parent}}}\noutput_root: {tmp_path / 'out'}\n"
        'beam_args: ["--runner=FnApiRuner"]\n'
        "result_settings: {export_type: first_party_segment, export_name: daily_krux}\n", encoding="utf-8")
    code, summary, _ = run_cli(capfd, "--job", str(job), "--date", DAY)
    assert code == 2 and summary["error"].startswith("--runner=FnApiRuner: no such Beam runner"), summary
    assert summary["date"] == DAY
