"""`WriteToKrux`: rows into the day's Krux file, published inside the pipeline (SPEC §10).

    rows → BatchRows → CheckRecords → (GroupByUser | FormatLines) → WriteShards → staging
                           ↘ invalid rows → WriteRejects
    every step's RunReport → CombineReports → PublishExport, on one worker: check the report,
    merge the shards server-side into the day's object, remove what it replaces and the
    staging, and output the summary (SPEC §7)

The CLI's `run` builds the same graph after its own readers (`ExportBatches` after
`ReadTables` or `ReadQuery`), so both write, check and publish alike.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Mapping

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from pipeline.config.connections import load_connection
from pipeline.config.wording import plural
from pipeline.config.settings import (
    DEFAULT_BUCKET,
    DEFAULT_EXPORT_NAME,
    MAX_VALUES_PER_USER,
    RunSettings,
    check_client_name,
    parse_date,
)
from pipeline.errors import ConfigError, EmptyResultError, SchemaError, StorageError, UsageError
from pipeline.krux import layout
from pipeline.krux.grouping import plan_partitions
from pipeline.krux.lines import LineRules
from pipeline.krux.repeats import several_lines_warning
from pipeline.krux.summary import Summary
from pipeline.sources.files import BATCH_ROWS, TableBatch
from pipeline.sources.schema import check_columns
from pipeline.storage import publish
from pipeline.storage.multipart import MIN_PART_BYTES
from pipeline.storage.stores import ObjectInfo, StoreSpec
from transforms.check import CheckRecords, FormatLines, StopSignal
from transforms.group import GroupByUser
from transforms.manifest import CombineReports
from transforms.progress import ProgressChannel
from transforms.rejects import PART_TARGET_BYTES, RejectsTarget, WriteRejects, assemble_rejects
from transforms.repeated_users import CountUsersOnSeveralLines
from transforms.shards import SHARD_TARGET_BYTES, WriteShards

__all__ = ["ExportBatches", "ExportTarget", "WriteToKrux"]

log = logging.getLogger(__name__)

SHARDS_DIR = "shards/"
INVALID_ROW_NAME = "stop/invalid_row.txt"  # the first invalid row's reason, when it stops the run
LAUNCHER_DIR = "launcher/"
"""In staging, what the publishing step tells the CLI's launcher (kept until the launcher is done)."""
REJECTS_WRITTEN, PUBLISHED, SUMMARY = "rejects_written", "published", "summary.json"
INPUT_TABLE = "input"
"""The table name of `WriteToKrux`'s rows, in `rows_read` and in invalid-row messages."""
_CONNECTION_FIELDS = ("client_name", "access_key_id", "secret_access_key", "bucket", "region", "endpoint_url")


@dataclasses.dataclass(frozen=True)
class ExportTarget:
    """Where one run stages its shards and publishes the day's object; no secret (it travels to workers)."""

    store_spec: StoreSpec  # the export's root
    uploads_dir: str  # the day folders' parent within it: "uploads/", or "" under an output root
    export_name: str
    date: str  # YYYY-MM-DD
    run_id: str
    compression: str = "gzip"
    append: bool = False
    append_key: str | None = None  # names an append's object instead of the run id (SPEC §4)

    @property
    def staging(self) -> str:
        return layout.staging_dir(self.export_name, self.run_id)

    @property
    def day_dir(self) -> str:
        return layout.day_dir(self.uploads_dir, datetime.date.fromisoformat(self.date))

    @property
    def final_key(self) -> str:
        suffix = (self.append_key or self.run_id) if self.append else None
        return self.day_dir + layout.final_name(self.export_name, self.compression, suffix)

    @property
    def launcher_dir(self) -> str:
        return self.staging + LAUNCHER_DIR


