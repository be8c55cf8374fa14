"""SIGTERM and SIGKILL at each phase of a run, then the next run (issue #5, part 2; SPEC §4).

The run is a real `python -m pipeline run` process with the default local runner
(FnApiRunner, multi_processing, two worker processes), so a kill meets Beam's workers too.
SIGTERM goes to the launcher alone, as an orchestrator sends it; SIGKILL goes to the whole
process group, as when the machine is lost. A delay rule in the proxy holds the run in the
phase, and the run is killed once the proxy has seen the held call. A held call whose client
dies never reaches S3 (`s3_proxy.Delay`), unless it is `forward_first`: then it took effect.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from partner_bucket import CLIENT, DAY, KEY, KEY_TXT, PartnerBucket
from s3_proxy import Delay, S3FaultProxy
from waiting import wait_until

from pipeline.commands import cli
from pipeline.storage.s3 import make_s3_client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD_S = 120
"""Long enough to be killed in; the held call of a killed client is dropped at once."""
MERGE_PART_S = 4
"""How long a part takes in the merging phase (longer than the merge's grace after SIGTERM,
`multipart.STOP_GRACE_S`: the upload is aborted while the part's answer is still held)."""


@dataclass(frozen=True)
class Phase:
    holds: tuple  # (call kind, Delay, text the call's path, query or body holds)
    published: bool = False  # the new object is complete when the kill comes
    s3_input: bool = False  # the tables are read from the customer's bucket, through the proxy
    hold_after: str | None = None  # hold only once the proxy has seen this call kind
    sigkill_leaves: tuple[str, ...] = ()  # what a SIGKILL leaves for the next run: "staging", "upload"


PHASES = {
    # Beam's workers read the tables. Held after the sweep (ListMultipartUploads), so that
    # the schema checks before it go through.
    "reading": Phase((("GetObject", Delay(HOLD_S), "/warehouse-"),), s3_input=True, hold_after="ListMultipartUploads"),
    # A worker's shard is stored; its answer is slow.
    "writing-shards": Phase(
        (("PutObject", Delay(HOLD_S, forward_first=True), "/shards/"),), sigkill_leaves=("staging",)
    ),
    # A part is in the open multipart upload; its answer is slow.
    "merging": Phase(
        (
            ("UploadPartCopy", Delay(MERGE_PART_S, forward_first=True), ""),
            ("UploadPart", Delay(MERGE_PART_S, forward_first=True), ""),
        ),
        sigkill_leaves=("staging", "upload"),
    ),
    # The upload is complete; removing the replaced `.txt` object is held.
    "replacing": Phase((("DeleteObjects", Delay(HOLD_S), "/uploads/"),), published=True, sigkill_leaves=("staging",)),
}
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}

class DayWatch:
    """Lists the day folder over and over while a run goes on: the fewest export objects seen."""

    def __init__(self, partner):
        self.partner = partner
        self.fewest = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while True:
            count = len(self.partner.export_objects())
            self.fewest = count if self.fewest is None else min(self.fewest, count)
            if self._stop.wait(0.1):
                return


@dataclass
class Killed:
    bucket: str
    code: int
    stdout: str
    stderr: str
    fewest_objects: int  # while the killed run went on
    outlived: bool  # a process of the run (a Beam worker) still ran 3 s after the launcher ended


