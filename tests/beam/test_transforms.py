"""The pipeline's transforms on TestPipeline, with expected values written from SPEC by hand."""

import gzip
import json
import pickle

import apache_beam as beam
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.krux.grouping import group_lines, to_triples
from pipeline.krux.lines import LineRules, normalize
from pipeline.krux.report import RunReport, StagedObject
from pipeline.sources.files import ReadTask, TableBatch
from pipeline.storage.stores import StoreSpec
from transforms.check import STOPPED, CheckRecords, FormatLines, StopSignal
from transforms.group import GroupByUser, line_blocks
from transforms.manifest import CombineReports
from transforms.read import ReadTables
from transforms.shards import TAIL_KEYS, WriteShards, lines_buffer

RULES = LineRules("user_id", "td_segment", "segment")


def make_pipeline():
    return BeamTestPipeline(runner="FnApiRunner")


def lines_of(arrays):
    """A matcher's view of line arrays: every line, without its `\\n`."""
    return sorted(line for array in arrays for line in bytes(lines_buffer(array)).decode().splitlines())


def batch(table, first_row, **columns):
    return TableBatch(table, first_row, pa.RecordBatch.from_pydict(columns))


def test_read_tables_reads_parquet_row_groups_and_csv_with_row_numbers(tmp_path):
    pq.write_table(pa.table({"user_id": ["a", "b", "c"], "td_segment": ["1", "2", "3"]}), tmp_path / "t.parquet",
                   row_group_size=2)
    pacsv.write_csv(pa.table({"user_id": ["x"], "td_segment": ["007"]}), tmp_path / "c.csv")
    tasks = [
        ReadTask("t", str(tmp_path / "t.parquet"), "parquet", (0,), 1),
        ReadTask("t", str(tmp_path / "t.parquet"), "parquet", (1,), 3),
        ReadTask("c", str(tmp_path / "c.csv"), "csv", first_row=1, columns=("user_id", "td_segment")),
    ]
    with make_pipeline() as p:
        rows = p | ReadTables(tasks) | beam.FlatMap(
            lambda b: [(b.table, b.first_row + i, r["user_id"], r["td_segment"]) for i, r in enumerate(b.batch.to_pylist())]
        )
        # CSV columns are read as strings: "007" keeps its zeros.
        assert_that(rows, equal_to([("t", 1, "a", "1"), ("t", 2, "b", "2"), ("t", 3, "c", "3"), ("c", 1, "x", "007")]))


def test_check_records_routes_valid_rows_invalid_rows_and_counts():
    batches = [
        batch("segment_a", 1, user_id=["uid1", "", "uid3"], td_segment=["seg1,seg2", "s", "a^b"],
              firstname=["Britty", "X", "Y"]),
        batch("segment_b", 1, user_id=["uid2"], td_segment=["seg3"]),
    ]
    with make_pipeline() as p:
        checked = p | beam.Create(batches) | CheckRecords(RULES, keep_invalid=True)
        lines = checked.valid | FormatLines("segment") | beam.combiners.ToList() | beam.Map(lines_of)
        assert_that(lines, equal_to([["uid1^segment:seg1,seg2;firstname:Britty", "uid2^segment:seg3"]]), label="lines")
        invalid = checked[CheckRecords.INVALID_ROWS] | beam.FlatMap(
            lambda i: zip([i.table] * len(i.reasons), i.reasons.to_pylist(), i.batch.column("user_id").to_pylist())
        )
        assert_that(invalid, equal_to([("segment_a", "missing_user_id", ""), ("segment_a", "reserved_character", "uid3")]),
                    label="invalid")
        report = (checked[CheckRecords.REPORTS],) | CombineReports()
        assert_that(
            report | beam.Map(lambda r: (r.rows, r.invalid)),
            equal_to([({"segment_a": 3, "segment_b": 1}, {"missing_user_id": 1, "reserved_character": 1})]),
            label="report",
        )


def test_without_skip_the_first_invalid_row_fails_the_run_and_tells_the_other_workers(tmp_path):
    stop = StopSignal(StoreSpec(kind="local", local_root=str(tmp_path)), "staging/stop/invalid_row.txt")
    batches = [batch("segment_a", 101, user_id=["uid1", "uid2", "uid3"], td_segment=["s", "a;b", "c^d"])]
    reason = ("table segment_a row 102: reserved_character in column td_segment (value 'a;'… (3 characters)); "
              "--skip-invalid-records drops and counts invalid rows")
    with pytest.raises(Exception, match=reason.replace("(", r"\(").replace(")", r"\)")):
        with make_pipeline() as p:
            p | beam.Create(batches) | CheckRecords(RULES, keep_invalid=False, stop=stop)
    assert (tmp_path / "staging" / "stop" / "invalid_row.txt").read_text() == reason


