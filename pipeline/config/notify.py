"""A job file's `notify:` key: which events to tell, by webhook and/or command.

A webhook URL carries a token: it is kept as written (a URL or `env:VARNAME`), shown by no
repr and quoted by no error. An `env:` name is read when a notification is sent, so commands
that only read the job file (`schedule --next`, `history --job`) do not need the variable.
"""

import dataclasses
import os
import urllib.parse

from pipeline.config.connections import resolve_env
from pipeline.config.wording import shown
from pipeline.errors import ConfigError

__all__ = ["DEFAULT_EVENTS", "EVENTS", "Notify", "parse_notify", "webhook_url"]

EVENTS = ("success", "failure", "disabled")
DEFAULT_EVENTS = ("failure", "disabled")

_KEYS = ("on", "webhook", "command")
_ENV_PREFIX = "env:"


@dataclasses.dataclass(frozen=True)
class Notify:
    """Whom to tell of which events. `webhook` is a secret: the repr says only whether there is one."""

    events: frozenset[str] = frozenset(DEFAULT_EVENTS)
    webhook: str | None = None
    command: tuple[str, ...] = ()

    def __repr__(self) -> str:
        webhook = None if self.webhook is None else "<hidden>"
        return f"Notify(events={sorted(self.events)!r}, webhook={webhook!r}, command={self.command!r})"


def parse_notify(value, base_dir: str) -> Notify | None:
    """The `notify:` mapping of a job file, or None; ValueError names the key (`notify.on ...`).

    A command given as a relative path (`./page.sh`) is taken from the job file's folder;
    a bare name is looked up on PATH when it runs.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError("notify must be a mapping with webhook and/or command, and optionally on")
    for key in value:
        if key not in _KEYS:
            raise ValueError(f"unknown key notify.{key}")
    events = value.get("on", list(DEFAULT_EVENTS))
    events = [events] if isinstance(events, str) else events
    if not isinstance(events, list) or not events or not all(event in EVENTS for event in events):
        raise ValueError(f"notify.on must be a list of {', '.join(EVENTS)}, got {shown(value.get('on'))}")
    webhook = value.get("webhook")
    if webhook is not None:
        _check_webhook(webhook)
    command = value.get("command")
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(a, str) and a for a in command):
            raise ValueError(
                "notify.command must be a list, the program then its arguments, such as "
                f"[/usr/local/bin/page-oncall, --team, audiences], got {shown(command)}"
            )
        command = (_program(base_dir, command[0]), *command[1:])
    if webhook is None and command is None:
        raise ValueError("notify needs webhook, command or both")
    return Notify(events=frozenset(events), webhook=webhook, command=command or ())


def webhook_url(notify: Notify, job_name: str) -> str:
    """The URL to POST to, an `env:` name read now; ConfigError (never quoting the URL) if unusable."""
    url = resolve_env(notify.webhook, "notify.webhook", f"job {job_name}")
    if not _is_http_url(url):
        raise ConfigError(f"job {job_name}: notify.webhook must hold an http:// or https:// URL")
    return url


def _check_webhook(webhook) -> None:
    if not isinstance(webhook, str) or not webhook.strip():
        raise ValueError("notify.webhook must be an http:// or https:// URL, or env:VARNAME")
    if webhook.startswith(_ENV_PREFIX):
        if not webhook[len(_ENV_PREFIX):].strip():
            raise ValueError("notify.webhook says env: but names no variable")
    elif not _is_http_url(webhook):
        raise ValueError("notify.webhook must be an http:// or https:// URL, or env:VARNAME")


def _is_http_url(text: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _program(base_dir: str, program: str) -> str:
    program = os.path.expanduser(program)
    if os.sep in program and not os.path.isabs(program):
        return os.path.normpath(os.path.join(base_dir, program))
    return program

