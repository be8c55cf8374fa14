"""Every message a user meets on the way in, as the user meets it: the command line, in this process.

Each case asserts the exit code and the words the user needs to fix the mistake (the flag or
the job file's key as they wrote it, what exists, what to do). Runs stop before any export:
the exports' own messages are tested with the runs.
"""

import json
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.launcher.run import RunResult
from tests.summaries import succeeded


def krux(argv, capsys, run_export=None):
    """(exit code, stdout, stderr) of `krux-export argv`."""
    code = cli.main(argv, runtime=cli.Runtime(run_export=run_export))
    out, err = capsys.readouterr()
    return code, out, err


def never_runs(settings, **_):
    raise AssertionError("the export must not start")


def write_job(tmp_path, text: str, name: str = "job.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# -- commands and flags -------------------------------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    ([], "give a command: run, preview, connection, schedule, history (see krux-export --help)"),
    (["connection"], "connection needs a command: add, list, test, remove (see krux-export connection --help)"),
])
def test_a_missing_command_names_the_commands_there_are(capsys, argv, words):
    code, _, err = krux(argv, capsys)
    assert code == 2
    assert err == f"krux-export: error: {words}\n"
    assert "command" + "_" not in err and "required" not in err  # no argparse variable names


@pytest.mark.parametrize("argv, words", [
    (["rn"], "unknown command 'rn' (did you mean run? commands: run, preview, connection, schedule, history)"),
    (["bogus"], "unknown command 'bogus' (commands: run, preview, connection, schedule, history)"),
    (["connection", "lst"],
     "unknown connection command 'lst' (did you mean list? connection commands: add, list, test, remove)"),
])
def test_a_mistyped_command_names_the_closest_and_the_commands_there_are(capsys, argv, words):
    code, _, err = krux(argv, capsys)
    assert code == 2
    assert err == f"krux-export: error: {words}\n"


@pytest.mark.parametrize("argv, words", [
    (["run", "--source", "x", "--skip-invalid-record"], "unknown option --skip-invalid-record "
     "(did you mean --skip-invalid-records?)"),
    (["run", "--source", "x", "--group-by-users"], "unknown option --group-by-users (did you mean --group-by-user?)"),
    (["preview", "--source", "x", "--user-colum=KUID"], "unknown option --user-colum (did you mean --user-column?)"),
    (["history", "--export-nam", "x"], "unknown option --export-nam (did you mean --export-name?)"),
    (["run", "--source", "x", "--colour=blue"], "unknown option --colour (see --help)"),
])
def test_a_misspelt_flag_is_refused_with_the_closest_of_ours(capsys, home, argv, words):
    code, out, err = krux(argv, capsys, never_runs)
    assert code == 2
    assert f"krux-export: error: {words}\n" == err


def test_a_beam_flag_close_to_one_of_ours_still_goes_to_beam(tmp_path, capsys, home):
    # --region is Dataflow's, one letter off ours (--s3-region): Beam knows it, so no guess.
    (tmp_path / "db").mkdir()
    seen = []

    def run_export(settings, **_):
        seen.append(settings)
        return RunResult(succeeded())

    code, _, err = krux(["run", "--database", str(tmp_path / "db"), "--output-root", str(tmp_path / "out"),
                         "--region=europe-west1"], capsys, run_export)
    assert code == 0, err
    assert seen[0].beam_args == ("--region=europe-west1",) and seen[0].region is None


@pytest.mark.parametrize("date, words", [
    ("2026-02-30", "--date: date '2026-02-30' is not a real day: February 2026 has 28 days"),
    ("2026-13-01", "--date: date '2026-13-01' is not a real day: there is no month 13"),
    ("28.11.2026", "--date: date '28.11.2026' is not of the form YYYY-MM-DD"),
])
def test_a_date_that_is_no_day_says_why(capsys, date, words):
    code, out, err = krux(["run", "--source", "x", "--date", date], capsys, never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1]) == {"status": "failed", "exit_code": 2, "error": words}


# -- a setting named as it was written ----------------------------------------------------------


def test_rejects_without_skipping_names_the_flag_on_the_command_line(tmp_path, capsys):
    code, out, _ = krux(["run", "--source", "x", "--rejects", str(tmp_path / "r.jsonl")], capsys, never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1])["error"] == (
        "--rejects: needs --skip-invalid-records (without it the first invalid row stops the run)"
    )


def test_rejects_without_skipping_names_the_keys_in_a_job_file(tmp_path, capsys):
    job = write_job(tmp_path, """\
        name: daily
        source: {database: ./db}
        output_root: ./out
        rejects: ./rejects.jsonl
        result_settings: {export_type: first_party_segment}
        """)
    code, out, _ = krux(["run", "--job", str(job)], capsys, never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1])["error"] == (
        f"{job}: rejects: needs result_settings.skip_invalid_records (without it the first invalid row stops the run)"
    )