class WriteToKrux(beam.PTransform):
    """Dicts (`user_id`, `td_segment`, then attributes in key order) or `pyarrow.RecordBatch`es
    into the day's Krux file; outputs one element, the run's summary dict (SPEC §7).

    `connection`: a connection name, resolved on each worker from its connections.yml (`env:`
    secrets read there), or a mapping of its fields whose keys are `env:VARNAME` references.
    Nothing secret is kept in the transform, so none reaches the pipeline's graph or options.
    """

    def __init__(
        self,
        *,
        connection: str | Mapping | None,
        date: str | datetime.date,
        export_name: str = DEFAULT_EXPORT_NAME,
        group_by_user: bool = False,
        skip_invalid_records: bool = False,
        compression: str = "gzip",
        append: bool = False,
        output_root: str | None = None,
        allow_empty: bool = False,
        max_drop: float | None = None,
        append_key: str | None = None,
        user_column: str = "user_id",
        segment_column: str = "td_segment",
        segment_attribute: str = "segment",
        batch_rows: int = BATCH_ROWS,
    ):
        super().__init__()
        if isinstance(date, datetime.datetime):
            date = date.astimezone(datetime.timezone.utc).date()  # the UTC day, as `run` takes it
        day = date if isinstance(date, datetime.date) else parse_date(str(date))
        settings = RunSettings(  # the CLI's own checks of each setting
            date=day, export_name=export_name, group_by_user=group_by_user,
            skip_invalid_records=skip_invalid_records, compression=compression, append=append,
            output_root=output_root, allow_empty=allow_empty, max_drop=max_drop, append_key=append_key,
            user_column=user_column,
            segment_column=segment_column, segment_attribute=segment_attribute,
        )
        store_spec, uploads_dir = export_root(connection, output_root)
        run_id = layout.new_run_id(datetime.datetime.now(datetime.timezone.utc))
        self._target = ExportTarget(
            store_spec, uploads_dir, settings.export_name, day.isoformat(), run_id, compression, append,
            append_key=settings.append_key,
        )
        self._rules = LineRules(user_column, segment_column, segment_attribute)
        self._settings = settings
        self._batch_rows = batch_rows

    def expand(self, rows):
        settings = self._settings
        return (
            rows
            | "BatchRows" >> beam.ParDo(_BatchRowsFn(INPUT_TABLE, self._rules, self._batch_rows))
            | "ExportBatches"
            >> ExportBatches(
                self._target,
                self._rules,
                tables=(INPUT_TABLE,),
                group_by_user=settings.group_by_user,
                skip_invalid_records=settings.skip_invalid_records,
                allow_empty=settings.allow_empty,
                max_drop=settings.max_drop,
                sweep=True,
            )
        )


def export_root(connection: str | Mapping | None, output_root: str | None) -> tuple[StoreSpec, str]:
    """The store holding the export's root, and the day folders' parent within it (SPEC §4)."""
    if isinstance(connection, Mapping):
        fields = dict(connection)
        unknown = sorted(set(fields) - set(_CONNECTION_FIELDS), key=str)
        if unknown:
            raise ConfigError(f"connection: unknown field {unknown[0]!r} (fields: {', '.join(_CONNECTION_FIELDS)})")
        keys = (fields.get("access_key_id"), fields.get("secret_access_key"))
        for name, value in zip(("access_key_id", "secret_access_key"), keys):
            if value is not None and not str(value).startswith("env:"):
                raise ConfigError(
                    f"connection: write {name} as env:VARNAME (set on the workers); "
                    "a key written here would travel inside the pipeline to every worker"
                )
        if (keys[0] is None) != (keys[1] is None):
            raise ConfigError("connection: give both access_key_id and secret_access_key, or neither")
        common = dict(region=fields.get("region"), endpoint_url=fields.get("endpoint_url"),
                      key_refs=keys if keys[0] is not None else None)
        client_name, bucket = fields.get("client_name"), fields.get("bucket")
    elif isinstance(connection, str):
        found = load_connection(connection)
        common = dict(region=found.region, endpoint_url=found.endpoint_url, connection=connection)
        client_name, bucket = found.client_name, found.bucket
    elif connection is None:
        common, client_name, bucket = {}, None, None  # the standard AWS credential chain
    else:
        raise ConfigError(f"connection: a connection name or a mapping of its fields, got {type(connection).__name__}")
    if output_root:
        return StoreSpec.from_uri(output_root, **common), ""
    if not client_name:
        raise ConfigError("connection: no client_name (or give output_root)")
    try:
        check_client_name(client_name)
    except UsageError as error:
        raise ConfigError(f"connection: {error}") from None
    return StoreSpec(kind="s3", bucket=bucket or DEFAULT_BUCKET, base=f"{client_name}/", **common), "uploads/"