def test_a_worker_stops_at_its_next_batch_once_another_found_an_invalid_row(tmp_path):
    stop = StopSignal(StoreSpec(kind="local", local_root=str(tmp_path)), "invalid_row.txt")
    valid = [batch("segment_b", 1, user_id=["uid1"], td_segment=["s"])]
    with make_pipeline() as p:  # no signal: valid rows pass
        checked = p | beam.Create(valid) | CheckRecords(RULES, keep_invalid=False, stop=stop)
        assert_that(checked.valid | beam.Map(lambda c: c.table), equal_to(["segment_b"]))
    (tmp_path / "invalid_row.txt").write_text("table segment_a row 7: missing_user_id ...")
    with pytest.raises(Exception, match=STOPPED):
        with make_pipeline() as p:
            p | beam.Create(valid) | CheckRecords(RULES, keep_invalid=False, stop=stop)


def test_group_by_user_unites_a_users_rows_across_tables_sorted():
    batches = [
        batch("segment_a", 1, user_id=["u1", "u2"], td_segment=["b,a", "x"], city=["Paris", ""]),
        batch("segment_b", 1, user_id=["u1", "u1"], td_segment=["c,a", "B"], city=["Berlin", "Paris"], age=[None, 40]),
    ]
    with make_pipeline() as p:
        checked = p | beam.Create(batches) | CheckRecords(RULES, keep_invalid=False)
        lines = checked.valid | GroupByUser("segment", partitions=4) | beam.combiners.ToList() | beam.Map(lines_of)
        # Values by code point ('B' < 'a'), attributes by name after segment, repeats dropped.
        assert_that(lines, equal_to([["u1^segment:B,a,b,c;age:40;city:Berlin,Paris", "u2^segment:x"]]))


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_write_shards_rolls_over_and_the_shards_concatenate_to_all_lines(tmp_path, compression):
    arrays = [pa.array([f"user{i}^segment:s{i}\n" for i in range(j * 100, j * 100 + 100)]) for j in range(5)]
    spec = StoreSpec(kind="local", local_root=str(tmp_path))
    with make_pipeline() as p:
        reports = p | beam.Create(arrays) | WriteShards(spec, "staging/", compression, target_bytes=500)
        combined = (reports,) | CombineReports()
        assert_that(combined | beam.Map(lambda r: (r.lines, len(r.shards) > 1)), equal_to([(500, True)]))
    files = sorted((tmp_path / "staging").iterdir())
    data = b"".join(f.read_bytes() for f in files)
    text = gzip.decompress(data) if compression == "gzip" else data
    assert sorted(text.decode().splitlines()) == sorted(f"user{i}^segment:s{i}" for i in range(500))


def test_run_report_survives_json_and_adds_up():
    first = RunReport(rows={"a": 2}, invalid={"no_attributes": 1}, rejects_parts=[StagedObject("p1", 5)])
    second = RunReport(rows={"a": 1, "b": 4}, invalid={"no_attributes": 2}, shards=[StagedObject("k", 10)], lines=3,
                       rejects_parts=[StagedObject("p2", 7)])
    merged = RunReport.from_json(first.merge(second).to_json())
    assert merged.rows == {"a": 3, "b": 4} and merged.invalid == {"no_attributes": 3}
    assert merged.shards == [StagedObject("k", 10)] and merged.lines == 3
    assert [(part.key, part.bytes) for part in merged.rejects_parts] == [("p1", 5), ("p2", 7)]
    manifest = json.loads(merged.to_json())
    assert manifest["lines"] == 3
    assert manifest["shards"] == [["k", 10]] and manifest["rejects_parts"] == [["p1", 5], ["p2", 7]]


GROUPING_BATCHES = [
    batch("segment_a", 1, user_id=[f"u{i % 37}" for i in range(300)], td_segment=[f"s{i % 11},t{i % 5}" for i in range(300)],
          city=[f"c{i % 3}" for i in range(300)]),
    batch("segment_b", 1, user_id=[f"u{i}" for i in range(0, 60, 2)], td_segment=["z"] * 30),
]


