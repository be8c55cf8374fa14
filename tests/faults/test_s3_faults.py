"""S3 faults on every call kind of a run, injected by a proxy in front of moto (issue #5, part 1).

Transient faults (each call kind fails once, then answers): botocore's standard retry mode
(5 attempts, `pipeline.storage.s3.make_s3_client`) and the body re-reads of
`pipeline.storage.s3.read_object` carry the run to the right object. Persistent faults: the run
exits 4 within a bounded time, the day's earlier objects stay as they were, and whatever it
could not clean up (only where S3 refused the cleanup itself or lost the answer naming an
upload) is removed by the next run's sweep (SPEC §4, §7).
"""

import json
import os
import subprocess
import sys
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from partner_bucket import CLIENT, DAY, KEY, KEY_TXT, SMALL_SHARD_BYTES, PartnerBucket
from s3_proxy import CALL_KINDS, INTERNAL_ERROR, RESET, SLOW_DOWN, TRUNCATE, Delay, S3FaultProxy

from pipeline.commands import cli
from pipeline.storage.s3 import RETRY_ATTEMPTS, make_s3_client
from pipeline.storage.stores import ObjectInfo, S3Store
from pipeline.launcher.tunables import Tunables

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PARTNER_CALLS = (
    "PutObject",
    "GetObject",
    "CreateMultipartUpload",
    "UploadPartCopy",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListObjectsV2",
    "ListMultipartUploads",
    "DeleteObjects",
)
"""Every call a run makes to the partner's bucket: sweep, shards, manifest, merge, cleanup."""

INPUT_CALLS = ("ListObjectsV2", "HeadObject", "GetObject")
"""Calls Beam's S3 file system makes to read s3:// input tables (the customer's bucket)."""

TRANSIENT_FAULTS = (INTERNAL_ERROR, SLOW_DOWN, RESET, TRUNCATE, Delay(0.2))

BOUND_S = 60
"""A persistent fault ends the run within this (5 attempts, backoff at most 1+2+4+8 s a call)."""


def test_the_proxy_names_every_call_kind_as_botocore_sends_it(proxy, bucket):
    client = make_s3_client(endpoint_url=proxy.url, region="us-east-1")
    client.put_object(Bucket=bucket, Key="a", Body=b"shard")
    client.head_object(Bucket=bucket, Key="a")
    client.get_object(Bucket=bucket, Key="a")["Body"].read()
    client.list_objects_v2(Bucket=bucket)
    upload = client.create_multipart_upload(Bucket=bucket, Key="b")["UploadId"]
    client.upload_part_copy(
        Bucket=bucket, Key="b", UploadId=upload, PartNumber=1, CopySource={"Bucket": bucket, "Key": "a"}
    )
    client.upload_part(Bucket=bucket, Key="b", UploadId=upload, PartNumber=2, Body=b"more")
    client.list_multipart_uploads(Bucket=bucket)
    client.abort_multipart_upload(Bucket=bucket, Key="b", UploadId=upload)
    upload = client.create_multipart_upload(Bucket=bucket, Key="c")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="c", UploadId=upload, PartNumber=1, Body=b"all")["ETag"]
    client.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "c"}]})
    assert sorted(proxy.seen) == sorted(CALL_KINDS)


def test_small_shards_cut_short_on_their_way_through_the_merge_are_read_again(proxy, s3, bucket):
    """Shards under the part minimum pass through the merging machine (GetObject, then
    UploadPart): a body cut short must be read again, never uploaded short."""
    shards_data = {"a": b"A" * 100_000, "b": b"B" * 100_000}
    for key, data in shards_data.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    proxy.fail("GetObject", TRUNCATE)
    store = S3Store(make_s3_client(endpoint_url=proxy.url, region="us-east-1"), bucket)

    size = store.compose("merged", [ObjectInfo(key, len(data)) for key, data in shards_data.items()])

    assert proxy.injected_total("GetObject") == 1
    assert size == 200_000
    assert s3.get_object(Bucket=bucket, Key="merged")["Body"].read() == b"A" * 100_000 + b"B" * 100_000


