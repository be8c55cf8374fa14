"""One export end to end: check, plan, run the pipeline (which publishes), summarize.

The pipeline is `WriteToKrux`'s (`transforms.write.ExportBatches` after the launcher's
readers): once every shard is written, one worker checks the run's report, writes the rejects
file (`--rejects`), merges the day's object and removes what it replaces. The launcher keeps
what only it can do: plan reads from the footers, sweep what killed runs left, show progress,
and on any failure, SIGTERM or Ctrl-C stop the workers, abort the merge's open upload, remove
staging and a rejects file written by a run that then failed, so the exit code tells the
truth about both.
"""

import contextlib
import dataclasses
import datetime
import json
import logging
import tempfile
import time

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipeline.config.connections import load_connection
from pipeline.config.settings import DEFAULT_BUCKET, RunSettings
from pipeline.errors import (
    UNEXPECTED,
    ExportError,
    Interrupted,
    InvalidRecordsError,
    StorageError,
    Terminated,
    UnexpectedError,
    UsageError,
    error_from_worker,
    in_run,
)
from pipeline.krux import layout
from pipeline.krux.summary import Summary
from pipeline.launcher import rejects as rejects_file
from pipeline.launcher.beam_options import beam_options, configure_filesystems, is_local_runner
from pipeline.launcher.graph import ExportPlan, build_pipeline
from pipeline.launcher.local_workers import filtered_stderr, stop_children, worker_allocators
from pipeline.launcher.progress import RunProgress
from pipeline.launcher.tunables import Tunables
from pipeline.sources.query import query_of
from pipeline.sources.tables import tables_of
from pipeline.storage import publish
from pipeline.storage.stores import StoreSpec
from transforms.rejects import RejectsTarget
from transforms.write import INVALID_ROW_NAME, PUBLISHED, REJECTS_WRITTEN, SUMMARY, ExportTarget

__all__ = ["RunResult", "other_run_staged", "resolve_target", "run_export"]

log = logging.getLogger(__name__)


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

    Whatever escapes carries the run's id and day (`error.run_id`, `error.date`): a bug as an
    `UnexpectedError`, a signal as `Interrupted` (see `pipeline.errors.in_run`).
    `show_progress`: rows read, shards written and time on stderr while the pipeline runs.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    date = settings.date or now.astimezone(datetime.timezone.utc).date()
    run_id = layout.new_run_id(now)
    try:
        return _run_export(settings, now, date, run_id, tunables or Tunables(), show_progress)
    except BaseException as error:
        failure = in_run(error, run_id, date.isoformat())
        if failure is error:
            raise
        raise failure from error


def _run_export(settings: RunSettings, now, date, run_id: str, tunables: Tunables, show_progress: bool) -> RunResult:
    started = time.monotonic()
    spec, uploads_dir = resolve_target(settings)
    options = beam_options(settings.beam_args)
    configure_filesystems(options)
    query = query_of(settings, date, now)
    table_list = [] if query else tables_of(settings)
    if query:
        log.info("query (%s) checked; tables it can read: %d", query.origin, len(query.tables))
    else:
        log.info("%d tables checked: %s", len(table_list), ", ".join(t.name for t in table_list))
    if not query and sum(t.rows for t in table_list) <= tunables.in_process_rows:
        options = beam_options(settings.beam_args, in_process=True)  # small: no worker processes

    target = ExportTarget(
        spec, uploads_dir, settings.export_name, date.isoformat(), run_id, settings.compression, settings.append,
        append_key=settings.append_key,
    )
    staging = target.staging
    rejects = _prepare_rejects(settings, run_id, tunables)
    store = spec.open(min_part_bytes=tunables.min_part_bytes)
    swept = publish.sweep_leftovers(
        store, export_name=settings.export_name, day_dir=target.day_dir, current_staging=staging
    )
    if swept:
        log.info("removed %d leftovers of earlier runs of %s", len(swept), settings.export_name)
    try:
        plan = ExportPlan(table_list, target, tunables, query=query, rejects=rejects)
        summary = _run_pipeline(plan, settings, options, show_progress)
    except BaseException as error:
        other_run = other_run_staged(store, settings.export_name, run_id) if isinstance(error, StorageError) else None
        stopped = not isinstance(error, Exception)
        # After a signal only seconds are left: a new client whose calls cannot hang.
        cleanup_store = spec.open(prompt=True) if stopped else store
        if stopped:  # a worker stopped mid-merge leaves its upload open
            _abort_merge_best_effort(cleanup_store, target.final_key)
        published = _Published.read(cleanup_store, target)
        _remove_staging_best_effort(cleanup_store, staging)
        if rejects:
            _remove_rejects_best_effort(rejects, tunables, file=published.rejects and not published.uri)
        if other_run:
            raise StorageError(
                f"run {run_id}: its staged shards were removed while it ran; another run of export "
                f"{settings.export_name} ({other_run}) started meanwhile and publishes the day's file ({error})"
            ) from error
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            signal_name = "SIGTERM" if isinstance(error, Terminated) else "SIGINT"
            raise Interrupted(signal_name, published.uri) from error
        raise
    _remove_staging_best_effort(store, staging)
    if rejects:
        _remove_rejects_best_effort(rejects, tunables, file=False)
    return RunResult(dataclasses.replace(
        summary,
        duration_s=round(time.monotonic() - started, 3),
        snapshots=_snapshots(query.tables if query else table_list),
    ))


