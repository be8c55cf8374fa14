"""The run history file: one JSON line per run, locked appends, bounded length, private mode."""

import datetime
import json
import multiprocessing
import stat

import pytest

from pipeline.outcomes.history import KEEP_RUNS, TRIM_AT_RUNS, history_file, read_history, record_run
from tests.summaries import FailedSummary, succeeded

STARTED = datetime.datetime(2026, 11, 28, 0, 10, 5, 123456, tzinfo=datetime.timezone.utc)
SUMMARY = succeeded(run_id="20261128T001005Z-3f9a", date="2026-11-28", lines_written=2)


def test_a_run_is_appended_with_its_start_and_export_name(tmp_path):
    path = record_run(SUMMARY, export_name="daily", started_at=STARTED, home=tmp_path)
    assert path == tmp_path / "history" / "daily.jsonl"
    assert json.loads(path.read_text()) == {"started_at": "2026-11-28T00:10:05Z", "export_name": "daily", **SUMMARY.to_json()}
    failed = FailedSummary(exit_code=4, error="s3://krux-partners: access denied")
    tokyo = STARTED.astimezone(datetime.timezone(datetime.timedelta(hours=9)))
    record_run(failed, export_name="daily", started_at=tokyo, home=tmp_path)
    assert [json.loads(line) for line in read_history("daily", 10, home=tmp_path)] == [
        {"started_at": "2026-11-28T00:10:05Z", "export_name": "daily", **SUMMARY.to_json()},
        {"started_at": "2026-11-28T00:10:05Z", "export_name": "daily", **failed.to_json()},
    ]


def test_the_history_is_private_to_its_owner(tmp_path):
    path = record_run(SUMMARY, export_name="daily", started_at=STARTED, home=tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_exports_have_a_file_each_and_the_home_defaults_to_krux_export_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KRUX_EXPORT_HOME", str(tmp_path / "home"))
    record_run(SUMMARY, export_name="a", started_at=STARTED)
    record_run(SUMMARY, export_name="b", started_at=STARTED)
    assert history_file("a") == tmp_path / "home" / "history" / "a.jsonl"
    assert sorted(p.name for p in (tmp_path / "home" / "history").iterdir()) == ["a.jsonl", "b.jsonl"]


def test_reading_gives_the_last_runs_oldest_first_and_nothing_when_there_is_no_file(tmp_path):
    for number in range(5):
        record_run(succeeded(lines_written=number), export_name="daily", started_at=STARTED, home=tmp_path)
    assert [json.loads(line)["lines_written"] for line in read_history("daily", 3, home=tmp_path)] == [2, 3, 4]
    assert read_history("other", 3, home=tmp_path) == []


def test_past_the_trim_mark_only_the_newest_runs_are_kept(tmp_path):
    for number in range(1, 13):
        record_run(succeeded(lines_written=number), export_name="daily", started_at=STARTED, home=tmp_path,
                   keep=5, trim_at=8)
    # The 9th run made 9 lines, over 8: runs 5-9 were kept; 10, 11 and 12 came after.
    assert [json.loads(line)["lines_written"] for line in read_history("daily", 100, home=tmp_path)] == list(range(5, 13))
    assert stat.S_IMODE(history_file("daily", tmp_path).stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "history").iterdir()] == ["daily.jsonl"]  # no temporary file left


def test_the_defaults_keep_ten_thousand_runs():
    assert (KEEP_RUNS, TRIM_AT_RUNS) == (10_000, 11_000)


def _append_many(home, worker, count, keep, trim_at):
    padding = "x" * 5_000  # longer than PIPE_BUF: no atomic-write guarantee beyond the lock
    for number in range(count):
        record_run(succeeded(run_id=f"w{worker}", lines_written=number, object_uri=padding), export_name="daily",
                   started_at=STARTED, home=home, keep=keep, trim_at=trim_at)


def _run_concurrently(home, keep, trim_at, workers=4, count=100):
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_many, args=(home, w, count, keep, trim_at)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * workers
    return [json.loads(line) for line in read_history("daily", 10 * workers * count, home=home)]


def test_concurrent_runs_never_interleave_or_lose_a_line(tmp_path):
    runs = _run_concurrently(tmp_path, keep=10_000, trim_at=11_000)
    assert sorted((run["run_id"], run["lines_written"]) for run in runs) == [(f"w{w}", n) for w in range(4) for n in range(100)]


def test_concurrent_runs_while_the_file_is_trimmed_keep_the_newest_lines_whole(tmp_path):
    """What is kept is the newest lines of all: for each worker, its last runs without a gap."""
    runs = _run_concurrently(tmp_path, keep=60, trim_at=80)
    assert 60 <= len(runs) <= 80
    for worker in range(4):
        numbers = [run["lines_written"] for run in runs if run["run_id"] == f"w{worker}"]
        assert numbers == list(range(100 - len(numbers), 100))
    assert runs[-1]["lines_written"] == 99


@pytest.mark.parametrize("count", [0, 1])
def test_a_blank_or_missing_history_reads_as_no_runs(tmp_path, count):
    path = tmp_path / "history" / "daily.jsonl"
    path.parent.mkdir()
    path.write_text("\n" * count)
    assert read_history("daily", 5, home=tmp_path) == []
