"""A stop is a stop: SIGTERM or Ctrl-C while S3 hangs on a request ends the run within seconds.

The run is a real `python -m pipeline run` process on the default local runner, publishing
through the fault proxy, which holds chosen requests (the server accepted them and never
answers). The signal goes to the launcher alone, as an orchestrator sends it. What is left
afterwards is checked against moto directly, not through the proxy.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from partner_bucket import CLIENT, DAY, KEY, KEY_TXT, PartnerBucket
from s3_proxy import HOLD, Delay
from waiting import wait_until

from pipeline.storage.multipart import STOP_GRACE_S, compose
from pipeline.storage.s3 import make_s3_client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STOP_WITHIN_S = 10


def run_held_and_stop(partner, proxy, root, holds, signum):
    """Runs the CLI, sends `signum` once a held call came; returns (seconds to exit, exit code, stdout)."""
    held = [proxy.fail(kind, HOLD, times=None, key_contains=(f"/{partner.name}", text)) for kind, text in holds]
    command = [sys.executable, "-m", "pipeline", "run", "--database", str(root), "--client-name", CLIENT,
               "--bucket", partner.name, "--endpoint-url", proxy.url, "--date", DAY]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: any(rule.used for rule in held) or process.poll() is not None, 120)
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.5)  # the other requests of the phase are out, and held too
        signalled = time.monotonic()
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert took < STOP_WITHIN_S, err[-3000:]
    return process.returncode, json.loads(out.strip().splitlines()[-1]), err


@pytest.mark.parametrize(
    ("signum", "exit_code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
def test_a_signal_while_the_merges_parts_hang_ends_the_run_within_10_s_and_cleans_up(
    signum, exit_code, name, s3, proxy, tables
):
    partner = PartnerBucket(s3, f"test-{uuid.uuid4().hex[:16]}")
    s3.create_bucket(Bucket=partner.name)
    partner.put_previous()
    root, _ = tables

    code, summary, err = run_held_and_stop(partner, proxy, root, [("UploadPartCopy", ""), ("UploadPart", "")], signum)

    assert code == exit_code, err[-3000:]
    assert summary == {"status": "failed", "exit_code": exit_code, "error": f"interrupted by {name}; nothing was published",
                       "run_id": summary["run_id"], "date": DAY}
    assert partner.open_uploads() == []  # aborted on a new connection
    assert partner.staging() == []
    assert partner.export_objects() == sorted([KEY, KEY_TXT]) and partner.unchanged(KEY, KEY_TXT)


def test_sigterm_while_removing_the_replaced_object_hangs_says_the_new_one_is_published(s3, proxy, tables):
    partner = PartnerBucket(s3, f"test-{uuid.uuid4().hex[:16]}")
    s3.create_bucket(Bucket=partner.name)
    partner.put_previous()
    root, lines = tables

    code, summary, err = run_held_and_stop(partner, proxy, root, [("DeleteObjects", "/uploads/")], signal.SIGTERM)

    assert code == 143, err[-3000:]
    uri = f"s3://{partner.name}/{KEY}"
    assert summary == {"status": "failed", "exit_code": 143,
                       "error": f"interrupted by SIGTERM; {uri} was published; objects it replaces go at the next run",
                       "run_id": summary["run_id"], "date": DAY}
    assert partner.published(lines) and partner.unchanged(KEY_TXT)  # the replaced object goes next run
    assert partner.open_uploads() == []
    assert partner.staging() == []


def test_a_merge_stopped_by_a_signal_waits_a_short_grace_for_a_part_in_flight_then_aborts(
    s3, bucket, proxy, min_part_bytes
):
    """A part that S3 answers within the grace is waited for (not left to land after the
    abort); the abort then goes out on the prompt client."""
    s3.put_object(Bucket=bucket, Key="shard", Body=b"x" * min_part_bytes)
    proxy.fail("UploadPartCopy", Delay(1.0, forward_first=True), key_contains=f"/{bucket}/")
    client = make_s3_client(endpoint_url=proxy.url, region="us-east-1")
    prompt = []

    def stop_client():
        prompt.append(make_s3_client(endpoint_url=proxy.url, region="us-east-1", prompt=True))
        return prompt[-1]

    main = threading.main_thread().ident
    ctrl_c = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    try:
        ctrl_c.start()
        with pytest.raises(KeyboardInterrupt):
            compose(client, bucket, "out", [("shard", min_part_bytes)], min_part_bytes=min_part_bytes,
                    stop_client=stop_client)
    finally:
        ctrl_c.cancel()
        signal.signal(signal.SIGINT, previous)
    took = time.monotonic() - started

    assert 1.0 <= took < 1.0 + STOP_GRACE_S  # the part's answer came after 1 s, within the grace
    assert len(prompt) == 1 and proxy.count("AbortMultipartUpload", f"/{bucket}/out") == 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="out")
