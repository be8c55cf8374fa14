"""The `krux-export` command: argv to settings, errors to exit codes (SPEC §7).

No export logic here. The last line on stdout of `run` is always one JSON object: the run
summary, or `{"status": "failed", "exit_code": N, "error": ...}`. Progress goes to stderr.
"""

import argparse
import dataclasses
import json
import logging
import signal
import sys

from pipeline import connection_commands, layout, schedule_commands
from pipeline.errors import ExportError, Terminated, UsageError
from pipeline.settings import COMPRESSIONS, DEFAULT_EXPORT_NAME, RunSettings

log = logging.getLogger("krux_export")


class _Parser(argparse.ArgumentParser):
    """Raises `UsageError` instead of exiting, so `run` can still print its JSON line.

    No abbreviations: a shortened or mistyped flag must not silently mean another one.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="krux-export", description="Export segment tables to Salesforce DMP (Krux).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="export the day's file", description="Run one export. "
                              "Flags not listed here are passed to Beam as pipeline options.")
    add_run_arguments(run)
    run.add_argument("--job", metavar="FILE", help="a job file (SPEC §6); flags given here override it")
    run.set_defaults(handler=_run_command)
    preview = commands.add_parser("preview", help="print the first lines a run would write; touches no storage",
                                  description="Print the first Krux lines and the invalid rows among those read. "
                                  "Takes run's options; destination options are ignored.")
    add_run_arguments(preview)
    preview.add_argument("--limit", type=int, default=20, metavar="N", help="lines to print (default 20)")
    preview.set_defaults(handler=_preview_command)
    for module in (connection_commands, schedule_commands):
        module.register(commands)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("tables (SPEC §2)")
    source.add_argument("--source", action="append", default=[], metavar="URI",
                        help="a Parquet file or directory, or a CSV file; local or s3://; a glob is allowed; repeatable")
    source.add_argument("--database", metavar="URI", help="every entry directly under it whose name starts with --table-prefix")
    source.add_argument("--table-prefix", default="segment_")
    source.add_argument("--user-column", default="user_id")
    source.add_argument("--segment-column", default="td_segment")
    source.add_argument("--segment-attribute", default="segment")
    target = parser.add_argument_group("destination (SPEC §4, §5)")
    target.add_argument("--connection", metavar="NAME", help="a connection from connections.yml")
    target.add_argument("--client-name")
    target.add_argument("--bucket")
    target.add_argument("--endpoint-url")
    target.add_argument("--s3-region", dest="region", metavar="REGION",
                        help="the partner bucket's region (Beam's own --region is Dataflow's)")
    target.add_argument("--output-root", metavar="URI", help="write the uploads/ layout here instead (local or s3://)")
    target.add_argument("--date", type=_date, help="the day folder, YYYY-MM-DD (default: today, UTC)")
    target.add_argument("--export-name", default=DEFAULT_EXPORT_NAME)
    target.add_argument("--compression", choices=COMPRESSIONS, default="gzip")
    target.add_argument("--append", action="store_true", help="add a file to the day instead of replacing it")
    records = parser.add_argument_group("records (SPEC §3)")
    records.add_argument("--skip-invalid-records", action="store_true")
    records.add_argument("--rejects", metavar="URI", help="write invalid rows here as JSON lines")
    records.add_argument("--group-by-user", action="store_true")
    records.add_argument("--allow-empty", action="store_true")
    parser.add_argument("--summary-json", metavar="PATH")


def _date(text):
    return layout.parse_date(text)


def settings_from_args(args, beam_args) -> RunSettings:
    return RunSettings(
        sources=tuple(args.source),
        database=args.database,
        table_prefix=args.table_prefix,
        user_column=args.user_column,
        segment_column=args.segment_column,
        segment_attribute=args.segment_attribute,
        connection=args.connection,
        client_name=args.client_name,
        bucket=args.bucket,
        endpoint_url=args.endpoint_url,
        region=args.region,
        date=args.date,
        append=args.append,
        skip_invalid_records=args.skip_invalid_records,
        rejects=args.rejects,
        group_by_user=args.group_by_user,
        compression=args.compression,
        export_name=args.export_name,
        output_root=args.output_root,
        allow_empty=args.allow_empty,
        summary_json=args.summary_json,
        beam_args=tuple(beam_args),
    )


def check_beam_args(beam_args) -> None:
    """Unknown flags go to Beam; a flag Beam doesn't know either is a typo, not an option."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    for options_class in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        options_class._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(beam_args))
    if unknown:
        raise UsageError(f"unknown option {_flag_name(unknown[0])} (see krux-export run --help)")