class ExportBatches(beam.PTransform):
    """`TableBatch`es into the day's published object; outputs the summary dict (one element).

    `tables`: every table's name, reported in `rows_read` even when empty. `sweep`: remove
    what killed runs of the export left before publishing (the CLI sweeps before it starts).
    `progress` and `spill_dir` are the CLI's, on local runners; `tell_launcher` keeps, in
    staging, what the CLI's launcher reads after the run (what was published, the summary).
    """

    def __init__(
        self,
        target: ExportTarget,
        rules: LineRules,
        *,
        tables: tuple[str, ...] = (),
        group_by_user: bool = False,
        skip_invalid_records: bool = False,
        allow_empty: bool = False,
        max_drop: float | None = None,
        rows: int | None = None,
        rejects: RejectsTarget | None = None,
        sweep: bool = False,
        tell_launcher: bool = False,
        progress: ProgressChannel | None = None,
        spill_dir: str | None = None,
        shard_target_bytes: int = SHARD_TARGET_BYTES,
        min_part_bytes: int = MIN_PART_BYTES,
        group_partitions: int | None = None,
        max_values_per_user: int = MAX_VALUES_PER_USER,
        rejects_part_bytes: int = PART_TARGET_BYTES,
    ):
        super().__init__()
        self._target = target
        self._rules = rules
        self._group_by_user = group_by_user
        self._stop = None if skip_invalid_records else StopSignal(target.store_spec, target.staging + INVALID_ROW_NAME)
        self._rejects = rejects
        self._progress = progress
        self._spill_dir = spill_dir
        self._shard_target_bytes = shard_target_bytes
        self._min_part_bytes = min_part_bytes
        self._partitions = group_partitions or plan_partitions(rows)
        self._max_values_per_user = max_values_per_user
        self._rejects_part_bytes = rejects_part_bytes
        self._publish = _PublishFn(
            target, tuple(tables), allow_empty=allow_empty, max_drop=max_drop, rejects=rejects, sweep=sweep,
            tell_launcher=tell_launcher, min_part_bytes=min_part_bytes, started_at=time.time(),
        )

    def expand(self, batches):
        target, rules = self._target, self._rules
        checked = batches | "CheckRecords" >> CheckRecords(rules, keep_invalid=self._rejects is not None, stop=self._stop)
        if self._group_by_user:
            to_lines = GroupByUser(rules.segment_attribute, partitions=self._partitions, spill_dir=self._spill_dir,
                                   max_values_per_user=self._max_values_per_user)
        else:
            to_lines = FormatLines(rules.segment_attribute)
        write_shards = WriteShards(
            target.store_spec,
            target.staging + SHARDS_DIR,
            target.compression,
            target_bytes=self._shard_target_bytes,
            min_tail_bytes=self._min_part_bytes,
            progress=self._progress,
        )
        shard_reports = checked.valid | "ToLines" >> to_lines | "WriteShards" >> write_shards
        reports = [checked[CheckRecords.REPORTS], shard_reports]
        if not self._group_by_user:  # a user on two lines keeps only one in Salesforce: count them
            reports.append(checked.valid | "CountUsersOnSeveralLines" >> CountUsersOnSeveralLines())
        if self._rejects is not None:
            write_rejects = WriteRejects(self._rejects, part_bytes=self._rejects_part_bytes)
            reports.append(checked[CheckRecords.INVALID_ROWS] | "WriteRejects" >> write_rejects)
        return (
            tuple(reports)
            | "CombineReports" >> CombineReports()  # on one worker, once every shard is written
            | "PublishExport" >> beam.ParDo(self._publish)
        )


