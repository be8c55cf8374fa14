"""Errors a run can end with, each carrying its exit code (0 done, 2 usage or schema, 3 records, 4 storage, 1 else;
143 after SIGTERM, 130 after Ctrl-C).

Only `pipeline.commands` turns them into an exit; everything else raises.

How an error raised in a Beam worker reaches the launcher: runners hand a worker's failure
back as text (its traceback, wrapped and sometimes escaped by a job service), or, in-process,
as the exception itself. So every `ExportError` carries its class and fields as one line of
base64 JSON between markers (`krux-export-error[...]`), attached as a note that tracebacks
print; `error_from_worker` finds the last such payload in whatever text came back and rebuilds
the error through `ExportError.from_payload`, whatever its class's constructor takes.
"""

import base64
import binascii
import json
import re

__all__ = [
    "ConfigError",
    "EmptyResultError",
    "ExportError",
    "Interrupted",
    "InvalidRecordsError",
    "SIGNAL_EXIT_CODES",
    "SchemaError",
    "StorageError",
    "Terminated",
    "UNEXPECTED",
    "UnexpectedError",
    "UsageError",
    "describe_failure",
    "error_from_worker",
    "in_run",
]

PAYLOAD_START, PAYLOAD_END = "krux-export-error[", "]"
_PAYLOAD = re.compile(re.escape(PAYLOAD_START) + r"([A-Za-z0-9_-]+)" + re.escape(PAYLOAD_END))
"""base64url: no character that a runner's quoting or escaping would change."""


class _RunFacts:
    """The run's id and day, set by the launcher once it knows them (SPEC §7: failure lines carry them)."""

    run_id: str | None = None
    date: str | None = None  # YYYY-MM-DD


class ExportError(_RunFacts, Exception):
    """A failure with a one-line reason for the user, and its fields (`table`, `row`...) if any.

    Fields are JSON values, kept as attributes and in the payload a worker's traceback carries.
    """

    exit_code = 1
    _kinds: dict[str, type["ExportError"]] = {}

    # Beam rebuilds a DoFn's exception as `type(e)(e.args[0] + " [while running 'Step']")`
    # unless it is marked as already tagged: ours keep their class, reason and fields as raised.
    _tagged_with_step = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ExportError._kinds[cls.__name__] = cls

    def __init__(self, reason: str, **fields):
        super().__init__(reason)
        self.fields = fields
        for name, value in fields.items():
            setattr(self, name, value)
        self.add_note(self.payload())

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else ""

    def payload(self) -> str:
        """This error as one marked line: `krux-export-error[<base64url of {"kind", "reason", "fields"}>]`."""
        data = json.dumps({"kind": type(self).__name__, "reason": self.reason, "fields": self.fields}, default=str)
        return PAYLOAD_START + base64.urlsafe_b64encode(data.encode()).decode().rstrip("=") + PAYLOAD_END

    def __reduce__(self):
        # Pickled (between processes) as the payload is: class, reason, fields, and the run facts.
        return type(self).from_payload, (self.reason, self.fields), self.__dict__

    @classmethod
    def from_payload(cls, reason: str, fields: dict) -> "ExportError":
        """The error a payload describes, without calling a subclass's own constructor.

        A subclass whose constructor takes other arguments (`SettingError(setting, problem)`)
        comes back with its reason and fields as raised.
        """
        error = cls.__new__(cls)
        ExportError.__init__(error, reason, **fields)
        return error


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


UNEXPECTED = "unexpected error, likely a bug (--verbose shows the traceback)"


class UnexpectedError(ExportError):
    """Something no rule expects (a bug, memory exhausted): exit 1, naming the class and message.

    `context` says where (`table t: reading PATH`); `--verbose` shows the traceback.
    """

    @classmethod
    def of(cls, error: BaseException, context: str | None = None) -> "UnexpectedError":
        where = f"{context}: " if context else ""
        return cls(f"{where}{UNEXPECTED}: {_class_and_message(error)}", error_class=type(error).__name__)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so every `finally` cleans up as for Ctrl-C."""


SIGNAL_EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}
"""128 + the signal's number, as a shell reports a process the signal ended."""


class Interrupted(_RunFacts, BaseException):
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


def in_run(error: BaseException, run_id: str, date: str) -> BaseException:
    """`error` as the failure of run `run_id` for day `date`: ours carry both as attributes.

    A bug becomes an `UnexpectedError` and a signal an `Interrupted` (nothing published yet),
    so whatever escapes a run can tell its id and day. Raise the result `from error` if it is new.
    """
    if isinstance(error, Terminated | KeyboardInterrupt):
        error = Interrupted("SIGTERM" if isinstance(error, Terminated) else "SIGINT")
    elif not isinstance(error, ExportError | Interrupted):
        if not isinstance(error, Exception):
            return error  # SystemExit, GeneratorExit: not a failure of the run
        error = UnexpectedError.of(error)
    if error.run_id is None:
        error.run_id, error.date = run_id, date
    return error


def describe_failure(error: BaseException) -> tuple[int, str]:
    """The exit code and one-line reason of a failed run, whatever was raised."""
    if isinstance(error, ExportError | Interrupted):
        exit_code, reason = error.exit_code, str(error)
    elif isinstance(error, Terminated):
        exit_code, reason = SIGNAL_EXIT_CODES["SIGTERM"], "interrupted by SIGTERM"
    elif isinstance(error, KeyboardInterrupt):
        exit_code, reason = SIGNAL_EXIT_CODES["SIGINT"], "interrupted by SIGINT"
    else:
        exit_code, reason = 1, UnexpectedError.of(error).reason
    return exit_code, " ".join(reason.split()) or "failed"


def error_from_worker(text: str) -> ExportError | None:
    """Our error raised in a Beam worker, rebuilt from the last payload in the runner's text, if any.

    The last one: a traceback prints chained causes first and the error itself last.
    """
    for encoded in reversed(_PAYLOAD.findall(text)):
        try:
            data = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
            kind = ExportError._kinds.get(data["kind"], ExportError)
            return kind.from_payload(str(data["reason"]), dict(data["fields"]))
        except (binascii.Error, ValueError, KeyError, TypeError):
            continue  # cut or mangled on the way: an earlier copy may be whole
    return None


def _class_and_message(error: BaseException) -> str:
    message = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def first_line(error: BaseException) -> str:
    """The first line of an error's text, or its class name when it has none."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