def test_rejects_on_the_command_line_over_a_job_that_does_not_skip_names_the_flag_and_the_key(tmp_path, capsys):
    job = write_job(tmp_path, """\
        name: daily
        source: {database: ./db}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        """)
    code, out, _ = krux(["run", "--job", str(job), "--rejects", str(tmp_path / "r.jsonl")], capsys, never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1])["error"] == (
        "--rejects: needs result_settings.skip_invalid_records (without it the first invalid row stops the run)"
    )


def test_a_missing_database_flag_is_named(tmp_path, capsys, home):
    missing = tmp_path / "warehouse"
    code, out, err = krux(["run", "--database", str(missing), "--output-root", str(tmp_path / "out")], capsys,
                          never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1])["error"] == f"--database: {missing}: no such directory"


def test_a_missing_database_of_a_job_file_names_the_file_and_key(tmp_path, capsys, home):
    job = write_job(tmp_path, """\
        name: daily
        source: {database: ./warehouse}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        """)
    code, out, _ = krux(["run", "--job", str(job)], capsys, never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1])["error"] == (
        f"{job}: source.database: {tmp_path / 'warehouse'}: no such directory"
    )


def test_a_missing_database_of_a_workflow_file_names_the_file_and_export_td_database(tmp_path, capsys, home):
    (tmp_path / "q.sql").write_text("SELECT KUID AS user_id, segment_name AS td_segment FROM segment_a\n")
    dig = write_job(tmp_path, """\
        _export:
          td:
            database: activate_to_krux
        +export_to_krux:
          td>: q.sql
          result_connection: dmp
          result_settings:
            export_type: first_party_segment
        """, name="daily.dig")
    code, out, _ = krux(["run", "--job", str(dig)], capsys, never_runs)
    assert code == 2
    assert json.loads(out.splitlines()[-1])["error"] == (
        f"{dig}: _export.td.database: {tmp_path / 'activate_to_krux'}: no such directory"
    )


# -- job files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["@daily", "*/5 * * * *"])
def test_an_unquoted_cron_rule_says_to_quote_it(tmp_path, capsys, rule):
    job = write_job(tmp_path, f"""\
        name: daily
        schedule: {rule}
        source: {{database: ./db}}
        output_root: ./out
        result_settings: {{export_type: first_party_segment}}
        """)
    code, _, err = krux(["schedule", str(job), "--next", "1"], capsys)
    assert code == 2
    assert "not valid YAML" in err and f'; quote the value: schedule: "{rule}"\n' in err and "(line 2, column" in err


def test_a_shortcut_without_its_at_sign_hints_at_it(tmp_path, capsys):
    job = write_job(tmp_path, """\
        name: daily
        schedule: "daily"
        source: {database: ./db}
        output_root: ./out
        result_settings: {export_type: first_party_segment}
        """)
    code, _, err = krux(["schedule", str(job), "--next", "1"], capsys)
    assert code == 2
    assert f"{job}: schedule 'daily'" in err and '(did you mean "@daily"?)' in err


def test_an_unknown_job_key_lists_the_allowed_keys_and_the_closest(tmp_path, capsys):
    job = write_job(tmp_path, """\
        name: daily
        source: {database: ./db}
        output_root: ./out
        result_settings: {export_type: first_party_segment, group_by_users: true}
        """)
    code, _, err = krux(["run", "--job", str(job)], capsys, never_runs)
    assert code == 2
    assert (f"{job}: unknown key result_settings.group_by_users (did you mean result_settings.group_by_user? "
            "allowed: export_type, skip_invalid_records, append, group_by_user, allow_empty, compression, "
            "export_name, append_key, max_drop)") in err


# -- tables --------------------------------------------------------------------------------------


def test_a_missing_user_column_says_how_to_name_it(tmp_path, capsys):
    pq.write_table(pa.table({"KUID": ["k1"], "segment_name": ["s"]}), tmp_path / "segment_a.parquet")
    code, _, err = krux(["preview", "--database", str(tmp_path)], capsys)
    assert code == 2
    assert ("table segment_a: no column user_id (columns: KUID, segment_name); "
            "name the column with --user-column (source.user_column in a job file)") in err


# -- preview takes only what it uses ---------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--summary-json", "--append", "--allow-empty", "--rejects"])
def test_preview_neither_lists_nor_takes_what_only_a_run_publishes(capsys, flag):
    with pytest.raises(SystemExit):
        cli.main(["preview", "--help"])
    assert flag not in capsys.readouterr().out
    code, _, err = krux(["preview", "--source", "x", f"{flag}=x"], capsys)
    assert code == 2 and f"unknown option {flag}" in err
