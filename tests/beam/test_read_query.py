"""`ReadQuery` on TestPipeline: a query's result as `TableBatch`es, spread over workers or not."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.sources.query import plan_query
from transforms import metrics
from transforms.progress import Progress, ProgressChannel
from transforms.query import ReadQuery

QUERY = "SELECT 'u' || i AS user_id, 's' || (i % 3) AS td_segment, i AS visits FROM range(10) t(i) ORDER BY i"


@pytest.mark.parametrize("spread", [True, False], ids=["spread", "fused"])
def test_read_query_yields_the_result_in_numbered_batches(spread):
    query = plan_query(QUERY, "--query")
    with BeamTestPipeline(runner="FnApiRunner") as p:
        batches = p | ReadQuery(query, spread=spread, batch_rows=4)
        rows = batches | "Rows" >> beam.FlatMap(
            lambda b: [(b.table, b.first_row + i, row) for i, row in enumerate(b.batch.to_pylist())]
        )
        assert_that(rows, equal_to([
            ("query", i + 1, {"user_id": f"u{i}", "td_segment": f"s{i % 3}", "visits": i}) for i in range(10)
        ]))


@pytest.mark.parametrize("spread", [True, False], ids=["spread", "fused"])
def test_read_query_counts_its_rows_and_reports_them_as_progress(tmp_path, spread):
    channel = ProgressChannel(str(tmp_path))
    p = BeamTestPipeline(runner="FnApiRunner")
    _ = p | ReadQuery(plan_query(QUERY, "--query"), spread=spread, batch_rows=4, progress=channel)
    result = p.run()
    result.wait_until_finish()
    assert metrics.query_counters(result)[f"{metrics.ROWS_READ}.query"] == 10
    assert channel.reader().read() == Progress(rows=10, shards=0)  # three batches: 4 + 4 + 2
