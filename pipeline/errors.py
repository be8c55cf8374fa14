"""Errors a run can end with, each carrying the exit code SPEC §7 gives it.

Only `pipeline.cli` turns them into an exit; everything else raises.
"""


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


class StorageError(ExportError):
    """S3 or the local file system refused or failed."""

    exit_code = 4


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every `finally` cleans up as for Ctrl-C."""