@pytest.fixture(scope="module")
def killed_runs(s3_endpoint, tables):
    """Every phase × signal, run and killed a few at once, each in its own buckets, behind one proxy."""
    s3 = make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")
    root, _ = tables
    proxy = S3FaultProxy(s3_endpoint).start()

    def run_and_kill(phase_name: str, signal_name: str) -> Killed:
        phase, signum = PHASES[phase_name], SIGNALS[signal_name]
        partner = PartnerBucket(s3, f"test-{uuid.uuid4().hex[:16]}")
        s3.create_bucket(Bucket=partner.name)
        partner.put_previous()
        env = dict(os.environ)
        source = str(root)
        if phase.s3_input:
            warehouse = f"warehouse-{uuid.uuid4().hex[:12]}"
            s3.create_bucket(Bucket=warehouse)
            for path in sorted(root.iterdir()):
                s3.put_object(Bucket=warehouse, Key=f"activate_to_krux/{path.name}", Body=path.read_bytes())
            source, env["AWS_ENDPOINT_URL_S3"] = f"s3://{warehouse}/activate_to_krux", proxy.url
        command = [sys.executable, "-m", "pipeline", "run", "--database", source, "--client-name", CLIENT,
                   "--bucket", partner.name, "--endpoint-url", proxy.url, "--date", DAY]

        def hold():
            bucket = warehouse if phase.s3_input else partner.name
            return [
                proxy.fail(kind, delay, times=None, key_contains=(f"/{bucket}", key)) for kind, delay, key in phase.holds
            ]

        held = []
        with DayWatch(partner) as watch, tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            if not phase.hold_after:
                held = hold()
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
            try:
                if phase.hold_after:
                    assert wait_until(lambda: proxy.count(phase.hold_after, f"/{partner.name}") > 0, 90), _read(err)
                    held = hold()
                reached = wait_until(lambda: any(rule.used for rule in held), 90)
                assert reached and process.poll() is None, f"{phase_name} never reached: {_read(err)}"
                if signum == signal.SIGKILL:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.send_signal(signum)
                code = process.wait(timeout=60)
                outlived = not wait_until(lambda: not _group_alive(process.pid), 3)
            finally:
                proxy.remove(*held)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the launcher, if any
            time.sleep(0.5)  # a worker that outlived the kill would write now
            stdout, stderr = _read(out), _read(err)
        return Killed(partner.name, code, stdout, stderr, watch.fewest, outlived)

    def attempt(case):
        try:
            return run_and_kill(*case)
        except Exception:  # reported by the case's own test, not as every test's setup error
            return traceback.format_exc()

    cases = [(phase, signal_name) for phase in PHASES for signal_name in SIGNALS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cases, pool.map(attempt, cases)))
    proxy.stop()
    return results


def _group_alive(pgid: int) -> bool:
    """Whether a process of this group still runs (zombies waiting for a reaper do not)."""
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, IndexError):
            with open(f"/proc/{entry}/stat") as stat:
                state, _, group = stat.read().rsplit(")", 1)[1].split()[:3]  # after "pid (comm)"
            if int(group) == pgid and state != "Z":
                return True
    return False


def _read(file) -> str:
    file.flush()
    file.seek(0)
    return file.read()[-3000:]


@pytest.mark.parametrize("signal_name", SIGNALS)
@pytest.mark.parametrize("phase_name", PHASES)
def test_a_kill_in_each_phase_keeps_spec_4_and_the_next_run_cleans_up(
    phase_name, signal_name, killed_runs, s3, s3_endpoint, tables, capsys
):
    phase, killed = PHASES[phase_name], killed_runs[phase_name, signal_name]
    if isinstance(killed, str):
        pytest.fail(killed)
    partner = PartnerBucket(s3, killed.bucket)
    root, lines = tables

    # SPEC §4 right after the kill: no partial object, the earlier objects or the complete new
    # one, never a day without the export.
    assert killed.fewest_objects >= 1
    assert partner.export_objects() == sorted([KEY, KEY_TXT])
    assert partner.unchanged(KEY_TXT)
    assert partner.published(lines) if phase.published else partner.unchanged(KEY)
    staging, uploads = partner.staging(), partner.open_uploads()
    assert not killed.outlived  # no worker may write after the cleanup
    if signal_name == "SIGTERM":
        assert killed.code == 143, killed.stderr
        summary = json.loads(killed.stdout.strip().splitlines()[-1])
        assert summary["status"] == "failed" and "SIGTERM" in summary["error"]
        assert (staging, uploads) == ([], [])
    else:
        assert killed.code == -signal.SIGKILL
        left = {"staging": bool(staging), "upload": bool(uploads)}
        assert tuple(name for name, there in left.items() if there) == phase.sigkill_leaves, (staging, uploads)

    # The next run, S3 healthy: it sweeps what the killed run left and publishes the day's file.
    with DayWatch(partner) as next_run:
        code = cli.main(["run", "--database", str(root), "--client-name", CLIENT, "--bucket", partner.name,
                         "--endpoint-url", s3_endpoint, "--date", DAY, "--runner=FnApiRunner"])
    assert code == 0, capsys.readouterr().err
    assert next_run.fewest >= 1
    assert partner.clean_with(lines)
