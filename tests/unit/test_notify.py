"""Notifications against a real HTTP server on 127.0.0.1 and a real command reading its stdin."""

import http.server
import json
import logging
import os
import stat
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from pipeline.config.notify import Notify
from pipeline.outcomes.notify import notification_text, send_notifications, webhook_problem
from tests.summaries import FailedSummary, succeeded

SUMMARY = FailedSummary(exit_code=2, error="table segment_a: column KUID is missing")
SUMMARY_LINE = {"status": "failed", "exit_code": 2, "error": "table segment_a: column KUID is missing"}
TOKEN = "T0KEN-s3cret-abc123"  # in the webhook fixture's URL


@pytest.fixture
def stdin_to_file(tmp_path):
    """A command that writes its stdin to a file, then exits with the code in its first argument."""
    script = tmp_path / "page-oncall"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "data = sys.stdin.buffer.read()\n"
        "open(sys.argv[2], 'wb').write(data)\n"
        "print('paged on-call')\n"
        "if int(sys.argv[1]):\n"
        "    print('pager service down', file=sys.stderr)\n"
        "sys.exit(int(sys.argv[1]))\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_webhook_gets_the_summary_with_job_and_event_as_json(webhook):
    notify = Notify(webhook=webhook.url)
    assert send_notifications(notify, SUMMARY, job="daily_krux", event="failure") is True
    assert webhook.received == [(
        f"/hooks/{TOKEN}", "application/json",
        {**SUMMARY_LINE, "job": "daily_krux", "event": "failure",
         "text": "daily_krux: failure: table segment_a: column KUID is missing"},
    )]


def test_a_command_gets_the_same_json_on_stdin_and_its_output_stays_off_stdout(stdin_to_file, tmp_path, capfd):
    out = tmp_path / "body.json"
    notify = Notify(command=(str(stdin_to_file), "0", str(out)))
    summary = succeeded(run_id="20261128T000000Z-3f9a", lines_written=2)
    assert send_notifications(notify, summary, job="daily_krux", event="failure") is True
    body = json.loads(out.read_text())
    assert (body["run_id"], body["lines_written"], body["job"], body["event"]) == (
        "20261128T000000Z-3f9a", 2, "daily_krux", "failure")
    assert capfd.readouterr().out == ""


def test_both_are_sent_and_an_event_not_asked_for_is_not(webhook, stdin_to_file, tmp_path):
    out = tmp_path / "body.json"
    notify = Notify(events=frozenset({"success", "disabled"}), webhook=webhook.url,
                    command=(str(stdin_to_file), "0", str(out)))
    assert send_notifications(notify, SUMMARY, job="j", event="failure") is True
    assert webhook.received == [] and not out.exists()
    assert send_notifications(notify, SUMMARY, job="j", event="disabled") is True
    assert [body["event"] for _, _, body in webhook.received] == ["disabled"]
    assert json.loads(out.read_text())["event"] == "disabled"
    assert send_notifications(None, SUMMARY, job="j", event="failure") is True


def test_an_env_webhook_is_read_when_sending(webhook, monkeypatch):
    monkeypatch.setenv("KRUX_WEBHOOK_URL", webhook.url)
    assert send_notifications(Notify(webhook="env:KRUX_WEBHOOK_URL"), SUMMARY, job="j", event="failure")
    assert len(webhook.received) == 1


def failure_lines(caplog):
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_an_http_error_is_one_warning_without_the_url(webhook, caplog):
    webhook.status = 500
    assert send_notifications(Notify(webhook=webhook.url), SUMMARY, job="j", event="failure") is False
    assert failure_lines(caplog) == ["job j: failure notification by webhook failed: the webhook answered HTTP 500"]
    assert TOKEN not in caplog.text and "127.0.0.1" not in caplog.text


