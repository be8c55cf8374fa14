"""`run --job FILE` with flags: the flags the parser read override the job file, whatever their spelling."""

import json
import textwrap

import pytest

from pipeline.commands import cli
from pipeline.launcher.run import RunResult
from tests.summaries import succeeded


def run_with_job(tmp_path, capsys, *flags):
    """Runs `run --job` with `flags` in this process; returns the settings the export got."""
    (tmp_path / "db").mkdir()
    job = tmp_path / "job.yml"
    job.write_text(textwrap.dedent("""\
        name: daily_krux
        source: {database: ./db, table_prefix: seg_}
        client_name: job-client
        region: us-east-1
        result_settings: {export_type: first_party_segment, compression: none}
        """))
    seen = []

    def run_export(settings, **_):
        seen.append(settings)
        return RunResult(succeeded())

    code = cli.main(["run", "--job", str(job), *flags], runtime=cli.Runtime(run_export=run_export))
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["status"] == "succeeded"
    return seen[0]


def test_s3_region_overrides_the_job_files_region(tmp_path, capsys):
    # --s3-region's dest is `region`: overrides read from argv's text took it for `s3_region`.
    settings = run_with_job(tmp_path, capsys, "--s3-region", "eu-west-1")
    assert settings.region == "eu-west-1"
    assert settings.client_name == "job-client"  # not given: the job's


def test_a_flag_given_with_its_default_value_still_overrides_the_job_file(tmp_path, capsys):
    # gzip is the default compression, but it was given: the job's `none` must not win.
    settings = run_with_job(tmp_path, capsys, "--compression=gzip", "--s3-region=eu-west-2")
    assert (settings.compression, settings.region) == ("gzip", "eu-west-2")
    assert settings.table_prefix == "seg_"


def test_a_query_on_the_command_line_replaces_the_job_files_query_file(tmp_path, capsys):
    (tmp_path / "db").mkdir()
    job = tmp_path / "job.yml"
    (tmp_path / "daily.sql").write_text("SELECT user_id, td_segment FROM segment_a\n")
    job.write_text(textwrap.dedent("""\
        name: daily_krux
        query: daily.sql
        source: {database: ./db}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        """))
    seen = []

    def run_export(settings, **_):
        seen.append(settings)
        return RunResult(succeeded())

    argv = ["run", "--job", str(job), "--query", "SELECT 'u' AS user_id, 's' AS td_segment"]
    assert cli.main(argv, runtime=cli.Runtime(run_export=run_export)) == 0, capsys.readouterr().err
    assert (seen[0].query, seen[0].query_file) == ("SELECT 'u' AS user_id, 's' AS td_segment", None)


def test_append_key_and_max_drop_reach_the_settings(tmp_path, capsys):
    settings = run_with_job(tmp_path, capsys, "--append", "--append-key", "dag.run-7", "--max-drop", "12.5")
    assert (settings.append, settings.append_key, settings.max_drop) == (True, "dag.run-7", 12.5)


@pytest.mark.parametrize("flags, message", [
    (["--append-key", "retry-1"],
     "--append-key: needs --append (a replace run's object always has the fixed name)"),
    (["--append", "--append-key", "a/b"], "--append-key: 'a/b' must match [A-Za-z0-9_.-]+"),
    (["--max-drop", "half"], "--max-drop: 'half' is not a percentage such as 50 or 12.5"),
    (["--max-drop", "150"], "--max-drop: must be a percentage from 0 to 100, such as 50, got 150"),
])
def test_bad_append_key_or_max_drop_is_a_usage_error_naming_the_flag(tmp_path, capsys, flags, message):
    def run_export(settings, **_):
        raise AssertionError("a refused flag must not start a run")

    argv = ["run", "--database", str(tmp_path), "--client-name", "acme", *flags]
    code = cli.main(argv, runtime=cli.Runtime(run_export=run_export))
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == f"krux-export: error: {message}"
    assert json.loads(out.splitlines()[-1])["error"] == message
