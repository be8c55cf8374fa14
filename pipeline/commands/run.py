"""`krux-export run`: one export, from flags or a job file with flags on top.

Every option's default is `RunSettings`'s, so the parser records only the flags the user
gave: those override a job file's settings, whatever their spelling on the command line.
"""

import argparse
import dataclasses
import logging

from pipeline.commands.beam_flags import check_beam_args
from pipeline.commands.summary import emit_line, failed_summary
from pipeline.config.jobs import load_job, settings_with_overrides
from pipeline.config.settings import COMPRESSIONS, RunSettings, SettingError, parse_date
from pipeline.errors import UsageError
from pipeline.outcomes.after_run import after_run

__all__ = ["add_run_arguments", "launcher_run_export", "register", "run_settings"]

log = logging.getLogger("krux_export")

_SETTING_FIELDS = {field.name for field in dataclasses.fields(RunSettings)}


def register(commands) -> None:
    parser = commands.add_parser(
        "run",
        help="export the day's file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export the tables (or a query's result) as the day's one Krux file: every row is\n"
        "checked, lines are written as shards in staging, and the shards become the day's object in\n"
        "one server-side merge that replaces the day's earlier file (or adds one, with --append).\n"
        "The last line on stdout is the run's summary as JSON. Flags not listed here go to Beam as\n"
        "pipeline options (--runner DataflowRunner ...).",
        epilog="examples:\n"
        "  krux-export run --connection my_dmp --database s3://warehouse/activate_to_krux \\\n"
        "      --user-column KUID --segment-column segment_name --skip-invalid-records --group-by-user\n"
        "  krux-export run --job daily_krux.yml --date 2026-11-27\n\n"
        "reference: docs/commands.md (options), docs/line.md (the line and invalid rows),\n"
        "docs/destination.md (where the file goes), docs/operations.md (summary, exit codes)",
    )
    add_run_arguments(parser)
    parser.add_argument("--job", metavar="FILE",
                        help="a job file, or a .dig workflow file (docs/jobs.md); flags given here override it")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr while the pipeline runs")
    parser.set_defaults(handler=_run_command, takes_beam_args=True)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `run` and `preview` share; each one's `dest` is a `RunSettings` field."""
    defaults = RunSettings()
    source = parser.add_argument_group("tables (docs/sources.md)")
    source.add_argument("--source", dest="sources", action="append", default=argparse.SUPPRESS, metavar="URI",
                        help="a Parquet file or directory, or a CSV file; local or s3://; a glob is allowed; repeatable")
    source.add_argument("--database", metavar="URI", default=argparse.SUPPRESS,
                        help="every entry directly under it whose name starts with --table-prefix")
    source.add_argument("--table-prefix", default=argparse.SUPPRESS, help=f"default: {defaults.table_prefix}")
    source.add_argument("--user-column", default=argparse.SUPPRESS, help=f"default: {defaults.user_column}")
    source.add_argument("--segment-column", default=argparse.SUPPRESS, help=f"default: {defaults.segment_column}")
    source.add_argument("--segment-attribute", default=argparse.SUPPRESS,
                        help=f"the segment attribute's name in each line (default: {defaults.segment_attribute})")
    query = parser.add_argument_group("query, instead of exporting the tables as they are (docs/sources.md, Queries)")
    query.add_argument("--query", metavar="SQL", default=argparse.SUPPRESS,
                       help="DuckDB SQL over the tables of --database (also as FOLDER.TABLE) and --source; "
                       "its result's first columns are user_id and td_segment, strings; the others are attributes")
    query.add_argument("--query-file", metavar="FILE", default=argparse.SUPPRESS, help="the same SQL, from a file")
    query.add_argument("--query-memory-limit", metavar="SIZE", default=argparse.SUPPRESS,
                       help="DuckDB's memory before it spills to disk, e.g. 4GB (default: a quarter of the machine's)")
    target = parser.add_argument_group("destination (docs/destination.md, docs/connections.md)")
    target.add_argument("--connection", metavar="NAME", default=argparse.SUPPRESS,
                        help="a connection from connections.yml")
    target.add_argument("--client-name", default=argparse.SUPPRESS,
                        help="the client's folder in the bucket, without a connection")
    target.add_argument("--bucket", default=argparse.SUPPRESS, help="default: the connection's, or krux-partners")
    target.add_argument("--endpoint-url", default=argparse.SUPPRESS, help="an S3-compatible endpoint")
    target.add_argument("--s3-region", dest="region", metavar="REGION", default=argparse.SUPPRESS,
                        help="the partner bucket's region (Beam's own --region is Dataflow's)")
    target.add_argument("--output-root", metavar="URI", default=argparse.SUPPRESS,
                        help="write the uploads/ layout here instead (local or s3://)")
    target.add_argument("--date", type=parse_date, default=argparse.SUPPRESS,
                        help="the day folder, YYYY-MM-DD (default: today, UTC)")
    target.add_argument("--export-name", default=argparse.SUPPRESS, help=f"default: {defaults.export_name}")
    target.add_argument("--compression", choices=COMPRESSIONS, default=argparse.SUPPRESS,
                        help=f"default: {defaults.compression}")
    target.add_argument("--append", action="store_true", default=argparse.SUPPRESS,
                        help="add a file to the day instead of replacing it")
    records = parser.add_argument_group("records (docs/line.md)")
    records.add_argument("--skip-invalid-records", action="store_true", default=argparse.SUPPRESS,
                         help="drop and count invalid rows instead of failing the run (exit 3)")
    records.add_argument("--rejects", metavar="URI", default=argparse.SUPPRESS,
                         help="write invalid rows here as JSON lines")
    records.add_argument("--group-by-user", action="store_true", default=argparse.SUPPRESS,
                         help="one line per user across all tables")
    records.add_argument("--max-values-per-user", type=int, metavar="N", default=argparse.SUPPRESS,
                         help="with --group-by-user, refuse (exit 3) a user with more distinct values than this, "
                         f"such as a placeholder id shared by millions of rows (default {defaults.max_values_per_user:,})")
    records.add_argument("--allow-empty", action="store_true", default=argparse.SUPPRESS,
                         help="publish an empty file when no line is valid (otherwise exit 3)")
    parser.add_argument("--summary-json", metavar="PATH", default=argparse.SUPPRESS,
                        help="also write the summary line to this file")


