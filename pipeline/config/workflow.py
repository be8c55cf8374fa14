"""Workflow files (`.dig`): the seed's workflow syntax for this connector, read as job documents.

    timezone: UTC
    schedule:
      daily>: 00:10:00
    _export:
      td:
        database: activate_to_krux
      min_score: 10
    +export_to_krux:
      td>: queries/consolidate.sql
      result_connection: my_salesforce_dmp_connector
      result_settings:
        export_type: first_party_segment

A `.dig` file is YAML read as people write it: every scalar is the text written (`00:10:00`
stays `00:10:00`; a YAML 1.1 reader makes it 600), only plain `true`/`false` are booleans.
Each task becomes a job document in the YAML job file's shape, which `jobs.py` checks like
any job file. Queries get `${session_date}`, `${session_date_compact}`, `${session_time}` and
`_export`'s scalars substituted when they run.
"""

import dataclasses
import datetime
import re
import zoneinfo

import yaml

from pipeline.config.yaml_loader import quoting_hint
from pipeline.errors import ConfigError
from pipeline.schedule.cron import cron_fields

__all__ = [
    "QueryContext",
    "Workflow",
    "WorkflowTask",
    "check_variables",
    "read_query_file",
    "read_workflow",
    "render_query",
]

SESSION_VARIABLES = ("session_date", "session_date_compact", "session_time")

_SCHEDULE_OPERATORS = ("cron>", "hourly>", "daily>", "weekly>", "monthly>")
_TOP_KEYS = ("timezone", "schedule", "_export")
_TASK_KEYS = ("td>", "result_connection", "result_settings")
_TD_KEYS = ("database", "warehouse")
_WEEKDAYS = {
    name: name[:3] for name in ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
} | {name[:3]: name[:3] for name in ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")}
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2}):(\d{2})")  # HH:MM:SS


@dataclasses.dataclass(frozen=True)
class QueryContext:
    """What a workflow's queries may use: its time zone and its `_export` variables."""

    timezone: str = "UTC"
    variables: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class WorkflowTask:
    name: str  # without its "+"
    line: int
    document: dict  # a job document: result_connection, result_settings, query


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A `.dig` file: the schedule and source its tasks share, and the tasks in file order."""

    name: str
    document: dict  # the job document keys every task shares: timezone, schedule, delay, source
    context: QueryContext
    tasks: tuple[WorkflowTask, ...]


def read_workflow(path: str) -> Workflow:
    """Reads a `.dig` file into job documents; syntax errors name the key and its line."""
    reader = _Reader(path)
    root = reader.parse()
    top = reader.mapping(root, "the file")
    shared, tasks, context = {"name": _stem(path)}, [], QueryContext()
    for key, (key_node, value) in top.items():
        if key.startswith("+"):
            tasks.append(_task(reader, key, key_node, value))
        elif key.endswith(">"):
            reader.fail(key_node, f"operator {key} is not supported (tasks run td> queries only)")
        elif key == "timezone":
            shared["timezone"] = reader.scalar(value, key)
        elif key == "schedule":
            shared.update(_schedule(reader, value))
        elif key == "_export":
            database, variables = _exports(reader, value)
            if database is not None:
                shared["source"] = {"database": database}
            warehouse = _td_warehouse(reader, value)
            if warehouse is not None:
                shared["warehouse"] = warehouse
            context = QueryContext(variables=variables)
        else:
            reader.fail(key_node, f"unknown key {key} (allowed: {', '.join(_TOP_KEYS)}, and +tasks)")
    if not tasks:
        reader.fail(root, "no tasks: add one such as +export_to_krux: with td>: query.sql")
    timezone = shared.get("timezone", "UTC")
    return Workflow(shared["name"], shared, dataclasses.replace(context, timezone=timezone), tuple(tasks))


def read_query_file(path: str) -> str:
    """A query file's SQL; a file that cannot be read is a configuration error naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"query file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"query file {path}: is not UTF-8 text") from None


def check_variables(sql: str, context: QueryContext, origin: str) -> None:
    """Refuses a `${...}` that is neither a session variable nor an `_export` scalar."""
    known = set(SESSION_VARIABLES) | {name for name, _ in context.variables}
    for number, line in enumerate(sql.splitlines(), start=1):
        for match in _VARIABLE.finditer(line):
            if match.group(1).strip() not in known:
                raise ConfigError(
                    f"{origin} line {number}: unknown variable ${{{match.group(1)}}} "
                    f"(known: {', '.join(sorted(known))})"
                )


def render_query(sql: str, context: QueryContext, date: datetime.date, moment: datetime.datetime, origin: str) -> str:
    """The query with its variables substituted for one run (export `date`, start `moment`)."""
    check_variables(sql, context, origin)
    values = dict(context.variables)
    values.update(
        session_date=date.isoformat(),
        session_date_compact=date.strftime("%Y%m%d"),
        session_time=moment.astimezone(zoneinfo.ZoneInfo(context.timezone)).isoformat(timespec="seconds"),
    )
    return _VARIABLE.sub(lambda match: values[match.group(1).strip()], sql)


def _task(reader: "_Reader", key: str, key_node, value) -> WorkflowTask:
    body = reader.mapping(value, key)
    document = {}
    for name, (name_node, item) in body.items():
        if name == "td>":
            document["query"] = reader.scalar(item, f"{key}.td>")
        elif name.endswith(">"):
            reader.fail(name_node, f"operator {name} is not supported (tasks run td> queries only)")
        elif name == "result_connection":
            document[name] = reader.scalar(item, f"{key}.{name}")
        elif name == "result_settings":
            document[name] = reader.plain(reader.mapping(item, f"{key}.{name}"))
        else:
            reader.fail(name_node, f"unknown key {key}.{name} (allowed: {', '.join(_TASK_KEYS)})")
    if "query" not in document:
        reader.fail(key_node, f"task {key} needs td>: a query file")
    return WorkflowTask(key[1:], key_node.start_mark.line + 1, document)