def expected_grouped_lines():
    """The same lines from the Arrow grouping alone, without Beam or partitions."""
    rules_batches = [normalize(b.batch, RULES) for b in GROUPING_BATCHES]
    triples = pa.concat_tables(to_triples(rows, "segment") for rows in rules_batches)
    return sorted(group_lines(triples, "segment").to_pylist())


@pytest.mark.parametrize("pass_triples", [10**6, 50])
def test_group_by_user_through_spilled_runs_gives_the_lines_of_beams_shuffle(tmp_path, pass_triples):
    spill = tmp_path / "spill"
    spill.mkdir()
    with make_pipeline() as p:
        checked = p | beam.Create(GROUPING_BATCHES) | CheckRecords(RULES, keep_invalid=False)
        shuffled = checked.valid | "Shuffled" >> GroupByUser("segment", partitions=3, pass_triples=pass_triples)
        spilled = checked.valid | "Spilled" >> GroupByUser(
            "segment", partitions=3, spill_dir=str(spill), pass_triples=pass_triples
        )
        expected = [line.rstrip("\n") for line in expected_grouped_lines()]
        for name, lines in (("shuffled", shuffled), ("spilled", spilled)):
            assert_that(lines | f"{name}All" >> beam.combiners.ToList() | f"{name}Lines" >> beam.Map(lines_of),
                        equal_to([expected]), label=f"{name}Check")
    runs = list(spill.iterdir())
    assert runs and all(run.name.endswith(".arrows") for run in runs)  # the triples went to disk


def test_line_blocks_cut_lines_into_arrays_of_about_the_block_size_that_pickle_small():
    lines = pa.array([f"user{i}^segment:{'x' * (i % 50)}\n" for i in range(1000)], pa.large_string())

    blocks = list(line_blocks(lines.slice(10), block_bytes=2000))

    assert len(blocks) > 10
    assert all(len(bytes(lines_buffer(b))) <= 2000 for b in blocks)
    assert all(len(pickle.dumps(b)) < 2000 + 1000 for b in blocks)  # Beam pickles a sample of them
    assert b"".join(bytes(lines_buffer(b)) for b in blocks) == bytes(lines_buffer(lines.slice(10)))
    assert [len(b) for b in line_blocks(pa.array(["x" * 5000 + "\n", "y\n"]), block_bytes=100)] == [1, 1]
    assert list(line_blocks(pa.array([], pa.string()))) == []


def write_in_eight_bundles(tmp_path, compression, min_tail_bytes):
    """4,000 lines through WriteShards on eight workers (a bundle each); the shard files."""
    arrays = [pa.array([f"user{i}^segment:s{i}\n" for i in range(j * 100, j * 100 + 100)]) for j in range(40)]
    spec = StoreSpec(kind="local", local_root=str(tmp_path))
    options = PipelineOptions(["--direct_num_workers=8", "--direct_running_mode=multi_threading"])
    with BeamTestPipeline(runner="FnApiRunner", options=options) as p:
        reports = (p | beam.Create(arrays) | beam.Reshuffle()
                   | WriteShards(spec, "staging/", compression, target_bytes=10**6, min_tail_bytes=min_tail_bytes))
        combined = (reports,) | CombineReports()
        assert_that(combined | beam.Map(lambda r: r.lines), equal_to([4000]))
    files = sorted((tmp_path / "staging").iterdir())
    data = b"".join(f.read_bytes() for f in files)
    text = gzip.decompress(data) if compression == "gzip" else data
    assert sorted(text.decode().splitlines()) == sorted(f"user{i}^segment:s{i}" for i in range(4000))
    return files


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_bundle_tails_are_merged_into_at_most_a_few_small_shards(tmp_path, compression):
    # Every bundle's tail is under the minimum part size (1 MB here): they are gathered.
    assert 1 <= len(write_in_eight_bundles(tmp_path, compression, min_tail_bytes=10**6)) <= TAIL_KEYS


def test_a_bundle_tail_of_the_minimum_part_size_is_written_where_it_is(tmp_path):
    # The same run with no tail small enough to gather: one shard per bundle, more than TAIL_KEYS.
    assert len(write_in_eight_bundles(tmp_path, "gzip", min_tail_bytes=0)) > TAIL_KEYS
