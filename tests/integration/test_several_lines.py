"""A user on several lines, through the CLI against moto: counted and warned of without --group-by-user."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli

WARNING = ("krux-export: 2 users are on more than one line: Salesforce takes a user's later line as replacing the "
           "earlier one, so only one of each such user's lines counts; --group-by-user writes one line per user "
           "with all of its segments and attributes")


@pytest.fixture
def run(s3_endpoint, bucket, tmp_path, capsys):
    database = tmp_path / "activate_to_krux"
    database.mkdir()
    pq.write_table(pa.table({"user_id": ["uid1", "uid2", "uid3"], "td_segment": ["a", "b", "c"]}),
                   database / "segment_a.parquet")
    pq.write_table(pa.table({"user_id": ["uid1", " uid2 "], "td_segment": ["d", "e"]}),
                   database / "segment_b.parquet")

    def run_cli(*args):
        argv = ["run", "--client-name", "acme", "--bucket", bucket, "--endpoint-url", s3_endpoint,
                "--database", str(database), "--date", "2026-11-28", "--runner=FnApiRunner", *args]
        code = cli.main(argv)
        out, err = capsys.readouterr()
        return code, json.loads(out.strip().splitlines()[-1]), err

    return run_cli


def test_ungrouped_users_on_several_lines_are_counted_in_the_summary_with_one_warning(run):
    code, summary, err = run()
    assert code == 0, err
    assert summary["lines_written"] == 5 and summary["users_on_several_lines"] == 2
    assert [line for line in err.splitlines() if "more than one line" in line] == [WARNING]


def test_grouped_there_is_nothing_to_count_or_warn_of(run):
    code, summary, err = run("--group-by-user")
    assert code == 0, err
    assert summary["lines_written"] == 3 and "users_on_several_lines" not in summary
    assert "more than one line" not in err
