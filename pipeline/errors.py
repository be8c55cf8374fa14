"""Errors a run can end with, each carrying its exit code (0 done, 2 usage or schema, 3 records, 4 storage, 1 else;
143 after SIGTERM, 130 after Ctrl-C).

Only `pipeline.commands` turns them into an exit; everything else raises.
"""

import re


class ExportError(Exception):
    """A failure with a one-line reason for the user."""

    exit_code = 1


class UsageError(ExportError):
    """Bad command line or configuration (a missing flag, a bad name, a bad date)."""

    exit_code = 2


class ConfigError(UsageError):
    """A connection, job file or setting that cannot be used."""


class SchemaError(UsageError):
    """A table that cannot be exported as it is (missing or mistyped column, bad file)."""


class InvalidRecordsError(ExportError):
    """Invalid rows without --skip-invalid-records."""

    exit_code = 3


class EmptyResultError(ExportError):
    """Zero valid lines without --allow-empty."""

    exit_code = 3


class ShrunkenAudienceError(ExportError):
    """More lines fewer than `--max-drop` allows against the export's last published object."""

    exit_code = 3


class StorageError(ExportError):
    """S3 or the local file system refused or failed."""

    exit_code = 4


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every `finally` cleans up as for Ctrl-C."""


SIGNAL_EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}
"""128 + the signal's number, as a shell reports a process the signal ended."""


class Interrupted(BaseException):
    """A run stopped by SIGTERM or Ctrl-C, after cleaning up; says whether it had published.

    A BaseException, like the signal it comes from, so a schedule stops too.
    """

    def __init__(self, signal_name: str, published_uri: str | None = None):
        outcome = (
            f"{published_uri} was published; objects it replaces go at the next run"
            if published_uri
            else "nothing was published"
        )
        super().__init__(f"interrupted by {signal_name}; {outcome}")
        self.signal_name = signal_name
        self.published_uri = published_uri
        self.exit_code = SIGNAL_EXIT_CODES[signal_name]


def describe_failure(error: BaseException) -> tuple[int, str]:
    """The exit code and one-line reason of a failed run, whatever was raised."""
    if isinstance(error, (ExportError, Interrupted)):
        exit_code, reason = error.exit_code, str(error)
    elif isinstance(error, Terminated):
        exit_code, reason = SIGNAL_EXIT_CODES["SIGTERM"], "interrupted by SIGTERM"
    elif isinstance(error, KeyboardInterrupt):
        exit_code, reason = SIGNAL_EXIT_CODES["SIGINT"], "interrupted by SIGINT"
    else:
        exit_code, reason = 1, (f"unexpected error: {type(error).__name__}: {error}".splitlines() or ["failed"])[0]
    return exit_code, " ".join(reason.split()) or "failed"


def error_from_worker(text: str) -> ExportError | None:
    """Our error raised in a Beam worker, found in the text the runner reports, if any.

    Runners hand a worker's failure back as text (a traceback whose last line is
    `pipeline.errors.SchemaError: table t: ...`); the type and one-line reason come back
    from it, without Beam's ` [while running ...]` step suffix.
    """
    classes = _error_classes(ExportError)
    pattern = re.compile(r"\b(" + "|".join(sorted(classes, key=len, reverse=True)) + r"): (.+)")
    found = None
    for match in pattern.finditer(text):
        found = match  # the last one: the error itself, after any chained causes
    if found is None:
        return None
    reason = found.group(2).split(" [while running")[0].strip()
    return classes[found.group(1)](reason)


def _error_classes(base: type) -> dict[str, type]:
    classes = {base.__name__: base}
    for subclass in base.__subclasses__():
        classes.update(_error_classes(subclass))
    return classes

