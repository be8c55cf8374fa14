"""A small input runs in this process: no Beam worker processes, the same published object.

Without a `--runner` of the user's, tables whose footers count at most
`Tunables.in_process_rows` rows run on FnApiRunner in memory (issue 20: a small export in about
a second); larger ones on two worker processes. Both run the same graph, with every check.
A worker process is seen by the CPU time of this process's reaped children: Beam waits for
each worker it started, and a worker that imports Beam takes a second of CPU or more.
"""

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.commands import cli
from pipeline.launcher.tunables import Tunables

DAY = "2026-11-28"


@pytest.fixture
def database(tmp_path):
    root = tmp_path / "activate_to_krux"
    root.mkdir()
    pq.write_table(pa.table({
        "user_id": ["uid1", "uid2", " uid1 ", "uid3"],
        "td_segment": ["seg1,seg2", "seg3", "seg2, seg4", "seg9"],
        "country": ["DE", None, "FR", " "],
    }), root / "segment_a.parquet")
    pq.write_table(pa.table({"user_id": ["uid2", "uid4"], "td_segment": ["seg1", "seg5,seg5"]}),
                   root / "segment_b.parquet")
    return root


def export(database, out, capsys, *extra, tunables=None):
    """Runs the CLI without --runner; returns (summary, published lines, children's CPU seconds)."""
    before = os.times()
    code = cli.main(["run", "--database", str(database), "--output-root", str(out), "--date", DAY, *extra],
                    runtime=cli.Runtime(tunables=tunables))
    after = os.times()
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    [published] = list((out / DAY).glob("[!.]*"))  # not the line-count sidecar (docs/destination.md)
    text = gzip.decompress(published.read_bytes()) if published.name.endswith(".gz") else published.read_bytes()
    children_cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return summary, published.name, sorted(text.decode().splitlines()), children_cpu


@pytest.mark.parametrize("grouped", [[], ["--group-by-user"]], ids=["ungrouped", "grouped"])
def test_a_small_input_runs_without_worker_processes_and_publishes_the_same_object(database, tmp_path, capsys, grouped):
    small = export(database, tmp_path / "in-process", capsys, *grouped)
    large = export(database, tmp_path / "workers", capsys, *grouped, tunables=Tunables(in_process_rows=0))

    summary, name, lines, children_cpu = small
    assert children_cpu == 0  # no process was started
    assert large[3] > 0.5  # two workers, each importing Beam
    assert name == large[1] == "first_party_segment.txt.gz"
    assert lines == large[2]
    keys = ("rows_read", "lines_written", "invalid", "bytes")
    assert {k: summary[k] for k in keys[:3]} == {k: large[0][k] for k in keys[:3]}
    if grouped:
        assert lines == [
            "uid1^segment:seg1,seg2,seg4;country:DE,FR",
            "uid2^segment:seg1,seg3",
            "uid3^segment:seg9",
            "uid4^segment:seg5",
        ]
    else:
        assert lines == sorted([
            "uid1^segment:seg1,seg2;country:DE",
            "uid2^segment:seg3",
            "uid1^segment:seg2,seg4;country:FR",
            "uid3^segment:seg9",
            "uid2^segment:seg1",
            "uid4^segment:seg5",
        ])


def test_a_users_runner_flag_is_kept_even_for_a_small_input(database, tmp_path, capsys):
    *_, children_cpu = export(database, tmp_path / "out", capsys,
                              "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert children_cpu > 0.5

