"""One export end to end: check, build, run, read the report, publish, summarize.

Nothing is published until the pipeline has finished and its report says the lines are good;
staging is removed whatever happens: after publishing, or on any failure, SIGTERM or Ctrl-C.
The rejects file (`--rejects`) is written just before the day's object is published and
removed if the run fails after all, so the exit code tells the truth about both.
"""

import contextlib
import dataclasses
import datetime
import logging
import tempfile
import time

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipeline.config.connections import load_connection
from pipeline.config.settings import DEFAULT_BUCKET, RunSettings
from pipeline.errors import (
    EmptyResultError,
    ExportError,
    Interrupted,
    InvalidRecordsError,
    StorageError,
    Terminated,
    UsageError,
    error_from_worker,
)
from pipeline.krux import layout
from pipeline.krux.report import RunReport
from pipeline.krux.summary import Summary
from pipeline.launcher import publish
from pipeline.launcher import rejects as rejects_file
from pipeline.launcher.beam_options import beam_options, configure_filesystems, is_local_runner
from pipeline.launcher.graph import INVALID_ROW_NAME, MANIFEST_NAME, ExportPlan, build_pipeline
from pipeline.launcher.local_workers import filtered_stderr, stop_children
from pipeline.launcher.progress import RunProgress
from pipeline.launcher.tunables import Tunables
from pipeline.sources.query import QUERY_TABLE, query_of
from pipeline.sources.tables import tables_of
from pipeline.storage.stores import ObjectInfo, StoreSpec
from transforms.rejects import RejectsTarget

__all__ = ["RunResult", "resolve_target", "run_export"]

log = logging.getLogger("krux_export")


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A succeeded run: its summary line, as the command prints it."""

    summary: Summary


def run_export(
    settings: RunSettings,
    *,
    now: datetime.datetime | None = None,
    tunables: Tunables | None = None,
    show_progress: bool = False,
) -> RunResult:
    """Runs one export. Raises `ExportError`s with exit codes, or `Interrupted` on a signal.

    `show_progress`: rows read, shards written and time on stderr while the pipeline runs.
    """
    started = time.monotonic()
    tunables = tunables or Tunables()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    date = settings.date or now.astimezone(datetime.timezone.utc).date()
    spec, uploads_dir = resolve_target(settings)
    options = beam_options(settings.beam_args)
    configure_filesystems(options)
    query = query_of(settings, date, now)
    table_list = [] if query else tables_of(settings)
    if query:
        log.info("query (%s) checked; tables it can read: %d", query.origin, len(query.tables))
    else:
        log.info("%d tables checked: %s", len(table_list), ", ".join(t.name for t in table_list))
    table_names = [QUERY_TABLE] if query else [t.name for t in table_list]
    if not query and sum(t.rows for t in table_list) <= tunables.in_process_rows:
        options = beam_options(settings.beam_args, in_process=True)  # small: no worker processes

    run_id = layout.new_run_id(now)
    staging = layout.staging_dir(settings.export_name, run_id)
    day_dir = layout.day_dir(uploads_dir, date)
    final_key = day_dir + layout.final_name(
        settings.export_name, settings.compression, run_id if settings.append else None
    )
    rejects = _prepare_rejects(settings, run_id, tunables)
    store = spec.open(min_part_bytes=tunables.min_part_bytes)
    swept = publish.sweep_leftovers(
        store, export_name=settings.export_name, day_dir=day_dir, current_staging=staging
    )
    if swept:
        log.info("removed %d leftovers of earlier runs of %s", len(swept), settings.export_name)
    published = _Published()
    try:
        plan = ExportPlan(table_list, spec, staging, run_id, tunables, query=query, rejects=rejects)
        size, replaced, report = _export_and_publish(
            settings, plan, options, store, final_key, day_dir, published, show_progress
        )
    except BaseException as error:
        swept_by_another_run = isinstance(error, StorageError) and _is_empty(store, staging)
        # After a signal only seconds are left: a new client whose calls cannot hang.
        _remove_staging_best_effort(store if isinstance(error, Exception) else spec.open(prompt=True), staging)
        if rejects:
            _remove_rejects_best_effort(rejects, tunables, file=published.rejects and not published.uri)
        if swept_by_another_run:
            raise StorageError(
                f"run {run_id}: its staged shards were removed while it ran; another run of export "
                f"{settings.export_name} started meanwhile and publishes the day's file ({error})"
            ) from error
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            signal_name = "SIGTERM" if isinstance(error, Terminated) else "SIGINT"
            raise Interrupted(signal_name, published.uri) from error
        raise
    _remove_staging_best_effort(store, staging)
    if rejects:
        _remove_rejects_best_effort(rejects, tunables, file=False)
    return RunResult(Summary(
        run_id=run_id,
        date=date.isoformat(),
        object_uri=spec.uri(final_key),
        bytes=size,
        rows_read={name: report.rows.get(name, 0) for name in table_names},
        lines_written=report.lines,
        invalid=dict(report.invalid),
        replaced=tuple(spec.uri(key) for key in replaced),
        duration_s=round(time.monotonic() - started, 3),
    ))


class _Published:
    """The day's new object, once it is complete: what an interrupted run must still report."""

    uri: str | None = None
    rejects: bool = False  # the rejects file is written (a failure from then on removes it)