@dataclass(frozen=True)
class Rule:
    kind: str
    fault: object
    times: int | None = 1  # None: every matching call
    key_part: str | None = None  # besides the bucket, text the call's path, query or body must hold
    side: str = "partner"  # "input": on the customer's bucket holding the tables

    @property
    def label(self) -> str:
        return f"{self.side}:{self.kind}-{self.fault}" + (f"[{self.key_part}]" if self.key_part else "")


@dataclass(frozen=True)
class Transient:
    """Faults the run must survive; each rule answers exactly `times` calls (an always-on rule:
    the RETRY_ATTEMPTS of the one call it meets)."""

    id: str
    rules: tuple[Rule, ...]
    s3_input: bool = False  # the tables in the customer's bucket, read through the proxy too
    plant: bool = True  # an earlier killed run's staging and open upload: the sweep deletes and aborts


@dataclass(frozen=True)
class Persistent:
    """A fault on every matching call, and what the failed run may leave for the next run."""

    rules: tuple[Rule, ...]
    published: bool = False  # the day's object is the new one (True) or still the earlier one
    leaves_staging: bool = False
    leaves_uploads: bool = False
    plant: bool = False  # an earlier killed run's staging and open upload, for the sweep to meet
    s3_input: bool = False

    @property
    def id(self) -> str:
        return "+".join(f"{rule.kind}-{rule.fault}" for rule in self.rules)


def _once_on_every_call_kind(fault) -> Transient:
    rules = [Rule(kind, fault) for kind in PARTNER_CALLS] + [Rule(kind, fault, side="input") for kind in INPUT_CALLS]
    return Transient(f"every-call-kind-once-{fault}", tuple(rules), s3_input=True)


TRANSIENT = (
    *(_once_on_every_call_kind(fault) for fault in TRANSIENT_FAULTS),
    # One call failing four times in a row: its fifth and last attempt (RETRY_ATTEMPTS) succeeds.
    Transient(
        "one-part-copy-four-times-in-a-row",
        tuple(
            Rule("UploadPartCopy", fault, key_part="&partNumber=1") for fault in (INTERNAL_ERROR, SLOW_DOWN, RESET, TRUNCATE)
        ),
    ),
    # S3 completes the upload but every answer to it is cut: the run finds the object is its
    # own (`pipeline.storage.multipart._is_completed`) instead of reporting a failure it did not have.
    Transient("every-complete-answer-lost", (Rule("CompleteMultipartUpload", TRUNCATE, times=None),)),
)


def _always(kind, fault, key_part=None) -> Rule:
    return Rule(kind, fault, times=None, key_part=key_part)


PERSISTENT = (
    Persistent((_always("PutObject", INTERNAL_ERROR, "/shards/"),)),  # writing shards
    Persistent((_always("GetObject", SLOW_DOWN),)),  # reading the manifest
    Persistent((_always("GetObject", TRUNCATE),)),  # the manifest's body is always cut short
    Persistent((_always("CreateMultipartUpload", RESET),)),
    Persistent((_always("UploadPartCopy", TRUNCATE),)),
    Persistent((_always("UploadPart", INTERNAL_ERROR),)),
    Persistent((_always("CompleteMultipartUpload", SLOW_DOWN),)),
    Persistent((_always("ListObjectsV2", TRUNCATE),)),  # the sweep, before anything is written
    Persistent((_always("ListMultipartUploads", RESET),)),
    # Removing the replaced object fails after the new one is complete; so does the cleanup.
    Persistent((_always("DeleteObjects", SLOW_DOWN),), published=True, leaves_staging=True),
    # The sweep cannot abort an earlier run's upload.
    Persistent((_always("AbortMultipartUpload", INTERNAL_ERROR),), leaves_uploads=True, plant=True),
    # A part fails and S3 refuses the abort too: this run's upload stays open.
    Persistent((_always("UploadPartCopy", RESET), _always("AbortMultipartUpload", RESET)), leaves_uploads=True),
    # S3 creates each upload but the answer naming it is lost: the run cannot abort them.
    Persistent((_always("CreateMultipartUpload", TRUNCATE),), leaves_uploads=True),
)

