"""The `krux-export` command: argv to a subcommand, errors to exit codes.

No export logic here. Each subcommand lives in its own module and registers itself. Every
`run` that exits prints one JSON object as its last stdout line (the summary, or why it
failed); progress goes to stderr. Exit codes: 0 done; 2 usage, configuration or schema;
3 invalid records or empty result; 4 storage; 1 anything else; 143 stopped by SIGTERM and
130 by Ctrl-C (128 + the signal's number, as shells report it).
"""

import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable

from pipeline.commands import connection, history, preview, run, schedule
from pipeline.commands.beam_flags import did_you_mean, flag_name
from pipeline.commands.parsing import LOG_VARIABLE, ArgumentParser, add_commands, remember_flags
from pipeline.commands.summary import emit_line, failed_summary, report_failure
from pipeline.errors import Interrupted, Terminated, UsageError, describe_failure
from pipeline.schedule.loop import Clock, SystemClock

__all__ = ["Runtime", "build_parser", "main"]

log = logging.getLogger(__name__)

SUBCOMMANDS = (run, preview, connection, schedule, history)


@dataclasses.dataclass(frozen=True)
class Runtime:
    """What commands take from their surroundings, so tests pass their own instead of patching.

    `run_export` is `pipeline.launcher.run.run_export` unless given (imported when first
    needed: Beam takes a second or two to import, which `connection list` should not pay).
    `tunables` (a `pipeline.launcher.tunables.Tunables`) sizes shards and parts.
    """

    clock: Clock = dataclasses.field(default_factory=SystemClock)
    run_export: Callable | None = None
    tunables: object | None = None


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="krux-export", description="Export segment tables to Salesforce DMP (Krux).")
    commands = add_commands(parser, "command")
    for module in SUBCOMMANDS:
        module.register(commands)
    remember_flags(parser)
    return parser


def main(argv=None, *, runtime: Runtime | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    runtime = runtime or Runtime()
    configure_logging()  # before Beam is imported: it logs notices at import time
    previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    is_run = bool(argv) and argv[0] == "run"
    summary_path = None
    try:
        args, beam_args = build_parser().parse_known_args(argv)
        if getattr(args, "verbose", False):
            configure_logging(verbose=True)
        summary_path = getattr(args, "summary_json", None) if is_run else None
        if beam_args and not getattr(args, "takes_beam_args", False):
            unknown = beam_args[0]
            raise UsageError(f"unknown option {flag_name(unknown)}{did_you_mean(unknown, args.known_flags)}")
        return args.handler(args, beam_args, runtime)
    except (Exception, Interrupted, KeyboardInterrupt, Terminated) as error:  # one line, never a bare traceback
        log.debug("the traceback of: %s", describe_failure(error)[1], exc_info=error)
        return _fail(error, is_run, summary_path)
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


OUR_PACKAGES = ("pipeline", "transforms")


def configure_logging(*, verbose: bool = False) -> None:
    """Our packages' lines at INFO (DEBUG when verbose), so their warnings always show.

    Other libraries stay quiet: Beam logs a worker's failure with its traceback (and a portable
    job's error through the root logger), which our one-line reason says instead. Verbose
    (`--verbose`, or `KRUX_EXPORT_LOG=debug`) shows their warnings and errors too, and `main`
    then logs a failure's traceback.
    """
    verbose = verbose or os.environ.get(LOG_VARIABLE, "").strip().lower() == "debug"
    logging.basicConfig(level=logging.WARNING if verbose else logging.CRITICAL, stream=sys.stderr,
                        format="krux-export: %(message)s", force=True)
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("apache_beam").setLevel(logging.WARNING if verbose else logging.CRITICAL)


def _fail(error: BaseException, is_run: bool, summary_path: str | None) -> int:
    summary = failed_summary(error)
    report_failure(summary)
    if is_run:
        try:
            emit_line(summary, summary_path)
        except OSError:
            pass  # the line is on stdout; the summary file could not be written
    return summary.exit_code


def _raise_terminated(signum, frame):
    raise Terminated()
