"""Job files: YAML to a `Job`, whose `RunSettings` are what `run` would take.

Every mistake is a `ConfigError` of one line naming the file, the key and what was expected
(`job.yml: result_settings.append must be true or false, got 'yes please'`), found when the
file is loaded, not hours later when the schedule first fires.
"""

import dataclasses
import datetime
import difflib
import os
import re
import zoneinfo

import yaml

from pipeline.config.notify import Notify, parse_notify
from pipeline.config.settings import RunSettings, Setting, SettingError
from pipeline.config.workflow import QueryContext, check_variables, read_query_file, read_workflow
from pipeline.config.wording import shown
from pipeline.config.yaml_loader import PlainLoader, quoting_hint
from pipeline.errors import ConfigError
from pipeline.schedule.cron import ALIASES, DEFAULT_SEMANTICS, SEMANTICS, cron_fields

__all__ = ["Job", "load_job", "settings_with_overrides"]

EXPORT_TYPES = ("first_party_segment",)

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")

# Top-level keys copied as they are onto `RunSettings` fields of the same name.
_DESTINATION_KEYS = ("client_name", "bucket", "endpoint_url", "region")
_SOURCE_KEYS = ("database", "table_prefix", "sources", "source", "user_column", "segment_column", "segment_attribute")
_RESULT_FLAGS = ("skip_invalid_records", "append", "group_by_user", "allow_empty")
_RESULT_NAMES = ("compression", "export_name", "append_key")
_RESULT_KEYS = ("export_type", *_RESULT_FLAGS, *_RESULT_NAMES, "max_drop")
_COLUMN_KEYS = ("table_prefix", "user_column", "segment_column", "segment_attribute")
# Where a workflow file writes a setting, where that differs from a YAML job file.
_WORKFLOW_KEYS = {
    Setting.DATABASE: "_export.td.database", Setting.WAREHOUSE: "_export.td.warehouse", Setting.QUERY_FILE: "td>",
}
_TOP_KEYS = ("name", "timezone", "schedule", "delay", "source", "result_connection", "result_settings",
             *_DESTINATION_KEYS, "output_root", "rejects", "beam_args", "cron_semantics", "notify", "query",
             "warehouse")
WORKFLOW_SUFFIX = ".dig"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Job:
    """A loaded job file: when it runs, and the settings each run starts from."""

    name: str
    timezone: str = "UTC"
    schedule: str | None = None
    delay: datetime.timedelta = datetime.timedelta(0)
    settings: RunSettings
    path: str
    cron_semantics: str = DEFAULT_SEMANTICS
    notify: Notify | None = None
    tasks: tuple[tuple[str, RunSettings], ...] = ()  # a workflow's (task name, settings), in file order

    def key_of(self, setting: Setting) -> str:
        """How the job file writes `setting`: `result_settings.skip_invalid_records`, or in a
        workflow file `_export.td.database`."""
        return _key_in_file(setting, workflow=self.path.endswith(WORKFLOW_SUFFIX))


def load_job(path) -> Job:
    """Reads and checks a job file (YAML, or a `.dig` workflow); relative paths in it are taken
    from the file's folder."""
    path = os.fspath(path)
    if path.endswith(WORKFLOW_SUFFIX):
        return _load_workflow(path)
    document = _JobFile(path)
    return _job_from(document, document.mapping(document.parse(), "", required=True))


def _load_workflow(path: str) -> Job:
    """A `.dig` file's tasks, each checked as a job file holding the workflow's shared keys."""
    workflow = read_workflow(path)
    jobs = [
        _job_from(_JobFile(path, label=f"{path}: task +{task.name}", workflow=True), {**workflow.document, **task.document},
                  query_context=workflow.context)
        for task in workflow.tasks
    ]
    tasks = tuple((task.name, job.settings) for task, job in zip(workflow.tasks, jobs))
    return dataclasses.replace(jobs[0], tasks=tasks)


