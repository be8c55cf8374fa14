"""The export pipeline built for Dataflow, serialized, never submitted (issue #6).

Dataflow runs every DoFn, CombineFn and coder from its pickle on a remote worker: a transform
that pickles here but cannot be loaded in a fresh interpreter (a lambda over a local object, a
reference to `__main__`, an open client) would only fail there, after the job was submitted.
So the pipeline is built with Dataflow's options and translated to its runner API proto, and a
separate `python` process loads every pickled function and coder from those bytes, as a worker
does. With `apache-beam[gcp]` installed, a `--dry_run=True` DataflowRunner run also builds the
Dataflow job itself (its Docker environment, the staged `--setup_file` sdist), still offline.

The project names are deliberately valid (a project id of 6-30 characters, a bucket of 3 or
more): with `--project=p` or `gs://b`, option validation fails and Beam then tries to create a
default GCS bucket over the network, which hangs for two minutes offline.
"""

import base64
import bz2
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.sources import tables
from pipeline.config.connections import Connection, save_connection
from pipeline.launcher.graph import ExportPlan, build_pipeline
from transforms.write import ExportTarget
from pipeline.launcher.run import resolve_target
from transforms.group import GroupByUser
from pipeline.config.settings import RunSettings
from pipeline.krux.grouping import plan_partitions
from pipeline.krux.lines import LineRules
from transforms.rejects import RejectsTarget

SETUP_FILE = Path(__file__).resolve().parents[2] / "setup.py"
DATAFLOW_ARGS = [
    "--runner=DataflowRunner",
    "--project=krux-export-test",
    "--region=us-central1",
    "--temp_location=gs://krux-export-test/tmp",
    f"--setup_file={SETUP_FILE}",
    "--dry_run=True",
]
CONNECTION = "dataflow_dmp"
SECRET_VARIABLE = "KRUX_DATAFLOW_TEST_SECRET"
SECRET = "Dataflow/Sk3cr3t+never-in-a-job-description"
LOAD_TIMEOUT_S = 120
PICKLED_DOFN = "beam:dofn:pickled_python_info:v1"

# Run in a fresh interpreter: loads every pickled function and coder of a pipeline proto as an
# SDK worker would, and prints what it loaded as JSON.
LOADER = r"""
import json, sys
from apache_beam.internal import pickler
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners import pipeline_context

proto = beam_runner_api_pb2.Pipeline.FromString(open(sys.argv[1], "rb").read())
combines = {common_urns.composites.COMBINE_PER_KEY.urn, common_urns.composites.COMBINE_GLOBALLY.urn,
            common_urns.combine_components.COMBINE_GROUPED_VALUES.urn,
            common_urns.combine_components.COMBINE_PER_KEY_PRECOMBINE.urn,
            common_urns.combine_components.COMBINE_PER_KEY_MERGE_ACCUMULATORS.urn,
            common_urns.combine_components.COMBINE_PER_KEY_EXTRACT_OUTPUTS.urn}
loaded = {"do_fns": [], "combine_fns": [], "coders": 0}
for transform in proto.components.transforms.values():
    urn = transform.spec.urn
    if urn == common_urns.primitives.PAR_DO.urn:
        fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
        if fn.urn == "beam:dofn:pickled_python_info:v1":
            loaded["do_fns"].append(type(pickler.loads(fn.payload)[0]).__name__)
    elif urn in combines:
        fn = beam_runner_api_pb2.CombinePayload.FromString(transform.spec.payload).combine_fn
        loaded["combine_fns"].append(type(pickler.loads(fn.payload)).__name__)
context = pipeline_context.PipelineContext(proto.components)
for coder_id in proto.components.coders:
    context.coders.get_by_id(coder_id)
    loaded["coders"] += 1
print(json.dumps(loaded))
"""


@pytest.fixture
def connection(monkeypatch):
    """A connection whose secret is `env:VAR`; no S3 is reached: nothing runs."""
    monkeypatch.setenv(SECRET_VARIABLE, SECRET)
    save_connection(Connection(name=CONNECTION, client_name="client-treasure-data",
                               access_key_id="AKIADATAFLOW0TEST", secret_access_key=f"env:{SECRET_VARIABLE}"))
    return CONNECTION


@pytest.fixture(params=["ungrouped", "grouped-with-rejects"])
def settings(request, connection, tmp_path):
    """Both shapes of the graph: FormatLines, and GroupByUser with the rejects branch."""
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    pq.write_table(pa.table({"user_id": ["uid1"], "td_segment": ["seg1,seg2"], "firstname": ["Britty"]}),
                   root / "segment_a.parquet")
    pq.write_table(pa.table({"user_id": ["uid2"], "td_segment": ["seg3"]}), root / "segment_b.parquet")
    grouped = request.param != "ungrouped"
    return RunSettings(database=str(root), connection=connection, group_by_user=grouped,
                       skip_invalid_records=grouped, rejects=str(tmp_path / "rejects.jsonl") if grouped else None)


@pytest.fixture
def dataflow_pipeline(settings):
    """The export graph with Dataflow's options, built as `run_export` builds it (not run)."""
    spec, _ = resolve_target(settings)
    found = tables.find_tables(settings.sources, settings.database, settings.table_prefix)
    run_id = "20261128T000000Z-abcd"
    rejects = RejectsTarget.for_run(settings.rejects, run_id) if settings.rejects else None
    target = ExportTarget(spec, "uploads/", "first_party_segment", "2026-11-28", run_id)
    plan = ExportPlan(tables.load_tables(found, LineRules("user_id", "td_segment", "segment")), target,
                      rejects=rejects)
    options = PipelineOptions(DATAFLOW_ARGS)
    pipeline = build_pipeline(settings, plan, options)
    yield pipeline, options
    shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)  # Beam removes it only after a real run


