"""`CountUsersOnSeveralLines` on TestPipeline: users that the ungrouped mode writes on more than one line."""

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.krux.lines import LineRules
from pipeline.krux.report import RunReport
from pipeline.sources.files import TableBatch
from transforms.check import CheckRecords
from tests.summaries import succeeded
from transforms.repeated_users import CountUsersOnSeveralLines

RULES = LineRules("user_id", "td_segment", "segment")


def batch(table, **columns):
    return TableBatch(table, 1, pa.RecordBatch.from_pydict(columns))


def test_users_on_several_valid_lines_across_tables_and_batches_are_counted_once_each():
    batches = [
        # uid1 twice in one batch; " uid2 " is uid2 once stripped; the empty user is invalid, not a line.
        batch("segment_a", user_id=["uid1", "uid1", " uid2 ", ""], td_segment=["a", "b", "c", "d"]),
        batch("segment_b", user_id=["uid2", "uid3", "uid4"], td_segment=["e", "f", "g^h"]),
        batch("segment_c", user_id=["uid4", "uid5"], td_segment=["i", "j"]),  # uid4's other row was invalid
    ]
    with BeamTestPipeline(runner="FnApiRunner") as p:
        checked = p | beam.Create(batches) | CheckRecords(RULES, keep_invalid=False)
        report = checked.valid | CountUsersOnSeveralLines()
        assert_that(
            report | beam.Map(lambda r: (r.users_on_several_lines, r.users_on_several_lines_estimated)),
            equal_to([(2, False)]),  # uid1 and uid2
        )


def test_no_rows_count_no_users():
    with BeamTestPipeline(runner="FnApiRunner") as p:
        checked = p | beam.Create([], reshuffle=False) | CheckRecords(RULES, keep_invalid=False)
        report = checked.valid | CountUsersOnSeveralLines()
        assert_that(report | beam.Map(lambda r: r.users_on_several_lines), equal_to([0]))


def test_beyond_its_capacity_the_count_is_marked_as_an_estimate():
    users = [f"u{n}" for n in range(3_000)]
    batches = [batch("segment_a", user_id=users, td_segment=["s"] * 3_000),
               batch("segment_b", user_id=users[:1_000], td_segment=["t"] * 1_000)]
    with BeamTestPipeline(runner="FnApiRunner") as p:
        checked = p | beam.Create(batches) | CheckRecords(RULES, keep_invalid=False)
        report = checked.valid | CountUsersOnSeveralLines(capacity=500)
        assert_that(
            report | beam.Map(lambda r: (700 < r.users_on_several_lines < 1_300, r.users_on_several_lines_estimated)),
            equal_to([(True, True)]),  # 1,000 users on two lines, estimated from a 500-user sample
        )


def test_the_count_travels_in_the_manifests_report_and_reaches_the_summary_only_when_there_are_any():
    counted = RunReport(users_on_several_lines=3, users_on_several_lines_estimated=True)
    merged = RunReport.from_json(RunReport(lines=5).merge(counted).to_json())
    assert (merged.users_on_several_lines, merged.users_on_several_lines_estimated, merged.lines) == (3, True, 5)
    assert succeeded(users_on_several_lines=3).to_json()["users_on_several_lines"] == 3
    assert "users_on_several_lines" not in succeeded(users_on_several_lines=0).to_json()