def _job_from(document: "_JobFile", top: dict, *, query_context: QueryContext | None = None) -> Job:
    path = document.path
    document.check_keys(top, _TOP_KEYS, "")
    base_dir = os.path.dirname(os.path.abspath(path))

    name = document.string(top, "name", required=True)
    timezone = document.string(top, "timezone") or "UTC"
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        document.fail(f"timezone must be an IANA time zone name such as UTC or Europe/Berlin, got {timezone!r}")
    expression = document.string(top, "schedule")
    cron_semantics = document.string(top, "cron_semantics") or DEFAULT_SEMANTICS
    if cron_semantics not in SEMANTICS:
        document.fail(f"cron_semantics must be one of {', '.join(SEMANTICS)}, got {cron_semantics!r}")
    if expression is not None:
        try:
            cron_fields(expression, cron_semantics)
        except ValueError as error:
            document.fail(f"schedule {expression!r} {error}{_shortcut_hint(expression)}")
    try:
        notify = parse_notify(top.get("notify"), base_dir)
    except ValueError as error:
        document.fail(str(error))
    delay = _duration(document, top.get("delay"))

    query = document.string(top, "query")
    source = document.mapping(top.get("source"), "source", required=query is None)
    document.check_keys(source, _SOURCE_KEYS, "source.")
    sources = document.strings(source, "sources", "source.")
    single = document.string(source, "source", "source.")
    if "sources" in source and single is not None:
        document.fail("give source.sources (a list) or source.source (one), not both")
    sources += [single] if single is not None else []
    database = document.string(source, "database", "source.")
    if not sources and database is None and query is None:
        document.fail("source needs database (with table_prefix) or sources")

    result = document.mapping(top.get("result_settings"), "result_settings", required=True)
    document.check_keys(result, _RESULT_KEYS, "result_settings.")
    export_type = document.string(result, "export_type", "result_settings.", required=True)
    if export_type not in EXPORT_TYPES:
        document.fail(f"result_settings.export_type: {export_type!r} is not supported; only first_party_segment")
    flags = {key: document.flag(result, key, "result_settings.") for key in _RESULT_FLAGS}
    named = {key: document.string(result, key, "result_settings.") for key in _RESULT_NAMES}
    max_drop = document.number(result, "max_drop", "result_settings.")

    destination = {key: document.string(top, key) for key in _DESTINATION_KEYS}
    connection = document.string(top, "result_connection")
    output_root = document.string(top, "output_root")
    if not (connection or destination["client_name"] or output_root):
        document.fail("no destination: give result_connection, client_name or output_root")
    rejects = document.string(top, "rejects")

    def resolve(location):
        return _relative_to(base_dir, location) if location is not None else None

    columns = {key: document.string(source, key, "source.") for key in _COLUMN_KEYS}
    query_file = resolve(query)
    if query_file is not None:
        sql = read_query_file(query_file)  # refused now, not when the schedule first fires
        if query_context is not None:
            check_variables(sql, query_context, query_file)
    given = dict(
        sources=tuple(resolve(s) for s in sources),
        database=resolve(database),
        connection=connection,
        output_root=resolve(output_root),
        rejects=resolve(rejects),
        beam_args=tuple(document.strings(top, "beam_args")),
        query_file=query_file,
        query_context=query_context,
        max_drop=max_drop,
        warehouse=document.string(top, "warehouse"),
        **columns,
        **named,
        **destination,
        **flags,
    )
    try:
        settings = RunSettings(**{key: value for key, value in given.items() if value is not None})
    except SettingError as error:
        document.fail(error.worded(document.key_of))
    return Job(name=name, settings=settings, path=path, timezone=timezone, schedule=expression, delay=delay,
               cron_semantics=cron_semantics, notify=notify)


