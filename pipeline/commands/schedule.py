"""`krux-export schedule FILE [--next N]`: a job file run at its scheduled times.

With `--next N`, prints the next N start times and exits. Without it, runs the job at each
start time until stopped: each run's summary (or its failed JSON line) goes to stdout as one
line, progress to stderr.
"""

import argparse
import dataclasses
import logging

from pipeline.commands.beam_flags import check_beam_args
from pipeline.commands.run import export_and_record
from pipeline.commands.summary import failed_summary
from pipeline.config.jobs import load_job
from pipeline.errors import ConfigError, Interrupted, Terminated, UsageError
from pipeline.outcomes.after_run import after_disabling
from pipeline.outcomes.notify import webhook_problem
from pipeline.schedule.cron import next_start_times
from pipeline.schedule.loop import ScheduleDisabled, run_schedule

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(commands) -> None:
    parser = commands.add_parser(
        "schedule",
        help="run a job file at its scheduled times",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a job file (YAML, or a .dig workflow file) at each time its schedule gives,\n"
        "until stopped, printing each run's summary line; or, with --next, list its next start\n"
        "times and exit. Three runs in a row failing for a configuration reason disable it.\n"
        "Flags not listed here go to Beam as pipeline options.",
        epilog="examples:\n"
        "  krux-export schedule daily_krux.yml --next 3\n"
        "  krux-export schedule daily_krux.dig\n\n"
        "reference: docs/jobs.md (schedules, cron rules, notifications), docs/workflows.md",
    )
    parser.add_argument("job_file", metavar="FILE", help="the job's YAML file, or a .dig workflow file")
    parser.add_argument("--next", dest="next_count", type=_count, metavar="N",
                        help="print the next N start times (scheduled time plus delay) and exit")
    parser.set_defaults(handler=_schedule_command, takes_beam_args=True)


def _schedule_command(args, beam_args, runtime) -> int:
    job = load_job(args.job_file)
    if job.schedule is None:
        raise ConfigError(f"{job.path}: the job has no schedule (add schedule: such as \"0 0 * * *\")")
    if args.next_count is not None:
        for _, start in next_start_times(job, runtime.clock.now(), args.next_count):
            print(start.isoformat(), flush=True)
        return 0
    check_beam_args(beam_args, args.known_flags)
    if beam_args:
        settings = job.settings.replace(beam_args=(*job.settings.beam_args, *beam_args))
        job = dataclasses.replace(job, settings=settings)
    def run_and_print(settings):
        """One export; its summary, or the failed JSON line, is printed as one line either way."""
        return export_and_record(settings, runtime, job=job, print_failure=True)

    def run_workflow(settings):
        """A workflow's tasks in file order, each for the scheduled day; the first failure stops it."""
        result = None
        for _, task_settings in job.tasks:
            result = run_and_print(task_settings.replace(date=settings.date, beam_args=settings.beam_args))
        return result

    log.info("job %s: scheduled %r in %s, delay %s", job.name, job.schedule, job.timezone, job.delay)
    if problem := webhook_problem(job.notify, job.name):
        log.warning("%s: notifications by webhook will fail", problem)
    try:
        return run_schedule(job, run_workflow if job.tasks else run_and_print, runtime.clock)
    except ScheduleDisabled as disabled:
        after_disabling(failed_summary(disabled), job_name=job.name, notify=job.notify)
        raise
    except (KeyboardInterrupt, Terminated, Interrupted) as signal:
        # Stopping is how a schedule ends: a run in progress has cleaned up and said so.
        stopped_by = "SIGINT" if isinstance(signal, KeyboardInterrupt) else "SIGTERM"
        if isinstance(signal, Interrupted):
            stopped_by = signal.signal_name
        log.info("schedule %s stopped by %s", job.name, stopped_by)
        return 0


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"--next: expected a whole number of 1 or more, got {text!r}")
    return int(text)
