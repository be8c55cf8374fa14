"""The real export on Beam's portable runner: a job service and SDK workers in their own processes.

This is the Job API that Flink's and Spark's job servers speak (issue #6). The launcher (this
pytest process, through `cli.main`) builds the pipeline, ships it with `--setup_file` to a
separate job service process, which runs it on SDK workers started by a separate EXTERNAL
worker pool process; the workers write shards to the moto server running in this process, then
the launcher merges them server-side and publishes.

The workers get no AWS keys in their environment: the only way they can sign a request is the
named connection, which each worker loads from connections.yml ($KRUX_EXPORT_HOME), its secret
read from an environment variable (`env:VAR`) on the worker itself. The secret must appear
neither in the options nor in the pipeline the job service received, nor in any output or log.

A dead worker makes a portable job hang forever: every run here has a deadline (the job
service and workers are killed, which fails the launcher's wait) and, as a last resort, a hard
exit of the test process, so CI fails instead of hanging.
"""

import base64
import bz2
import contextlib
import faulthandler
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import importlib.util

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_job_api_pb2, beam_job_api_pb2_grpc, beam_runner_api_pb2
from apache_beam.runners.portability import portable_runner
from google.protobuf import json_format

from pipeline.commands import cli
from pipeline.config.connections import Connection, save_connection

VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's bin, not the base interpreter's
SETUP_FILE = Path(__file__).resolve().parents[2] / "setup.py"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "beam_pipeline.py"

CLIENT = "client-treasure-data"
DAY = "2026-11-28"
DAY_PREFIX = f"{CLIENT}/uploads/{DAY}/"
CONNECTION = "portable_dmp"
ACCESS_KEY_ID = "AKIAPORTABLE0TEST"
SECRET_VARIABLE = "KRUX_PORTABLE_TEST_SECRET"
SECRET = "Portable/Sk3cr3t+that-no-worker-option-may-hold"

START_TIMEOUT_S = 60
"""How long the job service and the worker pool may take to accept connections."""
RUN_DEADLINE_S = 150
"""A run still going after this is stuck: the services are killed, which fails the run."""
HARD_EXIT_S = RUN_DEADLINE_S + 60
"""If even that does not end the run, the whole test process exits (CI fails, never hangs)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts_connections(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("localhost", port), timeout=1):
        return True
    return False


class PortableServices:
    """The job service and the worker pool: two process groups, with their logs."""

    def __init__(self, workdir: Path, env: dict):
        self.job_port, self.worker_port = free_port(), free_port()
        self.staging_dir = workdir / "job-staging"
        self.logs = {"job_service": workdir / "job_service.log", "worker_pool": workdir / "worker_pool.log"}
        self.killed_for = None
        commands = {
            "job_service": ["-m", "apache_beam.runners.portability.local_job_service_main",
                            "--port", str(self.job_port), "--staging_dir", str(self.staging_dir)],
            "worker_pool": ["-m", "apache_beam.runners.worker.worker_pool_main",
                            "--service_port", str(self.worker_port)],
        }
        self.processes = {}
        for name, args in commands.items():
            with open(self.logs[name], "wb") as log:
                # Its own session (process group): the pool's SDK workers die with it.
                self.processes[name] = subprocess.Popen(
                    [str(VENV_BIN / "python"), *args], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )

    @property
    def beam_args(self) -> list[str]:
        return [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{self.worker_port}",
            f"--setup_file={SETUP_FILE}",
            "--job_server_timeout=60",
        ]

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = {"job_service": self.job_port, "worker_pool": self.worker_port}
        while waiting:
            for name, port in list(waiting.items()):
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"the {name} exited at start-up:\n{self.log_text(name)}")
                if accepts_connections(port):
                    del waiting[name]
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"{', '.join(waiting)} not accepting connections after {START_TIMEOUT_S}s")
            time.sleep(0.2)

    def check_alive(self) -> None:
        if self.killed_for:
            pytest.fail(f"the portable services were killed earlier: {self.killed_for}")
        for name, process in self.processes.items():
            if process.poll() is not None:
                pytest.fail(f"the {name} died (exit {process.returncode}):\n{self.log_text(name)}")

    def kill(self, reason: str) -> None:
        self.killed_for = reason
        self.stop(grace_s=0)

    def stop(self, grace_s: float = 5) -> None:
        for sig in ((signal.SIGTERM, signal.SIGKILL) if grace_s else (signal.SIGKILL,)):
            for process in self.processes.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, sig)  # the session leader's pid is its group id
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(p.poll() is None for p in self.processes.values()):
                time.sleep(0.1)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def portable(aws_test_env, tmp_path_factory):
    """A job service and an EXTERNAL worker pool on free ports, started with the venv first in PATH.

    The workers' environment has the connection's secret variable and $KRUX_EXPORT_HOME, but
    no AWS keys: a worker can only write to S3 with the connection it resolves itself.
    """
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # the pool starts `python` from PATH
    env.pop("AWS_ACCESS_KEY_ID", None)
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env[SECRET_VARIABLE] = SECRET
    env["PYTHONUNBUFFERED"] = "1"
    services = PortableServices(tmp_path_factory.mktemp("portable"), env)
    try:
        services.wait_until_ready()
        yield services
    finally:
        services.stop()


@pytest.fixture
def connection(portable, s3_endpoint, bucket, monkeypatch):
    """A connection whose secret is `env:VAR`: set on the workers, and here for the merge."""
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    save_connection(Connection(name=CONNECTION, client_name=CLIENT, access_key_id=ACCESS_KEY_ID,
                               secret_access_key=f"env:{SECRET_VARIABLE}", bucket=bucket,
                               endpoint_url=s3_endpoint))
    return CONNECTION


@pytest.fixture
def database(tmp_path):
    """Two tables: SPEC §3's example row, and another table with a repeated user."""
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    columns = ["user_id", "td_segment", "email", "firstname", "lastname"]
    pq.write_table(pa.table({name: [value] for name, value in zip(
        columns, ("uid1", "seg1,seg2", "", "Britty", "Morris"))}), root / "segment_a.parquet")
    pq.write_table(pa.table({"user_id": ["uid2", " uid1 "], "td_segment": ["seg3", "seg2, seg4"]}),
                   root / "segment_b.parquet")
    return root


