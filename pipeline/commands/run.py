"""`krux-export run`: one export, from flags or a job file with flags on top.

Every option's default is `RunSettings`'s, so the parser records only the flags the user
gave: those override a job file's settings, whatever their spelling on the command line.
"""

import argparse
import dataclasses
import datetime
import logging

from pipeline.commands.beam_flags import check_beam_args
from pipeline.commands.startup import imports_uncollected
from pipeline.commands.summary import emit_line, failed_summary
from pipeline.config.jobs import Job, load_job, settings_with_overrides
from pipeline.config.settings import COMPRESSIONS, RunSettings, Setting, SettingError, missing_database, parse_date
from pipeline.config.wording import plural
from pipeline.errors import Interrupted, Terminated, UsageError
from pipeline.outcomes.after_run import after_run

__all__ = ["add_run_arguments", "export_and_record", "launcher_run_export", "register", "run_settings"]

log = logging.getLogger(__name__)

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


def add_run_arguments(parser: argparse.ArgumentParser, *, publishes: bool = True) -> None:
    """The options of `run`; each one's `dest` is a `RunSettings` field.

    `publishes=False` (preview) leaves out those that only matter to what a run writes:
    --append, --allow-empty, --rejects, --summary-json.
    """
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
    query.add_argument("--warehouse", metavar="NAME", default=argparse.SUPPRESS,
                       help="run the query in this warehouse connection (uri: in connections.yml; "
                       "PostgreSQL, Snowflake, BigQuery, Flight SQL through ADBC) instead of DuckDB")
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
    target.add_argument("--date", type=_date_flag, default=argparse.SUPPRESS,
                        help="the day folder, YYYY-MM-DD (default: today, UTC)")
    target.add_argument("--export-name", default=argparse.SUPPRESS, help=f"default: {defaults.export_name}")
    target.add_argument("--compression", choices=COMPRESSIONS, default=argparse.SUPPRESS,
                        help=f"default: {defaults.compression}")
    if publishes:
        target.add_argument("--append", action="store_true", default=argparse.SUPPRESS,
                            help="add a file to the day instead of replacing it")
        target.add_argument("--append-key", metavar="KEY", default=argparse.SUPPRESS,
                            help="with --append: name the file {export_name}-KEY, so a retry with the same key "
                            "replaces its own earlier file ([A-Za-z0-9_.-]+)")
        target.add_argument("--max-drop", metavar="PCT", type=_percent, default=argparse.SUPPRESS,
                            help="refuse to publish (exit 3) when the run has more than PCT percent fewer lines "
                            "than the export's last published file")
    records = parser.add_argument_group("records (docs/line.md)")
    records.add_argument("--skip-invalid-records", action="store_true", default=argparse.SUPPRESS,
                         help="drop and count invalid rows instead of failing the run (exit 3)")
    records.add_argument("--group-by-user", action="store_true", default=argparse.SUPPRESS,
                         help="one line per user across all tables")
    records.add_argument("--max-values-per-user", type=int, metavar="N", default=argparse.SUPPRESS,
                         help="with --group-by-user, refuse (exit 3) a user with more distinct values than this, "
                         f"such as a placeholder id shared by millions of rows (default {defaults.max_values_per_user:,})")
    if publishes:
        records.add_argument("--rejects", metavar="URI", default=argparse.SUPPRESS,
                             help="write invalid rows here as JSON lines (needs --skip-invalid-records)")
        records.add_argument("--allow-empty", action="store_true", default=argparse.SUPPRESS,
                             help="publish an empty file when no line is valid (otherwise exit 3)")
        parser.add_argument("--summary-json", metavar="PATH", default=argparse.SUPPRESS,
                            help="also write the summary line to this file")


def _date_flag(text: str):
    try:
        return parse_date(text)
    except UsageError as error:
        raise UsageError(f"--date: {error}") from None


def run_settings(args, beam_args, job: Job | None = None, base: RunSettings | None = None) -> RunSettings:
    """The run's settings: `base` (a job's, or a workflow task's) with the given flags on top.

    A broken rule names the setting as the user wrote it: the flag when given on the command
    line (`--rejects: needs --skip-invalid-records`), else the job file's key
    (`daily_krux.yml: rejects: needs result_settings.skip_invalid_records`).
    """
    given = {name: value for name, value in vars(args).items() if name in _SETTING_FIELDS}
    if "sources" in given:
        given["sources"] = tuple(given["sources"])
    given["beam_args"] = tuple(beam_args)
    try:
        return settings_with_overrides(base, given) if base is not None else RunSettings(**given)
    except SettingError as error:
        raise _worded(error, job, given) from error


def _percent(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--max-drop: {text!r} is not a percentage such as 50 or 12.5") from None


def _run_command(args, beam_args, runtime) -> int:
    check_beam_args(beam_args, args.known_flags)
    job = load_job(args.job) if args.job else None
    flags = frozenset(vars(args)) & _SETTING_FIELDS
    if job and job.tasks:  # a workflow: its tasks in file order; the first that fails stops it
        for _, task_settings in job.tasks:
            settings = run_settings(args, beam_args, job, task_settings)
            export_and_record(settings, runtime, job=job, flags=flags, show_progress=not args.quiet)
        return 0
    settings = run_settings(args, beam_args, job, job.settings if job else None)
    export_and_record(settings, runtime, job=job, flags=flags, show_progress=not args.quiet)
    return 0


def export_and_record(settings: RunSettings, runtime, *, job: Job | None = None, flags=frozenset(),
                      show_progress: bool = True, print_failure: bool = False):
    """One export: its summary printed, then recorded in the history and told to the job's `notify:`.

    A failure is recorded and told too (unless a signal stopped the run: someone chose to),
    printed as its failed line when `print_failure` (a schedule's runs; for `run`, `main`
    prints it), and raised. `flags` are the settings given on the command line, over the job's.
    """
    run_export = runtime.run_export or launcher_run_export()
    outcome = dict(export_name=settings.export_name, started_at=runtime.clock.now(),
                   job_name=job.name if job else None, notify=job.notify if job else None)
    try:
        if problem := missing_database(settings):  # a failed run like any other: recorded and told
            failure = _worded(problem, job, flags)
            failure.date = (settings.date or outcome["started_at"].astimezone(datetime.timezone.utc).date()).isoformat()
            raise failure  # no run id: the run never started
        result = run_export(settings, tunables=runtime.tunables, show_progress=show_progress)
    except (Exception, Interrupted, KeyboardInterrupt, Terminated) as error:
        summary = failed_summary(error)
        if print_failure:
            emit_line(summary)
        after_run(summary, tell=isinstance(error, Exception), **outcome)
        raise
    summary = result.summary
    try:
        emit_line(summary, settings.summary_json)
    finally:
        after_run(summary, **outcome)  # published, even if the summary file could not be written
    log.info("published %s (%s, %s)", summary.object_uri, plural(summary.bytes, "byte"),
             plural(summary.lines_written, "line"))
    return result


def _worded(error: SettingError, job: Job | None, flags) -> UsageError:
    """`error` with each setting spelled as the user gave it: a flag, or the job file's key."""

    def spell(setting: Setting) -> str:
        return setting.flag if job is None or setting.field in flags else job.key_of(setting)

    reason = error.worded(spell)
    from_job = job is not None and error.setting.field not in flags
    return UsageError(f"{job.path}: {reason}" if from_job else reason)


def launcher_run_export():
    """`pipeline.launcher.run.run_export`."""
    with imports_uncollected():
        from pipeline.launcher.run import run_export  # Beam loads only when a run needs it (start-up cost)

    return run_export
