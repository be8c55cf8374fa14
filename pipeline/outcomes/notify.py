"""Telling people how a job's run went: a webhook POST and/or a command, as the job's `notify:` says.

A notification never changes a run's outcome: one that fails (HTTP status >= 400, no answer in
time, a command exiting non-zero) is reported on stderr in one line, and the caller goes on.
The webhook URL carries a token, so no message here holds it: they say "webhook" and why.
"""

import json
import logging
import subprocess
import urllib.error
import urllib.request

from pipeline.config.notify import Notify, webhook_url
from pipeline.errors import ConfigError
from pipeline.krux.summary import FailedSummary, Summary

__all__ = ["TIMEOUT_S", "notification_body", "notification_text", "send_notifications", "webhook_problem"]

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
"""How long a webhook may take to answer, or a command to finish, before the notification failed."""


def notification_body(summary: Summary | FailedSummary, *, job: str, event: str) -> dict:
    """The run's summary line (succeeded or failed) plus the job's name, the event and a line for people.

    `text` is what Slack, Mattermost and Teams incoming webhooks show as the message, so a
    webhook of theirs shows the body as it is (SPEC §6).
    """
    return {**summary.to_json(), "job": job, "event": event, "text": notification_text(summary, job=job, event=event)}


def notification_text(summary: Summary | FailedSummary, *, job: str, event: str) -> str:
    """One line: the job, the event, the day, and the lines published or the reason.

    `daily_krux: success, 2026-11-28, 10,000 lines to s3://.../first_party_segment.txt.gz`,
    `daily_krux: failure, 2026-11-28: <reason>`, `daily_krux: schedule disabled after 3 ...: <reason>`.
    """
    if isinstance(summary, Summary):
        invalid = sum(summary.invalid.values())
        dropped = f" ({invalid:,} invalid {'row' if invalid == 1 else 'rows'} dropped)" if invalid else ""
        noun = "line" if summary.lines_written == 1 else "lines"
        return f"{job}: {event}, {summary.date}, {summary.lines_written:,} {noun} to {summary.object_uri}{dropped}"
    if event == "disabled":  # the reason says it: "schedule disabled after 3 consecutive ... failures: ..."
        return f"{job}: {summary.error}"
    day = f", {summary.date}" if summary.date else ""
    return f"{job}: {event}{day}: {summary.error}"


def send_notifications(
    notify: Notify | None, summary: Summary | FailedSummary, *, job: str, event: str, timeout: float = TIMEOUT_S
) -> bool:
    """Sends `event` by webhook and/or command if the job's `notify:` asks for it.

    Returns False if one failed (each failure is logged as one warning line); never raises.
    """
    if notify is None or event not in notify.events:
        return True
    body = json.dumps(notification_body(summary, job=job, event=event)).encode("utf-8")
    delivered = True
    if notify.webhook is not None:
        delivered &= _deliver(f"job {job}: {event} notification by webhook", lambda: _post(notify, job, body, timeout))
    if notify.command:
        program = notify.command[0]
        delivered &= _deliver(
            f"job {job}: {event} notification by command {program}", lambda: _run(notify.command, body, timeout)
        )
    return delivered


def webhook_problem(notify: Notify | None, job: str) -> str | None:
    """Why the job's webhook could not be used now (an unset `env:` variable), or None.

    A schedule says so when it starts, rather than at its first failure hours later.
    """
    if notify is None or notify.webhook is None:
        return None
    try:
        webhook_url(notify, job)
    except ConfigError as error:
        return str(error)
    return None


class _NotSent(Exception):
    """Why a notification failed, in words safe to print (never the webhook's URL)."""


def _deliver(what: str, send) -> bool:
    try:
        send()
    except _NotSent as reason:
        log.warning("%s failed: %s", what, reason)
        return False
    return True


def _post(notify: Notify, job: str, body: bytes, timeout: float) -> None:
    try:
        url = webhook_url(notify, job)
    except ConfigError as error:
        raise _NotSent(str(error)) from None
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "krux-export"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # the scheme is checked: http(s) only
            response.read()
    except urllib.error.HTTPError as error:
        raise _NotSent(f"the webhook answered HTTP {error.code}") from None
    except TimeoutError:
        raise _NotSent(f"the webhook did not answer within {timeout:g} s") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _NotSent(f"the webhook did not answer within {timeout:g} s") from None
        raise _NotSent(f"the webhook could not be reached ({_words(error.reason)})") from None
    except (OSError, ValueError) as error:  # a connection reset mid-answer, a bad port number
        raise _NotSent(f"the webhook could not be reached ({_words(error)})") from None


def _run(command: tuple[str, ...], body: bytes, timeout: float) -> None:
    """Runs the command with the body on stdin; its own output is kept off our stdout."""
    try:
        done = subprocess.run(command, input=body, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise _NotSent(f"still running after {timeout:g} s, stopped") from None
    except OSError as error:
        raise _NotSent(error.strerror or type(error).__name__) from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        raise _NotSent(how + (f": {said[-1][:200]}" if said else ""))


def _words(error) -> str:
    """An error's description without its arguments, which may hold the host or the URL."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return type(error).__name__ if isinstance(error, BaseException) else "no connection"
