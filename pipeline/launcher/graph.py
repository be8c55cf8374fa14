"""`build_pipeline`: the export's Beam graph, built from plain arguments and not run.

    tables or query → batches → CheckRecords → (GroupByUser | FormatLines) → WriteShards → staging
                                   ↘ invalid rows → WriteRejects
    every step's RunReport → CombineReports → manifest in staging
"""

import dataclasses

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.krux.grouping import plan_partitions
from pipeline.krux.lines import LineRules
from pipeline.launcher.beam_options import is_local_runner
from pipeline.launcher.tunables import Tunables
from pipeline.sources.query import Query
from pipeline.sources.tables import Table
from pipeline.storage.stores import StoreSpec
from transforms.check import CheckRecords, FormatLines, StopSignal
from transforms.group import GroupByUser
from transforms.manifest import CombineReports, WriteManifest
from transforms.progress import ProgressChannel
from transforms.query import ReadQuery
from transforms.read import ReadTables
from transforms.rejects import RejectsTarget, WriteRejects
from transforms.shards import WriteShards

SHARDS_DIR = "shards/"
MANIFEST_NAME = "manifest.json"
INVALID_ROW_NAME = "stop/invalid_row.txt"  # the first invalid row's reason, when it stops the run


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """What the graph needs beyond the settings: where to stage, under which run id."""

    tables: list[Table]
    store_spec: StoreSpec  # the export's root
    staging: str  # key prefix of this run's staging, ending in "/"
    run_id: str
    tunables: Tunables = Tunables()
    query: Query | None = None  # the source instead of the tables, when the run has a query
    progress: ProgressChannel | None = None  # workers' progress, on local runners (launcher.progress)
    spill_dir: str | None = None  # local directory for the grouping's shuffle (local runners)
    rejects: RejectsTarget | None = None  # where invalid rows go (--rejects), if anywhere


def build_pipeline(settings, plan: ExportPlan, options: PipelineOptions) -> beam.Pipeline:
    keep_invalid = plan.rejects is not None

    p = beam.Pipeline(options=options)
    if plan.query:
        rules = plan.query.rules
        spread = not is_local_runner(options)  # a local runner holds a shuffle in memory
        batches = p | "ReadQuery" >> ReadQuery(plan.query, spread=spread, progress=plan.progress)
    else:
        rules = LineRules(settings.user_column, settings.segment_column, settings.segment_attribute)
        batches = p | "ReadTables" >> ReadTables(
            [task for table in plan.tables for task in table.tasks], progress=plan.progress
        )
    stop = None if settings.skip_invalid_records else StopSignal(plan.store_spec, plan.staging + INVALID_ROW_NAME)
    checked = batches | "CheckRecords" >> CheckRecords(rules, keep_invalid=keep_invalid, stop=stop)
    if settings.group_by_user:
        rows = None if plan.query else sum(t.rows for t in plan.tables)  # a query's: unknown until run
        partitions = plan.tunables.group_partitions or plan_partitions(rows)
        to_lines = GroupByUser(rules.segment_attribute, partitions=partitions, spill_dir=plan.spill_dir,
                               max_values_per_user=settings.max_values_per_user)
    else:
        to_lines = FormatLines(rules.segment_attribute)
    shard_reports = (
        checked.valid
        | "ToLines" >> to_lines
        | "WriteShards"
        >> WriteShards(
            plan.store_spec,
            plan.staging + SHARDS_DIR,
            settings.compression,
            target_bytes=plan.tunables.shard_target_bytes,
            min_tail_bytes=plan.tunables.min_part_bytes,
            progress=plan.progress,
        )
    )
    reports = [checked[CheckRecords.REPORTS], shard_reports]
    if keep_invalid:
        write_rejects = WriteRejects(plan.rejects, part_bytes=plan.tunables.rejects_part_bytes)
        reports.append(checked[CheckRecords.INVALID_ROWS] | "WriteRejects" >> write_rejects)
    (
        tuple(reports)
        | "CombineReports" >> CombineReports()
        | "WriteManifest" >> WriteManifest(plan.store_spec, plan.staging + MANIFEST_NAME)
    )
    return p
