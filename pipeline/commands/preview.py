"""`krux-export preview`: the first lines a run would write, and the invalid rows among those read.

Lines go to stdout; counts and the first invalid rows (values redacted) to stderr.
"""

import argparse
import logging

from pipeline.commands.beam_flags import check_beam_args
from pipeline.commands.run import add_run_arguments, run_settings
from pipeline.commands.startup import imports_uncollected
from pipeline.config.wording import plural
from pipeline.errors import UsageError

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(commands) -> None:
    parser = commands.add_parser(
        "preview",
        help="print the first lines a run would write; touches no storage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Print the first Krux lines a run would write, and the first invalid rows among\n"
        "those read (values redacted), with their counts. Reads a small batch at a time and stops\n"
        "when it has enough lines; writes nothing anywhere. Takes run's options but those about\n"
        "what a run publishes; destination options are ignored.",
        epilog="example:\n"
        "  krux-export preview --database ./warehouse/activate_to_krux --user-column KUID \\\n"
        "      --segment-column segment_name --limit 5\n\n"
        "reference: docs/commands.md, docs/line.md",
    )
    add_run_arguments(parser, publishes=False)
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="lines to print (default 20)")
    parser.set_defaults(handler=_preview_command, takes_beam_args=True)


def _preview_command(args, beam_args, runtime) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    check_beam_args(beam_args, args.known_flags)
    settings = run_settings(args, beam_args)
    # Beam and pyarrow load only when a preview needs them (start-up cost).
    with imports_uncollected():
        from pipeline.launcher.beam_options import beam_options, configure_filesystems
        from pipeline.launcher.preview import GROUPED_PREVIEW_ROWS, preview

    configure_filesystems(beam_options(beam_args))
    seen = preview(settings, args.limit)
    for line in seen.lines:
        print(line)
    grouped = f" (grouped within the first {plural(GROUPED_PREVIEW_ROWS, 'row')})" if settings.group_by_user else ""
    invalid = ", ".join(f"{reason}: {count:,}" for reason, count in seen.invalid.items()) or "none"
    log.info("%s from %s read%s; invalid rows: %s", plural(len(seen.lines), "line"), plural(seen.rows_read, "row"),
             grouped, invalid)
    for example in seen.invalid_examples:
        log.info("invalid: %s", example)
    return 0
