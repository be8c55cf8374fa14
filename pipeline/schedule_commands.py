"""`krux-export schedule FILE [--next N]` (SPEC §6).

With `--next N`, prints the next N start times and exits. Without it, runs the job at each
start time until stopped: each run's summary (or its failed JSON line) goes to stdout as one
line, progress to stderr.
"""

import dataclasses
import json
import logging

from pipeline import schedule
from pipeline.errors import ConfigError, Terminated, UsageError
from pipeline.jobs import load_job
from pipeline.settings import RunSettings

log = logging.getLogger("krux_export")


def register(commands) -> None:
    """Adds the `schedule` subcommand to the CLI's subparsers."""
    parser = commands.add_parser(
        "schedule",
        help="run a job file at its scheduled times",
        description="Run a job file (SPEC §6) at each scheduled time until stopped, or list its next "
        "start times. Flags not listed here are passed to Beam as pipeline options.",
    )
    parser.add_argument("job_file", metavar="FILE", help="the job's YAML file")
    parser.add_argument("--next", dest="next_count", type=_count, metavar="N",
                        help="print the next N start times (scheduled time plus delay) and exit")
    parser.set_defaults(handler=_schedule_command)


def _schedule_command(args, beam_args) -> int:
    job = load_job(args.job_file)
    if job.schedule is None:
        raise ConfigError(f"{job.path}: the job has no schedule (add schedule: such as \"0 0 * * *\")")
    clock = schedule.SystemClock()
    if args.next_count is not None:
        for _, start in schedule.next_start_times(job, clock.now(), args.next_count):
            print(start.isoformat(), flush=True)
        return 0
    if beam_args:
        from pipeline.cli import check_beam_args  # cli imports this module

        check_beam_args(beam_args)
        settings = job.settings.replace(beam_args=(*job.settings.beam_args, *beam_args))
        job = dataclasses.replace(job, settings=settings)
    log.info("job %s: scheduled %r in %s, delay %s", job.name, job.schedule, job.timezone, job.delay)
    try:
        return schedule.run_schedule(job, _run_and_print, clock)
    except (KeyboardInterrupt, Terminated) as signal:
        # Stopping is how a schedule ends: a run in progress has cleaned up and said so.
        log.info("schedule %s stopped by %s", job.name, "SIGTERM" if isinstance(signal, Terminated) else "SIGINT")
        return 0


def _run_and_print(settings: RunSettings) -> dict:
    """One export; its summary, or the failed JSON line, is printed as one line either way."""
    from pipeline.run import run_export  # Beam and boto3 load only when a run needs them

    try:
        summary = run_export(settings)
    except Exception as error:
        exit_code, reason = schedule.describe_failure(error)
        _print_json({"status": "failed", "exit_code": exit_code, "error": reason})
        raise
    except (KeyboardInterrupt, Terminated):
        _print_json({"status": "failed", "exit_code": 1, "error": "interrupted; nothing was published"})
        raise
    _print_json(summary)
    return summary


def _print_json(line: dict) -> None:
    print(json.dumps(line), flush=True)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--next: expected a whole number of 1 or more, got {text!r}")
    return int(text)