def run_settings(args, beam_args, job_settings: RunSettings | None = None) -> RunSettings:
    """The run's settings: a job's (or a workflow task's) with the given flags on top, or the flags'.

    A broken rule names the flag: `--export-name: export name 'a-b' must match [A-Za-z0-9_]+`.
    """
    given = {name: value for name, value in vars(args).items() if name in _SETTING_FIELDS}
    if "sources" in given:
        given["sources"] = tuple(given["sources"])
    given["beam_args"] = tuple(beam_args)
    try:
        if job_settings is not None:
            return settings_with_overrides(job_settings, given)
        return RunSettings(**given)
    except SettingError as error:
        raise UsageError(f"{_flag_of(error.setting)}: {error.problem}") from error


def _flag_of(setting: str) -> str:
    return {"sources": "--source", "region": "--s3-region"}.get(setting, "--" + setting.replace("_", "-"))


def _run_command(args, beam_args, runtime) -> int:
    check_beam_args(beam_args)
    job = load_job(args.job) if args.job else None
    if job and job.tasks:  # a workflow: its tasks in file order; the first that fails stops it
        for _, task_settings in job.tasks:
            _run_once(run_settings(args, beam_args, task_settings), job, runtime, args.quiet)
        return 0
    settings = run_settings(args, beam_args, job.settings if job else None)
    return _run_once(settings, job, runtime, args.quiet)


def _run_once(settings: RunSettings, job, runtime, quiet: bool) -> int:
    run_export = runtime.run_export or launcher_run_export()
    outcome = dict(export_name=settings.export_name, started_at=runtime.clock.now(),
                   job_name=job.name if job else None, notify=job.notify if job else None)
    try:
        result = run_export(settings, tunables=runtime.tunables, show_progress=not quiet)
    except BaseException as error:  # recorded, and told unless a signal stopped it; then main() reports it
        after_run(failed_summary(error), tell=isinstance(error, Exception), **outcome)
        raise
    try:
        emit_line(result.summary, settings.summary_json)
    finally:
        after_run(result.summary, **outcome)  # published, even if the summary file could not be written
    summary = result.summary
    log.info("published %s (%d bytes, %d lines)", summary.object_uri, summary.bytes, summary.lines_written)
    return 0


def launcher_run_export():
    """`pipeline.launcher.run.run_export`."""
    from pipeline.launcher.run import run_export  # Beam loads only when a run needs it (start-up cost)

    return run_export