@pytest.fixture
def submitted(monkeypatch):
    """Records what the launcher sends to the job service: the options Struct and the job id."""
    sent = {}
    handle = portable_runner.JobServiceHandle
    original_options, original_run = handle.get_pipeline_options, handle.run

    def get_pipeline_options(self):
        sent["options"] = original_options(self)
        return sent["options"]

    def run(self, preparation_id):
        job_id, *streams = original_run(self, preparation_id)
        sent["job_id"] = job_id
        return (job_id, *streams)

    monkeypatch.setattr(handle, "get_pipeline_options", get_pipeline_options)
    monkeypatch.setattr(handle, "run", run)
    return sent


def run_with_deadline(portable: PortableServices, argv: list[str], run=cli.main):
    """`run(argv)` (`cli.main` by default) in this (main) thread; a stuck job is ended by killing the services."""
    portable.check_alive()
    watchdog = threading.Timer(RUN_DEADLINE_S, portable.kill, args=(f"a run exceeded {RUN_DEADLINE_S}s",))
    watchdog.daemon = True
    faulthandler.dump_traceback_later(HARD_EXIT_S, exit=True, file=sys.__stderr__)
    watchdog.start()
    try:
        return run(argv)
    finally:
        watchdog.cancel()
        faulthandler.cancel_dump_traceback_later()
        if portable.killed_for:
            pytest.fail(f"{portable.killed_for}: the portable job hung (job service log:\n"
                        f"{portable.log_text('job_service')}\nworker pool log:\n{portable.log_text('worker_pool')})")


def pickled_dofns(pipeline_proto) -> bytes:
    """Every ParDo's DoFn as a raw pickle (Beam stores it base64-encoded, bz2-compressed)."""
    found = []
    for transform in pipeline_proto.components.transforms.values():
        if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
            continue
        do_fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
        if do_fn.urn == "beam:dofn:pickled_python_info:v1":
            found.append(bz2.decompress(base64.b64decode(do_fn.payload)))
    return b"".join(found)


def pipeline_on_job_service(portable: PortableServices, job_id: str):
    """The pipeline proto as the job service holds it (Job API GetPipeline)."""
    with grpc.insecure_channel(f"localhost:{portable.job_port}") as channel:
        stub = beam_job_api_pb2_grpc.JobServiceStub(channel)
        return stub.GetPipeline(beam_job_api_pb2.GetJobPipelineRequest(job_id=job_id), timeout=30).pipeline


