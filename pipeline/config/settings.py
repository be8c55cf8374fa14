"""`RunSettings`: the one object a run needs, from flags or a job file, checked when it is built.

Every entry point (command line, job file, workflow file, schedule) builds a `RunSettings`,
so every rule on names and combinations lives here once. A broken rule is a `SettingError`
naming the setting; each entry point words the setting its own way (`--export-name`,
`result_settings.export_name`).
"""

import calendar
import dataclasses
import datetime
import enum
import os
import re

from pipeline.config.workflow import QueryContext, read_query_file, render_query
from pipeline.errors import ConfigError, UsageError

__all__ = [
    "ATTRIBUTE_NAME_PATTERN",
    "COMPRESSIONS",
    "DEFAULT_BUCKET",
    "DEFAULT_EXPORT_NAME",
    "MAX_VALUES_PER_USER",
    "QueryText",
    "RunSettings",
    "Setting",
    "SettingError",
    "check_client_name",
    "check_export_name",
    "missing_database",
    "parse_date",
]

DEFAULT_BUCKET = "krux-partners"
DEFAULT_EXPORT_NAME = "first_party_segment"
COMPRESSIONS = ("gzip", "none")

CLIENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
EXPORT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_]+")
APPEND_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
MEMORY_SIZE_PATTERN = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", re.IGNORECASE)
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
ATTRIBUTE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")
"""Attribute names in a line: `:`, `;`, `,` or `^` in one would corrupt every line."""


class Setting(enum.Enum):
    """A `RunSettings` field, with its spelling on the command line and in a job file.

    `job_key` is None where a job file has no key for it (`date`: given when the job runs).
    """

    def __init__(self, field: str, flag: str, job_key: str | None):
        self.field, self.flag, self.job_key = field, flag, job_key

    SOURCES = ("sources", "--source", "source.sources")
    DATABASE = ("database", "--database", "source.database")
    TABLE_PREFIX = ("table_prefix", "--table-prefix", "source.table_prefix")
    USER_COLUMN = ("user_column", "--user-column", "source.user_column")
    SEGMENT_COLUMN = ("segment_column", "--segment-column", "source.segment_column")
    SEGMENT_ATTRIBUTE = ("segment_attribute", "--segment-attribute", "source.segment_attribute")
    CONNECTION = ("connection", "--connection", "result_connection")
    CLIENT_NAME = ("client_name", "--client-name", "client_name")
    BUCKET = ("bucket", "--bucket", "bucket")
    ENDPOINT_URL = ("endpoint_url", "--endpoint-url", "endpoint_url")
    REGION = ("region", "--s3-region", "region")
    DATE = ("date", "--date", None)
    APPEND = ("append", "--append", "result_settings.append")
    APPEND_KEY = ("append_key", "--append-key", "result_settings.append_key")
    MAX_DROP = ("max_drop", "--max-drop", "result_settings.max_drop")
    SKIP_INVALID_RECORDS = ("skip_invalid_records", "--skip-invalid-records", "result_settings.skip_invalid_records")
    REJECTS = ("rejects", "--rejects", "rejects")
    GROUP_BY_USER = ("group_by_user", "--group-by-user", "result_settings.group_by_user")
    MAX_VALUES_PER_USER = ("max_values_per_user", "--max-values-per-user", None)
    COMPRESSION = ("compression", "--compression", "result_settings.compression")
    EXPORT_NAME = ("export_name", "--export-name", "result_settings.export_name")
    OUTPUT_ROOT = ("output_root", "--output-root", "output_root")
    ALLOW_EMPTY = ("allow_empty", "--allow-empty", "result_settings.allow_empty")
    SUMMARY_JSON = ("summary_json", "--summary-json", None)
    QUERY = ("query", "--query", None)
    QUERY_FILE = ("query_file", "--query-file", "query")
    QUERY_MEMORY_LIMIT = ("query_memory_limit", "--query-memory-limit", None)
    WAREHOUSE = ("warehouse", "--warehouse", "warehouse")


class SettingError(ConfigError):
    """A setting that breaks a rule, and the other settings its `problem` names.

    Each entry point words the settings its own way (`--rejects: needs --skip-invalid-records`
    on the command line, `rejects: needs result_settings.skip_invalid_records` in a job file):
    `problem` holds one `{}` per setting in `mentions`.
    """

    def __init__(self, setting: Setting, problem: str, *mentions: Setting):
        self.setting, self.problem, self.mentions = setting, problem, mentions
        super().__init__(self.worded(lambda s: s.field))

    def worded(self, spell) -> str:
        """The one-line reason with each setting spelled by `spell(setting)`."""
        problem = self.problem.format(*(spell(s) for s in self.mentions)) if self.mentions else self.problem
        return f"{spell(self.setting)}: {problem}"


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
    """A `YYYY-MM-DD` day; one the calendar does not have (2026-02-30) is refused as such."""
    if not DATE_PATTERN.fullmatch(text):
        raise UsageError(f"date {text!r} is not of the form YYYY-MM-DD")
    year, month, day = (int(part) for part in text.split("-"))
    if not 1 <= month <= 12:
        raise UsageError(f"date {text!r} is not a real day: there is no month {month}")
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        raise UsageError(
            f"date {text!r} is not a real day: {calendar.month_name[month]} {year} has {days} days"
        )
    return datetime.date(year, month, day)