def load_in_fresh_process(proto, tmp_path) -> dict:
    """Loads every pickled function and coder of `proto` in a new `python`, away from this one."""
    path = tmp_path / "pipeline.pb"
    path.write_bytes(proto.SerializeToString())
    done = subprocess.run([sys.executable, "-c", LOADER, str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=LOAD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def pickled_do_fns(proto) -> list[bytes]:
    """Every ParDo's pickled DoFn as Beam stores it (base64 of bz2; `pickler.loads` reads that).

    Beam's own DoFns with a standard URN (KeyWithVoid's `python_key_with_none`) hold no pickle.
    """
    found = []
    for transform in proto.components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
            if fn.urn == PICKLED_DOFN:
                found.append(fn.payload)
    return found


def raw_pickles(proto) -> bytes:
    """The pickles themselves, decoded, to search for a string inside them."""
    return b"".join(bz2.decompress(base64.b64decode(payload)) for payload in pickled_do_fns(proto))


def test_the_dataflow_pipeline_serializes_and_every_pickled_fn_loads_in_a_fresh_process(dataflow_pipeline, tmp_path):
    pipeline, options = dataflow_pipeline
    proto = pipeline.to_runner_api()  # pickles every DoFn, CombineFn and coder: unpicklable ones fail here

    loaded = load_in_fresh_process(proto, tmp_path)
    assert len(loaded["do_fns"]) == len(pickled_do_fns(proto)) > 0
    assert {"_WriteShardsFn", "_PublishFn"} <= set(loaded["do_fns"])
    assert loaded["combine_fns"]  # CombineReports
    assert loaded["coders"] == len(proto.components.coders)

    # The connection travels by name; its secret is in neither the graph nor the options.
    serialized = proto.SerializeToString()
    assert CONNECTION.encode() in serialized or CONNECTION.encode() in raw_pickles(proto)
    assert SECRET.encode() not in serialized + raw_pickles(proto)
    assert SECRET not in json.dumps(options.get_all_options(retain_unknown_options=True), default=str)


def test_a_dataflow_dry_run_builds_the_job_offline_or_names_the_missing_gcp_extra(dataflow_pipeline, tmp_path):
    pipeline, _ = dataflow_pipeline
    try:
        from apache_beam.runners.dataflow.internal import apiclient
    except ImportError:
        # Without apache-beam[gcp] (this project's default install), Beam refuses the runner
        # before anything is staged or submitted, and says what to install.
        with pytest.raises(ImportError, match=r"apache_beam\[gcp\]"):
            pipeline.run()
        return

    result = pipeline.run()  # --dry_run=True: the job is built, nothing is staged or submitted
    job = result.job
    assert result.state == "DONE"
    # The workers' Docker environment installs the project from the staged sdist of --setup_file.
    staged = {
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
        for env in job.proto_pipeline.components.environments.values()
        for d in env.dependencies
    }
    assert "workflow.tar.gz" in staged
    loaded = load_in_fresh_process(job.proto_pipeline, tmp_path)
    assert {"_WriteShardsFn", "_PublishFn"} <= set(loaded["do_fns"])
    # What the job description would carry (and Dataflow logs at INFO): the options, no secret.
    environment = apiclient.Environment(
        packages=[], options=job.options, environment_version="1",
        proto_pipeline_staged_url="gs://krux-export-test/tmp/pipeline.pb", proto_pipeline=job.proto_pipeline,
    ).proto
    described = type(environment).to_json(environment)
    assert "krux-export-test" in described
    assert SECRET not in described
    assert SECRET.encode() not in job.proto_pipeline.SerializeToString() + raw_pickles(job.proto_pipeline)


def test_a_500m_row_grouped_plan_builds_with_hundreds_of_partitions_and_beams_shuffle(connection, tmp_path):
    """The plan of a 500M-row audience, without the data: tables whose footers count 500M rows."""
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    for name in ("segment_a", "segment_b"):
        pq.write_table(pa.table({"user_id": ["uid1"], "td_segment": ["seg1"]}), root / f"{name}.parquet")
    settings = RunSettings(database=str(root), connection=connection, group_by_user=True)
    spec, _ = resolve_target(settings)
    found = tables.find_tables(settings.sources, settings.database, settings.table_prefix)
    loaded = tables.load_tables(found, LineRules("user_id", "td_segment", "segment"))
    huge = [dataclasses.replace(table, rows=250_000_000) for table in loaded]
    plan = ExportPlan(huge, ExportTarget(spec, "uploads/", "first_party_segment", "2026-11-28", "20261128T000000Z-abcd"))

    pipeline = build_pipeline(settings, plan, PipelineOptions(DATAFLOW_ARGS))
    try:
        found_groups = []

        class Finder(PipelineVisitor):
            def enter_composite_transform(self, node):
                if isinstance(node.transform, GroupByUser):
                    found_groups.append(node.transform)

        pipeline.visit(Finder())
        (group,) = found_groups
        assert group.partitions == plan_partitions(500_000_000) >= 500
        assert group.spill_dir is None  # Dataflow shuffles: Beam's GroupByKey, no local spill
        labels = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
        assert any(label.endswith("ShuffleByUser") for label in labels)
        assert not any("SpillTriples" in label for label in labels)
        loaded_fns = load_in_fresh_process(pipeline.to_runner_api(), tmp_path)
        assert {"_GroupPartitionFn", "_WriteShardsFn", "_MergeTailsFn"} <= set(loaded_fns["do_fns"])
    finally:
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