def _export_and_publish(settings, plan, options, store, final_key, day_dir, published: _Published, show_progress):
    report = _run_pipeline(plan, settings, options, show_progress)
    _check_report(settings, report)
    if plan.rejects:  # before the object: a failure here must leave nothing published
        rejects_store = plan.rejects.store_spec.open(min_part_bytes=plan.tunables.min_part_bytes)
        rejects_file.publish(plan.rejects, rejects_store, [ObjectInfo(key, size) for key, size in report.rejects_parts])
        published.rejects = True
        log.info("%d invalid rows written to %s", sum(report.invalid.values()), plan.rejects.uri)
    log.info("publishing %d lines from %d shards to %s", report.lines, len(report.shards), store.uri(final_key))
    publish_args = dict(day_dir=day_dir, export_name=settings.export_name, append=settings.append)

    def on_complete():
        published.uri = store.uri(final_key)

    if report.lines:
        shards = [ObjectInfo(key, size) for key, size in report.shards]
        size, replaced = publish.publish(
            store, shards=shards, final_key=final_key, on_complete=on_complete, **publish_args
        )
    else:
        size, replaced = publish.publish_empty(
            store, final_key=final_key, compression=settings.compression, on_complete=on_complete, **publish_args
        )
    return size, replaced, report


def _prepare_rejects(settings: RunSettings, run_id: str, tunables: Tunables) -> RejectsTarget | None:
    """The run's rejects target, with what earlier runs left beside it removed."""
    if not settings.rejects:
        return None
    target = RejectsTarget.for_run(settings.rejects, run_id)
    swept = rejects_file.prepare(target, target.store_spec.open(min_part_bytes=tunables.min_part_bytes))
    if swept:
        log.info("removed %d leftovers of earlier runs beside %s", len(swept), target.uri)
    return target


def _remove_rejects_best_effort(target: RejectsTarget, tunables: Tunables, *, file: bool) -> None:
    """Removes the run's rejects parts and, with `file`, the rejects file it wrote.

    As for staging, the run's own outcome is what the user must see: leftover parts are removed
    by the next run; a rejects file that could not be removed is named in a warning.
    """
    try:
        store = target.store_spec.open(min_part_bytes=tunables.min_part_bytes)
        rejects_file.remove_parts(target, store)
        if file:
            rejects_file.remove(target, store)
    except StorageError as error:
        log.warning("rejects of this run left at %s: %s", target.uri, error)


def _is_empty(store, prefix: str) -> bool:
    try:
        return not store.list(prefix)
    except StorageError:
        return False


def _remove_staging_best_effort(store, staging: str) -> None:
    """The run's own outcome is what the user must see; a failed cleanup is left to the sweep."""
    try:
        publish.remove_staging(store, staging)
    except StorageError as error:
        log.warning("staging %s left for the next run to remove: %s", store.uri(staging), error)


def resolve_target(settings: RunSettings) -> tuple[StoreSpec, str]:
    """The store holding the export's root, and the day folders' parent within it.

    Default: `s3://{bucket}/{client_name}/` with `uploads/` below it. `--output-root` (local
    or `s3://`) stands for `.../uploads` itself, so day folders sit right under it.
    """
    connection = load_connection(settings.connection) if settings.connection else None
    region = settings.region or (connection.region if connection else None)
    endpoint = settings.endpoint_url or (connection.endpoint_url if connection else None)
    common = dict(region=region, endpoint_url=endpoint, connection=settings.connection)
    if settings.output_root:
        return StoreSpec.from_uri(settings.output_root, **common), ""
    client_name = settings.client_name or (connection.client_name if connection else None)
    if not client_name:
        raise UsageError("no destination: give --connection NAME, or --client-name (or --output-root)")
    bucket = settings.bucket or (connection.bucket if connection else None) or DEFAULT_BUCKET
    return StoreSpec(kind="s3", bucket=bucket, base=f"{client_name}/", **common), "uploads/"


