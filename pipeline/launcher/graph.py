"""`build_pipeline`: the export's Beam graph, built from plain arguments and not run.

    tables or query → batches → ExportBatches (as in `WriteToKrux`): CheckRecords →
    (GroupByUser | FormatLines) → WriteShards → CombineReports → PublishExport → summary

The launcher adds only what a launcher needs: its plan of read tasks from the footers,
progress and the local spill; publishing happens inside the pipeline, as for any user of
`WriteToKrux`.
"""

import dataclasses

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.krux.lines import LineRules
from pipeline.launcher.beam_options import is_local_runner
from pipeline.launcher.tunables import Tunables
from pipeline.sources.query import QUERY_TABLE, Query
from pipeline.sources.tables import Table
from transforms.progress import ProgressChannel
from transforms.query import ReadQuery
from transforms.read import ReadTables
from transforms.rejects import RejectsTarget
from transforms.write import ExportBatches, ExportTarget


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What the graph needs beyond the settings: what to read, and where and as which run to publish."""

    tables: list[Table]
    target: ExportTarget
    tunables: Tunables = Tunables()
    query: Query | None = None  # the source instead of the tables, when the run has a query
    progress: ProgressChannel | None = None  # workers' progress, on local runners (launcher.progress)
    spill_dir: str | None = None  # local directory for the grouping's shuffle (local runners)
    rejects: RejectsTarget | None = None  # where invalid rows go (--rejects), if anywhere

    @property
    def table_names(self) -> tuple[str, ...]:
        return (QUERY_TABLE,) if self.query else tuple(t.name for t in self.tables)


def build_pipeline(settings, plan: ExportPlan, options: PipelineOptions) -> beam.Pipeline:
    p = beam.Pipeline(options=options)
    if plan.query:
        rules = plan.query.rules
        spread = not is_local_runner(options)  # a local runner holds a shuffle in memory
        batches = p | "ReadQuery" >> ReadQuery(plan.query, spread=spread, progress=plan.progress)
        rows = None  # unknown until the query runs
    else:
        rules = LineRules(settings.user_column, settings.segment_column, settings.segment_attribute)
        batches = p | "ReadTables" >> ReadTables(
            [task for table in plan.tables for task in table.tasks], progress=plan.progress
        )
        rows = sum(t.rows for t in plan.tables)
    tunables = plan.tunables
    batches | "ExportBatches" >> ExportBatches(
        plan.target,
        rules,
        tables=plan.table_names,
        group_by_user=settings.group_by_user,
        skip_invalid_records=settings.skip_invalid_records,
        allow_empty=settings.allow_empty,
        max_drop=settings.max_drop,
        rows=rows,
        rejects=plan.rejects,
        tell_launcher=True,
        progress=plan.progress,
        spill_dir=plan.spill_dir,
        shard_target_bytes=tunables.shard_target_bytes,
        min_part_bytes=tunables.min_part_bytes,
        group_partitions=tunables.group_partitions,
        max_values_per_user=settings.max_values_per_user,
        rejects_part_bytes=tunables.rejects_part_bytes,
    )
    return p