@dataclasses.dataclass(frozen=True)
class QueryText:
    """A run's SQL as it will run, and where it came from."""

    sql: str
    origin: str  # "--query", or the query file's path: where a SQL error points


def _check_percent(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
        raise UsageError(f"must be a percentage from 0 to 100, such as 50, got {shown}")


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
    append_key: str | None = None  # names an append's object instead of the run id: a retry replaces it
    max_drop: float | None = None  # percent: a run with that many fewer lines than the last object is refused
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
    warehouse: str | None = None  # a warehouse connection's name: the query runs there (SPEC §9)

    def __post_init__(self):
        _check(self)

    def replace(self, **changes) -> "RunSettings":
        """A copy with `changes`, checked again."""
        return dataclasses.replace(self, **changes)

    def query_text(self, date: datetime.date, moment: datetime.datetime) -> QueryText | None:
        """The run's query, if it has one: a file's read, a workflow task's with its variables
        substituted for the export's `date` and the run's start `moment`."""
        if self.query is None and self.query_file is None:
            return None
        if self.query is not None:
            sql, origin = self.query, Setting.QUERY.flag
        else:
            sql, origin = read_query_file(self.query_file), self.query_file
        if self.query_context is not None:
            sql = render_query(sql, self.query_context, date, moment, origin)
        return QueryText(sql, origin)


def _check(settings: RunSettings) -> None:
    def rule(setting: Setting, check) -> None:
        try:
            check(getattr(settings, setting.field))
        except UsageError as error:
            raise SettingError(setting, str(error)) from None

    rule(Setting.EXPORT_NAME, check_export_name)
    if settings.client_name is not None:
        rule(Setting.CLIENT_NAME, check_client_name)
    if settings.compression not in COMPRESSIONS:
        raise SettingError(
            Setting.COMPRESSION, f"must be one of {', '.join(COMPRESSIONS)}, got {settings.compression!r}"
        )
    if not ATTRIBUTE_NAME_PATTERN.fullmatch(settings.segment_attribute or ""):
        raise SettingError(
            Setting.SEGMENT_ATTRIBUTE,
            f"{settings.segment_attribute!r} cannot be an attribute name (allowed: letters, digits, '_', '.', '-')",
        )
    if settings.append_key is not None:
        if not settings.append:
            raise SettingError(
                Setting.APPEND_KEY, "needs {} (a replace run's object always has the fixed name)", Setting.APPEND
            )
        if not APPEND_KEY_PATTERN.fullmatch(settings.append_key):
            raise SettingError(Setting.APPEND_KEY, f"{settings.append_key!r} must match [A-Za-z0-9_.-]+")
    if settings.max_drop is not None:
        rule(Setting.MAX_DROP, _check_percent)
    if settings.rejects and not settings.skip_invalid_records:
        raise SettingError(
            Setting.REJECTS,
            "needs {} (without it the first invalid row stops the run)",
            Setting.SKIP_INVALID_RECORDS,
        )
    if not isinstance(settings.max_values_per_user, int) or settings.max_values_per_user < 1:
        raise SettingError(
            Setting.MAX_VALUES_PER_USER, f"must be a whole number of at least 1, got {settings.max_values_per_user!r}"
        )
    if settings.query is not None and settings.query_file is not None:
        raise SettingError(Setting.QUERY, "give a query or {}, not both", Setting.QUERY_FILE)
    if settings.query is not None or settings.query_file is not None:
        for setting in (Setting.USER_COLUMN, Setting.SEGMENT_COLUMN):
            if getattr(settings, setting.field) != getattr(RunSettings, setting.field):
                raise SettingError(
                    setting, "does not apply to a query: its result's first two columns are user_id and td_segment"
                )
    if settings.warehouse is not None:
        if settings.query is None and settings.query_file is None:
            raise SettingError(Setting.WAREHOUSE, "runs a query: give {} or {} too", Setting.QUERY, Setting.QUERY_FILE)
        if settings.sources or settings.database:
            raise SettingError(
                Setting.WAREHOUSE, "the query reads the warehouse's tables: give no {} or {}",
                Setting.SOURCES, Setting.DATABASE,
            )
    if settings.query_memory_limit is not None and not MEMORY_SIZE_PATTERN.fullmatch(settings.query_memory_limit):
        raise SettingError(
            Setting.QUERY_MEMORY_LIMIT, f"must be a size such as 512MB or 4GB, got {settings.query_memory_limit!r}"
        )


def missing_database(settings: RunSettings) -> SettingError | None:
    """A local `database` folder that is not there, as a `SettingError` its entry point words.

    Checked when a run starts, not when a job file is read: `schedule --next` and `history --job`
    need no data.
    """
    database = settings.database
    if database is None or "://" in database or os.path.isdir(database):
        return None
    return SettingError(Setting.DATABASE, f"{database}: no such directory")
