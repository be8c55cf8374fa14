"""The export's Beam counters: their namespace and names, and reading them from a result.

Runner UIs (Dataflow, Flink) show them while a job runs. They are for watching a job only:
the run's summary comes from the manifest, which counts exactly what the published shards hold,
whereas counters may count a retried bundle twice.
"""

from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter

__all__ = [
    "INVALID_ROWS",
    "LINES_WRITTEN",
    "NAMESPACE",
    "ROWS_READ",
    "SHARDS_WRITTEN",
    "SHARD_BYTES",
    "counter",
    "query_counters",
]

NAMESPACE = "krux_export"
ROWS_READ = "rows_read"
"""Per table: `rows_read.segment_a`."""
INVALID_ROWS = "invalid_rows"
"""Per reason: `invalid_rows.missing_user_id`."""
LINES_WRITTEN = "lines_written"
SHARDS_WRITTEN = "shards_written"
SHARD_BYTES = "shard_bytes"


def counter(name: str, qualifier: str | None = None):
    """The counter `name` (or `name.qualifier`) in the export's namespace."""
    return Metrics.counter(NAMESPACE, f"{name}.{qualifier}" if qualifier is not None else name)


def query_counters(result) -> dict[str, int]:
    """Every counter of the export in a `PipelineResult`, by name (attempted values)."""
    found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    totals: dict[str, int] = {}
    for item in found:
        value = item.attempted if item.attempted is not None else item.committed
        totals[item.key.metric.name] = totals.get(item.key.metric.name, 0) + (value or 0)
    return totals
