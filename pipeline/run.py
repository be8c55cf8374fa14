"""One export end to end: check, build, run, read the report, publish, summarize.

Nothing is published until the pipeline has finished and its report says the lines are good;
staging is removed whatever happens: after publishing, or on any failure, SIGTERM or Ctrl-C.
"""

import contextlib
import datetime
import logging
import re
import time

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipeline import layout, publish, tables
from pipeline.connections import load_connection
from pipeline.errors import (
    EmptyResultError,
    ExportError,
    InvalidRecordsError,
    SchemaError,
    StorageError,
    UsageError,
)
from pipeline.export import MANIFEST_NAME, ExportPlan, build_pipeline
from pipeline.local_workers import filtered_stderr, stop_children
from pipeline.settings import COMPRESSIONS, DEFAULT_BUCKET, RunSettings
from pipeline.storage import ObjectInfo, StoreSpec
from transforms.rejects import join_rejects
from transforms.report import RunReport

log = logging.getLogger("krux_export")

# Both cores, and never the Prism download that Beam's default runner attempts first.
DEFAULT_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2")


def run_export(settings: RunSettings, *, now: datetime.datetime | None = None) -> dict:
    """Runs one export and returns SPEC §7's summary. Raises `ExportError`s with exit codes."""
    started = time.monotonic()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    _check_settings(settings)
    date = settings.date or now.astimezone(datetime.timezone.utc).date()
    spec, uploads_dir = resolve_target(settings)
    configure_filesystems(settings.beam_args)
    table_list = tables.tables_of(settings)
    log.info("%d tables checked: %s", len(table_list), ", ".join(t.name for t in table_list))

    run_id = layout.new_run_id(now)
    staging = layout.staging_dir(settings.export_name, run_id)
    day_dir = layout.day_dir(uploads_dir, date)
    final_key = day_dir + layout.final_name(
        settings.export_name, settings.compression, run_id if settings.append else None
    )
    store = spec.open()
    swept = publish.sweep_leftovers(
        store, export_name=settings.export_name, day_dir=day_dir, current_staging=staging
    )
    if swept:
        log.info("removed %d leftovers of earlier runs of %s", len(swept), settings.export_name)
    published = []  # the object's URI, once the new object is complete
    try:
        plan = ExportPlan(table_list, spec, staging, run_id)
        size, replaced, report = _export_and_publish(settings, plan, store, final_key, day_dir, published)
    except BaseException as error:
        if published:
            error.published_uri = published[0]  # a signal after the upload completed: say so
        swept_by_another_run = isinstance(error, StorageError) and _is_empty(store, staging)
        _remove_staging_best_effort(store, staging)
        if swept_by_another_run:
            raise StorageError(
                f"run {run_id}: its staged shards were removed while it ran; another run of export "
                f"{settings.export_name} started meanwhile and publishes the day's file ({error})"
            ) from error
        raise
    _remove_staging_best_effort(store, staging)
    return {
        "status": "succeeded",
        "run_id": run_id,
        "date": date.isoformat(),
        "object_uri": spec.uri(final_key),
        "bytes": size,
        "rows_read": {
            "total": sum(report.rows.values()),
            "tables": {t.name: report.rows.get(t.name, 0) for t in table_list},
        },
        "lines_written": report.lines,
        "invalid": dict(sorted(report.invalid.items())),
        "replaced": [spec.uri(key) for key in replaced],
        "duration_s": round(time.monotonic() - started, 3),
    }


