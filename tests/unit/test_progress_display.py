"""Progress: the workers' channel (records in files) and what the launcher shows from it."""

import io
import os
import time

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.launcher.progress import ProgressDisplay, RunProgress
from pipeline.sources.files import ReadTask
from transforms.progress import Progress, ProgressChannel


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_reader_sums_every_writers_records_once(tmp_path):
    channel = ProgressChannel(str(tmp_path))
    reader, first, second = channel.reader(), channel.writer(), channel.writer()
    first.add(rows=65_536)
    second.add(rows=1_000)
    assert reader.read() == Progress(rows=66_536, shards=0)
    first.add(shards=1)
    second.add(rows=24)
    assert reader.read() == Progress(rows=66_560, shards=1)
    assert reader.read() == Progress(rows=66_560, shards=1)  # nothing new: nothing counted twice
    first.close()
    second.close()


def test_a_record_still_being_written_is_counted_once_complete(tmp_path):
    reader = ProgressChannel(str(tmp_path)).reader()
    path = tmp_path / "123-abc.progress"
    path.write_bytes(b"100 0\n20")
    assert reader.read() == Progress(rows=100)
    with open(path, "ab") as handle:
        handle.write(b"0 2\n")
    assert reader.read() == Progress(rows=300, shards=2)


def test_a_writer_whose_directory_is_gone_drops_records_without_failing(tmp_path):
    writer = ProgressChannel(str(tmp_path / "removed")).writer()
    writer.add(rows=10)
    writer.add(shards=1)
    writer.close()
    assert not os.path.exists(tmp_path / "removed")


def test_a_plain_line_gives_rows_of_the_total_percent_shards_elapsed_and_time_left():
    display = ProgressDisplay(10_000_000, stream=io.StringIO())
    # 21 s for 3,276,800 rows: the 6,723,200 left take 21 * 6,723,200 / 3,276,800 = 43.1 s.
    assert display.describe(Progress(3_276_800, 12), 21.0) == (
        "3,276,800 of 10,000,000 rows read (32%), 12 shards written, 0:21 elapsed, about 0:43 left"
    )
    assert display.describe(Progress(10_000_000, 40), 3723.0) == (
        "10,000,000 of 10,000,000 rows read (100%), 40 shards written, 1:02:03 elapsed"
    )


def test_without_a_total_a_plain_line_gives_rows_without_percent_or_time_left():
    display = ProgressDisplay(None, stream=io.StringIO())
    assert display.describe(Progress(1_500, 0), 5.0) == "1,500 rows read, 0 shards written, 0:05 elapsed"


def test_off_a_terminal_lines_come_at_each_interval_and_a_last_one_at_the_end():
    stream = io.StringIO()
    progress = [Progress(0, 0)]
    display = ProgressDisplay(1_000, stream=stream, interval_s=0.05).start(lambda: progress[-1])
    time.sleep(0.2)
    progress.append(Progress(1_000, 3))
    display.stop()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3
    assert all(line.startswith("krux-export: ") for line in lines)
    assert lines[0].startswith("krux-export: 0 of 1,000 rows read (0%), 0 shards written, 0:00 elapsed")
    assert lines[-1].startswith("krux-export: 1,000 of 1,000 rows read (100%), 3 shards written")
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_a_live_bar_shows_percent_rows_and_shards():
    terminal = _Terminal()
    display = ProgressDisplay(10_000_000, stream=terminal, interval_s=0.05).start(lambda: Progress(3_300_000, 12))
    time.sleep(0.2)
    display.stop()
    last = terminal.getvalue().split("\r")[-1]
    assert " 33%" in last and "3.30M/10.0M" in last and "12 shards written" in last


def test_a_source_with_nothing_to_say_keeps_the_last_numbers():
    stream = io.StringIO()
    answers = iter([Progress(500, 1), None, None])
    display = ProgressDisplay(1_000, stream=stream, interval_s=0.05).start(lambda: next(answers, None))
    time.sleep(0.2)
    display.stop()
    assert stream.getvalue().splitlines()[-1].startswith("krux-export: 500 of 1,000 rows read (50%), 1 shard written")


def test_a_run_gets_a_channel_on_local_runners_only_and_none_when_quiet():
    tasks = [ReadTask("a", "a.parquet", "parquet", (0,), 1, rows=10)]
    local = PipelineOptions(["--runner=FnApiRunner"])
    with RunProgress(tasks, local, enabled=True) as progress:
        directory = progress.channel.directory
        assert os.path.isdir(directory)
    assert not os.path.exists(directory)  # removed with the run
    with RunProgress(tasks, PipelineOptions(["--runner=DataflowRunner"]), enabled=True) as progress:
        assert progress.channel is None  # remote workers cannot reach a local directory
    with RunProgress(tasks, local, enabled=False) as progress:
        assert progress.channel is None


def test_the_total_is_the_footers_rows_and_unknown_with_a_csv_table():
    parquet = [
        ReadTask("a", "a.parquet", "parquet", (0,), 1, rows=10),
        ReadTask("a", "a.parquet", "parquet", (1,), 11, rows=5),
    ]
    csv = ReadTask("c", "c.csv", "csv", first_row=1, columns=("user_id", "td_segment"))
    options = PipelineOptions(["--runner=FnApiRunner"])
    with RunProgress(parquet, options, enabled=True) as progress:
        assert progress.total_rows == 15
    with RunProgress([*parquet, csv], options, enabled=True) as progress:
        assert progress.total_rows is None
