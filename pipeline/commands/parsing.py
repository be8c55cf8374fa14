"""The argparse side of the command line: a parser that raises, subcommands that say their names.

Unknown flags are not refused here: `run`, `preview` and `schedule` pass them on to Beam
(`beam_flags`), so each parser remembers its own flags (`known_flags`) for the "did you mean"
of a flag that neither it nor Beam knows.
"""

import argparse
import difflib

from pipeline.errors import UsageError

__all__ = ["LOG_VARIABLE", "ArgumentParser", "add_commands", "remember_flags"]

LOG_VARIABLE = "KRUX_EXPORT_LOG"
"""`KRUX_EXPORT_LOG=debug` does what `--verbose` does, for runs started by a scheduler."""


class ArgumentParser(argparse.ArgumentParser):
    """Raises `UsageError` instead of exiting, so `run` can still print its JSON line.

    No abbreviations: a shortened or mistyped flag must not silently mean another one. Every
    command and subcommand takes `--verbose`, wherever it is put on the line.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                          help=f"debug lines, and the traceback of a failure, a worker's too "
                          f"(or {LOG_VARIABLE}=debug)")

    def error(self, message):
        raise UsageError(message)

    def _check_value(self, action, value):
        """A mistyped command says which commands there are, and the closest."""
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            known = list(action.choices)
            close = difflib.get_close_matches(value, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            parent = self.prog.partition(" ")[2]  # "connection" of "krux-export connection"
            kind = f"{parent} command" if parent else "command"
            raise UsageError(f"unknown {kind} {value!r} ({hint}{kind}s: {', '.join(known)})")
        super()._check_value(action, value)


def add_commands(parser: argparse.ArgumentParser, dest: str):
    """`parser`'s subcommands; given none, the command says which there are.

    (argparse would say `the following arguments are required: {dest}`, naming its variable.)
    """
    commands = parser.add_subparsers(dest=dest, metavar="COMMAND", parser_class=ArgumentParser)

    def choose(args, beam_args, runtime):
        command = parser.prog.partition(" ")[2]  # "connection" of "krux-export connection"
        where = f"{command} needs a command" if command else "give a command"
        raise UsageError(f"{where}: {', '.join(commands.choices)} (see {parser.prog} --help)")

    parser.set_defaults(handler=choose)
    return commands


def remember_flags(parser: argparse.ArgumentParser) -> None:
    """Sets `known_flags` on `parser` and each of its subcommands: the flags each one takes."""
    flags = tuple(flag for action in parser._actions for flag in action.option_strings if flag.startswith("--"))
    parser.set_defaults(known_flags=flags)
    for action in parser._actions:  # argparse lists options and subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for subcommand in action.choices.values():
                remember_flags(subcommand)