def test_a_webhook_that_does_not_answer_in_time_fails(webhook, caplog):
    webhook.delay_s = 2.0
    started = time.monotonic()
    assert send_notifications(Notify(webhook=webhook.url), SUMMARY, job="j", event="failure", timeout=0.5) is False
    assert time.monotonic() - started < 1.9
    assert failure_lines(caplog) == [
        "job j: failure notification by webhook failed: the webhook did not answer within 0.5 s"
    ]
    assert TOKEN not in caplog.text


def test_a_webhook_nobody_listens_on_fails_without_the_url(webhook, caplog):
    url = webhook.url
    webhook.shutdown()
    webhook.server_close()
    assert send_notifications(Notify(webhook=url), SUMMARY, job="j", event="failure") is False
    [line] = failure_lines(caplog)
    assert line.startswith("job j: failure notification by webhook failed: the webhook could not be reached (")
    assert TOKEN not in caplog.text and url not in caplog.text


def test_an_unset_env_webhook_fails_naming_the_variable(monkeypatch, caplog):
    monkeypatch.delenv("KRUX_WEBHOOK_URL", raising=False)
    assert send_notifications(Notify(webhook="env:KRUX_WEBHOOK_URL"), SUMMARY, job="j", event="failure") is False
    assert failure_lines(caplog) == [
        "job j: failure notification by webhook failed: job j: notify.webhook refers to $KRUX_WEBHOOK_URL, "
        "which is not set or empty"
    ]


def test_an_env_webhook_holding_no_url_fails_without_its_value(monkeypatch, caplog):
    monkeypatch.setenv("KRUX_WEBHOOK_URL", f"hooks.example.com/{TOKEN}")
    assert send_notifications(Notify(webhook="env:KRUX_WEBHOOK_URL"), SUMMARY, job="j", event="failure") is False
    assert failure_lines(caplog) == [
        "job j: failure notification by webhook failed: job j: notify.webhook must hold an http:// or https:// URL"
    ]


def test_a_command_exiting_non_zero_fails_with_its_last_stderr_line(stdin_to_file, tmp_path, caplog):
    notify = Notify(command=(str(stdin_to_file), "3", str(tmp_path / "body.json")))
    assert send_notifications(notify, SUMMARY, job="j", event="failure") is False
    assert failure_lines(caplog) == [
        f"job j: failure notification by command {stdin_to_file} failed: exit code 3: pager service down"
    ]


def test_a_missing_command_fails(tmp_path, caplog):
    notify = Notify(command=(str(tmp_path / "no-such-program"),))
    assert send_notifications(notify, SUMMARY, job="j", event="failure") is False
    assert failure_lines(caplog) == [
        f"job j: failure notification by command {tmp_path / 'no-such-program'} failed: No such file or directory"
    ]


def test_a_command_still_running_after_the_timeout_is_stopped(tmp_path, caplog):
    sleeper = tmp_path / "sleeper"
    sleeper.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n", encoding="utf-8")
    os.chmod(sleeper, 0o700)
    started = time.monotonic()
    assert send_notifications(Notify(command=(str(sleeper),)), SUMMARY, job="j", event="failure", timeout=0.5) is False
    assert time.monotonic() - started < 5
    assert failure_lines(caplog) == [f"job j: failure notification by command {sleeper} failed: still running after 0.5 s, stopped"]


def test_one_failing_channel_does_not_stop_the_other(webhook, stdin_to_file, tmp_path, caplog):
    webhook.status = 404
    out = tmp_path / "body.json"
    notify = Notify(webhook=webhook.url, command=(str(stdin_to_file), "0", str(out)))
    assert send_notifications(notify, SUMMARY, job="j", event="failure") is False
    assert json.loads(out.read_text())["event"] == "failure"
    assert len(failure_lines(caplog)) == 1


