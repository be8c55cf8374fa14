"""The reference pages name every option and key the code takes, so a new flag or job-file key
cannot ship undocumented: each of the subcommands' options is on docs/commands.md, and each
job-file key (top level, result_settings, notify) and workflow key is on its page.
"""

import re
from pathlib import Path

import pytest

from pipeline.commands.cli import build_parser
from pipeline.config import jobs, notify, workflow

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _options(command: str) -> set[str]:
    subcommands = next(a for a in build_parser()._actions if a.dest == "command")
    parser = subcommands.choices[command]
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")} - {"--help"}


def _code_spans(page: str) -> str:
    """The page's inline code and code blocks, where options and keys are written."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, re.MULTILINE | re.DOTALL)
    text = re.sub(r"^[ \t]*```[^\n]*\n.*?^[ \t]*```", "", text, flags=re.MULTILINE | re.DOTALL)
    return " ".join([*blocks, *re.findall(r"`([^`\n]+)`", text)])


@pytest.mark.parametrize("command", ["run", "preview", "schedule", "history"])
def test_commands_page_names_every_option(command):
    # preview's options are run's, which the page says; its own is --limit.
    page = _code_spans("commands.md")
    missing = sorted(flag for flag in _options(command) if not re.search(rf"{re.escape(flag)}(?![\w-])", page))
    assert missing == []


def test_jobs_page_names_every_job_file_key():
    page = _code_spans("jobs.md")
    keys = [*jobs._TOP_KEYS, *jobs._RESULT_KEYS, *jobs._SOURCE_KEYS, *notify._KEYS, *notify.EVENTS]
    assert sorted(key for key in set(keys) if not re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", page)) == []


def test_workflows_page_names_every_workflow_key_and_operator():
    page = _code_spans("workflows.md")
    keys = [*workflow._TOP_KEYS, *workflow._TASK_KEYS, *workflow._TD_KEYS, *workflow._SCHEDULE_OPERATORS,
            *workflow.SESSION_VARIABLES, "delay"]
    assert sorted(key for key in keys if key not in page) == []