_RUN_WITH_TEST_SIZES = """
import sys
from pipeline.commands.cli import Runtime, main
from pipeline.launcher.tunables import Tunables

tunables = Tunables(min_part_bytes=int(sys.argv[1]), shard_target_bytes=int(sys.argv[2]))
sys.exit(main(sys.argv[3:], runtime=Runtime(tunables=tunables)))
"""
"""`krux-export` in a fresh process, given this module's part and shard sizes."""


@dataclass
class Outcome:
    bucket: str
    planted: tuple[str, str] | None  # (staged shard, open upload id) of an earlier killed run
    code: int
    elapsed_s: float
    summary: dict
    stderr: str
    answered: dict[str, int]  # rule label: calls it answered with its fault


@pytest.fixture(scope="module")
def outcomes(s3_endpoint, tables):
    """Every case of this module, run at once, each in its own process and buckets, behind one proxy.

    At once because retries wait (up to 1+2+4+8 s for a call): in a row the cases would take
    minutes. The runs use the in-process FnApiRunner, whose shard-writing DoFns build their
    own clients from --endpoint-url, so they too go through the proxy.
    """
    s3 = make_s3_client(endpoint_url=s3_endpoint, region="us-east-1")
    root, _ = tables
    min_part_bytes = os.environ["S3_UPLOAD_PART_MIN_SIZE"]  # moto's, set by tests/conftest.py
    proxy = S3FaultProxy(s3_endpoint).start()

    def new_bucket(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=name)
        return name

    def run(case) -> Outcome:
        partner = PartnerBucket(s3, new_bucket("test"))
        partner.put_previous()
        planted = partner.plant_leftovers() if case.plant else None
        source = str(root)
        env = dict(os.environ)
        if case.s3_input:
            warehouse = new_bucket("warehouse")
            for path in sorted(root.iterdir()):
                s3.put_object(Bucket=warehouse, Key=f"activate_to_krux/{path.name}", Body=path.read_bytes())
            source, env["AWS_ENDPOINT_URL_S3"] = f"s3://{warehouse}/activate_to_krux", proxy.url
        answered = {}
        for rule in case.rules:
            bucket = warehouse if rule.side == "input" else partner.name
            key_contains = (f"/{bucket}", *([rule.key_part] if rule.key_part else []))
            answered[rule.label] = proxy.fail(rule.kind, rule.fault, times=rule.times, key_contains=key_contains)
        command = [sys.executable, "-c", _RUN_WITH_TEST_SIZES, min_part_bytes, str(SMALL_SHARD_BYTES), "run",
                   "--database", source, "--client-name", CLIENT, "--bucket", partner.name,
                   "--endpoint-url", proxy.url, "--date", DAY, "--runner=FnApiRunner"]
        started = time.monotonic()
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        elapsed = time.monotonic() - started
        summary = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        answers = {label: rule.used for label, rule in answered.items()}
        return Outcome(partner.name, planted, done.returncode, elapsed, summary, done.stderr, answers)

    def attempt(case):
        try:
            return run(case)
        except Exception:  # reported by the case's own test, not as every test's setup error
            return traceback.format_exc()

    cases = (*TRANSIENT, *PERSISTENT)  # the longest first
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = dict(zip((case.id for case in cases), pool.map(attempt, cases)))
    proxy.stop()
    return results


def outcome_of(outcomes, case) -> Outcome:
    if isinstance(outcomes[case.id], str):
        pytest.fail(outcomes[case.id])
    return outcomes[case.id]


def next_clean_run(partner, tables, min_part_bytes, capsys) -> None:
    """The next run of the export, S3 healthy again: it sweeps what was left and publishes."""
    tunables = Tunables(shard_target_bytes=SMALL_SHARD_BYTES, min_part_bytes=min_part_bytes)
    code = cli.main(["run", "--database", str(tables[0]), "--client-name", CLIENT, "--bucket", partner.name,
                     "--endpoint-url", partner.s3.meta.endpoint_url, "--date", DAY, "--runner=FnApiRunner"],
                    runtime=cli.Runtime(tunables=tunables))
    assert code == 0, capsys.readouterr().err
    assert partner.clean_with(tables[1])