def test_a_webhook_problem_is_known_before_anything_is_sent(webhook, monkeypatch):
    monkeypatch.delenv("KRUX_WEBHOOK_URL", raising=False)
    notify = Notify(webhook="env:KRUX_WEBHOOK_URL")
    assert webhook_problem(notify, "j") == "job j: notify.webhook refers to $KRUX_WEBHOOK_URL, which is not set or empty"
    monkeypatch.setenv("KRUX_WEBHOOK_URL", webhook.url)
    assert webhook_problem(notify, "j") is None
    assert webhook_problem(Notify(command=("page",)), "j") is None and webhook_problem(None, "j") is None
    assert webhook.received == []


class _SlackLikeHandler(http.server.BaseHTTPRequestHandler):
    """Answers as a Slack incoming webhook does: 400 `no_text` for a body without `text`, else 200 `ok`."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, answer = (200, b"ok") if isinstance(body.get("text"), str) and body["text"] else (400, b"no_text")
        if status == 200:
            self.server.shown.append(body["text"])
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def slack_like():
    """A local server that behaves like Slack's incoming webhooks; `shown` lists the messages it took."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlackLikeHandler)
    server.daemon_threads = True
    server.shown = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/{TOKEN}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_slack_like_server_refuses_a_body_without_text(slack_like):
    request = urllib.request.Request(slack_like.url, data=json.dumps({"status": "failed"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert (refused.value.code, refused.value.read()) == (400, b"no_text")


def test_a_slack_webhook_shows_each_event_as_one_line_for_people(slack_like):
    notify = Notify(events=frozenset({"success", "failure", "disabled"}), webhook=slack_like.url)
    success = succeeded(lines_written=10_000, invalid={},
                        object_uri="s3://krux-partners/acme/uploads/2026-11-28/first_party_segment.txt.gz")
    failure = FailedSummary(exit_code=3, error="640 lines is 94% fewer than the 10,000 of s3://krux-partners/acme/"
                            "uploads/2026-11-27/first_party_segment.txt.gz (--max-drop 50)", date="2026-11-28")
    disabled = FailedSummary(exit_code=2, error="schedule disabled after 3 consecutive configuration failures: "
                             "table segment_a: column KUID is missing")
    assert send_notifications(notify, success, job="daily_krux", event="success") is True
    assert send_notifications(notify, failure, job="daily_krux", event="failure") is True
    assert send_notifications(notify, disabled, job="daily_krux", event="disabled") is True
    assert slack_like.shown == [
        "daily_krux: success, 2026-11-28, 10,000 lines to s3://krux-partners/acme/uploads/2026-11-28/"
        "first_party_segment.txt.gz",
        "daily_krux: failure, 2026-11-28: 640 lines is 94% fewer than the 10,000 of s3://krux-partners/acme/"
        "uploads/2026-11-27/first_party_segment.txt.gz (--max-drop 50)",
        "daily_krux: schedule disabled after 3 consecutive configuration failures: table segment_a: column KUID "
        "is missing",
    ]
    assert not any(TOKEN in text for text in slack_like.shown)


@pytest.mark.parametrize("summary, text", [
    (succeeded(lines_written=1, invalid={"missing_user_id": 1, "value_too_long": 2}),
     "j: success, 2026-11-28, 1 line to s3://krux-partners/acme/uploads/2026-11-28/daily_krux.txt.gz "
     "(3 invalid rows dropped)"),
    (succeeded(lines_written=0, invalid={"no_attributes": 1}),
     "j: success, 2026-11-28, 0 lines to s3://krux-partners/acme/uploads/2026-11-28/daily_krux.txt.gz "
     "(1 invalid row dropped)"),
    (FailedSummary(exit_code=4, error="s3://krux-partners: AccessDenied"), "j: failure: s3://krux-partners: AccessDenied"),
])
def test_the_text_counts_lines_and_invalid_rows_and_omits_an_unknown_day(summary, text):
    event = "success" if summary.exit_code == 0 else "failure"
    assert notification_text(summary, job="j", event=event) == text