def _snapshots(tables) -> dict[str, str]:
    """The version each lake table was read at (SPEC §9), by table name."""
    return {table.name: table.snapshot for table in tables if table.snapshot is not None}


@dataclasses.dataclass(frozen=True)
class _Published:
    """What the publishing step had done when the run failed: what an interrupted run must still report."""

    uri: str | None = None  # the day's new object, once it is complete
    rejects: bool = False  # the rejects file is written (a failure from then on removes it)

    @classmethod
    def read(cls, store, target: ExportTarget) -> "_Published":
        """From the milestones the publishing step left in staging (none if they cannot be read)."""
        try:
            left = {o.key[len(target.launcher_dir) :] for o in store.list(target.launcher_dir)}
        except StorageError as error:
            log.warning("cannot tell what this run published: %s", error)
            return cls()
        return cls(uri=target.store_spec.uri(target.final_key) if PUBLISHED in left else None,
                   rejects=REJECTS_WRITTEN in left)


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


def other_run_staged(store, export_name: str, run_id: str) -> str | None:
    """Another run of the export, if its staging is there while this run's own is gone.

    A run sweeps the staging of earlier runs when it starts: this run's shards vanishing while
    another run stages is the one storage failure that overlapping runs explain. Any other
    (an input table's S3 error, a shard write refused) is reported as it is.
    """
    own = layout.staging_dir(export_name, run_id)
    try:
        staged = store.list(layout.staging_dir(export_name))
    except StorageError:
        return None
    if any(o.key.startswith(own) for o in staged):
        return None
    others = sorted({o.key[len(layout.staging_dir(export_name)):].split("/", 1)[0] for o in staged})
    return f"run {', '.join(others)}" if others else None


def _abort_merge_best_effort(store, final_key: str) -> None:
    """Aborts the day's object's open upload, which a stopped worker cannot abort itself."""
    try:
        store.abort_uploads(final_key, only=lambda key: key == final_key)
    except StorageError as error:
        log.warning("the next run aborts the open upload of %s: %s", store.uri(final_key), error)


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


def _run_pipeline(plan: ExportPlan, settings: RunSettings, options: PipelineOptions, show_progress: bool) -> Summary:
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


def _run_graph(plan: ExportPlan, settings: RunSettings, options: PipelineOptions, show_progress: bool) -> Summary:
    local_workers = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    result = None
    tasks = [task for table in plan.tables for task in table.tasks]
    with RunProgress(tasks, options, enabled=show_progress) as progress:
        pipeline = build_pipeline(settings, dataclasses.replace(plan, progress=progress.channel), options)
        log.info("running the pipeline (run %s)", plan.target.run_id)
        stderr = filtered_stderr(keep_all=log.isEnabledFor(logging.DEBUG)) if local_workers else contextlib.nullcontext()
        allocators = worker_allocators() if local_workers else contextlib.nullcontext()
        with stderr, allocators:
            try:
                progress.start()
                result = pipeline.run()  # local runners return when done, remote ones once submitted
                progress.follow(result)
                result.wait_until_finish()
            except Exception as error:  # a worker's error, as the runner hands it back
                if local_workers:  # a bundle still in flight must not write after the cleanup
                    stop_children()
                stop = _signal_within(error)
                if stop is not None:  # in process, SIGTERM or Ctrl-C came while a DoFn ran
                    raise stop from error
                failure = _invalid_row_found(plan) or _pipeline_failure(error)
                if failure is error:  # ours, raised in-process as it is
                    raise
                raise failure from error
            except BaseException:  # SIGTERM, Ctrl-C: no worker may write a shard after the cleanup
                if local_workers:
                    stop_children()
                if result is not None:
                    _cancel(result)
                raise
    data = json.loads(plan.target.store_spec.open().get(plan.target.launcher_dir + SUMMARY))
    return Summary.from_json(data)


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
    store, key = plan.target.store_spec.open(), plan.target.staging + INVALID_ROW_NAME
    try:
        if not store.list(key):
            return None
        return InvalidRecordsError(store.get(key).decode("utf-8", "replace"))
    except StorageError:  # the workers' own error still says what happened
        return None


def _cancel(result) -> None:
    """Stops a job submitted to a remote runner (Dataflow, Flink) when the launcher is stopped."""
    try:
        result.cancel()
    except Exception as error:  # a local runner's result cannot be cancelled: nothing to stop
        log.debug("cancelling the pipeline: %s", error)


def _pipeline_failure(error: Exception) -> ExportError:
    """What failed the pipeline: our own error raised in a worker, rebuilt from its payload.

    In-process runners raise it as it is; the others hand back the worker's traceback as text
    (a gRPC error's `details()` for the portable runner), which carries the payload. Anything
    else (a bug, a lost worker) is exit 1 with the worker's last line: its class and message.
    """
    if isinstance(error, ExportError):
        return error
    text = error.details() if callable(getattr(error, "details", None)) else str(error)
    log.debug("the pipeline failed:\n%s", text)
    ours = error_from_worker(text)
    if ours is not None:
        return ours
    if "Traceback (most recent call last)" not in text:  # raised in-process: the exception itself
        return UnexpectedError.of(error, "pipeline failed")
    last = [line.strip() for line in text.strip().splitlines() if line.strip()][-1]
    return UnexpectedError(f"pipeline failed: {UNEXPECTED}: {last}")