def _export_and_publish(settings, plan, store, final_key, day_dir, published: list):
    report = _run_pipeline(settings, plan)
    _check_report(settings, report)
    log.info("publishing %d lines from %d shards to %s", report.lines, len(report.shards), store.uri(final_key))
    publish_args = dict(day_dir=day_dir, export_name=settings.export_name, append=settings.append)
    on_complete = lambda: published.append(store.uri(final_key))  # noqa: E731
    if report.lines:
        shards = [ObjectInfo(key, size) for key, size in report.shards]
        size, replaced = publish.publish(
            store, shards=shards, final_key=final_key, on_complete=on_complete, **publish_args
        )
    else:
        size, replaced = publish.publish_empty(
            store, final_key=final_key, compression=settings.compression, on_complete=on_complete, **publish_args
        )
    if settings.rejects:
        join_rejects(settings.rejects, plan.run_id, report.rejects_parts)
    return size, replaced, report


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
    layout.check_client_name(client_name)
    bucket = settings.bucket or (connection.bucket if connection else None) or DEFAULT_BUCKET
    return StoreSpec(kind="s3", bucket=bucket, base=f"{client_name}/", **common), "uploads/"


def _check_settings(settings: RunSettings) -> None:
    layout.check_export_name(settings.export_name)
    if settings.compression not in COMPRESSIONS:
        raise UsageError(f"compression {settings.compression!r} must be one of {', '.join(COMPRESSIONS)}")
    if settings.rejects and not settings.skip_invalid_records:
        raise UsageError("--rejects needs --skip-invalid-records (without it the first invalid row stops the run)")


def configure_filesystems(beam_args) -> None:
    """Beam's S3 file system needs options before the launcher reads any `s3://` table."""
    FileSystems.set_options(beam_options(beam_args))


def beam_options(beam_args) -> PipelineOptions:
    """The user's Beam flags, plus our defaults for the runner and a quiet worker log."""
    args = list(beam_args)
    if _has_flag(args, "--dry_run"):
        raise UsageError("--dry_run only builds the Beam job: there would be nothing to publish")
    if not _has_flag(args, "--runner"):
        args = [*DEFAULT_BEAM_ARGS, *args]
    if not _has_flag(args, "--default_sdk_harness_log_level"):
        args.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(args)


def _has_flag(args, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def _run_pipeline(settings: RunSettings, plan: ExportPlan) -> RunReport:
    options = beam_options(settings.beam_args)
    pipeline = build_pipeline(settings, plan, options)
    log.info("running the pipeline (run %s)", plan.run_id)
    local_workers = options.view_as(DirectOptions).direct_running_mode == "multi_processing"
    result = None
    with filtered_stderr() if local_workers else contextlib.nullcontext():
        try:
            result = pipeline.run()  # local runners return when done, remote ones once submitted
            result.wait_until_finish()
        except Exception as error:  # Beam wraps worker errors; recover ours by name
            raise _pipeline_failure(error) from error
        except BaseException:  # SIGTERM, Ctrl-C: no worker may write a shard after the cleanup
            if local_workers:
                stop_children()
            if result is not None:
                _cancel(result)
            raise
    store = plan.store_spec.open()
    return RunReport.from_json(store.get(plan.staging + MANIFEST_NAME))


_WORKER_ERROR = re.compile(r"\b(SchemaError|StorageError|ConfigError|UsageError): (.+)")
_ERROR_TYPES = {"SchemaError": SchemaError, "StorageError": StorageError, "ConfigError": UsageError, "UsageError": UsageError}


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
    match = _WORKER_ERROR.search(text)
    if match:
        return _ERROR_TYPES[match.group(1)](match.group(2).split(" [while running")[0].strip())
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Pipeline has validations errors"):
        return UsageError("Beam options: " + " ".join(lines[1:]))
    return ExportError(f"pipeline failed: {lines[-1] if lines else type(error).__name__}")


def _check_report(settings: RunSettings, report: RunReport) -> None:
    invalid = sum(report.invalid.values())
    if invalid and not settings.skip_invalid_records:
        raise InvalidRecordsError(
            f"{report.first_invalid[1]} ({invalid} invalid rows in all; "
            "--skip-invalid-records drops and counts them)"
        )
    if not report.lines and not settings.allow_empty:
        raise EmptyResultError("no valid lines to export (--allow-empty publishes an empty file)")