class _PublishFn(beam.DoFn):
    """The run's one `RunReport` → the rejects file, the day's object, the summary dict.

    The object is complete before anything is removed (`pipeline.storage.publish`); invalid
    rows without `skip_invalid_records` have already failed the pipeline (fail fast).
    """

    def __init__(self, target: ExportTarget, tables, *, allow_empty, max_drop, rejects, sweep, tell_launcher,
                 min_part_bytes, started_at):
        self._target = target
        self._tables = tables
        self._allow_empty = allow_empty
        self._max_drop = max_drop
        self._rejects = rejects
        self._sweep = sweep
        self._tell_launcher = tell_launcher
        self._min_part_bytes = min_part_bytes
        self._started_at = started_at

    def setup(self):
        self._store = self._target.store_spec.open(min_part_bytes=self._min_part_bytes)

    def process(self, report):
        target, store = self._target, self._store
        if not report.lines and not self._allow_empty:
            raise EmptyResultError("no valid lines to export (--allow-empty publishes an empty file)")
        if self._sweep:
            publish.sweep_leftovers(
                store, export_name=target.export_name, day_dir=target.day_dir, current_staging=target.staging
            )
        if self._rejects is not None:  # before the object: a failure here must leave nothing published
            rejects_store = self._rejects.store_spec.open(min_part_bytes=self._min_part_bytes)
            assemble_rejects(self._rejects, rejects_store, [ObjectInfo(key, size) for key, size in report.rejects_parts])
            self._tell(REJECTS_WRITTEN)
            log.info("%s written to %s", plural(sum(report.invalid.values()), "invalid row"), self._rejects.uri)
        log.info("publishing %s from %s to %s", plural(report.lines, "line"), plural(len(report.shards), "shard"),
                 store.uri(target.final_key))
        where = dict(final_key=target.final_key, day_dir=target.day_dir, export_name=target.export_name,
                     append=target.append, max_drop=self._max_drop, on_complete=lambda: self._tell(PUBLISHED))
        if report.lines:
            shards = [ObjectInfo(key, size) for key, size in report.shards]
            size, replaced = publish.publish(store, shards=shards, lines=report.lines, **where)
        else:
            size, replaced = publish.publish_empty(store, compression=target.compression, **where)
        self._remove_staging()
        if report.users_on_several_lines:
            log.warning(several_lines_warning(report.users_on_several_lines, report.users_on_several_lines_estimated))
        summary = Summary(
            run_id=target.run_id,
            date=target.date,
            object_uri=target.store_spec.uri(target.final_key),
            bytes=size,
            rows_read={**{name: 0 for name in self._tables}, **report.rows},
            lines_written=report.lines,
            invalid=dict(report.invalid),
            replaced=tuple(target.store_spec.uri(key) for key in replaced),
            duration_s=round(time.time() - self._started_at, 3),
            users_on_several_lines=report.users_on_several_lines,
        ).to_json()
        if self._tell_launcher:
            store.put(target.launcher_dir + SUMMARY, json.dumps(summary).encode())
        yield summary

    def _tell(self, milestone: str) -> None:
        """Leaves `milestone` for the CLI's launcher: what an interrupted run must still report."""
        if self._tell_launcher:
            self._store.put(self._target.launcher_dir + milestone, b"")

    def _remove_staging(self) -> None:
        """A failed cleanup must not fail a published run: the next run's sweep removes it."""
        keep = self._target.launcher_dir if self._tell_launcher else None
        try:
            publish.remove_staging(self._store, self._target.staging, keep=keep)
        except StorageError as error:
            log.warning("staging %s left for the next run to remove: %s", self._store.uri(self._target.staging), error)


class _BatchRowsFn(beam.DoFn):
    """Dicts into `TableBatch`es of up to `batch_rows` rows; RecordBatches (and Tables) as they are.

    A batch's columns are the union of its dicts' keys, in the order they first appear.
    Every batch's columns are checked as a table's are (SPEC §2).
    """

    def __init__(self, table: str, rules: LineRules, batch_rows: int):
        self._table = table
        self._rules = rules
        self._batch_rows = batch_rows

    def start_bundle(self):
        self._rows = []

    def process(self, element):
        if isinstance(element, (pa.RecordBatch, pa.Table)):  # a Table: as `ReadFromParquetBatched` gives
            for batch in [element] if isinstance(element, pa.RecordBatch) else element.to_batches():
                if batch.num_rows:
                    yield self._checked(batch)
            return
        if not isinstance(element, Mapping):
            raise SchemaError(
                f"table {self._table}: WriteToKrux takes dicts or pyarrow.RecordBatches, got {type(element).__name__}"
            )
        self._rows.append(element)
        if len(self._rows) >= self._batch_rows:
            yield self._checked(self._take_batch())

    def finish_bundle(self):
        if self._rows:
            yield WindowedValue(self._checked(self._take_batch()), 0, [GlobalWindow()])

    def _take_batch(self) -> pa.RecordBatch:
        rows, self._rows = self._rows, []
        names = list(dict.fromkeys(name for row in rows for name in row))
        columns = []
        for name in names:
            try:
                columns.append(pa.array([row.get(name) for row in rows]))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise SchemaError(f"table {self._table}: column {name}: {error}") from None
        return pa.RecordBatch.from_arrays(columns, names=names)

    def _checked(self, batch: pa.RecordBatch) -> TableBatch:
        check_columns(self._table, batch.schema, self._rules)
        return TableBatch(self._table, None, batch)