def settings_with_overrides(job_settings: RunSettings, overrides: dict) -> RunSettings:
    """The job's settings with the command line's values on top.

    A value of None means "not given" and keeps the job's; `beam_args` are appended to the
    job's, so a flag given on the command line comes last and wins. A query given either
    way replaces the job's query, whichever way the job gives it.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    if given.keys() & {"query", "query_file"}:
        given = {"query": None, "query_file": None, **given}
    if "beam_args" in given:
        given["beam_args"] = (*job_settings.beam_args, *given["beam_args"])
    return job_settings.replace(**given)


def _duration(document: "_JobFile", value) -> datetime.timedelta:
    if value is None:
        return datetime.timedelta(0)
    match = _DURATION.fullmatch(value) if isinstance(value, str) and value else None
    if not match:
        document.fail(f"delay must be a duration such as 30s, 10m, 1h or 1h30m, got {value!r}")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _key_in_file(setting: Setting, *, workflow: bool) -> str:
    if workflow and setting in _WORKFLOW_KEYS:
        return _WORKFLOW_KEYS[setting]
    return setting.job_key or setting.flag  # a setting no job file holds came from the command line


def _shortcut_hint(expression: str) -> str:
    """`daily` for `@daily`: the shortcuts are written with their `@`, quoted."""
    shortcut = "@" + expression.strip().lower()
    return f' (did you mean "{shortcut}"?)' if shortcut in ALIASES else ""


def _relative_to(base_dir: str, location: str) -> str:
    """A local path taken from the job file's folder; URIs such as s3://... are left as they are."""
    if "://" in location:
        return location
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(location)))


class _UniqueKeyLoader(PlainLoader):
    """PlainLoader that refuses a key given twice, which PyYAML would otherwise let the last one win."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key} appears more than once", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _JobFile:
    """Reads typed values out of one job file, each error naming the file and the key path."""

    def __init__(self, path: str, *, label: str | None = None, workflow: bool = False):
        self.path = path
        self.label = label or path  # where messages say the error is
        self.workflow = workflow

    def fail(self, message: str):
        raise ConfigError(f"{self.label}: {message}")

    def parse(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                return yaml.load(handle, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
        except OSError as error:
            self.fail(f"cannot read the job file: {error.strerror or error}")
        except UnicodeDecodeError:
            self.fail("is not UTF-8 text")
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            hint = quoting_hint(self.path, error)
            self.fail(f"not valid YAML: {problem}{where}{hint}")

    def mapping(self, value, key: str, *, required: bool = False) -> dict:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            what = f"{key} must be" if key else "must hold"
            self.fail(f"{what} a mapping of keys to values, got {shown(value)}")
        return value

    def check_keys(self, mapping: dict, allowed, prefix: str) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                guess = f"did you mean {prefix}{close[0]}? " if close else ""
                self.fail(f"unknown key {prefix}{key} ({guess}allowed: {', '.join(allowed)})")

    def key_of(self, setting: Setting) -> str:
        """How this file writes `setting` (`result_settings.skip_invalid_records`)."""
        return _key_in_file(setting, workflow=self.workflow)

    def string(self, mapping: dict, key: str, prefix: str = "", *, required: bool = False) -> str | None:
        value = mapping.get(key)
        if value is None:
            if required:
                self.fail(f"{prefix}{key} is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{prefix}{key} must be a non-empty string, got {shown(value)}")
        return value

    def strings(self, mapping: dict, key: str, prefix: str = "") -> list[str]:
        value = mapping.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(f"{prefix}{key} must be a list of non-empty strings, got {shown(value)}")
        return list(value)

    def number(self, mapping: dict, key: str, prefix: str = "") -> float | None:
        """A number; also as text (`.dig` files keep every value as text: `max_drop: 50` is '50')."""
        value = mapping.get(key)
        if value is None:
            return None
        if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{prefix}{key} must be a number, got {shown(value)}")
        return float(value)

    def flag(self, mapping: dict, key: str, prefix: str = "") -> bool:
        value = mapping.get(key, False)
        if not isinstance(value, bool):
            self.fail(f"{prefix}{key} must be true or false, got {shown(value)}")
        return value