@pytest.mark.parametrize("case", TRANSIENT, ids=lambda case: case.id)
def test_transient_faults_are_retried_and_the_run_publishes_the_right_object(
    case, outcomes, s3, tables, min_part_bytes, capsys
):
    outcome = outcome_of(outcomes, case)
    partner = PartnerBucket(s3, outcome.bucket)
    _, lines = tables

    assert outcome.code == 0, outcome.stderr
    assert outcome.answered == {rule.label: rule.times or RETRY_ATTEMPTS for rule in case.rules}
    assert outcome.summary["lines_written"] == len(lines)
    assert outcome.summary["replaced"] == [f"s3://{outcome.bucket}/{KEY_TXT}"]
    assert partner.export_objects() == [KEY] and partner.published(lines)
    assert partner.staging() == []  # the run's own, and the earlier killed run's (swept)
    uploads = partner.open_uploads()
    assert outcome.planted[1] not in dict(uploads).values()  # swept
    if any(rule.kind == "CreateMultipartUpload" and rule.fault == TRUNCATE for rule in case.rules):
        # S3 created an upload whose answer was cut: the run never learnt its id, the next
        # run of the export aborts it (SPEC §4: open uploads on its keys).
        assert [key for key, _ in uploads] == [KEY]
        next_clean_run(partner, tables, min_part_bytes, capsys)
    assert partner.open_uploads() == []


@pytest.mark.parametrize("case", PERSISTENT, ids=lambda case: case.id)
def test_a_persistent_fault_exits_4_in_bounded_time_and_leaves_only_what_the_next_run_sweeps(
    case, outcomes, s3, tables, min_part_bytes, capsys
):
    outcome = outcome_of(outcomes, case)
    partner = PartnerBucket(s3, outcome.bucket)
    _, lines = tables

    assert outcome.code == 4, outcome.stderr
    assert outcome.summary["status"] == "failed" and outcome.summary["exit_code"] == 4
    assert outcome.elapsed_s < BOUND_S
    # Each failing call was tried exactly RETRY_ATTEMPTS times before the run gave up.
    assert all(n >= RETRY_ATTEMPTS and n % RETRY_ATTEMPTS == 0 for n in outcome.answered.values()), outcome.answered
    # Never a partial object, never a day without the export: the earlier one, or the whole new one.
    assert partner.export_objects() == sorted([KEY, KEY_TXT])
    assert partner.unchanged(KEY_TXT)
    assert partner.published(lines) if case.published else partner.unchanged(KEY)
    staging, uploads = partner.staging(), partner.open_uploads()
    assert bool(staging) == case.leaves_staging, staging
    assert bool(uploads) == case.leaves_uploads, uploads
    if outcome.planted:
        assert (KEY, outcome.planted[1]) in uploads
    if staging or uploads:
        next_clean_run(partner, tables, min_part_bytes, capsys)



def _persistent(*kinds: str) -> Persistent:
    return next(case for case in PERSISTENT if tuple(rule.kind for rule in case.rules) == kinds)


def test_a_multipart_upload_that_cannot_be_aborted_is_a_warning_on_stderr(outcomes):
    outcome = outcome_of(outcomes, _persistent("UploadPartCopy", "AbortMultipartUpload"))
    assert outcome.code == 4, outcome.stderr
    warnings = [line for line in outcome.stderr.splitlines() if "could not abort the multipart upload" in line]
    assert warnings and all(line.startswith("krux-export: ") for line in warnings), outcome.stderr
    assert f"of s3://{outcome.bucket}/{KEY}" in warnings[0]


def test_a_storage_failure_is_not_blamed_on_another_run_when_none_stages(outcomes):
    # Every shard write refused: this run's staging stays empty, and no other run is there.
    outcome = outcome_of(outcomes, _persistent("PutObject"))
    error = outcome.summary["error"]
    assert outcome.code == 4 and "another run" not in error, error
    assert "InternalError" in error and "/_staging/" in error, error