def _schedule(reader: "_Reader", node) -> dict:
    """`schedule:` as a job document's cron `schedule` (and `delay`)."""
    body = reader.mapping(node, "schedule")
    found, result = [], {}
    for key, (key_node, value) in body.items():
        if key == "delay":
            result["delay"] = reader.scalar(value, "schedule.delay")
        elif key in _SCHEDULE_OPERATORS:
            found.append(key)
            text = reader.scalar(value, f"schedule.{key}")
            try:
                result["schedule"] = _cron(key, text)
            except ValueError as error:
                reader.fail(value, f"schedule {key} {text!r}: {error}")
        elif key.endswith(">"):
            allowed = ", ".join(_SCHEDULE_OPERATORS)
            reader.fail(key_node, f"schedule operator {key} is not supported (use one of {allowed})")
        else:
            reader.fail(key_node, f"unknown key schedule.{key}")
    if len(found) != 1:
        reader.fail(node, f"schedule needs exactly one of {', '.join(_SCHEDULE_OPERATORS)}, found {len(found)}")
    return result


def _cron(operator: str, text: str) -> str:
    """The cron expression of a schedule operator's value; ValueError says what is wrong."""
    if operator == "cron>":
        cron_fields(text)
        return text
    if operator == "hourly>":
        minute, second = _clock("00:" + text, "MM:SS")[1:]
        return f"{minute} * * * *"
    day, _, clock = text.rpartition(",") if operator in ("weekly>", "monthly>") else ("", "", text)
    hour, minute, _ = _clock(clock, "HH:MM:SS")
    if operator == "daily>":
        return f"{minute} {hour} * * *"
    if operator == "weekly>":
        weekday = _WEEKDAYS.get(day.strip().lower())
        if weekday is None:
            raise ValueError("expected a day and a time such as Sun,09:00:00")
        return f"{minute} {hour} * * {weekday}"
    if not day.strip().isdigit() or not 1 <= int(day) <= 31:
        raise ValueError("expected a day of the month and a time such as 1,09:00:00")
    return f"{minute} {hour} {int(day)} * *"


def _clock(text: str, form: str) -> tuple[int, int, int]:
    match = _CLOCK.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected a time of the form {form}")
    hour, minute, second = (int(part) for part in match.groups())
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"expected a time of the form {form}")
    if second:
        raise ValueError("schedules run on whole minutes: seconds must be 00 (delay: adds seconds)")
    return hour, minute, second


def _exports(reader: "_Reader", node) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """`_export`: the database (`td.database`) and the scalar variables, in file order."""
    database, variables = None, []
    for key, (key_node, value) in reader.mapping(node, "_export").items():
        if key == "td":
            for name, (name_node, item) in reader.mapping(value, "_export.td").items():
                if name not in _TD_KEYS:
                    reader.fail(name_node, f"unknown key _export.td.{name} (allowed: {', '.join(_TD_KEYS)})")
                if name == "database":
                    database = reader.scalar(item, "_export.td.database")
        elif isinstance(value, yaml.ScalarNode):
            variables.append((key, value.value))
        else:
            reader.fail(key_node, f"_export.{key} must be a single value, to be used as ${{{key}}} in queries")
    return database, tuple(variables)


def _td_warehouse(reader: "_Reader", node) -> str | None:
    """`_export.td.warehouse`: the warehouse connection the tasks' queries run in (SPEC §9)."""
    td = reader.mapping(node, "_export").get("td")
    if td is None:
        return None
    item = reader.mapping(td[1], "_export.td").get("warehouse")
    return reader.scalar(item[1], "_export.td.warehouse") if item is not None else None


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name[: -len(".dig")] if name.endswith(".dig") else name


class _Reader:
    """Reads a `.dig` file as a YAML node tree, so values keep their text and keys their line."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, node, message: str):
        raise ConfigError(f"{self.path}: line {node.start_mark.line + 1}: {message}")

    def parse(self):
        try:
            with open(self.path, encoding="utf-8") as handle:
                node = yaml.compose(handle, Loader=yaml.SafeLoader)
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot read the workflow file: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{self.path}: is not UTF-8 text") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            hint = quoting_hint(self.path, error)
            raise ConfigError(f"{self.path}: {where}not valid YAML: {problem}{hint}") from None
        if node is None:
            raise ConfigError(f"{self.path}: the workflow file is empty")
        return node

    def mapping(self, node, what: str) -> dict:
        """{key text: (key node, value node)} in file order; a key given twice is refused."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping of keys to values")
        entries = {}
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, f"a key in {what} must be a name")
            if key_node.value in entries:
                self.fail(key_node, f"key {key_node.value} appears more than once")
            entries[key_node.value] = (key_node, value)
        return entries

    def scalar(self, node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
            self.fail(node, f"{what} must be a non-empty value")
        return node.value

    def plain(self, entries: dict) -> dict:
        """A mapping of scalars as a job document holds them: text, or plain true/false."""
        values = {}
        for key, (key_node, node) in entries.items():
            if not isinstance(node, yaml.ScalarNode):
                self.fail(key_node, f"{key} must be a single value")
            values[key] = _boolean(node)
        return values


def _boolean(node: yaml.ScalarNode):
    if node.style is None and node.value.lower() in ("true", "false"):
        return node.value.lower() == "true"
    return node.value
