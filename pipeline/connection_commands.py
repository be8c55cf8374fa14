"""`krux-export connection add|list|test|remove` (SPEC §5). STUB: being written."""


def register(commands) -> None:
    """Adds the `connection` subcommand to the CLI's subparsers."""
