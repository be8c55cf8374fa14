"""`krux-export schedule FILE [--next N]` (SPEC §6). STUB: being written."""


def register(commands) -> None:
    """Adds the `schedule` subcommand to the CLI's subparsers."""
