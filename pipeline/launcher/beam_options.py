"""Beam's pipeline options for a run: our defaults under the user's own Beam flags.

Flags that `krux-export` does not know go to Beam; a flag Beam does not know either is a
typo, which the command refuses before anything runs, as it refuses an unknown runner
(`--runner=FnApiRuner`) and options the runner refuses (Dataflow without `--project`).
"""

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.runners.runner import create_runner

from pipeline.errors import UsageError

__all__ = [
    "DEFAULT_BEAM_ARGS",
    "IN_PROCESS_BEAM_ARGS",
    "beam_options",
    "check_runner",
    "configure_filesystems",
    "is_local_runner",
    "unknown_beam_flag",
]

DEFAULT_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2")
"""Both cores, and never the Prism download that Beam's default runner attempts first."""

IN_PROCESS_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1")
"""A small input's runner: the same graph in this process, no worker processes to start
(each would import Beam again, a second or more, for seconds of work)."""


def unknown_beam_flag(beam_args) -> str | None:
    """The first argument that neither krux-export nor Beam knows (a typo), if any."""
    parser = _BeamArgumentParser(allow_abbrev=False)
    for options_class in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        options_class._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(beam_args))
    return unknown[0] if unknown else None


def beam_options(beam_args, *, in_process: bool = False) -> PipelineOptions:
    """The user's Beam flags, plus our defaults for the runner and a quiet worker log.

    `in_process`: without a `--runner` of the user's, run in this process (a small input).
    """
    args = list(beam_args)
    if _has_flag(args, "--dry_run"):
        raise UsageError("--dry_run only builds the Beam job: there would be nothing to publish")
    if not _has_flag(args, "--runner"):
        args = [*(IN_PROCESS_BEAM_ARGS if in_process else DEFAULT_BEAM_ARGS), *args]
    if not _has_flag(args, "--default_sdk_harness_log_level"):
        args.append("--default_sdk_harness_log_level=WARNING")
    options = PipelineOptions(args)
    runner = _runner(options)
    # Beam itself checks these only when the pipeline is created, as a `ValueError`.
    problems = PipelineOptionsValidator(options, runner).validate() if runner else []
    if problems:
        raise UsageError("Beam options: " + " ".join(problems))
    return options


def check_runner(beam_args) -> None:
    """Raises `UsageError` if `--runner` names no runner (`--runner=FnApiRuner`), naming the known ones.

    A command checks this before reading anything; the other options are checked once a job
    file's own `beam_args` are added (`beam_options`).
    """
    _runner(PipelineOptions(list(beam_args)))


def _runner(options: PipelineOptions):
    name = options.view_as(StandardOptions).runner
    if not isinstance(name, str):
        return None
    try:
        return create_runner(name)
    except ImportError as error:
        if "." not in name:  # a known runner whose extra is not installed (Dataflow: apache-beam[gcp])
            raise UsageError(f"--runner={name}: {error}") from error
        raise UsageError(f"--runner={name}: no such runner class ({error})") from error
    except ValueError as error:
        known = ", ".join(StandardOptions.KNOWN_RUNNER_NAMES)
        raise UsageError(
            f"--runner={name}: no such Beam runner; known runners: {known}, or a runner class's full name"
        ) from error


_LOCAL_RUNNERS = {"directrunner", "fnapirunner", "bundlebaseddirectrunner", "switchingdirectrunner"}
"""Runners whose workers run on this machine and whose shuffle is held in the launcher's memory.
Prism, portable, Flink and Dataflow shuffle elsewhere."""


def is_local_runner(options: PipelineOptions) -> bool:
    """Whether Beam's workers and shuffle live on this machine (FnApiRunner, the DirectRunners).

    Decides the grouping's disk spill, whether a query's batches are reshuffled, and where
    progress comes from.
    """
    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return True
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1].lower()
    return (name if name.endswith("runner") else name + "runner") in _LOCAL_RUNNERS


def configure_filesystems(options: PipelineOptions) -> None:
    """Beam's S3 file system needs options before the launcher reads any `s3://` table."""
    FileSystems.set_options(options)


def _has_flag(args, flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)
