"""Flags the command line passes on to Beam: refused early when Beam does not know them either."""

from pipeline.errors import UsageError

__all__ = ["check_beam_args", "flag_name"]


def check_beam_args(beam_args) -> None:
    """Raises `UsageError` naming the first flag that neither krux-export nor Beam knows, or an
    unknown runner: before any table is read."""
    if not beam_args:
        return
    from pipeline.launcher.beam_options import check_runner, unknown_beam_flag  # Beam loads only when needed

    unknown = unknown_beam_flag(beam_args)
    if unknown is not None:
        raise UsageError(f"unknown option {flag_name(unknown)} (see krux-export run --help)")
    check_runner(beam_args)


def flag_name(arg: str) -> str:
    """`--flag` of `--flag=value`: a mistyped flag's value may be a secret, never echo it."""
    return arg.split("=", 1)[0] if arg.startswith("-") else "(a value without its flag)"