@pytest.mark.parametrize(
    "extra, object_name, expected",
    [
        pytest.param([], "first_party_segment.txt.gz", [
            "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris",
            "uid1^segment:seg2,seg4",
            "uid2^segment:seg3",
        ], id="ungrouped-gzip"),
        pytest.param(["--group-by-user", "--compression", "none"], "first_party_segment.txt", [
            "uid1^segment:seg1,seg2,seg4;firstname:Britty;lastname:Morris",
            "uid2^segment:seg3",
        ], id="grouped-plain"),
    ],
)
def test_export_on_the_portable_runner_publishes_the_days_file(
    portable, connection, database, submitted, s3, bucket, capfd, extra, object_name, expected
):
    argv = ["run", "--database", str(database), "--connection", connection, "--date", DAY,
            *extra, *portable.beam_args]
    code = run_with_deadline(portable, argv)
    out, err = capfd.readouterr()
    assert code == 0, out + err
    summary = json.loads(out.strip().splitlines()[-1])

    # The published object: the SPEC's lines, one object in the day folder, nothing left over.
    data = s3.get_object(Bucket=bucket, Key=DAY_PREFIX + object_name)["Body"].read()
    text = gzip.decompress(data) if object_name.endswith(".gz") else data
    assert sorted(text.decode().splitlines()) == expected
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=DAY_PREFIX).get("Contents", [])
    assert [o["Key"] for o in listing] == [DAY_PREFIX + object_name]
    assert summary["status"] == "succeeded" and summary["bytes"] == len(data)
    assert summary["lines_written"] == len(expected)
    assert summary["rows_read"] == {"total": 3, "tables": {"segment_a": 1, "segment_b": 2}}
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"{CLIENT}/_staging/").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    # It really went through the job service, with the options we gave...
    options = json_format.MessageToDict(submitted["options"])
    assert options["beam:option:environment_type:v1"] == "EXTERNAL"
    assert options["beam:option:environment_config:v1"] == f"localhost:{portable.worker_port}"
    # ...and the secret is in neither those options nor the pipeline the job service holds,
    # whose pickled DoFns name the connection (the workers resolve it themselves).
    assert SECRET not in json.dumps(options)
    received = pipeline_on_job_service(portable, submitted["job_id"])
    graph = received.SerializeToString() + pickled_dofns(received)
    assert CONNECTION.encode() in graph
    assert SECRET.encode() not in graph
    # Nor in anything printed: the launcher's output, the job service's and workers' logs.
    assert SECRET not in out + err
    for name in portable.logs:
        assert SECRET not in portable.logs[name].read_text(errors="replace")

    # --setup_file shipped the project: its sdist was staged on the job service.
    staged = list(portable.staging_dir.glob(f"{submitted['job_id']}/*workflow.tar.gz"))
    assert len(staged) == 1, sorted(map(str, portable.staging_dir.rglob("*")))
    with tarfile.open(staged[0]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"setup.py", "pipeline/launcher/graph.py", "pipeline/storage/stores.py", "transforms/shards.py"} <= names


def test_a_bad_file_found_by_a_portable_worker_is_exit_2_naming_table_and_path(portable, connection, tmp_path, capfd):
    # The worker's error crosses the job service as text: its payload brings back the class and reason.
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    bad = root / "segment_latin1.csv"
    bad.write_bytes(b"user_id,td_segment\nu1,s1\nu2,caf\xe9\n")
    code = run_with_deadline(portable, ["run", "--database", str(root), "--connection", connection, "--date", DAY,
                                        *portable.beam_args])
    out, err = capfd.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 2 and summary["exit_code"] == 2, out + err
    assert summary["error"].startswith(f"table segment_latin1: cannot read {bad}: ") and "UTF8" in summary["error"]
    assert summary["date"] == DAY and summary["run_id"]
    assert "Traceback" not in err and "krux-export-error" not in out + err


def test_the_beam_pipeline_example_on_the_portable_runner_publishes_the_lines_run_writes(
    portable, connection, database, submitted, s3, bucket, capfd, tmp_path
):
    """examples/beam_pipeline.py: Beam's Parquet IO, then `WriteToKrux`, which publishes from a worker."""
    spec = importlib.util.spec_from_file_location("beam_pipeline_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--input", str(database / "segment_*.parquet"), "--connection", connection, "--date", DAY,
            *portable.beam_args]

    run_with_deadline(portable, argv, run=lambda args: example.build_pipeline(args).run().wait_until_finish())
    assert cli.main(["run", "--database", str(database), "--output-root", str(tmp_path / "cli"), "--date", DAY,
                     "--runner=FnApiRunner"]) == 0
    out, err = capfd.readouterr()

    data = s3.get_object(Bucket=bucket, Key=DAY_PREFIX + "first_party_segment.txt.gz")["Body"].read()
    by_run = gzip.decompress((tmp_path / "cli" / DAY / "first_party_segment.txt.gz").read_bytes())
    assert sorted(gzip.decompress(data).decode().splitlines()) == sorted(by_run.decode().splitlines()) == [
        "uid1^segment:seg1,seg2;firstname:Britty;lastname:Morris",
        "uid1^segment:seg2,seg4",
        "uid2^segment:seg3",
    ]
    assert s3.list_objects_v2(Bucket=bucket, Prefix=f"{CLIENT}/_staging/").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    received = pipeline_on_job_service(portable, submitted["job_id"])
    graph = received.SerializeToString() + pickled_dofns(received)
    assert CONNECTION.encode() in graph and SECRET.encode() not in graph
    assert SECRET not in out + err + json.dumps(json_format.MessageToDict(submitted["options"]))
    for name in portable.logs:
        assert SECRET not in portable.logs[name].read_text(errors="replace")