def _flag_name(arg: str) -> str:
    """`--flag` of `--flag=value`: a mistyped flag's value may be a secret, never echo it."""
    return arg.split("=", 1)[0] if arg.startswith("-") else "(a value without its flag)"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    configure_logging()  # before Beam is imported: it logs notices at import time
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    is_run = bool(argv) and argv[0] == "run"
    summary_path = None
    try:
        args, beam_args = build_parser().parse_known_args(argv)
        args.given = _given_options(argv)
        if args.command == "run":
            summary_path = args.summary_json
        elif beam_args and args.command not in ("preview", "schedule"):
            raise UsageError(f"unknown option {_flag_name(beam_args[0])}")
        return args.handler(args, beam_args)
    except ExportError as error:
        return _fail(error.exit_code, str(error), is_run, summary_path)
    except (KeyboardInterrupt, Terminated) as error:
        reason = "interrupted by SIGTERM" if isinstance(error, Terminated) else "interrupted by SIGINT"
        uri = getattr(error, "published_uri", None)
        outcome = f"{uri} was published; objects it replaces go at the next run" if uri else "nothing was published"
        return _fail(1, f"{reason}; {outcome}", is_run, summary_path)
    except Exception as error:  # the last resort: one line, never a bare traceback
        log.debug("unexpected error", exc_info=True)
        return _fail(1, f"unexpected error: {type(error).__name__}: {error}".splitlines()[0], is_run, summary_path)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _run_command(args, beam_args) -> int:
    check_beam_args(beam_args)
    settings = settings_from_args(args, beam_args)
    if args.job:
        settings = _job_settings(args, settings)
    from pipeline.run import run_export  # Beam and boto3 load only when a run needs them

    summary = run_export(settings)
    _emit_summary(summary, settings.summary_json)
    log.info("published %s (%d bytes, %d lines)", summary["object_uri"], summary["bytes"], summary["lines_written"])
    return 0


def _preview_command(args, beam_args) -> int:
    from pipeline.preview import GROUPED_PREVIEW_ROWS, preview

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    settings = settings_from_args(args, beam_args)
    from pipeline.run import configure_filesystems

    configure_filesystems(beam_args)
    lines, seen = preview(settings, args.limit)
    for line in lines:
        print(line)
    grouped = f" (grouped within the first {GROUPED_PREVIEW_ROWS} rows)" if settings.group_by_user else ""
    invalid = ", ".join(f"{reason}: {count}" for reason, count in seen["invalid"].items()) or "none"
    log.info("%d lines from %d rows read%s; invalid rows: %s", len(lines), seen["rows_read"], grouped, invalid)
    return 0


def _job_settings(args, from_flags: RunSettings) -> RunSettings:
    """The job file's settings, with the flags given on the command line on top."""
    from pipeline.jobs import load_job, settings_with_overrides

    job = load_job(args.job)
    fields = {field.name for field in dataclasses.fields(RunSettings)} - {"beam_args"}
    given = {field: getattr(from_flags, field) for field in args.given & fields}
    return settings_with_overrides(job.settings, {**given, "beam_args": from_flags.beam_args})


# Flag dest -> RunSettings field, where they differ in name.
_SETTING_OF_FLAG = {"source": "sources"}


def _given_options(argv) -> set[str]:
    """RunSettings fields whose flags appear in argv (`--flag v` or `--flag=v`)."""
    given = set()
    for arg in argv:
        if arg.startswith("--"):
            dest = arg[2:].split("=", 1)[0].replace("-", "_")
            given.add(_SETTING_OF_FLAG.get(dest, dest))
    return given


def configure_logging() -> None:
    """Our progress at INFO; other libraries' chatter (Beam's optional-GCP notices) only at ERROR."""
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="krux-export: %(message)s", force=True)
    log.setLevel(logging.INFO)
    # Beam logs a worker's failure with its traceback; our one-line reason says it instead.
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


def _emit_summary(summary: dict, path: str | None) -> None:
    line = json.dumps(summary)
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(line + "\n")
    print(line, flush=True)


def _fail(exit_code: int, reason: str, is_run: bool, summary_path: str | None) -> int:
    reason = " ".join(reason.split()) or "failed"
    print(f"krux-export: error: {reason}", file=sys.stderr, flush=True)
    if is_run:
        summary = {"status": "failed", "exit_code": exit_code, "error": reason}
        try:
            _emit_summary(summary, summary_path)
        except OSError:
            print(json.dumps(summary), flush=True)
    return exit_code


def _raise_terminated(signum, frame):
    raise Terminated()
