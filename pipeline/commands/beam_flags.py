"""Flags the command line passes on to Beam: refused early when Beam does not know them either."""

import difflib

from pipeline.commands.startup import imports_uncollected
from pipeline.errors import UsageError

__all__ = ["check_beam_args", "did_you_mean", "flag_name"]


def check_beam_args(beam_args, known_flags=()) -> None:
    """Raises `UsageError` naming the first flag that neither krux-export nor Beam knows (with
    the closest of `known_flags`, the command's own, when one is close), or an unknown runner:
    before any table is read."""
    if not beam_args:
        return
    with imports_uncollected():
        from pipeline.launcher.beam_options import check_runner, unknown_beam_flag  # Beam loads only when needed

    unknown = unknown_beam_flag(beam_args)
    if unknown is not None:
        raise UsageError(f"unknown option {flag_name(unknown)}{did_you_mean(unknown, known_flags)}")
    check_runner(beam_args)


def flag_name(arg: str) -> str:
    """`--flag` of `--flag=value`: a mistyped flag's value may be a secret, never echo it."""
    return arg.split("=", 1)[0] if arg.startswith("-") else "(a value without its flag)"


def did_you_mean(arg: str, known_flags) -> str:
    """` (did you mean --skip-invalid-records?)` for `--skip-invalid-record`, or ""."""
    close = difflib.get_close_matches(flag_name(arg), known_flags, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else " (see --help)"