def _run_pipeline(plan: ExportPlan, settings: RunSettings, options: PipelineOptions, show_progress: bool) -> RunReport:
    with _spill_dir(settings, options) as spill_dir:
        return _run_graph(dataclasses.replace(plan, spill_dir=spill_dir), settings, options, show_progress)


@contextlib.contextmanager
def _spill_dir(settings: RunSettings, options: PipelineOptions):
    """A local directory for the grouping's shuffle on a local runner, removed after the run."""
    if not (settings.group_by_user and is_local_runner(options)):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="krux-spill-") as path:
        yield path


def _run_graph(plan: ExportPlan, settings: RunSettings, options: PipelineOptions, show_progress: bool) -> RunReport:
    local_workers = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    result = None
    tasks = [task for table in plan.tables for task in table.tasks]
    with RunProgress(tasks, options, enabled=show_progress) as progress:
        pipeline = build_pipeline(settings, dataclasses.replace(plan, progress=progress.channel), options)
        log.info("running the pipeline (run %s)", plan.run_id)
        with filtered_stderr() if local_workers else contextlib.nullcontext():
            try:
                progress.start()
                result = pipeline.run()  # local runners return when done, remote ones once submitted
                progress.follow(result)
                result.wait_until_finish()
            except Exception as error:  # Beam wraps worker errors; recover ours by name
                if local_workers:  # a bundle still in flight must not write after the cleanup
                    stop_children()
                signal = _signal_within(error)
                if signal is not None:  # in process, SIGTERM or Ctrl-C came while a DoFn ran
                    raise signal from error
                raise (_invalid_row_found(plan) or _pipeline_failure(error)) from error
            except BaseException:  # SIGTERM, Ctrl-C: no worker may write a shard after the cleanup
                if local_workers:
                    stop_children()
                if result is not None:
                    _cancel(result)
                raise
    store = plan.store_spec.open()
    return RunReport.from_json(store.get(plan.staging + MANIFEST_NAME))


def _signal_within(error: BaseException) -> BaseException | None:
    """The `Terminated` or `KeyboardInterrupt` that Beam wrapped in a step's error, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (Terminated, KeyboardInterrupt)):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _invalid_row_found(plan: ExportPlan) -> InvalidRecordsError | None:
    """The reason left by the worker whose invalid row stopped the run (fail fast), if any."""
    store = plan.store_spec.open()
    try:
        if not store.list(plan.staging + INVALID_ROW_NAME):
            return None
        return InvalidRecordsError(store.get(plan.staging + INVALID_ROW_NAME).decode("utf-8", "replace"))
    except StorageError:  # the workers' own error still says what happened
        return None


def _cancel(result) -> None:
    """Stops a job submitted to a remote runner (Dataflow, Flink) when the launcher is stopped."""
    try:
        result.cancel()
    except Exception as error:  # a local runner's result cannot be cancelled: nothing to stop
        log.debug("cancelling the pipeline: %s", error)


def _pipeline_failure(error: Exception) -> ExportError:
    """The one-line reason of a failed pipeline: our own error raised in a worker, if any."""
    if isinstance(error, ExportError):  # raised in-process: keep its type, drop Beam's step suffix
        return type(error)(str(error).split(" [while running")[0].strip())
    text = error.details() if callable(getattr(error, "details", None)) else str(error)  # gRPC errors
    ours = error_from_worker(text)
    if ours is not None:
        return ours
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Pipeline has validations errors"):
        return UsageError("Beam options: " + " ".join(lines[1:]))
    return ExportError(f"pipeline failed: {lines[-1] if lines else type(error).__name__}")


def _check_report(settings: RunSettings, report: RunReport) -> None:
    # Invalid rows without --skip-invalid-records have already failed the pipeline (fail fast).
    if not report.lines and not settings.allow_empty:
        raise EmptyResultError("no valid lines to export (--allow-empty publishes an empty file)")
