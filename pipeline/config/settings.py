"""`RunSettings`: the one object a run needs, from flags or a job file, checked when it is built.

Every entry point (command line, job file, workflow file, schedule) builds a `RunSettings`,
so every rule on names and combinations lives here once. A broken rule is a `SettingError`
naming the setting; each entry point words the setting its own way (`--export-name`,
`result_settings.export_name`).
"""

import dataclasses
import datetime
import re

from pipeline.config.workflow import QueryContext
from pipeline.errors import ConfigError, UsageError

__all__ = [
    "ATTRIBUTE_NAME_PATTERN",
    "COMPRESSIONS",
    "DEFAULT_BUCKET",
    "DEFAULT_EXPORT_NAME",
    "MAX_VALUES_PER_USER",
    "RunSettings",
    "SettingError",
    "check_client_name",
    "check_export_name",
    "parse_date",
]

DEFAULT_BUCKET = "krux-partners"
DEFAULT_EXPORT_NAME = "first_party_segment"
COMPRESSIONS = ("gzip", "none")

CLIENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
EXPORT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")
MEMORY_SIZE_PATTERN = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", re.IGNORECASE)
ATTRIBUTE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
"""Attribute names in a line: `:`, `;`, `,` or `^` in one would corrupt every line."""


class SettingError(ConfigError):
    """A setting that breaks a rule; `setting` is the `RunSettings` field's name."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def check_client_name(name: str) -> str:
    """`[A-Za-z0-9._-]+`, no `..`, so a name can never leave its own folder."""
    if not CLIENT_NAME_PATTERN.fullmatch(name or "") or ".." in name or name == ".":
        raise UsageError(f"client name {name!r} must match [A-Za-z0-9._-]+ and not contain '..'")
    return name


def check_export_name(name: str) -> str:
    """`[A-Za-z0-9_]+`: no `-`, so `{export_name}-*` (append files) never matches another export."""
    if not EXPORT_NAME_PATTERN.fullmatch(name or ""):
        raise UsageError(f"export name {name!r} must match [A-Za-z0-9_]+")
    return name


def parse_date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"date {text!r} is not a date of the form YYYY-MM-DD") from None


MAX_VALUES_PER_USER = 100_000
"""With --group-by-user, a user with more distinct values (all attributes together) is refused:
no real user has a hundred thousand segments and attributes, but a placeholder id (`0`,
`unknown`) shared by millions of rows may, and its line would be tens of MiB."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything `run` takes. Holds names and paths, never a secret."""

    sources: tuple[str, ...] = ()
    database: str | None = None
    table_prefix: str = "segment_"
    user_column: str = "user_id"
    segment_column: str = "td_segment"
    segment_attribute: str = "segment"
    connection: str | None = None
    client_name: str | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    date: datetime.date | None = None
    append: bool = False
    skip_invalid_records: bool = False
    rejects: str | None = None
    group_by_user: bool = False
    max_values_per_user: int = MAX_VALUES_PER_USER
    compression: str = "gzip"
    export_name: str = DEFAULT_EXPORT_NAME
    output_root: str | None = None
    allow_empty: bool = False
    summary_json: str | None = None
    beam_args: tuple[str, ...] = ()
    query: str | None = None  # SQL over the tables, instead of exporting them
    query_file: str | None = None  # a file holding that SQL
    query_memory_limit: str | None = None  # DuckDB's memory limit, e.g. "4GB"
    query_context: QueryContext | None = None  # a workflow task's: its ${...} are substituted

    def __post_init__(self):
        _check(self)

    def replace(self, **changes) -> "RunSettings":
        """A copy with `changes`, checked again."""
        return dataclasses.replace(self, **changes)


def _check(settings: RunSettings) -> None:
    def rule(setting: str, check) -> None:
        try:
            check(getattr(settings, setting))
        except UsageError as error:
            raise SettingError(setting, str(error)) from None

    rule("export_name", check_export_name)
    if settings.client_name is not None:
        rule("client_name", check_client_name)
    if settings.compression not in COMPRESSIONS:
        raise SettingError("compression", f"must be one of {', '.join(COMPRESSIONS)}, got {settings.compression!r}")
    if not ATTRIBUTE_NAME_PATTERN.fullmatch(settings.segment_attribute or ""):
        raise SettingError(
            "segment_attribute",
            f"{settings.segment_attribute!r} cannot be an attribute name (allowed: letters, digits, '_', '.', '-')",
        )
    if settings.rejects and not settings.skip_invalid_records:
        raise SettingError(
            "rejects", "needs skip_invalid_records (without it the first invalid row stops the run)"
        )
    if not isinstance(settings.max_values_per_user, int) or settings.max_values_per_user < 1:
        raise SettingError("max_values_per_user", f"must be a whole number of at least 1, got {settings.max_values_per_user!r}")
    if settings.query is not None and settings.query_file is not None:
        raise SettingError("query", "give a query or a query file, not both")
    if settings.query is not None or settings.query_file is not None:
        for setting in ("user_column", "segment_column"):
            if getattr(settings, setting) != getattr(RunSettings, setting):
                raise SettingError(
                    setting, "does not apply to a query: its result's first two columns are user_id and td_segment"
                )
    if settings.query_memory_limit is not None and not MEMORY_SIZE_PATTERN.fullmatch(settings.query_memory_limit):
        raise SettingError(
            "query_memory_limit", f"must be a size such as 512MB or 4GB, got {settings.query_memory_limit!r}"
        )
